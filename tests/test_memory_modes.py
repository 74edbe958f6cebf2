"""`--memory` is kept in every engine mode: a subprocess's peak RSS stays within the budget plus
the interpreter's own overhead (measured on the same command over a tiny store), with metrics
whose Grams, prepare stage and states together need more than the budget (so Grams spill or
tile and states are budgeted), whole-Gram metrics (RSA, dcor, mutual k-NN) included."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from repsim_cli.store.importers import import_arrays

MiB = 1024**2
PEAK = textwrap.dedent("""
    import json, resource, subprocess, sys
    subprocess.run(sys.argv[1:], check=True)
    print(json.dumps(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024))
""")


def peak_rss(args: list[str]) -> int:
    out = subprocess.run([sys.executable, "-c", PEAK, sys.executable, "-m", "repsim_cli", *args],
                         capture_output=True, text=True, check=True)  # fmt: skip
    return int(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> tuple[Path, Path]:
    """A store of 5 layers × n=2000 × 300 float32 (its Grams alone: 160 MiB in float64), and the
    same widths at n=200 for the overhead."""
    tmp = tmp_path_factory.mktemp("memory")
    rng = np.random.default_rng(0)
    base = rng.standard_normal((2000, 8)).astype(np.float32)
    for i in range(5):
        x = base @ rng.standard_normal((8, 300)).astype(np.float32)
        x += rng.standard_normal((2000, 300), dtype=np.float32) + 50
        np.save(tmp / f"l{i}.npy", x)
        np.save(tmp / f"small{i}.npy", x[:200])
    big, small = tmp / "big.h5", tmp / "small.h5"
    import_arrays([str(tmp / f"l{i}.npy") for i in range(5)], big, chunk_rows=256)
    import_arrays([str(tmp / f"small{i}.npy") for i in range(5)], small)
    return big, small


@pytest.mark.slow
@pytest.mark.parametrize(
    ("metric", "memory", "extra", "mode"),
    [
        ("rsa", 300, [], "spilled"),
        ("dcor", 300, [], "spilled"),
        ("mutual_knn", 300, [], "spilled"),
        ("cka", 120, ["--side", "sample"], "packed"),
        ("cka", 70, ["--side", "sample"], "tiled"),
        ("cca", 200, [], None),
    ],
)
def test_peak_rss_within_the_budget(stores, tmp_path, metric, memory, extra, mode) -> None:
    big, small = stores
    args = ["compare", str(big), "-m", metric, "--memory", f"{memory}MiB", *extra, "-q"]
    plan = json.loads(subprocess.run([sys.executable, "-m", "repsim_cli", *args, "--dry-run",
                                      "--json"], capture_output=True, text=True, check=True).stdout)  # fmt: skip
    if mode is not None:
        assert plan["mode"] == mode, plan["mode"]
    assert plan["peak_bytes"] <= memory * MiB
    overhead = peak_rss(["compare", str(small), "-m", metric, "-q", *extra, "-o",
                         str(tmp_path / "small.csv")])  # fmt: skip
    peak = peak_rss([*args, "-o", str(tmp_path / "big.csv")])
    assert peak <= overhead + memory * MiB, (metric, peak / MiB, overhead / MiB)
    full = subprocess.run([sys.executable, "-m", "repsim_cli", "compare", str(big), "-m", metric,
                           *extra, "-q", "-o", "-"], capture_output=True, text=True, check=True)  # fmt: skip
    within = np.loadtxt(tmp_path / "big.csv", delimiter=",", skiprows=1, usecols=3)
    unbounded = np.loadtxt(full.stdout.splitlines(), delimiter=",", skiprows=1, usecols=3)
    # the budget changes no value (tiles sum a Gram inner product in another order: round-off)
    np.testing.assert_allclose(within, unbounded, rtol=1e-12, atol=0)
