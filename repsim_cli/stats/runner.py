"""Per-cell statistics of a comparison: bootstrap interval, jackknife error, permutation test.

:class:`CellStatistics` is attached to a :class:`~repsim_cli.compare.Comparison`; the comparison
calls :meth:`CellStatistics.cells` with each block of finished cells and journals what it returns
with the cell, so a resumed run, a shard or a different chunk size gives the same statistics:
every replicate's examples depend only on ``(seed, n)`` (:mod:`.resample`) and each cell's
statistics only on its own two layers.

Two paths: the inner-product metrics (linear CKA, debiased or not; RBF CKA with the bandwidth
fixed at the full sample's) work on each layer's n×n kernel — bootstrap weights through GEMMs
(:mod:`.weighted`), closed-form leave-one-out (:mod:`.jackknife`), permuted or gamma nulls
(:mod:`.nulls`). Every other metric re-prepares its layers on resampled rows (:mod:`.generic`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from ..errors import RepsimError
from ..metrics import MetricSpec
from .adjust import adjust_matrix
from .generic import matrix_on_rows
from .intervals import bca_interval, percentile_interval
from .jackknife import (
    LayerTerms,
    dominating_examples,
    jackknife_se,
    loo_hsic_biased,
    loo_layer_terms,
)
from .loo import dominated_many, double_centre, loo_from_sums
from .nulls import gamma_null, gamma_sf, kernel_spread, permutation_p, permuted_inner_batch
from .options import CellResult, StatsOptions
from .packed import Position, group_rowdots, kernel_rowdots
from .resample import bootstrap_indices, bootstrap_weights, permutations
from .rsa_boot import rsa_replicates
from .weighted import cka_ratio, layer_terms, weighted_hsic, without_diagonal

if TYPE_CHECKING:
    from ..compare import Comparison
    from ..engine import LayerRef
    from ..results import MetricResult, Results

Float64 = NDArray[np.float64]
Cell = tuple[int, int]
FAST_METRICS = ("cka", "cka_rbf")
REPLICATE_CHUNK = 256  # replicates per GEMM (W is n × 256 float64: 4 MB at n = 2000)


def frob(a: Float64, b: Float64) -> float:
    """⟨A, B⟩_F in float64 without BLAS: a threaded ddot costs milliseconds of thread wake-up on a
    busy machine, more than the product itself at these sizes."""
    return float(np.einsum("ij,ij->", a, b))


def engine_gram(comparison: Comparison, ref: LayerRef) -> Float64 | None:
    """A copy of the layer's centred Gram Kc (n, n) float64 as the engine holds it: whole, or
    rebuilt from the packed plan's strict upper triangle and the row norms (None when it holds
    neither)."""
    engine = comparison.engine
    try:
        return np.array(engine.centered_gram(ref), dtype=np.float64)  # a copy: the caller owns it
    except RuntimeError:  # the packed plan gives no whole Gram, but keeps its triangle
        pass
    n = engine.n
    tri = np.empty(n * (n - 1) // 2)
    try:
        getattr(engine._grams, "triangle_rows")(engine.index(ref), 0, n, tri)  # noqa: B009
    except (AttributeError, AssertionError, RuntimeError, NotImplementedError):
        return None
    k: Float64 = np.empty((n, n))
    start = 0
    for i in range(n - 1):  # row i of the strict upper triangle (contiguous slices: no scatter)
        stop = start + n - 1 - i
        k[i, i + 1 :] = tri[start:stop]
        start = stop
    mirror_lower(k)
    k[np.diag_indices(n)] = engine.row_sqnorms(ref)
    return k


def _one_blas_thread() -> Any:
    """threadpoolctl's limit to one BLAS thread (imported when first needed: start-up time)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1)


def mirror_lower(k: Float64, tile: int = 256) -> None:
    """Copy the strict upper triangle of k (n, n) onto its lower triangle, in place, tile by tile
    (a transposed tile stays in cache; a whole-matrix transpose does not)."""
    n = k.shape[0]
    for i0 in range(0, n, tile):
        i1 = min(i0 + tile, n)
        block = k[i0:i1, i0:i1]
        lower = np.tril_indices(i1 - i0, -1)
        block[lower] = block.T[lower]
        for j0 in range(i1, n, tile):
            j1 = min(j0 + tile, n)
            k[j0:j1, i0:i1] = k[i0:i1, j0:j1].T


def is_fast(spec: MetricSpec) -> bool:
    """Does the metric take the kernel path (its states are n×n kernels, fixed per layer)?"""
    return spec.name in FAST_METRICS


def null_adjusted(value: float, null_mean: float, identity: float, kind: str) -> float:
    """Chance-adjusted value (s − E₀s)/(s_max − E₀s) (Hubert & Arabie 1985, the adjusted Rand
    index's form), with s_max the metric's identity value: 0 at the null's mean, 1 at identity;
    for a distance, (E₀d − d)/(E₀d − d_identity)."""
    if kind == "similarity":
        num, den = value - null_mean, identity - null_mean
    else:
        num, den = null_mean - value, null_mean - identity
    return float(num / den) if den != 0 and math.isfinite(den) else math.nan


