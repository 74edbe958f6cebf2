"""Cost of compare's per-cell statistics (repsim_cli.stats) against the plain compare.

Workload: one store of 12 float32 layers, n = 2000 examples × p = 512 units (bench/_work/), compared
with itself by ``-m cka`` (78 cells: the upper triangle with the diagonal). Every figure is measured
in this one process, side by side, as the median of ``--repeats`` runs (each a fresh comparison:
reading, Grams, pairs, statistics):

- plain: ``compare`` without statistics;
- pair stage: the plain comparison's pair work alone — every cell's ⟨Kc_a, Kc_b⟩ computed again by
  the engine from its held Grams (its cache of inner products emptied) — the unit of the
  bootstrap target;
- ``--jackknife`` (target ≤ 1.5× plain), its runs interleaved with the plain ones — in this process
  (the stricter reading: no interpreter start or imports in either) and as whole processes,
  ``repsim compare STORE -m cka -o out.h5`` against the same with ``--jackknife``, as a user runs
  them (``--process-repeats``, interleaved too);
- ``--bootstrap 200`` (target: its extra time over plain ≤ 1.5 × 200 × the pair stage), and the
  same with ``--ci-method bca`` (BCa's leave-one-out values on top), interleaved;
- ``--null gamma`` and ``--permutations P`` (default 1000; a smaller P is scaled to 1000 and
  marked ``*``; 0 skips them), and the gamma speed-up.

Run: python bench/bench_stats.py [--repeats 3] [--process-repeats 7] [--bootstrap-repeats 1]
     [--permutations 1000] [--permutation-repeats 1] [--shrink 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np
from _common import WORK, cpu_note, repsim_args, repsim_env, write_store

from repsim_cli._warnings import RepsimWarning
from repsim_cli.compare import prepare_comparison
from repsim_cli.stats.runner import StatsOptions, engine_gram
from repsim_cli.store import open_store


def run_once(path, opts: StatsOptions | None) -> tuple[float, float]:
    """(wall seconds of one comparison, seconds of its pair stage run again on the warm comparison)."""
    with open_store(path) as store, warnings.catch_warnings():
        warnings.simplefilter("ignore", RepsimWarning)
        t0 = time.perf_counter()
        comparison = prepare_comparison(store, None, ["cka"], statistics=opts)
        comparison.run()
        wall = time.perf_counter() - t0
        # the pair stage of linear CKA: the engine's inner products of every cell's two Grams,
        # timed again with the engine's cache of them emptied (the Grams stay held)
        strategy = comparison.engine._grams
        blocks = getattr(strategy, "_blocks", None)
        cells = comparison.layout.cells(True)
        rows, cols = sorted({i for i, _ in cells}), sorted({j for _, j in cells})
        if blocks is not None:
            blocks.clear()
            t1 = time.perf_counter()
            comparison._block(comparison.specs[0], rows, cols, set(cells))
        else:  # no cache to empty: one dot product per cell
            grams = {r.key: engine_gram(comparison, r) for r in comparison.refs_a}
            t1 = time.perf_counter()
            for i, j in cells:
                float(np.einsum("ij,ij->", grams[comparison.refs_a[i].key], grams[comparison.refs_b[j].key]))
        pair = time.perf_counter() - t1
        comparison.close()
    return wall, pair


def process_seconds(path, *extra: str) -> float:
    """Wall seconds of ``repsim compare PATH -m cka -o OUT.h5 -q [extra]`` as its own process."""
    with tempfile.TemporaryDirectory() as tmp:
        args = repsim_args("compare", str(path), "-m", "cka", "-o", f"{tmp}/out.h5", "-q", *extra)
        t0 = time.perf_counter()
        done = subprocess.run(args, check=False, env=repsim_env(), capture_output=True, text=True)
        seconds = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"{' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return seconds


def median_of(path, opts: StatsOptions | None, repeats: int) -> tuple[float, float]:
    runs = [run_once(path, opts) for _ in range(repeats)]
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--process-repeats", type=int, default=7,
                    help="whole-process runs of plain and --jackknife each (0 skips them)")
    ap.add_argument("--permutations", type=int, default=1000)
    ap.add_argument("--permutation-repeats", type=int, default=1)
    ap.add_argument("--bootstrap-repeats", type=int, default=1)
    ap.add_argument("--shrink", type=int, default=1, help="divide n by this (a quick smoke run)")
    args = ap.parse_args()
    n, p, layers = 2000 // args.shrink, 512, 12
    path = write_store(WORK / f"stats_{layers}x{n}x{p}.h5", n, p, layers)
    print(f"workload: {layers} layers × n={n} × p={p} float32, -m cka, 78 cells; {cpu_note()}; "
          f"load average before: {os.getloadavg()}")  # fmt: skip
    # plain and --jackknife interleaved (the load drifts): run i of each side by side
    runs = [(run_once(path, None), run_once(path, StatsOptions(jackknife=True))) for _ in range(args.repeats)]
    plain, pair = statistics.median(r[0][0] for r in runs), statistics.median(r[0][1] for r in runs)
    jack = statistics.median(r[1][0] for r in runs)
    print(f"plain compare: {plain:.2f} s (pair stage alone: {pair * 1e3:.1f} ms)")
    print(f"--jackknife: {jack:.2f} s = {jack / plain:.2f}× plain (target ≤ 1.5×; runs: "
          f"{[round(r[0][0], 2) for r in runs]} plain, {[round(r[1][0], 2) for r in runs]} jackknife)")
    if args.process_repeats:
        procs = [(process_seconds(path), process_seconds(path, "--jackknife")) for _ in range(args.process_repeats)]
        p_plain, p_jack = statistics.median(p for p, _ in procs), statistics.median(j for _, j in procs)
        print(f"whole process: repsim compare {p_plain:.2f} s, with --jackknife {p_jack:.2f} s = "
              f"{p_jack / p_plain:.2f}× (runs: {[round(p, 2) for p, _ in procs]} plain, "
              f"{[round(j, 2) for _, j in procs]} jackknife)")  # fmt: skip
    # percentile and BCa runs interleaved: BCa adds the leave-one-out values
    boots = [(run_once(path, StatsOptions(bootstrap=200))[0], run_once(path, StatsOptions(bootstrap=200, ci_method="bca"))[0])
             for _ in range(args.bootstrap_repeats)]  # fmt: skip
    boot, bca = statistics.median(b for b, _ in boots), statistics.median(c for _, c in boots)
    extra = boot - plain
    print(f"--bootstrap 200: {boot:.2f} s; extra over plain {extra:.2f} s = "
          f"{extra / (200 * pair):.2f}× (200 × pair stage = {200 * pair:.2f} s; target ≤ 1.5×)")
    print(f"--bootstrap 200 --ci-method bca: {bca:.2f} s = {bca / boot:.2f}× the percentile run")
    gamma, _ = median_of(path, StatsOptions(null="gamma"), args.repeats)
    print(f"--null gamma: {gamma:.2f} s (extra over plain {gamma - plain:.2f} s)")
    if args.permutations == 0:  # skip the permutations (they take minutes)
        print(f"load average after: {os.getloadavg()}")
        return
    perm, _ = median_of(path, StatsOptions(permutations=args.permutations), args.permutation_repeats)
    scale = 1000 / args.permutations
    mark = "" if args.permutations == 1000 else f"* (measured with {args.permutations}, extra time scaled ×{scale:g})"
    perm_1000 = plain + (perm - plain) * scale
    print(f"--permutations 1000: {perm_1000:.1f} s{mark}; extra over plain {perm_1000 - plain:.1f} s")
    print(f"gamma speed-up over 1000 permutations (extra time): {(perm_1000 - plain) / max(gamma - plain, 1e-9):.0f}×"
          f" (whole run: {perm_1000 / gamma:.0f}×)")  # fmt: skip
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
