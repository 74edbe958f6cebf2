"""``repsim export``: heatmaps and CSVs from a results file."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import click

from ..errors import RepsimError, ResultsError
from ..export.stats_view import WHAT, Mark, parse_mark, statistic_matrix
from ..results import (
    SUMMARIES,
    Results,
    csv_text,
    read_results,
    summary_results,
    wide_csv_text,
    write_text,
)  # fmt: skip
from ._options import output_option

IMAGE_SUFFIXES = (".png", ".svg", ".pdf")
ANNOTATIONS = ("value", "error")


class _ExportCommand(click.Command):
    """``--annotate`` takes an optional value (``value`` or ``error``): a bare ``--annotate``
    (the flag of earlier versions), in any position, means ``--annotate value``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, bare_annotate_as_value(args))


def bare_annotate_as_value(args: list[str]) -> list[str]:
    """Rewrite each bare ``--annotate`` as ``--annotate=value`` (options after ``--`` are left
    alone). ``--annotate`` is bare when the next argument is missing, an option or a path (an
    existing file, or a name with a suffix or a directory); any other word is left as its value,
    so that a misspelt choice is refused by ``--annotate`` itself, naming the choices."""
    out: list[str] = []
    for k, arg in enumerate(args):
        if arg == "--":
            return out + args[k:]
        if arg == "--annotate" and (k + 1 >= len(args) or _not_a_choice_word(args[k + 1])):
            out.append("--annotate=value")
        else:
            out.append(arg)
    return out


def _not_a_choice_word(arg: str) -> bool:
    if arg in ANNOTATIONS:
        return False
    return arg.startswith("-") or os.path.exists(arg) or bool(Path(arg).suffix) or os.sep in arg


def _marks(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[Mark, ...]:
    try:
        return tuple(parse_mark(v) for v in values)
    except RepsimError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


@click.command("export", cls=_ExportCommand)
@click.argument("results_path", metavar="RESULTS")
@output_option("A heatmap (.png, .svg, .pdf) or a CSV (.csv, or - for stdout).")
@click.option("--metric", "spec", default=None, metavar="SPEC",
              help="Which metric (spec as given to compare, or its name); default: the first.")
@click.option("--wide", is_flag=True, help="CSV as a matrix (rows: layers of A) instead of long format.")
@click.option("--annotate", type=click.Choice(ANNOTATIONS), default=None,
              help="Write each heatmap cell's value (--annotate, or --annotate value), or "
                   "'value ± standard error' (--annotate error).")
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
@click.option("--std-error", is_flag=True, help="Plot the standard error instead of the value "
              "(the same as --what std_error).")
@click.option("--what", type=click.Choice(WHAT), default="value", show_default=True,
              help="The matrix drawn: the value, or one of its statistics from compare "
                   "--bootstrap/--jackknife/--permutations (also the matrix of a --wide CSV).")
@click.option("--mark", "marks", multiple=True, callback=_marks, metavar="TEST",
              help="Star the heatmap cells that pass TEST: p<0.05, p_adjusted<0.05 (also <=), "
                   "ci-excludes-0. Repeat to require several.")
@click.option("--models", "model_pair", default=None, metavar="A,B",
              help="N-model results: export the block of model A's layers against model B's.")
@click.option("--summary", type=click.Choice(SUMMARIES), default=None,
              help="N-model results: a model × model matrix of each block's max (min for a "
                   "distance), mean over same-named layers (matched), or mean of all cells.")
def command(results_path: str, out: str, spec: str | None, wide: bool, annotate: str | None,
            digits: int | None, cmap: str | None, vmin: float | None, vmax: float | None,
            value_range: str, title: str | None, std_error: bool, what: str,
            marks: tuple[Mark, ...], model_pair: str | None, summary: str | None) -> None:  # fmt: skip
    """Export a results file (from `repsim compare`) as a heatmap or a CSV.

    Heatmaps embed their text as TrueType (PDF) or text (SVG), so they can go into a paper as
    they are. Results of three or more stores draw as a grid of model-pair blocks; --models A,B
    picks one block and --summary makes a model × model matrix.

    \b
    Examples:
      repsim export cka.h5 -o cka.png --annotate
      repsim export cka.h5 -o cka.png --annotate error --mark 'p_adjusted<0.05'
      repsim export cka.h5 -o cka_ci.png --what ci-width
      repsim export cka.h5 -o cka.pdf --range data --cmap magma --title 'CKA, seed 0 vs 1'
      repsim export cka.h5 --metric cka:debiased=true --wide -o cka_wide.csv
      repsim export zoo.h5 --models seed0,seed1 -o seed0_seed1.png
      repsim export zoo.h5 --summary max -o zoo_summary.csv
    """
    results = read_results(results_path)
    if std_error and what not in ("value", "std_error"):
        raise click.UsageError(f"give --std-error or --what {what}, not both")
    drawn = "std_error" if std_error else what
    if model_pair is not None and summary is not None:
        raise click.UsageError("give --models or --summary, not both")
    if summary is not None and (drawn != "value" or marks or annotate == "error"):
        raise click.UsageError("--summary draws values only (no --what, --mark, --annotate error)")
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
        if marks or annotate:
            raise click.UsageError("--mark and --annotate draw on heatmaps (.png, .svg, .pdf); "
                                   "the long CSV holds every statistic as a column")  # fmt: skip
        if drawn != "value" and not (wide and not summary):
            raise click.UsageError(f"--what {drawn} with a CSV needs --wide (a matrix of that "
                                   "statistic); the long CSV holds every statistic as a column")  # fmt: skip
        if drawn != "value":
            results = _statistic_as_value(results, spec, drawn)
            spec = None
        text = wide_csv_text(results, spec) if wide or summary else csv_text(results, spec)
        write_text(text, out)
        return
    if suffix not in IMAGE_SUFFIXES:
        raise ResultsError(f"{out}: unknown export format (use .png, .svg, .pdf, .csv or -)")
    from ..export.heatmap import HeatmapStyle, write_heatmap

    style = HeatmapStyle(annotate=annotate is not None, cmap=cmap, vmin=vmin, vmax=vmax,
                         value_range=value_range, title=title, digits=digits, what=drawn,
                         annotate_error=annotate == "error", marks=marks)  # fmt: skip
    write_heatmap(results, out, spec=spec, style=style)


def _statistic_as_value(results: Results, spec: str | None, what: str) -> Results:
    """The results with one metric whose value matrix is the statistic ``what``."""
    m = results.get(spec)
    data, _ = statistic_matrix(m, what)
    fields: dict[str, Any] = {"value": data, "std_error": None, "stats": {}}
    return Results(results.layers_a, results.layers_b, {m.spec: dataclasses.replace(m, **fields)},
                   dict(results.attrs))  # fmt: skip