class CellStatistics:
    """Computes :class:`CellResult` for blocks of cells of one comparison."""

    def __init__(self, comparison: Comparison, options: StatsOptions) -> None:
        self.comparison = comparison
        self.options = options
        self.n = comparison.plan.n
        # the bootstrap's GEMMs run in the run's precision (float32 for float32 stores), their
        # sums accumulated in float64 — the engine's convention
        self.dtype = np.dtype(comparison.plan.compute_dtype)
        for spec in comparison.specs:
            if options.null == "gamma" and not (is_fast(spec) and not spec.params.get("debiased")):
                raise RepsimError(
                    f"--null gamma: metric {spec.text!r} has no gamma approximation (it exists for "
                    "biased HSIC/CKA: cka and cka_rbf without debiased); use --null permutation"
                )
            if (options.bootstrap or options.jackknife) and self.n < 4:
                raise RepsimError(f"resampling statistics need at least 4 examples, got n={self.n}")
        self._kernels: dict[tuple[str, str], Float64] = {}
        self._numbers: dict[tuple[str, str, str], float] = {}
        self._terms: dict[tuple[str, str], LayerTerms] = {}
        self._packed_loo: dict[tuple[str, str], Float64] = {}
        self._data: dict[str, np.ndarray] = {}
        self._check_memory()
        self._boot = bootstrap_indices(options.seed, self.n, options.bootstrap) if options.bootstrap else None
        self._perms = permutations(options.seed, self.n, options.permutations) if options.permutations else None

    # ------------------------------------------------------------------ memory
    def packed_jackknife_only(self, spec: MetricSpec) -> bool:
        """Will the metric's jackknife run from the packed plan's triangles (no kernel held)?"""
        opts, plan = self.options, self.comparison.plan
        return (spec.name == "cka" and not spec.params.get("debiased") and opts.jackknife
                and not (opts.bootstrap or opts.testing) and plan.side == "sample"
                and getattr(plan.strategy, "name", "") == "packed")  # fmt: skip

    def memory_need(self) -> tuple[int, int, int]:
        """(kernels held for the run, their count, peak working memory) of the kernel path, bytes:
        each layer's n×n float64 kernel (plus its zero-diagonal copy for the unbiased estimator's
        resampling and its leave-one-out copy for the unbiased jackknife), and the largest
        transient buffers (bootstrap weights and per-layer terms, the permutation batch, the
        leave-one-out GEMMs' tiles and sums)."""
        from ..engine.strategies.held import INNER_GROUP
        from .nulls import batch_bytes
        from .packed import kernel_working_bytes, working_bytes

        opts, n = self.options, self.n
        work = self.comparison.work()
        held = count = working = 0

        def groups_of(layers: int) -> tuple[list[int], int]:
            """The sizes of the engine's groups holding ``layers`` layers, and their pairs."""
            groups = -(-layers // INNER_GROUP)
            return [INNER_GROUP] * (groups - 1) + [layers - INNER_GROUP * (groups - 1)], groups * (groups + 1) // 2

        for spec in self.comparison.specs:
            layers = int(work[spec.text]["states"])
            if spec.name == "dcor" and opts.needs_loo:  # closed-form leave-one-out: its kernel held
                count += layers
                held += layers * n * n * 8
                working = max(working, kernel_working_bytes(n, *groups_of(layers)))
            if not is_fast(spec):
                continue
            if self.packed_jackknife_only(spec):  # the engine's groups, each pair of them
                working = max(working, working_bytes(n, *groups_of(layers)))
                continue
            unbiased = bool(spec.params.get("debiased"))
            copies = 1 + int(unbiased and (opts.bootstrap > 0 or opts.testing)) + int(unbiased and opts.needs_loo)
            count += copies * layers
            held += copies * layers * n * n * 8
            if opts.bootstrap:
                working = max(working, (1 + 2 * layers) * n * REPLICATE_CHUNK * 8)
            if opts.permutations:
                working = max(working, batch_bytes(n))
            if opts.needs_loo:
                sizes, blocks = groups_of(layers)
                working = max(working, kernel_working_bytes(n, sizes, blocks, layers * len(sizes) * unbiased))
        return held, count, working

    def _check_memory(self) -> None:
        """Count the kernel path's memory against ``--memory``: refuse a run that cannot hold it
        beside the engine plan's peak, and take it out of the states' budget."""
        from .._units import format_size

        held, count, working = self.memory_need()
        if not (held or working):
            return
        plan = self.comparison.plan
        need = int(plan.peak_bytes) + held + working
        if need > plan.budget:
            raise RepsimError(
                f"the statistics' kernel path holds {count} kernels of {self.n}×{self.n} float64 "
                f"({format_size(held)}) and {format_size(working)} of working memory beside the plan's "
                f"peak of {format_size(int(plan.peak_bytes))}: about {format_size(need)}, over the memory "
                f"budget of {format_size(plan.budget)}; give --memory {format_size(need)} or more, or "
                "compare fewer layers per run (--layers, or --shard and merge)"
            )
        states = getattr(self.comparison, "states", None)
        if states is not None:
            states.budget = max(0, int(states.budget) - held - working)

    # ------------------------------------------------------------------ inputs
    def kernel(self, spec: MetricSpec, ref: LayerRef) -> Float64:
        """The layer's kernel for the fast path (n, n) float64, kept for the run: linear CKA's
        centred Gram (from the engine's Gram or its packed triangle on the sample side; on the
        feature side, XcXcᵀ from one more read of the centred layer);
        RBF CKA's centred (U-centred when debiased) kernel from its state."""
        key = (spec.name + repr(sorted(spec.params.items())), ref.key)
        if key not in self._kernels:
            if spec.name == "cka":
                k = None
                if self.comparison.plan.side == "sample":
                    k = engine_gram(self.comparison, ref)
                if k is None:
                    xc = np.asarray(self.comparison.engine.centered_data(ref), dtype=np.float64)
                    k = xc @ xc.T
            else:
                state = self.comparison.state(spec, ref)
                vec = state.vector
                k = np.full((self.n, self.n), np.nan) if vec is None else np.array(vec, dtype=np.float64)
                k = k.reshape(self.n, self.n)
            # exactly centred in float64 (the engine's Gram is centred to its GEMM precision):
            # HKH changes no statistic and keeps every row sum at zero (the jackknife uses it)
            self._kernels[key] = double_centre(k, copy=False)
        return self._kernels[key]

    def _layer_number(self, spec: MetricSpec, ref: LayerRef, what: str) -> float:
        """A per-layer scalar of the kernel, once per run: ``self`` ⟨K, K⟩ or ``spread``
        (:func:`~repsim_cli.stats.nulls.kernel_spread`)."""
        key = (spec.text, ref.key, what)
        if key not in self._numbers:
            k = self.kernel(spec, ref)
            self._numbers[key] = frob(k, k) if what == "self" else kernel_spread(k)
        return self._numbers[key]

    def _loo_terms(self, spec: MetricSpec, ref: LayerRef, unbiased: bool) -> LayerTerms:
        """A layer's kernel prepared for the leave-one-out closed form, once per run."""
        key = (spec.text, ref.key)
        if key not in self._terms:
            self._terms[key] = loo_layer_terms(self.kernel(spec, ref), unbiased=unbiased)
        return self._terms[key]

    def data(self, ref: LayerRef) -> np.ndarray:
        """The layer's rows in memory (n, D) as stored (read once per run)."""
        if ref.key not in self._data:
            self._data[ref.key] = np.concatenate([b for _, b in self.comparison.engine.blocks(ref)])
        return self._data[ref.key]

    # ------------------------------------------------------------------ cells
    def cells(self, spec: MetricSpec, rows: list[int], cols: list[int], wanted: list[Cell],
              values: dict[Cell, float]) -> dict[Cell, CellResult]:
        """Statistics of the ``wanted`` cells of a block (their observed ``values``)."""
        if not wanted:
            return {}
        refs_a, refs_b = self.comparison.refs_a, self.comparison.refs_b
        out = {c: CellResult() for c in wanted}
        if is_fast(spec):
            self._fast(spec, wanted, values, out)
        else:
            self._generic(spec, wanted, values, out, refs_a, refs_b)
        for c, res in out.items():
            if "null_mean" in res.stats:
                res.stats["null_adjusted"] = null_adjusted(
                    values[c], res.stats["null_mean"], spec.info.identity, spec.info.kind)
        return out

    def _fast(self, spec: MetricSpec, wanted: list[Cell], values: dict[Cell, float],
              out: dict[Cell, CellResult]) -> None:
        opts, n = self.options, self.n
        unbiased = bool(spec.params.get("debiased"))
        refs_a, refs_b = self.comparison.refs_a, self.comparison.refs_b

        def kern(ref: LayerRef, zero_diag: bool) -> Float64:
            if not zero_diag:
                return self.kernel(spec, ref)
            key = ("nodiag:" + spec.name + repr(sorted(spec.params.items())), ref.key)
            if key not in self._kernels:
                self._kernels[key] = without_diagonal(self.kernel(spec, ref))
            return self._kernels[key]

        loo = None  # the kernel path's leave-one-out values, when the bootstrap's BCa needs them
        bca = self._boot is not None and opts.ci_method == "bca"
        if bca:
            with _one_blas_thread():  # small GEMMs: thread wake-ups cost more than they give
                loo = self._fast_loo(spec, wanted, unbiased)
        if self._boot is not None:
            with _one_blas_thread():  # many mid-sized GEMMs: thread wake-ups cost more than they give
                self._fast_bootstrap(spec, wanted, values, unbiased, kern, out, loo)
        if opts.jackknife and bca:  # the same leave-one-out values (None: n too small, said once)
            if loo is not None:
                self._jackknife_summary(wanted, values, loo, out)
        elif opts.jackknife:
            with _one_blas_thread():  # small GEMMs: thread wake-ups cost more than they give
                self._fast_jackknife(spec, wanted, values, unbiased, out)
        if opts.null == "gamma":
            for c in wanted:
                ra, rb = refs_a[c[0]], refs_b[c[1]]
                kc, lc = self.kernel(spec, ra), self.kernel(spec, rb)
                stat, mean, var = gamma_null(kc, lc, self._layer_number(spec, ra, "spread"),
                                             self._layer_number(spec, rb, "spread"))  # fmt: skip
                denom = math.sqrt(self._layer_number(spec, ra, "self") * self._layer_number(spec, rb, "self"))
                scale = n * n / denom if denom > 0 else math.nan
                out[c].stats.update(p_value=gamma_sf(stat, mean, var, n), null_mean=mean * scale,
                                    null_std=math.sqrt(var) * scale if var > 0 else math.nan)
        elif self._perms is not None:
            # every cell of the block from batched GEMMs (one gather per column layer and π)
            rows = {i: r for r, i in enumerate(dict.fromkeys(c[0] for c in wanted))}
            cols = {j: r for r, j in enumerate(dict.fromkeys(c[1] for c in wanted))}
            kas = [kern(refs_a[i], unbiased) for i in rows]
            lbs = [kern(refs_b[j], unbiased) for j in cols]
            with _one_blas_thread():  # on a busy machine threaded GEMMs of this shape lose to one thread
                inner = permuted_inner_batch(kas, lbs, self._perms)
            for c in wanted:
                ka, lb = kas[rows[c[0]]], lbs[cols[c[1]]]
                null, observed = self._null_cka(ka, lb, inner[rows[c[0]], cols[c[1]]], unbiased)
                self._test_summary(observed, null, spec.info.kind, out[c])

    def _loo_ratios(self, spec: MetricSpec, wanted: list[Cell], unbiased: bool) -> dict[Cell, Float64]:
        """Each cell's (n,) leave-one-out values of HSIC(a, b)/√(HSIC(a, a)·HSIC(b, b)) from the
        layers' kernels (CKA; dCor² for dcor's distance matrices), by the closed form of
        :mod:`.jackknife`: every pair's Hadamard row sums at once as small GEMMs over the engine's
        layer groups (:func:`.packed.kernel_rowdots`), and for the unbiased estimator each
        kernel's products with a group's row sums as one GEMM — shapes the layout fixes, so the
        values do not depend on the block, shard or resume point. A layer's own values are kept
        for the run."""
        refs_a, refs_b = self.comparison.refs_a, self.comparison.refs_b
        refs = {r.key: r for c in wanted for r in (refs_a[c[0]], refs_b[c[1]])}
        terms = {k: self._loo_terms(spec, r, unbiased) for k, r in refs.items()}
        own = {k: ("loo:" + spec.text, k) for k in refs}
        def pair(i: int, j: int) -> tuple[str, str]:
            ka, kb = refs_a[i].key, refs_b[j].key
            return (ka, kb) if ka <= kb else (kb, ka)

        pairs = [(k, k) for k in refs if own[k] not in self._kernels]
        pairs += list(dict.fromkeys(pair(i, j) for i, j in wanted if refs_a[i].key != refs_b[j].key))
        spans, places = self._group_places(list(refs.values()))
        where = dict(zip(refs, places, strict=True))
        groups: list[list[Float64 | None]] = [[None] * len(span) for span in spans]
        for k, (g, place) in where.items():
            groups[g][place] = terms[k].k  # a layer of the group this block does not hold: None
        hs = kernel_rowdots(groups, [(where[a], where[b]) for a, b in pairs], self.n)
        products: dict[tuple[str, int], Float64] = {}

        def times_row_sums(k: str, g: int) -> Float64:
            """K_k @ R_g (n, |g|): the kernel against the row sums of group g's layers held here."""
            if (k, g) not in products:
                sums = np.zeros((self.n, len(groups[g])))
                for other, (h, place) in where.items():
                    if h == g and terms[other].r is not None:
                        sums[:, place] = terms[other].r
                products[(k, g)] = terms[k].k @ sums
            return products[(k, g)]

        loo: dict[tuple[str, str], Float64] = {}
        for (a, b), h in zip(pairs, hs, strict=True):
            ta, tb = terms[a], terms[b]
            if ta.r is None or tb.r is None:
                loo[(a, b)] = loo_from_sums(h, ta.diag, tb.diag, debiased=unbiased)
            else:
                loo[(a, b)] = loo_from_sums(h, ta.diag, tb.diag, debiased=unbiased, r=ta.r, s=tb.r,
                                            l_r=times_row_sums(b, where[a][0])[:, where[a][1]],
                                            k_s=times_row_sums(a, where[b][0])[:, where[b][1]])  # fmt: skip
            if a == b:
                self._kernels[own[a]] = loo[(a, b)]
        out = {}
        for i, j in wanted:
            ka, kb = refs_a[i].key, refs_b[j].key
            h_aa, h_bb = self._kernels[own[ka]], self._kernels[own[kb]]
            out[(i, j)] = cka_ratio(h_aa if ka == kb else loo[pair(i, j)], h_aa, h_bb)
        return out

    def _fast_loo(self, spec: MetricSpec, wanted: list[Cell], unbiased: bool) -> dict[Cell, Float64] | None:
        """The kernel path's closed-form leave-one-out values (n,) of every cell; None (with a
        warning) when n is too small for the estimator to survive leaving one out."""
        least = 5 if unbiased else 3  # leaving one out must leave what the estimator needs
        if self.n < least:
            import warnings

            from .._warnings import RepsimWarning

            empty = " and ".join(["the jackknife's standard errors"] * self.options.jackknife
                                 + ["the BCa intervals"] * (self.options.ci_method == "bca" and self.options.bootstrap > 0))
            warnings.warn(f"{spec.text}: leaving one example out needs at least {least} examples "
                          f"(n={self.n}); {empty} are left empty", RepsimWarning, stacklevel=2)  # fmt: skip
            return None
        return self._loo_ratios(spec, wanted, unbiased)

    @staticmethod
    def _jackknife_summary(wanted: list[Cell], values: dict[Cell, float], loo: dict[Cell, Float64],
                           out: dict[Cell, CellResult]) -> None:
        """Each cell's jackknife standard error and dominating examples from its leave-one-out values."""
        for c in wanted:
            out[c].std_error = jackknife_se(loo[c])
            out[c].dominated = [int(k) for k in dominating_examples(values[c], loo[c])]

    def _fast_jackknife(self, spec: MetricSpec, wanted: list[Cell], values: dict[Cell, float],
                        unbiased: bool, out: dict[Cell, CellResult]) -> None:
        """Jackknife of the kernel path: the closed-form leave-one-out values of every cell."""
        if self._packed_jackknife(spec, wanted, values, unbiased, out):  # it checks n itself
            return
        loo = self._fast_loo(spec, wanted, unbiased)
        if loo is not None:
            self._jackknife_summary(wanted, values, loo, out)

    def _packed_jackknife(self, spec: MetricSpec, wanted: list[Cell], values: dict[Cell, float],
                          unbiased: bool, out: dict[Cell, CellResult]) -> bool:
        """The biased linear-CKA jackknife straight from the packed plan's Gram triangles
        (:mod:`.packed`), when the jackknife is the only statistic (the others need whole kernels
        anyway) and no whole kernel was built; False when it does not apply."""
        opts, cmp = self.options, self.comparison
        if (spec.name != "cka" or unbiased or opts.bootstrap or opts.testing or cmp.plan.side != "sample"
                or self.n < 3):  # fmt: skip
            return False
        refs = {r.key: r for c in wanted for r in (cmp.refs_a[c[0]], cmp.refs_b[c[1]])}
        if any((spec.name + repr(sorted(spec.params.items())), k) in self._kernels for k in refs):
            return False
        grouped = self._engine_groups(list(refs.values()))
        if grouped is None:
            return False
        stacks, group_diags, where = grouped
        keys = list(refs)
        pos = {k: i for i, k in enumerate(keys)}
        selfs = [k for k in keys if ("packed-self", k) not in self._packed_loo]
        pairs = [(pos[k], pos[k]) for k in selfs]
        cross = [(cmp.refs_a[i].key, cmp.refs_b[j].key) for i, j in wanted]
        pairs += [(pos[a], pos[b]) for a, b in dict.fromkeys(cross) if a != b]
        # the engine's Grams are of column-centred data: double-centred already
        with _one_blas_thread():  # small GEMMs from two threads: BLAS's own threads only contend
            hs = group_rowdots(stacks, group_diags, [(where[a], where[b]) for a, b in pairs], self.n)
        diags = [group_diags[where[i][0]][where[i][1]] for i in range(len(keys))]
        loo: dict[tuple[str, str], Float64] = {}
        for (a, b), h in zip(pairs, hs, strict=True):
            loo[(keys[a], keys[b])] = loo_hsic_biased(h, diags[a], diags[b])
        for k in selfs:
            self._packed_loo[("packed-self", k)] = loo[(k, k)]
        cells = []
        for c, (ka, kb) in zip(wanted, cross, strict=True):
            h_aa, h_bb = self._packed_loo[("packed-self", ka)], self._packed_loo[("packed-self", kb)]
            cells.append(cka_ratio(h_aa if ka == kb else loo[(ka, kb)], h_aa, h_bb))
            out[c].std_error = jackknife_se(cells[-1])
        if cells:  # the dominance rule for every cell at once (medians along rows)
            flagged = dominated_many([values[c] for c in wanted], np.stack(cells))
            for c, found in zip(wanted, flagged, strict=True):
                out[c].dominated = [int(k) for k in found]
        return True

    def _group_places(self, layers: list[LayerRef]) -> tuple[list[range], list[Position]]:
        """The engine's groups of layers that hold ``layers`` (INNER_GROUP by index, as its inner
        products group them: fixed by the layout, so a pair's products are the same BLAS call in
        any shard or resume), as the ranges of engine indices they span in order of first use,
        and where each layer sits: (group, place)."""
        from ..engine.strategies.held import INNER_GROUP

        engine = self.comparison.engine
        numbers: dict[int, int] = {}
        spans: list[range] = []
        where: list[Position] = []
        for ref in layers:
            g, place = divmod(engine.index(ref), INNER_GROUP)
            if g not in numbers:
                numbers[g] = len(spans)
                spans.append(range(g * INNER_GROUP, min((g + 1) * INNER_GROUP, len(engine.refs))))
            where.append((numbers[g], place))
        return spans, where

    def _engine_groups(self, layers: list[LayerRef]) -> tuple[
            list[NDArray[np.floating]], list[Float64], list[Position]] | None:
        """The engine's groups holding ``layers`` (:meth:`_group_places`) as their packed triangles
        and float64 diagonals (|g|, n), and where each layer sits (group, place); None unless the
        plan holds packed triangles, all built (the engine builds both groups of every cell it
        computes)."""
        engine = self.comparison.engine
        spans, where = self._group_places(layers)
        stacks: list[NDArray[np.floating]] = []
        for span in spans:
            stack = engine.triangle_stack(span.start, span.stop)
            if stack is None:
                return None
            stacks.append(stack)
        diags = [np.stack([engine.row_sqnorms(m) for m in engine.refs[span.start : span.stop]]) for span in spans]
        return stacks, diags, where

    def _fast_bootstrap(self, spec: MetricSpec, wanted: list[Cell], values: dict[Cell, float], unbiased: bool,
                        kern: Callable[[LayerRef, bool], Float64], out: dict[Cell, CellResult],
                        loo: dict[Cell, Float64] | None) -> None:
        """Bootstrap replicates of the kernel path: weights through GEMMs (:mod:`.weighted`)."""
        assert self._boot is not None
        opts, n = self.options, self.n
        refs_a, refs_b = self.comparison.refs_a, self.comparison.refs_b
        reps: dict[Cell, list[Float64]] = {c: [] for c in wanted}
        layer_refs = {r.key: r for c in wanted for r in (refs_a[c[0]], refs_b[c[1]])}
        kernels = {key: kern(r, unbiased) for key, r in layer_refs.items()}
        for start in range(0, opts.bootstrap, REPLICATE_CHUNK):
            w = np.ascontiguousarray(bootstrap_weights(self._boot[start : start + REPLICATE_CHUNK], n))
            terms = {key: layer_terms(k, w, self.dtype) for key, k in kernels.items()}
            selfs = {key: weighted_hsic(k, k, w, terms[key][0], terms[key][0], terms[key][1],
                                        terms[key][1], unbiased=unbiased, dtype=self.dtype)
                     for key, k in kernels.items()}  # fmt: skip
            for c in wanted:
                ka, kb = refs_a[c[0]].key, refs_b[c[1]].key
                if ka == kb:
                    reps[c].append(cka_ratio(selfs[ka], selfs[ka], selfs[ka]))
                    continue
                (aw, aa), (bw, bb) = terms[ka], terms[kb]
                h = weighted_hsic(kernels[ka], kernels[kb], w, aw, bw, aa, bb, unbiased=unbiased,
                                  dtype=self.dtype)  # fmt: skip
                reps[c].append(cka_ratio(h, selfs[ka], selfs[kb]))
        for c in wanted:
            self._bootstrap_summary(np.concatenate(reps[c]), out[c], values[c], None if loo is None else loo[c])

    def _null_cka(self, k: Float64, l_: Float64, inner: Float64, unbiased: bool) -> tuple[Float64, float]:
        """Null CKA values of the permutations from their ⟨K, L_π⟩, and the observed CKA in the
        same arithmetic."""
        n = self.n
        if not unbiased:
            denom = math.sqrt(frob(k, k) * frob(l_, l_))
            return inner / denom, frob(k, l_) / denom
        one = np.ones((n, 1))
        kw, kk = layer_terms(k, one)
        lw, ll = layer_terms(l_, one)
        h_aa = weighted_hsic(k, k, one, kw, kw, kk, kk, unbiased=True)
        h_bb = weighted_hsic(l_, l_, one, lw, lw, ll, ll, unbiased=True)
        r, s = kw[:, 0], lw[:, 0]
        # n(n−3)·HSIC_u of (K, L_π): trace term permuted, 1ᵀK1·1ᵀL1 fixed, 1ᵀK L_π 1 = Σ r_i s_π(i)
        assert self._perms is not None
        cross = s[self._perms] @ r
        h = inner + kk[0] * ll[0] / ((n - 1.0) * (n - 2.0)) - 2.0 / (n - 2.0) * cross
        observed = weighted_hsic(k, l_, one, kw, lw, kk, ll, unbiased=True)
        return cka_ratio(h, h_aa, h_bb), float(cka_ratio(observed, h_aa, h_bb)[0])

    def _bootstrap_summary(self, reps: Float64, res: CellResult, estimate: float,
                           loo: Float64 | None) -> None:
        """A cell's interval from its replicates (BCa from its estimate and leave-one-out values
        when asked for and available, else NaN), and their SD as std_error without --jackknife."""
        if self.options.ci_method == "bca":
            lo, hi = (math.nan, math.nan) if loo is None else bca_interval(reps, estimate, loo, self.options.ci)
        else:
            lo, hi = percentile_interval(reps, self.options.ci)
        res.stats.update(ci_low=lo, ci_high=hi)
        finite = reps[np.isfinite(reps)]
        if not self.options.jackknife and finite.size > 1:
            res.std_error = float(np.std(finite, ddof=1))

    def _test_summary(self, observed: float, null: Float64, kind: str, res: CellResult) -> None:
        finite = null[np.isfinite(null)]
        res.stats.update(
            p_value=permutation_p(observed, null, kind),
            null_mean=float(finite.mean()) if finite.size else math.nan,
            null_std=float(finite.std(ddof=1)) if finite.size > 1 else math.nan,
        )

    def _generic(self, spec: MetricSpec, wanted: list[Cell], values: dict[Cell, float],
                 out: dict[Cell, CellResult], refs_a: list[LayerRef], refs_b: list[LayerRef]) -> None:
        opts, n = self.options, self.n
        rows = sorted({i for i, _ in wanted})
        cols = sorted({j for _, j in wanted})
        row_keys = [refs_a[i].key for i in rows]
        col_keys = [refs_b[j].key for j in cols]
        data = {refs_a[i].key: self.data(refs_a[i]) for i in rows}
        data.update({refs_b[j].key: self.data(refs_b[j]) for j in cols})
        pos = {c: (rows.index(c[0]), cols.index(c[1])) for c in wanted}

        def collect(mats: list[Float64]) -> dict[Cell, Float64]:
            stack = np.stack(mats)
            return {c: stack[:, pos[c][0], pos[c][1]] for c in wanted}

        loo: dict[Cell, Float64] | None = None
        if opts.needs_loo and spec.name == "dcor":
            with _one_blas_thread():
                loo = self._dcor_loo(spec, wanted)
        elif opts.needs_loo:  # n recomputations, each on all rows but one
            everyone = np.arange(n)
            loo = collect([matrix_on_rows(spec, data, row_keys, col_keys, np.delete(everyone, k))
                           for k in range(n)])  # fmt: skip
        if self._boot is not None:
            if spec.name == "rsa":  # copy–copy pairs excluded (see .rsa_boot)
                stack = rsa_replicates(spec.params, data, row_keys, col_keys, self._boot)
                reps = {c: stack[:, pos[c][0], pos[c][1]] for c in wanted}
            else:
                reps = collect([matrix_on_rows(spec, data, row_keys, col_keys, idx) for idx in self._boot])
            for c in wanted:
                self._bootstrap_summary(reps[c], out[c], values[c], None if loo is None else loo[c])
        if opts.jackknife and loo is not None:
            self._jackknife_summary(wanted, values, loo, out)
        if self._perms is not None:
            everyone = np.arange(n)
            observed = matrix_on_rows(spec, data, row_keys, col_keys, everyone, everyone)
            null = collect([matrix_on_rows(spec, data, row_keys, col_keys, everyone, p) for p in self._perms])
            for c in wanted:
                self._test_summary(float(observed[pos[c]]), null[c], spec.info.kind, out[c])

    def _dcor_loo(self, spec: MetricSpec, wanted: list[Cell]) -> dict[Cell, Float64]:
        """Distance correlation's leave-one-out values in closed form: dCor² is biased CKA of the distance
        matrices, and leaving an example out deletes its row and column of each distance matrix
        (no other distance changes), so :mod:`.jackknife`'s leave-one-out formulas apply to the
        layers' double-centred distance matrices (their states); dCor = √max(dCor², 0), as
        ``repsim influence`` computes it. O(n²) per cell instead of n recomputations."""
        loo = {}
        for c, ratio in self._loo_ratios(spec, wanted, False).items():
            with np.errstate(invalid="ignore"):
                loo[c] = np.sqrt(np.where(ratio < 0.0, 0.0, ratio))
        return loo

    # ------------------------------------------------------------------ run summary
    def describe(self) -> list[str]:
        """``--dry-run`` lines: per metric, the path and the work of each statistic."""
        opts, n = self.options, self.n
        lines = [f"statistics (seed {opts.seed}): "
                 + ", ".join(x for x in (
                     f"bootstrap {opts.bootstrap} ({opts.ci:g} {'BCa' if opts.ci_method == 'bca' else 'percentile'} "
                     "intervals)" if opts.bootstrap else "",
                     "jackknife" if opts.jackknife else "",
                     f"null {opts.null}" + (f" ({opts.permutations} permutations)" if opts.null == "permutation"
                                            and opts.permutations else "") if opts.testing else "",
                     f"adjust {opts.adjust}" if opts.testing else "") if x)]  # fmt: skip
        work = self.comparison.work()
        held, count, working = self.memory_need()
        if held or working:
            from .._units import format_size

            plan = self.comparison.plan
            lines.append(f"  kernel-path memory: {count} kernels ({format_size(held)}) + working "
                         f"{format_size(working)}; with the plan's peak "
                         f"{format_size(int(plan.peak_bytes) + held + working)} of the "
                         f"{format_size(plan.budget)} budget (counted against it)")  # fmt: skip
        for spec in self.comparison.specs:
            w = work[spec.text]
            cells, states = int(w["cells"]), int(w["states"])
            if is_fast(spec):
                flops = 0.0
                if opts.bootstrap:
                    flops += 2.0 * n * n * opts.bootstrap * (cells + 2 * states)
                if opts.needs_loo:
                    flops += 10.0 * n * n * cells
                if opts.null == "permutation" and opts.permutations:
                    flops += 2.0 * n * n * opts.permutations * cells
                holds = ("no kernel held (the jackknife reads the packed Gram triangles)"
                         if self.packed_jackknife_only(spec) else f"{states} kernels of {n}×{n} float64 held")
                lines.append(f"  {spec.text}: kernel path (no layer re-prepared), about {flops:.3g} flops, "
                             f"{holds}")  # fmt: skip
            else:
                loo_reps = n if opts.needs_loo and spec.name != "dcor" else 0  # dcor: closed form
                reps = opts.bootstrap + loo_reps + (opts.permutations + 1 if opts.permutations else 0)
                factor = 2 if opts.permutations else 1
                lines.append(
                    f"  {spec.text}: WARNING generic path: every layer re-prepared on resampled rows, "
                    f"{reps} replicates × {states} layers (×{factor} for permutations) = about "
                    f"{reps * states * factor} prepare stages and {reps * cells} pair stages"
                    + (f" (leaving each example out, for the {self._loo_users()}: {n} replicates)" if loo_reps else "")
                    + (" (leave-one-out in closed form)" if opts.needs_loo and not loo_reps else "")
                )
        return lines

    def _loo_users(self) -> str:
        """What the leave-one-out values serve: the jackknife, BCa's acceleration, or both."""
        opts = self.options
        users = ["jackknife"] * opts.jackknife + ["BCa acceleration"] * (opts.bootstrap > 0 and opts.ci_method == "bca")
        return " and ".join(users)

    def finish(self, spec: MetricSpec, result: MetricResult, labels: tuple[list[str], list[str]],
               dominated: dict[Cell, list[int]]) -> None:
        """After a metric's matrix: adjust its p-values and warn about dominated cells."""
        if self.options.testing:
            adjust_result(result, labels, self.options.adjust)
        warn_dominated(self.comparison, spec, dominated)
        warn_biased_intervals(spec, result)
        if self.options.bootstrap and self.options.ci_method == "bca":
            warn_empty_intervals(spec, result)


def adjust_result(result: MetricResult, labels: tuple[list[str], list[str]], method: str) -> None:
    """Fill ``p_adjusted`` of one metric's results from its ``p_value`` over the whole matrix
    (``labels``: the rows' and columns' layer labels, unique within the run)."""
    p = result.stats.get("p_value")
    if p is None or not np.isfinite(p).any():
        return
    result.stats["p_adjusted"] = adjust_matrix(p, labels[0], labels[1], result.symmetric, method)


def result_labels(results: Results) -> tuple[list[str], list[str]]:
    """Row and column labels of a results matrix, unique within it (model index and layer)."""
    return ([f"{m}/{name}" for m, name in zip(results.row_models, results.layers_a, strict=True)],
            [f"{m}/{name}" for m, name in zip(results.col_models, results.layers_b, strict=True)])  # fmt: skip


def adjust_results(results: Results) -> None:
    """Recompute every metric's ``p_adjusted`` over its whole matrix, by the method the run
    recorded (results attribute ``statistics``); merge calls it once the shards are united."""
    settings = results.attrs.get("statistics")
    if not isinstance(settings, dict) or not settings.get("adjust"):
        return
    labels = result_labels(results)
    for m in results.metrics.values():
        adjust_result(m, labels, str(settings["adjust"]))


def warn_dominated(comparison: Comparison, spec: MetricSpec, dominated: dict[Cell, list[int]]) -> None:
    """One warning line per cell that a handful of examples dominate (≤ 1% of them), with the
    ``repsim influence`` command that shows which."""
    import warnings

    from .._warnings import RepsimWarning

    n = comparison.plan.n
    for (i, j), examples in sorted(dominated.items()):
        if not examples or len(examples) > max(1, n // 100):
            continue
        ra, rb = comparison.refs_a[i], comparison.refs_b[j]
        warnings.warn(
            f"{spec.text} ({ra.name}, {rb.name}): {len(examples)} of {n} examples dominate the value "
            f"(leaving one out moves it beyond the influence threshold); see: repsim influence "
            f"{ra.store.path} {rb.store.path} --layer-a {ra.name} --layer-b {rb.name} -m {spec.text}",
            RepsimWarning, stacklevel=2,
        )


def warn_empty_intervals(spec: MetricSpec, result: MetricResult) -> None:
    """One warning line when BCa intervals are undefined for cells with a value: every replicate
    on one side of the value (z₀ infinite, the bootstrap as biased as it gets) or fewer than two
    finite leave-one-out values."""
    import warnings

    from .._warnings import RepsimWarning

    low, high = result.stats.get("ci_low"), result.stats.get("ci_high")
    if low is None or high is None:
        return
    with np.errstate(invalid="ignore"):
        valued = np.isfinite(result.value)
        empty = valued & ~(np.isfinite(low) & np.isfinite(high))
    if empty.any():
        warnings.warn(
            f"{spec.text}: no BCa interval in {int(empty.sum())} of {int(valued.sum())} cells (every "
            "bootstrap replicate on one side of the value, or too few leave-one-out values); "
            "prefer --jackknife standard errors, or see the percentile intervals (--ci-method percentile)",
            RepsimWarning, stacklevel=2,
        )


def warn_biased_intervals(spec: MetricSpec, result: MetricResult) -> None:
    """One warning line when bootstrap intervals exclude their own cell's value: the bootstrap
    distribution is then shifted (for metrics on the generic path, copies of an example inside a
    replicate act as extra weight on it), so the percentile interval is not to be trusted."""
    import warnings

    from .._warnings import RepsimWarning

    low, high = result.stats.get("ci_low"), result.stats.get("ci_high")
    if low is None or high is None:
        return
    with np.errstate(invalid="ignore"):
        judged = np.isfinite(low) & np.isfinite(high) & np.isfinite(result.value)
        outside = judged & ((result.value < low) | (result.value > high))
    if outside.any():
        warnings.warn(
            f"{spec.text}: the bootstrap interval excludes the cell's own value in "
            f"{int(outside.sum())} of {int(judged.sum())} cells (the bootstrap is biased for this "
            "metric at this n); prefer --jackknife standard errors for it",
            RepsimWarning, stacklevel=2,
        )


def attach_statistics(comparison: Comparison, options: StatsOptions | None) -> None:
    """Give a prepared comparison its per-cell statistics (nothing when none are asked for)."""
    if options is not None and options.active:
        comparison.statistics = CellStatistics(comparison, options)
