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


def test_slurm_array_script(workdir: Path) -> None:
    (workdir / "compare.sbatch").write_text(block("slurm"))
    for task in range(4):
        r = sh("bash compare.sbatch", workdir, {"SLURM_ARRAY_TASK_ID": str(task),
                                                "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_CPUS_PER_TASK": "1"})
        assert r.returncode == 0, r.stderr
    r = sh("repsim merge parts/cka.*.h5 -o cka.h5 && repsim export cka.h5 --metric cka -o cka.png", workdir)
    assert r.returncode == 0, r.stderr
    # Same BLAS thread count as the tasks: a different count may change the last bits of a GEMM.
    single = sh("repsim compare stores/seed0.h5 stores/seed1.h5 -m cka -m cka:debiased=true -o - -q "
                "--threads 1", workdir)
    merged = sh("repsim export cka.h5 -o -", workdir)
    assert merged.stdout == single.stdout and single.stdout.count("\n") == 1 + 2 * 25
    assert (workdir / "cka.png").stat().st_size > 5000


def test_experiment_makefile(workdir: Path) -> None:
    (workdir / "experiment.mk").write_text(block("make"))
    r = sh("make -f experiment.mk -j2", workdir)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (workdir / "figures" / "cka.png").stat().st_size > 5000
    assert sorted(p.name for p in (workdir / "parts").iterdir()) == [f"cka.{k}.h5" for k in range(1, 5)]
    # .SECONDARY: keeps the stores, which Make would otherwise delete as intermediates
    assert sorted(p.name for p in (workdir / "stores").iterdir()) == ["seed0.h5", "seed1.h5"]
    r = sh("make -f experiment.mk -q", workdir)  # everything up to date
    assert r.returncode == 0
