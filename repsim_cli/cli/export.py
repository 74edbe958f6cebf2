"""``repsim export``: heatmaps and CSVs from a results file."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import ResultsError
from ..results import csv_text, read_results, wide_csv_text, write_text
from ._options import output_option

IMAGE_SUFFIXES = (".png", ".svg", ".pdf")


@click.command("export")
@click.argument("results_path", metavar="RESULTS")
@output_option("A heatmap (.png, .svg, .pdf) or a CSV (.csv, or - for stdout).")
@click.option("--metric", "spec", default=None, metavar="SPEC",
              help="Which metric (spec as given to compare, or its name); default: the first.")
@click.option("--wide", is_flag=True, help="CSV as a matrix (rows: layers of A) instead of long format.")
@click.option("--annotate", is_flag=True, help="Write the value in each heatmap cell.")
@click.option("--cmap", default=None, help="Matplotlib colormap (default: viridis, or magma_r for distances).")
@click.option("--std-error", is_flag=True, help="Plot the Monte Carlo standard error instead of the value.")
def command(results_path: str, out: str, spec: str | None, wide: bool, annotate: bool,
            cmap: str | None, std_error: bool) -> None:
    """Export a results file (from `repsim compare`) as a heatmap or a CSV.

    \b
    Examples:
      repsim export cka.h5 -o cka.png --annotate
      repsim export cka.h5 --metric cka:debiased=true --wide -o cka_wide.csv
    """
    results = read_results(results_path)
    suffix = Path(out).suffix.lower()
    if out == "-" or suffix == ".csv":
        text = wide_csv_text(results, spec) if wide else csv_text(results, spec)
        write_text(text, out)
        return
    if suffix not in IMAGE_SUFFIXES:
        raise ResultsError(f"{out}: unknown export format (use .png, .svg, .pdf, .csv or -)")
    from ..export.heatmap import write_heatmap

    write_heatmap(results, out, spec=spec, annotate=annotate, cmap=cmap, std_error=std_error)
