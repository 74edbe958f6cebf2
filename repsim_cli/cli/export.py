"""``repsim export``: heatmaps and CSVs from a results file."""

from __future__ import annotations

import os
from pathlib import Path

import click

from ..errors import ResultsError
from ..results import SUMMARIES, csv_text, read_results, summary_results, wide_csv_text, write_text
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
@click.option("--models", "model_pair", default=None, metavar="A,B",
              help="N-model results: export the block of model A's layers against model B's.")
@click.option("--summary", type=click.Choice(SUMMARIES), default=None,
              help="N-model results: a model × model matrix of each block's max (min for a "
                   "distance), mean over same-named layers (matched), or mean of all cells.")
def command(results_path: str, out: str, spec: str | None, wide: bool, annotate: bool,
            digits: int | None, cmap: str | None, vmin: float | None, vmax: float | None,
            value_range: str, title: str | None, std_error: bool, model_pair: str | None,
            summary: str | None) -> None:  # fmt: skip
    """Export a results file (from `repsim compare`) as a heatmap or a CSV.

    Heatmaps embed their text as TrueType (PDF) or text (SVG), so they can go into a paper as
    they are. Results of three or more stores draw as a grid of model-pair blocks; --models A,B
    picks one block and --summary makes a model × model matrix.

    \b
    Examples:
      repsim export cka.h5 -o cka.png --annotate
      repsim export cka.h5 -o cka.pdf --range data --cmap magma --title 'CKA, seed 0 vs 1'
      repsim export cka.h5 --metric cka:debiased=true --wide -o cka_wide.csv
      repsim export zoo.h5 --models seed0,seed1 -o seed0_seed1.png
      repsim export zoo.h5 --summary max -o zoo_summary.csv
    """
    results = read_results(results_path)
    if model_pair is not None and summary is not None:
        raise click.UsageError("give --models or --summary, not both")
    if model_pair is not None:
        names = [m.strip() for m in model_pair.split(",")]
        if len(names) != 2:
            raise click.BadParameter(f"{model_pair!r}: expected two model names, A,B", param_hint="--models")
        results = results.block(names[0], names[1])
    elif summary is not None:
        results = summary_results(results, spec, summary)
        spec = None
    suffix = Path(out).suffix.lower()
    if out in ("-", os.devnull) or suffix == ".csv":
        text = wide_csv_text(results, spec) if wide or summary else csv_text(results, spec)
        write_text(text, out)
        return
    if suffix not in IMAGE_SUFFIXES:
        raise ResultsError(f"{out}: unknown export format (use .png, .svg, .pdf, .csv or -)")
    from ..export.heatmap import HeatmapStyle, write_heatmap

    style = HeatmapStyle(annotate=annotate, cmap=cmap, std_error=std_error, vmin=vmin, vmax=vmax,
                         value_range=value_range, title=title, digits=digits)  # fmt: skip
    write_heatmap(results, out, spec=spec, style=style)
