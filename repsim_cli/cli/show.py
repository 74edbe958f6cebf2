"""``repsim show``: a results matrix drawn in the terminal."""

from __future__ import annotations

import click

from ..export.terminal import render_matrix
from ..results import read_results


@click.command("show")
@click.argument("results_path", metavar="RESULTS")
@click.option("--metric", "spec", default=None, metavar="SPEC", help="Which metric; default: the first.")
@click.option("--digits", default=2, show_default=True, type=click.IntRange(0, 8), help="Decimals per cell.")
def command(results_path: str, spec: str | None, digits: int) -> None:
    """Draw a results matrix in the terminal, coloured by value.

    \b
    Example:
      repsim show cka.h5 --metric cka
    """
    render_matrix(read_results(results_path), spec, digits)
