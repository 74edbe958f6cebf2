"""A minimal hierarchical container over HDF5 (h5py) and Zarr v3, the two on-disk backends.

Activation stores and results files both use this; the backends are private and chosen by suffix
(``.h5``/``.hdf5`` for HDF5, ``.zarr`` for Zarr). Paths inside a container are ``/``-separated.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import StoreError

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

    @abc.abstractmethod
    def array(self, node: str) -> Any:
        """A sliceable handle to an existing array (``.shape``, ``.dtype``, ``.chunks``)."""

    def write_rows(self, handle: Any, start: int, block: np.ndarray) -> None:
        """Write ``block`` (rows, ...) as rows [start, start + rows) of an array from
        :meth:`create_array` or :meth:`array`, in the array's dtype."""
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
        self.close()


class _HDF5Container(Container):
    def __init__(self, path: Path, mode: str) -> None:
        import h5py

        self.path = path
        self.writable = mode != "r"
        try:
            self._file = h5py.File(path, mode)
        except FileNotFoundError:
            raise StoreError(f"{path}: no such file") from None
        except OSError as exc:
            raise StoreError(f"{path}: not an HDF5 file ({exc.__class__.__name__})") from None

    def get_attrs(self, node: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in self._file[node or "/"].attrs.items():
            if isinstance(value, bytes):
                value = value.decode()
            if isinstance(value, str) and value.startswith("json:"):
                value = json.loads(value[5:])
            elif isinstance(value, np.generic):
                value = value.item()
            elif isinstance(value, np.ndarray):
                value = value.tolist()
            out[key] = value
        return out

    def set_attrs(self, node: str, values: Mapping[str, Any]) -> None:
        if not node:
            target = self._file
        else:
            target = self._file[node] if node in self._file else self._file.require_group(node)
        attrs = target.attrs
        for key, value in values.items():
            plain = _plain(value)
            if isinstance(plain, (dict, list)) or plain is None:
                plain = "json:" + json.dumps(plain)
            attrs[key] = plain

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
        handle = self._file.create_dataset(node, shape=shape, dtype=dt, chunks=use_chunks)
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

    def write_rows(self, handle: Any, start: int, block: np.ndarray) -> None:
        """Whole chunks go straight to the file (H5Dwrite_chunk), the same bytes as a sliced
        write but without HDF5's chunk cache, which would copy each chunk and write it only at
        the next flush; rows outside whole chunks take the sliced path."""
        step = _direct_chunk_rows(handle, block)
        stop = start + len(block)
        head = min(stop, -(-start // step) * step) if step else stop
        tail = head + (stop - head) // step * step if step else stop
        if head > start:
            handle[start:head] = block[: head - start]
        origin = (0,) * (block.ndim - 1)
        for first in range(head, tail, step):
            chunk = block[first - start : first - start + step]
            handle.id.write_direct_chunk((first, *origin), chunk)
        if stop > tail:
            handle[tail:stop] = block[tail - start :]

    def delete(self, node: str) -> None:
        del self._file[node]

    def close(self) -> None:
        if self._file.id.valid:
            self._file.close()


def _direct_chunk_rows(handle: Any, block: np.ndarray) -> int:
    """Rows per chunk of an HDF5 dataset whose chunks can be written as raw bytes from ``block``
    (chunked along rows only, no filters, ``block`` C-contiguous in the dataset's exact dtype);
    0 when they cannot."""
    chunks = handle.chunks
    plain = (
        chunks is not None
        and tuple(chunks[1:]) == tuple(handle.shape[1:])
        and block.dtype == handle.dtype
        and block.dtype.isnative
        and block.flags.c_contiguous
        and handle.id.get_create_plist().get_nfilters() == 0
    )
    return int(chunks[0]) if plain else 0


class _ZarrContainer(Container):
    def __init__(self, path: Path, mode: str) -> None:
        import zarr

        self.path = path
        self.writable = mode != "r"
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

    def write_rows(self, handle: Any, start: int, block: np.ndarray) -> None:
        """As the base method, minus Zarr's scan of every chunk for the fill value (to skip
        writing chunks that hold nothing else): rows of activations seldom are all zero, and
        the scan costs as much as the write. Reads are the same either way."""
        if hasattr(handle, "with_config"):  # recent zarr; older ones keep scanning
            handle = handle.with_config({"write_empty_chunks": True})
        handle[start : start + len(block)] = block

    def delete(self, node: str) -> None:
        del self._group[node]

    def close(self) -> None:
        pass


def open_container(path: str | Path, mode: str = "r") -> Container:
    """Open an HDF5 file or a Zarr group by suffix. ``mode``: ``r``, ``r+``, ``w`` (create/overwrite)."""
    p = Path(path)
    backend = backend_for(p)
    if mode == "r" and not p.exists():
        raise StoreError(f"{p}: no such file or directory")
    return _HDF5Container(p, mode) if backend == "hdf5" else _ZarrContainer(p, mode)
