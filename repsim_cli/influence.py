"""Per-example influence: how much one cell's value changes when each example is left out.

For two layers X (n, p) and Y (n, q) of the same n examples and one metric, the influence of
example k is Δₖ = value(X₋ₖ, Y₋ₖ) − value(X, Y), the exact leave-one-out change (the jackknife's
raw material; Quenouille 1956, Efron & Stein 1981). A few examples with a large Δ decide the value
— Davari et al. (2022) moved 3 of 500 examples and took linear CKA from 0.86 to 0.09.

* Linear CKA (biased or debiased), RBF CKA (its kernels fixed with the full data's bandwidth) and
  distance correlation (dCor² is the biased CKA of the distance matrices, whose entries do not
  depend on the other examples) get all n values in closed form, O(n²) in total
  (:mod:`repsim_cli.stats.loo`).
* Every other metric is recomputed n times on n − 1 rows through its own prepare/pair stages
  (``MetricInfo.dense``), in float64: n times the cost of one cell.

The report also gives each layer's share of variance on its first principal component (a layer
dominated by one direction is where a few far examples pull hardest) and the verdict of
:func:`repsim_cli.stats.loo.dominated`.

References
----------
Davari, Horoi, Natik, Lajoie, Wolf & Belilovsky (2022), "Reliability of CKA as a Similarity
Measure in Deep Learning", arXiv:2210.16156. Kornblith et al. (2019), ICML. Székely, Rizzo &
Bakirov (2007), Ann. Statist. 35(6) (distance correlation).
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._progress import ProgressFn, no_progress
from ._warnings import RepsimWarning
from .errors import DataError
from .metrics import MetricSpec
from .metrics._kernels import centered_gram_dense, roundoff_rtol, squared_distances
from .stats import loo

Float64 = NDArray[np.float64]

# Metrics whose leave-one-out values come in closed form (see the module docstring).
CLOSED_FORM = ("cka", "cka_rbf", "dcor")
# n×n float64 matrices held at once by the closed form (two kernels, their centred copies, one
# temporary of the distance/kernel construction).
CLOSED_FORM_GRAMS = 5
RECOMPUTE_TASK = "leave-one-out recomputation"


def has_closed_form(spec: MetricSpec) -> bool:
    """Whether ``spec``'s leave-one-out values come in closed form (no recomputation)."""
    return spec.name in CLOSED_FORM


@dataclass(frozen=True)
class Influence:
    """The leave-one-out changes of one cell.

    ``value``: the metric on all n examples; ``loo`` (n,): the metric with example k left out
    (NaN where undefined); ``ids`` (n,): the examples' sample ids; ``method``: ``"closed form"``
    or ``"recomputation"``; ``pc1_share_a``/``_b``: the share of each layer's variance on its
    first principal component; ``threshold``: :func:`~repsim_cli.stats.loo.dominance_threshold`;
    ``dominant``: :func:`~repsim_cli.stats.loo.dominated` (indices, largest effect first).
    """

    spec: str
    kind: str
    value: float
    loo: Float64
    ids: np.ndarray
    method: str
    pc1_share_a: float
    pc1_share_b: float
    threshold: float
    dominant: NDArray[np.intp]
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.loo.shape[0])

    @property
    def change(self) -> Float64:
        """Δₖ = looₖ − value, (n,) float64."""
        out: Float64 = self.loo - self.value
        return out

    @property
    def order(self) -> NDArray[np.intp]:
        """Example indices by |Δ|, largest first (ties by index; NaN changes last)."""
        key = np.abs(self.change)
        key = np.where(np.isfinite(key), key, -1.0)
        return np.asarray(np.argsort(-key, kind="stable"), dtype=np.intp)

    @property
    def exceeding(self) -> int:
        """How many examples move the value beyond the threshold (what the verdict counts)."""
        delta = self.change
        finite = np.isfinite(delta)
        if not finite.any() or not math.isfinite(self.threshold):
            return 0
        centre = float(np.median(delta[finite]))
        return int(np.sum(np.abs(delta[finite] - centre) > self.threshold))

    def verdict(self) -> str:
        """One sentence: whether a handful (≤ 1%) of the examples decides the value."""
        share = f"{loo.DOMINANT_SHARE:.0%}"
        if self.dominant.size:
            ids = ", ".join(_id_text(self.ids[k]) for k in self.dominant[:10])
            more = "" if self.dominant.size <= 10 else ", …"
            return (f"DOMINATED: {self.dominant.size} of {self.n:,} examples (≤ {share}) each move "
                    f"the value by more than {self.threshold:.3g} when left out (sample ids {ids}{more}): "
                    "a handful of examples decides this value")  # fmt: skip
        count = self.exceeding
        if count:
            return (f"not dominated by a few: {count:,} of {self.n:,} examples (more than {share}) "
                    f"exceed {self.threshold:.3g}; the influence is spread over many examples")
        return f"not dominated: no example moves the value by more than {self.threshold:.3g}"

    def records(self) -> list[dict[str, Any]]:
        """Every example, sorted by |Δ|: rank, index, sample_id, value_without, change, dominant."""
        flagged = set(self.dominant.tolist())
        return [
            {"rank": r + 1, "index": int(k), "sample_id": _id_value(self.ids[k]),
             "value_without": _num(self.loo[k]), "change": _num(self.change[k]),
             "dominant": int(k) in flagged}
            for r, k in enumerate(self.order)
        ]  # fmt: skip

    def summary(self) -> dict[str, Any]:
        """Everything but the per-example rows, JSON-ready."""
        return {
            **self.labels, "metric": self.spec, "kind": self.kind, "n": self.n,
            "value": _num(self.value), "method": self.method,
            "pc1_share_a": _num(self.pc1_share_a), "pc1_share_b": _num(self.pc1_share_b),
            "threshold": _num(self.threshold), "dominant_share": loo.DOMINANT_SHARE,
            "dominated": bool(self.dominant.size), "verdict": self.verdict(),
            "dominant": [_id_value(self.ids[k]) for k in self.dominant],
        }  # fmt: skip

    def to_json(self) -> str:
        """The summary and every example (sorted), as indented JSON (NaN written as null)."""
        return json.dumps({**self.summary(), "examples": self.records()}, indent=2) + "\n"

    def to_csv(self) -> str:
        """One row per example, sorted by |Δ| (empty cell for NaN)."""
        buf = io.StringIO()
        fields = ["rank", "index", "sample_id", "value_without", "change", "dominant"]
        writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        for row in self.records():
            writer.writerow({k: "" if row[k] is None else row[k] for k in fields})
        return buf.getvalue()


