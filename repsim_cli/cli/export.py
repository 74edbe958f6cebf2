"""``repsim export``: heatmaps and CSVs from a results file."""

from __future__ import annotations

import os
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
@click.option("--digits", type=click.IntRange(0, 10), default=None,
              help="Decimals of --annotate (default: enough to show the smallest value, at least 2).")
@click.option("--cmap", default=None, help="Matplotlib colormap (default: viridis, or magma_r for distances).")
@click.option("--vmin", type=float, default=None, help="Value at the bottom of the colour scale.")
@click.option("--vmax", type=float, default=None, help="Value at the top of the colour scale.")
@click.option("--range", "value_range", type=click.Choice(["natural", "data"]), default="natural",
              show_default=True,
              help="Colour scale: the metric's range (e.g. 0-1 for CKA), or the data's min-max.")
@click.option("--title", default=None,
              help="Figure title (default: metric, parameters, n and stores; '' for none).")
@click.option("--std-error", is_flag=True, help="Plot the Monte Carlo standard error instead of the value.")
def command(results_path: str, out: str, spec: str | None, wide: bool, annotate: bool,
            digits: int | None, cmap: str | None, vmin: float | None, vmax: float | None,
            value_range: str, title: str | None, std_error: bool) -> None:  # fmt: skip
    """Export a results file (from `repsim compare`) as a heatmap or a CSV.

    Heatmaps embed their text as TrueType (PDF) or text (SVG), so they can go into a paper as
    they are.

    \b
    Examples:
      repsim export cka.h5 -o cka.png --annotate
      repsim export cka.h5 -o cka.pdf --range data --cmap magma --title 'CKA, seed 0 vs 1'
      repsim export cka.h5 --metric cka:debiased=true --wide -o cka_wide.csv
    """
    results = read_results(results_path)
    suffix = Path(out).suffix.lower()
    if out in ("-", os.devnull) or suffix == ".csv":
        text = wide_csv_text(results, spec) if wide else csv_text(results, spec)
        write_text(text, out)
        return
    if suffix not in IMAGE_SUFFIXES:
        raise ResultsError(f"{out}: unknown export format (use .png, .svg, .pdf, .csv or -)")
    from ..export.heatmap import HeatmapStyle, write_heatmap

    style = HeatmapStyle(annotate=annotate, cmap=cmap, std_error=std_error, vmin=vmin, vmax=vmax,
                         value_range=value_range, title=title, digits=digits)  # fmt: skip
    write_heatmap(results, out, spec=spec, style=style)
