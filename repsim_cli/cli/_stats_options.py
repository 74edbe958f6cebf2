"""``compare``'s options for per-cell uncertainty (see :mod:`repsim_cli.stats`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from ..errors import RepsimError
from ..stats.options import StatsOptions

F = TypeVar("F", bound=Callable[..., Any])

__all__ = ["statistics_options", "stats_options"]


def statistics_options(fn: F) -> F:
    """Add --bootstrap, --ci, --ci-method, --seed, --jackknife, --permutations, --null and --adjust."""
    options = [
        click.option("--bootstrap", type=click.IntRange(min=0), default=0, metavar="B",
                     help="Paired bootstrap over examples: B replicates, an interval per cell (--ci, --ci-method)."),
        click.option("--ci", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.95,
                     show_default=True, help="Level of the bootstrap interval."),
        click.option("--ci-method", type=click.Choice(["percentile", "bca"]), default="percentile",
                     show_default=True, help="Bootstrap interval: percentile, or BCa (bias-corrected and "
                     "accelerated; needs the n leave-one-out values, in closed form for the CKA family "
                     "and dcor)."),
        click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
                     help="Seed of the bootstrap replicates and permutations."),
        click.option("--jackknife", is_flag=True, help="Leave-one-out standard error per cell (std_error)."),
        click.option("--permutations", type=click.IntRange(min=0), default=0, metavar="P",
                     help="Permutation test of no relationship: P permutations of one side's examples."),
        click.option("--null", "null", type=click.Choice(["permutation", "gamma"]), default="permutation",
                     show_default=True, help="Null of the test: permutations, or the gamma fit "
                     "(biased cka/cka_rbf; no permutations needed)."),
        click.option("--adjust", type=click.Choice(["holm", "bh", "none"]), default="holm", show_default=True,
                     help="Adjust the p-values across the cells of each matrix."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def stats_options(values: dict[str, Any]) -> StatsOptions | None:
    """The parsed options as :class:`StatsOptions` (None when no statistic is asked for).

    An option that would change nothing (``--ci`` without ``--bootstrap``; ``--adjust`` or
    ``--null permutation`` without a test) is a usage error rather than silently ignored.
    """
    try:
        opts = StatsOptions(bootstrap=values["bootstrap"], ci=values["ci"], seed=values["seed"],
                            jackknife=values["jackknife"], permutations=values["permutations"],
                            null=values["null"], adjust=values["adjust"],
                            ci_method=values["ci_method"])  # fmt: skip
    except RepsimError as exc:  # options that contradict each other: a usage error, as click's
        raise click.UsageError(str(exc)) from None
    given = _given_on_command_line()
    for name, what in (("ci", "the level of"), ("ci_method", "the method of")):
        if name in given and not opts.bootstrap:
            raise click.UsageError(f"--{name.replace('_', '-')} sets {what} the bootstrap intervals: "
                                   "give --bootstrap B too")  # fmt: skip
    if not opts.testing:
        for name in ("adjust", "null"):
            if name in given:
                raise click.UsageError(f"--{name} applies to p-values: give --permutations P "
                                       "(or --null gamma) too")  # fmt: skip
    return opts if opts.active else None


def _given_on_command_line() -> set[str]:
    """Names of the statistics options the user set explicitly (not by their defaults)."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return set()
    names = ("ci", "ci_method", "adjust", "null")
    return {n for n in names if ctx.get_parameter_source(n) not in (None, click.core.ParameterSource.DEFAULT)}
