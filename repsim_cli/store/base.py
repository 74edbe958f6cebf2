"""The activation store: one logical layout (DESIGN §2) over HDF5 and Zarr.

Layout::

    /                 attrs: repsim_format="activations", format_version, layers=[names in order],
                             n_samples, complete, repsim_version, source={...}
    /samples/ids      (n,) str or int64
    /layers/<name>    (n, *feature_shape), chunked along samples only; attrs: feature_shape, reduction
    /stats/<name>/sum, /stats/<name>/sumsq   (D,) float64 column sums of the flattened features
    /digests/<name>   (chunks, 16) uint8: each chunk's content digest (see :mod:`.digests`);
                      root attr ``content_digests`` = {layer: hex digest of the layer}

A layer is always read as a 2-D ``(rows, D)`` array with ``D = prod(feature_shape)``.

Reads fail loudly: a missing chunk (which Zarr would read as its fill value), an unreadable one,
rows that no longer match their chunk's digest, and NaN/Inf values each raise an error naming the
store, the layer and the rows; a layer that is not (n, D ≥ 1) is refused when the store is opened.
Stores written before digests existed read as before, without the digest checks.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..errors import (
    CorruptStoreError,
    DataError,
    LayerNotFoundError,
    ShapeMismatchError,
    StoreError,
)
from ._container import ArraySpec, Container, open_container
from ._names import escape_name
from .digests import ALGORITHM, DIGEST_BYTES, LayerHasher, ReadVerifier, layer_digest, n_chunks

FORMAT = "activations"
FORMAT_VERSION = 1
TARGET_CHUNK_BYTES = 8 * 1024**2
# Column stats widen rows to float64 this many values at a time (4 MiB), in one reused buffer.
STATS_SLAB_ITEMS = 1 << 19
STATS_KINDS = ("sum", "sumsq")


def digest_node(name: str) -> str:
    """The node of a layer's chunk digests."""
    return f"digests/{escape_name(name)}"


def check_unique_ids(ids: np.ndarray, label: str) -> None:
    """Raise :class:`DataError` naming the first sample id that occurs twice (and where)."""
    values = np.asarray(ids).tolist()
    seen: dict[object, int] = {}
    for i, value in enumerate(values):
        if value in seen:
            raise DataError(
                f"{label}: sample ids are not unique: {value!r} is id {seen[value]} and id {i}"
            )
        seen[value] = i


