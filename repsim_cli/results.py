"""Similarity results: the in-memory record and its files (DESIGN §3).

Results store layout (HDF5 ``.h5`` or Zarr ``.zarr``)::

    /                          attrs: repsim_format="similarity", format_version, store_a, store_b,
                                      n_samples, command, versions, metrics=[spec texts in order]
    /layers_a, /layers_b       ordered layer names
    /metrics/<escaped spec>/value      (La, Lb) float64, NaN = not computed
    /metrics/<escaped spec>/std_error  optional, same shape (Monte Carlo metrics)
    /metrics/<escaped spec>/computed   optional (La, Lb) uint8: which cells a shard computed
    /metrics/<escaped spec>    attrs: spec, name, params, kind, symmetric

CSV (long format): ``metric,layer_a,layer_b,value,std_error`` where ``metric`` is the spec as given.
"""

from __future__ import annotations

import csv
import io
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._atomic import atomic_path
from ._version import __version__
from .errors import ResultsError, StoreError
from .store._container import backend_for, open_container
from .store._names import escape_name

FORMAT = "similarity"
FORMAT_VERSION = 1
CSV_HEADER = ("metric", "layer_a", "layer_b", "value", "std_error")


@dataclass
class MetricResult:
    """One metric's matrix. ``value`` is (La, Lb) float64 with NaN for cells not computed."""

    spec: str
    name: str
    kind: str
    symmetric: bool
    params: dict[str, Any]
    value: NDArray[np.float64]
    std_error: NDArray[np.float64] | None = None
    computed: NDArray[np.bool_] | None = None  # None: every cell computed (else a shard's share)

    def is_computed(self, i: int, j: int) -> bool:
        return self.computed is None or bool(self.computed[i, j])


@dataclass
class Results:
    """The output of ``compare``: ordered layer names of both sides and one matrix per metric."""

    layers_a: list[str]
    layers_b: list[str]
    metrics: dict[str, MetricResult] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)

    def get(self, spec: str | None) -> MetricResult:
        """The result for a spec text (or the only/first metric when ``spec`` is None)."""
        if not self.metrics:
            raise ResultsError("results hold no metric")
        if spec is None:
            return next(iter(self.metrics.values()))
        if spec in self.metrics:
            return self.metrics[spec]
        by_name = [m for m in self.metrics.values() if m.name == spec]
        if len(by_name) == 1:
            return by_name[0]
        raise ResultsError(f"no metric {spec!r} in the results; available: {', '.join(self.metrics)}")


def format_value(x: float) -> str:
    """Shortest round-trip text of a float64 (``nan`` for NaN): CSVs are exact and deterministic."""
    return "nan" if np.isnan(x) else repr(float(x))


def csv_text(results: Results, spec: str | None = None) -> str:
    """Long-format CSV of all metrics (or one), rows in metric, layer_a, layer_b order."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    metrics = [results.get(spec)] if spec is not None else list(results.metrics.values())
    for m in metrics:
        for i, la in enumerate(results.layers_a):
            for j, lb in enumerate(results.layers_b):
                if not m.is_computed(i, j):
                    continue
                se = "" if m.std_error is None else format_value(m.std_error[i, j])
                writer.writerow((m.spec, la, lb, format_value(m.value[i, j]), se))
    return buf.getvalue()


def wide_csv_text(results: Results, spec: str | None = None) -> str:
    """One metric as a matrix: header ``layer_a,<layers_b...>``, one row per layer of A."""
    m = results.get(spec)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(("layer_a", *results.layers_b))
    for i, la in enumerate(results.layers_a):
        writer.writerow((la, *(format_value(v) for v in m.value[i])))
    return buf.getvalue()


def write_text(text: str, out: str | Path) -> None:
    """Write text to a path atomically, or to stdout for ``-``."""
    if str(out) == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    with atomic_path(out) as tmp:
        tmp.write_text(text)


def _write_container(results: Results, path: Path) -> None:
    with open_container(path, "w", in_memory=True) as c:
        c.set_attrs("", {
            "repsim_format": FORMAT, "format_version": FORMAT_VERSION, "repsim_version": __version__,
            **results.attrs, "metrics": list(results.metrics),
        })  # fmt: skip
        c.write_array("layers_a", np.array(results.layers_a, dtype=object))
        c.write_array("layers_b", np.array(results.layers_b, dtype=object))
        for m in results.metrics.values():
            node = f"metrics/{escape_name(m.spec)}"
            c.write_array(f"{node}/value", m.value.astype(np.float64))
            if m.std_error is not None:
                c.write_array(f"{node}/std_error", m.std_error.astype(np.float64))
            if m.computed is not None:
                c.write_array(f"{node}/computed", m.computed.astype(np.uint8))
            c.set_attrs(node, {
                "spec": m.spec, "name": m.name, "params": m.params, "kind": m.kind,
                "symmetric": m.symmetric,
            })  # fmt: skip


def write_results(results: Results, out: str | Path) -> None:
    """Write results by the output's extension: ``.csv``, ``-`` (CSV on stdout), ``.h5``/``.zarr``."""
    if str(out) == "-" or Path(out).suffix.lower() == ".csv":
        write_text(csv_text(results), out)
        return
    path = Path(out)
    try:
        backend_for(path)
    except StoreError:
        raise ResultsError(f"{path}: unknown output format (use .csv, -, .h5, .hdf5 or .zarr)") from None
    with atomic_path(path) as tmp:
        _write_container(results, tmp)


