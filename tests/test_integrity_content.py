"""Content identity: digests written as rows stream in, reads that fail loudly, resume and merge
that refuse rather than mix, and ``repsim verify``.

Before this work, a store whose rows were permuted or edited in place kept its fingerprint (n,
layers, shapes, dtypes, column sums), so a resume mixed old and new cells; a missing Zarr chunk
read as zeros; NaN written after import was reported as a constant layer; and ``--resume`` and
``merge`` ignored ``--precision``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest
import zarr
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from repsim_cli._warnings import RepsimWarning
from repsim_cli.cli import cli
from repsim_cli.cli.compare import journal_path
from repsim_cli.compare import prepare_comparison
from repsim_cli.integrity import comparison_content, rehash_layer, verify_store
from repsim_cli.schedule import Journal
from repsim_cli.store import StoreWriter, open_store
from repsim_cli.store.digests import LayerHasher, chunk_digest


@contextlib.contextmanager
def warnings_printed() -> Iterator[None]:
    """Let RepsimWarnings through (the suite turns warnings into errors): the command prints
    each as a ``Warning:`` line on stderr, which the test then looks for."""
    with warnings.catch_warnings():
        warnings.simplefilter("default", RepsimWarning)
        yield



def run(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args])


def layers_of(seed: int = 0, n: int = 40) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n, 3))
    return {f"l{i}": np.hstack([base, rng.standard_normal((n, 2 + i))]).astype(np.float32) for i in range(4)}


def rewrite_layer(path: Path, name: str, values: np.ndarray) -> None:
    """Overwrite a layer's rows in place, with h5py or zarr (no repsim code: stats and digests
    stay as they were)."""
    if path.suffix == ".h5":
        with h5py.File(path, "r+") as f:
            f[f"layers/{name}"][...] = values
    else:
        zarr.open_group(str(path), mode="r+")[f"layers/{name}"][...] = values


def read_layer(path: Path, name: str) -> np.ndarray:
    with open_store(path) as s:
        return s.read_rows(name, 0, s.n_samples)


def start_journal(path: Path, out: Path, cells: int, precision: str | None = None) -> Path:
    """A resume journal of ``compare PATH -m cka -o OUT`` holding its first ``cells`` cells, as a
    run killed after them leaves it."""
    with open_store(path) as store:
        comparison = prepare_comparison(store, None, ["cka"], precision=precision)
        journal = Journal(journal_path(str(out)), comparison.journal_header(None), content=comparison_content(comparison))
        try:
            comparison.run(journal=journal)
        finally:
            comparison.engine.close()
        journal.close(remove=False)
    lines = journal.path.read_text().splitlines(keepends=True)
    journal.path.write_text("".join(lines[: 1 + cells]))
    return journal.path


# ------------------------------------------------------------------ digests as rows stream in
@given(
    n=st.integers(1, 60), width=st.integers(1, 5), chunk=st.integers(1, 17),
    cuts=st.lists(st.integers(1, 60), max_size=6), shuffled=st.booleans(),
)  # fmt: skip
def test_digests_do_not_depend_on_how_rows_are_written(tmp_path_factory, n, width, chunk, cuts, shuffled) -> None:
    data = np.random.default_rng(n).standard_normal((n, width)).astype(np.float32)
    bounds = sorted({0, n, *(c for c in cuts if c < n)})
    blocks = list(itertools.pairwise(bounds))
    if shuffled:
        blocks.reverse()  # out of order: the digests are computed by reading back
    path = tmp_path_factory.mktemp("d") / "s.h5"
    writer = StoreWriter(path, np.arange(n))
    writer.add_layer("x", (width,), np.float32, rows_per_chunk=chunk)
    for lo, hi in blocks:
        writer.write_rows("x", lo, data[lo:hi])
    writer.finalize()
    expected = [chunk_digest(data[lo : lo + chunk]) for lo in range(0, n, chunk)]
    with open_store(path) as store:
        assert [bytes(d) for d in store.chunk_digests("x")] == expected
        assert store.content_digests() == {"x": rehash_layer(store, "x").digest}
    hasher = LayerHasher(n, chunk)
    for lo in range(0, n, 7):
        hasher.update(lo, data[lo : lo + 7])
    assert [bytes(d) for d in hasher.digests] == expected and hasher.complete


def test_fingerprint_sees_permuted_rows(make_store, backend) -> None:
    data = layers_of()
    permuted = {k: v[::-1].copy() for k, v in data.items()}
    a, b = make_store(data, backend), make_store(permuted, backend)
    with open_store(a) as sa, open_store(b) as sb:
        np.testing.assert_allclose(sa.column_sums("l0"), sb.column_sums("l0"))  # sums agree...
        assert sa.fingerprint() != sb.fingerprint()  # ...the content does not


# ------------------------------------------------------------------ resume never mixes
@pytest.mark.parametrize("change", ["permuted", "edited"])
def test_resume_refuses_after_rows_change_in_place(make_store, backend, tmp_path, change) -> None:
    path = make_store(layers_of(), backend)
    out = tmp_path / "r.csv"
    start_journal(path, out, cells=4)
    old = read_layer(path, "l2")
    new = old[np.random.default_rng(5).permutation(len(old))] if change == "permuted" else old.copy()
    if change == "edited":
        new[7] += 0.5
    rewrite_layer(path, "l2", new)
    r = run("compare", path, "-m", "cka", "-o", out, "--resume")
    assert r.exit_code == 1, r.output
    assert r.output.startswith(f"Error: {journal_path(str(out))}: cannot resume: {path}: layer 'l2': rows ")
    assert "no longer match their content digest" in r.output
    assert not out.exists()


def test_resume_of_a_store_without_digests_checks_the_rows_it_hashed(make_store, backend, tmp_path) -> None:
    path = make_store(layers_of(), backend)
    if backend == ".h5":
        with h5py.File(path, "r+") as f:
            del f.attrs["content_digests"]
    else:
        group = zarr.open_group(str(path), mode="r+")
        attrs = dict(group.attrs)
        del attrs["content_digests"]
        group.attrs.clear()
        group.attrs.update(attrs)
    with open_store(path) as store:
        assert store.content_digests() is None  # as written by an older repsim
    out = tmp_path / "r.csv"
    start_journal(path, out, cells=3)
    data = read_layer(path, "l1")
    rewrite_layer(path, "l1", data[::-1].copy())
    r = run("compare", path, "-m", "cka", "-o", out, "--resume")
    assert r.exit_code == 1
    assert f"cannot resume: {path}: layer 'l1': its rows differ from those the journal was started with" in r.output
    # without --resume the comparison is computed again from the rows as they are now
    r = run("compare", path, "-m", "cka", "-o", out, "-q")
    assert r.exit_code == 0, r.output
    assert out.read_text() == run("compare", path, "-m", "cka", "-o", "-").stdout


def test_resume_with_an_unchanged_store_reuses_the_journal(make_store, backend, tmp_path) -> None:
    path = make_store(layers_of(), backend)
    out = tmp_path / "r.csv"
    journal = start_journal(path, out, cells=10)  # every cell: the resume computes nothing
    lines = journal.read_text().splitlines()
    s, i, j, _, se = lines[3].split("\t")
    lines[3] = f"{s}\t{i}\t{j}\t0.125\t{se}"  # a marker value only the journal holds
    journal.write_text("\n".join(lines) + "\n")
    r = run("compare", path, "-m", "cka", "-o", out, "--resume", "-q")
    assert r.exit_code == 0, r.output
    assert ",0.125," in out.read_text()
    assert not journal.exists()


def test_resume_refuses_another_precision(make_store, tmp_path) -> None:
    path = make_store(layers_of())
    out = tmp_path / "r.csv"
    start_journal(path, out, cells=3, precision="float32")
    r = run("compare", path, "-m", "cka", "-o", out, "--resume", "--precision", "float64")
    assert r.exit_code == 1
    assert "it was written by a different comparison (the precision (--precision) differ)" in r.output
    with warnings_printed():
        r = run("compare", path, "-m", "cka", "-o", out, "--resume", "--precision", "float64", "--force", "-q")
    assert r.exit_code == 0, r.output
    assert re.search(r"Warning: .*the precision \(--precision\) differ\); --force: computing every cell", r.output)
    assert out.read_text() == run("compare", path, "-m", "cka", "-o", "-", "--precision", "float64").stdout
    start_journal(path, out, cells=3, precision="float32")
    assert run("compare", path, "-m", "cka", "-o", out, "--resume", "--precision", "float32", "-q").exit_code == 0


def test_merge_refuses_shards_of_other_precision_or_content(make_store, tmp_path) -> None:
    data = layers_of()
    path = make_store(data, name="S")
    p1, p2 = tmp_path / "p1.h5", tmp_path / "p2.h5"
    assert run("compare", path, "-m", "procrustes", "-o", p1, "--shard", "1/2", "--precision", "float32").exit_code == 0
    assert run("compare", path, "-m", "procrustes", "-o", p2, "--shard", "2/2", "--precision", "float64").exit_code == 0
    r = run("merge", p1, p2, "-o", tmp_path / "m.h5")
    assert r.exit_code == 1 and "the precision (--precision) is 'float64', but" in r.output
    # the store written again with its rows permuted: same sums, other content
    path.unlink()
    assert make_store({k: v[::-1].copy() for k, v in data.items()}, name="S") == path
    assert run("compare", path, "-m", "procrustes", "-o", p2, "--shard", "2/2", "--precision", "float32").exit_code == 0
    r = run("merge", p1, p2, "-o", tmp_path / "m.h5")
    assert r.exit_code == 1 and "the content of store A (fingerprint) is" in r.output
    assert not (tmp_path / "m.h5").exists()


# ------------------------------------------------------------------ reads that fail loudly
def chunk_files(path: Path, name: str) -> list[Path]:
    """The chunk files of a 2-D Zarr layer chunked along rows only, in row order."""
    return sorted((path / "layers" / name / "c").glob("*/0"), key=lambda p: int(p.parent.name))


def many_chunks(make_store, suffix: str) -> Path:
    rng = np.random.default_rng(3)
    return make_store({"x": rng.standard_normal((60, 4)), "y": rng.standard_normal((60, 5))}, suffix, chunk_rows=16)


def test_a_missing_zarr_chunk_is_an_error_not_zeros(make_store, tmp_path) -> None:
    path = many_chunks(make_store, ".zarr")
    files = [p for p in chunk_files(path, "x") if p.is_file()]
    assert len(files) == 4
    files[1].unlink()
    r = run("compare", path, "-m", "cka", "-o", tmp_path / "x.csv")
    assert r.exit_code == 1
    assert r.output == (
        f"Error: {path}: layer 'x': the chunk of rows 16-31 is missing (the store is damaged: write it again)\n"
    )
    r = run("verify", path)
    assert r.exit_code == 1 and f"Error: {path}: layer 'x': the chunk of rows 16-31 is missing" in r.output


def test_a_truncated_zarr_chunk_is_an_error_naming_its_rows(make_store, tmp_path) -> None:
    path = many_chunks(make_store, ".zarr")
    victim = [p for p in chunk_files(path, "y") if p.is_file()][2]
    victim.write_bytes(victim.read_bytes()[:10])
    r = run("compare", path, "-m", "cka", "-o", tmp_path / "x.csv")
    assert r.exit_code == 1
    assert r.output.startswith(f"Error: {path}: layer 'y': rows 32-47 cannot be read (")
    assert "the store is damaged" in r.output and "Traceback" not in r.output


def flip_a_byte(path: Path, name: str, row: int) -> None:
    """Change one stored byte of ``row`` behind every library's back (bit rot)."""
    if path.suffix == ".zarr":
        target, offset = [p for p in chunk_files(path, name) if p.is_file()][row // 16], (row % 16) * 16
    else:
        with h5py.File(path, "r") as f:
            ds = f[f"layers/{name}"]
            info = ds.id.get_chunk_info_by_coord((row - row % 16, 0))
            target, offset = path, info.byte_offset + (row % 16) * ds.shape[1] * ds.dtype.itemsize
    with open(target, "r+b") as fh:
        fh.seek(offset + 3)
        byte = fh.read(1)
        fh.seek(offset + 3)
        fh.write(bytes([byte[0] ^ 0x10]))


def test_bit_rot_is_found_by_reads_and_by_verify(make_store, backend, tmp_path) -> None:
    path = many_chunks(make_store, backend)
    flip_a_byte(path, "y", 50)
    r = run("compare", path, "-m", "cka", "-o", tmp_path / "x.csv")
    assert r.exit_code == 1
    assert r.output.startswith(f"Error: {path}: layer 'y': rows 48-59 do not match their content digest")
    r = run("verify", path)
    assert r.exit_code == 1
    assert r.stdout.splitlines()[0].split() == ["x", "ok"]
    assert "y  rows 48-59: do not match their content digest" in r.stdout
    assert r.stderr.startswith(f"Error: {path}: layer 'y': rows 48-59: do not match")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_written_after_import_is_reported_as_nan(make_store, backend, tmp_path, bad) -> None:
    path = make_store(layers_of(), backend)
    values = read_layer(path, "l1")
    values[13, 2] = bad
    rewrite_layer(path, "l1", values)
    r = run("compare", path, "-m", "cka", "-o", tmp_path / "x.csv")
    assert r.exit_code == 1
    assert r.output == f"Error: {path}: layer 'l1': contains NaN or Inf values (first in row 13)\n"
    r = run("verify", path)
    assert r.exit_code == 1 and "NaN or Inf values (first in row 13)" in r.output


# ------------------------------------------------------------------ repsim verify
def test_verify_a_sound_store_and_an_older_one(make_store, backend) -> None:
    path = make_store(layers_of(), backend)
    r = run("verify", path)
    assert r.exit_code == 0, r.output
    assert [line.split() for line in r.stdout.splitlines()] == [[f"l{i}", "ok"] for i in range(4)]
    assert "content digests of 4 layers checked" in r.stderr
    sample = Path(__file__).resolve().parents[1] / "sample_data" / "digits_seed0.h5"
    r = run("verify", sample, "-q")
    assert r.exit_code == 0 and r.output == ""


def test_verify_checks_the_stored_statistics(make_store) -> None:
    path = make_store(layers_of())
    with h5py.File(path, "r+") as f:
        f["stats/l3/sum"][1] += 1.0
    with open_store(path) as store:
        findings = {f.layer: f.problem for f in verify_store(store)}
    assert findings == {"l0": None, "l1": None, "l2": None, "l3": "the stored column sums do not match the rows"}
    assert json.loads(json.dumps(findings))  # plain data
