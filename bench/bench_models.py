"""Many models in one run: `repsim compare S1 ... SN` against separate runs and bare-numpy floors.

Workload (made by this script in bench/_work/): 10 stores x 8 layers x n=5000 x p=512 float32
HDF5, one per "model" (seeded layers that drift with depth, with means much larger than the spread).
Measured in one run, each command in a fresh process, medians over --repeats (the order of the
three runs rotates every repeat, so that changes in machine load hit all alike):

(a) cka: `repsim compare` of all 45 model pairs in one N-store run, against
    - 45 separate two-store runs (`repsim compare Si Sj`, one process each; target: the N-store run
      is >= 5x faster), and
    - the bare-numpy floor (a fresh process, timed after reading the layers into memory): each of
      the 80 layers centred and its Gram formed once by float32 SYRK, its upper triangle packed,
      then every cell from one Gram of the packed triangles (in float64 pieces), CKA from that.
      Target: N-store run <= 1.25x the floor.
(b) cca: the same with mean CCA; the floor whitens each layer once (thin QR of the centred float64
    layer) and does one SVD per cell of the (p x p) coupling Q_iᵀQ_j (coupling GEMMs batched per
    model pair). Target: <= 1.25x the floor. The separate runs are shown for reference only; by
    default 5 of them are timed and scaled up (--separate-sample-cca).
(c) rss: `repsim compare` of the N stores with --memory SIZE small enough that states or Grams do
    not fit (the run keeps its cache; the bytes spilled and the planner's mode are printed), peak
    RSS by /usr/bin/time. Target: peak RSS <= SIZE + the interpreter overhead the README states
    (120 MiB); the overhead measured alone (a tiny compare) is printed too.

The N-store values are checked against the floor's (largest |difference| over the 2,880 cells).

Usage: python bench/bench_models.py [--models 10 --layers 8 --n 5000 --p 512 --repeats 3]
       [--only cka|cca|rss ...] [--memory 1GiB] [--separate-sample K] [--separate-sample-cca 5]
       [--compare-options '--memory 20GiB']
Smoke test: python bench/bench_models.py --models 3 --layers 2 --n 400 --p 64 --repeats 1
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _common import WORK, cpu_note, repsim_args, run_command, write_store

MiB = 1024**2
README_OVERHEAD_MIB = 120  # "Running on a cluster": budget + about 120 MiB
TARGET_SEPARATE = 5.0
TARGET_FLOOR = 1.25


# ---------------------------------------------------------------- floors (run in a fresh process)
def read_layers(paths: list[str]) -> list[list[np.ndarray]]:
    from repsim_cli.store import open_store

    out = []
    for path in paths:
        with open_store(path) as s:
            out.append([s.read_rows(name, 0, s.n_samples) for name in s.layers])
    return out


def floor_cka(models: list[list[np.ndarray]]) -> tuple[np.ndarray, float, float]:
    """All-layer CKA matrix; (matrix, prepare seconds, cells seconds).

    Prepare: centre (float64 means), Gram by float32 SYRK (numpy runs ``xc @ xc.T`` as SYRK), keep
    its strict upper triangle (float32, row by row) and its diagonal (float64). Cells: one Gram of
    the packed triangles, in float64 pieces: ⟨K_a, K_b⟩ = 2·⟨upper_a, upper_b⟩ + ⟨diag_a, diag_b⟩.
    """
    layers = [x for model in models for x in model]
    n = layers[0].shape[0]
    t0 = time.perf_counter()
    total = n * (n - 1) // 2
    packed = np.empty((len(layers), total), dtype=np.float32)
    diags = np.empty((len(layers), n))
    for k, x in enumerate(layers):
        xc = x - x.mean(axis=0, dtype=np.float64).astype(np.float32)
        gram = xc @ xc.T
        diags[k] = np.diag(gram)
        row, pos = packed[k], 0
        for i in range(n - 1):
            row[pos : pos + n - 1 - i] = gram[i, i + 1 :]
            pos += n - 1 - i
        del gram, xc
    t1 = time.perf_counter()
    inner = diags @ diags.T
    step = 1 << 18
    for s in range(0, total, step):
        piece = packed[:, s : s + step].astype(np.float64)
        inner += 2.0 * (piece @ piece.T)
    d = np.sqrt(np.diag(inner))
    cka = inner / np.outer(d, d)
    return cka, t1 - t0, time.perf_counter() - t1


def floor_cca(models: list[list[np.ndarray]]) -> tuple[np.ndarray, float, float]:
    """Mean-CCA matrix over the model pairs i < j (NaN elsewhere); (matrix, prepare s, cells s)."""
    n_layers = len(models[0])
    n, p = models[0][0].shape
    t0 = time.perf_counter()
    bases = []
    for model in models:
        q_all = np.empty((n, n_layers * p))
        for k, x in enumerate(model):
            x64 = x.astype(np.float64)
            x64 -= x64.mean(axis=0)
            q_all[:, k * p : (k + 1) * p] = np.linalg.qr(x64, mode="reduced")[0]
        bases.append(q_all)
    t1 = time.perf_counter()
    size = len(models) * n_layers
    out = np.full((size, size), np.nan)
    for a, b in itertools.combinations(range(len(models)), 2):
        coupling = bases[a].T @ bases[b]
        for i in range(n_layers):
            for j in range(n_layers):
                c = coupling[i * p : (i + 1) * p, j * p : (j + 1) * p]
                rho = np.clip(np.linalg.svd(c, compute_uv=False), 0.0, 1.0)
                out[a * n_layers + i, b * n_layers + j] = rho.mean()
    return out, t1 - t0, time.perf_counter() - t1


def warm_up() -> None:
    """First calls into LAPACK/BLAS pay a one-off start (about a second on a loaded machine)."""
    x = np.random.default_rng(0).standard_normal((64, 16))
    np.linalg.svd(np.linalg.qr(x, mode="reduced")[0].T @ x, compute_uv=False)
    x32 = x.astype(np.float32)
    _ = x32 @ x32.T


def floor_main(metric: str, paths: list[str], out_json: str) -> None:
    warm_up()
    t0 = time.perf_counter()
    models = read_layers(paths)
    read_s = time.perf_counter() - t0
    matrix, prep_s, cells_s = (floor_cka if metric == "cka" else floor_cca)(models)
    np.save(Path(out_json).with_suffix(".npy"), matrix)
    Path(out_json).write_text(json.dumps({"read": read_s, "prepare": prep_s, "cells": cells_s}))


# ---------------------------------------------------------------- measurements
def run_floor(metric: str, paths: list[str]) -> tuple[float, float, dict[str, float]]:
    """(compute seconds, peak RSS GiB, the floor's parts) of the floor in a fresh process."""
    out = WORK / f"floor_{metric}.json"
    _, rss = run_command([sys.executable, __file__, "--floor", metric, "--out", str(out), *paths])
    parts = json.loads(out.read_text())
    return parts["prepare"] + parts["cells"], rss, parts


def separate_runs(metric: str, paths: list[str], sample: int, extra: list[str]) -> tuple[float, float, int]:
    """Total wall seconds of the 45 two-store runs (extrapolated from ``sample`` of them when > 0),
    their largest peak RSS, and how many ran."""
    pairs = list(itertools.combinations(paths, 2))
    chosen = pairs if sample <= 0 else pairs[:: max(1, len(pairs) // sample)][:sample]
    out = WORK / f"pair_{metric}.h5"
    walls, peak = [], 0.0
    for a, b in chosen:
        wall, rss = run_command(repsim_args("compare", a, b, "-m", metric, *extra, "-o", str(out), "-q"))
        walls.append(wall)
        peak = max(peak, rss)
    return sum(walls) * len(pairs) / len(chosen), peak, len(chosen)


def max_diff(results_path: Path, floor_npy: Path, n_layers: int) -> float:
    """Largest |repsim − floor| over the cells of every model pair i < j."""
    from repsim_cli.results import read_results

    res = read_results(results_path)
    floor = np.load(floor_npy)
    worst = 0.0
    for i, j in res.model_pairs:
        block = res.block(i, j).get(None).value
        ref = floor[i * n_layers : (i + 1) * n_layers, j * n_layers : (j + 1) * n_layers]
        worst = max(worst, float(np.nanmax(np.abs(block - ref))))
    return worst


def metric_rows(metric: str, paths: list[str], a: argparse.Namespace, rows: list[tuple[str, ...]],
                commands: list[str]) -> None:
    out = WORK / f"models_{metric}.h5"
    extra = shlex.split(a.compare_options)
    n_store = repsim_args("compare", *paths, "-m", metric, *extra, "-o", str(out), "-q")
    commands.append(" ".join(["repsim", *n_store[3:]]))
    commands.append(f"repsim compare Si Sj -m {metric} {' '.join(extra)} -o {WORK / f'pair_{metric}.h5'} -q   "
                    f"# each of the {len(paths) * (len(paths) - 1) // 2} pairs")
    walls, rsss, seps, sep_rss, floors, floor_rss, parts = [], [], [], [], [], [], []
    n_sep = 0
    sample = a.separate_sample if metric == "cka" else a.separate_sample_cca
    jobs = ["n_store", "separate", "floor"]
    for r in range(a.repeats):
        for job in jobs[r % 3 :] + jobs[: r % 3]:
            if job == "n_store":
                try:
                    wall, rss = run_command(n_store)
                except subprocess.CalledProcessError as exc:  # e.g. no plan fits the budget
                    rows.append((metric, "repsim compare, N stores", "", "", "",
                                 f"FAILED (exit {exc.returncode}; its error is above)"))  # fmt: skip
                    return
                walls.append(wall)
                rsss.append(rss)
            elif job == "separate":
                total, rss, n_sep = separate_runs(metric, paths, sample, extra)
                seps.append(total)
                sep_rss.append(rss)
            else:
                wall, rss, part = run_floor(metric, paths)
                floors.append(wall)
                floor_rss.append(rss)
                parts.append(part)
    wall, sep, floor = (statistics.median(v) for v in (walls, seps, floors))
    read = statistics.median(p["read"] for p in parts)
    diff = max_diff(out, WORK / f"floor_{metric}.npy", a.layers)
    n_pairs = a.models * (a.models - 1) // 2
    sep_label = (f"{n_pairs} separate two-store runs" if n_sep == n_pairs
                 else f"{n_pairs} separate runs (x{n_pairs}/{n_sep} of {n_sep} timed)")  # fmt: skip
    floor_label = ("floor: SYRK Grams + 1 packed GEMM" if metric == "cka"
                   else "floor: QR per layer + SVD per cell")  # fmt: skip
    sep_ratio, floor_ratio = sep / wall, wall / floor
    sep_ok = "" if metric != "cka" else ("PASS" if sep_ratio >= TARGET_SEPARATE else "FAIL")
    rows += [
        (metric, f"repsim compare, {a.models} stores", f"{wall:.2f}", f"{statistics.median(rsss):.2f}", "", ""),
        (metric, sep_label, f"{sep:.2f}", f"{max(sep_rss):.2f}", "", ""),
        (metric, floor_label, f"{floor:.2f}", f"{max(floor_rss):.2f}", "", f"(+{read:.2f} s reading)"),
        (metric, "separate / N-store", "", "", f"{sep_ratio:.2f}x",
         f">= {TARGET_SEPARATE:g}x {sep_ok}" if metric == "cka" else "(reference)"),
        (metric, "N-store / floor", "", "", f"{floor_ratio:.2f}x",
         f"<= {TARGET_FLOOR:g}x {'PASS' if floor_ratio <= TARGET_FLOOR else 'FAIL'}"),
        (metric, "max |repsim - floor|", "", "", f"{diff:.1e}", ""),
    ]  # fmt: skip


def rss_rows(paths: list[str], a: argparse.Namespace, rows: list[tuple[str, ...]],
             commands: list[str]) -> None:
    tiny = write_store(WORK / "overhead_4x200x512.h5", 200, 512, 4)
    _, overhead = run_command(repsim_args("compare", str(tiny), "-m", "cka", "-o",
                                          str(WORK / "overhead.csv"), "-q"))  # fmt: skip
    for metric in a.rss_metrics.split(","):
        cache = WORK / f"rss_cache_{metric}"
        shutil.rmtree(cache, ignore_errors=True)
        args = ("compare", *paths, "-m", metric, "--memory", a.memory, "--cache-dir", str(cache),
                "--keep-cache", "-o", str(WORK / f"rss_{metric}.h5"), "-q")  # fmt: skip
        dry = subprocess.run(repsim_args(*args[:-1], "--dry-run", "--json"), check=False,
                             capture_output=True, text=True)  # fmt: skip
        if dry.returncode != 0:  # e.g. a budget below what the planner can work in
            rows.append(("rss", f"{metric} --memory {a.memory}", "", "", "", dry.stderr.strip()))
            continue
        plan = json.loads(dry.stdout)
        peaks = [run_command(repsim_args(*args))[1] for _ in range(a.repeats)]
        spilled = sum(f.stat().st_size for f in cache.rglob("*") if f.is_file()) if cache.exists() else 0
        shutil.rmtree(cache, ignore_errors=True)
        budget = plan["budget"] / MiB
        peak = max(peaks) * 1024
        limit = budget + README_OVERHEAD_MIB
        commands.append(" ".join(["repsim", *args]))
        label = f"{metric} --memory {a.memory} (mode {plan['mode']}, spilled {spilled / MiB:.0f} MiB)"
        verdict = f"<= {limit:.0f} MiB {'PASS' if peak <= limit else 'FAIL'}"
        if not spilled and plan["mode"] != "tiled":
            verdict += " (did not spill: lower --memory)"
        rows.append(("rss", label, "", f"{peak / 1024:.2f}", f"{peak:.0f} MiB", verdict))
    rows.append(("rss", "overhead alone (tiny compare)", "", f"{overhead:.2f}",
                 f"{overhead * 1024:.0f} MiB", f"README states {README_OVERHEAD_MIB} MiB"))  # fmt: skip


def print_table(rows: list[tuple[str, ...]]) -> None:
    head = ("metric", "measurement", "seconds", "peak RSS GiB", "ratio", "target")
    widths = [max(len(r[c]) for r in [head, *rows]) for c in range(len(head))]
    for r in [head, *rows]:
        print("  ".join(cell.rjust(w) if c in (2, 3, 4) else cell.ljust(w)
                        for c, (cell, w) in enumerate(zip(r, widths, strict=True))).rstrip())  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=int, default=10)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--p", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", action="append", choices=["cka", "cca", "rss"],
                    help="run only these parts (repeatable; default all)")
    ap.add_argument("--memory", default="1GiB", help="budget of the rss part (forces spilling)")
    ap.add_argument("--rss-metrics", default="cka,cca", help="metrics of the rss part")
    ap.add_argument("--separate-sample", type=int, default=0,
                    help="cka: time only K of the separate two-store runs and scale up (0: all)")
    ap.add_argument("--separate-sample-cca", type=int, default=5,
                    help="cca: the same (default 5: the separate runs are a reference only)")
    ap.add_argument("--compare-options", default="",
                    help="extra options for every repsim compare of the cka/cca parts, "
                         "e.g. '--memory 20GiB' or '--side feature'")
    ap.add_argument("--floor", choices=["cka", "cca"], help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("paths", nargs="*", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.floor:
        floor_main(a.floor, a.paths, a.out)
        return
    folder = WORK / f"models_{a.models}x{a.layers}x{a.n}x{a.p}"
    paths = [str(write_store(folder / f"m{k:02d}.h5", a.n, a.p, a.layers, seed=k)) for k in range(a.models)]
    load_start = os.getloadavg()
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    rows: list[tuple[str, ...]] = []
    commands: list[str] = []
    for part in a.only or ["cka", "cca", "rss"]:
        if part == "rss":
            rss_rows(paths, a, rows, commands)
        else:
            metric_rows(part, paths, a, rows, commands)
    load_end = os.getloadavg()
    print(f"bench_models: {a.models} stores x {a.layers} layers x n={a.n} x p={a.p} float32 HDF5 "
          f"({cpu_note()}); medians of {a.repeats} rotated repeats; started {started}")
    print(f"load average (1/5/15 min) at start {'/'.join(f'{x:.1f}' for x in load_start)}, "
          f"at end {'/'.join(f'{x:.1f}' for x in load_end)}")
    print_table(rows)
    print("command: " + " ".join([Path(sys.executable).name, *sys.argv]))
    for c in commands:
        print("  " + c)


if __name__ == "__main__":
    main()
