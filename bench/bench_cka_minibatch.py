"""Minibatch CKA beside exact linear CKA (and pytorch-cka's minibatch CKA when installed).

Workload: 6 layers × n=5000 × p=512 float32 in an HDF5 store (related layers with large per-unit
offsets, as bench_cka.py), all pairs. Prints, measured in one run:
- `compare_stores(store, None, ["cka", "cka:debiased=true"])` (exact linear CKA on the Gram
  engine), wall time;
- `compare_stores(store, None, ["cka_minibatch:batch_size=256"])`, wall time, and how far its
  values are from the exact ones (closest to debiased CKA: both average unbiased HSIC);
- `minibatch_cka_all_pairs` on the layers already in memory (compute only);
- pytorch-cka's minibatch CKA (`cka.compute_cka`, `pip install --no-deps pytorch-cka`), fed the
  same rows in the same batches (a DataLoader over repsim's seeded permutation, batch size 256,
  the 136-sample remainder kept by both): raw float32 rows as its users feed it, and rows centred
  first (float32, float64); its values against repsim's and the time ratio (its compute only,
  timed around `compute_cka`).

Run: make bench (or python bench/bench_cka_minibatch.py [--n 5000 --p 512 --layers 6 --batch 256]).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import TypeVar

import numpy as np
from _common import WORK, cpu_note, write_store

T = TypeVar("T")


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    """Wall time of one call and its result."""
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def pytorch_cka(
    layers: list[np.ndarray], order: np.ndarray, batch: int, dtype: str, centre: bool
) -> tuple[float, np.ndarray]:
    """pytorch-cka's minibatch CKA over the same batches: a module that replays stored rows.

    ``centre``: subtract the full-data column means first (HSIC_u ignores a common shift, so the
    estimate is the same; pytorch-cka's uncentred Gram loses digits to large means).
    """
    import torch
    from cka import compute_cka
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    class Rows(nn.Module):
        def __init__(self, data: np.ndarray) -> None:
            super().__init__()
            rows = data.astype(np.float64)
            if centre:
                rows -= rows.mean(axis=0)
            self.register_buffer("data", torch.from_numpy(rows.astype(dtype)))

        def forward(self, idx: torch.Tensor) -> torch.Tensor:
            return self.data[idx]

    class Replay(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = nn.ModuleList(Rows(x) for x in layers)

        def forward(self, idx: torch.Tensor) -> torch.Tensor:
            for layer in self.layers:
                layer(idx)
            return idx

    model = Replay()
    names = [f"layers.{i}" for i in range(len(layers))]
    loader = DataLoader(
        TensorDataset(torch.arange(len(order))), batch_size=batch, sampler=order.tolist()
    )
    t0 = time.perf_counter()
    [matrix] = compute_cka(model, model, loader, layers=names, device="cpu", progress=False)
    return time.perf_counter() - t0, matrix.double().numpy()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--p", type=int, default=512)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--batch", type=int, default=256)
    a = ap.parse_args()
    store = write_store(WORK / f"mb_{a.layers}x{a.n}x{a.p}.h5", a.n, a.p, a.layers)
    print(f"workload: {a.layers} layers x n={a.n} x p={a.p} float32, HDF5, batch size {a.batch} "
          f"({cpu_note()})")  # fmt: skip

    from repsim_cli.compare import compare_stores
    from repsim_cli.metrics.cka_minibatch import minibatch_cka_all_pairs, minibatches
    from repsim_cli.store import open_store

    spec = f"cka_minibatch:batch_size={a.batch}"
    t_exact, res = timed(lambda: compare_stores(store, None, ["cka", "cka:debiased=true"]))
    exact, debiased = res.metrics["cka"].value, res.metrics["cka:debiased=true"].value
    t_mb, res = timed(lambda: compare_stores(store, None, [spec]))
    mb = res.metrics[spec].value
    with open_store(store) as s:
        layers = [s.read_rows(name, 0, s.n_samples) for name in s.layers]
    t_mem, in_memory = timed(lambda: minibatch_cka_all_pairs(layers, a.batch, 0))
    upper = np.triu_indices(a.layers, 1)
    print(f"exact cka + cka:debiased=true (compare_stores): {t_exact:7.2f} s")
    print(f"cka_minibatch (compare_stores):                 {t_mb:7.2f} s   "
          f"ratio exact/minibatch {t_exact / t_mb:5.2f}x")  # fmt: skip
    print(f"cka_minibatch in memory (float64, compute only): {t_mem:6.2f} s")
    for label, ref in (("cka", exact), ("cka:debiased=true", debiased)):
        gap = np.abs(mb - ref)[upper]
        print(f"|cka_minibatch - {label}| over pairs: max {gap.max():.2e}, mean {gap.mean():.2e}")
    print(f"|store path (float32 GEMMs) - in-memory path (float64)|: max "
          f"{np.abs(mb - in_memory).max():.1e}")  # fmt: skip

    try:
        import cka  # noqa: F401  (pytorch-cka)
    except ImportError:
        print("pytorch-cka not installed: `pip install --no-deps pytorch-cka` to compare with it")
        return
    order = np.concatenate(minibatches(a.n, a.batch, 0))
    for dtype, centre in (("float32", False), ("float32", True), ("float64", True)):
        t_torch, theirs = pytorch_cka(layers, order, a.batch, dtype, centre)
        diff = np.abs(theirs - in_memory)[upper]
        state = "centred first" if centre else "raw rows, as users feed it"
        print(f"pytorch-cka minibatch, {dtype}, {state}: {t_torch:6.2f} s "
              f"(pytorch-cka / repsim compare_stores {t_torch / t_mb:4.2f}x); "
              f"|pytorch-cka - repsim| max {diff.max():.2e}")  # fmt: skip


if __name__ == "__main__":
    main()
