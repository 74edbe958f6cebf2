"""The streaming loop of ``repsim extract``: batches in, reduced layer rows out to a store.

Memory does not grow with n: inputs are read one batch at a time, and each layer's rows wait in a
few buffers of one on-disk chunk each (the one being filled, and those queued for the writer)
before being written whole (whole-chunk writes spare Zarr a read-modify-write of a chunk per
batch, and go to disk past the page cache). Column sums are accumulated as the chunks are written.

Interruption and resume. The store is written under a fixed hidden sibling name
(``.NAME.partial.h5`` for ``NAME.h5``), marked ``complete = False``, and renamed onto the target
only after its last batch and its stats are written. When chunk writes advance the rows that every
layer has written, the file is flushed and the root attribute ``rows_written`` ({layer: rows on
disk}) advanced; a batch is complete once every layer has written its rows. Writing runs in a
background thread, overlapping the next forward pass. ``--resume`` reopens the partial store,
checks that it was started with the same model, weights, inputs, layers and settings, recomputes
the column sums of the rows kept chunk by chunk (exactly as they were first accumulated), reloads
the rows of the unfinished chunks, and continues from the last complete batch. The forward pass
being deterministic, the result equals an uninterrupted run's store.
"""

from __future__ import annotations

import contextlib
import json
import math
import platform
import queue
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._allocator import aligned_empty, retain_freed_memory
from .._atomic import remove_path, replace_path
from .._progress import ProgressFn, no_progress
from .._version import __version__
from .._warnings import RepsimWarning
from ..errors import DataError, RepsimError, StoreError
from ..store import StoreWriter, open_store
from ..store._container import backend_for
from ..store.base import TARGET_CHUNK_BYTES, LayerSpec
from ._torch import require_torch
from .hooks import LayerCapture, LayerListing, list_layer_outputs
from .inputs import InputSource, open_inputs
from .models import LoadedModel, load_model
from .reductions import REDUCTIONS
from .selection import choose_layers, refuse_to_overwrite

STORE_DTYPES = ("float32", "float16")
# Commit granularity: a layer's chunk spans at most this many batches, so a killed run loses at
# most this many batches of work (narrow layers would otherwise get chunks of 10^5 rows).
MAX_BATCHES_PER_CHUNK = 16
FLOAT16_MAX = float(np.finfo(np.float16).max)
GIL_SWITCH_INTERVAL = 0.0005  # seconds; see _short_gil_slices


@dataclass(frozen=True)
class ExtractOptions:
    """Settings of one extraction (everything except the model, the inputs and the output).

    ``layers``: glob patterns over module names; ``reduction``: see
    :mod:`repsim_cli.extract.reductions`; ``dtype``: of the stored activations (the forward pass
    runs in the model's own precision); ``limit``: first samples only.
    """

    layers: tuple[str, ...] = ()
    batch_size: int = 64
    reduction: str = "flatten"
    dtype: str = "float32"
    device: str = "cpu"
    output_index: int = 0
    limit: int | None = None
    inputs_key: str | None = None
    ids: str | None = None
    weights: str | None = None
    exclude: tuple[str, ...] = ()
    order: str = "registration"
    strict: bool = False

    def check(self) -> None:
        """Raise :class:`DataError` for values no run can use."""
        if self.batch_size < 1:
            raise DataError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.reduction not in REDUCTIONS:
            raise DataError(f"unknown reduction {self.reduction!r}; use {', '.join(REDUCTIONS)}")
        if self.dtype not in STORE_DTYPES:
            raise DataError(f"unknown dtype {self.dtype!r}; use {', '.join(STORE_DTYPES)}")


@dataclass
class ExtractReport:
    """What a run did: the store, its size, where it started, and how fast it went."""

    path: Path
    n_samples: int
    layers: list[str]
    resumed_from: int = 0
    computed: int = 0
    seconds: float = 0.0
    already_complete: bool = False

    @property
    def samples_per_second(self) -> float:
        return self.computed / self.seconds if self.seconds > 0 else float("nan")


def partial_path(out: str | Path) -> Path:
    """The fixed hidden sibling an extraction writes to before renaming: ``.NAME.partial.h5``."""
    final = Path(out)
    return final.with_name(f".{final.stem}.partial{final.suffix}")


