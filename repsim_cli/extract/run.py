"""The streaming loop of ``repsim extract``: batches in, reduced layer rows out to a store.

Memory does not grow with n: inputs are read one batch at a time, and each layer's rows wait in a
few buffers of one on-disk chunk each (the one being filled, and those queued for the writer)
before being written whole (whole-chunk writes spare Zarr a read-modify-write of a chunk per
batch, and go to disk past the page cache). Column sums are accumulated as the chunks are written.

Interruption and resume: the store is written as a resumable streaming write
(:mod:`repsim_cli.store.streaming`) under a hidden partial name, renamed onto the target only after
its last batch and its stats are written; writing runs in a background thread, overlapping the
next forward pass, which also hashes each batch's inputs. ``--resume`` continues the partial store
from its last complete batch after checking that it was started with the same model, weights,
layers and settings and from the same inputs (their digest over the rows kept); on a complete
store it checks the whole inputs' digest before saying there is nothing to do. The forward pass
being deterministic, the result equals an uninterrupted run's store. The output's lock is held
for the whole run, so a second extraction into the same store stops at once.
"""

from __future__ import annotations

import contextlib
import json
import math
import platform
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from .._allocator import retain_freed_memory
from .._atomic import remove_path, replace_path, signals_deferred, terminate_cleanly
from .._progress import ProgressFn, no_progress
from .._version import __version__
from .._warnings import RepsimWarning
from ..errors import ContentMismatchError, DataError, DiskFullError, RepsimError, StoreError
from ..outputs import check_not_input, is_disk_full, output_lock
from ..store import open_store
from ..store._container import backend_for
from ..store.base import TARGET_CHUNK_BYTES, LayerSpec, check_unique_ids
from ..store.streaming import (
    INPUTS_DIGEST_ATTR,
    InputsDigest,
    StreamingWrite,
    WriterThread,
    new_stream,
    partial_path,
    reopen_stream,
)
from ._torch import require_torch
from .hooks import LayerCapture, LayerListing, list_layer_outputs
from .inputs import InputSource, open_inputs
from .models import LoadedModel, load_model
from .reductions import REDUCTIONS
from .selection import choose_layers, refuse_to_overwrite

T = TypeVar("T")
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


def _float16_check(label: str) -> Callable[[Any], None]:
    """The overflow test of a float16 layer's rows (tensors; rows reloaded on resume are not
    tested again)."""

    def check(rows: Any) -> None:
        if not isinstance(rows, np.ndarray):
            _check_float16(rows, label)

    return check


def _copy_rows(dst: np.ndarray, src: Any) -> None:
    """Copy rows (a tensor on any device, or an array) into ``dst``, converting to its dtype with
    round-to-nearest-even as NumPy's ``astype`` does (exact for float32 into float32)."""
    if isinstance(src, np.ndarray):
        np.copyto(dst, src, casting="unsafe")
    else:
        require_torch().from_numpy(dst).copy_(src)


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


def _start_run(
    path: Path,
    inputs: InputSource,
    source: dict[str, Any],
    capture: LayerCapture,
    first: dict[str, Any],
    opts: ExtractOptions,
    label: str,
) -> StreamingWrite:
    """A new write for the layers of the first batch (``first``: {name: tensor}), holding that
    batch's rows; its store is made by the writer thread."""
    store_dtype = np.dtype(opts.dtype)
    specs = []
    for name, block in first.items():
        applied, used_mask, note, module_type = capture.applied[name]
        feature_shape = tuple(int(s) for s in block.shape[1:])
        rows = plan_chunk_rows(math.prod(feature_shape) * store_dtype.itemsize, opts.batch_size,
                               inputs.n)  # fmt: skip
        attrs = {"reduction": applied, "module": module_type, "output": note,
                 "attention_mask": used_mask}  # fmt: skip
        specs.append(LayerSpec(name, feature_shape, store_dtype, attrs, rows))
    labels = {name: f"{label}: layer {name!r}" for name in first}
    run = new_stream(path, inputs.ids, source, specs, copy=_copy_rows, labels=labels,
                     check=lambda name: _float16_check(labels[name]) if store_dtype == np.float16 else None)  # fmt: skip
    for name, block in first.items():
        run.take(name, block)
    return run


def _hash_inputs(inputs: InputSource, rows: int, batch_size: int) -> InputsDigest:
    """The digest of the inputs' first ``rows`` rows (read again in batches)."""
    digest = InputsDigest(inputs.ids)
    for start in range(0, rows, batch_size):
        digest.update(*inputs.batch(start, min(start + batch_size, rows)))
    return digest


def _check_complete_store(out: Path, inputs: InputSource, source: dict[str, Any], batch_size: int) -> bool:
    """Whether ``out`` is a complete store of this very extraction (same settings and the same
    inputs, hashed again); raise :class:`ContentMismatchError` when its inputs differ."""
    try:
        with open_store(out) as store:
            if store.attrs.get("source") != source:
                return False
            recorded = store.attrs.get(INPUTS_DIGEST_ATTR) or {}
    except (RepsimError, OSError):
        return False
    if recorded.get("rows") != inputs.n:
        raise ContentMismatchError(
            f"{out}: the store records no digest of its inputs (written by an older repsim), so "
            "it cannot be known to match them; run without --resume (or add --force) to extract it again"
        )
    if _hash_inputs(inputs, inputs.n, batch_size).hexdigest() != recorded.get("sha256"):
        raise ContentMismatchError(
            f"{out}: the store was extracted from other inputs (their content or ids differ from "
            "those now given, though file, shape and dtype agree); run without --resume (or add "
            "--force) to extract it again"
        )
    return True


