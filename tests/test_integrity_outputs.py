"""Outputs never touch inputs, one writer per output, and validation at the door.

Each test here failed on the code before the integrity work: an output naming an input replaced
it (exit 0), two writers of one output interleaved (a NUL-damaged journal, then a raw ValueError),
a missing output directory was created silently, and bad inputs were accepted.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from slow_metric import slow_compare_script

from repsim_cli.cli import cli
from repsim_cli.errors import OutputLockedError
from repsim_cli.outputs import lock_path, output_lock


def run(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture
def two_stores(make_store, backend):
    rng = np.random.default_rng(0)
    a = make_store({f"l{i}": rng.standard_normal((24, 3 + i)) for i in range(3)}, backend, name="A")
    b = make_store({f"m{i}": rng.standard_normal((24, 4)) for i in range(2)}, backend, name="B")
    return a, b


def snapshot(path: Path) -> dict[str, bytes]:
    """Every file's bytes under a store (a file or a Zarr directory)."""
    if path.is_file():
        return {"": path.read_bytes()}
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------ outputs never touch inputs
def test_compare_refuses_an_output_that_is_its_input_in_any_spelling(two_stores, tmp_path, monkeypatch) -> None:
    a, b = two_stores
    before_a, before_b = snapshot(a), snapshot(b)
    monkeypatch.chdir(tmp_path)
    link = tmp_path / f"link{a.suffix}"
    link.symlink_to(a)
    for args in (
        [a, "-o", a],
        [f"./{a.name}", "-o", a.name],
        [a, b, "-o", f"sub/../{b.name}"],
        [a, "-o", link],
    ):
        (tmp_path / "sub").mkdir(exist_ok=True)
        r = run("compare", *args, "-m", "cka", "-q")
        assert r.exit_code == 2, (args, r.output)
        assert "is the input store" in r.output and "writing it would replace that input" in r.output
        assert str(args[-1]) in r.output
    assert snapshot(a) == before_a and snapshot(b) == before_b


def test_merge_refuses_an_output_that_is_one_of_its_shards(two_stores, tmp_path) -> None:
    a, _ = two_stores
    parts = [tmp_path / f"p{k}.h5" for k in (1, 2)]
    for k, part in enumerate(parts, start=1):
        assert run("compare", a, "-m", "cka", "-o", part, "--shard", f"{k}/2", "-q").exit_code == 0
    before = parts[0].read_bytes()
    r = run("merge", *parts, "-o", parts[0])
    assert r.exit_code == 2, r.output
    assert f"output '{parts[0]}' is the shard '{parts[0]}'" in r.output
    assert parts[0].read_bytes() == before
    assert run("merge", *parts, "-o", tmp_path / "merged.h5").exit_code == 0


def test_a_missing_output_directory_is_an_error(two_stores, tmp_path) -> None:
    a, _ = two_stores
    out = tmp_path / "nodir" / "sub" / "out.csv"
    r = run("compare", a, "-m", "cka", "-o", out, "-q")
    assert r.exit_code == 1
    assert r.output == (
        f"Error: {out}: directory '{out.parent}' does not exist; create it first "
        f"(mkdir -p {out.parent})\n"
    )
    assert not (tmp_path / "nodir").exists()
    r = run("import", f"x={tmp_path / 'none.npy'}", "-o", out.with_suffix(".h5"))
    assert r.exit_code == 1 and "does not exist; create it first" in r.output


# ------------------------------------------------------------------ validation at the door
@pytest.mark.parametrize("size", ["0", "0GiB", "0.0001"])
def test_memory_zero_is_a_usage_error(two_stores, tmp_path, size) -> None:
    a, _ = two_stores
    r = run("compare", a, "-m", "cka", "-o", tmp_path / "x.csv", "--memory", size)
    assert r.exit_code == 2 and "a size must be more than 0 bytes" in r.output
    assert not (tmp_path / "x.csv").exists()


def test_duplicate_sample_ids_are_named(tmp_path) -> None:
    np.save(tmp_path / "a.npy", np.random.default_rng(0).random((5, 3)))
    (tmp_path / "ids.txt").write_text("s0\ns1\ns2\ns1\ns4\n")
    r = run("import", tmp_path / "a.npy", "-o", tmp_path / "a.h5", "--ids", tmp_path / "ids.txt")
    assert r.exit_code == 1
    assert r.output == f"Error: {tmp_path / 'ids.txt'}: sample ids are not unique: 's1' is id 1 and id 3\n"
    assert not (tmp_path / "a.h5").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("shape", [(6, 0), (6, 3, 0), (6,)], ids=["0 columns", "0 in a feature axis", "1-D"])
def test_arrays_without_columns_are_refused_at_import(tmp_path, shape) -> None:
    np.save(tmp_path / "z.npy", np.zeros(shape))
    r = run("import", tmp_path / "z.npy", "-o", tmp_path / "z.h5")
    assert r.exit_code == 1
    assert r.output.startswith(f"Error: {tmp_path / 'z.npy'}: layer 'z': ")
    assert "has no columns" in r.output or "needs shape (n, features...)" in r.output
    assert not (tmp_path / "z.h5").exists()


