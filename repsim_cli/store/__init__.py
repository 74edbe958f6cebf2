"""Activation stores (HDF5 and Zarr v3): open, read in row blocks, write, import."""

from __future__ import annotations

from pathlib import Path

from ..errors import StoreError
from ._container import backend_for
from .base import FORMAT_VERSION, ActivationStore, LayerInfo, StoreWriter, chunk_rows


def open_store(path: str | Path, *, require_complete: bool = True) -> ActivationStore:
    """Open an activation store for reading; the backend follows the suffix.

    Raises :class:`StoreError` for a missing file, a file that is not a repsim store, or (by default)
    a store whose writing never finished.
    """
    from ._container import open_container

    p = Path(path)
    backend_for(p)
    if not p.exists():
        raise StoreError(f"{p}: no such file or directory")
    store = ActivationStore(open_container(p, "r"))
    if require_complete and not store.complete:
        store.close()
        raise StoreError(
            f"{p}: store is incomplete (its writing was interrupted); finish it with "
            "'repsim extract --resume' or write it again"
        )
    return store


__all__ = ["FORMAT_VERSION", "ActivationStore", "LayerInfo", "StoreWriter", "chunk_rows", "open_store"]
