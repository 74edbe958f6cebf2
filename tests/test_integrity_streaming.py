"""The resumable streaming writer of the store package, without torch: batches in, whole chunks out
from a writer thread; an interrupted write continues from its last complete batch to the same
store as an uninterrupted one, and only with the same settings and the same inputs."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from repsim_cli.errors import ContentMismatchError
from repsim_cli.store import open_store
from repsim_cli.store.base import LayerSpec
from repsim_cli.store.streaming import (
    InputsDigest,
    StreamingWrite,
    WriterThread,
    new_stream,
    partial_path,
    reopen_stream,
)

N, BATCH = 40, 4
SOURCE = {"command": "test", "batch_size": BATCH}


def inputs_of(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((N, 3)).astype(np.float32)


def layer_rows(x: np.ndarray) -> dict[str, np.ndarray]:
    """Two "layers" computed row by row from the inputs (a stand-in for a model)."""
    return {"double": 2 * x, "wide": np.repeat(x, 5, axis=1) + np.arange(15, dtype=np.float32)}


def digest_of(x: np.ndarray, ids: np.ndarray, rows: int) -> InputsDigest:
    d = InputsDigest(ids)
    for lo in range(0, rows, BATCH):
        d.update(x[lo : min(lo + BATCH, rows)])
    return d


def write(path: Path, x: np.ndarray, ids: np.ndarray, stop_at: int | None = None, source: dict | None = None) -> None:
    """Stream the layers of ``x`` into ``path`` (the partial name); stop (as if killed, without
    finishing) after ``stop_at`` rows, else finish and finalize."""
    src = source or SOURCE
    run: StreamingWrite | None = None
    if path.exists():
        run = reopen_stream(path, src, ["double", "wide"], N, lambda rows: digest_of(x, ids, rows))
    if run is None:
        specs = [LayerSpec("double", (3,), np.float32, rows_per_chunk=8),
                 LayerSpec("wide", (15,), np.float32, rows_per_chunk=BATCH)]  # fmt: skip
        run = new_stream(path, ids, src, specs)
        start = 0
    else:
        start = run.next_row
    thread = WriterThread(run)
    for lo in range(start, N, BATCH):
        if stop_at is not None and lo >= stop_at:
            break
        batch = x[lo : lo + BATCH]
        for name, rows in layer_rows(batch).items():
            run.take(name, rows)
        thread.put(run.full_chunks(), (batch, None))
    thread.close()
    if stop_at is not None:
        assert run.writer is not None
        run.writer.abort()
        return
    run.finish(N)
    run.open().finalize()


@pytest.fixture(params=[".h5", ".zarr"], ids=["hdf5", "zarr"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    return partial_path(tmp_path / f"s{request.param}")


def test_an_interrupted_write_resumes_to_the_uninterrupted_store(target: Path, tmp_path: Path) -> None:
    x, ids = inputs_of(0), np.arange(N)
    reference = partial_path(tmp_path / f"ref{target.suffix}")
    write(reference, x, ids)
    write(target, x, ids, stop_at=20)
    with pytest.raises(Exception, match="incomplete"):
        open_store(target).close()
    write(target, x, ids)
    with open_store(target) as got, open_store(reference) as want:
        assert got.content_digests() == want.content_digests()
        assert got.attrs["inputs_digest"] == want.attrs["inputs_digest"] == digest_of(x, ids, N).record()
        for name in ("double", "wide"):
            np.testing.assert_array_equal(got.read_rows(name, 0, N), layer_rows(x)[name].reshape(N, -1))
            np.testing.assert_array_equal(got.column_sums(name), want.column_sums(name))


def test_resume_refuses_other_inputs_and_other_settings(target: Path) -> None:
    x, ids = inputs_of(0), np.arange(N)
    write(target, x, ids, stop_at=20)
    other = x.copy()
    other[5, 1] += 1.0  # a row the partial store already holds
    with pytest.raises(ContentMismatchError, match=r"started from other inputs \(their first 16 samples"):
        write(target, other, ids)
    with pytest.raises(ContentMismatchError, match=r"started from other inputs"):
        write(target, x, ids[::-1].copy())  # the same rows under other ids
    with pytest.raises(ContentMismatchError, match=r"different settings \(batch_size\)"):
        write(target, x, ids, source={**SOURCE, "batch_size": 8})
    other[30:] = 0  # rows after the ones kept may differ: they are computed now
    write(target, np.concatenate([x[:20], other[20:]]), ids)
    with open_store(target) as store:
        np.testing.assert_array_equal(store.read_rows("double", 20, N), 2 * other[20:])


@given(cuts=st.lists(st.integers(1, N - 1), max_size=5), mask=st.booleans())
def test_the_inputs_digest_does_not_depend_on_batches(cuts: list[int], mask: bool) -> None:
    x = inputs_of(1)
    m = (x > 0).astype(np.int64) if mask else None
    bounds = sorted({0, N, *cuts})
    one, many = InputsDigest(np.arange(N)), InputsDigest(np.arange(N))
    one.update(x, m)
    for lo, hi in itertools.pairwise(bounds):
        many.update(x[lo:hi], None if m is None else m[lo:hi])
    assert one.hexdigest() == many.hexdigest() and one.rows == many.rows == N
    changed = InputsDigest(np.arange(N))
    changed.update(x[::-1].copy(), m)
    assert changed.hexdigest() != one.hexdigest()
