"""Helpers shared by the benchmark scripts: workload stores, timing, and peak RSS of a command."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

WORK = Path(__file__).parent / "_work"


def related_layers(n: int, width: int, n_layers: int, seed: int = 0):
    """Yield (name, block generator) for layers that drift like a network's depth: each layer is
    the previous one mixed with fresh noise, plus a large per-unit offset (means ≫ spread)."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n, width), dtype=np.float32)
    for i in range(n_layers):
        base = 0.8 * base + 0.6 * rng.standard_normal((n, width), dtype=np.float32)
        yield f"layer{i:02d}", base + 50.0 * rng.standard_normal(width).astype(np.float32)


def write_store(path: Path, n: int, width: int, n_layers: int, seed: int = 0) -> Path:
    """Write the synthetic workload to an activation store (skipped if it already exists)."""
    from repsim_cli._atomic import atomic_path
    from repsim_cli.store import StoreWriter

    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        writer = StoreWriter(tmp, np.arange(n))
        for name, x in related_layers(n, width, n_layers, seed):
            writer.add_layer(name, (width,), np.float32)
            writer.write_rows(name, 0, x)
        writer.finalize()
    return path


def run_command(args: list[str]) -> tuple[float, float]:
    """Run a command; return (wall seconds, its peak RSS in GiB).

    The peak is measured by /usr/bin/time around the command, not by rusage of a child forked
    from this process: a forked child's maximum RSS starts at the parent's size.
    """
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss_file:
        t0 = time.perf_counter()
        subprocess.run(["/usr/bin/time", "-f", "%M", "-o", rss_file.name, *args], check=True)
        wall = time.perf_counter() - t0
        peak_kib = int(rss_file.read().strip().splitlines()[-1])
    return wall, peak_kib / 1024**2


def repsim_env() -> dict[str, str]:
    """The environment for timing repsim as a process: Python may cache repsim's compiled modules
    as an installed package has them (an editable install under PYTHONDONTWRITEBYTECODE would
    recompile ~90 modules, ~0.3 s, every run)."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def repsim_args(*args: str) -> list[str]:
    return [sys.executable, "-m", "repsim_cli", *args]


def timed(fn, *args, repeat: int = 1):
    """Best-of-``repeat`` wall time of fn(*args) and its last result."""
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn(*args)
        best = min(best, time.perf_counter() - t0)
    return best, out


def cpu_note() -> str:
    return f"{os.cpu_count()} CPUs, numpy {np.__version__}"
