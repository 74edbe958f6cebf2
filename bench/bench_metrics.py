"""Every registered metric side by side: repsim against a per-pair numpy loop and the peer packages.

Two workloads, each two activation stores of 6 float32 layers (HDF5, made here under bench/_work/,
with the same arrays also saved as .npy), compared on all 36 layer pairs (store A's layers × store
B's layers):

- W1 "tall": n = 2000 samples × p = 256 units per layer;
- W2 "wide": n = 500 samples × p = 2048 units per layer.

For each metric and workload the table gives

- repsim: the whole-process wall time of ``repsim compare a.h5 b.h5 -m METRIC -o out.csv -q
  --threads 1`` (a fresh process: imports, reading, per-layer states, pairs, writing the CSV);
- "numpy loop": one Python process that loads the 12 layers from .npy and runs, pair by pair, a
  direct numpy/scipy implementation of the metric's definition written below (float64; nothing is
  shared between pairs: each pair factorises or ranks both of its layers itself);
- where installed, the reference package on the same per-pair loop: rsatoolbox (``rsa``) and dcor
  (``dcor``), both in repsim's test extras;
- ratio = repsim ÷ that comparator, and max |difference| of the 36 values from repsim's.

Every process runs with one BLAS thread (``--threads 1`` and the OMP/OpenBLAS/MKL environment
variables for repsim; threadpoolctl and the same variables here); each time is the median of
``--repeats`` runs. A slow comparator can be timed on its first ``--comparator-pairs`` pairs, or
on as many as fit in ``--comparator-budget`` seconds (judged from one probe pair), and its pair
loop scaled to 36 (marked ``*``; its max |difference| is then over those pairs only).

Run: python bench/bench_metrics.py [--metrics cka dcor ...] [--workloads tall wide]
     [--repeats 3] [--comparator-pairs 36] [--comparator-budget 30] [--shrink 1]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse
import csv
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from _common import WORK, cpu_note, related_layers, repsim_args, repsim_env

LAYERS = 6
WORKLOADS = {"tall": (2000, 256), "wide": (500, 2048)}
PairFn = Callable[[np.ndarray, np.ndarray], float]


# ---------------------------------------------------------------- workload
def make_workload(name: str, shrink: int = 1) -> tuple[list[Path], list[list[Path]]]:
    """Write (once) the two stores of a workload (n and p divided by ``shrink``) and their layers
    as .npy; return the paths."""
    from repsim_cli._atomic import atomic_path
    from repsim_cli.store import StoreWriter

    n, p = (d // shrink for d in WORKLOADS[name])
    stores, npys = [], []
    for side, seed in (("a", 1), ("b", 2)):
        store = WORK / f"metrics_{n}x{p}_{side}.h5"
        folder = WORK / f"metrics_{n}x{p}_{side}_npy"
        layers = list(related_layers(n, p, LAYERS, seed))
        files = [folder / f"{layer}.npy" for layer, _ in layers]
        if not store.exists():
            store.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(store) as tmp:
                writer = StoreWriter(tmp, np.arange(n))
                for layer, x in layers:
                    writer.add_layer(layer, (p,), np.float32)
                    writer.write_rows(layer, 0, x)
                writer.finalize()
        if not all(f.exists() for f in files):
            folder.mkdir(parents=True, exist_ok=True)
            for f, (_, x) in zip(files, layers, strict=True):
                np.save(f, x)
        stores.append(store)
        npys.append(files)
    return stores, npys


# ---------------------------------------------------------------- direct definitions (float64)
def centred(x: np.ndarray) -> np.ndarray:
    return x - x.mean(axis=0)


def center_gram(k: np.ndarray) -> np.ndarray:
    """HKH."""
    k = k - k.mean(axis=0, keepdims=True)
    return k - k.mean(axis=1, keepdims=True)


def hsic_u(k: np.ndarray, lm: np.ndarray) -> float:
    """Unbiased HSIC (Song et al. 2012, eq. 5) of symmetric kernels, diagonals zeroed."""
    m = k.shape[0]
    k, lm = k.copy(), lm.copy()
    np.fill_diagonal(k, 0.0)
    np.fill_diagonal(lm, 0.0)
    value = (np.sum(k * lm) + k.sum() * lm.sum() / ((m - 1) * (m - 2))
             - 2.0 * (k.sum(axis=0) @ lm.sum(axis=1)) / (m - 2))  # fmt: skip
    return float(value / (m * (m - 3)))


def loop_cka(x: np.ndarray, y: np.ndarray) -> float:
    xc, yc = centred(x), centred(y)
    return float(np.linalg.norm(xc.T @ yc) ** 2
                 / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc)))  # fmt: skip


def sq_distances(x: np.ndarray) -> np.ndarray:
    g = x @ x.T
    d = np.diag(g)
    return np.maximum(d[:, None] + d[None, :] - 2.0 * g, 0.0)


def loop_cka_rbf(x: np.ndarray, y: np.ndarray) -> float:
    grams = []
    for z in (x, y):
        d2 = sq_distances(z)
        grams.append(center_gram(np.exp(-d2 / (2.0 * np.median(d2)))))
    k, lm = grams
    return float(np.sum(k * lm) / (np.linalg.norm(k) * np.linalg.norm(lm)))


def loop_cka_minibatch(x: np.ndarray, y: np.ndarray, batch: int = 256) -> float:
    n = x.shape[0]
    order = np.random.default_rng(0).permutation(n)
    batches = [order[s:s + batch] for s in range(0, n, batch)]
    batches = [b for b in batches if b.size >= 4]
    kl = kk = ll = 0.0
    for b in batches:
        k, lm = x[b] @ x[b].T, y[b] @ y[b].T
        kl += hsic_u(k, lm)
        kk += hsic_u(k, k)
        ll += hsic_u(lm, lm)
    return kl / math.sqrt(kk * ll)


def upper(m: np.ndarray) -> np.ndarray:
    return m[np.triu_indices(m.shape[0], 1)]


def loop_rsa(x: np.ndarray, y: np.ndarray) -> float:
    """Correlation-distance RDMs (1 − Pearson r of the stimulus patterns), Spearman of the upper
    triangles."""
    ra, rb = upper(1.0 - np.corrcoef(x)), upper(1.0 - np.corrcoef(y))
    import scipy.stats  # imported where used: a comparator process imports what its loop needs

    return float(scipy.stats.spearmanr(ra, rb)[0])


def package_rsa(x: np.ndarray, y: np.ndarray) -> float:
    import rsatoolbox

    rdms = [rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(z), method="correlation") for z in (x, y)]
    return float(rsatoolbox.rdm.compare(rdms[0], rdms[1], method="spearman")[0, 0])


def loop_dcor(x: np.ndarray, y: np.ndarray) -> float:
    def centred_distances(z: np.ndarray) -> np.ndarray:
        return center_gram(np.sqrt(sq_distances(z)))

    a, b = centred_distances(x), centred_distances(y)
    v_ab, v_aa, v_bb = np.mean(a * b), np.mean(a * a), np.mean(b * b)
    return math.sqrt(max(v_ab, 0.0) / math.sqrt(v_aa * v_bb))


def package_dcor(x: np.ndarray, y: np.ndarray) -> float:
    import dcor

    return float(dcor.distance_correlation(x, y))


def knn_masks(x: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Cosine kernel (rows L2-normalised) and the mask of each row's k nearest other rows."""
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    kern = xn @ xn.T
    ranked = kern.copy()
    np.fill_diagonal(ranked, -np.inf)
    idx = np.argpartition(-ranked, k, axis=1)[:, :k]
    mask = np.zeros_like(kern)
    np.put_along_axis(mask, idx, 1.0, axis=1)
    return kern, mask


