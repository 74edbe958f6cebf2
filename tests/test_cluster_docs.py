"""The README's SLURM array script and experiment Makefile run as written (extract → compare shards →
merge → export), with the array's environment variables set by the test."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytestmark = [pytest.mark.torch, pytest.mark.slow]

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def block(name: str) -> str:
    part = README[README.index(f"<!-- cluster-{name}:start -->") : README.index(f"<!-- cluster-{name}:end -->")]
    return re.search(r"```\w+\n(.*?)```", part, re.DOTALL).group(1)  # type: ignore[union-attr]


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "model.py").write_text(block("model"))
    np.save(tmp_path / "inputs.npy", np.random.default_rng(0).standard_normal((256, 16)).astype("float32"))
    return tmp_path


def env() -> dict[str, str]:
    bindir = Path(sys.executable).parent
    return {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}


def sh(cmd: str, cwd: Path, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", cmd], cwd=cwd, env={**env(), **(extra or {})},
                          capture_output=True, text=True)


# A stand-in for sbatch: runs a script's array tasks (from its #SBATCH --array line) or a --wrap
# command at once, prints a job id, and refuses a --dependency=afterok on a job that has not
# succeeded (or does not exist) — as SLURM would never start it.
FAKE_SBATCH = r'''#!/usr/bin/env python3
import json, os, re, subprocess, sys
from pathlib import Path
state = Path(os.environ["FAKE_SLURM_STATE"])
jobs = json.loads(state.read_text()) if state.exists() else {}
args = sys.argv[1:]
wrap = script = None
deps = []
while args:
    a = args.pop(0)
    if a == "--parsable":
        continue
    if a.startswith("--dependency="):
        kind, _, ids = a.split("=", 1)[1].partition(":")
        assert kind == "afterok", a
        deps += ids.split(":")
    elif a == "--wrap":
        wrap = args.pop(0)
    elif a.startswith("--wrap="):
        wrap = a.split("=", 1)[1]
    else:
        script = a
for d in deps:
    if jobs.get(d) != "ok":
        sys.exit(f"sbatch: dependency {d} has not succeeded")
job = str(1000 + len(jobs))
ok = True
if wrap is not None:
    ok = subprocess.run(["bash", "-c", wrap]).returncode == 0
else:
    text = Path(script).read_text()
    lo, hi = map(int, re.search(r"#SBATCH --array=(\d+)-(\d+)", text).groups())
    for task in range(lo, hi + 1):
        env = {**os.environ, "SLURM_ARRAY_TASK_ID": str(task), "SLURM_ARRAY_TASK_MIN": str(lo),
               "SLURM_ARRAY_TASK_MAX": str(hi), "SLURM_CPUS_PER_TASK": "1"}
        ok = ok and subprocess.run(["bash", script], env=env).returncode == 0
jobs[job] = "ok" if ok else "failed"
state.write_text(json.dumps(jobs))
print(job)
'''


def test_slurm_two_arrays_then_merge(workdir: Path) -> None:
    (workdir / "layers.sbatch").write_text(block("slurm-layers"))
    (workdir / "pairs.sbatch").write_text(block("slurm-pairs"))
    (workdir / "submit.sh").write_text(block("slurm-submit"))
    bindir = workdir / "fakebin"
    bindir.mkdir()
    (bindir / "sbatch").write_text(FAKE_SBATCH)
    (bindir / "sbatch").chmod(0o755)
    path = f"{bindir}{os.pathsep}{env()['PATH']}"
    r = sh("set -e; bash submit.sh", workdir, {"PATH": path, "FAKE_SLURM_STATE": str(workdir / "jobs.json")})
    assert r.returncode == 0, r.stdout + r.stderr
    jobs = (workdir / "jobs.json").read_text()
    assert jobs.count('"ok"') == 3 and "failed" not in jobs
    # the layers array prepared each layer's states once: 5 layers of each of the two stores, each
    # with cca's basis and procrustes' state (separate state keys since the integ merge)
    assert len(list((workdir / "states").glob("*.state"))) == 20
    assert sorted(p.name for p in (workdir / "parts").iterdir()) == sorted(
        [f"cka.{k}.h5" for k in range(4)] + [f"cca.{k}.h5" for k in range(4)])
    # Same BLAS thread count as the tasks: a different count may change the last bits of a GEMM.
    pairs = sh("repsim compare stores/seed0.h5 stores/seed1.h5 -m cca -m procrustes -o - -q --threads 1",
               workdir)  # fmt: skip
    assert sh("repsim export cca.h5 -o -", workdir).stdout == pairs.stdout
    single = sh("repsim compare stores/seed0.h5 stores/seed1.h5 -m cka -m cka:debiased=true -o - -q "
                "--threads 1", workdir)
    merged = sh("repsim export cka.h5 -o -", workdir)
    assert single.stdout.count("\n") == 1 + 2 * 25
    assert_same_values(merged.stdout, single.stdout)
    assert (workdir / "cka.png").stat().st_size > 5000


def assert_same_values(merged: str, single: str) -> None:
    """Partial sums merge to the single run's values to the GEMM's round-off: these stores are
    float32 and the run is on the feature side, where a single run's one float32 product over all
    rows rounds differently from the shards' products over their rows (about 1e-7 relative;
    float64 GEMMs agree to 1e-12, see test_shard_partials.py)."""
    rows_m = [line.split(",") for line in merged.splitlines()]
    rows_s = [line.split(",") for line in single.splitlines()]
    assert rows_m[0] == rows_s[0] and len(rows_m) == len(rows_s)
    for a, b in zip(rows_m[1:], rows_s[1:], strict=True):
        assert a[:3] == b[:3] and float(a[3]) == pytest.approx(float(b[3]), rel=1e-6, abs=0)


def test_experiment_makefile(workdir: Path) -> None:
    (workdir / "experiment.mk").write_text(block("make"))
    r = sh("make -f experiment.mk -j2", workdir)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (workdir / "figures" / "cka.png").stat().st_size > 5000
    assert sorted(p.name for p in (workdir / "parts").iterdir()) == sorted(
        [f"cka.{k}.h5" for k in range(1, 5)] + [f"cca.{k}.h5" for k in range(1, 5)])
    assert sorted(p.name for p in (workdir / "states").glob("layers.*.done")) == [
        f"layers.{k}.done" for k in range(1, 5)]
    assert (workdir / "results" / "cca.h5").exists()
    # .SECONDARY: keeps the stores, which Make would otherwise delete as intermediates
    assert sorted(p.name for p in (workdir / "stores").iterdir()) == ["seed0.h5", "seed1.h5"]
    r = sh("make -f experiment.mk -q", workdir)  # everything up to date
    assert r.returncode == 0
