"""Progress reporting on stderr (rich); silent when quiet or when stderr is not a terminal."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

# A progress callback: (description, completed, total). The library calls it; the CLI renders it.
ProgressFn = Callable[[str, float, float], None]


def no_progress(description: str, completed: float, total: float) -> None:
    """The do-nothing progress callback used by the library when none is given."""


class StderrProgress(AbstractContextManager["StderrProgress"]):
    """A rich progress bar on stderr that accepts :data:`ProgressFn` calls."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._progress: Any = None
        self._tasks: dict[str, Any] = {}

    def __enter__(self) -> StderrProgress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )  # fmt: skip

            console = Console(stderr=True)
            if console.is_terminal:
                self._progress = Progress(
                    TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=True,
                )  # fmt: skip
                self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def __call__(self, description: str, completed: float, total: float) -> None:
        if self._progress is None:
            return
        task = self._tasks.get(description)
        if task is None:
            task = self._tasks[description] = self._progress.add_task(description, total=total)
        self._progress.update(task, completed=completed, total=total)


def progress_context(enabled: bool) -> AbstractContextManager[Any]:
    return StderrProgress(enabled) if enabled else nullcontext(no_progress)
