"""Import existing arrays (``.npy``, ``.npz``, ``.safetensors``, ``.pt``) into an activation store.

Each source is ``file.npy`` (layer named by the stem), ``file.npz`` / ``file.safetensors`` /
``file.pt`` (every array is a layer, in file order), or ``NAME=file.npy`` to name the layer.
Arrays are ``(n, ...)`` with samples first; all must share n.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import atomic_path
from ..errors import DataError, RepsimError, ShapeMismatchError, StoreError
from ..outputs import check_not_input, output_lock
from .base import StoreWriter, check_unique_ids, chunk_rows

SOURCE_SUFFIXES = (".npy", ".npz", ".safetensors", ".pt", ".pth")


def parse_source(spec: str) -> tuple[str | None, Path]:
    """Split ``NAME=path`` into (NAME, path); a plain path gives (None, path)."""
    name, sep, rest = spec.partition("=")
    if sep and not Path(spec).exists():
        return name, Path(rest)
    return None, Path(spec)


def _load_torch(path: Path) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError:
        raise RepsimError(
            f"{path}: reading .pt files needs PyTorch: pip install torch==2.13.0 'repsim-cli[torch]'"
        ) from None
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, torch.Tensor):
        return {path.stem: obj.detach().float().numpy() if obj.dtype == torch.bfloat16 else obj.numpy()}
    if not isinstance(obj, dict):
        raise StoreError(f"{path}: expected a tensor or a dict of tensors, got {type(obj).__name__}")
    out = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            raise StoreError(f"{path}: entry {key!r} is not a tensor")
        t = value.detach().cpu()
        out[str(key)] = (t.float() if t.dtype == torch.bfloat16 else t).numpy()
    return out


def _load_safetensors(path: Path) -> dict[str, np.ndarray]:
    try:
        from safetensors.numpy import load_file
    except ImportError:
        raise RepsimError(f"{path}: reading .safetensors needs: pip install safetensors") from None
    try:
        return dict(load_file(str(path)))
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own and Rust panics
        raise StoreError(f"{path}: not a readable safetensors file ({exc})") from None


def load_source(spec: str) -> list[tuple[str, np.ndarray]]:
    """Load one SRC spec into ``[(layer name, array), ...]``; ``.npy`` arrays are memory-mapped."""
    name, path = parse_source(spec)
    if not path.exists():
        raise StoreError(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return [(name or path.stem, np.load(path, mmap_mode="r", allow_pickle=False))]
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        elif suffix == ".safetensors":
            arrays = _load_safetensors(path)
        elif suffix in {".pt", ".pth"}:
            arrays = _load_torch(path)
        else:
            raise StoreError(
                f"{path}: unknown source type {suffix!r} (use {', '.join(SOURCE_SUFFIXES)})"
            )
    except (ValueError, OSError, EOFError) as exc:
        if isinstance(exc, RepsimError):
            raise
        raise StoreError(f"{path}: cannot read ({exc})") from None
    if name is not None:
        if len(arrays) != 1:
            raise StoreError(f"{path}: NAME= needs a file with one array, found {len(arrays)}")
        return [(name, next(iter(arrays.values())))]
    return list(arrays.items())


def read_ids(path: str | Path) -> np.ndarray:
    """Sample ids from a text file (one per line) or a ``.npy`` array; they must be unique."""
    p = Path(path)
    if not p.exists():
        raise StoreError(f"{p}: no such file")
    ids: np.ndarray
    if p.suffix.lower() == ".npy":
        ids = np.load(p, allow_pickle=False)
    else:
        lines = [line.strip() for line in p.read_text().splitlines()]
        ids = np.array([line for line in lines if line], dtype=object)
    if ids.ndim != 1:
        raise ShapeMismatchError(f"{p}: ids must be a 1-D array, got shape {ids.shape}")
    check_unique_ids(ids, str(p))
    return ids


def _check_layer(source: str, name: str, arr: np.ndarray) -> None:
    if arr.ndim < 2 or arr.shape[0] == 0:
        raise ShapeMismatchError(
            f"{source}: layer {name!r}: needs shape (n, features...), got {arr.shape}"
            + (" (a 1-D array: reshape it to (n, 1) for one feature per sample)" if arr.ndim == 1 else "")
        )
    if math.prod(arr.shape[1:]) == 0:
        raise ShapeMismatchError(f"{source}: layer {name!r}: has no columns (shape {arr.shape})")
    if arr.dtype.kind not in {"f", "i", "u", "b"}:
        raise DataError(f"{source}: layer {name!r}: dtype {arr.dtype} is not numeric")


def _blocks(arr: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    width = math.prod(arr.shape[1:])
    step = chunk_rows(width, max(arr.dtype.itemsize, 4), arr.shape[0])
    for start in range(0, arr.shape[0], step):
        yield start, np.asarray(arr[start : start + step])


def import_arrays(
    sources: Sequence[str], out: str | Path, ids: np.ndarray | None = None,
    chunk_rows: int | None = None,
) -> list[str]:
    """Write every layer of ``sources`` into a new store at ``out`` (atomically); return layer names.

    Rows are copied block by block (``.npy`` is memory-mapped), so a layer need not fit in memory.
    ``chunk_rows`` overrides the on-disk chunk size (rows per chunk; default ≈ 8 MiB chunks).
    """
    loaded: list[tuple[str, str, np.ndarray]] = []
    for spec in sources:
        for name, arr in load_source(spec):
            _check_layer(spec, name, arr)
            loaded.append((spec, name, arr))
    if not loaded:
        raise StoreError("no arrays to import")
    names = [name for _, name, _ in loaded]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise StoreError(f"layer names given twice: {', '.join(dupes)} (name them with NAME=file.npy)")
    n = loaded[0][2].shape[0]
    for spec, name, arr in loaded:
        if arr.shape[0] != n:
            raise ShapeMismatchError(
                f"{spec}: layer {name!r} has {arr.shape[0]} samples, but {loaded[0][1]!r} has {n}"
            )
    if ids is None:
        ids = np.arange(n, dtype=np.int64)
    elif len(ids) != n:
        raise ShapeMismatchError(f"ids: {len(ids)} ids given for {n} samples")
    check_unique_ids(ids, "ids")
    check_not_input(out, [parse_source(spec)[1] for spec in sources], "source")
    source: dict[str, Any] = {"command": "import", "inputs": list(sources)}
    with output_lock(out), atomic_path(out) as tmp:
        writer = StoreWriter(tmp, ids, source=source, chunk_rows=chunk_rows)
        try:
            for _, name, arr in loaded:
                dtype = arr.dtype if arr.dtype.kind == "f" else np.float32
                writer.add_layer(name, tuple(arr.shape[1:]), dtype, {"reduction": "none"})
                for start, block in _blocks(arr):
                    writer.write_rows(name, start, block)
            writer.finalize()
        except BaseException:
            writer.abort()
            raise
    return names
