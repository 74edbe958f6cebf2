"""The shared Gram engine: every layer's Gram statistics computed once, reused by every pair.

A :class:`LayerRef` names one layer of one store. :class:`GramEngine` reads each layer in row
blocks (with read-ahead), centres with the exact column means (from the store's stats, or one
extra pass), and provides, per the :class:`~repsim_cli.engine.plan.Plan`:

* sample side: ``centered_gram(ref)`` Kc = XcXcᵀ (n×n float64) and ``gram_inner_matrix``, every
  ⟨Kc_a, Kc_b⟩, both from the plan's strategy (:mod:`.strategies`: stacked, packed, spilled or
  tiled), which decides where the Grams live;
* feature side: ``cross_product(ref_a, ref_b)`` = Xcᵀ Yc (D_a×D_b float64) from one joint pass
  over all layers, which computes the blocks the plan names (the cells' cross blocks and each
  layer's own block) or the whole joint block;
* both sides: ``row_sqnorms(ref)`` (‖xc_i‖², the diagonal of Kc) and ``gram_inner`` via the
  identity ‖XcᵀYc‖²_F = ⟨Kc_a, Kc_b⟩ (Kornblith et al. 2019, eq. 3). What metrics derive from
  these per layer (eigenbases, distances, ranks) are the metrics' states, kept by the comparison
  (:mod:`repsim_cli.states`).
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._progress import ProgressFn, no_progress
from ..errors import DataError
from .plan import Plan
from .reader import read_ahead
from .stats import Moments, accumulate_block, centered_block, finalize
from .strategies import SampleGrams

Float64 = NDArray[np.float64]
# (row columns, column columns) of the joint block, per feature-side block
BlockColumns = list[tuple[NDArray[np.intp], NDArray[np.intp]]]

# ‖Xc‖²_F ≤ this × ‖X‖²_F means the layer is constant up to round-off: its centred activations
# are cancellation noise, and every similarity of it is undefined.
CONSTANT_RTOL = 1e-20


@dataclass(frozen=True)
class LayerRef:
    """One layer of one store. ``key`` is unique within a comparison (e.g. ``a:conv1``)."""

    key: str
    store: Any
    name: str

    @property
    def label(self) -> str:
        return f"{self.store.path}:{self.name}"

    @property
    def width(self) -> int:
        return int(self.store.info(self.name).width)


class GramEngine:
    """Computes and caches per-layer Gram statistics for a set of layers sharing n samples."""

    def __init__(
        self, refs: Sequence[LayerRef], plan: Plan, progress: ProgressFn = no_progress,
        cache_dir: str | Path | None = None,
    ):
        self.refs = list(refs)
        self.cache_root = Path(cache_dir) if cache_dir is not None else None
        self._cache: Path | None = None
        self.plan = plan
        self.n = plan.n
        self.dtype = np.dtype(plan.compute_dtype)
        self.progress = progress
        self.counts: Counter[str] = Counter()
        self.bytes_read = 0
        self._index = {ref.key: i for i, ref in enumerate(self.refs)}
        self._means: dict[str, Float64] = {}
        self._sumsq_total: dict[str, float] = {}
        self._joint: Float64 | None = None
        self._blocks: list[tuple[NDArray[np.intp], NDArray[np.intp], Float64]] = []
        self._fallback: Float64 | None = None  # the whole joint block, for pairs outside the blocks
        self._offsets: dict[str, tuple[int, int]] = {}
        self._row_sqnorms: dict[str, Float64] = {}
        self._row_term_cache: dict[str, tuple[Float64, Float64]] = {}
        self._grams: SampleGrams = plan.strategy.open(self)

    def index(self, ref: LayerRef) -> int:
        """The layer's position in ``refs``."""
        return self._index[ref.key]

    def triangle_stack(self, first: int, stop: int) -> NDArray[np.floating] | None:
        """The Grams' strict upper triangles (stop − first, n(n−1)/2, GEMM dtype, a view: do not
        modify) of the layers at ``refs[first:stop]`` when the plan holds them packed and all are
        built; else None."""
        return self._grams.triangle_stack(first, stop)

    # ---------------------------------------------------------------- reading and centring
    def blocks(self, ref: LayerRef, rows: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Raw (start, (r, D)) blocks of a layer, read ahead in a thread; NaN/Inf raise DataError."""
        step = rows or max(1, int(ref.store.info(ref.name).chunk_rows))

        def gen() -> Iterator[tuple[int, np.ndarray]]:
            for start in range(0, self.n, step):
                block = ref.store.read_rows(ref.name, start, min(start + step, self.n))
                yield start, block

        # a layer of one block gains nothing from a reader thread (nothing to overlap it with)
        for start, block in read_ahead(gen(), depth=2 if self.n > step else 0):
            self.counts["read:" + ref.key] += 1
            self.bytes_read += block.nbytes
            yield start, block

    def _check_finite(self, ref: LayerRef, sums: Float64, sumsq: Float64 | None) -> None:
        if not (np.isfinite(sums).all() and (sumsq is None or np.isfinite(sumsq).all())):
            raise DataError(f"{ref.store.path}: layer {ref.name!r}: contains NaN or Inf values")

    def mean(self, ref: LayerRef) -> Float64:
        """Exact float64 column means (D,), from the store's stats or one streaming pass."""
        if ref.key not in self._means:
            sums = ref.store.column_sums(ref.name)
            sumsq = ref.store.column_sumsq(ref.name)
            if sums is None:
                width = ref.width
                sums = np.zeros(width)
                sumsq = np.zeros(width)
                for _, block in self.blocks(ref):
                    b64 = np.asarray(block, dtype=np.float64)
                    sums += b64.sum(axis=0)
                    sumsq += np.einsum("ij,ij->j", b64, b64)
            self._check_finite(ref, sums, sumsq)
            self._means[ref.key] = sums / self.n
            self._sumsq_total[ref.key] = float(sumsq.sum()) if sumsq is not None else math.inf
        return self._means[ref.key]

    def _check_constant(self, ref: LayerRef, centred_sq: float) -> None:
        if not centred_sq > CONSTANT_RTOL * self._sumsq_total.get(ref.key, 0.0):
            raise DataError(
                f"{ref.store.path}: layer {ref.name!r}: constant layer (zero variance); "
                "similarity is undefined"
            )

    def centered_data(self, ref: LayerRef) -> NDArray[np.floating]:
        """The whole centred layer Xc (n, D) in the GEMM dtype (read in blocks; not cached)."""
        mean = self.mean(ref)
        out = np.empty((self.n, ref.width), dtype=self.dtype)
        buf = np.empty(0)
        for start, block in self.blocks(ref):
            rows = block.shape[0]
            if buf.shape[0] < rows:
                buf = np.empty((rows, ref.width))
            # centre in float64 (one preallocated buffer), then cast into the GEMM dtype
            np.subtract(block, mean, out=buf[:rows])
            out[start : start + rows] = buf[:rows]
            self.progress(f"reading {ref.name}", start + rows, self.n)
        return out

    def centered_rows(self, ref: LayerRef, start: int, stop: int) -> NDArray[np.floating]:
        """Rows [start, stop) of the centred layer in the GEMM dtype (one read, not cached)."""
        mean = self.mean(ref)
        self.counts["read:" + ref.key] += 1
        block = ref.store.read_rows(ref.name, start, stop)
        self.bytes_read += block.nbytes
        return centered_block(block, mean, self.dtype.type)

    def record_row_sqnorms(self, ref: LayerRef, sqnorms: Float64, *, replace: bool) -> None:
        """Keep a layer's ‖xc_i‖² (n,) float64 (the first ones recorded unless ``replace``);
        raises :class:`DataError` for a constant layer."""
        if replace:
            self._row_sqnorms[ref.key] = sqnorms
        else:
            self._row_sqnorms.setdefault(ref.key, sqnorms)
        self._check_constant(ref, float(sqnorms.sum()))

    # ---------------------------------------------------------------- sample side
    def centered_gram(self, ref: LayerRef) -> Float64:
        """Kc = XcXcᵀ (n, n) float64, computed once per layer by a SYRK over the centred layer and
        held as the plan's strategy holds it (the packed strategy holds no whole Gram and raises)."""
        return self._grams.gram(ref)

    def spill_file(self, ref: LayerRef) -> Path:
        """The disk-cache file of a layer's Gram; the cache directory is made on first use."""
        if self._cache is None:
            root = self.cache_root if self.cache_root is not None else Path(tempfile.gettempdir())
            root.mkdir(parents=True, exist_ok=True)
            self._cache = Path(tempfile.mkdtemp(prefix="repsim-cache-", dir=root))
        return self._cache / f"gram{self._index[ref.key]}.npy"

    def close(self, keep_cache: bool = False) -> None:
        """Drop the Grams held in memory and remove the disk cache (unless ``keep_cache``)."""
        self._grams.close()
        self._grams = self.plan.strategy.open(self)
        if self._cache is not None and not keep_cache:
            shutil.rmtree(self._cache, ignore_errors=True)
            self._cache = None

    @property
    def cache_path(self) -> Path | None:
        """The disk cache directory, once something has spilled to it."""
        return self._cache

    # ---------------------------------------------------------------- feature side
    def _joint_pass(self, whole: bool = False) -> None:
        """One pass over all layers together: the centred cross-products the plan's
        ``feature_blocks`` name (all of [X₁…X_L]ᵀ[X₁…X_L] when it names none, or with ``whole``:
        then kept apart, as the fallback for pairs outside the blocks) and the row norms."""
        widths = [ref.width for ref in self.refs]
        offsets = np.concatenate([[0], np.cumsum(widths)])
        self._offsets = {ref.key: (int(offsets[i]), int(offsets[i + 1])) for i, ref in enumerate(self.refs)}
        means = [self.mean(ref) for ref in self.refs]
        shift = np.concatenate(means)
        rows = self.plan.block_rows or 1024
        sqn = {ref.key: np.empty(self.n) for ref in self.refs}
        blocks = None if whole else self._feature_block_columns()

        def joint_blocks() -> Iterator[tuple[int, np.ndarray]]:
            for start in range(0, self.n, rows):
                stop = min(start + rows, self.n)
                parts = [ref.store.read_rows(ref.name, start, stop) for ref in self.refs]
                self.bytes_read += sum(p.nbytes for p in parts)
                yield start, np.concatenate(parts, axis=1)  # stored dtype: queued blocks stay small

        sums = np.zeros(len(shift))
        total = Moments(0, sums, np.zeros((len(shift), len(shift)))) if blocks is None else None
        crosses = [np.zeros((len(r), len(c))) for r, c in blocks or ()]
        for start, block in read_ahead(joint_blocks()):
            for ref in self.refs:
                lo, hi = self._offsets[ref.key]
                z = block[:, lo:hi] - shift[lo:hi]
                sqn[ref.key][start : start + block.shape[0]] = np.einsum("ij,ij->i", z, z)
            if total is not None:
                total = accumulate_block(total, block, shift, self.dtype.type)
            else:
                zc = centered_block(block, shift, self.dtype.type)  # centred before the GEMMs
                np.add(sums, zc.sum(axis=0, dtype=np.float64), out=sums)
                add_block_products(zc, blocks or [], crosses)
            self.progress("feature-side pass", start + block.shape[0], self.n)
        if whole:
            assert total is not None
            self._fallback = finalize(total)
            return
        if total is not None:
            self._joint = finalize(total)
            self._blocks = []
        else:
            mean = sums / self.n
            for (r, c), acc in zip(blocks or (), crosses, strict=True):
                # the rank-one centring correction, entry by entry as finalize() makes it
                np.subtract(acc, np.outer(mean[r], sums[c]), out=acc)
            self._joint = np.empty((0, 0))
            self._blocks = [(r, c, acc) for (r, c), acc in zip(blocks or (), crosses, strict=True)]
        for ref in self.refs:
            self.counts["cov:" + ref.key] += 1
            self.counts["read:" + ref.key] += 1
            self._row_sqnorms[ref.key] = sqn[ref.key]
            own = self._block(ref, ref)
            assert own is not None
            self._check_constant(ref, float(np.trace(own)))

    def _feature_block_columns(self) -> BlockColumns | None:
        """The plan's feature blocks as columns of the joint block (see :func:`block_columns`)."""
        if not self.plan.feature_blocks:
            return None
        return block_columns(self._offsets, [r.key for r in self.refs], self.plan.feature_blocks)

    def _block(self, ref_a: LayerRef, ref_b: LayerRef) -> Float64 | None:
        """XcᵀYc from the pass's results, or None when the pass did not compute it."""
        lo_a, hi_a = self._offsets[ref_a.key]
        lo_b, hi_b = self._offsets[ref_b.key]
        if self._joint is not None and self._joint.size:
            return self._joint[lo_a:hi_a, lo_b:hi_b]
        for r, c, acc in self._blocks:
            for (lo_r, hi_r, lo_c, hi_c), transpose in (((lo_a, hi_a, lo_b, hi_b), False),
                                                         ((lo_b, hi_b, lo_a, hi_a), True)):
                i = _run_in(r, lo_r, hi_r)
                j = _run_in(c, lo_c, hi_c)
                if i is not None and j is not None:
                    part: Float64 = acc[i : i + hi_r - lo_r, j : j + hi_c - lo_c]
                    return part.T if transpose else part
        if self._fallback is not None:
            return self._fallback[lo_a:hi_a, lo_b:hi_b]
        return None

    def computed_cross_product(self, ref_a: LayerRef, ref_b: LayerRef) -> Float64 | None:
        """XcᵀYc from the feature-side pass (run on first use); None for a pair outside the plan's
        blocks (no cell of this run)."""
        if self._joint is None:
            self._joint_pass()
        return self._block(ref_a, ref_b)

    def cross_product(self, ref_a: LayerRef, ref_b: LayerRef) -> Float64:
        """XcᵀYc (D_a, D_b) float64 from the feature-side pass (run on first use). A pair outside
        the plan's blocks comes from one more pass computing the whole joint block (the blocks'
        values stay as they are)."""
        block = self.computed_cross_product(ref_a, ref_b)
        if block is None:
            self.counts["feature_fallback"] += 1
            self._joint_pass(whole=True)
            block = self._block(ref_a, ref_b)
            assert block is not None
        return block

    # ---------------------------------------------------------------- both sides
    def row_sqnorms(self, ref: LayerRef) -> Float64:
        """‖xc_i‖² for each sample (n,), float64: the diagonal of Kc."""
        if ref.key not in self._row_sqnorms:
            if self.plan.side == "feature":
                self.cross_product(ref, ref)
            else:
                self._grams.compute_row_sqnorms(ref)
        return self._row_sqnorms[ref.key]

    def gram_inner_matrix(
        self, refs_a: Sequence[LayerRef], refs_b: Sequence[LayerRef], *, cells_only: bool = True
    ) -> Float64:
        """⟨Kc_a, Kc_b⟩_F = ‖XcᵀYc‖²_F for all pairs, shape (len(refs_a), len(refs_b)), float64.

        On the feature side, with ``cells_only``, a pair outside the plan's ``feature_blocks``
        (a block of several model pairs also spans pairs that are no cell of the run) is NaN
        rather than computed by another pass."""
        if self.plan.side == "feature":
            out = np.empty((len(refs_a), len(refs_b)))
            for i, ra in enumerate(refs_a):
                for j, rb in enumerate(refs_b):
                    c = self.computed_cross_product(ra, rb) if cells_only else self.cross_product(ra, rb)
                    out[i, j] = np.nan if c is None else float(np.einsum("ij,ij->", c, c))
            return out
        out = np.empty((len(refs_a), len(refs_b)))
        for i, ra in enumerate(refs_a):
            for j, rb in enumerate(refs_b):
                out[i, j] = self._grams.inner(self._index[ra.key], self._index[rb.key])
        return out

    def gram_inner(self, ref_a: LayerRef, ref_b: LayerRef) -> float:
        """⟨Kc_a, Kc_b⟩_F for one pair (float64)."""
        return float(self.gram_inner_matrix([ref_a], [ref_b], cells_only=False)[0, 0])

    def _row_terms(self, ref: LayerRef) -> tuple[Float64, Float64]:
        """v = Xcμ and the row sums of Xc (both (n,), float64), from one streaming pass."""

        def build() -> tuple[Float64, Float64]:
            mean = self.mean(ref)
            v, rowsum = np.empty(self.n), np.empty(self.n)
            for start, block in self.blocks(ref):
                xc = np.asarray(block, dtype=np.float64) - mean
                v[start : start + len(xc)] = xc @ mean
                rowsum[start : start + len(xc)] = xc.sum(axis=1)
            return v, rowsum

        if ref.key not in self._row_term_cache:
            self.counts["row_terms:" + ref.key] += 1
            self._row_term_cache[ref.key] = build()
        return self._row_term_cache[ref.key]

    def gram(self, ref: LayerRef, center: str = "units") -> Float64:
        """The n×n linear kernel of a layer, float64, by how it is centred.

        ``center="units"``: Kc = XcXcᵀ with every unit (column) centred — the engine's own Gram
        (do not modify it). ``"none"``: the raw K = XXᵀ. ``"stimuli"``: each sample's features centred
        across units, K − ssᵀ/D with s the raw row sums. The last two are rebuilt from Kc with the
        exact rank-one terms (Kc + v1ᵀ + 1vᵀ + ‖μ‖²11ᵀ, v = Xcμ) on each call (O(n²), not cached:
        the metric states built from them are what the comparison keeps).
        """
        if center == "units":
            return self.centered_gram(ref)
        if center not in {"none", "stimuli"}:
            raise ValueError(f"center must be 'units', 'none' or 'stimuli', not {center!r}")

        kc = self.centered_gram(ref)
        v, rowsum_c = self._row_terms(ref)
        mean = self.mean(ref)
        # kc + (v_i + v_j) + ‖μ‖², built in one n×n array (exactly symmetric)
        k = np.add.outer(v, v)
        k += kc
        k += float(mean @ mean)
        if center == "stimuli":
            s = rowsum_c + float(mean.sum())
            outer = np.outer(s, s)
            outer /= ref.width
            k -= outer
        return k



def block_columns(
    offsets: Mapping[str, tuple[int, int]], keys: Sequence[str],
    feature_blocks: Sequence[tuple[Sequence[str], Sequence[str]]],
) -> BlockColumns:
    """The plan's feature blocks as (row columns, column columns) of the joint block [X₁…X_L]
    (``offsets``: each layer key's column range), then each layer of ``keys`` whose own block no
    symmetric block holds (a symmetric block has its rows' array as its columns: one SYRK)."""

    def columns(block_keys: Sequence[str]) -> NDArray[np.intp]:
        return np.concatenate([np.arange(*offsets[k]) for k in block_keys]).astype(np.intp)

    out: BlockColumns = []
    own: set[str] = set()
    for row_keys, col_keys in feature_blocks:
        r = columns(row_keys)
        if tuple(row_keys) == tuple(col_keys):
            out.append((r, r))
            own.update(row_keys)
        else:
            out.append((r, columns(col_keys)))
    for key in keys:
        if key not in own:
            r = columns([key])
            out.append((r, r))
    return out


def add_block_products(zc: NDArray[np.floating], blocks: BlockColumns, accs: Sequence[Float64]) -> None:
    """acc += Z_rᵀ Z_c for each block, Z = ``zc`` the centred row block in the GEMM dtype (one
    GEMM, or one SYRK for a symmetric block, per block; the single run's pass and a shard's
    partial sums both go through here, so their products are the same bits)."""
    for (r, c), acc in zip(blocks, accs, strict=True):
        left = _columns(zc, r)
        right = left if r is c else _columns(zc, c)
        np.add(acc, left.T @ right, out=acc)


def _columns(z: NDArray[np.floating], cols: NDArray[np.intp]) -> NDArray[np.floating]:
    """z[:, cols], a view when the columns are one contiguous run (no copy before the GEMM)."""
    if len(cols) and cols[-1] - cols[0] == len(cols) - 1:
        view: NDArray[np.floating] = z[:, int(cols[0]) : int(cols[-1]) + 1]
        return view
    picked: NDArray[np.floating] = z[:, cols]
    return picked


def _run_in(cols: NDArray[np.intp], lo: int, hi: int) -> int | None:
    """Where the contiguous run of joint columns [lo, hi) starts within ``cols``, if it is there."""
    at = np.flatnonzero(cols == lo)
    if not len(at):
        return None
    i = int(at[0])
    if i + hi - lo > len(cols) or cols[i + hi - lo - 1] != hi - 1:
        return None
    return i
