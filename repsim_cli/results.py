"""Similarity results: the in-memory record and its files (layout: docs/architecture.md).

Results store layout (HDF5 ``.h5`` or Zarr ``.zarr``)::

    /                          attrs: repsim_format="similarity", format_version, store_a, store_b,
                                      n_samples, command, versions, metrics=[spec texts in order]
    /layers_a, /layers_b       ordered layer names
    /metrics/<escaped spec>/value      (La, Lb) float64, NaN = not computed
    /metrics/<escaped spec>/std_error  optional, same shape (Monte Carlo metrics)
    /metrics/<escaped spec>/computed   optional (La, Lb) uint8: which cells a shard computed
    /metrics/<escaped spec>/<statistic> optional (La, Lb) float64 per statistic of STAT_FIELDS
                                        (ci_low, ci_high, p_value, ...; NaN where not computed)
    /metrics/<escaped spec>    attrs: spec, name, params, kind, symmetric

Root attributes name the models (networks) a comparison covers: ``models`` (names), ``stores``
(paths), ``fingerprints``, ``model_pairs`` (the (i, j) blocks computed) and ``row_models`` /
``col_models`` (the model of each row and column). A one- or two-store comparison is one block;
an N-store one lists every model's layers on both axes, and block (i, j) is model i's rows by
model j's columns.

CSV (long format): ``metric,layer_a,layer_b,value,std_error,model_a,model_b,note`` followed by the
statistics of :data:`STAT_FIELDS` (empty where not computed), where ``metric`` is the spec as given
(later columns come last so that scripts reading the first five keep working).
"""

from __future__ import annotations

import csv
import io
import os
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
CSV_HEADER = ("metric", "layer_a", "layer_b", "value", "std_error", "model_a", "model_b", "note")
SUMMARIES = ("max", "matched", "mean")
# Per-cell statistics of uncertainty (``compare --bootstrap/--permutations``), in CSV column order:
# the interval's bounds, the raw and multiplicity-adjusted p-values, the null distribution's mean
# and standard deviation, and the value adjusted against its null.
STAT_FIELDS = ("ci_low", "ci_high", "p_value", "p_adjusted", "null_mean", "null_std", "null_adjusted")
CSV_COLUMNS = (*CSV_HEADER, *STAT_FIELDS)


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
    # A note on each cell whose value is degenerate (e.g. CCA correlations 1 by construction)
    notes: dict[tuple[int, int], str] = field(default_factory=dict)
    # Statistics of uncertainty by name (keys from STAT_FIELDS), each (La, Lb) float64, NaN where
    # not computed; absent when the run computed none.
    stats: dict[str, NDArray[np.float64]] = field(default_factory=dict)

    def is_computed(self, i: int, j: int) -> bool:
        return self.computed is None or bool(self.computed[i, j])


