"""The ``repsim`` command line: a thin layer of click commands over the library."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import warnings
from collections.abc import Sequence
from typing import Any

import click

from .._version import __version__
from ._errors import RepsimGroup

EXIT_INTERRUPTED = 130


def _show_warning(message: Any, category: Any, *args: Any, **kwargs: Any) -> None:
    click.echo(f"Warning: {message}", err=True)


@click.group(cls=RepsimGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="repsim")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
def cli(debug: bool) -> None:
    """repsim: which layers of which networks represent the data alike?

    \b
    Typical session:
      repsim import a.npz -o a.h5
      repsim compare a.h5 b.h5 -m cka -o cka.h5
      repsim export cka.h5 -o cka.png
    """
    warnings.showwarning = _show_warning


def _register_commands() -> None:
    from . import compare, export, import_, info, metrics, show

    for module in (import_, info, compare, export, show, metrics):
        cli.add_command(module.command)
    for optional in ("extract", "merge", "verify"):  # commands added by later modules, when present
        if importlib.util.find_spec(f"{__name__}.{optional}") is not None:
            cli.add_command(importlib.import_module(f"{__name__}.{optional}").command)


_register_commands()


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point: runs the CLI, mapping Ctrl-C to exit code 130."""
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="repsim", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, click.exceptions.Abort):
        click.echo("Interrupted.", err=True)
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(0)