@pytest.mark.parametrize("bad", ["1-D", "0 columns"])
def test_a_store_with_a_bad_layer_shape_is_refused_when_opened(make_store, tmp_path, bad) -> None:
    path = make_store({"good": np.random.default_rng(0).random((8, 3)), "bad": np.ones((8, 2))})
    with h5py.File(path, "r+") as f:
        del f["layers/bad"]
        f.create_dataset("layers/bad", data=np.ones(8) if bad == "1-D" else np.ones((8, 0)))
    for args in (["info", path], ["compare", path, "-m", "cka", "-o", tmp_path / "x.csv"]):
        r = run(*args)
        assert r.exit_code == 1, r.output
        assert r.output.startswith(f"Error: {path}: layer 'bad' has ")
        assert "no columns" in r.output or "a layer must be (n, features...)" in r.output


# ------------------------------------------------------------------ one writer per output
def test_output_lock_names_the_holder_and_is_released(tmp_path) -> None:
    out = tmp_path / "out.h5"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from repsim_cli.outputs import output_lock
            with output_lock({str(out)!r}):
                print("held", flush=True)
                sys.stdin.read()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
        locked = rf"another repsim run is writing it \(pid {holder.pid}, lock file"
        with pytest.raises(OutputLockedError, match=locked), output_lock(out):
            pass
    finally:
        holder.communicate(b"", timeout=30)
    assert not lock_path(out).exists()  # removed by its holder
    with output_lock(out), output_lock(tmp_path / "." / "out.h5"):  # one process nests its own lock
        assert lock_path(out).read_text().strip() == str(os.getpid())


SLOW_COMPARE = slow_compare_script(0.05)


def test_two_compares_on_one_output_one_wins_and_the_journal_stays_sound(make_store, tmp_path) -> None:
    rng = np.random.default_rng(1)
    path = make_store({f"l{i}": rng.standard_normal((20, 3)) for i in range(6)})
    script = tmp_path / "slow.py"
    script.write_text(SLOW_COMPARE)
    out = tmp_path / "out.csv"
    journal = tmp_path / ".out.csv.resume"
    first = subprocess.Popen(
        [sys.executable, str(script), "compare", str(path), "-m", "slow_test", "-q", "-o", str(out)],
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while not journal.exists() and time.monotonic() < deadline:
        assert first.poll() is None, first.communicate()[1].decode()
        time.sleep(0.01)
    # A second comparison (other metrics) into the same output stops at once.
    started = time.monotonic()
    second = subprocess.run(
        [sys.executable, str(script), "compare", str(path), "-m", "cka", "-q", "-o", str(out)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert second.returncode == 1, second.stderr
    assert second.stderr.startswith(f"Error: {out}: another repsim run is writing it (pid {first.pid}, lock file")
    assert time.monotonic() - started < 30
    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err.decode()
    rows = out.read_text().splitlines()
    assert rows[0].startswith("metric,") and len(rows) == 1 + 36 and all(r.startswith("slow_test,") for r in rows[1:])
    assert not journal.exists() and not lock_path(out).exists()


def test_a_damaged_journal_is_refused_with_the_reason(two_stores, tmp_path) -> None:
    a, _ = two_stores
    out = tmp_path / "r.csv"
    from repsim_cli.cli.compare import journal_path
    from repsim_cli.compare import prepare_comparison
    from repsim_cli.integrity import comparison_content
    from repsim_cli.schedule import Journal
    from repsim_cli.store import open_store

    with open_store(a) as store:
        comparison = prepare_comparison(store, None, ["cka"])
        journal = Journal(journal_path(str(out)), comparison.journal_header(None), content=comparison_content(comparison))
        comparison.run(journal=journal)
        journal.close(remove=False)
    text = journal.path.read_text().splitlines(keepends=True)
    journal.path.write_text("".join(text[:2]) + "\0\0\0\0\n" + "".join(text[2:]))
    r = run("compare", a, "-m", "cka", "-o", out, "--resume")
    assert r.exit_code == 1
    assert r.output == (
        f"Error: {journal.path}: cannot resume: line 3 of the resume journal is damaged; run without "
        "--resume (or add --force) to compute it again\n"
    )
    assert run("compare", a, "-m", "cka", "-o", out, "-q").exit_code == 0


def test_a_journal_of_a_run_refused_on_its_data_is_removed(make_store, tmp_path) -> None:
    rng = np.random.default_rng(2)
    path = make_store({"ok": rng.standard_normal((10, 3)), "flat": np.ones((10, 3))})
    out = tmp_path / "r.csv"
    r = run("compare", path, "-m", "cka", "-o", out)
    assert r.exit_code == 1 and "constant layer" in r.output
    assert not (tmp_path / ".r.csv.resume").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".r.csv")]
