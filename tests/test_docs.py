"""The README is the manual: its metrics table matches the registry, every command is documented,
and the tour runs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from repsim_cli.cli import cli
from repsim_cli.metrics.table import END, START, metrics_block

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_metrics_table_in_sync_with_registry() -> None:
    start, end = README.index(START), README.index(END) + len(END)
    assert README[start:end] == metrics_block(), "run: repsim metrics --markdown, paste into README"


def test_every_command_is_in_the_readme() -> None:
    for name in cli.commands:
        assert f"repsim {name}" in README, name


def test_make_demo_and_make_test_come_first() -> None:
    quick = README[: README.index("## A tour")]
    assert "make demo" in quick and "make test" in quick


@pytest.mark.slow
def test_tour_runs(tmp_path: Path) -> None:
    block = README[README.index("<!-- tour:start -->") : README.index("<!-- tour:end -->")]
    script = re.search(r"```bash\n(.*?)```", block, re.DOTALL).group(1)  # type: ignore[union-attr]
    shutil.copytree(ROOT / "sample_data", tmp_path / "sample_data")
    bindir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
    lines = script.replace("\\\n", " ").strip().splitlines()
    # The tour starts by activating the virtual environment that `make demo` made; here, the one
    # running the tests (its bin folder is on PATH already).
    assert lines[0] == "source .venv/bin/activate"
    lines = lines[1:]
    for line in lines[:-1]:
        r = subprocess.run(["bash", "-o", "pipefail", "-c", line], cwd=tmp_path, env=env,
                           capture_output=True, text=True)
        if "| head" in line:  # head closes the pipe early; the data still came out
            assert r.stdout.startswith("metric,layer_a,layer_b,value"), r.stderr
            continue
        assert r.returncode == 0, f"{line}\n{r.stderr}"
    last = subprocess.run(["bash", "-c", lines[-1]], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert last.returncode == 1
    assert last.stderr.startswith("Error: sample_data/digits_seed0.h5: sample ids differ")
    assert (tmp_path / "out" / "tour.png").stat().st_size > 10_000
