"""Scale benchmarks (issue: exact results on stores far larger than memory).

1. Feature side: n=50000, p=4096, 4 layers float32 HDF5 (3.3 GB), `repsim compare -m cka --memory 4GiB`,
   against its compute floor: the bare SYRK accumulation [X1..X4]ᵀ[X1..X4] over the same data, already in
   memory, in the same row pieces. Prints wall times, the ratio (target <= 1.3) and peak RSS.
2. Sample side under a small budget: n=30000, 6 layers of p=8192 float32 (5.9 GB), `--memory 2GiB`: the
   run tiles the n×n Grams (none is ever held), so it completes with peak RSS <= budget + overhead; its
   values are checked against a float64 reference on one pair (layers 0 and 1).

Run: python bench/bench_scale.py [feature] [sample]   (about 10 minutes and 10 GB of disk for both)
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
from _common import WORK, cpu_note, repsim_args, run_command, write_store

GiB = 1024**3


def overhead_gib(tmp_csv: str) -> float:
    small = write_store(WORK / "overhead_4x200x512.h5", 200, 512, 4)
    _, rss = run_command(repsim_args("compare", str(small), "-m", "cka", "-o", tmp_csv, "-q"))
    return rss


def feature_side() -> None:
    n, p, layers = 50_000, 4096, 4
    store = write_store(WORK / f"feat_{layers}x{n}x{p}.h5", n, p, layers)
    out = WORK / "feat_cka.csv"
    plan = json.loads(subprocess.run(
        repsim_args("compare", str(store), "-m", "cka", "--memory", "4GiB", "-o", str(out), "--dry-run",
                    "--json"), capture_output=True, text=True, check=True).stdout)
    wall, rss = run_command(repsim_args("compare", str(store), "-m", "cka", "--memory", "4GiB",
                                        "-o", str(out), "-q"))
    from repsim_cli.store import open_store

    rows = plan["block_rows"]
    with open_store(store) as s:
        pieces = [np.concatenate([s.read_rows(name, i, min(i + rows, n)) for name in s.layers], axis=1)
                  for i in range(0, n, rows)]
    width = pieces[0].shape[1]
    acc = np.zeros((width, width))
    t0 = time.perf_counter()
    for piece in pieces:
        np.add(acc, piece.T @ piece, out=acc)
    floor = time.perf_counter() - t0
    del pieces, acc
    print(f"feature side: {layers} layers x n={n} x p={p} float32 ({cpu_note()}), plan side={plan['side']}, "
          f"block rows={rows}, estimated peak {plan['peak_bytes'] / GiB:.2f} GiB")
    print(f"  repsim compare -m cka --memory 4GiB: {wall:7.1f} s   peak RSS {rss:.2f} GiB")
    print(f"  compute floor (SYRK accumulation, in memory): {floor:7.1f} s")
    print(f"  ratio: {wall / floor:.2f}x (target <= 1.3)")


def sample_side() -> None:
    n, p, layers = 30_000, 8192, 6
    store = write_store(WORK / f"samp_{layers}x{n}x{p}.h5", n, p, layers, seed=1)
    out = WORK / "samp_cka.csv"
    overhead = overhead_gib(str(WORK / "overhead.csv"))
    args = ("compare", str(store), "-m", "cka", "--side", "sample", "--memory", "2GiB", "-o", str(out), "-q")
    plan = json.loads(subprocess.run(repsim_args(*args[:-1], "--dry-run", "--json"), capture_output=True,
                                     text=True, check=True).stdout)
    wall, rss = run_command(repsim_args(*args))
    values = np.loadtxt(out, delimiter=",", skiprows=1, usecols=3).reshape(layers, layers)
    from repsim_cli.metrics.cka import linear_cka
    from repsim_cli.store import open_store

    checks = []
    with open_store(store) as s:
        for a, b in ((0, 1),):
            xa = s.read_rows(s.layers[a], 0, n).astype(np.float64)
            xb = s.read_rows(s.layers[b], 0, n).astype(np.float64)
            checks.append((a, b, linear_cka(xa, xb), values[a, b]))
            del xa, xb
    print(f"sample side, tiled: {layers} layers x n={n} x p={p} float32, --memory 2GiB "
          f"(mode={plan['mode']}, tile rows={plan['tile_rows']}, estimated peak "
          f"{plan['peak_bytes'] / GiB:.2f} GiB)")
    print(f"  repsim compare -m cka: {wall:7.1f} s   peak RSS {rss:.2f} GiB = budget 2 GiB + "
          f"{rss - 2:.2f} GiB (interpreter/library overhead measured alone: {overhead:.2f} GiB)")
    for a, b, ref, got in checks:
        print(f"  CKA(layer{a}, layer{b}): repsim {got:.10f}, float64 reference {ref:.10f}, "
              f"|diff| {abs(got - ref):.1e}")


def main(argv: list[str]) -> None:
    todo = argv or ["feature", "sample"]
    if "feature" in todo:
        feature_side()
    if "sample" in todo:
        sample_side()


if __name__ == "__main__":
    main(sys.argv[1:])
