"""Chunk writes past the page cache: the bytes on disk are exactly those written, with O_DIRECT
or without it (refused at open or at write), and Zarr chunk files equal Zarr's own."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import h5py
import numpy as np
import pytest
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from repsim_cli import _allocator
from repsim_cli._allocator import ALIGN, aligned_empty, retain_freed_memory
from repsim_cli.store import _direct_io
from repsim_cli.store._container import open_container
from repsim_cli.store._direct_io import FileWriter, PositionalWriter

TMP = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def pattern(size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8)


@given(rows=st.integers(0, 50), cols=st.integers(1, 300),
       dtype=st.sampled_from([np.float16, np.float32, np.float64, np.uint8]))  # fmt: skip
def test_aligned_empty_starts_on_a_page(rows: int, cols: int, dtype: type) -> None:
    a = aligned_empty((rows, cols), dtype)
    assert a.shape == (rows, cols) and a.dtype == dtype and a.flags.c_contiguous
    assert a.size == 0 or a.ctypes.data % ALIGN == 0  # an empty array has no data to align


def refuse_direct_open(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every open with O_DIRECT fail as tmpfs does."""
    real_open = os.open

    def fake_open(path, flags, *args):  # type: ignore[no-untyped-def]
        if flags & _direct_io._O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, *args)

    monkeypatch.setattr(_direct_io.os, "open", fake_open)


def refuse_direct_writes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make writes of whole aligned blocks fail with EINVAL (a file system that accepts O_DIRECT
    at open but not the write); returns the list of refused calls."""
    real = _direct_io._pwrite_all
    refused: list[int] = []

    def fake(fd: int, view: memoryview, offset: int) -> None:
        if os.get_blocking(fd) and fcntl_direct(fd):
            refused.append(fd)
            raise OSError(errno.EINVAL, "Invalid argument")
        real(fd, view, offset)

    monkeypatch.setattr(_direct_io, "_pwrite_all", fake)
    return refused


def fcntl_direct(fd: int) -> bool:
    import fcntl

    return bool(fcntl.fcntl(fd, fcntl.F_GETFL) & _direct_io._O_DIRECT)


@pytest.mark.parametrize("mode", ["direct", "refused at open", "refused at write"])
@TMP
@given(writes=st.lists(st.tuples(st.integers(0, 5 * ALIGN), st.integers(0, 3 * ALIGN + 7),
                                 st.integers(0, 3)), min_size=1, max_size=6))  # fmt: skip
def test_positional_writes_land_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str, writes: list[tuple[int, int, int]]
) -> None:
    """Offsets, lengths and source addresses aligned or not: the file ends up byte for byte as
    the same writes made with plain pwrite would leave it."""
    with monkeypatch.context() as patch:
        if mode == "refused at open":
            refuse_direct_open(patch)
        refused = refuse_direct_writes(patch) if mode == "refused at write" else []
        path = tmp_path / f"f-{mode}.bin"
        size = 9 * ALIGN
        path.write_bytes(bytes(size))
        expected = bytearray(size)
        writer = PositionalWriter(path)
        for i, (offset, length, shift) in enumerate(writes):
            offset = offset // ALIGN * ALIGN if i % 2 == 0 else offset  # both kinds of offsets
            data = pattern(length, seed=i)
            source = aligned_empty((length + shift,), np.uint8)[shift:]  # aligned iff shift == 0
            source[:] = data
            writer.write_at(offset, source)
            expected[offset : offset + length] = data.tobytes()
        direct_after = writer.direct
        writer.close()
        assert path.read_bytes()[: len(expected)] == bytes(expected)
        if mode == "refused at open":
            assert not direct_after
        if mode == "refused at write" and refused:
            assert not direct_after


def test_positional_writer_uses_o_direct_where_available(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(bytes(4 * ALIGN))
    data = pattern(2 * ALIGN + 5)  # an aligned head, and a tail written buffered
    writer = PositionalWriter(path)
    try:
        writer.write_at(ALIGN, data)
        if _direct_io._O_DIRECT and not tmpfs(tmp_path):
            assert writer.direct  # no refusal: the head went past the page cache
    finally:
        writer.close()
    assert path.read_bytes() == bytes(ALIGN) + data.tobytes() + bytes(ALIGN - 5)


def tmpfs(path: Path) -> bool:
    probe = path / "probe"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | _direct_io._O_DIRECT)
    except OSError:
        return True
    os.close(fd)
    return False


def test_other_write_errors_are_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk is not a refusal of O_DIRECT: it propagates, and no temporary file stays."""

    def full(fd: int, view: memoryview, offset: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(_direct_io, "_pwrite_all", full)
    with pytest.raises(OSError, match="No space"):
        FileWriter().write_file(tmp_path / "c" / "0", pattern(3 * ALIGN))
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]
    (tmp_path / "g").write_bytes(bytes(ALIGN))
    writer = PositionalWriter(tmp_path / "g")
    with pytest.raises(OSError, match="No space"):
        writer.write_at(0, pattern(ALIGN))
    writer.close()


