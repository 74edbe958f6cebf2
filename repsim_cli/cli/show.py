"""``repsim show``: a results matrix drawn in the terminal."""

from __future__ import annotations

import click

from ..export.terminal import render_matrix
from ..results import read_results


@click.command("show")
@click.argument("results_path", metavar="RESULTS")
@click.option("--metric", "spec", default=None, metavar="SPEC", help="Which metric; default: the first.")
@click.option("--digits", default=2, show_default=True, type=click.IntRange(0, 8), help="Decimals per cell.")
@click.option("--models", "model_pair", default=None, metavar="A,B",
              help="N-model results: only the block of model A against model B (default: every block).")
@click.option("--no-stats", is_flag=True,
              help="Values only, without the intervals, standard errors and p-values compare stored.")
def command(results_path: str, spec: str | None, digits: int, model_pair: str | None,
            no_stats: bool) -> None:  # fmt: skip
    """Draw a results matrix in the terminal, coloured by value (one table per model pair).

    When compare computed them, each cell also shows its confidence interval [low, high] (or
    ± its standard error) and its p-value (the adjusted one when there is one).

    \b
    Example:
      repsim show cka.h5 --metric cka
      repsim show zoo.h5 --models seed0,seed1
    """
    results = read_results(results_path)
    if model_pair is not None:
        names = [m.strip() for m in model_pair.split(",")]
        if len(names) != 2:
            raise click.BadParameter(f"{model_pair!r}: expected two model names, A,B", param_hint="--models")
        blocks = [results.block(names[0], names[1])]
    elif results.multi_block:
        blocks = [results.block(i, j) for i, j in results.model_pairs]
    else:
        blocks = [results]
    for block in blocks:
        if results.multi_block or model_pair is not None:
            click.echo(f"{' vs '.join(block.models if len(block.models) == 2 else block.models * 2)}:")
        render_matrix(block, spec, digits, stats=not no_stats)
