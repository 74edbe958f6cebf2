"""``compare_stores``: every requested metric over every layer pair of one or two stores."""

from __future__ import annotations

import fnmatch
import json
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._progress import ProgressFn, no_progress
from ._version import __version__
from .engine import GramEngine, LayerCost, LayerRef, Plan, make_plan
from .engine.plan import Side
from .errors import LayerNotFoundError, ShapeMismatchError
from .metrics import MetricSpec, parse_spec
from .results import MetricResult, Results
from .schedule import Journal, Shard, covering_blocks, matrix_cells, shard_cells
from .store import ActivationStore, open_store


def select_layers(store: ActivationStore, patterns: Sequence[str] | None) -> list[str]:
    """Layers of ``store`` matching any glob in ``patterns`` (all when None), in store order.

    Each pattern may hold several globs separated by commas. A pattern matching nothing raises
    :class:`LayerNotFoundError` listing the available layers.
    """
    if not patterns:
        return list(store.layers)
    globs = [g.strip() for p in patterns for g in p.split(",") if g.strip()]
    for g in globs:
        if not any(fnmatch.fnmatchcase(name, g) for name in store.layers):
            raise LayerNotFoundError(
                f"{store.path}: no layer matches {g!r}; available: {', '.join(store.layers)}"
            )
    return [name for name in store.layers if any(fnmatch.fnmatchcase(name, g) for g in globs)]


def check_aligned(a: ActivationStore, b: ActivationStore) -> None:
    """Two stores must hold the same samples in the same order (same n, same ids)."""
    if a.n_samples != b.n_samples:
        raise ShapeMismatchError(
            f"{b.path}: {b.n_samples} samples, but {a.path} has {a.n_samples}; "
            "stores must hold the same samples"
        )
    ids_a, ids_b = a.ids(), b.ids()
    if ids_a.dtype.kind != ids_b.dtype.kind or not np.array_equal(ids_a, ids_b):
        mismatch = next(
            (i for i, (x, y) in enumerate(zip(ids_a.tolist(), ids_b.tolist(), strict=True)) if x != y), 0
        )
        raise ShapeMismatchError(
            f"{b.path}: sample ids differ from {a.path} (first at index {mismatch}: "
            f"{ids_b[mismatch]!r} vs {ids_a[mismatch]!r}); stores must hold the same samples "
            "in the same order"
        )


@dataclass
class Comparison:
    """A prepared comparison: stores, layer refs, metrics and the engine plan."""

    refs_a: list[LayerRef]
    refs_b: list[LayerRef]
    specs: list[MetricSpec]
    plan: Plan
    engine: GramEngine
    attrs: dict[str, Any]

    @property
    def self_compare(self) -> bool:
        """One store compared with itself over the same layer list (symmetric metrics: j ≥ i)."""
        return [r.key for r in self.refs_a] == [r.key for r in self.refs_b]

    def journal_header(self, shard: Shard | None) -> dict[str, Any]:
        """What a resume journal must match: stores, layers, metrics with parameters, shard."""
        header = {
            "stores": [self.attrs["store_a"], self.attrs["store_b"]],
            "fingerprints": [self.attrs["fingerprint_a"], self.attrs["fingerprint_b"]],
            "layers_a": [r.name for r in self.refs_a], "layers_b": [r.name for r in self.refs_b],
            "metrics": [[s.text, s.params] for s in self.specs], "shard": str(shard) if shard else None,
            "compute_dtype": self.plan.compute_dtype, "side": self.plan.side,
        }  # fmt: skip
        normalised: dict[str, Any] = json.loads(json.dumps(header, sort_keys=True))
        return normalised

    def run(
        self, shard: Shard | None = None, journal: Journal | None = None, resume: bool = False
    ) -> Results:
        """Compute the cells of every metric matrix (all, or shard K/N's share) and return them.

        Each layer's statistics are computed once and reused. With a ``journal``, finished cells
        are appended to it as they complete; with ``resume``, cells it already holds (from a killed
        run of the same comparison) are taken from it instead of being recomputed.
        Cells outside the shard are NaN with ``computed`` False.
        """
        done = journal.load() if journal is not None and resume else {}
        if journal is not None:
            journal.open(resume=bool(done))
        la, lb = len(self.refs_a), len(self.refs_b)
        res = Results([r.name for r in self.refs_a], [r.name for r in self.refs_b], attrs=dict(self.attrs))
        if shard is not None:
            res.attrs["shard"] = str(shard)
        for s_idx, spec in enumerate(self.specs):
            upper_only = spec.info.symmetric and self.self_compare
            cells = shard_cells(matrix_cells(la, lb, upper_only), shard)
            value = np.full((la, lb), np.nan)
            std_error: NDArray[np.float64] | None = None
            computed = np.zeros((la, lb), dtype=bool)
            pending = []
            for i, j in cells:
                if (s_idx, i, j) in done:
                    value[i, j], se = done[(s_idx, i, j)]
                    computed[i, j] = True
                    if se is not None:
                        std_error = np.full((la, lb), np.nan) if std_error is None else std_error
                        std_error[i, j] = se
                else:
                    pending.append((i, j))
            wanted = set(pending)
            for rows, cols in covering_blocks(pending, by_row=not spec.info.batched):
                block = spec.info.matrix(
                    self.engine, [self.refs_a[i] for i in rows], [self.refs_b[j] for j in cols], spec.params
                )
                block_se = None
                if isinstance(block, tuple):  # Monte Carlo metrics return (value, standard error)
                    block, block_se = block
                    std_error = np.full((la, lb), np.nan) if std_error is None else std_error
                finished = []
                for bi, i in enumerate(rows):
                    for bj, j in enumerate(cols):
                        if (i, j) not in wanted:
                            continue
                        value[i, j] = block[bi, bj]
                        computed[i, j] = True
                        se = None
                        if block_se is not None and std_error is not None:
                            se = float(block_se[bi, bj])
                            std_error[i, j] = se
                        finished.append((s_idx, i, j, float(value[i, j]), se))
                if journal is not None:
                    journal.write(finished)
            if upper_only:
                lower = np.tril_indices(la, -1)
                value[lower] = value.T[lower]
                computed[lower] = computed.T[lower]
                if std_error is not None:
                    std_error[lower] = std_error.T[lower]
            res.metrics[spec.text] = MetricResult(
                spec=spec.text, name=spec.name, kind=spec.info.kind, symmetric=spec.info.symmetric,
                params=dict(spec.params), value=value, std_error=std_error,
                computed=None if computed.all() else computed,
            )  # fmt: skip
        return res


