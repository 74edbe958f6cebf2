"""Standard workload: 12 layers × n=5000 × p=2048 float32 in an HDF5 store, all pairs of linear CKA.

Prints, measured in one run:
- `repsim compare STORE -m cka` wall time (a fresh process: imports, reading, Grams, CKA, CSV) and peak RSS;
- the bare-numpy floor: the 12 centred Grams by SYRK (float32, as repsim's default precision) into a
  float64 stack, plus all inner products as one GEMM, from arrays already in memory;
- their ratio (target ≤ 1.25);
- the per-pair reference (Kornblith's colab: float64 Gram + centring of both layers for every pair),
  timed on a few pairs and scaled to the 144 cells of the 12 × 12 matrix.

Run: make bench (or python bench/bench_cka.py [--n 5000 --p 2048 --layers 12]).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import WORK, cpu_note, repsim_args, run_command, write_store


def floor_seconds(layers: list[np.ndarray]) -> float:
    n = layers[0].shape[0]
    t0 = time.perf_counter()
    grams = np.empty((len(layers), n, n))
    for i, x in enumerate(layers):
        xc = x - x.mean(axis=0, dtype=np.float64).astype(np.float32)
        grams[i] = xc @ xc.T
    flat = grams.reshape(len(layers), -1)
    inner = flat @ flat.T
    d = np.sqrt(np.diag(inner))
    _ = inner / np.outer(d, d)
    return time.perf_counter() - t0


def colab_pair(x: np.ndarray, y: np.ndarray) -> float:
    def center(k: np.ndarray) -> np.ndarray:
        means = k.mean(axis=0)
        means -= means.mean() / 2
        return k - means[:, None] - means[None, :]

    kx = center(x.astype(np.float64) @ x.T.astype(np.float64))
    ky = center(y.astype(np.float64) @ y.T.astype(np.float64))
    return float(np.sum(kx * ky) / (np.linalg.norm(kx) * np.linalg.norm(ky)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--p", type=int, default=2048)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--pairs", type=int, default=3, help="per-pair reference: pairs to time")
    a = ap.parse_args()
    store = write_store(WORK / f"std_{a.layers}x{a.n}x{a.p}.h5", a.n, a.p, a.layers)
    out = WORK / "std_cka.csv"
    print(f"workload: {a.layers} layers x n={a.n} x p={a.p} float32, HDF5 ({cpu_note()})")

    wall, rss = run_command(repsim_args("compare", str(store), "-m", "cka", "-o", str(out), "-q"))

    from repsim_cli.store import open_store

    with open_store(store) as s:
        layers = [s.read_rows(name, 0, s.n_samples) for name in s.layers]
    floor = min(floor_seconds(layers) for _ in range(2))
    t0 = time.perf_counter()
    for i in range(a.pairs):
        colab_pair(layers[i], layers[i + 1])
    per_pair = (time.perf_counter() - t0) / a.pairs
    n_cells = a.layers * a.layers
    print(f"repsim compare -m cka (fresh process): {wall:8.2f} s   peak RSS {rss:.2f} GiB")
    print(f"bare-numpy floor (SYRK Grams + 1 GEMM): {floor:8.2f} s")
    print(f"ratio repsim / floor:                   {wall / floor:8.2f}x   (target <= 1.25)")
    print(f"per-pair reference (colab), {n_cells} cells: {per_pair * n_cells:8.1f} s "
          f"({per_pair:.2f} s/pair on {a.pairs} pairs) -> repsim is {per_pair * n_cells / wall:.0f}x faster")


if __name__ == "__main__":
    main()
