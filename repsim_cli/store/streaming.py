"""Resumable streaming writes of a store: rows arrive batch by batch, go to disk in whole chunks
from a background thread, and an interrupted write continues from its last complete batch.

Used by ``repsim extract`` (which feeds it a model's layer outputs), free of any torch code: a
producer hands each layer's rows to :meth:`StreamingWrite.take` (through a copy function of its
own for tensors), then queues the chunks they filled, with the batch's inputs, on a
:class:`WriterThread`.

Interruption and resume. The store is written under a fixed hidden sibling name
(:func:`partial_path`: ``.NAME.partial.h5`` for ``NAME.h5``), marked ``complete = False``. When
chunk writes advance the rows that every layer has written, the file is flushed and the root
attributes ``rows_written`` ({layer: rows on disk}) and ``inputs_digest`` (a digest of the inputs
of those rows) advanced; a batch is complete once every layer has written its rows.
:func:`reopen_stream` reopens the partial store, checks that it was started with the same
settings (the ``source`` record) *and the same inputs* (their digest over the rows kept, computed
again), recomputes the column sums and content digests of the rows kept chunk by chunk (exactly
as they were first accumulated), reloads the rows of the unfinished chunks, and continues from
the last complete batch.
"""

from __future__ import annotations

import hashlib
import queue
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._allocator import aligned_empty
from .._atomic import remove_path
from .._warnings import RepsimWarning
from ..errors import ContentMismatchError, StoreError
from .base import LayerSpec, StoreWriter

CopyRows = Callable[[np.ndarray, Any], None]
INPUTS_DIGEST_ATTR = "inputs_digest"


def partial_path(out: str | Path) -> Path:
    """The fixed hidden sibling a streaming write goes to before its rename: ``.NAME.partial.h5``."""
    final = Path(out)
    return final.with_name(f".{final.stem}.partial{final.suffix}")


def copy_array_rows(dst: np.ndarray, src: Any) -> None:
    """Copy array rows into ``dst`` with NumPy's casting (round to nearest even)."""
    np.copyto(dst, src, casting="unsafe")


class InputsDigest:
    """A running digest of a write's inputs: the sample ids, then every input row (and attention
    mask row) in order. It does not depend on how the rows are batched, so a resume can check
    the rows kept by hashing the inputs again in any blocks."""

    def __init__(self, ids: np.ndarray) -> None:
        self.rows = 0
        self._ids = hashlib.sha256(repr(np.asarray(ids).tolist()).encode()).hexdigest()
        self._x = hashlib.sha256()
        self._mask = hashlib.sha256()
        self._meta = ""

    def update(self, x: np.ndarray, mask: np.ndarray | None = None) -> None:
        """Add the next rows of the inputs (and of their mask)."""
        data = np.ascontiguousarray(x)
        self._meta = f"{data.dtype.str}{data.shape[1:]}"
        self._x.update(data.reshape(-1).view(np.uint8).data)
        if mask is not None:
            self._mask.update(np.ascontiguousarray(mask).reshape(-1).view(np.uint8).data)
        self.rows += len(data)

    def hexdigest(self) -> str:
        """The digest of the ids and the rows added so far."""
        h = hashlib.sha256(f"{self._ids}|{self._meta}|{self.rows}|".encode())
        h.update(self._x.digest())
        h.update(self._mask.digest())
        return h.hexdigest()

    def record(self) -> dict[str, Any]:
        """The attribute recorded in the store: ``{"rows": k, "sha256": hex}``."""
        return {"rows": self.rows, "sha256": self.hexdigest()}


class LayerChunks:
    """One layer's rows on their way to disk, gathered into whole on-disk chunks.

    Rows are copied once, by the producer's thread, into page-aligned chunk buffers (``copy``
    converts them: NumPy's casting by default, a tensor copy for ``extract``); the writer thread
    writes each full chunk straight from its buffer and hands the buffer back for reuse.
    ``start`` is the first row of the chunk being filled, of which ``held`` rows are in hand. A
    chunk is full at ``chunk_rows`` rows, or at row n for the last one. ``check`` (optional) sees
    every block of rows before it is copied (extract's float16 overflow test).
    """

    def __init__(
        self, name: str, chunk_rows: int, n: int, feature_shape: tuple[int, ...],
        dtype: np.dtype[Any], start: int = 0, label: str = "", copy: CopyRows = copy_array_rows,
        check: Callable[[Any], None] | None = None,
    ) -> None:  # fmt: skip
        self.name = name
        self.chunk_rows = chunk_rows
        self.n = n
        self.start = start
        self.held = 0
        self.label = label or f"layer {name!r}"
        self._shape = (chunk_rows, *feature_shape)
        self._dtype = dtype
        self._copy = copy
        self._check = check
        self._current: np.ndarray | None = None
        self._full: list[tuple[int, np.ndarray, int]] = []
        self._free: queue.SimpleQueue[np.ndarray] = queue.SimpleQueue()

    def take(self, rows: Any) -> None:
        """Copy the layer's next rows ((k, *feature_shape)) into chunk buffers; each chunk they
        fill waits for :meth:`full_chunks`."""
        if self._check is not None:
            self._check(rows)
        first = 0
        while first < len(rows):
            size = min(self.chunk_rows, self.n - self.start)
            if self._current is None:
                self._current = self._buffer()
            count = min(size - self.held, len(rows) - first)
            self._copy(self._current[self.held : self.held + count], rows[first : first + count])
            self.held += count
            first += count
            if self.held == size:
                self._full.append((self.start, self._current, size))
                self._current, self.start, self.held = None, self.start + size, 0

    def full_chunks(self) -> list[tuple[int, np.ndarray, int]]:
        """The chunks filled since the last call, as (first row, buffer, rows)."""
        full, self._full = self._full, []
        return full

    def release(self, buffer: np.ndarray) -> None:
        """Give back a written chunk's buffer for reuse (from the writer thread)."""
        self._free.put(buffer)

    def _buffer(self) -> np.ndarray:
        # At most a few buffers exist: chunks in flight are bounded by the writer's queue.
        # Page-aligned, so that the writer sends whole chunks to disk without a staging copy.
        try:
            return self._free.get_nowait()
        except queue.Empty:
            return aligned_empty(self._shape, self._dtype)


