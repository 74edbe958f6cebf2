"""Progress reporting on stderr: a live bar on a terminal, plain lines in batch logs, or nothing.

When stderr is not a terminal (SLURM logs, Make, ``2> log``), a live bar would be invisible or
garbage, so progress is printed as plain lines at a steady pace instead: one line per task when
at least :data:`LINE_INTERVAL` seconds passed since the last line, or the task advanced by
:data:`LINE_STEP` of its total (but not more often than every :data:`MIN_LINE_GAP` seconds), and
one when it finishes, e.g. ``extract: 2,048/10,000 samples (20%), 1,234 samples/s, ETA 0:00:07``.
``-q`` silences both.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, TextIO

# A progress callback: (description, completed, total). The library calls it; the CLI renders it.
ProgressFn = Callable[[str, float, float], None]

LINE_INTERVAL = 10.0  # seconds between plain lines of a slow task
LINE_STEP = 0.05  # fraction of a task's total that earns a line (rate-limited by MIN_LINE_GAP)
MIN_LINE_GAP = 1.0  # seconds
# The unit counted by each task the library reports (by the start of its description).
UNITS = (("extract", "samples"), ("reading ", "rows"), ("feature-side pass", "rows"),
         ("centred Grams", "layers"), ("Gram tiles", "tiles"), ("statistics of", "cells"))  # fmt: skip


def no_progress(description: str, completed: float, total: float) -> None:
    """The do-nothing progress callback used by the library when none is given."""


def unit_of(description: str) -> str:
    """What a task counts (``samples``, ``rows``, ...), from its description; ``""`` if unknown."""
    return next((unit for start, unit in UNITS if description.startswith(start)), "")


def _duration(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


@dataclass
class _Task:
    started_at: float
    started_from: float
    last_line_at: float
    last_line_fraction: float = -1.0


class PlainLines:
    """Progress as plain lines on a stream (the batch-log form); see the module docstring.

    ``clock`` is injectable so that the pacing can be tested without waiting.
    """

    def __init__(
        self, stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic,
        interval: float = LINE_INTERVAL, step: float = LINE_STEP, min_gap: float = MIN_LINE_GAP,
    ) -> None:  # fmt: skip
        self.stream = stream
        self.clock = clock
        self.interval, self.step, self.min_gap = interval, step, min_gap
        self._tasks: dict[str, _Task] = {}
        self._last_line_at = -float("inf")

    def __call__(self, description: str, completed: float, total: float) -> None:
        now = self.clock()
        task = self._tasks.get(description)
        if task is None:
            task = self._tasks[description] = _Task(now, completed, now)
        fraction = completed / total if total > 0 else 1.0
        finished = total > 0 and completed >= total
        if finished and task.last_line_fraction >= 1.0:
            return
        due = (
            finished
            or now - task.last_line_at >= self.interval
            or (fraction - max(task.last_line_fraction, 0.0) >= self.step - 1e-9
                and now - self._last_line_at >= self.min_gap)
        )  # fmt: skip
        if not due or (completed == task.started_from and not finished):
            return
        task.last_line_at = self._last_line_at = now
        task.last_line_fraction = fraction
        self.echo(self.line(description, completed, total, task, now))

    def line(self, description: str, completed: float, total: float, task: _Task, now: float) -> str:
        """``stage: done/total unit (pct%), rate unit/s, ETA h:mm:ss`` (rate and ETA when known)."""
        unit = unit_of(description)
        text = f"{description}: {completed:,.0f}/{total:,.0f}{' ' + unit if unit else ''}"
        if total > 0:
            text += f" ({100 * completed / total:.0f}%)"
        elapsed = now - task.started_at
        rate = (completed - task.started_from) / elapsed if elapsed > 0 else 0.0
        if rate > 0:
            text += f", {rate:,.0f} {unit or 'steps'}/s"
            if completed < total:
                text += f", ETA {_duration((total - completed) / rate)}"
            else:
                text += f", done in {_duration(elapsed)}"
        return text

    def echo(self, message: str) -> None:
        """Print one line (progress, or a note such as where a run resumed)."""
        stream = self.stream if self.stream is not None else sys.stderr
        print(message, file=stream, flush=True)


class StderrProgress(AbstractContextManager["StderrProgress"]):
    """Progress on stderr that accepts :data:`ProgressFn` calls: a rich bar on a terminal,
    :class:`PlainLines` otherwise, nothing when disabled."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._progress: Any = None
        self._lines: PlainLines | None = None
        self._tasks: dict[str, Any] = {}

    def __enter__(self) -> StderrProgress:
        if self.enabled:
            from rich.console import Console

            console = Console(stderr=True)
            if console.is_terminal:
                from rich.progress import (
                    BarColumn,
                    MofNCompleteColumn,
                    Progress,
                    TextColumn,
                    TimeElapsedColumn,
                )  # fmt: skip

                self._progress = Progress(
                    TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=True,
                )  # fmt: skip
                self._progress.__enter__()
            else:
                self._lines = PlainLines()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
            self._progress = None

    def __call__(self, description: str, completed: float, total: float) -> None:
        if self._lines is not None:
            self._lines(description, completed, total)
        if self._progress is None:
            return
        task = self._tasks.get(description)
        if task is None:
            task = self._tasks[description] = self._progress.add_task(description, total=total)
        self._progress.update(task, completed=completed, total=total)

    def echo(self, message: str) -> None:
        """A line on stderr that does not tear the live bar (nothing when disabled)."""
        if not self.enabled:
            return
        if self._progress is not None:
            self._progress.console.print(message, markup=False, highlight=False)
        else:
            print(message, file=sys.stderr, flush=True)


def progress_context(enabled: bool) -> AbstractContextManager[Any]:
    """:class:`StderrProgress` when ``enabled``, else the do-nothing callback."""
    return StderrProgress(enabled) if enabled else nullcontext(no_progress)
