"""The command line's guard around an output: not an input (usage error, exit 2), its directory
exists, and this process holds its lock for the whole command (see :mod:`repsim_cli.outputs`)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator

import click

from ..errors import OutputIsInputError
from ..outputs import check_not_input, check_output_dir, output_lock


@contextlib.contextmanager
def guarded_output(
    out: str | os.PathLike[str] | None, inputs: Iterable[str | os.PathLike[str] | None], what: str = "input"
) -> Iterator[None]:
    """Check ``out`` against ``inputs`` and its directory, then hold its lock (``-``, ``os.devnull``
    or None: no-op)."""
    if out is None or str(out) in ("-", os.devnull):
        yield
        return
    try:
        check_not_input(out, inputs, what)
    except OutputIsInputError as exc:
        raise click.UsageError(str(exc)) from None
    check_output_dir(out)
    with output_lock(out):
        yield
