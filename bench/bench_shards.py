"""Shards that divide the expensive stage: each shard's wall time and the shards' summed CPU time
against one single run, on three workloads (stores made by this script in bench/_work/, float32):

(a) tiles, sample side: L layers × n × p (standard: 12 × 5000 × 2048), `-m cka`; a single run,
    then N shards (default 4) run one after another, each `compare --shard K/N -o PART` writing
    partial sums, then `repsim merge`. Targets: each shard's wall ≤ 0.35× the single run's, the
    shards' summed CPU (user + sys) ≤ 1.25× the single run's.
(b) tiles, feature side: n × L × p (standard: 200,000 × 4 × 512), `-m cka --side feature`, 8
    shards. Target: each shard's wall ≤ 0.2× the single run's.
(c) two stages: L × n × p (standard: 16 × 4000 × 512), `-m cca -m procrustes`, 4 shards of
    `--stage layers` then 4 of `--stage pairs` (a fresh state directory per repeat). Target: each
    shard's two stages together ≤ 0.35× the single run.

Every command is a fresh process (its interpreter start-up and imports included, as on a
cluster), timed by /usr/bin/time; medians over --repeats. The merged values are checked against
the single run's (largest relative difference printed). Print `uptime` with the figures: the
ratios mean little on a loaded machine.

Usage: python bench/bench_shards.py [--only a b c] [--repeats 3]
         [--a-layers 12 --a-n 5000 --a-p 2048 --a-shards 4]
         [--b-n 200000 --b-layers 4 --b-p 512 --b-shards 8]
         [--c-layers 16 --c-n 4000 --c-p 512 --c-shards 4]
Smoke test: python bench/bench_shards.py --repeats 1 --a-n 400 --a-p 64 --b-n 4000 --b-p 32 \
    --c-n 300 --c-p 32
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import WORK, cpu_note, repsim_args, write_store


def timed_command(args: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds = user + sys) of one command in a fresh process."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as out:
        subprocess.run(["/usr/bin/time", "-f", "%e %U %S", "-o", out.name, *args], check=True)
        wall, user, system = map(float, out.read().strip().splitlines()[-1].split())
    return wall, user + system


def values(path: Path) -> dict[tuple[str, ...], float]:
    with path.open() as fh:
        rows = list(csv.reader(fh))[1:]
    return {tuple(r[:3]): float(r[3]) for r in rows}


def max_rel_diff(a: Path, b: Path) -> float:
    va, vb = values(a), values(b)
    assert va.keys() == vb.keys()
    return max(abs(va[k] - vb[k]) / max(abs(vb[k]), 1e-300) for k in va)


def run_workload(name: str, store: Path, metrics: list[str], shards: int, repeats: int,
                 two_stage: bool, extra: list[str]) -> dict[str, float]:  # fmt: skip
    work = WORK / f"shards_{name}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    base = [str(store), *[a for m in metrics for a in ("-m", m)], "-q", *extra]
    singles, shard_walls, shard_cpus, single_cpus, merges, per_cpu = [], [], [], [], [], []
    for _ in range(repeats):
        wall, cpu = timed_command(repsim_args("compare", *base, "-o", str(work / "single.csv")))
        singles.append(wall)
        single_cpus.append(cpu)
        states = work / "states"
        shutil.rmtree(states, ignore_errors=True)
        walls, cpus = [0.0] * shards, [0.0] * shards
        if two_stage:  # every shard's layers stage, then every shard's pairs stage
            for k in range(1, shards + 1):
                w, c = timed_command(repsim_args("compare", *base, "--stage", "layers", "--shard",
                                                 f"{k}/{shards}", "--state-dir", str(states)))  # fmt: skip
                walls[k - 1] += w
                cpus[k - 1] += c
        stage = ["--stage", "pairs", "--state-dir", str(states)] if two_stage else []
        for k in range(1, shards + 1):
            w, c = timed_command(repsim_args("compare", *base, *stage, "--shard", f"{k}/{shards}",
                                             "-o", str(work / f"part{k}.h5")))  # fmt: skip
            walls[k - 1] += w
            cpus[k - 1] += c
        shard_walls.append(walls)
        shard_cpus.append(sum(cpus))
        per_cpu.append(cpus)
        wall, _ = timed_command(repsim_args("merge", *(str(work / f"part{k}.h5") for k in range(1, shards + 1)),
                                            "-o", str(work / "merged.csv")))  # fmt: skip
        merges.append(wall)
    single = statistics.median(singles)
    per_shard = [statistics.median(w[k] for w in shard_walls) for k in range(shards)]
    out = {
        "single_wall": single, "single_cpu": statistics.median(single_cpus),
        "shard_wall_max": max(per_shard), "shard_wall_min": min(per_shard),
        "shard_cpu_sum": statistics.median(shard_cpus), "merge_wall": statistics.median(merges),
        "max_rel_diff": max_rel_diff(work / "merged.csv", work / "single.csv"),
    }  # fmt: skip
    print(f"  single run: {single:.2f} s wall, {out['single_cpu']:.2f} s CPU (each repeat, wall: "
          + ", ".join(f"{w:.2f}" for w in singles) + ")")
    print("  shards (wall, s): " + ", ".join(f"{w:.2f}" for w in per_shard)
          + f"  -> largest {max(per_shard) / single:.3f}x the single run")  # fmt: skip
    print(f"  shards' summed CPU: {out['shard_cpu_sum']:.2f} s -> {out['shard_cpu_sum'] / out['single_cpu']:.3f}x"
          " (each shard's CPU, s: " + ", ".join(f"{statistics.median(c[k] for c in per_cpu):.2f}"
                                               for k in range(shards)) + ")")  # fmt: skip
    print(f"  merge: {out['merge_wall']:.2f} s; merged vs single: max relative difference {out['max_rel_diff']:.2e}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", default=["a", "b", "c"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--a-layers", type=int, default=12)
    ap.add_argument("--a-n", type=int, default=5000)
    ap.add_argument("--a-p", type=int, default=2048)
    ap.add_argument("--a-shards", type=int, default=4)
    ap.add_argument("--b-n", type=int, default=200_000)
    ap.add_argument("--b-layers", type=int, default=4)
    ap.add_argument("--b-p", type=int, default=512)
    ap.add_argument("--b-shards", type=int, default=8)
    ap.add_argument("--c-layers", type=int, default=16)
    ap.add_argument("--c-n", type=int, default=4000)
    ap.add_argument("--c-p", type=int, default=512)
    ap.add_argument("--c-shards", type=int, default=4)
    args = ap.parse_args()
    print(f"bench_shards: {cpu_note()}; load: {os.getloadavg()}; python {sys.version.split()[0]}")
    if "a" in args.only:
        store = write_store(WORK / f"shards_a_{args.a_layers}x{args.a_n}x{args.a_p}.h5", args.a_n, args.a_p, args.a_layers)
        print(f"(a) tiles, sample side: {args.a_layers} layers x n={args.a_n} x p={args.a_p}, -m cka, "
              f"{args.a_shards} shards (targets: each <= 0.35x, summed CPU <= 1.25x)")  # fmt: skip
        run_workload("a", store, ["cka"], args.a_shards, args.repeats, False, ["--side", "sample"])
    if "b" in args.only:
        store = write_store(WORK / f"shards_b_{args.b_layers}x{args.b_n}x{args.b_p}.h5", args.b_n, args.b_p, args.b_layers)
        print(f"(b) tiles, feature side: n={args.b_n} x {args.b_layers} layers x p={args.b_p}, -m cka, "
              f"{args.b_shards} shards (target: each <= 0.2x)")  # fmt: skip
        run_workload("b", store, ["cka"], args.b_shards, args.repeats, False, ["--side", "feature"])
    if "c" in args.only:
        store = write_store(WORK / f"shards_c_{args.c_layers}x{args.c_n}x{args.c_p}.h5", args.c_n, args.c_p, args.c_layers)
        print(f"(c) two stages: {args.c_layers} layers x n={args.c_n} x p={args.c_p}, -m cca -m procrustes, "
              f"{args.c_shards} shards per stage (target: each shard's two stages <= 0.35x)")  # fmt: skip
        run_workload("c", store, ["cca", "procrustes"], args.c_shards, args.repeats, True, [])
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