def prepare_comparison(
    store_a: ActivationStore,
    store_b: ActivationStore | None,
    metrics: Sequence[str | MetricSpec],
    *,
    layers_a: Sequence[str] | None = None,
    layers_b: Sequence[str] | None = None,
    memory: int | None = None,
    precision: str | None = None,
    side: str = "auto",
    progress: ProgressFn = no_progress,
    block_rows: int | None = None,
    cache_dir: str | Path | None = None,
) -> Comparison:
    """Validate the inputs and plan the work (nothing heavy is computed yet).

    ``block_rows`` overrides the feature side's rows per block (tests use it to vary chunking);
    ``cache_dir`` is where Grams spill when they do not fit ``memory`` (default: the temp dir).
    """
    specs = [m if isinstance(m, MetricSpec) else parse_spec(m) for m in metrics]
    same_store = store_b is None or Path(store_b.path).resolve() == Path(store_a.path).resolve()
    b = store_a if store_b is None else store_b
    if not same_store:
        check_aligned(store_a, b)
    names_a = select_layers(store_a, layers_a)
    names_b = select_layers(b, layers_b if layers_b is not None or store_b is not None else layers_a)
    prefix_b = "a" if same_store else "b"
    refs_a = [LayerRef(f"a:{n}", store_a, n) for n in names_a]
    refs_b = [LayerRef(f"{prefix_b}:{n}", b, n) for n in names_b]
    unique = list({r.key: r for r in (*refs_a, *refs_b)}.values())
    costs = [
        LayerCost(r.key, f"{Path(r.store.path).name}:{r.name}", r.width,
                  r.store.info(r.name).dtype.itemsize, r.store.has_stats(r.name),
                  r.store.info(r.name).chunk_rows * r.width * r.store.info(r.name).dtype.itemsize)
        for r in unique
    ]  # fmt: skip
    allowed: set[Side] = {"sample", "feature"}
    for spec in specs:
        allowed &= set(spec.info.sides)
    symmetric_self = same_store and names_a == names_b
    n_pairs = len(refs_a) * (len(refs_a) + 1) // 2 if symmetric_self else len(refs_a) * len(refs_b)
    metric_flops = {
        s.text: s.info.cost(store_a.n_samples, len(unique), n_pairs, s.params)
        for s in specs if s.info.cost is not None
    }  # fmt: skip
    if precision is None and any(s.info.prefers_float64 for s in specs):
        precision = "float64"
    plan = make_plan(
        store_a.n_samples, costs, n_pairs=n_pairs, budget=memory, precision=precision, side=side,
        sides_allowed=tuple(s for s in ("sample", "feature") if s in allowed) or ("sample",),
        block_rows=block_rows, metric_flops=metric_flops,
        full_gram=not all(s.info.inner_products_only for s in specs),
        layer_cache_grams=sum({s.name: s.info.layer_cache_grams for s in specs}.values()),
    )  # fmt: skip
    attrs = {
        "store_a": str(store_a.path), "store_b": str(b.path),
        "fingerprint_a": store_a.fingerprint(), "fingerprint_b": b.fingerprint(),
        "n_samples": store_a.n_samples, "side": plan.side, "compute_dtype": plan.compute_dtype,
        "command": " ".join(["repsim", *sys.argv[1:]]) if sys.argv else "",
        "versions": {"repsim": __version__, "numpy": np.__version__},
    }  # fmt: skip
    engine = GramEngine(unique, plan, progress, cache_dir=cache_dir)
    return Comparison(refs_a, refs_b, specs, plan, engine, attrs)


def compare_stores(
    path_a: str | Path,
    path_b: str | Path | None,
    metrics: Sequence[str | MetricSpec],
    **options: Any,
) -> Results:
    """Compare the layers of two stores (or one store with itself) with every metric.

    ``options`` are those of :func:`prepare_comparison` (layers_a, layers_b, memory, precision,
    side, progress, block_rows) plus ``shard`` (a :class:`~repsim_cli.schedule.Shard`). Returns a :class:`~repsim_cli.results.Results` with one (La, Lb) matrix per
    metric; cell (i, j) compares layer i of A with layer j of B.
    """
    with ExitStack() as stack:
        a = stack.enter_context(open_store(path_a))
        b = stack.enter_context(open_store(path_b)) if path_b is not None else None
        shard = options.pop("shard", None)
        comparison = prepare_comparison(a, b, metrics, **options)
        try:
            return comparison.run(shard=shard)
        finally:
            comparison.engine.close()