@dataclass
class Results:
    """The output of ``compare``: ordered layer names of both sides and one matrix per metric."""

    layers_a: list[str]
    layers_b: list[str]
    metrics: dict[str, MetricResult] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)

    # ---------------------------------------------------------------- models
    @property
    def models(self) -> list[str]:
        """Model names, in order (results written before models were recorded: the store stems)."""
        if "models" in self.attrs:
            return [str(m) for m in self.attrs["models"]]
        stores = [self.attrs.get("store_a", "a"), self.attrs.get("store_b", "b")]
        names = [Path(str(s)).stem for s in stores]
        return names[:1] if stores[0] == stores[1] else names

    @property
    def row_models(self) -> list[int]:
        """The model index of each row (layer of side a)."""
        return [int(m) for m in self.attrs.get("row_models", [0] * len(self.layers_a))]

    @property
    def col_models(self) -> list[int]:
        """The model index of each column (layer of side b)."""
        default = 0 if len(self.models) == 1 else 1
        return [int(m) for m in self.attrs.get("col_models", [default] * len(self.layers_b))]

    @property
    def model_pairs(self) -> list[tuple[int, int]]:
        """The (model_a, model_b) blocks this comparison computed."""
        pairs = self.attrs.get("model_pairs")
        if pairs is None:
            return [(self.row_models[0] if self.row_models else 0,
                     self.col_models[0] if self.col_models else 0)]  # fmt: skip
        return [(int(i), int(j)) for i, j in pairs]

    @property
    def multi_block(self) -> bool:
        """True when the matrix holds several model-pair blocks (an N-store comparison)."""
        return len(self.model_pairs) > 1

    def block_mask(self) -> NDArray[np.bool_]:
        """(La, Lb) bool: the cells inside the computed model-pair blocks."""
        pairs = set(self.model_pairs)
        rows, cols = self.row_models, self.col_models
        return np.array([[(rows[i], cols[j]) in pairs for j in range(len(cols))]
                         for i in range(len(rows))], dtype=bool).reshape(len(rows), len(cols))  # fmt: skip

    def model_index(self, name: str) -> int:
        """Index of a model by name; the error lists the models."""
        if name not in self.models:
            raise ResultsError(f"no model {name!r} in the results; models: {', '.join(self.models)}")
        return self.models.index(name)

    def block(self, model_a: str | int, model_b: str | int) -> Results:
        """The (model_a rows × model_b columns) block as a one-block :class:`Results`.

        A block not computed directly is taken transposed from (model_b, model_a) for symmetric
        metrics (asymmetric metrics stay NaN there, marked not computed).
        """
        ia = model_a if isinstance(model_a, int) else self.model_index(model_a)
        ib = model_b if isinstance(model_b, int) else self.model_index(model_b)
        rows = [r for r, m in enumerate(self.row_models) if m == ia]
        cols = [c for c, m in enumerate(self.col_models) if m == ib]
        flipped = (ia, ib) not in self.model_pairs and (ib, ia) in self.model_pairs
        if flipped:
            rows_t = [r for r, m in enumerate(self.row_models) if m == ib]
            cols_t = [c for c, m in enumerate(self.col_models) if m == ia]
        elif (ia, ib) not in self.model_pairs:
            raise ResultsError(
                f"models {self.models[ia]!r} and {self.models[ib]!r} were not compared; "
                f"blocks: {', '.join(f'{self.models[i]},{self.models[j]}' for i, j in self.model_pairs)}"
            )
        if flipped:  # the names come from the stored block, transposed
            names_a, names_b = [self.layers_b[c] for c in cols_t], [self.layers_a[r] for r in rows_t]
        else:
            names_a, names_b = [self.layers_a[r] for r in rows], [self.layers_b[c] for c in cols]
        out = Results(names_a, names_b,
                      attrs={k: v for k, v in self.attrs.items()
                             if k not in ("row_models", "col_models", "model_pairs", "models")})  # fmt: skip
        out.attrs.update(models=[self.models[ia]] if ia == ib else [self.models[ia], self.models[ib]],
                         row_models=[0] * len(rows), col_models=[0 if ia == ib else 1] * len(cols),
                         model_pairs=[[0, 0 if ia == ib else 1]])  # fmt: skip
        stores = self.attrs.get("stores")
        if stores is not None:
            out.attrs["store_a"], out.attrs["store_b"] = stores[ia], stores[ib]
        for spec, m in self.metrics.items():
            def take(arr: NDArray[Any] | None, symmetric: bool = m.symmetric) -> NDArray[Any] | None:
                if arr is None:
                    return None
                if flipped:
                    if not symmetric:
                        return np.full((len(cols_t), len(rows_t)), np.nan if arr.dtype.kind == "f" else False)
                    return np.asarray(arr[np.ix_(rows_t, cols_t)]).T.copy()
                return np.asarray(arr[np.ix_(rows, cols)]).copy()

            value = take(m.value)
            computed = None if m.computed is None else take(m.computed)
            if flipped and m.symmetric:
                notes = {(cols_t.index(j), rows_t.index(i)): note for (i, j), note in m.notes.items()
                         if i in rows_t and j in cols_t}  # fmt: skip
            elif flipped:
                notes = {}
            else:
                notes = {(rows.index(i), cols.index(j)): note for (i, j), note in m.notes.items()
                         if i in rows and j in cols}  # fmt: skip
            if flipped and not m.symmetric:
                computed = np.zeros((len(names_a), len(names_b)), dtype=bool)
            out.metrics[spec] = MetricResult(
                spec=m.spec, name=m.name, kind=m.kind, symmetric=m.symmetric, params=dict(m.params),
                value=value,  # type: ignore[arg-type]
                std_error=take(m.std_error), computed=computed, notes=notes,
                stats={k: take(v) for k, v in m.stats.items()},  # type: ignore[misc]
            )  # fmt: skip
        return out

    def cropped(self) -> Results:
        """The same results without the rows and columns of models that no computed block uses
        on that side (with ``--pairs all``, the last model's rows and the first's columns)."""
        row_used = {i for i, _ in self.model_pairs}
        col_used = {j for _, j in self.model_pairs}
        rows = [r for r, m in enumerate(self.row_models) if m in row_used]
        cols = [c for c, m in enumerate(self.col_models) if m in col_used]
        out = Results([self.layers_a[r] for r in rows], [self.layers_b[c] for c in cols],
                      attrs={**self.attrs, "row_models": [self.row_models[r] for r in rows],
                             "col_models": [self.col_models[c] for c in cols]})  # fmt: skip
        where_r, where_c = {r: k for k, r in enumerate(rows)}, {c: k for k, c in enumerate(cols)}
        for spec, m in self.metrics.items():
            def take(arr: NDArray[Any] | None) -> NDArray[Any] | None:
                return None if arr is None else np.asarray(arr[np.ix_(rows, cols)]).copy()

            value = take(m.value)
            assert value is not None
            out.metrics[spec] = MetricResult(
                spec=m.spec, name=m.name, kind=m.kind, symmetric=m.symmetric, params=dict(m.params),
                value=value, std_error=take(m.std_error), computed=take(m.computed),
                notes={(where_r[i], where_c[j]): note for (i, j), note in m.notes.items()
                       if i in where_r and j in where_c},
                stats={k: take(v) for k, v in m.stats.items()},  # type: ignore[misc]
            )  # fmt: skip
        return out

    def summary(self, spec: str | None, how: str) -> NDArray[np.float64]:
        """A model × model matrix summarising each block of one metric: ``max`` (best cell; the
        minimum for a distance), ``matched`` (mean over layers whose names match) or ``mean``.
        Blocks not compared are NaN; the diagonal is NaN unless models were compared within."""
        if how not in SUMMARIES:
            raise ResultsError(f"--summary {how!r}: expected one of {', '.join(SUMMARIES)}")
        m = self.get(spec)
        k = len(self.models)
        out = np.full((k, k), np.nan)
        for i in range(k):
            for j in range(k):
                if (i, j) not in self.model_pairs and (j, i) not in self.model_pairs:
                    continue
                blk = self.block(i, j)
                values = blk.get(m.spec).value
                if np.isnan(values).all():
                    continue
                if how == "max":
                    out[i, j] = np.nanmin(values) if m.kind == "distance" else np.nanmax(values)
                elif how == "mean":
                    out[i, j] = float(np.nanmean(values))
                else:
                    matched = [values[a, blk.layers_b.index(name)]
                               for a, name in enumerate(blk.layers_a) if name in blk.layers_b]  # fmt: skip
                    if matched and not np.isnan(matched).all():
                        out[i, j] = float(np.nanmean(matched))
        return out

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


