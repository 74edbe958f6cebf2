"""Shared fixtures: tiny HDF5/Zarr stores built in tmp_path, and hypothesis profiles."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from repsim_cli.store.importers import import_arrays

# "ci" is derandomized: every run draws the same examples, so the suite passes or fails the same
# way each time (HYPOTHESIS_PROFILE=thorough explores new ones).
settings.register_profile(
    "ci", max_examples=25, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "dev", max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "thorough", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

BACKENDS = (".h5", ".zarr")

StoreFactory = Callable[..., Path]


@pytest.fixture
def make_store(tmp_path: Path) -> StoreFactory:
    """``make_store(layers: dict[name, array], suffix=".h5", name=None, ids=None, chunk_rows=None)``
    writes a store with ``repsim import`` and returns its path."""
    counter = iter(range(10**6))

    def make(
        layers: dict[str, np.ndarray], suffix: str = ".h5", name: str | None = None,
        ids: np.ndarray | None = None, chunk_rows: int | None = None,
    ) -> Path:
        i = next(counter)
        src_dir = tmp_path / f"src{i}"
        src_dir.mkdir()
        sources = []
        for j, (layer, arr) in enumerate(layers.items()):
            f = src_dir / f"{j}.npy"
            np.save(f, arr)
            sources.append(f"{layer}={f}")
        out = tmp_path / f"{name or f'store{i}'}{suffix}"
        import_arrays(sources, out, ids=ids, chunk_rows=chunk_rows)
        return out

    return make


@pytest.fixture(params=BACKENDS, ids=["hdf5", "zarr"])
def backend(request: pytest.FixtureRequest) -> str:
    """Parametrise a test over both store backends (the store suffix)."""
    return str(request.param)
