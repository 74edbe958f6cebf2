"""Which cells a run computes, and the journal that lets a killed run resume.

* :func:`matrix_cells` lists the (i, j) cells of an La × Lb matrix in row-major order; a symmetric
  metric comparing a layer list with itself needs only the upper triangle (j ≥ i).
* :func:`shard_cells` gives shard K of N a contiguous, balanced share of that list (sizes differ by
  at most one cell); :func:`shard_from_env` reads SLURM's array variables.
* :class:`Journal` is an append-only text file beside the output: a JSON header describing the
  run, then one line per finished cell, flushed and fsynced as cells finish. A SIGKILL can only
  cut the last line short, which :func:`Journal.load` ignores, so ``--resume`` continues from
  every cell already written and reproduces the same bytes. The header also records the content
  digests of the layers compared (:class:`~repsim_cli.integrity.LayerContent`); a resume hashes
  the layers again and refuses, with the reason, when anything the cells depend on has changed.
  The journal is written by one process at a time: the command holds the output's lock.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from ._warnings import RepsimWarning
from .errors import (
    ContentMismatchError,
    CorruptStoreError,
    DataError,
    DiskFullError,
    MetricParameterError,
    RepsimError,
    ShapeMismatchError,
)
from .outputs import is_disk_full

if TYPE_CHECKING:
    from .integrity import LayerContent

Cell = tuple[int, int]


def matrix_cells(n_rows: int, n_cols: int, upper_only: bool) -> list[Cell]:
    """Cells (i, j) in row-major order; with ``upper_only`` only j ≥ i (square matrices)."""
    return [(i, j) for i in range(n_rows) for j in range(n_cols) if not upper_only or j >= i]


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (1-based) of ``count``."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """Parse ``K/N`` with 1 ≤ K ≤ N."""
    k, sep, n = text.partition("/")
    try:
        shard = Shard(int(k), int(n))
    except ValueError:
        shard = Shard(0, 0)
    if not sep or not 1 <= shard.index <= shard.count:
        raise RepsimError(f"--shard {text!r}: expected K/N with 1 <= K <= N, e.g. 3/8")
    return shard


def shard_from_env(env: Mapping[str, str]) -> Shard | None:
    """The shard of a SLURM array task: TASK_ID with TASK_COUNT, or with TASK_MIN/TASK_MAX."""
    if "SLURM_ARRAY_TASK_ID" not in env:
        return None
    try:
        task = int(env["SLURM_ARRAY_TASK_ID"])
        if "SLURM_ARRAY_TASK_MIN" in env and "SLURM_ARRAY_TASK_MAX" in env:
            lo, hi = int(env["SLURM_ARRAY_TASK_MIN"]), int(env["SLURM_ARRAY_TASK_MAX"])
            return Shard(task - lo + 1, hi - lo + 1)
        if "SLURM_ARRAY_TASK_COUNT" in env:
            count = int(env["SLURM_ARRAY_TASK_COUNT"])
            lo = int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
            return Shard(task - lo + 1, count)
    except ValueError:
        raise RepsimError("SLURM_ARRAY_TASK_* variables are not integers") from None
    raise RepsimError(
        "SLURM_ARRAY_TASK_ID is set but neither SLURM_ARRAY_TASK_COUNT nor SLURM_ARRAY_TASK_MIN/MAX"
        " is; pass --shard K/N"
    )


def shard_cells(cells: Sequence[Cell], shard: Shard | None) -> list[Cell]:
    """Shard K of N's contiguous share of ``cells`` (balanced: sizes differ by at most one)."""
    if shard is None:
        return list(cells)
    base, extra = divmod(len(cells), shard.count)
    k = shard.index - 1
    start = k * base + min(k, extra)
    return list(cells[start : start + base + (1 if k < extra else 0)])


ROW_GROUP_BYTES = 64 * 2**20  # a row group's B layers side by side, as float64, at most this


