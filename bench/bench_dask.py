"""The Dask backend's overhead: `repsim compare --scheduler local:2` against the single process.

Standard workload: 12 layers × n=5000 × p=2048 float32 in an HDF5 store, all pairs of linear
CKA (`-m cka`). Measured side by side in one run, alternating, median of ``--repeat`` runs:

- single: `repsim compare STORE -m cka -o OUT.csv` (a fresh process; BLAS on every core);
- local:2: the same with `--scheduler local:2` (a fresh process that starts a 2-worker local
  cluster, 1 thread each, and stops it: the whole cost a user pays);
- tcp: the same with `--scheduler tcp://...` of a 2-worker cluster started beforehand (the
  graph's own overhead, without the cluster's start-up).

Also printed: the CPU seconds of each command with the processes it waited for (local:2: its
workers included; tcp://: the client only), steadier than wall time on a loaded machine.

Target (issue 13): local:2 ≤ 1.1× single. Values are checked equal (bitwise) in every run.
Prints the machine's load (`uptime`) before and after: the figures are only comparable within
one run.

Run: python bench/bench_dask.py [--n 5000 --p 2048 --layers 12 --repeat 3]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import time
from pathlib import Path

from _common import WORK, cpu_note, repsim_args, write_store


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def timed_run(args: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the command and the processes it waited for: with
    local:2 the workers; with tcp:// not the workers, which belong to this process's cluster)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(args, check=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--p", type=int, default=2048)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    from distributed import Client, LocalCluster

    store = write_store(WORK / f"dask_{args.layers}x{args.n}x{args.p}.h5", args.n, args.p, args.layers)
    outs = {name: WORK / f"dask_out_{name}.csv" for name in ("single", "local2", "tcp")}
    print(f"workload: {args.layers} layers × n={args.n} × p={args.p} float32, -m cka; {cpu_note()}")
    print(f"load before: {uptime()}")
    times: dict[str, list[float]] = {name: [] for name in outs}
    cpu: dict[str, list[float]] = {name: [] for name in outs}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as lc, \
            Client(lc):  # fmt: skip
        address = lc.scheduler_address
        commands = {
            "single": repsim_args("compare", str(store), "-m", "cka", "-q", "-o", str(outs["single"])),
            "local2": repsim_args("compare", str(store), "-m", "cka", "-q", "-o", str(outs["local2"]),
                                  "--scheduler", "local:2"),
            "tcp": repsim_args("compare", str(store), "-m", "cka", "-q", "-o", str(outs["tcp"]),
                               "--scheduler", address),
        }  # fmt: skip
        for _ in range(args.repeat):
            for name, command in commands.items():
                wall, seconds = timed_run(command)
                times[name].append(wall)
                cpu[name].append(seconds)
                if name != "single":
                    assert Path(outs[name]).read_bytes() == Path(outs["single"]).read_bytes(), name
    print(f"load after:  {uptime()}")
    single = statistics.median(times["single"])
    for name, label in (("single", "single process"), ("local2", "--scheduler local:2"),
                        ("tcp", "--scheduler tcp:// (cluster already up)")):  # fmt: skip
        med = statistics.median(times[name])
        runs = ", ".join(f"{t:.2f}" for t in times[name])
        print(f"{label:42s} median {med:6.2f} s  ({runs})  ratio {med / single:.2f}×; "
              f"CPU {statistics.median(cpu[name]):6.2f} s")
    print("values: the Dask outputs are byte-identical to the single process's CSV in every run")


if __name__ == "__main__":
    main()
