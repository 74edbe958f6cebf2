"""Job arrays and interruptions: shards + merge equal a single run exactly; resume after SIGKILL."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st
from slow_metric import slow_compare_script

from repsim_cli.cli import cli
from repsim_cli.errors import RepsimError
from repsim_cli.schedule import Shard, matrix_cells, parse_shard, shard_cells, shard_from_env


def run(*args, env=None):
    return CliRunner().invoke(cli, [str(a) for a in args], env=env)


@given(st.integers(1, 12), st.integers(1, 12), st.booleans(), st.integers(1, 20))
def test_shards_partition_cells_evenly(la, lb, upper, count) -> None:
    if upper:
        lb = la
    cells = matrix_cells(la, lb, upper)
    shares = [shard_cells(cells, Shard(k, count)) for k in range(1, count + 1)]
    assert sorted(c for s in shares for c in s) == sorted(cells)
    sizes = [len(s) for s in shares]
    assert max(sizes) - min(sizes) <= 1


def test_shard_parsing_and_slurm_environment() -> None:
    assert parse_shard("3/8") == Shard(3, 8)
    for bad in ("0/4", "5/4", "x", "1-4"):
        with pytest.raises(RepsimError, match="expected K/N"):
            parse_shard(bad)
    assert shard_from_env({}) is None
    assert shard_from_env({"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "4"}) == Shard(1, 4)
    env = {"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_MIN": "5", "SLURM_ARRAY_TASK_MAX": "8"}
    assert shard_from_env(env) == Shard(3, 4)
    with pytest.raises(RepsimError, match="SLURM_ARRAY_TASK_COUNT"):
        shard_from_env({"SLURM_ARRAY_TASK_ID": "1"})


@pytest.fixture
def stores(make_store, backend):
    rng = np.random.default_rng(3)
    base = rng.standard_normal((30, 4))
    a = {f"a{i}": np.hstack([base, rng.standard_normal((30, 3 + i))]) for i in range(5)}
    b = {f"b{i}": base @ rng.standard_normal((4, 6)) + rng.standard_normal((30, 6)) for i in range(3)}
    return make_store(a, backend, name="A"), make_store(b, backend, name="B")


@pytest.mark.parametrize("count", [1, 3, 7])
@pytest.mark.parametrize("two", [False, True], ids=["self", "pair"])
def test_shards_then_merge_equal_a_single_run(stores, tmp_path, count, two) -> None:
    a, b = stores
    inputs = [a, b] if two else [a]
    # metrics that shard by cells (the CKA family's partial sums: test_shard_partials.py)
    metrics = ["-m", "procrustes", "-m", "cca"]
    assert run("compare", *inputs, *metrics, "-o", tmp_path / "single.csv").exit_code == 0
    parts = []
    for k in range(1, count + 1):
        part = tmp_path / f"part{k}.h5"
        r = run("compare", *inputs, *metrics, "-o", part, "--shard", f"{k}/{count}")
        assert r.exit_code == 0, r.output
        parts.append(part)
    r = run("merge", *parts, "-o", tmp_path / "merged.csv")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "merged.csv").read_bytes() == (tmp_path / "single.csv").read_bytes()


def test_slurm_array_variables_pick_the_shard(stores, tmp_path) -> None:
    a, _ = stores
    for task in range(3):
        env = {"SLURM_ARRAY_TASK_ID": str(task), "SLURM_ARRAY_TASK_COUNT": "3"}
        assert run("compare", a, "-m", "procrustes", "-o", tmp_path / f"p{task}.h5", env=env).exit_code == 0
    r = run("merge", *(tmp_path / f"p{t}.h5" for t in range(3)), "-o", "-")
    assert r.exit_code == 0
    assert r.stdout == run("compare", a, "-m", "procrustes", "-o", "-").stdout


def test_merge_reports_missing_cells(stores, tmp_path) -> None:
    a, _ = stores
    run("compare", a, "-m", "procrustes", "-o", tmp_path / "p1.h5", "--shard", "1/4")
    run("compare", a, "-m", "procrustes", "-o", tmp_path / "p3.h5", "--shard", "3/4")
    r = run("merge", tmp_path / "p1.h5", tmp_path / "p3.h5", "-o", tmp_path / "m.h5")
    assert r.exit_code == 1
    line = r.output.strip().splitlines()[-1]
    assert line.startswith("Error: ") and "cells were computed by no shard: procrustes (a0, a4)" in line
    assert not (tmp_path / "m.h5").exists()


def test_merge_refuses_conflicting_shards(stores, make_store, tmp_path) -> None:
    a, b = stores
    run("compare", a, "-m", "procrustes", "-o", tmp_path / "p1.h5", "--shard", "1/2")
    run("compare", a, "-m", "cca", "-o", tmp_path / "other_metric.h5", "--shard", "2/2")
    r = run("merge", tmp_path / "p1.h5", tmp_path / "other_metric.h5", "-o", tmp_path / "m.h5")
    assert r.exit_code == 1 and "metrics cca differ from" in r.output
    run("compare", a, b, "-m", "procrustes", "-o", tmp_path / "other_store.h5", "--shard", "2/2")
    r = run("merge", tmp_path / "p1.h5", tmp_path / "other_store.h5", "-o", tmp_path / "m.h5")
    assert r.exit_code == 1 and "shards of different comparisons" in r.output
    # Two shards that disagree on a cell they both hold.
    import h5py

    run("compare", a, "-m", "procrustes", "-o", tmp_path / "full.h5")
    with h5py.File(tmp_path / "full.h5", "r+") as f:
        f["metrics/procrustes/value"][0, 0] = 0.5
    r = run("merge", tmp_path / "p1.h5", tmp_path / "full.h5", "-o", tmp_path / "m.h5")
    assert r.exit_code == 1 and "cell (a0, a0) is 0.5, but an earlier shard has 0.0" in r.output
    assert not (tmp_path / "m.h5").exists()


def test_two_runs_give_identical_bytes(stores, tmp_path) -> None:
    a, b = stores
    for name in ("r1.csv", "r2.csv"):
        run("compare", a, b, "-m", "cka", "-m", "cka:debiased=true", "-o", tmp_path / name)
    assert (tmp_path / "r1.csv").read_bytes() == (tmp_path / "r2.csv").read_bytes()


# A slow, per-pair metric registered only in the child process, so that a kill lands mid-run.
SLOW_COMPARE = slow_compare_script(0.08)


def n_lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_resume_after_sigkill_is_byte_identical(make_store, tmp_path) -> None:
    rng = np.random.default_rng(0)
    path = make_store({f"l{i}": rng.standard_normal((20, 3)) for i in range(6)})
    script = tmp_path / "slow.py"
    script.write_text(SLOW_COMPARE)
    args = [sys.executable, str(script), "compare", str(path), "-m", "cka", "-m", "slow_test", "-q"]
    subprocess.run([*args, "-o", str(tmp_path / "ref.csv")], check=True)
    reference = (tmp_path / "ref.csv").read_bytes()
    rnd = random.Random(1)
    for attempt in range(3):
        out = tmp_path / f"run{attempt}.csv"
        journal = tmp_path / f".run{attempt}.csv.resume"
        kills = resumed_cells = 0
        for _ in range(20):
            proc = subprocess.Popen([*args, "-o", str(out), "--resume"])
            # Kill at a random moment after this run has journalled at least one new cell.
            before = n_lines(journal)
            deadline = time.time() + 60
            while n_lines(journal) <= max(before, 1) and proc.poll() is None and time.time() < deadline:
                time.sleep(0.005)
            time.sleep(rnd.uniform(0.0, 0.3))
            if proc.poll() is not None:
                break
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            if out.exists():  # the kill landed after the output's final rename: it is complete
                break
            kills += 1
            resumed_cells = max(resumed_cells, n_lines(journal) - 1)
        else:
            pytest.fail("never finished")
        assert kills >= 1, "the run finished before the first kill; make the metric slower"
        assert resumed_cells > 0
        assert out.read_bytes() == reference
        if proc.returncode == 0:  # a run that ended normally removes its journal
            assert not journal.exists()


def test_resume_refuses_a_journal_of_another_comparison(stores, tmp_path) -> None:
    a, _ = stores
    out = tmp_path / "r.csv"
    (tmp_path / ".r.csv.resume").write_text('{"something": "else"}\n')
    r = run("compare", a, "-m", "cka", "-o", out, "--resume")
    assert r.exit_code == 1 and "written by a different comparison" in r.output
    r = run("compare", a, "-m", "cka", "-o", "-", "--resume")
    assert r.exit_code == 2 and "--resume needs an output file" in r.output