def summary_results(results: Results, spec: str | None, how: str) -> Results:
    """A :class:`Results` whose one matrix is :meth:`Results.summary` (rows and columns: models)."""
    m = results.get(spec)
    models = results.models
    out = Results(list(models), list(models), attrs={
        "models": ["models"], "row_models": [0] * len(models), "col_models": [0] * len(models),
        "model_pairs": [[0, 0]], "store_a": "models", "store_b": "models", "summary": how,
    })  # fmt: skip
    text = f"{m.spec} [{how} per model pair]"
    out.metrics[text] = MetricResult(spec=text, name=m.name, kind=m.kind, symmetric=m.symmetric,
                                     params=dict(m.params), value=results.summary(m.spec, how))  # fmt: skip
    return out


def format_value(x: float) -> str:
    """Shortest round-trip text of a float64 (``nan`` for NaN): CSVs are exact and deterministic."""
    return "nan" if np.isnan(x) else repr(float(x))


def csv_text(results: Results, spec: str | None = None) -> str:
    """Long-format CSV of all metrics (or one), rows in metric, layer_a, layer_b order."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    metrics = [results.get(spec)] if spec is not None else list(results.metrics.values())
    models, rows, cols = results.models, results.row_models, results.col_models
    pairs = set(results.model_pairs)
    with_stats = any(m.stats for m in metrics)
    writer.writerow(CSV_COLUMNS if with_stats else CSV_HEADER)
    for m in metrics:
        for i, la in enumerate(results.layers_a):
            for j, lb in enumerate(results.layers_b):
                if not m.is_computed(i, j) or (rows[i], cols[j]) not in pairs:
                    continue
                se = "" if m.std_error is None else format_value(m.std_error[i, j])
                row = [m.spec, la, lb, format_value(m.value[i, j]), se,
                       models[rows[i]], models[cols[j]], m.notes.get((i, j), "")]
                if with_stats:
                    row += [_stat_text(m.stats.get(k), i, j) for k in STAT_FIELDS]
                writer.writerow(row)
    return buf.getvalue()


def _stat_text(arr: NDArray[np.float64] | None, i: int, j: int) -> str:
    """A statistic's CSV field: empty where it was not computed (absent or NaN)."""
    if arr is None or np.isnan(arr[i, j]):
        return ""
    return format_value(arr[i, j])