def _forced(force: bool, call: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """``call(*args, **kwargs)``; with ``force``, a :class:`ContentMismatchError` it raises
    becomes a warning and None (the work is done again)."""
    try:
        return call(*args, **kwargs)
    except ContentMismatchError as exc:
        if not force:
            raise
        message = str(exc).split("; run without --resume")[0]
        warnings.warn(f"{message}; --force: extracting again", RepsimWarning, stacklevel=3)
        return None


def input_paths(model_spec: str, inputs_spec: str, options: ExtractOptions) -> list[str]:
    """The files an extraction reads (model file, weights, inputs, ids), which its output must not be."""
    from .inputs import split_input_spec

    model_file = model_spec.rsplit(":", 1)[0] if ":" in model_spec else model_spec
    return [p for p in (model_file, options.weights, str(split_input_spec(inputs_spec)[0]), options.ids) if p]


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
    force: bool = False,
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
        Continue the partial store of an interrupted run with the same settings and inputs (else
        start again). The result equals an uninterrupted run's store.
    force : bool
        With ``resume``: a partial or complete store of other settings or inputs is extracted
        again (with a warning) instead of refused.
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
    check_not_input(final, input_paths(model_spec, inputs_spec, options))
    check_not_input(partial_path(final), input_paths(model_spec, inputs_spec, options))
    retain_freed_memory()
    with output_lock(final):
        model, inputs = _open_all(model_spec, inputs_spec, options)
        with inputs:
            check_unique_ids(inputs.ids, inputs.ids_from if inputs.ids_from != "range" else str(inputs.path))
            names = choose_layers(model, inputs, options, _to_torch, _model_float_dtype(model.module))
            source = _source(model, inputs, names, options)
            path = partial_path(final)
            if resume and not path.exists() and final.exists():
                done = _forced(force, _check_complete_store, final, inputs, source, options.batch_size)
                if done:
                    return ExtractReport(final, inputs.n, names, inputs.n, already_complete=True)
                if done is False and not force:  # made with other settings: never replaced silently
                    refuse_to_overwrite(final, source)
            with torch.inference_mode(), _short_gil_slices(), terminate_cleanly(), LayerCapture(
                model.module, names, options.reduction, options.output_index, model.scripted,
                model.spec,
            ) as capture:  # fmt: skip
                return _stream(model, inputs, capture, source, names, final, options, resume, progress, force)


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
    force: bool = False,
) -> ExtractReport:
    path = partial_path(final)
    float_dtype = _model_float_dtype(model.module)
    n = inputs.n
    run: StreamingWrite | None = None
    if resume and path.exists():
        # killed between finishing the store and renaming it
        if _forced(force, _check_complete_store, path, inputs, source, opts.batch_size):
            replace_path(path, final)
            return ExtractReport(final, n, names, n, already_complete=True)
        run = _forced(force, reopen_stream, path, source, names, n,
                      lambda rows: _hash_inputs(inputs, rows, opts.batch_size), copy=_copy_rows,
                      check=lambda name: _float16_check(f"{model.spec}: layer {name!r}")
                      if opts.dtype == "float16" else None)  # fmt: skip
    started_at = run.next_row if run is not None else 0
    writer_thread = None
    if run is not None:
        writer_thread = WriterThread(run)
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
                writer_thread = WriterThread(run)
                capture.sink = run.take
            assert writer_thread is not None
            writer_thread.put(run.full_chunks(), (x, mask))
            row = stop
            progress("extract", row, n)
        if run is None or writer_thread is None:
            raise StoreError(f"{path}: nothing was extracted")
        writer_thread.close()
        run.finish(n)
        run.open().finalize()
    except BaseException as exc:
        with signals_deferred():
            if writer_thread is not None:
                # The batches already queued are complete: keep them. The error to report is the
                # original one, not one the writer may also have hit.
                with contextlib.suppress(BaseException):
                    writer_thread.close()
            kept = 0
            if run is not None:
                if run.writer is not None:
                    run.writer.abort()
                kept = run.committed
                # An interrupted run keeps its partial store (--resume continues it); a failed one
                # that wrote nothing leaves nothing behind.
                if run.committed == 0 and started_at == 0 and not isinstance(exc, KeyboardInterrupt):
                    remove_path(path)
        if is_disk_full(exc):
            raise _disk_full(final, path, kept) from exc
        raise
    replace_path(path, final)
    seconds = time.perf_counter() - clock
    return ExtractReport(final, n, names, started_at, n - started_at, seconds)


def _disk_full(final: Path, partial: Path, kept: int) -> DiskFullError:
    if kept > 0:
        return DiskFullError(
            f"{final}: no space left on device; the partial store {partial} keeps the first {kept} "
            "samples: free some space and run the same command with --resume, or delete it"
        )
    return DiskFullError(
        f"{final}: no space left on device; nothing was kept (the partial store was removed): "
        "free some space and run the command again"
    )


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