def _num(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _id_value(v: Any) -> Any:
    v = v.item() if isinstance(v, np.generic) else v
    return v.decode() if isinstance(v, bytes) else v


def _id_text(v: Any) -> str:
    return str(_id_value(v))


def pc1_share(x: NDArray[np.floating]) -> float:
    """Share of the centred layer's total variance on its first principal component, in [0, 1]:
    λ₁/Σλ from the smaller of XcᵀXc (p×p) and XcXcᵀ (n×n). NaN for a constant layer."""
    from scipy.linalg import eigh

    xc = np.asarray(x, dtype=np.float64)
    xc = xc - xc.mean(axis=0)
    small = xc.T @ xc if xc.shape[1] <= xc.shape[0] else xc @ xc.T
    total = float(np.trace(small))
    if not total > 0:
        return float("nan")
    m = small.shape[0]
    top = float(eigh(small, eigvals_only=True, subset_by_index=[m - 1, m - 1])[0])
    return min(1.0, max(0.0, top / total))


def closed_form(x: NDArray[np.floating], y: NDArray[np.floating], spec: MetricSpec,
                names: tuple[str, str] = ("layer A", "layer B")) -> tuple[float, Float64]:  # fmt: skip
    """(value, leave-one-out values (n,)) of a metric in :data:`CLOSED_FORM`, from the data;
    ``names`` say which layers errors are about (``store:layer``)."""
    kx = centered_gram_dense(x, names[0], spec.name)
    ky = centered_gram_dense(y, names[1], spec.name)
    if kx.shape[0] != ky.shape[0]:
        raise DataError(f"layer A has {kx.shape[0]} samples but layer B has {ky.shape[0]}")
    debiased = bool(spec.params.get("debiased", False))
    min_n = 5 if debiased else 3
    if kx.shape[0] < min_n:
        raise DataError(f"{spec.text}: leave-one-out needs at least {min_n} examples, got {kx.shape[0]}")
    if spec.name == "cka":
        return loo.cka(kx, ky, debiased=debiased), loo.loo_cka(kx, ky, debiased=debiased)
    rtol = roundoff_rtol(np.float64)
    if spec.name == "cka_rbf":
        from .metrics.cka_rbf import rbf_centered_kernel

        threshold = float(spec.params["threshold"])
        # Centred with H (the leave-one-out centring is redone by loo; see its docstring).
        kernels = [rbf_centered_kernel(g, threshold, False, rtol, side)
                   for g, side in ((kx, "layer A"), (ky, "layer B"))]  # fmt: skip
        if kernels[0] is None or kernels[1] is None:
            raise DataError(f"{spec.text}: the RBF bandwidth is undefined (median squared distance 0)")
        n = kx.shape[0]
        ka, kb = kernels[0].reshape(n, n), kernels[1].reshape(n, n)
        return loo.cka(ka, kb, debiased=debiased), loo.loo_cka(ka, kb, debiased=debiased)
    if spec.name == "dcor":
        da, db = np.sqrt(squared_distances(kx, rtol)), np.sqrt(squared_distances(ky, rtol))
        dcor2, loo_dcor2 = loo.cka(da, db), loo.loo_cka(da, db)
        return float(np.sqrt(max(dcor2, 0.0))), np.sqrt(np.maximum(loo_dcor2, 0.0))
    raise DataError(f"metric {spec.name!r} has no closed-form leave-one-out")


def recompute(
    x: NDArray[np.floating], y: NDArray[np.floating], spec: MetricSpec,
    progress: ProgressFn = no_progress, on_cost: Callable[[float], None] | None = None,
) -> tuple[float, Float64]:  # fmt: skip
    """(value, leave-one-out values (n,)) by running the metric's dense path n + 1 times.

    ``on_cost(seconds)`` is told the estimated time of the n recomputations (n × the time of the
    full computation) before they start. Each distinct warning of the recomputations is shown
    once.
    """
    dense = spec.info.dense
    assert dense is not None  # register() gives every metric one
    params: Mapping[str, Any] = spec.params
    n = int(np.asarray(x).shape[0])
    started = time.perf_counter()
    value = float(dense(x, y, **params))
    if on_cost is not None:
        on_cost(n * (time.perf_counter() - started))
    out = np.full(n, np.nan)
    seen: dict[str, type[Warning]] = {}
    keep = np.ones(n, dtype=bool)
    progress(RECOMPUTE_TASK, 0, n)
    for k in range(n):
        keep[k] = False
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out[k] = float(dense(x[keep], y[keep], **params))
        for w in caught:
            seen.setdefault(str(w.message), w.category)
        keep[k] = True
        progress(RECOMPUTE_TASK, k + 1, n)
    for message, category in seen.items():
        warnings.warn(f"leaving one example out: {message}", category, stacklevel=2)
    return value, out


def influence(
    x: NDArray[np.floating], y: NDArray[np.floating], spec: MetricSpec, ids: np.ndarray | None = None,
    *, progress: ProgressFn = no_progress, on_cost: Callable[[float], None] | None = None,
    labels: Mapping[str, str] | None = None,
) -> Influence:  # fmt: skip
    """The influence report of one cell: layers X (n, ...) and Y (n, ...) of the same n examples
    (rows), ``spec`` the metric. ``ids`` (n,): sample ids (default 0..n−1). ``progress`` and
    ``on_cost`` only matter for metrics without a closed form (see :func:`recompute`).
    """
    xa = np.asarray(x, dtype=np.float64).reshape(np.shape(x)[0], -1)
    ya = np.asarray(y, dtype=np.float64).reshape(np.shape(y)[0], -1)
    if xa.shape[0] != ya.shape[0]:
        raise DataError(f"layer A has {xa.shape[0]} samples but layer B has {ya.shape[0]}")
    n = xa.shape[0]
    if n < 3:
        raise DataError(f"leave-one-out influence needs at least 3 examples, got {n}")
    if has_closed_form(spec):
        known = dict(labels or {})
        names = (f"{known['store_a']}:{known['layer_a']}" if "layer_a" in known else "layer A",
                 f"{known.get('store_b') or known.get('store_a')}:{known['layer_b']}"
                 if "layer_b" in known else "layer B")  # fmt: skip
        value, values, method = *closed_form(xa, ya, spec, names), "closed form"
    else:
        value, values = recompute(xa, ya, spec, progress, on_cost)
        method = "recomputation"
    if not math.isfinite(value):
        warnings.warn(f"{spec.text} is undefined (NaN) for these layers; no influence to rank",
                      RepsimWarning, stacklevel=2)  # fmt: skip
    return Influence(
        spec=spec.text, kind=spec.info.kind, value=value, loo=values,
        ids=np.arange(n) if ids is None else np.asarray(ids), method=method,
        pc1_share_a=pc1_share(xa), pc1_share_b=pc1_share(ya),
        threshold=loo.dominance_threshold(value, values), dominant=loo.dominated(value, values),
        labels=dict(labels or {}),
    )  # fmt: skip


def memory_needed(n: int, width_a: int, width_b: int, spec: MetricSpec) -> int:
    """Bytes the computation holds at its peak (both layers in float64 and, for the closed form,
    its n×n matrices; a recomputation holds about what one cell of ``compare`` does)."""
    data = 8 * n * (width_a + width_b) * 2
    grams = CLOSED_FORM_GRAMS if has_closed_form(spec) else 3
    return int(data + grams * 8 * n * n)
