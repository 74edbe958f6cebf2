"""The shared Gram engine: every layer's Gram statistics computed once, reused by every pair.

A :class:`LayerRef` names one layer of one store. :class:`GramEngine` reads each layer in row
blocks (with read-ahead), centres with the exact column means (from the store's stats, or one
extra pass), and provides, per the :class:`~repsim_cli.engine.plan.Plan`:

* sample side: ``centered_gram(ref)`` Kc = XcXcᵀ (n×n float64), kept in one stacked array, and
  ``gram_inner_matrix``, every ⟨Kc_a, Kc_b⟩ from the Grams' upper triangles, one GEMM per chunk
  (:mod:`.triangles`); when every metric needs only these, the ``packed`` plan keeps just the
  triangles, in the GEMM dtype;
* feature side: ``cross_product(ref_a, ref_b)`` = Xcᵀ Yc (D_a×D_b float64) from one joint pass
  over all layers;
* both sides: ``row_sqnorms(ref)`` (‖xc_i‖², the diagonal of Kc) and ``gram_inner`` via the
  identity ‖XcᵀYc‖²_F = ⟨Kc_a, Kc_b⟩. What metrics derive from these per layer (eigenbases,
  distances, ranks) are the metrics' states, kept by the comparison (:mod:`repsim_cli.states`).
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections import Counter, OrderedDict
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._progress import ProgressFn, no_progress
from ..errors import DataError
from .plan import INNER_GROUP, Plan
from .reader import read_ahead
from .stats import Moments, accumulate_block, centered_block, finalize
from .tiles import tiled_inner_products
from .triangles import pack_upper, triangle_inner_block, triangle_offsets, triangle_size, upper_rows

Float64 = NDArray[np.float64]

# ‖Xc‖²_F ≤ this × ‖X‖²_F means the layer is constant up to round-off (METRICS §1, edge cases).
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
        self._resident: OrderedDict[str, Float64] = OrderedDict()  # spilled mode: LRU of Grams
        self._tiled: tuple[Float64, list[Float64]] | None = None
        self.plan = plan
        self.n = plan.n
        self.dtype = np.dtype(plan.compute_dtype)
        self.progress = progress
        self.counts: Counter[str] = Counter()
        self.bytes_read = 0
        self._index = {ref.key: i for i, ref in enumerate(self.refs)}
        self._means: dict[str, Float64] = {}
        self._sumsq_total: dict[str, float] = {}
        self._grams: Float64 | None = None
        self._packed: NDArray[np.floating] | None = None  # packed mode: (L, n(n−1)/2) triangles
        self._triangle_offsets: NDArray[np.int64] | None = None
        self._have_gram: set[str] = set()
        self._joint: Float64 | None = None
        self._offsets: dict[str, tuple[int, int]] = {}
        self._row_sqnorms: dict[str, Float64] = {}
        self._row_term_cache: dict[str, tuple[Float64, Float64]] = {}
        self._inner_blocks: dict[tuple[int, int], Float64] = {}
        self._pair_inner: dict[tuple[int, int], float] = {}

    # ---------------------------------------------------------------- reading and centring
    def blocks(self, ref: LayerRef, rows: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Raw (start, (r, D)) blocks of a layer, read ahead in a thread; NaN/Inf raise DataError."""
        step = rows or max(1, int(ref.store.info(ref.name).chunk_rows))

        def gen() -> Iterator[tuple[int, np.ndarray]]:
            for start in range(0, self.n, step):
                block = ref.store.read_rows(ref.name, start, min(start + step, self.n))
                yield start, block

        for start, block in read_ahead(gen()):
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

    # ---------------------------------------------------------------- sample side
    def _gram_slot(self, ref: LayerRef) -> Float64:
        if self._grams is None:
            self._grams = np.empty((len(self.refs), self.n, self.n), dtype=np.float64)
        slot: Float64 = self._grams[self._index[ref.key]]
        return slot

    def centered_gram(self, ref: LayerRef) -> Float64:
        """Kc = XcXcᵀ (n, n) float64, computed once per layer by a SYRK over the centred layer.

        Stacked mode keeps every Gram in one (L, n, n) array; spilled mode writes each Gram to the
        disk cache once and keeps the ``plan.gram_capacity`` most recently used in memory. Packed
        mode (planned when every metric needs only inner products) holds no whole Gram.
        """
        if self.plan.mode == "packed":
            raise RuntimeError("the packed plan holds Gram triangles only; a metric asked for a whole Gram")
        if self.plan.mode == "stacked":
            slot = self._gram_slot(ref)
            if ref.key not in self._have_gram:
                self._compute_gram(ref, slot)
            return slot
        if ref.key in self._resident:
            self._resident.move_to_end(ref.key)
            return self._resident[ref.key]
        while len(self._resident) >= max(1, self.plan.gram_capacity):
            self._resident.popitem(last=False)
        path = self._cache_file(ref)
        gram: Float64
        if ref.key in self._have_gram and path.exists():
            gram = np.load(path)
        else:
            gram = np.empty((self.n, self.n))
            self._compute_gram(ref, gram)
            if self.plan.mode == "spilled":
                np.save(path, gram)
        self._resident[ref.key] = gram
        return gram

    def _gram_destination(self, ref: LayerRef) -> Float64 | None:
        """Where stacked mode keeps this layer's whole Gram; None in packed mode (triangle only)."""
        return None if self.plan.mode == "packed" else self._gram_slot(ref)

    def _compute_grams(self, refs: Sequence[LayerRef]) -> None:
        """Stacked and packed modes: the Grams of several layers, reading and centring layer i+1
        in a thread while layer i's SYRK runs (two centred layers are in memory at once)."""
        todo = [r for r in dict.fromkeys(refs) if r.key not in self._have_gram]
        if len(todo) < 2:
            for ref in todo:
                self._compute_gram(ref, self._gram_destination(ref))
            return
        for ref in todo:
            self.mean(ref)  # in this thread: the stats and the finiteness checks
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="repsim-prefetch") as pool:
            pending = pool.submit(self.centered_data, todo[0])
            for i, ref in enumerate(todo):
                xc = pending.result()
                if i + 1 < len(todo):
                    pending = pool.submit(self.centered_data, todo[i + 1])
                self._compute_gram(ref, self._gram_destination(ref), xc)
                del xc

    def _compute_gram(
        self, ref: LayerRef, out: Float64 | None, xc: NDArray[np.floating] | None = None
    ) -> None:
        """One layer's SYRK, kept whole in ``out`` (n, n) or, when ``out`` is None, as the packed
        upper triangle; the float64 diagonal becomes the layer's row norms either way."""
        self.counts["gram:" + ref.key] += 1
        if xc is None:
            xc = self.centered_data(ref)
        gram = xc @ xc.T  # numpy dispatches A @ A.T to SYRK
        del xc
        if out is None:
            if self._packed is None:
                self._packed = np.empty((len(self.refs), triangle_size(self.n)), dtype=self.dtype)
            pack_upper(gram, self._packed[self._index[ref.key]])
        else:
            np.copyto(out, gram)
        diag = np.diag(gram).astype(np.float64)
        del gram
        self._row_sqnorms.setdefault(ref.key, diag)
        self._check_constant(ref, float(diag.sum()))
        self._have_gram.add(ref.key)
        self.progress("centred Grams", len(self._have_gram), len(self.refs))

    def _cache_file(self, ref: LayerRef) -> Path:
        if self._cache is None:
            root = self.cache_root if self.cache_root is not None else Path(tempfile.gettempdir())
            root.mkdir(parents=True, exist_ok=True)
            self._cache = Path(tempfile.mkdtemp(prefix="repsim-cache-", dir=root))
        return self._cache / f"gram{self._index[ref.key]}.npy"

    def close(self, keep_cache: bool = False) -> None:
        """Drop in-memory statistics and remove the disk cache (unless ``keep_cache``)."""
        self._grams = None
        self._packed = None
        self._resident.clear()
        if self._cache is not None and not keep_cache:
            shutil.rmtree(self._cache, ignore_errors=True)
            self._cache = None

    @property
    def cache_path(self) -> Path | None:
        """The disk cache directory, once something has spilled to it."""
        return self._cache

    def _tiled_pass(self) -> tuple[Float64, list[Float64]]:
        """Tiled mode: every ⟨Kc_a, Kc_b⟩ and row norm, without holding any n×n Gram."""
        if self._tiled is None:
            means = [self.mean(ref) for ref in self.refs]

            def read_block(layer: int, start: int, stop: int) -> NDArray[np.floating]:
                ref = self.refs[layer]
                self.counts["read:" + ref.key] += 1
                block = ref.store.read_rows(ref.name, start, stop)
                self.bytes_read += block.nbytes
                return centered_block(block, means[layer], self.dtype.type)

            inner, sqnorms = tiled_inner_products(
                self.n, len(self.refs), self.plan.tile_rows, read_block,
                progress=lambda done, total: self.progress("Gram tiles", done, total),
            )  # fmt: skip
            for ref, q in zip(self.refs, sqnorms, strict=True):
                self.counts["gram:" + ref.key] += 1
                self._row_sqnorms[ref.key] = q
                self._check_constant(ref, float(q.sum()))
            self._tiled = (inner, sqnorms)
        return self._tiled

    # ---------------------------------------------------------------- feature side
    def _joint_pass(self) -> None:
        """One pass over all layers together: the joint centred cross-product and row norms."""
        widths = [ref.width for ref in self.refs]
        offsets = np.concatenate([[0], np.cumsum(widths)])
        self._offsets = {ref.key: (int(offsets[i]), int(offsets[i + 1])) for i, ref in enumerate(self.refs)}
        means = [self.mean(ref) for ref in self.refs]
        shift = np.concatenate(means)
        rows = self.plan.block_rows or 1024
        sqn = {ref.key: np.empty(self.n) for ref in self.refs}

        def joint_blocks() -> Iterator[tuple[int, np.ndarray]]:
            for start in range(0, self.n, rows):
                stop = min(start + rows, self.n)
                parts = [ref.store.read_rows(ref.name, start, stop) for ref in self.refs]
                self.bytes_read += sum(p.nbytes for p in parts)
                yield start, np.concatenate(parts, axis=1)  # stored dtype: queued blocks stay small

        total = Moments(0, np.zeros(len(shift)), np.zeros((len(shift), len(shift))))
        for start, block in read_ahead(joint_blocks()):
            for ref in self.refs:
                lo, hi = self._offsets[ref.key]
                z = block[:, lo:hi] - shift[lo:hi]
                sqn[ref.key][start : start + block.shape[0]] = np.einsum("ij,ij->i", z, z)
            total = accumulate_block(total, block, shift, self.dtype.type)
            self.progress("feature-side pass", start + block.shape[0], self.n)
        self._joint = finalize(total)
        for ref in self.refs:
            self.counts["cov:" + ref.key] += 1
            self.counts["read:" + ref.key] += 1
            self._row_sqnorms[ref.key] = sqn[ref.key]
            lo, hi = self._offsets[ref.key]
            self._check_constant(ref, float(np.trace(self._joint[lo:hi, lo:hi])))

    def cross_product(self, ref_a: LayerRef, ref_b: LayerRef) -> Float64:
        """XcᵀYc (D_a, D_b) float64 from the joint feature-side pass (run on first use)."""
        if self._joint is None:
            self._joint_pass()
        assert self._joint is not None
        lo_a, hi_a = self._offsets[ref_a.key]
        lo_b, hi_b = self._offsets[ref_b.key]
        return self._joint[lo_a:hi_a, lo_b:hi_b]

    # ---------------------------------------------------------------- both sides
    def row_sqnorms(self, ref: LayerRef) -> Float64:
        """‖xc_i‖² for each sample (n,), float64: the diagonal of Kc."""
        if ref.key not in self._row_sqnorms:
            if self.plan.side == "sample" and self.plan.mode == "tiled":
                self._tiled_pass()
            elif self.plan.side == "feature":
                self.cross_product(ref, ref)
            elif self.plan.mode == "packed":
                self._compute_grams([ref])
            else:
                self.centered_gram(ref)
        return self._row_sqnorms[ref.key]

    def gram_inner_matrix(self, refs_a: Sequence[LayerRef], refs_b: Sequence[LayerRef]) -> Float64:
        """⟨Kc_a, Kc_b⟩_F = ‖XcᵀYc‖²_F for all pairs, shape (len(refs_a), len(refs_b)), float64."""
        if self.plan.side == "feature":
            out = np.empty((len(refs_a), len(refs_b)))
            for i, ra in enumerate(refs_a):
                for j, rb in enumerate(refs_b):
                    c = self.cross_product(ra, rb)
                    out[i, j] = float(np.einsum("ij,ij->", c, c))
            return out
        out = np.empty((len(refs_a), len(refs_b)))
        for i, ra in enumerate(refs_a):
            for j, rb in enumerate(refs_b):
                out[i, j] = self._inner_pair(self._index[ra.key], self._index[rb.key])
        return out

    def _inner_pair(self, a: int, b: int) -> float:
        """⟨Kc_a, Kc_b⟩ from the product of the two fixed groups of layers holding a and b.

        Layers are grouped by index (INNER_GROUP per group); each group pair's inner products come
        from the Grams' upper triangles in fixed row chunks (:mod:`.triangles`: one SYRK or GEMM
        per chunk), cached. Every cell is thus computed by the same BLAS calls whichever cells a
        run asks for, so shards and resumed runs reproduce a single run's values bit for bit, and
        the packed and stacked modes agree exactly.
        """
        if self.plan.mode == "tiled":
            return float(self._tiled_pass()[0][a, b])
        if self.plan.mode == "spilled":
            key = (min(a, b), max(a, b))
            if key not in self._pair_inner:
                ka = self.centered_gram(self.refs[key[0]]).ravel()
                kb = self.centered_gram(self.refs[key[1]]).ravel()
                self._pair_inner[key] = float(np.dot(ka, kb))
            return self._pair_inner[key]
        ga, gb = sorted((a // INNER_GROUP, b // INNER_GROUP))
        block = self._inner_blocks.get((ga, gb))
        if block is None:
            groups = [range(g * INNER_GROUP, min((g + 1) * INNER_GROUP, len(self.refs))) for g in (ga, gb)]
            self._compute_grams([self.refs[idx] for idx in (*groups[0], *groups[1])])
            diags = [np.stack([self._row_sqnorms[self.refs[i].key] for i in g]) for g in groups]
            block = triangle_inner_block(
                self.n, groups[0], None if ga == gb else groups[1], self._triangle_rows,
                diags[0], None if ga == gb else diags[1],
            )  # fmt: skip
            self._inner_blocks[(ga, gb)] = block
        lo_a, lo_b = ga * INNER_GROUP, gb * INNER_GROUP
        if a // INNER_GROUP == ga and b // INNER_GROUP == gb:
            return float(block[a - lo_a, b - lo_b])
        return float(block[b - lo_a, a - lo_b])

    def _triangle_rows(self, layer: int, first: int, stop: int, out: Float64) -> None:
        """Rows [first, stop) of a layer's Gram's strict upper triangle, as float64, into ``out``."""
        if self.plan.mode == "packed":
            assert self._packed is not None
            if self._triangle_offsets is None:
                self._triangle_offsets = triangle_offsets(self.n)
            out[:] = self._packed[layer, self._triangle_offsets[first] : self._triangle_offsets[stop]]
        else:
            assert self._grams is not None
            upper_rows(self._grams[layer], first, stop, out)

    def gram_inner(self, ref_a: LayerRef, ref_b: LayerRef) -> float:
        """⟨Kc_a, Kc_b⟩_F for one pair (float64)."""
        return float(self.gram_inner_matrix([ref_a], [ref_b])[0, 0])

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
        k = kc + (v[:, None] + v[None, :]) + float(mean @ mean)  # exactly symmetric
        if center == "stimuli":
            s = rowsum_c + float(mean.sum())
            k -= np.outer(s, s) / ref.width
        return k