@pytest.mark.parametrize("mode", ["direct", "refused at open", "refused at write"])
@TMP
@given(length=st.integers(0, 4 * ALIGN + 100), pad=st.integers(0, 2 * ALIGN), shift=st.integers(0, 2))
def test_whole_files_hold_the_data_then_zeros(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str, length: int, pad: int, shift: int
) -> None:
    with monkeypatch.context() as patch:
        if mode == "refused at open":
            refuse_direct_open(patch)
        elif mode == "refused at write":
            refuse_direct_writes(patch)
        target = tmp_path / mode / "c" / str(length) / "0"
        data = pattern(length)
        source = aligned_empty((length + shift,), np.uint8)[shift:]
        source[:] = data
        writer = FileWriter()
        writer.write_file(target, source, size=length + pad)
        writer.write_file(target, source, size=length + pad)  # replacing an existing file
        assert target.read_bytes() == data.tobytes() + bytes(pad)
        assert [p.name for p in target.parent.iterdir()] == ["0"]  # no temporary file left


def write_in_blocks(container_path: Path, x: np.ndarray, chunk: int, block: int) -> None:
    with open_container(container_path, "w") as c:
        handle = c.create_array("layers/x", x.shape, x.dtype, (chunk, *x.shape[1:]))
        for start in range(0, len(x), block):
            c.write_rows(handle, start, np.ascontiguousarray(x[start : start + block]))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 300), chunk=st.integers(1, 80), block=st.integers(1, 120),
       dtype=st.sampled_from([np.float16, np.float32, np.float64]), cols=st.integers(1, 40))  # fmt: skip
def test_zarr_chunk_files_equal_zarrs_own(
    tmp_path: Path, n: int, chunk: int, block: int, dtype: type, cols: int
) -> None:
    """Chunk files written by repsim (whole chunks, the short edge chunk padded) are byte for byte
    the files Zarr writes for the same array, and Zarr reads them back."""
    x = (np.random.default_rng(n).standard_normal((n, 2, cols)) * 5).astype(dtype)
    ours, theirs = tmp_path / f"ours-{n}-{chunk}-{block}.zarr", tmp_path / f"z-{n}-{chunk}-{block}.zarr"
    write_in_blocks(ours, x, chunk, block)
    group = zarr.open_group(str(theirs), mode="w")
    group.create_array("layers/x", shape=x.shape, dtype=x.dtype, chunks=(chunk, 2, cols), compressors=None)[...] = x

    def chunk_files(root: Path) -> dict[str, bytes]:
        base = root / "layers" / "x" / "c"
        return {str(p.relative_to(base)): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()}

    assert chunk_files(ours) == chunk_files(theirs)
    np.testing.assert_array_equal(zarr.open_array(str(ours / "layers" / "x"))[...], x)