def row_groups(layout_cells: Iterable[Cell], pending: Iterable[Cell], col_bytes: Sequence[float],
               skip: Iterable[Cell] = ()) -> list[tuple[list[int], list[int]]]:
    """One-row blocks whose columns are fixed by the layout alone: each row's cells of the whole
    layout (unsharded; ``skip``: cells not computed, such as exact identities), in runs of
    consecutive cells whose ``col_bytes`` sum to at most :data:`ROW_GROUP_BYTES`. Only groups
    holding a ``pending`` cell are returned, whole — so a metric that batches a row group computes
    every cell from the same group in any shard split or resumed run."""
    wanted, skipped = set(pending), set(skip)
    by_row: dict[int, list[int]] = {}
    for i, j in sorted(set(layout_cells)):
        if (i, j) not in skipped:
            by_row.setdefault(i, []).append(j)
    out: list[tuple[list[int], list[int]]] = []
    for i, cols in by_row.items():
        group: list[int] = []
        size = 0.0
        for j in cols:
            if group and size + col_bytes[j] > ROW_GROUP_BYTES:
                out.append(([i], group))
                group, size = [], 0.0
            group.append(j)
            size += col_bytes[j]
        if group:
            out.append(([i], group))
    return [(rows, cols) for rows, cols in out if any((rows[0], j) in wanted for j in cols)]


def covering_blocks(cells: Iterable[Cell], by_row: bool = False) -> list[tuple[list[int], list[int]]]:
    """Group cells into (rows, cols) blocks whose product covers them without much waste.

    A full matrix or a full upper triangle is one block (so batched metrics keep their one-GEMM
    path); otherwise, or with ``by_row``, each row's pending columns are a block of its own.
    """
    cells = sorted(set(cells))
    if not cells:
        return []
    rows = sorted({i for i, _ in cells})
    cols = sorted({j for _, j in cells})
    if not by_row and len(rows) * len(cols) <= 2 * len(cells):
        return [(rows, cols)]
    row_cols: dict[int, list[int]] = {}
    for i, j in cells:
        row_cols.setdefault(i, []).append(j)
    return [([i], js) for i, js in row_cols.items()]


class JournalMismatch(ContentMismatchError):
    """A journal left by another command, or by this one over other content or settings."""


# Header keys in words, for the reason a journal is refused.
_HEADER_WORDS = {
    "stores": "the stores", "fingerprints": "the stores' content (fingerprints)",
    "layers_a": "the layers of A", "layers_b": "the layers of B",
    "metrics": "the metrics or their parameters", "shard": "the shard",
    "compute_dtype": "the precision (--precision)", "side": "the engine side (--side)",
}  # fmt: skip
CONTENT_KEY = "content"


def resumable(exc: BaseException) -> bool:
    """Whether a run that failed with ``exc`` leaves a journal worth keeping: yes after an
    interruption, a full disk, a memory error or an unexpected failure; no when the data itself
    was refused (NaN/Inf, constant layer, damaged or changed store, bad parameters), since no
    resume of the same inputs can get past that."""
    refused = (DataError, ShapeMismatchError, CorruptStoreError, MetricParameterError)
    return not isinstance(exc, refused) or isinstance(exc, JournalMismatch)


