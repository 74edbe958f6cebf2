"""Shards that divide the expensive stage: partial sums over tiles of examples.

For the inner-product metrics (linear CKA, biased and debiased) every cell is a function of sums
over examples or example pairs (Kornblith et al. 2019, ICML, eq. 3):

* sample side: h_ab = ⟨Kc_a, Kc_b⟩ = Σ_{I,J} ⟨Kc_a[I, J], Kc_b[I, J]⟩ over pairs of row blocks
  (I, J) of the centred Grams (J ≥ I, weight 2 off the diagonal); the row norms q = diag(Kc) come
  from the diagonal tiles, and debiasing needs only Σ_i q_a,i q_b,i and Σ_i q_a,i;
* feature side: h_ab = ‖C_ab‖²_F with C = [X₁…X_L]ᵀ[X₁…X_L] centred, itself a sum over row blocks.

Shard K of N takes a contiguous run of the tiles in :func:`tile_order` (sample side) or of the
rows (feature side), balanced by flops, and writes the *partial sums* of every cell (cross and self terms) to a
partial file. Every shard centres with the same exact float64 column means (the store's stats or a
cheap pass). :func:`merge_partials` adds the partials in shard order and finalises; merged values
equal a single run to round-off (about 1e-15 relative in float64 GEMMs; float32 GEMMs round each
tile's products differently from a whole-Gram SYRK, about 1e-7).
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._atomic import atomic_path
from .engine.gram import add_block_products, block_columns
from .errors import ResultsError, StoreError
from .metrics import MetricSpec
from .results import MetricResult, Results
from .schedule import Shard
from .store._container import backend_for, open_container

Float64 = NDArray[np.float64]
FORMAT = "partial_sums"
FORMAT_VERSION = 2  # 2: tiles in tile_order (halves), diagonal tiles costed as SYRKs
# Metrics whose cells finalise from partial sums: linear CKA from (inner, qq, qsum); RBF CKA from
# the sums of its centred kernels' tile products, given each layer's summary (below).
TILED_METRICS = ("cka", "cka_rbf")
# Tiles per shard at least (more: finer balance, smaller and slower GEMMs; 2.5 puts N = 4
# shards on 4 row blocks, each shard one quarter of the triangle exactly).
TILES_PER_SHARD = 2.5
TILE_ORDER = "halves"  # see tile_order


def tileable(specs: Sequence[MetricSpec], side: str = "sample") -> bool:
    """Whether every metric's cells are sums over examples, so shards can split the examples
    (RBF CKA: sample side only)."""
    if side == "feature" and any(s.info.name == "cka_rbf" for s in specs):
        return False
    return bool(specs) and all(s.info.name in TILED_METRICS for s in specs)


# ------------------------------------------------------------------------------------ RBF summaries
@dataclass(frozen=True)
class RbfSummary:
    """What every tile of one layer's RBF kernel needs of the whole layer (Kornblith et al. 2019,
    colab ``gram_rbf``/``center_gram``): the squared row norms q = diag(Kc) (n,), the exponent's
    factor −1/(2·threshold²·median D²) (the median over all n² squared distances, so it needs
    the layer's whole Gram: a layers stage, cheap to store, n floats), and the centring terms:
    HKH subtracts ``row`` (n,) from rows and columns and adds ``offset``; U-centring subtracts
    ``row`` (the adjusted column sums over n − 2) and zeroes the diagonal. ``scale`` is None when
    the median squared distance is 0 (the bandwidth is undefined: the layer's cells are NaN)."""

    q: Float64
    scale: float | None
    row: Float64
    offset: float


def rbf_summary(gram: Float64, threshold: float, debiased: bool, rtol: float, label: str) -> RbfSummary:
    """A layer's :class:`RbfSummary` from its whole centred Gram (n, n), by the arithmetic of
    :func:`repsim_cli.metrics.cka_rbf.rbf_centered_kernel`."""
    from .metrics._kernels import squared_distances

    q = np.diag(gram).copy()
    d2 = squared_distances(gram, rtol)
    median = float(np.median(d2))
    n = gram.shape[0]
    if not median > 0.0:
        from .metrics.cka_rbf import rbf_centered_kernel

        rbf_centered_kernel(gram, threshold, debiased, rtol, label)  # warns as a single run does
        return RbfSummary(q, None, np.zeros(n), 0.0)
    scale = -1.0 / (2.0 * threshold**2 * median)
    kernel = d2
    kernel *= scale
    np.exp(kernel, out=kernel)
    if debiased:
        np.fill_diagonal(kernel, 0.0)
        col = kernel.sum(axis=0) / (n - 2.0)
        col -= col.sum() / (2.0 * (n - 1.0))
        return RbfSummary(q, scale, col, 0.0)
    row = kernel.mean(axis=0)
    return RbfSummary(q, scale, row, float(row.mean()))


def rbf_tile(kc: Float64, s_i: RbfSummary, i0: int, i1: int, j0: int, j1: int, rtol: float,
             debiased: bool) -> Float64:
    """The centred RBF kernel's tile (I, J) from the centred Gram's tile ``kc`` (float64)."""
    from .metrics._kernels import squared_distance_tile

    d2 = squared_distance_tile(kc, s_i.q[i0:i1], s_i.q[j0:j1], rtol)
    if i0 == j0:
        np.fill_diagonal(d2, 0.0)
    assert s_i.scale is not None
    d2 *= s_i.scale
    k = np.exp(d2, out=d2)
    if debiased:
        if i0 == j0:
            np.fill_diagonal(k, 0.0)
        k -= s_i.row[i0:i1, None]
        k -= s_i.row[None, j0:j1]
        if i0 == j0:
            np.fill_diagonal(k, 0.0)
    else:
        k -= s_i.row[None, j0:j1]
        k -= s_i.row[i0:i1, None]
        k += s_i.offset
    return k


def rbf_material_key(spec: MetricSpec) -> tuple[Any, ...]:
    return ("rbf_summary", float(spec.params["threshold"]), bool(spec.params["debiased"]))


def rbf_summaries(comparison: Any, spec: MetricSpec, refs: Sequence[Any] | None = None) -> list[RbfSummary]:
    """The layers' RBF summaries for one ``cka_rbf`` spec: from the state directory when it holds
    them, else computed from the layer's whole Gram here (and stored there when there is one)."""
    from .metrics._kernels import roundoff_rtol

    engine, plan = comparison.engine, comparison.plan
    sd = comparison.state_dir
    out = []
    for ref in refs if refs is not None else engine.refs:
        material = None if sd is None else sd.material(rbf_material_key(spec), ref, plan.side,
                                                         plan.compute_dtype, plan.n)  # fmt: skip
        summary = None if sd is None or material is None else sd.load(material)
        if summary is None:
            if sd is not None and sd.require:
                from .state_dir import MissingStateError

                raise MissingStateError(
                    f"{sd.root}: no prepared cka_rbf bandwidth of layer {ref.label} (precision "
                    f"{plan.compute_dtype}); run the layers stage first: {sd.command}"
                )
            if spec.params["debiased"] and plan.n < 4:
                from .errors import DataError

                raise DataError(f"debiased cka_rbf needs at least 4 samples, got n={plan.n}")
            summary = rbf_summary(engine.centered_gram(ref), float(spec.params["threshold"]),
                                  bool(spec.params["debiased"]), roundoff_rtol(engine.dtype), ref.label)  # fmt: skip
            comparison.states.counts[f"prepare:{rbf_material_key(spec)!r}:{ref.key}"] += 1
            if sd is not None and material is not None:
                sd.save(material, summary)
            engine.close()  # the Gram is not needed again: tiles are recomputed from the rows
        else:
            comparison.states.counts[f"shared:{rbf_material_key(spec)!r}:{ref.key}"] += 1
        out.append(summary)
    return out


# ------------------------------------------------------------------------------------ the split
def balanced_range(costs: Sequence[float], shard: Shard) -> tuple[int, int]:
    """Shard K of N's contiguous range [start, stop) of work items, cut at the item boundary
    nearest to k/N of the total cost (ties to the earlier one; every item in exactly one shard;
    deterministic)."""
    prefix = np.concatenate([[0.0], np.cumsum(np.asarray(costs, dtype=np.float64))])
    total = prefix[-1]

    def cut(k: int) -> int:
        if k <= 0:
            return 0
        if k >= shard.count:
            return len(costs)
        target = total * k / shard.count
        at = int(np.searchsorted(prefix, target, side="left"))
        if at > 0 and target - prefix[at - 1] <= prefix[min(at, len(costs))] - target:
            at -= 1
        return min(at, len(costs))

    return cut(shard.index - 1), cut(shard.index)


@dataclass(frozen=True)
class TilePlan:
    """The tiles of a sample-side run: row blocks of ``rows`` samples, pairs (I, J ≥ I) in the
    order of :func:`tile_order` (shards take contiguous runs of it)."""

    n: int
    rows: int

    @property
    def starts(self) -> list[int]:
        return list(range(0, self.n, self.rows))

    def tiles(self) -> list[tuple[int, int, int, int]]:
        """(i0, i1, j0, j1) of every tile, in :func:`tile_order`."""
        bounds = [(s, min(s + self.rows, self.n)) for s in self.starts]
        return [(*bounds[a], *bounds[b]) for a, b in tile_order(len(bounds))]

    @staticmethod
    def costs(tiles: Sequence[tuple[int, int, int, int]]) -> list[float]:
        """Multiply-adds per output column of each tile: a diagonal tile is a SYRK (its upper
        triangle, t(t+1)/2 entries), any other a GEMM."""
        return [float((i1 - i0) * (i1 - i0 + 1) // 2 if i0 == j0 else (i1 - i0) * (j1 - j0))
                for i0, i1, j0, j1 in tiles]  # fmt: skip


def tile_order(m: int) -> list[tuple[int, int]]:
    """The pairs of row blocks (I, J ≥ I) of an m-block triangle, ordered so that a contiguous
    run of them touches few row blocks: recursively, the first half's triangle, then the
    rectangle (first half) × (second half) row by row, then the second half's triangle. With
    N = 2^k shards and 2^k·(power of two) blocks the cuts fall on these pieces (diagonal tiles
    costed as SYRKs): N = 4 gives triangle A, the two halves of A × B by rows, triangle B —
    each shard reads 1/2 or 3/4 of the rows instead of up to all of them in row-major order."""
    out: list[tuple[int, int]] = []

    def visit(a: int, b: int) -> None:
        if b - a == 1:
            out.append((a, a))
            return
        mid = (a + b) // 2
        visit(a, mid)
        out.extend((i, j) for i in range(a, mid) for j in range(mid, b))
        visit(mid, b)

    if m > 0:
        visit(0, m)
    return out


def tile_plan(n: int, count: int, max_rows: int) -> TilePlan:
    """Row blocks for N shards: the fewest (a power of two, so that :func:`tile_order`'s pieces
    fall on the cuts) giving at least TILES_PER_SHARD tiles per shard — large tiles keep the
    GEMMs efficient (a 625-row SYRK runs at half the rate of a 1250-row one) — with a tile's
    working set within ``max_rows``; depends on n and N only, so every shard agrees."""
    m = 1
    while m * (m + 1) // 2 < TILES_PER_SHARD * count and m < n and count > 1:
        m *= 2
    rows = max(1, min(math.ceil(n / m), max_rows))
    return TilePlan(n, rows)


def feature_row_ranges(n: int, rows: int) -> list[tuple[int, int]]:
    """Row blocks [start, stop) of the feature side's pass."""
    return [(s, min(s + rows, n)) for s in range(0, n, rows)]


# ------------------------------------------------------------------------------------ the shard
@dataclass
class Partial:
    """One shard's partial sums. ``header``: what a merge requires to be equal (stores, content,
    layers, metrics and parameters, side, precision, tiling, N); ``template``: how to lay out
    the merged results; ``arrays``: the sums (``inner``, ``qq``, ``qsum``; feature side
    ``joint`` and ``sums`` instead of ``inner``)."""

    shard: Shard
    header: dict[str, Any]
    template: dict[str, Any]
    arrays: dict[str, Float64]
    share: str = ""


def _json(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(json.dumps(obj, sort_keys=True, default=str))
    return out


def partial_header(comparison: Any, shard: Shard, tiling: dict[str, Any]) -> dict[str, Any]:
    """The identity of a sharded comparison: every partial of one merge must carry the same."""
    attrs = comparison.attrs
    return _json({
        "stores": attrs["stores"], "fingerprints": attrs["fingerprints"], "models": attrs["models"],
        "pairs": [list(p) for p in comparison.layout.pairs],
        "layers": [r.key + "=" + r.name for r in comparison.engine.refs],
        "layers_a": [r.name for r in comparison.refs_a], "layers_b": [r.name for r in comparison.refs_b],
        "metrics": [[s.text, s.params] for s in comparison.specs], "n": comparison.plan.n,
        "side": comparison.plan.side, "compute_dtype": comparison.plan.compute_dtype,
        "tiling": tiling, "count": shard.count,
    })  # fmt: skip


def _template(comparison: Any) -> dict[str, Any]:
    keys = [r.key for r in comparison.engine.refs]
    return _json({
        "attrs": comparison.attrs,
        "layers_a": [r.name for r in comparison.refs_a], "layers_b": [r.name for r in comparison.refs_b],
        "rows": [keys.index(r.key) for r in comparison.refs_a],
        "cols": [keys.index(r.key) for r in comparison.refs_b],
        "row_models": list(comparison.layout.row_models), "col_models": list(comparison.layout.col_models),
        "pairs": [list(p) for p in comparison.layout.pairs],
        "widths": [r.width for r in comparison.engine.refs],
        "labels": [r.label for r in comparison.engine.refs],
        "sumsq": [_raw_sumsq(comparison.engine, r) for r in comparison.engine.refs],
        "specs": [{"text": s.text, "name": s.name, "kind": s.info.kind, "symmetric": s.info.symmetric,
                   "params": s.params} for s in comparison.specs],
    })  # fmt: skip


def _raw_sumsq(engine: Any, ref: Any) -> float:
    """‖X‖²_F of a layer (from its stats, or the engine's pass for the means): the scale against
    which a constant layer is recognised, as a single run does."""
    engine.mean(ref)
    return float(engine._sumsq_total.get(ref.key, math.inf))


def sample_share(comparison: Any, shard: Shard) -> tuple[TilePlan, list[tuple[int, int, int, int]]]:
    """The tile plan and shard K's tiles."""
    from .engine.tiles import tile_rows_for

    engine = comparison.engine
    widths = [r.width for r in engine.refs]
    budget = max(1, comparison.plan.budget // 2)
    plan = tile_plan(engine.n, shard.count, tile_rows_for(engine.n, widths, engine.dtype.itemsize, budget))
    tiles = plan.tiles()
    lo, hi = balanced_range(TilePlan.costs(tiles), shard)
    return plan, tiles[lo:hi]


def feature_share(comparison: Any, shard: Shard) -> tuple[int, list[tuple[int, int]]]:
    """Rows per block and shard K's row blocks."""
    rows = comparison.plan.block_rows or 1024
    n = comparison.engine.n
    grid = feature_row_ranges(n, rows)
    if len(grid) >= 2 * shard.count:
        # whole blocks of a single run's pass: each block's GEMM is the single run's, bit for bit
        lo, hi = balanced_range([float(b - a) for a, b in grid], shard)
        return rows, grid[lo:hi]
    # too few blocks to share: N equal row ranges (values then agree to the GEMM's rounding)
    base, extra = divmod(n, shard.count)
    k = shard.index - 1
    start = k * base + min(k, extra)
    stop = start + base + (1 if k < extra else 0)
    return rows, [(a + start, b + start) for a, b in feature_row_ranges(stop - start, rows)]


def compute_partial(comparison: Any, shard: Shard) -> Partial:
    """Shard K's partial sums of a comparison whose metrics are all :func:`tileable`."""
    with ExitStack() as stack:  # the reader thread stops (pending reads cancelled) on any exit
        return _compute_partial(comparison, shard, stack)


def _compute_partial(comparison: Any, shard: Shard, stack: ExitStack) -> Partial:
    engine = comparison.engine
    refs = engine.refs
    n_layers = len(refs)
    qq = np.zeros((n_layers, n_layers))
    qsum = np.zeros(n_layers)
    arrays: dict[str, Float64]
    if comparison.plan.side == "feature":
        rows, blocks = feature_share(comparison, shard)
        tiling: dict[str, Any] = {"side": "feature", "rows": rows}
        widths = [r.width for r in refs]
        offsets = np.concatenate([[0], np.cumsum(widths)]).astype(int)
        shift = np.concatenate([engine.mean(r) for r in refs])
        joint = np.zeros((int(offsets[-1]), int(offsets[-1])))
        sums = np.zeros(int(offsets[-1]))
        # the single run's feature blocks, by the same GEMMs (joint entries outside them stay 0:
        # no cell reads them)
        ranges = {r.key: (int(offsets[k]), int(offsets[k + 1])) for k, r in enumerate(refs)}
        cross = (block_columns(ranges, [r.key for r in refs], comparison.plan.feature_blocks)
                 if comparison.plan.feature_blocks else None)  # fmt: skip
        accs = [np.zeros((len(r), len(c))) for r, c in cross or ()]
        for done, (start, stop) in enumerate(blocks, start=1):
            parts = [r.store.read_rows(r.name, start, stop) for r in refs]
            z = np.concatenate(parts, axis=1).astype(np.float64) - shift
            q = np.stack([np.einsum("ij,ij->i", z[:, offsets[k] : offsets[k + 1]],
                                    z[:, offsets[k] : offsets[k + 1]]) for k in range(n_layers)])  # fmt: skip
            qq += q @ q.T
            qsum += q.sum(axis=1)
            zc = z.astype(engine.dtype, copy=False)
            sums += zc.sum(axis=0, dtype=np.float64)
            if cross is None:
                joint += zc.T @ zc
            else:
                add_block_products(zc, cross, accs)
            engine.progress(f"shard {shard}: rows", done, len(blocks))
        for (r, c), acc in reversed(list(zip(cross or (), accs, strict=True))):
            joint[np.ix_(r, c)] = acc  # reversed: where blocks overlap, the first one's, as the engine
        arrays = {"joint": joint, "sums": sums, "qq": qq, "qsum": qsum}
        share = f"rows {blocks[0][0]}-{blocks[-1][1] - 1} of {engine.n}" if blocks else "no rows"
    else:
        from .metrics._kernels import roundoff_rtol

        rbf_specs = [(idx, spec) for idx, spec in enumerate(comparison.specs) if spec.name == "cka_rbf"]
        summaries = {idx: rbf_summaries(comparison, spec) for idx, spec in rbf_specs}
        rtol = roundoff_rtol(engine.dtype)
        rbf_sums = {idx: np.zeros((n_layers, n_layers)) for idx, _ in rbf_specs}
        plan, tiles = sample_share(comparison, shard)
        tiling = {"side": "sample", "rows": plan.rows, "order": TILE_ORDER}
        inner = np.zeros((n_layers, n_layers))
        # the row blocks this shard's tiles touch, read (one read per run of consecutive blocks)
        # and centred once per layer when they fit
        runs = touched_runs(tiles)
        touched_bytes = sum(b - a for a, b in runs) * sum(r.width for r in refs) * engine.dtype.itemsize
        # one reader thread reads and centres the layers in order while the first panel's GEMMs
        # run (BLAS, the digest check and the ufuncs release the GIL), as a single run's
        # read-ahead overlaps reading with its SYRKs
        reader = ThreadPoolExecutor(1, thread_name_prefix="repsim-shard-read")
        stack.callback(reader.shutdown, wait=True, cancel_futures=True)
        def read_layer(ref: Any) -> list[NDArray[np.floating]]:
            return [centred_range(engine, ref, a, b) for a, b in runs]

        held = ([reader.submit(read_layer, r) for r in refs]
                if tiles and touched_bytes <= comparison.plan.budget // 4 else None)  # fmt: skip
        run_starts = [a for a, _ in runs]

        def rows_of(layer: int, start: int, stop: int) -> NDArray[np.floating]:
            if held is not None:
                at = bisect.bisect_right(run_starts, start) - 1
                return held[layer].result()[at][start - run_starts[at] : stop - run_starts[at]]
            block: NDArray[np.floating] = engine.centered_rows(refs[layer], start, stop)
            return block

        left_start = -1
        left: list[NDArray[np.floating] | None] = []
        stacked_buf: Float64 = np.empty(0)
        product_buf: NDArray[np.floating] = np.empty(0, dtype=engine.dtype)
        panels = tile_panels(tiles, n_layers * 8 * (1 + len(rbf_specs)), PANEL_BYTES)
        for done, (i0, i1, j0, j1) in enumerate(panels, start=1):
            if i0 != left_start:
                left = [None] * n_layers  # filled layer by layer (the reader may still be going)
                left_start = i0
            # one product per layer for the whole panel of tiles (I, J…): a SYRK for the diagonal
            # tile (I, I) when the panel starts with it, one GEMM for the rest
            rest = i1 if j0 == i0 else j0
            ti, width = i1 - i0, j1 - j0
            # reused buffers (fresh pages for every panel cost as much CPU as the small GEMMs)
            if stacked_buf.size < n_layers * ti * width:
                stacked_buf = np.empty(n_layers * ti * width)
                product_buf = np.empty(ti * width, dtype=engine.dtype)
            stacked = stacked_buf[: n_layers * ti * width].reshape(n_layers, ti * width)
            diag = np.empty((n_layers, ti)) if j0 == i0 else None
            for k in range(n_layers):
                lk = left[k]
                if lk is None:
                    lk = left[k] = rows_of(k, i0, i1)
                panel = stacked[k].reshape(ti, width)
                if diag is not None:
                    square = product_buf[: ti * ti].reshape(ti, ti)
                    np.matmul(lk, lk.T, out=square)  # numpy runs A @ A.T as a SYRK
                    panel[:, :ti] = square
                if j1 > rest:
                    cols = j1 - rest
                    rect = product_buf[: ti * cols].reshape(ti, cols)
                    np.matmul(lk, rows_of(k, rest, j1).T, out=rect)
                    panel[:, width - cols :] = rect
                if diag is not None:
                    diag[k] = np.diag(panel[:, :ti])
            if diag is not None:
                qq += diag @ diag.T
                qsum += diag.sum(axis=1)
            for idx, spec in rbf_specs:
                kernels = np.zeros_like(stacked)
                for k in range(n_layers):
                    summary = summaries[idx][k]
                    if summary.scale is not None:
                        kc = stacked[k].reshape(ti, width)
                        kernels[k] = rbf_tile(kc, summary, i0, i1, j0, j1, rtol,
                                              bool(spec.params["debiased"])).ravel()  # fmt: skip
                rbf_sums[idx] += _weighted_inner(kernels, ti, width, j0 == i0)
                del kernels
            inner += _weighted_inner(stacked, ti, width, j0 == i0)
            del stacked
            engine.progress(f"shard {shard}: panels of tiles", done, len(panels))
        arrays = {"inner": inner, "qq": qq, "qsum": qsum}
        for idx, _ in rbf_specs:
            arrays[f"rbf{idx}"] = rbf_sums[idx]
            arrays[f"rbf{idx}_defined"] = np.array([float(x.scale is not None) for x in summaries[idx]])
        share = f"{len(tiles)} of {len(plan.tiles())} tiles" if tiles else "no tiles"
    return Partial(shard, partial_header(comparison, shard, tiling), _template(comparison), arrays, share)


def centred_range(engine: Any, ref: Any, start: int, stop: int) -> NDArray[np.floating]:
    """Rows [start, stop) of a centred layer in the GEMM dtype: one read, centred in float64
    (the same values as the engine's ``centered_rows``: each entry widened to float64, the
    float64 mean subtracted, rounded to the GEMM dtype), in place when the stored dtype is the
    GEMM dtype (no second copy of the rows: fresh pages cost as much CPU as the centring)."""
    mean = engine.mean(ref)
    raw = ref.store.read_rows(ref.name, start, stop)
    engine.counts["read:" + ref.key] += 1
    engine.bytes_read += raw.nbytes
    inplace = raw.dtype == engine.dtype and raw.flags.c_contiguous and raw.flags.writeable
    out = raw if inplace else np.empty(raw.shape, dtype=engine.dtype)
    # the float64 loop (raw and mean widened, result rounded into ``out``), buffered by numpy
    np.subtract(raw, mean, out=out, casting="unsafe")
    return out


def touched_runs(tiles: Sequence[tuple[int, int, int, int]]) -> list[tuple[int, int]]:
    """The rows [start, stop) the tiles touch (both their row and column blocks), as ascending
    runs of consecutive row blocks."""
    blocks = sorted({(t[0], t[1]) for t in tiles} | {(t[2], t[3]) for t in tiles})
    runs: list[tuple[int, int]] = []
    for start, stop in blocks:
        if runs and runs[-1][1] == start:
            runs[-1] = (runs[-1][0], stop)
        else:
            runs.append((start, stop))
    return runs


PANEL_BYTES = 256 * 1024**2  # float64 products of one panel of tiles held at once


def tile_panels(
    tiles: Sequence[tuple[int, int, int, int]], bytes_per_entry: int, limit: int
) -> list[tuple[int, int, int, int]]:
    """Consecutive tiles of one row block I joined into panels (i0, i1, j0, j1) of at most
    ``limit`` bytes (at ``bytes_per_entry`` per Gram entry; at least one tile each)."""
    out: list[tuple[int, int, int, int]] = []
    for i0, i1, j0, j1 in tiles:
        if out:
            a0, a1, b0, b1 = out[-1]
            if a0 == i0 and b1 == j0 and (a1 - a0) * (j1 - b0) * bytes_per_entry <= limit:
                out[-1] = (a0, a1, b0, j1)
                continue
        out.append((i0, i1, j0, j1))
    return out


def _weighted_inner(stacked: Float64, rows: int, width: int, has_diagonal: bool) -> Float64:
    """Σ over a panel's tiles of weight·⟨tile_a, tile_b⟩ for every layer pair: weight 1 for the
    diagonal tile (I, I) — its first ``rows`` columns when ``has_diagonal`` — and 2 for the
    others, which stand for their mirror (J, I) too."""
    full = stacked @ stacked.T
    if not has_diagonal:
        return 2.0 * full
    head = stacked.reshape(len(stacked), rows, width)[:, :, :rows].reshape(len(stacked), -1)
    out: Float64 = 2.0 * full - head @ head.T
    return out


# ------------------------------------------------------------------------------------ files
def write_partial(partial: Partial, out: str | Path) -> None:
    """Write a partial (``.h5``/``.hdf5``/``.zarr``) atomically."""
    path = Path(out)
    try:
        backend_for(path)
    except StoreError:
        raise ResultsError(f"{path}: a shard of partial sums is written as .h5, .hdf5 or .zarr") from None
    with atomic_path(path) as tmp, open_container(tmp, "w", in_memory=True) as c:
        c.set_attrs("", {
            "repsim_format": FORMAT, "format_version": FORMAT_VERSION, "shard": str(partial.shard),
            "header": json.dumps(partial.header, sort_keys=True),
            "template": json.dumps(partial.template, sort_keys=True), "share": partial.share,
            "arrays": json.dumps(sorted(partial.arrays)),
        })  # fmt: skip
        for name, arr in sorted(partial.arrays.items()):
            c.write_array(name, np.ascontiguousarray(arr, dtype=np.float64))


def is_partial_file(path: str | Path) -> bool:
    """Whether ``path`` is a partial-sums file written by ``compare --shard`` (tile mode)."""
    p = Path(path)
    if not p.exists() or p.suffix.lower() == ".csv":
        return False
    try:
        with open_container(p, "r") as c:
            return bool(c.get_attrs().get("repsim_format") == FORMAT)
    except (StoreError, OSError):
        return False


def read_partial(path: str | Path) -> Partial:
    p = Path(path)
    with open_container(p, "r") as c:
        attrs = c.get_attrs()
        if attrs.get("repsim_format") != FORMAT:
            raise ResultsError(f"{p}: not a repsim partial-sums file")
        if int(attrs.get("format_version", 0)) != FORMAT_VERSION:
            raise ResultsError(f"{p}: partial-sums format {attrs.get('format_version')} is not "
                               f"{FORMAT_VERSION}; run its shard again with this repsim")  # fmt: skip
        k, _, count = str(attrs["shard"]).partition("/")
        arrays = {name: np.asarray(c.read_array(name), dtype=np.float64)
                  for name in json.loads(attrs["arrays"])}  # fmt: skip
        return Partial(Shard(int(k), int(count)), json.loads(attrs["header"]), json.loads(attrs["template"]),
                       arrays, str(attrs.get("share", "")))  # fmt: skip


# ------------------------------------------------------------------------------------ merge
_HEADER_WORDS = {
    "stores": "the stores", "fingerprints": "the stores' content (fingerprints)", "models": "the models",
    "pairs": "the model pairs", "layers": "the layers", "layers_a": "the layers of A",
    "layers_b": "the layers of B", "metrics": "the metrics or their parameters", "n": "the samples",
    "side": "the engine side (--side)", "compute_dtype": "the precision (--precision)",
    "tiling": "the tiling", "count": "the number of shards N",
}  # fmt: skip


def merge_partials(paths: Sequence[str | Path]) -> Results:
    """Add the partial sums of shards 1..N in shard order and finalise every cell.

    Raises :class:`ResultsError` naming a partial of another command (what differs), a shard
    given twice (both files) and every shard missing. The shards' commands are listed, in shard
    order, under the attribute ``merged_from``.
    """
    parts = [(Path(p), read_partial(p)) for p in paths]
    first_path, first = parts[0]
    by_index: dict[int, Path] = {}
    for path, part in parts:
        if part.header != first.header:
            keys = sorted(k for k in set(part.header) | set(first.header)
                          if part.header.get(k) != first.header.get(k))  # fmt: skip
            words = ", ".join(_HEADER_WORDS.get(k, k) for k in keys)
            raise ResultsError(f"{path}: a partial of another command than {first_path} ({words} differ); "
                               "merge only the shards of one comparison")  # fmt: skip
        if part.shard.index in by_index:
            raise ResultsError(f"{path}: shard {part.shard} is given twice (also {by_index[part.shard.index]})")
        by_index[part.shard.index] = path
    count = first.shard.count
    missing = [k for k in range(1, count + 1) if k not in by_index]
    if missing:
        names = ", ".join(f"{k}/{count}" for k in missing)
        raise ResultsError(f"partial sums of shard{'s' if len(missing) > 1 else ''} {names} missing "
                           f"(given: {', '.join(str(p) for p in by_index.values())}); run "
                           f"`repsim compare ... --shard K/{count}` for each")  # fmt: skip
    ordered = [part for _, part in sorted(((p.shard.index, p) for _, p in parts), key=lambda t: t[0])]
    total = {name: np.zeros_like(arr) for name, arr in ordered[0].arrays.items()}
    for part in ordered:
        for name, arr in part.arrays.items():
            if name.endswith("_defined"):  # the same in every shard, not a sum
                total[name] = arr
            else:
                total[name] += arr
    from .merge import SHARD_PROVENANCE, shard_source

    results = finalise(first.template, first.header, total)
    for key in SHARD_PROVENANCE:  # shard 1's: each shard's own goes to merged_from
        results.attrs.pop(key, None)
    results.attrs["merged_from"] = [
        shard_source(path, part.template["attrs"], part.shard)
        for path, part in sorted(parts, key=lambda t: t[1].shard.index)
    ]  # fmt: skip
    return results


def _inner_from_joint(joint: Float64, sums: Float64, n: int, widths: Sequence[int]) -> Float64:
    mean = sums / n
    joint = joint - np.outer(mean, sums)  # the rank-one correction of the (exact) centring
    offsets = np.concatenate([[0], np.cumsum(widths)]).astype(int)
    count = len(widths)
    out = np.empty((count, count))
    for a in range(count):
        for b in range(count):
            c = joint[offsets[a] : offsets[a + 1], offsets[b] : offsets[b + 1]]
            out[a, b] = float(np.einsum("ij,ij->", c, c))
    return out


def finalise(template: dict[str, Any], header: dict[str, Any], total: dict[str, Float64]) -> Results:
    """The results of a sharded comparison from its summed partials."""
    from .metrics import parse_spec
    from .metrics.cka import cka_from_hsic, debias

    n = int(header["n"])
    qq, qsum = total["qq"], total["qsum"]
    if "inner" in total:
        inner = total["inner"]
    else:
        widths = template["widths"]
        inner = _inner_from_joint(total["joint"], total["sums"], n, widths)
    from .engine.gram import CONSTANT_RTOL
    from .errors import DataError

    for layer, (label, sumsq) in enumerate(zip(template["labels"], template["sumsq"], strict=True)):
        if not qsum[layer] > CONSTANT_RTOL * sumsq:  # ‖Xc‖²_F = Σ_i q_i, the engine's rule
            store, _, name = label.rpartition(":")
            raise DataError(f"{store}: layer {name!r}: constant layer (zero variance); similarity is undefined")
    inner = np.triu(inner) + np.triu(inner, 1).T  # exactly symmetric, as a single run's
    qq = np.triu(qq) + np.triu(qq, 1).T
    rows, cols = template["rows"], template["cols"]
    res = Results(list(template["layers_a"]), list(template["layers_b"]), attrs=dict(template["attrs"]))
    pairs = [tuple(p) for p in template["pairs"]]
    for idx, s in enumerate(template["specs"]):
        spec = parse_spec(s["text"])
        value = np.full((len(rows), len(cols)), np.nan)
        computed = np.zeros(value.shape, dtype=bool)
        if spec.name == "cka_rbf":
            full = _rbf_values(total[f"rbf{idx}"], total[f"rbf{idx}_defined"], rows, cols)
        else:
            h = inner[np.ix_(rows, cols)]
            h_aa = np.diag(inner)[rows]
            h_bb = np.diag(inner)[cols]
            if spec.params.get("debiased"):
                h = debias(h, qq[np.ix_(rows, cols)], qsum[rows][:, None], qsum[cols][None, :], n)
                h_aa = debias(h_aa, np.diag(qq)[rows], qsum[rows], qsum[rows], n)
                h_bb = debias(h_bb, np.diag(qq)[cols], qsum[cols], qsum[cols], n)
            full = cka_from_hsic(h, h_aa[:, None], h_bb[None, :])
        row_models, col_models = template["row_models"], template["col_models"]
        for i in range(len(rows)):
            for j in range(len(cols)):
                if (row_models[i], col_models[j]) in pairs:
                    value[i, j] = full[i, j]
                    computed[i, j] = True
        res.metrics[spec.text] = MetricResult(
            spec=spec.text, name=spec.name, kind=spec.info.kind, symmetric=spec.info.symmetric,
            params=dict(spec.params), value=value, computed=None if computed.all() else computed,
        )  # fmt: skip
    return res


def _rbf_values(sums: Float64, defined: Float64, rows: Sequence[int], cols: Sequence[int]) -> Float64:
    """RBF CKA ⟨K̃_a, K̃_b⟩/√(⟨K̃_a, K̃_a⟩⟨K̃_b, K̃_b⟩) from the summed tile products; NaN for a layer
    whose bandwidth is undefined (already warned)."""
    from .metrics._kernels import ratio_matrix

    sums = np.triu(sums) + np.triu(sums, 1).T
    self_terms = np.where(defined > 0, np.diag(sums), np.nan)
    return ratio_matrix(sums[np.ix_(rows, cols)], self_terms[list(rows)], self_terms[list(cols)], "cka_rbf")