Chunks = dict[str, list[tuple[int, np.ndarray, int]]]
Batch = tuple[np.ndarray, np.ndarray | None]  # a batch's inputs and attention mask


@dataclass
class StreamingWrite:
    """State of one streaming write: each layer's chunks, the next row to produce, ``written``
    (rows [0, k) of each layer on disk, kept by the writer thread), ``committed`` (the rows that
    every layer has durably written: a resume starts there), ``inputs`` (the digest of the inputs
    handed over so far) and the store's writer. A new store is made by ``create`` in the writer
    thread (:meth:`open`), while the producer goes on."""

    layers: dict[str, LayerChunks]
    next_row: int
    written: dict[str, int]
    inputs: InputsDigest
    committed: int = 0
    writer: StoreWriter | None = None
    create: Callable[[], StoreWriter] | None = None
    _input_marks: dict[int, dict[str, Any]] = field(default_factory=dict)

    def open(self) -> StoreWriter:
        """The store's writer, made on first use."""
        if self.writer is None:
            assert self.create is not None
            self.writer = self.create()
        return self.writer

    def take(self, name: str, rows: Any) -> None:
        """The producer's sink: copy a layer's rows of the current batch into its chunks."""
        self.layers[name].take(rows)

    def full_chunks(self) -> Chunks:
        """Every layer's chunks filled since the last call, for :meth:`write`."""
        return {name: layer.full_chunks() for name, layer in self.layers.items()}

    def write(self, chunks: Chunks, batches: Sequence[Batch] = ()) -> None:
        """Hash the inputs of the batches handed over, write full chunks ({layer: [(first row,
        buffer, rows)]}) and give their buffers back; when every layer has written further,
        record it with the inputs' digest over those rows (a resume starts at the least-written
        layer, so marks in between would serve nothing and cost a metadata write each)."""
        for x, mask in batches:
            self.inputs.update(x, mask)
            self._input_marks[self.inputs.rows] = self.inputs.record()
        writer = self.open()
        for name, items in chunks.items():
            for first, buffer, rows in items:
                writer.write_rows(name, first, buffer[:rows])
                self.layers[name].release(buffer)
                self.written[name] = first + rows
        committed = min(self.written.values())
        if committed > self.committed:
            # Data first, then the marks: a mark never claims rows that are not on disk.
            writer.flush()
            writer.mark_rows_written(dict(self.written), self._inputs_at(committed))
            writer.flush()
            self.committed = committed

    def _inputs_at(self, rows: int) -> dict[str, Any]:
        """The ``inputs_digest`` attribute for rows [0, rows) (none when not known)."""
        mark = self._input_marks.get(rows)
        self._input_marks = {k: v for k, v in self._input_marks.items() if k > rows}
        return {INPUTS_DIGEST_ATTR: mark} if mark is not None else {}

    def finish(self, n: int) -> None:
        """Record the whole store as written (rows up to n were all taken, so written)."""
        writer = self.open()
        unwritten = [name for name, rows in self.written.items() if rows != n]
        if unwritten:
            raise StoreError(f"{writer.path}: rows of {', '.join(unwritten)} were not written")
        if self.inputs.rows != n:
            raise StoreError(f"{writer.path}: inputs of {self.inputs.rows} rows were hashed, not {n}")
        writer.flush()
        writer.mark_rows_written(dict.fromkeys(self.layers, n), {INPUTS_DIGEST_ATTR: self.inputs.record()})