def loop_mutual_knn(x: np.ndarray, y: np.ndarray) -> float:
    (_, ma), (_, mb) = knn_masks(x), knn_masks(y)
    return float(np.sum(ma * mb) / (x.shape[0] * 10))


def masked_hsic_sym(a: np.ndarray, b: np.ndarray) -> float:
    """HSIC_u of asymmetric masked kernels, 1ᵀAB1 as the mean of both orders."""
    m = a.shape[0]
    cross = 0.5 * (a.sum(axis=0) @ b.sum(axis=1) + b.sum(axis=0) @ a.sum(axis=1))
    value = np.sum(a * b.T) + a.sum() * b.sum() / ((m - 1) * (m - 2)) - 2.0 * cross / (m - 2)
    return float(value / (m * (m - 3)))


def loop_cknna(x: np.ndarray, y: np.ndarray) -> float:
    (ka, ma), (kb, mb) = knn_masks(x), knn_masks(y)
    mask = ma * mb
    s_ab = masked_hsic_sym(mask * ka, mask * kb)
    return s_ab / math.sqrt(masked_hsic_sym(ma * ka, ma * ka) * masked_hsic_sym(mb * kb, mb * kb))


def basis(x: np.ndarray, rtol: float = 1e-10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thin SVD of the centred layer, truncated at variance ≤ rtol × the largest: U, s, Vᵀ."""
    u, s, vt = np.linalg.svd(centred(x), full_matrices=False)
    keep = s**2 > rtol * s[0] ** 2
    return u[:, keep], s[keep], vt[keep]


def loop_cca(x: np.ndarray, y: np.ndarray) -> float:
    ua, ub = basis(x)[0], basis(y)[0]
    rho = np.linalg.svd(ua.T @ ub, compute_uv=False)
    return float(np.mean(np.clip(rho, 0.0, 1.0)[: min(ua.shape[1], ub.shape[1])]))


def loop_svcca(x: np.ndarray, y: np.ndarray, keep: float = 0.99) -> float:
    bases = []
    for z in (x, y):
        u, s, _ = basis(z)
        k = int(np.searchsorted(np.cumsum(s**2) / np.sum(s**2), keep, side="right")) + 1
        bases.append(u[:, :k])
    rho = np.linalg.svd(bases[0].T @ bases[1], compute_uv=False)
    return float(np.mean(np.clip(rho, 0.0, 1.0)))


def loop_pwcca(x: np.ndarray, y: np.ndarray) -> float:
    """google/svcca's compute_pwcca weights from layer x: canonical directions in unit space with
    unit i's mean added, orthonormalised; weights Σ_j |⟨P_i, x_j⟩| over the raw units."""
    ua, _, vta = basis(x)
    ub = basis(y)[0]
    left, rho, _ = np.linalg.svd(ua.T @ ub, full_matrices=False)
    k = min(ua.shape[1], ub.shape[1])
    left, rho = left[:, :k], np.clip(rho[:k], 0.0, 1.0)
    unit_coef = vta.T @ left  # (p, k): u_i in unit space, not whitened
    top = np.argmax(np.abs(unit_coef), axis=0)
    unit_coef *= np.where(unit_coef[top, np.arange(k)] < 0, -1.0, 1.0)
    h = centred(x) @ unit_coef + x.mean(axis=0)[:k]
    q = np.linalg.qr(h)[0]
    weights = np.sum(np.abs(q.T @ x), axis=1)
    return float(weights @ rho / weights.sum())


def nuclear(m: np.ndarray) -> float:
    return float(np.linalg.svd(m, compute_uv=False).sum())


def loop_procrustes(x: np.ndarray, y: np.ndarray) -> float:
    xc, yc = centred(x), centred(y)
    xc /= np.linalg.norm(xc)
    yc /= np.linalg.norm(yc)
    return float(np.clip(2.0 - 2.0 * nuclear(xc.T @ yc), 0.0, 2.0))


def loop_shape(x: np.ndarray, y: np.ndarray) -> float:
    xc, yc = centred(x), centred(y)
    cos = nuclear(xc.T @ yc) / (np.linalg.norm(xc) * np.linalg.norm(yc))
    return float(np.arccos(np.clip(cos, 0.0, 1.0)))


def loop_linreg(x: np.ndarray, y: np.ndarray) -> float:
    xc, yc = centred(x), centred(y)
    import scipy.linalg

    w = scipy.linalg.lstsq(xc, yc, lapack_driver="gelsd")[0]
    return float(1.0 - np.sum((yc - xc @ w) ** 2) / np.sum(yc**2))


def readout_eigenvalues(x: np.ndarray, y: np.ndarray, b: float = 0.01) -> np.ndarray:
    """Generalised eigenvalues of (Σ_y, Σ_x), Σ = I + K/(b·tr K), K = XXᵀ; the unit ones dropped."""
    sig = []
    for z in (x, y):
        k = z @ z.T
        s = k / (b * np.trace(k))
        s[np.diag_indices_from(s)] += 1.0
        sig.append(s)
    import scipy.linalg

    lam = scipy.linalg.eigh(sig[1], sig[0], eigvals_only=True)
    return lam[np.abs(lam - 1.0) > 1e-11]


def loop_bayes_kl(x: np.ndarray, y: np.ndarray) -> float:
    lam = readout_eigenvalues(x, y)
    return float(0.25 * np.sum(lam + 1.0 / lam - 2.0))


def loop_bayes_hellinger(x: np.ndarray, y: np.ndarray) -> float:
    lam = readout_eigenvalues(x, y)
    d_b = 0.5 * np.sum(np.log((1.0 + lam) / 2.0) - 0.5 * np.log(lam))
    return math.sqrt(-math.expm1(-d_b))


def imhof(weights: np.ndarray, t: float) -> float:
    """Pr[Σ w z² > t] by Imhof's (1961) integral, one scipy quad over [0, ∞)."""
    from scipy.integrate import quad

    def f(u: float) -> float:
        if u == 0.0:
            return 0.5 * (weights.sum() - t)
        theta = 0.5 * np.sum(np.arctan(weights * u)) - 0.5 * t * u
        log_rho = 0.25 * np.sum(np.log1p((weights * u) ** 2))
        return math.sin(theta) * math.exp(-log_rho - math.log(u))

    return 0.5 + quad(f, 0.0, np.inf, limit=2000, epsabs=1e-11)[0] / math.pi


def loop_bayes_tv(x: np.ndarray, y: np.ndarray) -> float:
    lam = readout_eigenvalues(x, y)
    # A = {p_x > p_y}, t = −Σ log λ: under P_x (x = z) A ⇔ Σ(1/λ − 1)z² > t; under P_y
    # (x = √λ·z) A ⇔ Σ(1 − λ)z² > t; TV = P_x(A) − P_y(A).
    t = -float(np.sum(np.log(lam)))
    p_x = imhof(1.0 / lam - 1.0, t)
    p_y = imhof(1.0 - lam, t)
    return float(np.clip(p_x - p_y, 0.0, 1.0))


def loop_bayes_js(x: np.ndarray, y: np.ndarray, samples: int = 100_000, chunk: int = 10_000) -> float:
    """JS in bits by Monte Carlo in the eigenbasis (seeded), √ at the end."""
    lam = readout_eigenvalues(x, y)
    half_logdet = 0.5 * np.sum(np.log(lam))
    rng = np.random.default_rng(0)
    total = 0.0
    for _ in range(samples // chunk):
        z2 = rng.standard_normal((lam.size, chunk)) ** 2
        r_x = 0.5 * ((1.0 / lam - 1.0) @ z2) + half_logdet  # log p_x/p_y at x ~ P_x
        r_y = 0.5 * ((lam - 1.0) @ z2) - half_logdet  # log p_y/p_x at y ~ P_y
        total += float(np.sum(np.logaddexp(0.0, -r_x) + np.logaddexp(0.0, -r_y)))
    js_nats = math.log(2.0) - 0.5 * total / samples
    return math.sqrt(min(max(js_nats / math.log(2.0), 0.0), 1.0))


LOOPS: dict[str, PairFn] = {
    name.removeprefix("loop_"): fn for name, fn in list(globals().items()) if name.startswith("loop_")
}
PACKAGES: dict[str, tuple[str, PairFn]] = {"rsa": ("rsatoolbox", package_rsa),
                                           "dcor": ("dcor", package_dcor)}  # fmt: skip


# ---------------------------------------------------------------- timing
WARNINGS: dict[str, None] = {}  # repsim's warnings (stderr), printed once after the table


def run_repsim(metric: str, stores: list[Path], out: Path) -> float:
    args = repsim_args("compare", str(stores[0]), str(stores[1]), "-m", metric, "-o", str(out),
                       "-q", "--threads", "1")  # fmt: skip
    t0 = time.perf_counter()
    done = subprocess.run(args, check=False, env=repsim_env(), stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"{' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    for line in done.stderr.splitlines():
        WARNINGS[line] = None
    return seconds


def read_csv(path: Path) -> np.ndarray:
    values = np.full((LAYERS, LAYERS), np.nan)
    with path.open() as fh:
        for row in csv.DictReader(fh):
            i, j = int(row["layer_a"].removeprefix("layer")), int(row["layer_b"].removeprefix("layer"))
            values[i, j] = float(row["value"])
    return values


def run_loop(fn: PairFn, npys: list[list[Path]], pairs: int) -> tuple[float, np.ndarray]:
    """Load the 12 layers from .npy and run ``fn`` on the first ``pairs`` pairs (row-major).
    Returns the seconds for all 36 pairs (the pair loop scaled by 36/pairs, the loading not)
    and the values (NaN where not run)."""
    t0 = time.perf_counter()
    xs = [np.load(f).astype(np.float64) for f in npys[0]]
    ys = [np.load(f).astype(np.float64) for f in npys[1]]
    t1 = time.perf_counter()
    values = np.full((LAYERS, LAYERS), np.nan)
    for k in range(pairs):
        i, j = divmod(k, LAYERS)
        values[i, j] = fn(xs[i], ys[j])
    t2 = time.perf_counter()
    return (t1 - t0) + (t2 - t1) * (LAYERS * LAYERS / pairs), values


def comparator_fn(metric: str, label: str) -> PairFn:
    return LOOPS[metric] if label == "numpy loop" else PACKAGES[metric][1]


def loop_worker(metric: str, workload: str, shrink: int, count: int, label: str) -> None:
    """``--_loop``: load the 12 layers and run one comparator on the first ``count`` (≥ 2) pairs
    in this (fresh) process; print the seconds of the pairs after the first (the first also pays
    the loop's own imports, e.g. scipy) and the values as JSON (for :func:`run_loop_process`)."""
    import json

    n, p = (d // shrink for d in WORKLOADS[workload])
    xs, ys = ([np.load(WORK / f"metrics_{n}x{p}_{side}_npy" / f"layer{k:02d}.npy").astype(np.float64)
               for k in range(LAYERS)] for side in ("a", "b"))  # fmt: skip
    fn = comparator_fn(metric, label)
    values = np.full((LAYERS, LAYERS), np.nan)
    values[0, 0] = fn(xs[0], ys[0])
    t0 = time.perf_counter()
    for k in range(1, count):
        i, j = divmod(k, LAYERS)
        values[i, j] = fn(xs[i], ys[j])
    print(json.dumps({"rest": time.perf_counter() - t0, "values": values.tolist()}))


def run_loop_process(metric: str, workload: str, shrink: int, count: int, label: str) -> tuple[float, np.ndarray]:
    """The comparator as a whole process, as repsim is timed: interpreter start, imports, loading
    the .npy files, the first pair and pairs 2…``count``, those scaled to the other 35."""
    import json

    args = [sys.executable, str(Path(__file__).resolve()), "--_loop", metric, workload, str(shrink), str(count), label]
    t0 = time.perf_counter()
    done = subprocess.run(args, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    out = json.loads(done.stdout.strip().splitlines()[-1])
    values = np.array(out["values"], dtype=np.float64)  # json writes and reads NaN
    return wall + out["rest"] * ((LAYERS * LAYERS - 1) / (count - 1) - 1.0), values


def comparator_pairs(fn: PairFn, npys: list[list[Path]], limit: int, budget: float) -> int:
    """How many pairs to time: ``limit``, fewer when one pair's time × ``limit`` exceeds
    ``budget`` seconds (at least 2)."""
    x, y = np.load(npys[0][0]).astype(np.float64), np.load(npys[1][0]).astype(np.float64)
    t0 = time.perf_counter()
    fn(x, y)
    one = time.perf_counter() - t0
    return limit if one * limit <= budget else max(2, min(limit, int(budget / one)))


@dataclass
class Row:
    metric: str
    workload: str
    comparator: str
    repsim: float
    other: float
    scaled: bool
    diff: float

    def line(self) -> str:
        mark = "*" if self.scaled else " "
        return (f"| {self.metric:<16}| {self.workload:<5}| {self.comparator:<11}| {self.repsim:8.2f} "
                f"| {self.other:8.2f}{mark}| {self.repsim / self.other:6.2f} | {self.diff:9.1e} |")


HEADER = ("| metric          | load | comparator | repsim s | other s  | ratio  | max |diff| |\n"
          "|-----------------|------|------------|----------|----------|--------|-----------|")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--_loop":
        metric, workload, shrink, count, label = sys.argv[2:7]
        loop_worker(metric, workload, int(shrink), int(count), label)
        return
    from threadpoolctl import threadpool_limits

    from repsim_cli.metrics import REGISTRY

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--metrics", nargs="+", default=sorted(LOOPS), choices=sorted(LOOPS))
    ap.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--comparator-pairs", type=int, default=LAYERS * LAYERS,
                    help="time the comparators on the first N pairs and scale to 36")
    ap.add_argument("--comparator-budget", type=float, default=math.inf,
                    help="seconds: time fewer pairs when one pair × N would take longer")
    ap.add_argument("--shrink", type=int, default=1,
                    help="divide n and p by this (smoke tests; the table uses 1)")
    ap.add_argument("--whole-process", action="store_true",
                    help="time each comparator as its own process (start-up, imports, loading, "
                         "pairs), as repsim is timed, instead of inside this process after the "
                         "metrics before it")
    a = ap.parse_args()
    missing = sorted(set(REGISTRY) - set(LOOPS))
    if missing:
        sys.exit(f"bench_metrics.py has no direct implementation of: {', '.join(missing)}")
    pairs = max(1, min(a.comparator_pairs, LAYERS * LAYERS))
    load = os.getloadavg()
    print(f"{LAYERS}+{LAYERS} float32 layers, 36 pairs, 1 BLAS thread, median of {a.repeats} "
          f"({cpu_note()}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f})", flush=True)
    print(HEADER, flush=True)
    rows = []
    with threadpool_limits(limits=1):
        for workload in a.workloads:
            stores, npys = make_workload(workload, a.shrink)
            for metric in a.metrics:
                out = WORK / f"metrics_{workload}_{metric}.csv"
                t_repsim = statistics.median(run_repsim(metric, stores, out) for _ in range(a.repeats))
                ours = read_csv(out)
                comparators = [("numpy loop", LOOPS[metric])]
                if metric in PACKAGES:
                    try:
                        __import__(PACKAGES[metric][0])
                        comparators.append(PACKAGES[metric])
                    except ImportError:
                        pass
                for label, fn in comparators:
                    count = comparator_pairs(fn, npys, pairs, a.comparator_budget)
                    if a.whole_process:
                        runs = [run_loop_process(metric, workload, a.shrink, count, label) for _ in range(a.repeats)]
                    else:
                        runs = [run_loop(fn, npys, count) for _ in range(a.repeats)]
                    seconds = statistics.median(t for t, _ in runs)
                    theirs = runs[-1][1]
                    done = ~np.isnan(theirs)
                    diff = float(np.max(np.abs(ours[done] - theirs[done])))
                    row = Row(metric, workload, label, t_repsim, seconds, count < 36, diff)
                    rows.append(row)
                    print(row.line(), flush=True)
    for line in WARNINGS:
        print(f"repsim: {line}")
    load = os.getloadavg()
    print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
