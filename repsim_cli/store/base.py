"""The activation store: one logical layout (DESIGN §2) over HDF5 and Zarr.

Layout::

    /                 attrs: repsim_format="activations", format_version, layers=[names in order],
                             n_samples, complete, repsim_version, source={...}
    /samples/ids      (n,) str or int64
    /layers/<name>    (n, *feature_shape), chunked along samples only; attrs: feature_shape, reduction
    /stats/<name>/sum, /stats/<name>/sumsq   (D,) float64 column sums of the flattened features

A layer is always read as a 2-D ``(rows, D)`` array with ``D = prod(feature_shape)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..errors import DataError, LayerNotFoundError, ShapeMismatchError, StoreError
from ._container import ArraySpec, Container, open_container
from ._names import escape_name

FORMAT = "activations"
FORMAT_VERSION = 1
TARGET_CHUNK_BYTES = 8 * 1024**2
# Column stats widen rows to float64 this many values at a time (4 MiB), in one reused buffer.
STATS_SLAB_ITEMS = 1 << 19
STATS_KINDS = ("sum", "sumsq")


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

    def read_rows(self, name: str, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) of a layer as a 2-D (rows, D) array in the stored dtype."""
        info = self.info(name)
        block = np.asarray(self._c.array(self._node(name))[start:stop])
        return block.reshape(block.shape[0], info.width)

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
        """A cheap content fingerprint: format, n, layers with shapes/dtypes, and the stats sums."""
        import hashlib

        h = hashlib.sha256()
        h.update(repr((self.n_samples, self.layers)).encode())
        for name in self.layers:
            info = self.info(name)
            h.update(repr((info.shape, str(info.dtype))).encode())
            sums = self.column_sums(name)
            if sums is not None:
                h.update(sums.tobytes())
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
        if len(set(ids_arr.tolist())) != len(ids_arr):
            raise DataError(f"{self.path}: sample ids are not unique")
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
        made: list[tuple[str, int]] = []  # (name, width), in order
        per_layer = 1 + len(STATS_KINDS)  # the layer's array, then its stats arrays
        for spec in specs:
            name = spec.name
            if name in self.layers or any(name == m for m, _ in made):
                raise StoreError(f"{self.path}: layer {name!r} given twice")
            if not name:
                raise StoreError(f"{self.path}: empty layer name")
            dt = np.dtype(spec.dtype)
            if dt.kind != "f":
                dt = np.dtype(np.float32) if dt.itemsize <= 4 else np.dtype(np.float64)
            width = math.prod(spec.feature_shape)
            wanted = spec.rows_per_chunk or self.chunk_rows
            rows = (min(wanted, self.n_samples) if wanted
                    else chunk_rows(width, dt.itemsize, self.n_samples))  # fmt: skip
            attrs = {"feature_shape": list(spec.feature_shape), "name": name, **spec.attrs}
            arrays.append(ArraySpec(f"layers/{escape_name(name)}", (self.n_samples, *spec.feature_shape),
                                    dt, (rows, *spec.feature_shape), attrs))  # fmt: skip
            arrays += [ArraySpec(node, (width,), np.dtype(np.float64), (width,))
                       for node in self._stats_nodes(name)]  # fmt: skip
            made.append((name, width))
        handles = self._c.create_arrays(arrays)
        for i, (name, width) in enumerate(made):
            self._arrays[name], *self._stats[name] = handles[i * per_layer : (i + 1) * per_layer]
            self._sums[name] = np.zeros(width, dtype=np.float64)
            self._sumsq[name] = np.zeros(width, dtype=np.float64)
        self.layers += [name for name, _ in made]
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
        self._c.write_rows(arr, start, np.ascontiguousarray(block, dtype=arr.dtype))
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

    def finalize(self) -> None:
        """Write the stats, mark the store complete, and close it."""
        for name in self.layers:
            for handle, values in zip(self._stats[name], (self._sums[name], self._sumsq[name]), strict=True):
                self._c.write_rows(handle, 0, values)
        self._c.set_attrs("", {"complete": True})
        self._c.close()

    def abort(self) -> None:
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

    def mark_rows_written(self, rows: dict[str, int]) -> None:
        """Record that rows [0, rows[name]) of these layers are written (call :meth:`flush`
        first, so that a mark never claims rows that are not on disk). One attribute write."""
        self._marked.update({name: int(k) for name, k in rows.items()})
        self._c.set_attrs("", {"rows_written": self.rows_written()})

    def read_rows(self, name: str, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) of a layer as written, in its stored dtype and feature shape."""
        return np.asarray(self._arrays[name][start:stop])

    def restore_stats(self, name: str, stop: int, step: int) -> None:
        """Recompute a layer's running column stats over rows [0, stop), read ``step`` rows at a
        time: the same float64 sums an uninterrupted writer that called :meth:`write_rows` with
        those blocks holds (``stop`` must be a multiple of ``step`` or the end of the layer)."""
        self._sums[name][:] = 0.0
        self._sumsq[name][:] = 0.0
        for start in range(0, stop, step):
            self._add_stats(name, self.read_rows(name, start, min(start + step, stop)))

    def flush(self) -> None:
        """Push written data and metadata to disk, so that a killed process leaves a readable file.

        Zarr writes every chunk and attribute file atomically already; HDF5 needs a flush.
        """
        handle = getattr(self._c, "_file", None)
        if handle is not None:
            handle.flush()
