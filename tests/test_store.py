"""Both backends pass the same store contract; importers read every source type."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from store_contract import StoreContract

from repsim_cli.errors import StoreError
from repsim_cli.store import open_store
from repsim_cli.store.importers import import_arrays, read_ids


class TestHDF5Store(StoreContract):
    suffix = ".h5"


class TestZarrStore(StoreContract):
    suffix = ".zarr"


def test_import_every_source_type(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    a, b, c, d = (rng.standard_normal((6, k)).astype(np.float32) for k in (2, 3, 4, 5))
    np.save(tmp_path / "alpha.npy", a)
    np.savez(tmp_path / "pack.npz", beta=b, gamma=c)
    save_file({"delta": d}, str(tmp_path / "more.safetensors"))
    np.save(tmp_path / "e.npy", a + 1)
    out = tmp_path / "s.h5"
    names = import_arrays([str(tmp_path / "alpha.npy"), str(tmp_path / "pack.npz"),
                           str(tmp_path / "more.safetensors"), f"renamed={tmp_path / 'e.npy'}"], out)
    assert names == ["alpha", "beta", "gamma", "delta", "renamed"]
    with open_store(out) as s:
        np.testing.assert_array_equal(s.read_rows("gamma", 0, 6), c)
        np.testing.assert_array_equal(s.read_rows("renamed", 0, 6), a + 1)


def test_import_torch_file(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    t = {"h1": torch.arange(12, dtype=torch.float32).reshape(4, 3), "h2": torch.ones(4, 2, 2)}
    torch.save(t, tmp_path / "acts.pt")
    import_arrays([str(tmp_path / "acts.pt")], tmp_path / "s.zarr")
    with open_store(tmp_path / "s.zarr") as s:
        assert s.layers == ["h1", "h2"]
        np.testing.assert_array_equal(s.read_rows("h1", 0, 4), t["h1"].numpy())


def test_read_ids_text_and_npy(tmp_path: Path) -> None:
    (tmp_path / "ids.txt").write_text("img1\nimg2\n\nimg3\n")
    assert read_ids(tmp_path / "ids.txt").tolist() == ["img1", "img2", "img3"]
    np.save(tmp_path / "ids.npy", np.array([3, 1, 2]))
    assert read_ids(tmp_path / "ids.npy").tolist() == [3, 1, 2]


def test_duplicate_ids_rejected(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.ones((3, 2)))
    with pytest.raises(StoreError.__mro__[1], match="not unique"):
        import_arrays([str(tmp_path / "a.npy")], tmp_path / "s.h5", ids=np.array(["x", "y", "x"]))
    assert not (tmp_path / "s.h5").exists()