def wide_csv_text(results: Results, spec: str | None = None) -> str:
    """One metric as a matrix: header ``layer_a,<layers_b...>``, one row per layer of A."""
    if results.multi_block:
        raise ResultsError(
            "a wide CSV holds one model pair; choose one with --models A,B "
            f"(models: {', '.join(results.models)})"
        )
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
            for stat in STAT_FIELDS:
                if stat in m.stats:
                    c.write_array(f"{node}/{stat}", np.asarray(m.stats[stat], dtype=np.float64))
            distinct = sorted(set(m.notes.values()))
            if distinct:  # each cell's note as an index into the node's ``notes`` attribute
                index = np.full(m.value.shape, -1, dtype=np.int16)
                for (i, j), note in m.notes.items():
                    index[i, j] = distinct.index(note)
                c.write_array(f"{node}/note", index)
            c.set_attrs(node, {
                "spec": m.spec, "name": m.name, "params": m.params, "kind": m.kind,
                "symmetric": m.symmetric, "notes": distinct,
            })  # fmt: skip


def write_results(results: Results, out: str | Path) -> None:
    """Write results by the output's extension: ``.csv``, ``-`` (CSV on stdout), ``.h5``/``.zarr``."""
    if str(out) in ("-", os.devnull) or Path(out).suffix.lower() == ".csv":
        write_text(csv_text(results), out)
        return
    path = Path(out)
    try:
        backend_for(path)
    except StoreError:
        raise ResultsError(f"{path}: unknown output format (use .csv, -, .h5, .hdf5 or .zarr)") from None
    with atomic_path(path) as tmp:
        _write_container(results, tmp)


def is_results_file(path: str | Path) -> bool:
    """Whether ``path`` is a results file: a results store (root attribute
    ``repsim_format="similarity"``) or a CSV with the results header."""
    p = Path(path)
    if not p.exists():
        return False
    if p.suffix.lower() == ".csv":
        with p.open(newline="") as fh:
            return tuple(next(csv.reader(fh), [])[:4]) == CSV_HEADER[:4]
    with open_container(p, "r") as c:
        return bool(c.get_attrs().get("repsim_format") == FORMAT)


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
            notes: dict[tuple[int, int], str] = {}
            if c.has(f"{node}/note"):
                distinct = [str(x) for x in a.get("notes") or []]
                index = np.asarray(c.read_array(f"{node}/note"))
                notes = {(int(i), int(j)): distinct[int(index[i, j])]
                         for i, j in zip(*np.nonzero(index >= 0), strict=True)}  # fmt: skip
            res.metrics[spec] = MetricResult(
                spec=spec, name=a["name"], kind=a["kind"], symmetric=bool(a["symmetric"]),
                params=dict(a.get("params") or {}), value=np.asarray(c.read_array(f"{node}/value")),
                std_error=None if se is None else np.asarray(se),
                computed=None if done is None else np.asarray(done).astype(bool), notes=notes,
                stats={k: np.asarray(c.read_array(f"{node}/{k}"), dtype=np.float64)
                       for k in STAT_FIELDS if c.has(f"{node}/{k}")},
            )  # fmt: skip
    return res


