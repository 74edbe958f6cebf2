"""``repsim influence``: which examples decide one cell (exact leave-one-out changes)."""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import Any

import click

from .._progress import progress_context
from .._units import format_size
from .._warnings import RepsimWarning
from ..errors import BudgetError, OutputError, OutputIsInputError
from ..outputs import check_not_input, resolved
from ._guard import guarded_output
from ._options import MetricType, SizeType, quiet_option

OUTPUT_SUFFIXES = (".csv", ".json")
PLOT_SUFFIXES = (".png", ".svg", ".pdf")


@click.command("influence")
@click.argument("store_a", metavar="STORE_A")
@click.argument("store_b", metavar="[STORE_B]", required=False)
@click.option("--layer-a", required=True, metavar="LAYER", help="Layer of STORE_A (exact name).")
@click.option("--layer-b", default=None, metavar="LAYER",
              help="Layer of STORE_B (exact name; default: the same name as --layer-a).")
@click.option("-m", "--metric", "metrics", required=True, multiple=True, type=MetricType(),
              help="Metric spec as for compare, e.g. cka or cka:debiased=true (one).")
@click.option("--top", default=10, show_default=True, type=click.IntRange(0),
              help="Examples listed on stdout (0: none; -o writes all of them).")
@click.option("-o", "--out", "out", default=None, metavar="FILE",
              help="Every example's change, sorted: .csv or .json (with the summary).")
@click.option("--plot", default=None, metavar="FILE", help="Change against rank: .png, .svg or .pdf.")
@click.option("--memory", type=SizeType(), default=None,
              help="Memory budget, e.g. 4GiB (default: half of RAM).")
@quiet_option
def command(store_a: str, store_b: str | None, layer_a: str, layer_b: str | None, metrics: tuple[Any, ...],
            top: int, out: str | None, plot: str | None, memory: int | None,
            quiet: bool) -> None:  # fmt: skip
    """For each example, the exact change of one cell's value when that example is left out.

    Compares LAYER_A of STORE_A with LAYER_B of STORE_B (STORE_B defaults to STORE_A) under one
    metric, ranks the examples by the size of their change, and says whether a handful (≤ 1% of
    the examples) decides the value. Linear CKA, RBF CKA and dcor use a closed form (O(n²));
    other metrics are recomputed n times (a progress line and a cost warning say so).

    \b
    Examples:
      repsim influence a.h5 b.h5 --layer-a fc1 --layer-b fc1 -m cka
      repsim influence a.h5 --layer-a fc1 --layer-b fc2 -m cka:debiased=true -o fc.csv --plot fc.png
    """
    from ..compare import check_aligned
    from ..engine.plan import default_budget
    from ..influence import influence, memory_needed
    from ..store import open_store

    if len(metrics) > 1:  # click keeps the last of a repeated option: say so instead
        raise click.UsageError(f"influence takes one metric (-m), got {len(metrics)}: "
                               f"{', '.join(m.text for m in metrics)}; run it once per metric")  # fmt: skip
    spec = metrics[0]
    layer_b = layer_b or layer_a
    path_b = store_b or store_a
    for target, suffixes in ((out, OUTPUT_SUFFIXES), (plot, PLOT_SUFFIXES)):
        if target is not None:
            try:
                check_not_input(target, [store_a, path_b])
            except OutputIsInputError as exc:
                raise click.UsageError(str(exc)) from None
            if Path(target).suffix.lower() not in suffixes:
                raise OutputError(f"{target}: unknown format (use {', '.join(suffixes)})")
    if out is not None and plot is not None and resolved(out) == resolved(plot):
        raise OutputError(f"-o and --plot name the same file {out!r}")
    with contextlib.ExitStack() as stack:
        for target in (out, plot):  # not an input (exit 2), its directory exists: before any work
            stack.enter_context(guarded_output(target, [store_a, path_b]))
        a = stack.enter_context(open_store(store_a))
        b = a if resolved(path_b) == resolved(store_a) else stack.enter_context(open_store(path_b))
        check_aligned(a, b)
        info_a, info_b = a.info(layer_a), b.info(layer_b)  # unknown layers: one line naming them
        need = memory_needed(a.n_samples, info_a.width, info_b.width, spec)
        budget = memory or default_budget()
        if need > budget:
            raise BudgetError(
                f"influence of {layer_a!r} and {layer_b!r} over {a.n_samples:,} examples needs about "
                f"{format_size(need)} (n×n float64 matrices), more than the budget "
                f"{format_size(budget)}; raise --memory or compare a subset of the examples"
            )
        x = a.read_rows(layer_a, 0, a.n_samples)
        y = b.read_rows(layer_b, 0, b.n_samples)
        ids = a.ids()
        labels = {"store_a": store_a, "store_b": path_b, "layer_a": layer_a, "layer_b": layer_b}

        def cost(seconds: float) -> None:
            warnings.warn(
                f"metric {spec.name!r} has no closed-form leave-one-out: recomputing it "
                f"{x.shape[0]:,} times on {x.shape[0] - 1:,} examples (about {_duration(seconds)}, "
                "n × the time of the full value)", RepsimWarning, stacklevel=2,
            )  # fmt: skip

        with progress_context(not quiet) as progress:
            report = influence(x, y, spec, ids, progress=progress, on_cost=cost, labels=labels)
        _print(report, top)
        if out is not None:
            from ..results import write_text

            write_text(report.to_json() if out.lower().endswith(".json") else report.to_csv(), out)
        if plot is not None:
            from ..export.influence_plot import write_influence_plot

            write_influence_plot(report, plot)


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{max(seconds, 0.1):.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _print(report: object, top: int) -> None:
    from ..influence import Influence

    assert isinstance(report, Influence)
    lab = report.labels
    click.echo(f"{report.spec} ({report.kind}), A: {lab['store_a']} [{lab['layer_a']}], "
               f"B: {lab['store_b']} [{lab['layer_b']}], n = {report.n:,}")  # fmt: skip
    click.echo(f"value: {report.value:.6g}; leave-one-out by {report.method}")
    click.echo(f"variance on the first principal component: A {report.pc1_share_a:.1%}, "
               f"B {report.pc1_share_b:.1%}")  # fmt: skip
    click.echo(f"threshold: |change − median change| > {report.threshold:.3g} "
               "(√n robust SDs of the changes, at least 0.1% of the value)")
    rows = report.records()[:top]
    if rows:
        ids = [str(r["sample_id"]) for r in rows]
        wid = max(len("sample id"), *(len(i) for i in ids))
        click.echo(f"{'rank':>5}  {'index':>7}  {'sample id':<{wid}}  {'without it':>12}  {'change':>12}")
        for r, sid in zip(rows, ids, strict=True):
            without = "nan" if r["value_without"] is None else f"{r['value_without']:.6g}"
            change = "nan" if r["change"] is None else f"{r['change']:+.4g}"
            mark = "  *" if r["dominant"] else ""
            click.echo(f"{r['rank']:>5}  {r['index']:>7}  {sid:<{wid}}  {without:>12}  {change:>12}{mark}")
    click.echo(f"verdict: {report.verdict()}")