def plan_chunk_rows(row_bytes: int, batch_size: int, n: int, target: int | None = None) -> int:
    """Rows per chunk of a layer: whole batches (at most 16) or a divisor of the batch size, so
    that a chunk holds about ``target`` bytes (default 8 MiB); never more than n rows.

    Chunks aligned with batches let each batch complete whole chunks (wide layers), or a chunk
    complete every few batches (narrow layers).
    """
    target = target or TARGET_CHUNK_BYTES
    batch_bytes = max(1, row_bytes * batch_size)
    if batch_bytes >= target:
        fitting = [d for d in range(1, batch_size + 1)
                   if batch_size % d == 0 and d * row_bytes <= 2 * target]  # fmt: skip
        return min(max(fitting, default=1), n)
    batches = min(MAX_BATCHES_PER_CHUNK, target // batch_bytes)
    return min((1 << (batches.bit_length() - 1)) * batch_size, n)


def _versions() -> dict[str, str]:
    torch = require_torch()
    return {"repsim": __version__, "torch": str(torch.__version__), "numpy": np.__version__,
            "python": platform.python_version()}  # fmt: skip


def _source(
    model: LoadedModel, inputs: InputSource, names: list[str], opts: ExtractOptions
) -> dict[str, Any]:
    source = {
        "command": "extract", **model.source(), **inputs.source(), "n_samples": inputs.n,
        "layer_patterns": list(opts.layers), "layers": names, "reduction": opts.reduction,
        "output_index": opts.output_index, "batch_size": opts.batch_size, "dtype": opts.dtype,
        "device": opts.device, "limit": opts.limit, "versions": _versions(),
    }  # fmt: skip
    return dict(json.loads(json.dumps(source)))


def _model_float_dtype(module: Any) -> Any:
    torch = require_torch()
    for tensor in (*module.parameters(), *module.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32


def _to_torch(array: np.ndarray | None, float_dtype: Any, device: str) -> Any:
    """A batch as a tensor in torch's own (64-byte aligned) memory.

    Always a copy: BLAS kernels round differently depending on the alignment of their inputs,
    and a NumPy buffer's alignment depends on the heap, so the same batch could give other bits
    in another run (and a resumed store would differ from an uninterrupted one).
    """
    torch = require_torch()
    if array is None:
        return None
    if array.dtype.kind == "f":
        dtype = float_dtype
    elif array.dtype.kind in {"i", "u"}:
        dtype = torch.int64
    else:
        dtype = torch.bool
    return torch.from_numpy(array).to(device=device, dtype=dtype, copy=True)


def _check_float16(rows: Any, label: str) -> None:
    """Raise :class:`DataError` when finite values of ``rows`` (a tensor) overflow float16."""
    peak = float(rows.abs().amax()) if rows.numel() else 0.0
    if peak > FLOAT16_MAX and math.isfinite(peak):
        raise DataError(f"{label}: values up to {peak:.3g} overflow float16; use --dtype float32")


def _copy_rows(dst: np.ndarray, src: Any) -> None:
    """Copy rows (a tensor on any device, or an array) into ``dst``, converting to its dtype with
    round-to-nearest-even as NumPy's ``astype`` does (exact for float32 into float32)."""
    if isinstance(src, np.ndarray):
        np.copyto(dst, src, casting="unsafe")
    else:
        require_torch().from_numpy(dst).copy_(src)


class _LayerChunks:
    """One layer's rows on their way to disk, gathered into whole on-disk chunks.

    Rows are copied once, by the thread running the model (inside the layer's forward hook,
    with torch's threads), into page-aligned chunk buffers; the writer thread writes each full
    chunk straight from its buffer and hands the buffer back for reuse. ``start`` is the first
    row of the chunk being filled, of which ``held`` rows are in hand. A chunk is full at
    ``chunk_rows`` rows, or at row n for the last one.
    """

    def __init__(
        self, name: str, chunk_rows: int, n: int, feature_shape: tuple[int, ...],
        dtype: np.dtype[Any], start: int = 0, label: str = "",
    ) -> None:  # fmt: skip
        self.name = name
        self.chunk_rows = chunk_rows
        self.n = n
        self.start = start
        self.held = 0
        self.label = label or f"layer {name!r}"
        self._shape = (chunk_rows, *feature_shape)
        self._dtype = dtype
        self._current: np.ndarray | None = None
        self._full: list[tuple[int, np.ndarray, int]] = []
        self._free: queue.SimpleQueue[np.ndarray] = queue.SimpleQueue()

    def take(self, rows: Any) -> None:
        """Copy the layer's next rows ((k, *feature_shape): a tensor, or an array) into chunk
        buffers; each chunk they fill waits for :meth:`full_chunks`."""
        if self._dtype == np.float16 and not isinstance(rows, np.ndarray):
            _check_float16(rows, self.label)
        first = 0
        while first < len(rows):
            size = min(self.chunk_rows, self.n - self.start)
            if self._current is None:
                self._current = self._buffer()
            count = min(size - self.held, len(rows) - first)
            _copy_rows(self._current[self.held : self.held + count], rows[first : first + count])
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


@dataclass
class _Run:
    """State of one extraction: each layer's chunks, the next row to compute, ``written`` (rows
    [0, k) of each layer on disk, kept by the writer thread), ``committed`` (the rows that every
    layer has durably written: a resume starts there), and the store's writer. A new store is
    made by ``create`` in the writer thread (:meth:`open`), while the next batch runs."""

    layers: dict[str, _LayerChunks]
    next_row: int
    written: dict[str, int]
    committed: int = 0
    writer: StoreWriter | None = None
    create: Callable[[], StoreWriter] | None = None

    def open(self) -> StoreWriter:
        """The store's writer, made on first use."""
        if self.writer is None:
            assert self.create is not None
            self.writer = self.create()
        return self.writer

    def take(self, name: str, rows: Any) -> None:
        """The capture's sink: copy a layer's rows of the current batch into its chunks."""
        self.layers[name].take(rows)

    def full_chunks(self) -> Chunks:
        """Every layer's chunks filled since the last call, for :meth:`write`."""
        return {name: layer.full_chunks() for name, layer in self.layers.items()}

    def write(self, chunks: Chunks) -> None:
        """Write full chunks ({layer: [(first row, buffer, rows)]}) and give their buffers
        back; when every layer has written further, record it (a resume starts at the
        least-written layer, so marks in between would serve nothing and cost a metadata write
        each)."""
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
            writer.mark_rows_written(dict(self.written))
            writer.flush()
            self.committed = committed

    def finish(self, n: int) -> None:
        """Record the whole store as written (rows up to n were all taken, so written)."""
        writer = self.open()
        unwritten = [name for name, rows in self.written.items() if rows != n]
        if unwritten:
            raise StoreError(f"{writer.path}: rows of {', '.join(unwritten)} were not written")
        writer.flush()
        writer.mark_rows_written(dict.fromkeys(self.layers, n))


@contextlib.contextmanager
def _short_gil_slices() -> Iterator[None]:
    """Have a thread that wants the GIL get it within :data:`GIL_SWITCH_INTERVAL` (Python's
    default is 5 ms) while the writer thread runs beside the model.

    The model's thread needs the GIL between its kernels (module calls, hooks); each wait for
    the writer thread (or Zarr's event loop) to hand it over stalls every core of the forward
    pass. Measured on the Zarr store of ``bench/bench_extract.py``: 0.83 of the bare rate with
    the default, 0.88 with 0.5 ms (two runs of the benchmark, one after the other).
    """
    previous = sys.getswitchinterval()
    sys.setswitchinterval(min(previous, GIL_SWITCH_INTERVAL))
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


class _WriterThread:
    """Writes the chunks of a run in a background thread, in order, while the next batch runs.

    The model's kernels release the GIL, so disk writes and column sums overlap the forward pass.
    At most ``depth`` batches' chunks wait in the queue, so memory stays bounded. An error in the
    thread is raised in the caller at its next :meth:`put` or at :meth:`close`.
    """

    def __init__(self, run: _Run, depth: int = 2) -> None:
        self.run = run
        self._queue: queue.Queue[Chunks | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._loop, name="repsim-extract-writer", daemon=True
        )
        self._thread.start()

    def _loop(self) -> None:
        try:
            self.run.open()
        except BaseException as exc:  # noqa: BLE001 (re-raised in the caller's thread)
            self._error = exc
        while True:
            chunks = self._queue.get()
            if chunks is None:
                return
            if self._error is None:
                try:
                    self.run.write(chunks)
                except BaseException as exc:  # noqa: BLE001 (re-raised in the caller's thread)
                    self._error = exc

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, chunks: Chunks) -> None:
        self._raise()
        if any(chunks.values()):
            self._queue.put(chunks)

    def close(self) -> None:
        """Wait until every queued chunk is written; raise the thread's error, if any."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self._raise()


def _start_run(
    path: Path,
    inputs: InputSource,
    source: dict[str, Any],
    capture: LayerCapture,
    first: dict[str, Any],
    opts: ExtractOptions,
    label: str,
) -> _Run:
    """A new run for the layers of the first batch (``first``: {name: tensor}), holding that
    batch's rows; its store is made by the writer thread."""
    store_dtype = np.dtype(opts.dtype)
    layers, layouts = {}, []
    for name, block in first.items():
        applied, used_mask, note, module_type = capture.applied[name]
        feature_shape = tuple(int(s) for s in block.shape[1:])
        rows = plan_chunk_rows(math.prod(feature_shape) * store_dtype.itemsize, opts.batch_size,
                               inputs.n)  # fmt: skip
        attrs = {"reduction": applied, "module": module_type, "output": note,
                 "attention_mask": used_mask}  # fmt: skip
        layouts.append(LayerSpec(name, feature_shape, store_dtype, attrs, rows))
        layers[name] = _LayerChunks(name, rows, inputs.n, feature_shape, store_dtype,
                                    label=f"{label}: layer {name!r}")  # fmt: skip

    def create() -> StoreWriter:
        remove_path(path)
        writer = StoreWriter(path, inputs.ids, source=source)
        try:
            writer.add_layers(layouts)
            writer.flush()
        except BaseException:
            writer.abort()
            remove_path(path)
            raise
        return writer

    run = _Run(layers, next_row=0, written=dict.fromkeys(layers, 0), create=create)
    for name, block in first.items():
        run.take(name, block)
    return run


def _reopen(path: Path, source: dict[str, Any], names: list[str], n: int) -> _Run | None:
    """The partial store as a run to continue, or None when it must be started again."""
    try:
        writer = StoreWriter.reopen(path)
    except (StoreError, OSError, KeyError, ValueError) as exc:
        warnings.warn(f"{path}: cannot continue the partial store ({exc}); starting again",
                      RepsimWarning, stacklevel=3)  # fmt: skip
        return None
    try:
        _check_same_run(path, writer.attrs().get("source", {}), source)
        if writer.layers != names:
            writer.abort()
            return None
        resume_at = min(writer.rows_written().values())
        layers, written = {}, {}
        for name in names:
            chunk = writer.layer_chunk_rows(name)
            chunk_start = (resume_at // chunk) * chunk
            writer.restore_stats(name, chunk_start, chunk)
            layers[name] = _LayerChunks(name, chunk, n, writer.layer_feature_shape(name),
                                        writer.layer_dtype(name), start=chunk_start)  # fmt: skip
            layers[name].take(writer.read_rows(name, chunk_start, resume_at))
            written[name] = chunk_start
    except BaseException:
        writer.abort()
        raise
    return _Run(layers, next_row=resume_at, written=written, committed=resume_at, writer=writer)


def _check_same_run(path: Path, written: dict[str, Any], wanted: dict[str, Any]) -> None:
    differing = sorted(k for k in set(written) | set(wanted) if written.get(k) != wanted.get(k))
    if differing:
        raise StoreError(
            f"{path}: the partial store was started with different settings "
            f"({', '.join(differing)}); run without --resume to start again"
        )


def _already_done(out: Path, source: dict[str, Any]) -> bool:
    try:
        with open_store(out) as store:
            return bool(store.attrs.get("source") == source)
    except (RepsimError, OSError):
        return False


def _open_all(
    model_spec: str, inputs_spec: str, opts: ExtractOptions
) -> tuple[LoadedModel, InputSource]:
    opts.check()
    model = load_model(model_spec, opts.weights, opts.device)
    inputs = open_inputs(inputs_spec, opts.inputs_key, opts.ids, opts.limit)
    return model, inputs


def extract_activations(
    model_spec: str,
    inputs_spec: str,
    out: str | Path,
    options: ExtractOptions,
    *,
    resume: bool = False,
    progress: ProgressFn = no_progress,
) -> ExtractReport:
    """Run a model over its inputs and stream the chosen layers' outputs into a new store.

    Parameters
    ----------
    model_spec : str
        ``file.py:factory``, ``package.module:factory`` or a TorchScript file.
    inputs_spec : str
        ``.npy``, ``.npz[:KEY]``, ``file.h5:/path`` or ``file.zarr:/path``; samples on axis 0.
    out : path
        The store to write (``.h5``/``.hdf5`` or ``.zarr``); layers ``(n, *feature_shape)`` in the
        chosen dtype, in model order, each with attrs ``reduction``, ``module``, ``output``.
    options : ExtractOptions
        Layers (globs), batch size, reduction, dtype, device, ...
    resume : bool
        Continue the partial store of an interrupted run with the same settings (else start
        again). The result equals an uninterrupted run's store.
    progress : callable
        ``progress("extract", samples_done, n)`` after every batch.

    Returns
    -------
    ExtractReport

    Raises
    ------
    ModelError, LayerNotFoundError, StoreError, DataError, ShapeMismatchError
        A model that fails to load (naming the file), a pattern matching no module (naming
        close ones), unreadable inputs, a partial store from other settings.
    """
    torch = require_torch()
    final = Path(out)
    backend_for(final)
    retain_freed_memory()
    model, inputs = _open_all(model_spec, inputs_spec, options)
    with inputs:
        names = choose_layers(model, inputs, options, _to_torch, _model_float_dtype(model.module))
        source = _source(model, inputs, names, options)
        path = partial_path(final)
        if resume and not path.exists() and final.exists():
            if _already_done(final, source):
                return ExtractReport(final, inputs.n, names, inputs.n, already_complete=True)
            refuse_to_overwrite(final, source)
        with torch.inference_mode(), _short_gil_slices(), LayerCapture(
            model.module, names, options.reduction, options.output_index, model.scripted,
            model.spec,
        ) as capture:  # fmt: skip
            return _stream(model, inputs, capture, source, names, final, options, resume, progress)


def _stream(
    model: LoadedModel,
    inputs: InputSource,
    capture: LayerCapture,
    source: dict[str, Any],
    names: list[str],
    final: Path,
    opts: ExtractOptions,
    resume: bool,
    progress: ProgressFn,
) -> ExtractReport:
    path = partial_path(final)
    float_dtype = _model_float_dtype(model.module)
    n = inputs.n
    run: _Run | None = None
    if resume and path.exists():
        if _already_done(path, source):  # killed between finishing the store and renaming it
            replace_path(path, final)
            return ExtractReport(final, n, names, n, already_complete=True)
        run = _reopen(path, source, names, n)
    started_at = run.next_row if run is not None else 0
    writer_thread = None
    if run is not None:
        writer_thread = _WriterThread(run)
        capture.sink = run.take
    clock = time.perf_counter()
    try:
        row = started_at
        progress("extract", row, n)
        while row < n:
            stop = min(row + opts.batch_size, n)
            x, mask = inputs.batch(row, stop)
            # From the second batch on, each layer's hook copies its rows into its chunks.
            outputs = capture.run(_to_torch(x, float_dtype, opts.device),
                                  _to_torch(mask, float_dtype, opts.device))  # fmt: skip
            if run is None:
                run = _start_run(path, inputs, source, capture, outputs, opts, model.spec)
                writer_thread = _WriterThread(run)
                capture.sink = run.take
            assert writer_thread is not None
            writer_thread.put(run.full_chunks())
            row = stop
            progress("extract", row, n)
        if run is None or writer_thread is None:
            raise StoreError(f"{path}: nothing was extracted")
        writer_thread.close()
        run.finish(n)
        run.open().finalize()
    except BaseException as exc:
        if writer_thread is not None:
            # The batches already queued are complete: keep them. The error to report is the
            # original one, not one the writer may also have hit.
            with contextlib.suppress(BaseException):
                writer_thread.close()
        if run is not None:
            if run.writer is not None:
                run.writer.abort()
            # An interrupted run keeps its partial store (--resume continues it); a failed one
            # that wrote nothing leaves nothing behind.
            if run.committed == 0 and started_at == 0 and not isinstance(exc, KeyboardInterrupt):
                remove_path(path)
        raise
    replace_path(path, final)
    seconds = time.perf_counter() - clock
    return ExtractReport(final, n, names, started_at, n - started_at, seconds)


def list_layers(model_spec: str, inputs_spec: str, options: ExtractOptions) -> list[LayerListing]:
    """Every recordable layer of a model with its output shape on one batch of the inputs.

    Returns
    -------
    list of LayerListing
        In model order, the pseudo-layer ``output`` (the model's return value) last; ``shape``
        is the batch's (N, ...) output shape (after picking ``output_index`` of tuple outputs),
        None for modules that did not run.
    """
    torch = require_torch()
    model, inputs = _open_all(model_spec, inputs_spec, options)
    with inputs, torch.inference_mode():
        x, mask = inputs.batch(0, min(options.batch_size, inputs.n))
        float_dtype = _model_float_dtype(model.module)
        return list_layer_outputs(
            model.module, _to_torch(x, float_dtype, options.device),
            _to_torch(mask, float_dtype, options.device), options.output_index, model.scripted,
        )  # fmt: skip


def layer_table(listing: Sequence[LayerListing]) -> list[tuple[str, str, str, str]]:
    """Rows (name, type, shape, note) of ``--list-layers``; shapes read ``(64, 16, 8, 8)``."""
    return [(item.name, item.module_type,
             "-" if item.shape is None else "(" + ", ".join(map(str, item.shape)) + ")", item.note)
            for item in listing]  # fmt: skip