class Journal:
    """Append-only record of finished cells: ``spec_index i j value std_error`` per line.

    ``content``, when given, is recorded in the header when the journal starts and checked (the
    layers hashed again) before a resume reuses any cell. With ``force``, a journal that cannot
    be reused is set aside with a warning (its cells computed again) instead of refused.
    """

    def __init__(
        self, path: Path, header: dict[str, Any], content: LayerContent | None = None, force: bool = False
    ) -> None:
        self.path = path
        self.header = header
        self.content = content
        self.force = force
        self.notes: dict[tuple[int, int, int], str] = {}  # notes of the cells load() found
        self._fh: TextIO | None = None
        self._opened = False

    def _refuse(self, reason: str) -> JournalMismatch:
        return JournalMismatch(
            f"{self.path}: cannot resume: {reason}; run without --resume (or add --force) to "
            "compute it again"
        )

    def load(self) -> dict[tuple[int, int, int], tuple[float, float | None]]:
        """Cells already written by an earlier run of the same command (empty when none).

        Raises :class:`JournalMismatch` (with the reason) for a journal of another comparison,
        of other settings, of layers whose rows have changed since, or a damaged one; with
        ``force``, warns instead and returns no cells (the journal is started again).
        """
        try:
            return self._load()
        except JournalMismatch as exc:
            if not self.force:
                raise
            warnings.warn(f"{exc.args[0].split('; run without')[0]}; --force: computing every cell again",
                          RepsimWarning, stacklevel=2)  # fmt: skip
            return {}

    def _load(self) -> dict[tuple[int, int, int], tuple[float, float | None]]:
        if not self.path.exists():
            return {}
        text = self.path.read_text(errors="replace")
        lines = text.split("\n")
        complete = lines[:-1]  # the part after the last newline may be a cut-off write
        if not complete:
            return {}
        try:
            header = json.loads(complete[0])
        except json.JSONDecodeError:
            raise self._refuse("the resume journal is unreadable (damaged header)") from None
        if not isinstance(header, dict):
            raise self._refuse("the resume journal is unreadable (damaged header)")
        recorded = header.pop(CONTENT_KEY, None)
        if header != self.header:
            keys = sorted(k for k in set(header) | set(self.header) if header.get(k) != self.header.get(k))
            words = ", ".join(_HEADER_WORDS.get(k, k) for k in keys)
            raise self._refuse(f"it was written by a different comparison ({words} differ)")
        done: dict[tuple[int, int, int], tuple[float, float | None]] = {}
        for number, line in enumerate(complete[1:], start=2):
            parts = line.split("\t")
            try:
                if len(parts) not in (5, 6):
                    raise ValueError(line)
                s, i, j = int(parts[0]), int(parts[1]), int(parts[2])
                done[(s, i, j)] = (float(parts[3]), float(parts[4]) if parts[4] else None)
                if len(parts) == 6:  # the cell's note (why its value is degenerate), JSON-quoted
                    self.notes[(s, i, j)] = str(json.loads(parts[5]))
            except ValueError:
                raise self._refuse(f"line {number} of the resume journal is damaged") from None
        if done and self.content is not None:
            try:
                self.content.check(recorded)
            except ContentMismatchError as exc:
                raise self._refuse(str(exc)) from None
        return done

    def open(self, resume: bool) -> None:
        """Start writing: append to a matching journal when resuming, else start a new one."""
        self._opened = True
        if resume and self.path.exists():
            text = self.path.read_text(errors="replace")
            keep = text[: text.rfind("\n") + 1]
            if keep != text:  # drop a cut-off last line before appending
                self.path.write_text(keep)
            self._fh = self.path.open("a")
            return
        header = dict(self.header)
        if self.content is not None:
            header[CONTENT_KEY] = self.content.record()
        try:
            self._fh = self.path.open("w")
            self._fh.write(json.dumps(header, sort_keys=True) + "\n")
            self._sync()
        except OSError as exc:
            self.close(remove=True)  # a journal without its header serves no resume
            if is_disk_full(exc):
                raise DiskFullError(
                    f"{self.path}: no space left on device for the resume journal; nothing was kept: "
                    "free some space and run the command again"
                ) from exc
            raise

    def write(
        self, rows: Iterable[tuple[int, int, int, float, float | None] | tuple[int, int, int, float, float | None, str | None]]
    ) -> None:
        """Append finished cells ``(metric, i, j, value, std_error[, note])`` and make them durable
        (flush + fsync)."""
        assert self._fh is not None
        try:
            for s, i, j, value, se, *note in rows:
                line = f"{s}\t{i}\t{j}\t{value!r}\t{'' if se is None else repr(se)}"
                if note and note[0]:
                    line += "\t" + json.dumps(note[0])
                self._fh.write(line + "\n")
            self._sync()
        except OSError as exc:
            if is_disk_full(exc):
                raise self._disk_full() from exc
            raise

    def _disk_full(self) -> DiskFullError:
        return DiskFullError(
            f"{self.path}: no space left on device; this resume journal keeps the cells finished so "
            "far (those fsynced before): free some space and run the same command with --resume, or "
            "delete it"
        )

    def _sync(self) -> None:
        assert self._fh is not None
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self, remove: bool) -> None:
        """Close; with ``remove``, delete the journal (only one this object wrote to)."""
        if self._fh is not None:
            with contextlib.suppress(OSError):  # a full disk: a resume reads the cells fsynced before
                self._fh.close()
            self._fh = None
        if remove and self._opened and self.path.exists():
            self.path.unlink()


@contextlib.contextmanager
def journal_kept_on_disk_full(journal: Journal | None, out: str | os.PathLike[str]) -> Iterator[None]:
    """Around writing a run's output ``out``: a full disk's error says that the journal (which
    holds every cell) was kept, and how to finish from it."""
    try:
        yield
    except DiskFullError as exc:
        if journal is None or not journal.path.exists():
            raise
        raise DiskFullError(
            f"{os.fspath(out)}: no space left on device while writing it (nothing of it was left); the "
            f"resume journal {journal.path} keeps every computed cell: free some space and run the "
            "same command with --resume to write the output from it, or delete the journal"
        ) from exc