class WriterThread:
    """Writes the chunks of a write in a background thread, in order, while the producer goes on.

    At most ``depth`` batches' chunks wait in the queue, so memory stays bounded. An error in the
    thread is raised in the caller at its next :meth:`put` or at :meth:`close`.
    """

    def __init__(self, run: StreamingWrite, depth: int = 2) -> None:
        self.run = run
        self._queue: queue.Queue[tuple[Chunks, list[Batch]] | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="repsim-store-writer", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        try:
            self.run.open()
        except BaseException as exc:  # noqa: BLE001 (re-raised in the caller's thread)
            self._error = exc
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is None:
                try:
                    self.run.write(*item)
                except BaseException as exc:  # noqa: BLE001 (re-raised in the caller's thread)
                    self._error = exc

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, chunks: Chunks, batch: Batch | None = None) -> None:
        """Queue full chunks and the inputs of the batch that produced them."""
        self._raise()
        batches = [batch] if batch is not None else []
        if any(chunks.values()) or batches:
            self._queue.put((chunks, batches))

    def close(self) -> None:
        """Wait until every queued chunk is written; raise the thread's error, if any."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self._raise()


def new_stream(
    path: Path, ids: np.ndarray, source: dict[str, Any], specs: list[LayerSpec],
    copy: CopyRows = copy_array_rows, check: Callable[[str], Callable[[Any], None] | None] | None = None,
    labels: dict[str, str] | None = None,
) -> StreamingWrite:  # fmt: skip
    """A streaming write of a new store at ``path`` (replacing a partial there) with these
    layers (each ``rows_per_chunk`` set); the store itself is made by the writer thread."""
    n = len(ids)
    layers = {
        spec.name: LayerChunks(spec.name, int(spec.rows_per_chunk or n), n, spec.feature_shape,
                               np.dtype(spec.dtype), label=(labels or {}).get(spec.name, ""), copy=copy,
                               check=check(spec.name) if check else None)
        for spec in specs
    }  # fmt: skip

    def create() -> StoreWriter:
        remove_path(path)
        writer = StoreWriter(path, ids, source=source)
        try:
            writer.add_layers(specs)
            writer.flush()
        except BaseException:
            writer.abort()
            remove_path(path)
            raise
        return writer

    return StreamingWrite(layers, next_row=0, written=dict.fromkeys(layers, 0), inputs=InputsDigest(ids),
                          create=create)  # fmt: skip


def check_same_source(path: Path, written: dict[str, Any], wanted: dict[str, Any]) -> None:
    """Raise :class:`ContentMismatchError` naming the settings in which two sources differ."""
    differing = sorted(k for k in set(written) | set(wanted) if written.get(k) != wanted.get(k))
    if differing:
        raise ContentMismatchError(
            f"{path}: the partial store was started with different settings "
            f"({', '.join(differing)}); run without --resume to start again"
        )


def reopen_stream(
    path: Path, source: dict[str, Any], names: list[str], n: int,
    hash_inputs: Callable[[int], InputsDigest], copy: CopyRows = copy_array_rows,
    check: Callable[[str], Callable[[Any], None] | None] | None = None,
) -> StreamingWrite | None:  # fmt: skip
    """The partial store at ``path`` as a write to continue, or None when it must be started
    again (it cannot be opened, records other layers, or no inputs digest).

    ``hash_inputs(rows)`` returns the digest of the current inputs' first ``rows`` rows; the
    partial store's must match it.

    Raises
    ------
    ContentMismatchError
        The partial store was started with other settings or from other inputs.
    """
    try:
        writer = StoreWriter.reopen(path)
    except (StoreError, OSError, KeyError, ValueError) as exc:
        warnings.warn(f"{path}: cannot continue the partial store ({exc}); starting again",
                      RepsimWarning, stacklevel=3)  # fmt: skip
        return None
    try:
        attrs = writer.attrs()
        check_same_source(path, attrs.get("source", {}), source)
        resume_at = min(writer.rows_written().values(), default=0)
        recorded = attrs.get(INPUTS_DIGEST_ATTR) or {}
        if writer.layers != names or recorded.get("rows") != resume_at:
            writer.abort()
            if writer.layers == names:
                warnings.warn(f"{path}: the partial store records no digest of its inputs (written by "
                              "an older repsim); starting again", RepsimWarning, stacklevel=3)  # fmt: skip
            return None
        inputs = hash_inputs(resume_at)
        if inputs.hexdigest() != recorded.get("sha256"):
            raise ContentMismatchError(
                f"{path}: the partial store was started from other inputs (their first {resume_at} "
                "samples or ids differ from those now given); run without --resume (or add --force) to "
                "start again"
            )
        layers, written = {}, {}
        for name in names:
            chunk = writer.layer_chunk_rows(name)
            chunk_start = (resume_at // chunk) * chunk
            writer.restore_stats(name, chunk_start, chunk)
            layers[name] = LayerChunks(name, chunk, n, writer.layer_feature_shape(name),
                                       writer.layer_dtype(name), start=chunk_start, copy=copy,
                                       check=check(name) if check else None)  # fmt: skip
            layers[name].take(writer.read_rows(name, chunk_start, resume_at))
            written[name] = chunk_start
    except BaseException:
        writer.abort()
        raise
    return StreamingWrite(layers, next_row=resume_at, written=written, inputs=inputs, committed=resume_at,
                          writer=writer)  # fmt: skip
