"""``repsim layer-match``: the layer-identification test (Kornblith et al. 2019) as a command."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import click

from .._progress import progress_context
from ..compare import default_model_name, read_store_list
from ..errors import RepsimError, ResultsError
from ..layer_match import (
    MATCH_BY,
    OUTPUT_SUFFIXES,
    PLOT_SUFFIXES,
    TIE_TOL,
    LayerMatchReport,
    match_models,
    match_results,
    write_plot,
    write_report,
)
from ._options import SizeType, quiet_option


def _is_results_file(path: str) -> bool:
    """True for a results CSV or a results store (``repsim_format="similarity"``)."""
    p = Path(path)
    if p.suffix.lower() == ".csv":
        return True
    if not p.exists():
        return False
    from ..results import FORMAT
    from ..store._container import open_container

    try:
        with open_container(p, "r") as c:
            return bool(c.get_attrs().get("repsim_format") == FORMAT)
    except (RepsimError, OSError):
        return False  # not readable as a container: let open_store say why


@click.command("layer-match")
@click.argument("inputs", metavar="STORE... | RESULTS", nargs=-1)
@click.option("--stores", "stores_file", type=click.Path(dir_okay=False), default=None,
              help="A file listing stores, one [NAME=]PATH per line (with or after STORE...).")
@click.option("-m", "--metric", "metrics", multiple=True, metavar="SPEC",
              help="NAME[:key=value,...]; repeat for several. Required with stores; with a results "
                   "file, which of its metrics (default: all).")
@click.option("--match-by", type=click.Choice(MATCH_BY), default="name", show_default=True,
              help="Which layer of the other model is the right answer: the one with the same name, "
                   "or at the same position.")
@click.option("--layers", "layers_all", multiple=True, metavar="GLOB",
              help="Layers of every store to use (globs, repeatable or comma-separated).")
@click.option("-o", "--out", default=None, metavar="PATH",
              help="Also write the report: .csv (long format) or .json.")
@click.option("--plot", default=None, metavar="PATH",
              help="Bar chart of the per-layer hit rates and accuracy: .png, .svg or .pdf.")
@click.option("--tie-tol", type=click.FloatRange(min=0.0), default=TIE_TOL, show_default=True,
              help="Scores within this (× max(1, |best|)) of the best are a tie (a miss).")
@click.option("--memory", type=SizeType(), default=None, help="Memory budget, e.g. 4GiB (default: half of RAM).")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Cap the BLAS threads.")
@click.option("--precision", type=click.Choice(["float32", "float64"]), default=None,
              help="GEMM precision (default: float32 for float16/32 stores, float64 otherwise).")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="Where Grams and states spill when they exceed --memory.")
@quiet_option
def command(
    inputs: tuple[str, ...], stores_file: str | None, metrics: tuple[str, ...], match_by: str,
    layers_all: tuple[str, ...], out: str | None, plot: str | None, tie_tol: float,
    memory: int | None, threads: int | None, precision: str | None, cache_dir: str | None,
    quiet: bool,
) -> None:
    """Does a metric find layer l of one network as most like layer l of another?

    The layer-identification test of Kornblith et al. (2019): for every ordered pair of distinct
    models (i, j) and every layer l of model i, a hit when the best of model j's layers (argmax;
    argmin for distances) is the corresponding layer (same name, or same position with
    --match-by index). Asymmetric metrics score S_ij + S_jiᵀ. Ties count as misses and are
    reported. Input: two or more stores of one architecture, or one results file of an N-store
    `repsim compare` (nothing is recomputed). Prints accuracy per metric, per-layer hit rates and
    confusion counts.

    \b
    Examples:
      repsim layer-match seed0.h5 seed1.h5 seed2.h5 -m cka -m cca -o match.csv --plot match.png
      repsim compare seed*.h5 -m cka -o zoo.h5 && repsim layer-match zoo.h5
      repsim layer-match a=run1/net.h5 b=run2/net.h5 -m cka --match-by index --layers 'block*'
    """
    if out is not None and Path(out).suffix.lower() not in OUTPUT_SUFFIXES:
        raise ResultsError(f"{out}: unknown output format (use .csv or .json)")
    if plot is not None and Path(plot).suffix.lower() not in PLOT_SUFFIXES:
        raise ResultsError(f"{plot}: unknown plot format (use .png, .svg or .pdf)")
    named = read_store_list(inputs, stores_file)
    if not named:
        raise click.UsageError("layer-match needs two or more stores, or one results file")
    report: LayerMatchReport
    if len(named) == 1 and _is_results_file(named[0][1]):
        if layers_all:
            raise click.UsageError("--layers selects layers of stores; a results file is used whole")
        from ..results import read_results

        report = match_results(read_results(named[0][1]), list(metrics) or None, match_by=match_by,
                               tie_tol=tie_tol)  # fmt: skip
    else:
        if not metrics:
            raise click.UsageError("give at least one metric with -m when the inputs are stores")
        from ..metrics import parse_spec

        try:
            specs = [parse_spec(m) for m in metrics]
        except RepsimError as exc:
            raise click.BadParameter(str(exc), param_hint="'-m' / '--metric'") from None
        from ..store import open_store

        with ExitStack() as stack:
            opened = [(name, stack.enter_context(open_store(path))) for name, path in named]
            if len(opened) < 2:
                raise RepsimError(
                    f"{named[0][1]}: layer-match needs at least two stores of the same architecture "
                    "(or one results file of an N-store compare)"
                )
            progress = stack.enter_context(progress_context(not quiet))
            if threads:
                from threadpoolctl import threadpool_limits

                stack.enter_context(threadpool_limits(limits=threads))
            names = [name or default_model_name(path, [p for _, p in named]) for name, path in named]
            report = match_models(
                [(nm, store) for nm, (_, store) in zip(names, opened, strict=True)], specs,
                match_by=match_by, layers=[list(layers_all) or None] * len(opened), tie_tol=tie_tol,
                memory=memory, precision=precision, progress=progress,
                cache_dir=cache_dir or (Path(out).parent if out else None),
            )  # fmt: skip
    click.echo(report.table_text(), nl=False)
    for path, write in ((out, write_report), (plot, write_plot)):
        if path is not None:
            write(report, path)
            if not quiet:
                click.echo(f"wrote {path}", err=True)
