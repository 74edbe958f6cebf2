"""``repsim export``: heatmaps and CSVs from a results file."""

from __future__ import annotations

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
@click.option("--cmap", default=None, help="Matplotlib colormap (default: viridis, or magma_r for distances).")
@click.option("--std-error", is_flag=True, help="Plot the Monte Carlo standard error instead of the value.")
@click.option("--models", "model_pair", default=None, metavar="A,B",
              help="N-model results: export the block of model A's layers against model B's.")
@click.option("--summary", type=click.Choice(SUMMARIES), default=None,
              help="N-model results: a model × model matrix of each block's max (min for a "
                   "distance), mean over same-named layers (matched), or mean of all cells.")
def command(results_path: str, out: str, spec: str | None, wide: bool, annotate: bool,
            cmap: str | None, std_error: bool, model_pair: str | None, summary: str | None) -> None:
    """Export a results file (from `repsim compare`) as a heatmap or a CSV.

    Results of three or more stores draw as a grid of model-pair blocks; --models A,B picks one
    block and --summary makes a model × model matrix.

    \b
    Examples:
      repsim export cka.h5 -o cka.png --annotate
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
    if out == "-" or suffix == ".csv":
        text = wide_csv_text(results, spec) if wide or summary else csv_text(results, spec)
        write_text(text, out)
        return
    if suffix not in IMAGE_SUFFIXES:
        raise ResultsError(f"{out}: unknown export format (use .png, .svg, .pdf, .csv or -)")
    from ..export.heatmap import write_heatmap

    write_heatmap(results, out, spec=spec, annotate=annotate, cmap=cmap, std_error=std_error)