def first_nonfinite_row(block: np.ndarray) -> int | None:
    """The first row of a 2-D float block holding NaN or Inf, or None.

    A float64 sum (buffered by NumPy: no temporary the size of the block) is finite for every
    finite float16/32 block and almost every float64 one; only when it is not are the rows
    searched, a slab at a time.
    """
    if math.isfinite(float(block.sum(dtype=np.float64))):
        return None
    step = max(1, STATS_SLAB_ITEMS // max(1, block.shape[1]))
    for first in range(0, block.shape[0], step):
        rows = np.isfinite(block[first : first + step]).all(axis=1)
        if not rows.all():
            return first + int(np.argmin(rows))
    return None  # finite values whose float64 sum overflows


def chunk_rows(width: int, itemsize: int, n: int, target: int = TARGET_CHUNK_BYTES) -> int:
    """Rows per chunk so that one chunk of a (n, width) array is about ``target`` bytes."""
    return max(1, min(n, target // max(1, width * itemsize)))


@dataclass(frozen=True)
class LayerSpec:
    """A layer to declare with :meth:`StoreWriter.add_layers`: rows of ``feature_shape`` in
    ``dtype`` (non-float types are stored as float32/64), its attributes, and rows per chunk
    (None: the writer's default)."""

    name: str
    feature_shape: tuple[int, ...]
    dtype: Any
    attrs: dict[str, Any] = field(default_factory=dict)
    rows_per_chunk: int | None = None


@dataclass(frozen=True)
class LayerInfo:
    """Shape facts of one stored layer. ``shape`` is ``(n, *feature_shape)``; ``width`` is D."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    chunk_rows: int
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def feature_shape(self) -> tuple[int, ...]:
        return self.shape[1:]

    @property
    def width(self) -> int:
        return math.prod(self.shape[1:])

    @property
    def nbytes(self) -> int:
        return self.shape[0] * self.width * self.dtype.itemsize


# What h5py and zarr raise for data they cannot read or decode.
_READ_ERRORS = (OSError, ValueError, KeyError, RuntimeError, TypeError)


class ActivationStore:
    """Read access to an activation store. Open with :func:`repsim_cli.store.open_store`."""

    def __init__(self, container: Container) -> None:
        self._c = container
        self.path = container.path
        attrs = container.get_attrs()
        if attrs.get("repsim_format") != FORMAT:
            container.close()
            raise StoreError(f"{self.path}: not a repsim activation store (no repsim_format attr)")
        self.attrs = attrs
        self.layers: list[str] = list(attrs.get("layers", []))
        self.n_samples = int(attrs["n_samples"])
        self.complete = bool(attrs.get("complete", True))
        self._infos: dict[str, LayerInfo] = {}
        self._chunk_digests: dict[str, np.ndarray | None] = {}
        self._verifiers: dict[str, ReadVerifier] = {}
        self._verify_lock = threading.Lock()
        try:
            for name in self.layers:
                self._check_layer_shape(name)
        except BaseException:
            container.close()
            raise

    def _check_layer_shape(self, name: str) -> None:
        """Refuse a layer whose array is missing or is not (n, D) with D ≥ 1."""
        node = self._node(name)
        if not self._c.has(node):
            raise CorruptStoreError(
                f"{self.path}: layer {name!r} is listed but its array {node!r} is missing "
                "(the store is damaged: write it again)"
            )
        try:
            info = self.info(name)
        except (KeyError, ValueError, OSError) as exc:
            raise CorruptStoreError(
                f"{self.path}: layer {name!r}: its array cannot be opened ({exc.__class__.__name__}: "
                f"{exc}); the store is damaged: write it again"
            ) from None
        if len(info.shape) < 2:
            raise ShapeMismatchError(
                f"{self.path}: layer {name!r} has shape {info.shape}; a layer must be (n, features...)"
            )
        if info.shape[0] != self.n_samples:
            raise ShapeMismatchError(
                f"{self.path}: layer {name!r} has {info.shape[0]} rows, but the store has "
                f"{self.n_samples} samples"
            )
        if info.width == 0:
            raise ShapeMismatchError(f"{self.path}: layer {name!r} has no columns (shape {info.shape})")

    def __enter__(self) -> ActivationStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._c.close()

    @property
    def backend(self) -> str:
        return type(self._c).__name__.strip("_").replace("Container", "").lower()

    def ids(self) -> np.ndarray:
        """Sample ids, shape (n,): strings (object array) or int64."""
        return self._c.read_array("samples/ids")

    def _node(self, name: str) -> str:
        if name not in self.layers:
            raise LayerNotFoundError(
                f"{self.path}: no layer {name!r}; available: {', '.join(self.layers)}"
            )
        return f"layers/{escape_name(name)}"

    def info(self, name: str) -> LayerInfo:
        """Shape, dtype, chunking and attributes of a layer."""
        if name not in self._infos:
            node = self._node(name)
            arr = self._c.array(node)
            chunks = getattr(arr, "chunks", None) or (arr.shape[0],)
            self._infos[name] = LayerInfo(
                name=name,
                shape=tuple(int(s) for s in arr.shape),
                dtype=np.dtype(arr.dtype),
                chunk_rows=int(chunks[0]) if chunks else int(arr.shape[0]),
                attrs=self._c.get_attrs(node),
            )
        return self._infos[name]

    def read_rows(self, name: str, start: int, stop: int, *, check: bool = True) -> np.ndarray:
        """Rows [start, stop) of a layer as a 2-D (rows, D) array in the stored dtype.

        Raises :class:`CorruptStoreError` for a missing or unreadable chunk and, where the store
        has content digests, for a whole chunk in the range whose rows no longer match its
        digest; :class:`DataError` for NaN/Inf values. ``check=False`` skips the digest and
        NaN/Inf checks (``repsim verify`` makes them itself).
        """
        info = self.info(name)
        handle = self._c.array(self._node(name))
        missing = self._c.missing_chunk(handle, start, stop)
        if missing is not None:
            raise CorruptStoreError(
                f"{self.path}: layer {name!r}: the chunk of rows {missing}-"
                f"{min(missing + info.chunk_rows, self.n_samples) - 1} is missing (the store is "
                "damaged: write it again)"
            )
        try:
            block = np.asarray(handle[start:stop])
        except _READ_ERRORS as exc:
            raise self._unreadable(name, handle, start, stop, exc) from None
        block = block.reshape(block.shape[0], info.width)
        if check and block.dtype.kind == "f":
            bad = first_nonfinite_row(block)
            if bad is not None:
                raise DataError(
                    f"{self.path}: layer {name!r}: contains NaN or Inf values (first in row {start + bad})"
                )
        if check:
            self._check_digests(name, start, block)
        return block

    def _unreadable(self, name: str, handle: Any, start: int, stop: int, exc: BaseException) -> CorruptStoreError:
        """The error for a failed read, naming the first chunk of the range that cannot be read."""
        step = self.info(name).chunk_rows
        first, last = start, stop
        for chunk_start in range(start - start % step, stop, step):
            try:
                np.asarray(handle[chunk_start : min(chunk_start + step, self.n_samples)])
            except _READ_ERRORS:  # noqa: PERF203 - only after a read failed
                first, last = chunk_start, min(chunk_start + step, self.n_samples)
                break
        return CorruptStoreError(
            f"{self.path}: layer {name!r}: rows {first}-{last - 1} cannot be read "
            f"({exc.__class__.__name__}: {exc}); the store is damaged: write it again"
        )

    def chunk_digests(self, name: str) -> np.ndarray | None:
        """The layer's (chunks, 16) chunk digests, or None for a store written without them."""
        if name not in self._chunk_digests:
            node = digest_node(name)
            stored = self.complete and name in (self.attrs.get("content_digests") or {})
            self._chunk_digests[name] = (np.asarray(self._c.read_array(node), dtype=np.uint8)
                                         if stored and self._c.has(node) else None)  # fmt: skip
        return self._chunk_digests[name]

    def content_digests(self) -> dict[str, str] | None:
        """{layer: content digest} recorded when the store was written; None for older stores."""
        digests = self.attrs.get("content_digests")
        return dict(digests) if isinstance(digests, dict) and self.complete else None

    def _check_digests(self, name: str, start: int, block: np.ndarray) -> None:
        """Check the chunks these rows complete against their digests (see :class:`ReadVerifier`)."""
        with self._verify_lock:
            if name not in self._verifiers:
                digests = self.chunk_digests(name)
                if digests is None:
                    return
                self._verifiers[name] = ReadVerifier(digests, self.info(name).chunk_rows, self.n_samples)
            bad = self._verifiers[name].feed(start, block)
        if bad is not None:
            raise CorruptStoreError(
                f"{self.path}: layer {name!r}: rows {bad[0]}-{bad[1] - 1} do not match their "
                "content digest (changed or damaged since the store was written; "
                f"run 'repsim verify {self.path}')"
            )

    def iter_blocks(self, name: str, rows: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(start, block)`` with blocks of ``rows`` rows (default: the chunk size)."""
        info = self.info(name)
        step = rows or info.chunk_rows
        for start in range(0, self.n_samples, step):
            yield start, self.read_rows(name, start, min(start + step, self.n_samples))

    def has_stats(self, name: str) -> bool:
        """Whether the layer's column stats are stored (they are written when a store is
        complete; an incomplete one has none yet)."""
        return self.complete and self._c.has(f"stats/{escape_name(name)}/sum")

    def column_sums(self, name: str) -> np.ndarray | None:
        """Float64 column sums (D,) written at import/extract, or None when absent."""
        self._node(name)
        if not self.has_stats(name):
            return None
        return np.asarray(self._c.read_array(f"stats/{escape_name(name)}/sum"), dtype=np.float64)

    def column_sumsq(self, name: str) -> np.ndarray | None:
        """Float64 column sums of squares (D,), or None when absent."""
        node = f"stats/{escape_name(name)}/sumsq"
        if not self._c.has(node):
            return None
        return np.asarray(self._c.read_array(node), dtype=np.float64)

    def fingerprint(self) -> str:
        """A cheap content fingerprint: format, n, layers with shapes/dtypes, the stats sums, and
        the layers' content digests where the store has them (read from the store, not
        recomputed: :func:`repsim_cli.integrity.verify_store` re-reads the rows)."""
        import hashlib

        h = hashlib.sha256()
        h.update(repr((self.n_samples, self.layers)).encode())
        digests = self.content_digests() or {}
        for name in self.layers:
            info = self.info(name)
            h.update(repr((info.shape, str(info.dtype))).encode())
            sums = self.column_sums(name)
            if sums is not None:
                h.update(sums.tobytes())
            if name in digests:
                h.update(str(digests[name]).encode())
        return h.hexdigest()[:16]


class StoreWriter:
    """Create an activation store, add layers, write rows, and finalise (stats + ``complete``).

    Column sums and sums of squares are accumulated in float64 as rows are written, so a layer is
    read once. Writers of whole arrays (import) and streaming writers (extract) both use this.
    """

    def __init__(
        self, path: str | Path, ids: Sequence[Any] | np.ndarray, source: dict[str, Any] | None = None,
        chunk_rows: int | None = None,
    ):
        self.path = Path(path)
        self.chunk_rows = chunk_rows
        ids_arr = np.asarray(ids)
        if ids_arr.ndim != 1:
            raise ShapeMismatchError(f"{self.path}: sample ids must be 1-D, got shape {ids_arr.shape}")
        check_unique_ids(ids_arr, str(self.path))
        if len(ids_arr) == 0:
            raise ShapeMismatchError(f"{self.path}: no samples")
        self.n_samples = len(ids_arr)
        self._c = open_container(self.path, "w")
        if ids_arr.dtype.kind in {"i", "u"}:
            ids_arr = ids_arr.astype(np.int64)
        else:
            ids_arr = np.array([str(x) for x in ids_arr], dtype=object)
        self._c.write_array("samples/ids", ids_arr)
        self._c.set_attrs("", {
            "repsim_format": FORMAT, "format_version": FORMAT_VERSION,
            "repsim_version": __version__, "n_samples": self.n_samples,
            "layers": [], "complete": False, "source": source or {},
        })  # fmt: skip
        self.layers: list[str] = []
        self._sums: dict[str, np.ndarray] = {}
        self._sumsq: dict[str, np.ndarray] = {}
        self._arrays: dict[str, Any] = {}
        self._stats: dict[str, list[Any]] = {}
        self._wide = np.empty(0, dtype=np.float64)
        self._marked: dict[str, int] = {}
        self._hashers: dict[str, LayerHasher] = {}
        self._digest_arrays: dict[str, Any] = {}

    def add_layer(
        self, name: str, feature_shape: tuple[int, ...], dtype: Any, attrs: dict[str, Any] | None = None,
        rows_per_chunk: int | None = None,
    ) -> None:
        """Declare a layer of shape (n, *feature_shape); it is chunked along samples only.

        ``rows_per_chunk`` sets the rows per chunk of this layer (default: the writer's
        ``chunk_rows``, else chunks of about 8 MiB).
        """
        self.add_layers([LayerSpec(name, tuple(feature_shape), dtype, attrs or {}, rows_per_chunk)])

    def add_layers(self, specs: Sequence[LayerSpec]) -> None:
        """Declare several layers at once (see :meth:`add_layer`): their arrays, and each one's
        stats arrays (filled by :meth:`finalize`, so that closing writes only their data), are
        made in one call to the backend (one batch of metadata writes for Zarr)."""
        arrays: list[ArraySpec] = []
        made: list[tuple[str, int, int]] = []  # (name, width, rows per chunk), in order
        per_layer = 2 + len(STATS_KINDS)  # the layer's array, its stats arrays, its digests
        for spec in specs:
            name = spec.name
            if name in self.layers or any(name == m for m, _, _ in made):
                raise StoreError(f"{self.path}: layer {name!r} given twice")
            if not name:
                raise StoreError(f"{self.path}: empty layer name")
            dt = np.dtype(spec.dtype)
            if dt.kind != "f":
                dt = np.dtype(np.float32) if dt.itemsize <= 4 else np.dtype(np.float64)
            width = math.prod(spec.feature_shape)
            if width == 0 or not spec.feature_shape:
                raise ShapeMismatchError(
                    f"{self.path}: layer {name!r}: rows of shape {tuple(spec.feature_shape)} have no "
                    "values; a layer needs at least one column"
                )
            wanted = spec.rows_per_chunk or self.chunk_rows
            rows = (min(wanted, self.n_samples) if wanted
                    else chunk_rows(width, dt.itemsize, self.n_samples))  # fmt: skip
            attrs = {"feature_shape": list(spec.feature_shape), "name": name, **spec.attrs}
            arrays.append(ArraySpec(f"layers/{escape_name(name)}", (self.n_samples, *spec.feature_shape),
                                    dt, (rows, *spec.feature_shape), attrs))  # fmt: skip
            arrays += [ArraySpec(node, (width,), np.dtype(np.float64), (width,))
                       for node in self._stats_nodes(name)]  # fmt: skip
            digest_shape = (n_chunks(self.n_samples, rows), DIGEST_BYTES)
            arrays.append(ArraySpec(digest_node(name), digest_shape, np.dtype(np.uint8), digest_shape))
            made.append((name, width, rows))
        handles = self._c.create_arrays(arrays)
        for i, (name, width, rows) in enumerate(made):
            layer, *rest = handles[i * per_layer : (i + 1) * per_layer]
            self._arrays[name], self._stats[name] = layer, rest[:-1]
            self._digest_arrays[name] = rest[-1]
            self._hashers[name] = LayerHasher(self.n_samples, rows)
            self._sums[name] = np.zeros(width, dtype=np.float64)
            self._sumsq[name] = np.zeros(width, dtype=np.float64)
        self.layers += [name for name, _, _ in made]
        self._c.set_attrs("", {"layers": self.layers})

    def _stats_arrays(self, name: str, width: int) -> list[Any]:
        """Handles of the layer's (width,) float64 ``sum`` and ``sumsq`` arrays, made if absent
        (partial stores of earlier versions made them only at the end)."""
        return [self._c.array(node) if self._c.has(node)
                else self._c.create_array(node, (width,), np.float64, (width,))
                for node in self._stats_nodes(name)]  # fmt: skip

    @staticmethod
    def _stats_nodes(name: str) -> list[str]:
        return [f"stats/{escape_name(name)}/{kind}" for kind in STATS_KINDS]

    def write_rows(self, name: str, start: int, block: np.ndarray) -> None:
        """Write rows [start, start + len(block)) of a layer and add them to its column stats."""
        arr = self._arrays[name]
        block = np.asarray(block)
        if block.shape[1:] != tuple(arr.shape[1:]):
            raise ShapeMismatchError(
                f"{self.path}: layer {name!r}: rows of shape {block.shape[1:]} "
                f"do not match the feature shape {tuple(arr.shape[1:])}"
            )
        data = np.ascontiguousarray(block, dtype=arr.dtype)
        self._c.write_rows(arr, start, data)
        self._hashers[name].update(start, data)
        self._add_stats(name, block)

    def layer_feature_shape(self, name: str) -> tuple[int, ...]:
        """The feature shape of a layer (its rows' shape)."""
        return tuple(int(s) for s in self._arrays[name].shape[1:])

    def layer_dtype(self, name: str) -> np.dtype[Any]:
        """The stored dtype of a layer."""
        dtype: np.dtype[Any] = np.dtype(self._arrays[name].dtype)
        return dtype

    def _add_stats(self, name: str, block: np.ndarray) -> None:
        """Add the float64 column sums and sums of squares of a (rows, *feature_shape) block.

        Rows are widened to float64 (exactly, from float16/32) a slab of about
        ``STATS_SLAB_ITEMS`` values at a time in a reused buffer, so that no float64 copy of
        the whole block is made; the sums depend only on the block boundaries.
        """
        flat = block.reshape(block.shape[0], -1)
        step = max(1, STATS_SLAB_ITEMS // max(1, flat.shape[1]))
        for first in range(0, flat.shape[0], step):
            part = flat[first : first + step]
            wide = self._wide_buffer(part.size).reshape(part.shape)
            np.copyto(wide, part, casting="unsafe")
            self._sums[name] += wide.sum(axis=0)
            self._sumsq[name] += np.einsum("ij,ij->j", wide, wide)

    def _wide_buffer(self, size: int) -> np.ndarray:
        """A float64 scratch vector of ``size`` values, reused across calls."""
        if self._wide.size < size:
            self._wide = np.empty(size, dtype=np.float64)
        return self._wide[:size]

    def set_attrs(self, values: dict[str, Any]) -> None:
        self._c.set_attrs("", values)

    def finalize(self, attrs: dict[str, Any] | None = None) -> None:
        """Write the stats and the content digests, set ``attrs`` and mark the store complete,
        and close it."""
        digests = {}
        for name in self.layers:
            for handle, values in zip(self._stats[name], (self._sums[name], self._sumsq[name]), strict=True):
                self._c.write_rows(handle, 0, values)
            digests[name] = self._write_digests(name)
        self._c.set_attrs("", {**(attrs or {}), "content_digests": digests,
                               "digest_algorithm": ALGORITHM, "complete": True})  # fmt: skip
        self._c.close()

    def _write_digests(self, name: str) -> str:
        """Store the layer's chunk digests (read back when its rows were not written in order)
        and return its digest."""
        arr = self._arrays[name]
        hasher = self._hashers[name]
        if not hasher.complete:
            hasher = LayerHasher(self.n_samples, hasher.chunk_rows)
            for start in range(0, self.n_samples, hasher.chunk_rows):
                hasher.update(start, np.ascontiguousarray(self.read_rows(name, start, start + hasher.chunk_rows)))
        handle = self._digest_arrays.get(name)
        if handle is None:
            handle = self._c.create_array(digest_node(name), hasher.digests.shape, np.uint8, hasher.digests.shape)
        self._c.write_rows(handle, 0, hasher.digests)
        return layer_digest(arr.shape, arr.dtype, hasher.chunk_rows, hasher.digests)

    def abort(self) -> None:
        """Close the store after a failure; errors while closing (a full disk) are dropped, so
        that the original error is the one reported."""
        with contextlib.suppress(Exception):  # the caller is already raising the error that matters
            self._c.close()

    # ------------------------------------------------------------ resumable writing (extract)
    @classmethod
    def reopen(cls, path: str | Path) -> StoreWriter:
        """Reopen an unfinished store for writing, to go on where an interrupted writer stopped.

        Layers, ids and attributes stay as written. The running column stats start at zero:
        call :meth:`restore_stats` for the rows kept, so that they equal an uninterrupted run's.

        Raises
        ------
        StoreError
            The path is not a repsim store, or the store is already complete.
        """
        writer = cls.__new__(cls)
        writer.path = Path(path)
        writer.chunk_rows = None
        writer._c = open_container(writer.path, "r+")
        try:
            attrs = writer._c.get_attrs()
            if attrs.get("repsim_format") != FORMAT:
                raise StoreError(f"{writer.path}: not a repsim activation store")
            if attrs.get("complete", True):
                raise StoreError(f"{writer.path}: store is already complete")
            writer.n_samples = int(attrs["n_samples"])
            writer.layers = list(attrs.get("layers", []))
            writer._arrays = {n: writer._c.array(f"layers/{escape_name(n)}") for n in writer.layers}
        except BaseException:
            writer._c.close()
            raise
        writer._sums = {
            n: np.zeros(math.prod(a.shape[1:]), dtype=np.float64) for n, a in writer._arrays.items()
        }
        writer._sumsq = {n: np.zeros_like(v) for n, v in writer._sums.items()}
        writer._stats = {n: writer._stats_arrays(n, v.size) for n, v in writer._sums.items()}
        writer._hashers = {n: LayerHasher(writer.n_samples, writer.layer_chunk_rows(n)) for n in writer.layers}
        writer._digest_arrays = {n: writer._c.array(digest_node(n)) for n in writer.layers
                                 if writer._c.has(digest_node(n))}  # fmt: skip
        writer._wide = np.empty(0, dtype=np.float64)
        writer._marked = {name: int(k) for name, k in (attrs.get("rows_written") or {}).items()}
        return writer

    def attrs(self) -> dict[str, Any]:
        """The store's root attributes as written so far."""
        return self._c.get_attrs()

    def layer_chunk_rows(self, name: str) -> int:
        """Rows per on-disk chunk of a layer."""
        arr = self._arrays[name]
        chunks = getattr(arr, "chunks", None)
        return int(chunks[0]) if chunks else int(arr.shape[0])

    def rows_written(self) -> dict[str, int]:
        """Rows [0, k) of each layer recorded as durably written by :meth:`mark_rows_written`
        (the root attribute ``rows_written``; layers never marked have 0)."""
        return {name: self._marked.get(name, 0) for name in self.layers}

    def mark_rows_written(self, rows: dict[str, int], attrs: dict[str, Any] | None = None) -> None:
        """Record that rows [0, rows[name]) of these layers are written (call :meth:`flush`
        first, so that a mark never claims rows that are not on disk), with other root
        attributes that go with those rows. One attribute write."""
        self._marked.update({name: int(k) for name, k in rows.items()})
        self._c.set_attrs("", {**(attrs or {}), "rows_written": self.rows_written()})

    def read_rows(self, name: str, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) of a layer as written, in its stored dtype and feature shape."""
        return np.asarray(self._arrays[name][start:stop])

    def restore_stats(self, name: str, stop: int, step: int) -> None:
        """Recompute a layer's running column stats over rows [0, stop), read ``step`` rows at a
        time: the same float64 sums an uninterrupted writer that called :meth:`write_rows` with
        those blocks holds (``stop`` must be a multiple of ``step`` or the end of the layer)."""
        self._sums[name][:] = 0.0
        self._sumsq[name][:] = 0.0
        self._hashers[name] = LayerHasher(self.n_samples, self.layer_chunk_rows(name))
        for start in range(0, stop, step):
            block = np.ascontiguousarray(self.read_rows(name, start, min(start + step, stop)))
            self._hashers[name].update(start, block)
            self._add_stats(name, block)

    def flush(self) -> None:
        """Push written data and metadata to disk, so that a killed process leaves a readable file.

        Zarr writes every chunk and attribute file atomically already; HDF5 needs a flush.
        """
        handle = getattr(self._c, "_file", None)
        if handle is not None:
            handle.flush()