def test_zarr_and_hdf5_whole_chunks_take_the_raw_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast path is really taken (a spy counts it): every whole chunk, and the edge chunk."""
    counts = {"file": 0, "positional": 0}
    real_file, real_at = FileWriter.write_file, PositionalWriter.write_at

    def spy_file(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        counts["file"] += 1
        return real_file(self, *args, **kwargs)

    def spy_at(self, *args):  # type: ignore[no-untyped-def]
        counts["positional"] += 1
        return real_at(self, *args)

    monkeypatch.setattr(FileWriter, "write_file", spy_file)
    monkeypatch.setattr(PositionalWriter, "write_at", spy_at)
    x = np.random.default_rng(0).standard_normal((1000, 64)).astype(np.float32)
    for suffix in (".zarr", ".h5"):
        write_in_blocks(tmp_path / f"s{suffix}", x, chunk=128, block=128)
        with open_container(tmp_path / f"s{suffix}") as c:
            np.testing.assert_array_equal(c.read_array("layers/x"), x)
    assert counts == {"file": 8, "positional": 8}


def test_hdf5_chunks_sit_on_aligned_addresses(tmp_path: Path) -> None:
    x = np.random.default_rng(1).standard_normal((700, 33)).astype(np.float32)
    write_in_blocks(tmp_path / "s.h5", x, chunk=64, block=100)
    with h5py.File(tmp_path / "s.h5") as f:
        d = f["layers/x"]
        offsets = [d.id.get_chunk_info(i).byte_offset for i in range(d.id.get_num_chunks())]
        np.testing.assert_array_equal(d[...], x)
    assert len(offsets) == 11 and all(o % ALIGN == 0 for o in offsets)


def test_hdf5_datasets_without_allocated_chunks_still_written(tmp_path: Path) -> None:
    """Partial stores from older versions allocated chunks late (no address yet): their whole
    chunks go through H5Dwrite_chunk, the edge chunk through HDF5."""
    x = np.random.default_rng(2).standard_normal((300, 5)).astype(np.float32)
    with h5py.File(tmp_path / "old.h5", "w") as f:
        f.create_dataset("layers/x", shape=x.shape, dtype=x.dtype, chunks=(64, 5))
    with open_container(tmp_path / "old.h5", "r+") as c:
        handle = c.array("layers/x")
        for start in range(0, 300, 64):
            c.write_rows(handle, start, x[start : start + 64])
    with h5py.File(tmp_path / "old.h5") as f:
        np.testing.assert_array_equal(f["layers/x"][...], x)


def test_retain_freed_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """On glibc the setting is made; a threshold the user set in the environment stands."""
    import platform
    import sys

    expected = sys.platform == "linux" and platform.libc_ver()[0] == "glibc"
    assert retain_freed_memory() is expected
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    assert retain_freed_memory() is False
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_")
    monkeypatch.setattr(_allocator.sys, "platform", "darwin")
    assert retain_freed_memory() is False


@pytest.mark.parametrize("suffix", [".zarr", ".h5"])
def test_arrays_made_together_equal_arrays_made_one_by_one(tmp_path: Path, suffix: str) -> None:
    """``create_arrays`` (one batch of metadata writes for Zarr) makes the same arrays, with the
    same metadata, as ``create_array`` one at a time; existing parent groups keep their attrs."""
    import json

    from repsim_cli.store._container import ArraySpec

    specs = [
        ArraySpec("layers/a", (100, 3, 4), np.dtype(np.float32), (32, 3, 4), {"reduction": "flatten", "n": [1, 2]}),
        ArraySpec("stats/a/sum", (12,), np.dtype(np.float64), (12,)),
        ArraySpec("layers/b", (100, 5), np.dtype(np.float16), (100, 5), {}),
    ]
    paths = {}
    for how in ("together", "one-by-one"):
        paths[how] = tmp_path / f"{how}{suffix}"
        with open_container(paths[how], "w") as c:
            c.set_attrs("", {"kept": True})
            c.write_array("samples/ids", np.arange(100))
            if how == "together":
                handles = c.create_arrays(specs)
            else:
                handles = [c.create_array(s.node, s.shape, s.dtype, s.chunks, s.attrs) for s in specs]
            for spec, handle in zip(specs, handles, strict=True):
                assert tuple(handle.shape) == spec.shape and handle.dtype == spec.dtype
                assert tuple(handle.chunks) == spec.chunks
                c.write_rows(handle, 0, np.ones(spec.shape, spec.dtype))
    for how, path in paths.items():
        with open_container(path) as c:
            assert c.get_attrs("") == {"kept": True}, how
            assert c.get_attrs("layers/a") == {"reduction": "flatten", "n": [1, 2]}
            np.testing.assert_array_equal(c.read_array("samples/ids"), np.arange(100))
            for spec in specs:
                np.testing.assert_array_equal(c.read_array(spec.node), np.ones(spec.shape, spec.dtype))
    if suffix == ".zarr":
        def metadata(root: Path) -> dict[str, object]:
            return {str(p.relative_to(root)): json.loads(p.read_text()) for p in sorted(root.rglob("zarr.json"))}

        assert metadata(paths["together"]) == metadata(paths["one-by-one"])
