"""The one place where library errors become CLI errors (message, exit code).

Only repsim's own error types (:class:`~repsim_cli.errors.RepsimError`) become one ``Error:`` line
with exit code 1: they are raised on purpose, with a message naming the file, layer and problem.
Any other exception is a bug; it propagates to :func:`repsim_cli.cli.main`, which prints its
traceback and asks for a report (:func:`report_bug`).
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from typing import Any

import click

from .._version import __version__
from ..errors import RepsimError

EXIT_DATA_ERROR = 1
ISSUES_HINT = "please report it with the command line and the traceback above"


class RepsimGroup(click.Group):
    """A click group that turns :class:`RepsimError` into ``Error: <message>`` with exit code 1.

    With ``--debug`` the original exception propagates (traceback). Other exceptions are left
    alone: they are bugs, not user errors, and must not hide behind a one-line message.
    """

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:  # fmt: skip
        # ``repsim --help`` and ``--version`` print while their options are parsed.
        try:
            return super().make_context(info_name, args, parent, **extra)
        except BrokenPipeError:
            discard_stdout()
            raise click.exceptions.Exit(0) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RepsimError as exc:
            if ctx.find_root().params.get("debug"):
                raise
            raise click.ClickException(str(exc)) from None
        except BrokenPipeError:
            # The reader of stdout went away (``repsim ... | head``): not an error. Caught here,
            # before click's own handler, which would exit with status 1.
            discard_stdout()
            raise click.exceptions.Exit(0) from None


def discard_stdout() -> None:
    """Point stdout at /dev/null so that nothing more (not even the final flush at exit) fails
    on a closed pipe."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def report_bug(exc: BaseException) -> None:
    """Print ``exc``'s traceback and a line saying this is a bug in repsim to report."""
    traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    print(
        f"This is a bug in repsim {__version__} (an unexpected {type(exc).__name__}); "
        f"{ISSUES_HINT}.",
        file=sys.stderr,
    )
