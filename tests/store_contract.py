"""The contract every activation-store backend passes (subclassed per backend, as zarr's StoreTests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from repsim_cli import __version__
from repsim_cli.errors import LayerNotFoundError, ShapeMismatchError, StoreError
from repsim_cli.store import StoreWriter, open_store
from repsim_cli.store.importers import import_arrays


class StoreContract:
    suffix: str = ""

    def path(self, tmp_path: Path, name: str = "s") -> Path:
        return tmp_path / f"{name}{self.suffix}"

    def write(self, tmp_path: Path, layers: dict[str, np.ndarray], ids=None, chunk_rows=None) -> Path:
        out = self.path(tmp_path)
        writer = StoreWriter(out, ids if ids is not None else np.arange(len(next(iter(layers.values())))),
                             chunk_rows=chunk_rows)
        for name, arr in layers.items():
            writer.add_layer(name, arr.shape[1:], arr.dtype)
            writer.write_rows(name, 0, arr)
        writer.finalize()
        return out

    def test_roundtrip_layers_in_order(self, tmp_path: Path) -> None:
        rng = np.random.default_rng(0)
        layers = {"z_last": rng.standard_normal((9, 3)).astype(np.float32),
                  "a/first": rng.standard_normal((9, 2, 2)),
                  "__dunder.x": rng.standard_normal((9, 1)).astype(np.float16)}
        path = self.write(tmp_path, layers)
        with open_store(path) as s:
            assert s.layers == list(layers)
            assert s.n_samples == 9
            assert s.attrs["repsim_version"] == __version__
            assert s.attrs["format_version"] == 1
            for name, arr in layers.items():
                info = s.info(name)
                assert info.shape == arr.shape and info.dtype == arr.dtype
                np.testing.assert_array_equal(s.read_rows(name, 0, 9), arr.reshape(9, -1))

    def test_stats_are_float64_column_sums(self, tmp_path: Path) -> None:
        x = np.random.default_rng(1).standard_normal((20, 4)).astype(np.float32) + 100
        with open_store(self.write(tmp_path, {"x": x}, chunk_rows=3)) as s:
            sums = s.column_sums("x")
            assert sums is not None and sums.dtype == np.float64
            np.testing.assert_allclose(sums, x.astype(np.float64).sum(0), rtol=1e-14)
            np.testing.assert_allclose(s.column_sumsq("x"), (x.astype(np.float64) ** 2).sum(0), rtol=1e-14)

    @pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
    def test_rows_written_in_pieces_that_straddle_chunks(self, tmp_path: Path, dtype) -> None:
        """Whole chunks and parts of chunks (head, tail, the short last chunk) store the same
        bits, and the stats are the float64 column sums (of squares) of the rows stored."""
        x = (np.random.default_rng(2).standard_normal((10, 3, 2)) * 8 + 3).astype(dtype)
        out = self.path(tmp_path)
        writer = StoreWriter(out, np.arange(10), chunk_rows=4)
        writer.add_layer("x", (3, 2), dtype)
        for start, stop in [(0, 3), (3, 9), (9, 10)]:
            writer.write_rows("x", start, x[start:stop])
        writer.finalize()
        with open_store(out) as s:
            rows = s.read_rows("x", 0, 10)
            assert rows.dtype == dtype
            assert np.array_equal(rows, x.reshape(10, -1))
            wide = rows.astype(np.float64)
            np.testing.assert_allclose(s.column_sums("x"), wide.sum(0), rtol=1e-13)
            np.testing.assert_allclose(s.column_sumsq("x"), (wide**2).sum(0), rtol=1e-13)

    def test_chunked_along_samples_only(self, tmp_path: Path) -> None:
        x = np.zeros((50, 3, 4), dtype=np.float32)
        with open_store(self.write(tmp_path, {"x": x}, chunk_rows=8)) as s:
            assert s.info("x").chunk_rows == 8
            blocks = list(s.iter_blocks("x"))
            assert [b.shape for _, b in blocks] == [(8, 12)] * 6 + [(2, 12)]

    @pytest.mark.parametrize("ids", [np.array(["a", "b", "c"], dtype=object), np.array([5, 7, 9])])
    def test_ids_roundtrip(self, tmp_path: Path, ids) -> None:
        with open_store(self.write(tmp_path, {"x": np.ones((3, 2))}, ids=ids)) as s:
            assert s.ids().tolist() == ids.tolist()

    def test_unknown_layer_lists_available(self, tmp_path: Path) -> None:
        with open_store(self.write(tmp_path, {"a": np.ones((3, 2)), "b": np.ones((3, 1))})) as s, \
                pytest.raises(LayerNotFoundError, match=r"no layer 'c'; available: a, b"):
            s.info("c")

    def test_incomplete_store_is_refused(self, tmp_path: Path) -> None:
        out = self.path(tmp_path)
        writer = StoreWriter(out, np.arange(4))
        writer.add_layer("x", (2,), np.float32)
        writer.write_rows("x", 0, np.ones((4, 2)))
        writer.abort()
        with pytest.raises(StoreError, match="incomplete"):
            open_store(out)
        with open_store(out, require_complete=False) as s:
            assert not s.complete

    def test_missing_and_foreign_files(self, tmp_path: Path) -> None:
        with pytest.raises(StoreError, match="no such file"):
            open_store(self.path(tmp_path, "missing"))
        foreign = self.path(tmp_path, "foreign")
        if self.suffix == ".zarr":
            import zarr

            zarr.open_group(str(foreign), mode="w").attrs["x"] = 1
        else:
            import h5py

            with h5py.File(foreign, "w") as f:
                f["data"] = np.ones(3)
        with pytest.raises(StoreError, match="not a repsim activation store"):
            open_store(foreign)

    def test_import_checks_sample_counts(self, tmp_path: Path) -> None:
        np.save(tmp_path / "a.npy", np.ones((4, 2)))
        np.save(tmp_path / "b.npy", np.ones((5, 2)))
        out = self.path(tmp_path)
        with pytest.raises(ShapeMismatchError, match="has 5 samples"):
            import_arrays([str(tmp_path / "a.npy"), str(tmp_path / "b.npy")], out)
        assert not out.exists() and not list(tmp_path.glob(".*tmp*"))

    @pytest.mark.parametrize("stats_made_late", [False, True], ids=["stats-with-layer", "stats-at-end"])
    def test_reopened_partial_store_finishes_with_exact_stats(self, tmp_path: Path, stats_made_late: bool) -> None:
        """A writer reopened on an unfinished store (its stats arrays made with the layers, or
        absent as in partial stores of earlier versions) restores the stats of the rows kept and
        finishes with the float64 column sums of every row; until then the store has no stats."""
        from repsim_cli.store._container import open_container

        x = (np.random.default_rng(4).standard_normal((12, 3)) * 3 + 50).astype(np.float32)
        out = self.path(tmp_path)
        writer = StoreWriter(out, np.arange(12))
        writer.add_layer("x", (3,), np.float32, rows_per_chunk=4)
        writer.write_rows("x", 0, x[:8])
        writer.flush()
        writer.mark_rows_written({"x": 8})
        writer.abort()
        if stats_made_late:
            with open_container(out, "r+") as c:
                c.delete("stats")
        with open_store(out, require_complete=False) as partial:
            assert not partial.complete and not partial.has_stats("x")
            assert partial.column_sums("x") is None
        writer = StoreWriter.reopen(out)
        assert writer.rows_written() == {"x": 8}
        writer.restore_stats("x", 8, 4)
        writer.write_rows("x", 8, x[8:])
        writer.finalize()
        with open_store(out) as s:
            assert s.complete and s.has_stats("x")
            np.testing.assert_array_equal(s.read_rows("x", 0, 12), x)
            wide = x.astype(np.float64)
            np.testing.assert_allclose(s.column_sums("x"), wide.sum(0), rtol=1e-14)
            np.testing.assert_allclose(s.column_sumsq("x"), (wide**2).sum(0), rtol=1e-14)
