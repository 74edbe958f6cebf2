"""Model inputs read batch by batch: ``.npy`` (by row range), ``.npz``, or an HDF5/Zarr dataset.

Samples run along axis 0. Beside the inputs (other arrays of the same ``.npz``, other datasets of
the same HDF5/Zarr group) two optional arrays are recognised:

- ``ids``: the sample ids written to the store (``--ids FILE`` takes precedence; default 0..n-1);
- ``attention_mask``: (n, T), passed to the model as ``attention_mask=`` and used by the ``mean``
  (and ``last``) reductions of token sequences.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, ShapeMismatchError, StoreError
from ..store.importers import read_ids

CONTAINER_SUFFIXES = (".h5", ".hdf5", ".zarr")
IDS_KEY = "ids"
MASK_KEY = "attention_mask"
SIDE_KEYS = (IDS_KEY, MASK_KEY)


@dataclass
class InputSource:
    """Inputs of n samples (after ``--limit``), read lazily in row ranges.

    ``data`` and ``mask`` are sliceable along axis 0 (memory map, HDF5/Zarr array or ndarray);
    only the rows of one batch are in memory at a time (an ``.npz`` member is read whole).
    """

    spec: str
    path: Path
    key: str | None
    n: int
    ids: np.ndarray
    data: Any
    mask: Any = None
    ids_from: str = "range"
    _handles: list[Any] = field(default_factory=list)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.data.shape[1:])

    @property
    def dtype(self) -> np.dtype[Any]:
        dtype: np.dtype[Any] = np.dtype(self.data.dtype)
        return dtype

    def batch(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Rows [start, stop) of the inputs, and of the attention mask when there is one."""
        x = _owned(self.data[start:stop])
        mask = None if self.mask is None else _owned(self.mask[start:stop])
        return x, mask

    def source(self) -> dict[str, Any]:
        """Provenance fields for the store's ``source`` attribute (absolute path, size)."""
        resolved = self.path.resolve()
        size = resolved.stat().st_size if resolved.is_file() else None
        return {
            "inputs": str(resolved), "inputs_key": self.key, "inputs_bytes": size,
            "inputs_shape": [self.n, *self.sample_shape], "inputs_dtype": str(self.dtype),
            "attention_mask": self.mask is not None, "ids_from": self.ids_from,
        }  # fmt: skip

    def close(self) -> None:
        for handle in self._handles:
            handle.close()
        self._handles.clear()

    def __enter__(self) -> InputSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class NpyRows:
    """Rows of an ``.npy`` file read with plain file reads, samples on axis 0.

    Unlike a memory map, rows read this way do not stay resident in the process, so memory
    does not grow with the number of samples read. Fortran-ordered files are memory-mapped.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
            self.offset = fh.tell()
        if dtype.hasobject:
            raise DataError(f"{path}: holds Python objects, not numbers")
        self.shape: tuple[int, ...] = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self._fortran_map = np.load(path, mmap_mode="r") if fortran else None
        self._row_items = int(np.prod(self.shape[1:], dtype=np.int64))

    def __getitem__(self, rows: slice) -> np.ndarray:
        if self._fortran_map is not None:
            return np.array(self._fortran_map[rows], order="C")
        start, stop, _ = rows.indices(self.shape[0])
        count = max(0, stop - start) * self._row_items
        flat = np.empty(count, dtype=self.dtype)
        # readinto rather than np.fromfile: a signal handler's exception raised during the read
        # (SIGTERM → interrupted run) propagates as itself; np.fromfile masks it as a TypeError.
        with open(self.path, "rb") as fh:
            fh.seek(self.offset + start * self._row_items * self.dtype.itemsize)
            got = fh.readinto(flat.view(np.uint8).data)
        if got != flat.nbytes:
            raise DataError(f"{self.path}: ends after {got} of the {flat.nbytes} bytes of rows {start}-{stop - 1}")
        return flat.reshape((max(0, stop - start), *self.shape[1:]))


def _owned(rows: Any) -> np.ndarray:
    """A writable, contiguous array of its own (torch refuses to wrap read-only memory maps)."""
    array = np.asarray(rows)
    if isinstance(rows, np.memmap) or not array.flags.writeable or not array.flags.c_contiguous:
        return np.array(array, order="C")
    return array


def split_input_spec(spec: str) -> tuple[Path, str | None]:
    """``file.h5:/group/x`` -> (file.h5, "group/x"); a plain path gives (path, None)."""
    head, sep, tail = spec.rpartition(":")
    if sep and Path(head).suffix.lower() in (*CONTAINER_SUFFIXES, ".npz"):
        return Path(head), tail.strip("/") or None
    return Path(spec), None


def _choose_key(path: Path, keys: list[str], key: str | None) -> str:
    if key is not None:
        if key not in keys:
            raise StoreError(f"{path}: no array {key!r}; arrays: {', '.join(keys) or '(none)'}")
        return key
    candidates = [k for k in keys if k not in SIDE_KEYS]
    if len(candidates) != 1:
        raise StoreError(
            f"{path}: holds {len(candidates)} input arrays ({', '.join(candidates) or 'none'}); "
            "choose one with --inputs-key or file:KEY"
        )
    return candidates[0]


def _open_npz(path: Path, key: str | None) -> tuple[Any, dict[str, Any], str]:
    with np.load(path, allow_pickle=False) as npz:
        name = _choose_key(path, list(npz.files), key)
        side = {k: npz[k] for k in SIDE_KEYS if k in npz.files and k != name}
        return npz[name], side, name


def _open_hdf5(path: Path, key: str | None, handles: list[Any]) -> tuple[Any, dict[str, Any], str]:
    import h5py

    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise StoreError(f"{path}: not a readable HDF5 file ({exc})") from None
    handles.append(handle)
    root_arrays = [k for k, v in handle.items() if isinstance(v, h5py.Dataset)]
    name = key if key is not None else _choose_key(path, root_arrays, None)
    node = handle.get(name)
    if not isinstance(node, h5py.Dataset):
        raise StoreError(f"{path}: no dataset {name!r}; datasets at /: {', '.join(root_arrays)}")
    parent = node.parent
    side = {k: parent[k] for k in SIDE_KEYS if k in parent and parent[k] is not node}
    return node, side, name


def _open_zarr(path: Path, key: str | None) -> tuple[Any, dict[str, Any], str]:
    import zarr

    group: Any
    try:
        group = zarr.open_group(str(path), mode="r")
    except Exception as exc:  # noqa: BLE001 (zarr raises several unrelated types for "not a group")
        raise StoreError(f"{path}: not a Zarr group ({type(exc).__name__})") from None
    root_arrays = [k for k, _ in group.arrays()]
    name = key if key is not None else _choose_key(path, root_arrays, None)
    try:
        node = group[name]
    except KeyError:
        node = None
    if node is None or not hasattr(node, "dtype"):
        raise StoreError(f"{path}: no array {name!r}; arrays at /: {', '.join(root_arrays)}")
    parent_path = name.rpartition("/")[0]
    parent: Any = group[parent_path] if parent_path else group
    siblings = {k for k, _ in parent.arrays()}
    side = {
        k: parent[k] for k in SIDE_KEYS if k in siblings and f"{parent_path}/{k}".strip("/") != name
    }
    return node, side, name


def _decode_ids(raw: Any) -> np.ndarray:
    ids = np.asarray(raw[...])
    if ids.dtype.kind in {"S", "O", "U", "T"}:
        return np.array([x.decode() if isinstance(x, bytes) else str(x) for x in ids], dtype=object)
    return ids


def open_inputs(
    spec: str, key: str | None = None, ids_path: str | Path | None = None, limit: int | None = None
) -> InputSource:
    """Open model inputs for batched reading.

    Parameters
    ----------
    spec : str
        ``file.npy``, ``file.npz`` (``file.npz:KEY`` or ``key``), ``file.h5:/path`` or
        ``file.zarr:/path``; samples along axis 0.
    key : str, optional
        The array inside an ``.npz``/HDF5/Zarr container (default: its only non-side array).
    ids_path : path, optional
        Sample ids (text, one per line, or ``.npy``); else an ``ids`` array beside the inputs;
        else ``0..n-1`` (int64).
    limit : int, optional
        Keep only the first ``limit`` samples.

    Returns
    -------
    InputSource
        Use as a context manager; HDF5 files stay open until it is closed.
    """
    path, spec_key = split_input_spec(spec)
    key = key if key is not None else spec_key
    if not path.exists():
        raise StoreError(f"{path}: inputs file not found")
    suffix = path.suffix.lower()
    handles: list[Any] = []
    try:
        if suffix == ".npy":
            if key is not None:
                raise StoreError(f"{path}: an .npy file holds one array; drop the key {key!r}")
            data, name = NpyRows(path), None
            side: dict[str, Any] = {}
        elif suffix == ".npz":
            data, side, name = _open_npz(path, key)
        elif suffix in {".h5", ".hdf5"}:
            data, side, name = _open_hdf5(path, key, handles)
        elif suffix == ".zarr":
            data, side, name = _open_zarr(path, key)
        else:
            raise StoreError(
                f"{path}: unknown inputs type {suffix!r} (use .npy, .npz, .h5:/path or .zarr:/path)"
            )
        source = _build(spec, path, name, data, side, ids_path, limit)
    except BaseException:
        for handle in handles:
            handle.close()
        raise
    source._handles = handles
    return source


def _build(
    spec: str,
    path: Path,
    key: str | None,
    data: Any,
    side: dict[str, Any],
    ids_path: str | Path | None,
    limit: int | None,
) -> InputSource:
    label = f"{path}:{key}" if key else str(path)
    if len(data.shape) < 1 or data.shape[0] == 0:
        raise ShapeMismatchError(
            f"{label}: inputs need shape (n, ...) with n > 0, got {data.shape}"
        )
    if np.dtype(data.dtype).kind not in {"f", "i", "u", "b"}:
        raise DataError(f"{label}: inputs of dtype {data.dtype} are not numeric")
    total = int(data.shape[0])
    if limit is not None and limit < 1:
        raise DataError(f"--limit must be at least 1, got {limit}")
    n = min(total, limit) if limit else total
    if ids_path is not None:
        ids, ids_from = read_ids(ids_path), str(ids_path)
    elif IDS_KEY in side:
        ids, ids_from = _decode_ids(side[IDS_KEY]), f"{label}:{IDS_KEY}"
    else:
        ids, ids_from = np.arange(total, dtype=np.int64), "range"
    if len(ids) != total:
        raise ShapeMismatchError(f"{ids_from}: {len(ids)} ids for {total} input samples")
    mask = side.get(MASK_KEY)
    if mask is not None and (len(mask.shape) != 2 or mask.shape[0] != total):
        raise ShapeMismatchError(
            f"{label}: attention_mask has shape {tuple(mask.shape)}; expected ({total}, T)"
        )
    return InputSource(spec, path, key, n, ids[:n], data, mask, ids_from)
