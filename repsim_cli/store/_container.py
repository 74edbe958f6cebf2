"""A minimal hierarchical container over HDF5 (h5py) and Zarr v3, the two on-disk backends.

Activation stores and results files both use this; the backends are private and chosen by suffix
(``.h5``/``.hdf5`` for HDF5, ``.zarr`` for Zarr). Paths inside a container are ``/``-separated.
"""

from __future__ import annotations

import abc
import contextlib
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._allocator import ALIGN
from ..errors import StoreError
from ..outputs import drop_disk_full_noise
from ._direct_io import FileWriter, PositionalWriter

HDF5_SUFFIXES = (".h5", ".hdf5")
ZARR_SUFFIXES = (".zarr",)


def backend_for(path: Path) -> str:
    """Return ``"hdf5"`` or ``"zarr"`` for a path by its suffix; raise StoreError otherwise."""
    suffix = path.suffix.lower()
    if suffix in HDF5_SUFFIXES:
        return "hdf5"
    if suffix in ZARR_SUFFIXES:
        return "zarr"
    raise StoreError(f"{path}: unknown store format (use a .h5, .hdf5 or .zarr path)")


def _plain(value: Any) -> Any:
    """Turn numpy scalars/arrays inside attribute values into JSON-compatible Python objects."""
    return json.loads(json.dumps(value, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


# Attribute values HDF5 has no native form for (mappings, None, lists mixing kinds or ragged)
# are stored as JSON text after this prefix; files of earlier versions stored every list and
# mapping that way, and still read.
JSON_PREFIX = "json:"
_INT64 = (-(2**63), 2**63 - 1)


def encode_hdf5_attr(value: Any) -> Any:
    """An attribute value in its native HDF5 form, readable as it is by h5py, h5dump or xarray.

    Strings: variable-length UTF-8 strings; booleans: HDF5's boolean enum (h5py's); integers
    (int64 range): int64; floats: float64; lists (regular nesting, one kind of leaf: all
    strings, all booleans, all integers or all floats): arrays of that type, an empty list an
    empty string array. Anything else — mappings, None, ragged or mixed lists, integers beyond
    int64, and strings that begin with :data:`JSON_PREFIX` — is JSON text after that prefix.
    """
    import h5py

    plain = _plain(value)
    if isinstance(plain, bool):
        return np.bool_(plain)
    if isinstance(plain, int) and _INT64[0] <= plain <= _INT64[1]:
        return np.int64(plain)
    if isinstance(plain, float):
        return np.float64(plain)
    if isinstance(plain, str) and not plain.startswith(JSON_PREFIX):
        return plain
    if isinstance(plain, list):
        shape, leaves = _regular(plain)
        kinds = {_leaf_kind(x) for x in leaves} if shape is not None else {None}
        if shape is not None and len(kinds) <= 1 and None not in kinds:
            kind = kinds.pop() if kinds else "str"
            dtype = h5py.string_dtype() if kind == "str" else np.dtype(kind)
            return np.array(leaves, dtype=dtype).reshape(shape)
    return JSON_PREFIX + json.dumps(plain)


def _leaf_kind(x: Any) -> str | None:
    """numpy kind name of one list element, or None where a native array cannot hold it."""
    if isinstance(x, bool):
        return "bool"
    if isinstance(x, int):
        return "int64" if _INT64[0] <= x <= _INT64[1] else None
    if isinstance(x, float):
        return "float64"
    return "str" if isinstance(x, str) else None


def _regular(items: list[Any]) -> tuple[tuple[int, ...] | None, list[Any]]:
    """(shape, leaves in C order) of a regularly nested list, or (None, []) when it is ragged."""
    if not any(isinstance(x, list) for x in items):
        return (len(items),), list(items)
    if not all(isinstance(x, list) for x in items):
        return None, []
    parts = [_regular(x) for x in items]
    inner = {shape for shape, _ in parts}
    if len(inner) != 1 or None in inner:
        return None, []
    shape = inner.pop()
    assert shape is not None
    return (len(items), *shape), [leaf for _, leaves in parts for leaf in leaves]


def decode_hdf5_attr(value: Any) -> Any:
    """A plain Python value (str, bool, int, float, list, dict or None) from an HDF5 attribute as
    h5py returns it: native values (:func:`encode_hdf5_attr`), JSON text after
    :data:`JSON_PREFIX` (how earlier versions stored lists and mappings), byte strings."""
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str):
        return json.loads(value[len(JSON_PREFIX):]) if value.startswith(JSON_PREFIX) else value
    if isinstance(value, np.ndarray):
        return _decode_list(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if type(value).__name__ == "Empty":  # h5py.Empty: a null dataspace
        return None
    return value


def _decode_list(items: Any) -> Any:
    if isinstance(items, list):
        return [_decode_list(x) for x in items]
    return items.decode() if isinstance(items, bytes) else items


@dataclass(frozen=True)
class ArraySpec:
    """An array to make with :meth:`Container.create_arrays` (as in :meth:`Container.create_array`)."""

    node: str
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    chunks: tuple[int, ...] | None = None
    attrs: Mapping[str, Any] = field(default_factory=dict)


class Container(abc.ABC):
    """Uniform access to groups, arrays and attributes of one HDF5 file or Zarr group."""

    path: Path
    writable: bool

    @abc.abstractmethod
    def get_attrs(self, node: str = "") -> dict[str, Any]:
        """Attributes of a node as plain Python values."""

    @abc.abstractmethod
    def set_attrs(self, node: str, values: Mapping[str, Any]) -> None:
        """Update attributes of a node (JSON-compatible values)."""

    @abc.abstractmethod
    def has(self, node: str) -> bool:
        """Whether a node exists."""

    @abc.abstractmethod
    def children(self, node: str) -> list[str]:
        """Names of the children of a group (empty if the node does not exist)."""

    @abc.abstractmethod
    def create_array(
        self, node: str, shape: tuple[int, ...], dtype: Any, chunks: tuple[int, ...] | None = None,
        attrs: Mapping[str, Any] | None = None,
    ) -> Any:
        """Create an array (parents created as needed) with attributes ``attrs`` and return a
        sliceable handle."""

    def create_arrays(self, specs: Sequence[ArraySpec]) -> list[Any]:
        """Make several arrays (parents as needed); their handles, in order."""
        return [self.create_array(s.node, s.shape, s.dtype, s.chunks, s.attrs) for s in specs]

    @abc.abstractmethod
    def array(self, node: str) -> Any:
        """A sliceable handle to an existing array (``.shape``, ``.dtype``, ``.chunks``)."""

    def write_rows(self, handle: Any, start: int, block: np.ndarray) -> None:
        """Write ``block`` (rows, ...) as rows [start, start + rows) of an array from
        :meth:`create_array` or :meth:`array`, in the array's dtype.

        Whole chunks (the edge chunk: its rows up to the end of the array) go to the backend's
        raw chunk writer when it has one for this array and block; the rows around them are
        written as a slice.
        """
        step = self._raw_chunk_rows(handle, block)
        if not step:
            self._write_slice(handle, start, block)
            return
        n, stop, first = int(handle.shape[0]), start + len(block), start
        while first < stop:
            chunk_start = first - first % step
            chunk_stop = min(chunk_start + step, n)
            end = min(stop, chunk_stop)
            part = block[first - start : end - start]
            if first == chunk_start and end == chunk_stop:
                self._write_chunk(handle, chunk_start, step, part)
            else:
                self._write_slice(handle, first, part)
            first = end

    def missing_chunk(self, handle: Any, start: int, stop: int) -> int | None:
        """The first row of the first chunk of rows [start, stop) that the backend has no data
        for (and would read as its fill value), or None. HDF5 allocates every chunk of an
        activation store when the array is made, so only Zarr can lack one."""
        return None

    def _raw_chunk_rows(self, handle: Any, block: np.ndarray) -> int:
        """Rows per chunk when this backend writes whole chunks of ``handle`` from ``block``
        itself; 0 when every write goes through the array's slicing."""
        return 0

    def _write_chunk(self, handle: Any, first: int, step: int, rows: np.ndarray) -> None:
        """Write the whole chunk that starts at row ``first`` (``rows``: all its rows that lie
        inside the array, ``step`` rows except at the edge)."""
        self._write_slice(handle, first, rows)

    def _write_slice(self, handle: Any, start: int, block: np.ndarray) -> None:
        handle[start : start + len(block)] = block

    def write_array(self, node: str, data: np.ndarray, chunks: tuple[int, ...] | None = None) -> None:
        """Create an array holding ``data`` (replacing an existing one)."""
        data = np.asarray(data)
        if self.has(node):
            self.delete(node)
        handle = self.create_array(node, data.shape, data.dtype, chunks)
        if data.size:
            handle[...] = data

    def read_array(self, node: str) -> np.ndarray:
        """Read a whole array into memory (strings come back as ``str`` objects)."""
        handle = self.array(node)
        data = handle[...] if handle.shape else handle[()]
        return self._decode(np.asarray(data))

    def _decode(self, data: np.ndarray) -> np.ndarray:
        if data.dtype.kind in {"S", "O", "T"}:
            return np.array([x.decode() if isinstance(x, bytes) else str(x) for x in data.ravel()],
                            dtype=object).reshape(data.shape)
        return data

    @abc.abstractmethod
    def delete(self, node: str) -> None:
        """Delete a node."""

    @abc.abstractmethod
    def close(self) -> None:
        """Flush and close."""

    def __enter__(self) -> Container:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()
            return
        with contextlib.suppress(Exception):  # the error in flight is the one to report
            self.discard()

    def discard(self) -> None:
        """Close after a failure (the caller removes the file): nothing more need reach disk."""
        self.close()


class _HDF5Container(Container):
    """An HDF5 file. ``in_memory`` (new files only): built in memory and written to disk in one
    plain write at :meth:`close`, so that a full disk is one clean OSError there (HDF5 itself
    does not recover from a file whose writes fail: objects freed later can crash the process)."""

    def __init__(self, path: Path, mode: str, in_memory: bool = False) -> None:
        import h5py

        self.path = path
        self.writable = mode != "r"
        self.in_memory = in_memory and mode == "w"
        self._positional: PositionalWriter | None = None
        if self.writable:
            drop_disk_full_noise()
        if self.in_memory:
            self._file = h5py.File(str(path), "w", driver="core", backing_store=False)
            return
        # Writing: large objects (chunks) start on ALIGN boundaries, so that whole chunks can be
        # written past the page cache; no chunk cache, since chunks are written whole, once,
        # and a cached copy could go stale beside those raw writes.
        tuning = {"alignment_threshold": ALIGN, "alignment_interval": ALIGN, "rdcc_nbytes": 0}
        try:
            self._file = h5py.File(path, mode, **(tuning if self.writable else {}))
        except FileNotFoundError:
            raise StoreError(f"{path}: no such file") from None
        except OSError as exc:
            raise StoreError(f"{path}: not an HDF5 file ({exc.__class__.__name__})") from None

    def get_attrs(self, node: str = "") -> dict[str, Any]:
        return {key: decode_hdf5_attr(value) for key, value in self._file[node or "/"].attrs.items()}

    def set_attrs(self, node: str, values: Mapping[str, Any]) -> None:
        if not node:
            target = self._file
        else:
            target = self._file[node] if node in self._file else self._file.require_group(node)
        attrs = target.attrs
        for key, value in values.items():
            attrs[key] = encode_hdf5_attr(value)

    def has(self, node: str) -> bool:
        return node in self._file

    def children(self, node: str) -> list[str]:
        if node and node not in self._file:
            return []
        return list(self._file[node or "/"].keys())

    def create_array(
        self, node: str, shape: tuple[int, ...], dtype: Any, chunks: tuple[int, ...] | None = None,
        attrs: Mapping[str, Any] | None = None,
    ) -> Any:
        import h5py

        dt = np.dtype(dtype)
        if dt.kind in {"U", "O", "T"}:
            dt = h5py.string_dtype()
        use_chunks = chunks if (chunks and all(shape)) else None
        extra: dict[str, Any] = {}
        if use_chunks:
            # Every chunk's file space is allocated now (unfilled): it has an address, so
            # :meth:`write_rows` can write chunks there itself.
            dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
            dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
            extra = {"dcpl": dcpl, "fill_time": "never"}
        handle = self._file.create_dataset(node, shape=shape, dtype=dt, chunks=use_chunks, **extra)
        if attrs:
            self.set_attrs(node, attrs)
        return handle

    def write_array(self, node: str, data: np.ndarray, chunks: tuple[int, ...] | None = None) -> None:
        data = np.asarray(data)
        if data.dtype.kind in {"U", "O", "T"}:
            data = np.array([str(x) for x in data.ravel()], dtype=object).reshape(data.shape)
        super().write_array(node, data, chunks)

    def array(self, node: str) -> Any:
        return self._file[node]

    def _raw_chunk_rows(self, handle: Any, block: np.ndarray) -> int:
        if self.in_memory:
            return 0
        plain = _plain_row_chunks(handle, block) and handle.id.get_create_plist().get_nfilters() == 0
        return int(handle.chunks[0]) if plain else 0

    def _write_chunk(self, handle: Any, first: int, step: int, rows: np.ndarray) -> None:
        """The chunk's bytes at its file address (allocated at creation), past the page cache
        where possible. Chunks without an address yet (datasets made by older versions) go
        through H5Dwrite_chunk, which skips HDF5's chunk cache too."""
        coords = (first,) + (0,) * (rows.ndim - 1)
        address = handle.id.get_chunk_info_by_coord(coords).byte_offset
        if address is not None:
            if self._positional is None:
                self._positional = PositionalWriter(self.path)
            self._positional.write_at(address, rows)
        elif len(rows) == step:
            handle.id.write_direct_chunk(coords, rows)
        else:
            self._write_slice(handle, first, rows)

    def delete(self, node: str) -> None:
        del self._file[node]

    def close(self) -> None:
        if self._positional is not None:
            self._positional.close()
            self._positional = None
        if not self._file.id.valid:
            return
        if not self.in_memory:
            self._file.close()
            return
        self._file.flush()
        image = self._file.id.get_file_image()
        self._file.close()
        with open(self.path, "wb") as fh:
            fh.write(image)
            fh.flush()
            os.fsync(fh.fileno())

    def discard(self) -> None:
        if self.in_memory and self._file.id.valid:
            self._file.close()
            return
        self.close()


def _plain_row_chunks(handle: Any, block: np.ndarray) -> bool:
    """Whether ``block``'s memory holds whole chunks of ``handle`` byte for byte: the array is
    chunked along rows only, and ``block`` is C-contiguous in its exact, native dtype."""
    chunks = handle.chunks
    return bool(
        chunks is not None
        and tuple(chunks[1:]) == tuple(handle.shape[1:])
        and block.dtype == handle.dtype
        and block.dtype.isnative
        and block.flags.c_contiguous
    )


class _ZarrContainer(Container):
    def __init__(self, path: Path, mode: str) -> None:
        import zarr

        self.path = path
        self.writable = mode != "r"
        self._raw_ok: dict[str, bool] = {}
        self._files = FileWriter()
        if mode in {"r", "r+"} and not path.exists():
            raise StoreError(f"{path}: no such file or directory")
        try:
            self._group = zarr.open_group(str(path), mode=mode)  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001 - zarr raises several unrelated types for "not a group"
            raise StoreError(f"{path}: not a Zarr v3 group ({exc.__class__.__name__})") from None

    def _node(self, node: str) -> Any:
        return self._group[node] if node else self._group

    def get_attrs(self, node: str = "") -> dict[str, Any]:
        return dict(self._node(node).attrs)

    def set_attrs(self, node: str, values: Mapping[str, Any]) -> None:
        target = self._node(node) if (not node or node in self._group) else self._group.require_group(node)
        target.attrs.update({k: _plain(v) for k, v in values.items()})

    def has(self, node: str) -> bool:
        return node in self._group

    def children(self, node: str) -> list[str]:
        if node and node not in self._group:
            return []
        return list(self._node(node).keys())

    def create_array(
        self, node: str, shape: tuple[int, ...], dtype: Any, chunks: tuple[int, ...] | None = None,
        attrs: Mapping[str, Any] | None = None,
    ) -> Any:
        return self._create(node, shape, dtype, chunks, attrs)

    def _create(
        self, node: str, shape: tuple[int, ...], dtype: Any, chunks: tuple[int, ...] | None,
        attrs: Mapping[str, Any] | None = None, overwrite: bool = False,
    ) -> Any:
        dt: Any = np.dtype(dtype)
        if dt.kind in {"U", "O", "T"}:
            dt = str
        kwargs: dict[str, Any] = {"compressors": None, "overwrite": overwrite,
                                  "attributes": {k: _plain(v) for k, v in (attrs or {}).items()}}
        if chunks and all(shape):
            kwargs["chunks"] = chunks
        elif not all(shape) or not shape:
            kwargs["chunks"] = tuple(max(1, s) for s in shape) if shape else ()
        # Created by its path, zarr writes the missing parent groups itself (keeping existing
        # ones) in fewer metadata round trips than require_group(parent).create_array(name).
        return self._group.create_array(node, shape=shape, dtype=dt, **kwargs)

    def write_array(self, node: str, data: np.ndarray, chunks: tuple[int, ...] | None = None) -> None:
        data = np.asarray(data)
        if data.dtype.kind == "O":
            data = data.astype(str)
        handle = self._create(node, data.shape, data.dtype, chunks, overwrite=True)
        if data.size:
            handle[...] = data

    def array(self, node: str) -> Any:
        return self._group[node]

    def _write_slice(self, handle: Any, start: int, block: np.ndarray) -> None:
        """As the base method, minus Zarr's scan of every chunk for the fill value (to skip
        writing chunks that hold nothing else): rows of activations seldom are all zero, and
        the scan costs as much as the write. Reads are the same either way."""
        if hasattr(handle, "with_config"):  # recent zarr; older ones keep scanning
            handle = handle.with_config({"write_empty_chunks": True})
        handle[start : start + len(block)] = block

    def create_arrays(self, specs: Sequence[ArraySpec]) -> list[Any]:
        """All in one batch of concurrent metadata writes (``zarr.create_hierarchy``, which also
        makes the missing parent groups), with the metadata :meth:`create_array` writes; one
        array at a time where this zarr lacks it or an array is not a plain chunked one."""
        nodes = _zarr_array_metadata(specs) if specs else None
        if nodes is None:
            return super().create_arrays(specs)
        from zarr.api.synchronous import create_hierarchy

        made = dict(create_hierarchy(store=self._group.store, nodes=nodes))
        return [made[spec.node] for spec in specs]

    def _raw_chunk_rows(self, handle: Any, block: np.ndarray) -> int:
        if not _plain_row_chunks(handle, block):
            return 0
        key = handle.path
        if key not in self._raw_ok:
            self._raw_ok[key] = _raw_zarr_chunks(handle)
        return int(handle.chunks[0]) if self._raw_ok[key] else 0

    def missing_chunk(self, handle: Any, start: int, stop: int) -> int | None:
        """Zarr reads a chunk without a file as the fill value: look for the chunk files of
        rows [start, stop) (arrays of a local directory store; others are not checked)."""
        root = self._chunk_root(handle)
        if root is None or stop <= start or not handle.shape or not handle.chunks:
            return None
        step = int(handle.chunks[0])
        tail = (0,) * (len(handle.shape) - 1)
        for index in range(start // step, (stop - 1) // step + 1):
            if not (root / handle.metadata.encode_chunk_key((index, *tail))).exists():
                return index * step
        return None

    def _chunk_root(self, handle: Any) -> Path | None:
        where: Any = getattr(handle, "store_path", None)
        local = getattr(getattr(where, "store", None), "root", None)
        if local is None or getattr(handle.metadata, "zarr_format", 0) != 3:
            return None
        return Path(local) / str(where.path)

    def _write_chunk(self, handle: Any, first: int, step: int, rows: np.ndarray) -> None:
        """The chunk's file, as Zarr would write it (the raw bytes of the whole chunk, the edge
        chunk padded with the zero fill value), atomically and past the page cache."""
        coords = (first // step,) + (0,) * (rows.ndim - 1)
        where = handle.store_path
        path = Path(where.store.root) / where.path / handle.metadata.encode_chunk_key(coords)
        self._files.write_file(path, rows, size=step * rows[0].nbytes if len(rows) else 0)

    def delete(self, node: str) -> None:
        del self._group[node]

    def close(self) -> None:
        pass


def _zarr_array_metadata(specs: Sequence[ArraySpec]) -> dict[str, Any] | None:
    """Zarr v3 metadata of numeric arrays chunked as given, uncompressed, zero-filled (what
    :meth:`_ZarrContainer.create_array` makes), by node; None when some spec is not such an
    array or this zarr lacks the classes."""
    if any(s.chunks is None or not all(s.shape) or np.dtype(s.dtype).kind not in "fiu"
           for s in specs):  # fmt: skip
        return None
    try:
        from zarr.codecs import BytesCodec
        from zarr.core.dtype import parse_dtype
        from zarr.core.metadata.v3 import ArrayV3Metadata
    except ImportError:
        return None
    return {
        s.node: ArrayV3Metadata(
            shape=s.shape, data_type=parse_dtype(np.dtype(s.dtype), zarr_format=3),
            chunk_grid={"name": "regular", "configuration": {"chunk_shape": s.chunks}},
            chunk_key_encoding={"name": "default", "configuration": {"separator": "/"}},
            fill_value=0, codecs=[BytesCodec()], dimension_names=None, storage_transformers=(),
            attributes={k: _plain(v) for k, v in s.attrs.items()},
        )
        for s in specs
    }


def _raw_zarr_chunks(handle: Any) -> bool:
    """Whether a Zarr array's chunk files are the raw bytes of its chunks, so that they can be
    written without Zarr: format 3 in a local directory, a regular grid, the default chunk key
    encoding, the bytes codec alone in native order, and a fill value of zero bytes."""
    try:
        from zarr.codecs import BytesCodec
        from zarr.core.chunk_grids import RegularChunkGrid
        from zarr.core.chunk_key_encodings import DefaultChunkKeyEncoding
        from zarr.storage import LocalStore
    except ImportError:  # another zarr layout: let zarr write
        return False
    meta = handle.metadata
    codecs: tuple[Any, ...] = tuple(getattr(meta, "codecs", ()))
    endian = getattr(codecs[0], "endian", None) if len(codecs) == 1 else None
    store = getattr(handle.store_path, "store", None)
    return bool(
        getattr(meta, "zarr_format", 0) == 3
        and len(codecs) == 1
        and isinstance(codecs[0], BytesCodec)
        and (endian is None or endian.value == sys.byteorder)
        and isinstance(meta.chunk_grid, RegularChunkGrid)
        and isinstance(meta.chunk_key_encoding, DefaultChunkKeyEncoding)
        and isinstance(store, LocalStore)
        and not np.asarray(meta.fill_value, dtype=handle.dtype).tobytes().strip(b"\0")
    )


def open_container(path: str | Path, mode: str = "r", *, in_memory: bool = False) -> Container:
    """Open an HDF5 file or a Zarr group by suffix. ``mode``: ``r``, ``r+``, ``w`` (create/overwrite).

    ``in_memory`` (mode ``w``, small files such as results): a new HDF5 file is built in memory
    and written whole when closed, so that a full disk is one clean error."""
    p = Path(path)
    backend = backend_for(p)
    if mode == "r" and not p.exists():
        raise StoreError(f"{p}: no such file or directory")
    if backend == "hdf5":
        return _HDF5Container(p, mode, in_memory=in_memory)
    return _ZarrContainer(p, mode)