def _read_csv(path: Path) -> Results:
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows or tuple(rows[0][:4]) != CSV_HEADER[:4]:
        raise ResultsError(f"{path}: not a repsim results CSV (header must start {','.join(CSV_HEADER[:4])})")
    body = rows[1:]
    with_models = len(rows[0]) >= 7 and tuple(rows[0][5:7]) == CSV_HEADER[5:7]
    if with_models and any(len(r) < 7 for r in body):
        raise ResultsError(f"{path}: a row has fewer than 7 columns")
    if not with_models:
        body = [[*r[:5], *([""] * (5 - len(r[:5]))), "a", "b"] for r in body]
    stat_cols = {k: rows[0].index(k) for k in STAT_FIELDS if k in rows[0]}
    body = [[*r[:7], r[7] if len(r) > 7 else "", *r[8:]] for r in body]
    models = list(dict.fromkeys(m for r in body for m in (r[5], r[6])))
    key_a = list(dict.fromkeys((r[5], r[1]) for r in body))
    key_b = list(dict.fromkeys((r[6], r[2]) for r in body))
    pairs = sorted({(models.index(r[5]), models.index(r[6])) for r in body})
    if len(pairs) > 1:  # an N-model CSV: both axes list every model's layers
        keys = list(dict.fromkeys([*key_a, *key_b]))
        keys.sort(key=lambda k: models.index(k[0]))
        key_a = key_b = keys
    ia = {k: i for i, k in enumerate(key_a)}
    ib = {k: i for i, k in enumerate(key_b)}
    attrs: dict[str, Any] = {}
    if with_models:
        attrs = {"models": models, "model_pairs": [list(p) for p in pairs],
                 "row_models": [models.index(k[0]) for k in key_a],
                 "col_models": [models.index(k[0]) for k in key_b]}  # fmt: skip
    res = Results(layers_a=[k[1] for k in key_a], layers_b=[k[1] for k in key_b], attrs=attrs)
    for r in body:
        m = res.metrics.get(r[0])
        if m is None:
            name = r[0].partition(":")[0]
            m = res.metrics[r[0]] = MetricResult(
                spec=r[0], name=name, kind="similarity", symmetric=False, params={},
                value=np.full((len(key_a), len(key_b)), np.nan),
            )  # fmt: skip
            _fill_kind(m)
        cell = ia[(r[5], r[1])], ib[(r[6], r[2])]
        try:
            m.value[cell] = float(r[3])
        except (ValueError, IndexError):
            raise ResultsError(f"{path}: bad row {','.join(r)!r}") from None
        if r[4]:
            if m.std_error is None:
                m.std_error = np.full_like(m.value, np.nan)
            m.std_error[cell] = float(r[4])
        if r[7]:
            m.notes[cell] = r[7]
        for k, col in stat_cols.items():
            if col < len(r) and r[col]:
                if k not in m.stats:
                    m.stats[k] = np.full_like(m.value, np.nan)
                try:
                    m.stats[k][cell] = float(r[col])
                except ValueError:
                    raise ResultsError(f"{path}: bad {k} in row {','.join(r)!r}") from None
    return res


def _fill_kind(m: MetricResult) -> None:
    """A CSV records no kind or symmetry: take them from the registry, for the spec as written
    (its parameters can change the symmetry, e.g. ``cknna:compat=platonic``)."""
    from .errors import RepsimError
    from .metrics import parse_spec

    try:
        spec = parse_spec(m.spec)
    except RepsimError:
        return
    m.kind, m.symmetric, m.params = spec.info.kind, spec.info.symmetric, dict(spec.params)
