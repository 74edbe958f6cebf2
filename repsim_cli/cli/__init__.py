"""The ``repsim`` command line: a thin layer of click commands over the library."""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import sys
import traceback
import warnings
from collections.abc import Iterator, Sequence
from types import FrameType
from typing import Any

import click

from .._version import __version__
from ..errors import RepsimError
from ._errors import RepsimGroup, discard_stdout, report_bug
from ._resume import interrupted_message, remember_argv

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_INTERRUPTED = 130
# Signals that stop a run the way Ctrl-C does: the work is kept and the resume command printed.
STOP_SIGNALS = ("SIGTERM", "SIGHUP")


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


# Each command's module, imported when the command is used (or listed with its help): a run of
# one command does not pay for importing the others.
COMMAND_MODULES = {
    "import": "import_", "info": "info", "compare": "compare", "export": "export", "show": "show",
    "metrics": "metrics", "extract": "extract", "merge": "merge", "verify": "verify",
    "layer-match": "layer_match", "influence": "influence",
}  # fmt: skip


class LazyCommands(dict[str, click.Command]):
    """The group's commands by name; a command's module is imported on first access."""

    def __init__(self, modules: dict[str, str]) -> None:
        super().__init__()
        self._modules = dict(modules)

    def _load(self, name: str) -> None:
        if not dict.__contains__(self, name) and name in self._modules:
            module = importlib.import_module(f"{__name__}.{self._modules[name]}")
            dict.__setitem__(self, name, module.command)

    def get(self, name: str, default: Any = None) -> Any:
        self._load(name)
        return dict.get(self, name, default)

    def __getitem__(self, name: str) -> click.Command:
        self._load(name)
        return dict.__getitem__(self, name)

    def __contains__(self, name: object) -> bool:
        return name in self._modules or dict.__contains__(self, name)

    def keys(self) -> list[str]:  # type: ignore[override]
        return [*self._modules, *(n for n in dict.keys(self) if n not in self._modules)]

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())

    def items(self) -> list[tuple[str, click.Command]]:  # type: ignore[override]
        return [(name, self[name]) for name in self.keys()]

    def values(self) -> list[click.Command]:  # type: ignore[override]
        return [self[name] for name in self.keys()]


cli.commands = LazyCommands(COMMAND_MODULES)


class _Stopped(KeyboardInterrupt):
    """Raised in the main thread when a stop signal (SIGTERM, SIGHUP) arrives."""


@contextlib.contextmanager
def _stop_signals_interrupt() -> Iterator[None]:
    """Make SIGTERM and SIGHUP raise KeyboardInterrupt, as Ctrl-C does; later ones are ignored
    while the first is being handled (the cleanup that keeps the partial work must finish)."""
    stopping = False

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            raise _Stopped(signal.Signals(signum).name)

    previous: dict[int, Any] = {}
    for name in STOP_SIGNALS:
        signum = getattr(signal, name, None)
        if signum is not None:
            with contextlib.suppress(ValueError, OSError):  # not the main thread
                previous[signum] = signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum, old in previous.items():
            with contextlib.suppress(ValueError, OSError):
                signal.signal(signum, old)


def _run(args: list[str]) -> int:
    try:
        with _stop_signals_interrupt():
            code = cli.main(args=args, prog_name="repsim", standalone_mode=False)
            sys.stdout.flush()
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except (KeyboardInterrupt, click.exceptions.Abort):
        with contextlib.suppress(OSError):  # after SIGHUP the terminal may be gone
            click.echo(interrupted_message(), err=True)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        discard_stdout()
        return EXIT_OK
    except RepsimError:  # only with --debug: the user asked for the traceback
        traceback.print_exc()
        return EXIT_ERROR
    except Exception as exc:  # noqa: BLE001 (any other exception is a bug: shown, not hidden)
        report_bug(exc)
        return EXIT_ERROR
    return code if isinstance(code, int) else EXIT_OK


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point. Exit status: 0 success (also when the reader of stdout went away),
    1 data errors (one ``Error:`` line) and bugs (a traceback), 2 usage errors, 130 interrupted
    (Ctrl-C, SIGINT, SIGTERM, SIGHUP)."""
    args = list(argv) if argv is not None else sys.argv[1:]
    remember_argv(args)
    if sys.stdout is None:  # started with stdout closed: print nothing, fail on nothing
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (lives until exit)
    code = _run(args)
    sys.exit(code)
