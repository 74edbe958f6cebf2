"""A rich console on stdout that treats a closed pipe like any other writer does.

rich's own handling of a broken pipe exits with status 1; ``repsim ... | head`` is not an error,
so the console raises :class:`BrokenPipeError` instead, which the CLI ends with status 0.
"""

from __future__ import annotations

from typing import Any


def stdout_console(**kwargs: Any) -> Any:
    """A ``rich.console.Console`` on stdout (``kwargs`` as for Console) whose broken pipe raises
    :class:`BrokenPipeError`."""
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            raise BrokenPipeError("stdout was closed")

    return _Console(**kwargs)