def read_results(path: str | Path) -> Results:
    """Read a results store (``.h5``/``.zarr``) or a long-format results CSV."""
    p = Path(path)
    if not p.exists():
        raise ResultsError(f"{p}: no such file")
    if p.suffix.lower() == ".csv":
        return _read_csv(p)
    with open_container(p, "r") as c:
        attrs = c.get_attrs()
        if attrs.get("repsim_format") != FORMAT:
            raise ResultsError(f"{p}: not a repsim results file (no repsim_format='similarity')")
        res = Results(
            layers_a=[str(x) for x in c.read_array("layers_a")],
            layers_b=[str(x) for x in c.read_array("layers_b")],
            attrs={k: v for k, v in attrs.items() if k != "metrics"},
        )
        for spec in attrs.get("metrics", []):
            node = f"metrics/{escape_name(spec)}"
            a = c.get_attrs(node)
            se = c.read_array(f"{node}/std_error") if c.has(f"{node}/std_error") else None
            done = c.read_array(f"{node}/computed") if c.has(f"{node}/computed") else None
            res.metrics[spec] = MetricResult(
                spec=spec, name=a["name"], kind=a["kind"], symmetric=bool(a["symmetric"]),
                params=dict(a.get("params") or {}), value=np.asarray(c.read_array(f"{node}/value")),
                std_error=None if se is None else np.asarray(se),
                computed=None if done is None else np.asarray(done).astype(bool),
            )  # fmt: skip
    return res


def _read_csv(path: Path) -> Results:
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows or tuple(rows[0][:4]) != CSV_HEADER[:4]:
        raise ResultsError(f"{path}: not a repsim results CSV (header must start {','.join(CSV_HEADER[:4])})")
    body = rows[1:]
    layers_a = list(dict.fromkeys(r[1] for r in body))
    layers_b = list(dict.fromkeys(r[2] for r in body))
    ia = {name: i for i, name in enumerate(layers_a)}
    ib = {name: i for i, name in enumerate(layers_b)}
    res = Results(layers_a=layers_a, layers_b=layers_b)
    for r in body:
        m = res.metrics.get(r[0])
        if m is None:
            name = r[0].partition(":")[0]
            m = res.metrics[r[0]] = MetricResult(
                spec=r[0], name=name, kind="similarity", symmetric=False, params={},
                value=np.full((len(layers_a), len(layers_b)), np.nan),
            )  # fmt: skip
            _fill_kind(m)
        try:
            m.value[ia[r[1]], ib[r[2]]] = float(r[3])
        except (ValueError, IndexError):
            raise ResultsError(f"{path}: bad row {','.join(r)!r}") from None
        if len(r) > 4 and r[4]:
            if m.std_error is None:
                m.std_error = np.full_like(m.value, np.nan)
            m.std_error[ia[r[1]], ib[r[2]]] = float(r[4])
    return res


def _fill_kind(m: MetricResult) -> None:
    from .errors import UnknownMetricError
    from .metrics import get_metric

    try:
        info = get_metric(m.name)
    except UnknownMetricError:
        return
    m.kind, m.symmetric = info.kind, info.symmetric
