"""The layer-identification test of Kornblith et al. (2019), "Similarity of Neural Network
Representations Revisited" (ICML), section 6.1: across networks of one architecture trained from
different seeds, does a similarity metric find, for layer *l* of network *i*, layer *l* of network
*j* as the most similar of network *j*'s layers?

Conventions. For every ordered pair of distinct models (i, j) and every layer *l* of model i, the
scores over model j's layers are row *l* of S_ij (rows: model i's layers, columns: model j's). For a
metric declared asymmetric the scores are S_ij + S_jiᵀ, as in the paper, so both blocks (i, j) and
(j, i) are needed; a symmetric metric's (j, i) block is the transpose of (i, j). The pick is the
argmax (the argmin for a distance). When several layers share the best score (within
``tie_tol`` × max(1, |best|)) the row is a tie and counts as a miss; a row whose scores are all NaN
is *undefined*, also a miss. The corresponding layer is the one with the same name
(``match_by="name"``) or at the same position (``match_by="index"``).

The result is a :class:`LayerMatch` per metric: accuracy over all (ordered pair, layer) trials, the
hit rate of each layer, hits per model pair, and a confusion count (true layer × picked layer, with
one more column for rows without a single pick). :func:`match_results` reads an N-model
:class:`~repsim_cli.results.Results` (nothing recomputed); :func:`match_models` computes the needed
blocks from activation stores first.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._atomic import atomic_path
from .compare import prepare_models, select_layers
from .errors import LayerNotFoundError, RepsimError, ResultsError
from .metrics import MetricSpec, parse_spec
from .results import MetricResult, Results, format_value, write_text
from .store import ActivationStore

MATCH_BY = ("name", "index")
TIE_TOL = 1e-12
NO_PICK = "(none)"  # confusion column: a tie or an undefined row
OUTPUT_SUFFIXES = (".csv", ".json")
PLOT_SUFFIXES = (".png", ".svg", ".pdf")
CSV_HEADER = ("metric", "record", "model_a", "model_b", "layer", "picked", "count", "total", "percent")


@dataclass
class LayerMatch:
    """One metric's layer-identification counts.

    ``layers`` are the reference layers (model 0's names, in its order). ``hits``, ``totals``,
    ``ties`` and ``undefined`` are per reference layer, summed over ordered model pairs;
    ``confusion`` is (L, L + 1) int: row = the true layer, column = the layer picked in the other
    model (mapped to its reference layer), last column = no single pick. ``pair_hits`` maps each
    ordered model pair (i, j) to its hits over the L layers.
    """

    spec: str
    name: str
    kind: str
    symmetric: bool
    layers: list[str]
    hits: NDArray[np.int64]
    totals: NDArray[np.int64]
    ties: NDArray[np.int64]
    undefined: NDArray[np.int64]
    confusion: NDArray[np.int64]
    pair_hits: dict[tuple[int, int], int]

    @property
    def combined(self) -> bool:
        """True when scores were S_ij + S_jiᵀ (an asymmetric metric)."""
        return not self.symmetric

    @property
    def n_hits(self) -> int:
        return int(self.hits.sum())

    @property
    def n_trials(self) -> int:
        return int(self.totals.sum())

    @property
    def accuracy(self) -> float:
        """Percentage of (ordered pair, layer) trials whose pick is the corresponding layer."""
        return 100.0 * self.n_hits / self.n_trials if self.n_trials else float("nan")

    def layer_rates(self) -> NDArray[np.float64]:
        """Hit rate of each reference layer, in percent."""
        return 100.0 * self.hits / np.maximum(self.totals, 1)


@dataclass
class LayerMatchReport:
    """The layer-identification test over several models for one or more metrics."""

    models: list[str]
    match_by: str
    ordered_pairs: list[tuple[int, int]]
    metrics: list[LayerMatch]

    @property
    def layers(self) -> list[str]:
        return self.metrics[0].layers if self.metrics else []

    # ---------------------------------------------------------------- outputs
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: models, pairs, and per metric the accuracy, per-layer rates,
        per-pair hits and the confusion counts."""
        out: list[dict[str, Any]] = []
        for m in self.metrics:
            n_layers = len(m.layers)
            out.append({
                "spec": m.spec, "name": m.name, "kind": m.kind, "symmetric": m.symmetric,
                "scores": "S_ij + S_ji^T" if m.combined else "S_ij",
                "pick": "argmin" if m.kind == "distance" else "argmax",
                "accuracy": m.accuracy, "hits": m.n_hits, "trials": m.n_trials,
                "ties": int(m.ties.sum()), "undefined": int(m.undefined.sum()),
                "per_layer": [
                    {"layer": name, "hits": int(m.hits[k]), "trials": int(m.totals[k]),
                     "percent": float(m.layer_rates()[k]), "ties": int(m.ties[k]),
                     "undefined": int(m.undefined[k])}
                    for k, name in enumerate(m.layers)
                ],
                "per_pair": [
                    {"model_a": self.models[i], "model_b": self.models[j], "hits": h,
                     "trials": n_layers, "percent": 100.0 * h / n_layers if n_layers else None}
                    for (i, j), h in m.pair_hits.items()
                ],
                "confusion": {"rows": list(m.layers), "columns": [*m.layers, NO_PICK],
                              "counts": m.confusion.tolist()},
            })  # fmt: skip
        return {
            "test": "layer identification (Kornblith et al. 2019)", "match_by": self.match_by,
            "models": list(self.models),
            "ordered_pairs": [[self.models[i], self.models[j]] for i, j in self.ordered_pairs],
            "layers": list(self.layers), "metrics": out,
        }  # fmt: skip

    def csv_text(self) -> str:
        """Long CSV, one record per line: ``accuracy`` (per metric), ``layer`` (hit rate of a
        layer), ``pair`` (hits of an ordered model pair), ``confusion`` (a true layer, a picked
        layer and how often; ``(none)`` for ties and undefined rows)."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(CSV_HEADER)
        for m in self.metrics:
            w.writerow((m.spec, "accuracy", "", "", "", "", m.n_hits, m.n_trials, format_value(m.accuracy)))
            for k, name in enumerate(m.layers):
                w.writerow((m.spec, "layer", "", "", name, "", int(m.hits[k]), int(m.totals[k]),
                            format_value(float(m.layer_rates()[k]))))  # fmt: skip
            for (i, j), h in m.pair_hits.items():
                n_layers = len(m.layers)
                w.writerow((m.spec, "pair", self.models[i], self.models[j], "", "", h, n_layers,
                            format_value(100.0 * h / n_layers if n_layers else float("nan"))))  # fmt: skip
            columns = [*m.layers, NO_PICK]
            for k, name in enumerate(m.layers):
                total = int(m.totals[k])
                for c, picked in enumerate(columns):
                    count = int(m.confusion[k, c])
                    if count:
                        w.writerow((m.spec, "confusion", "", "", name, picked, count, total,
                                    format_value(100.0 * count / total)))  # fmt: skip
        return buf.getvalue()

    def table_text(self) -> str:
        """The report as plain text: accuracy per metric, per-layer hit rates, confusion counts."""
        lines = [
            (f"layer identification: {len(self.models)} models ({', '.join(self.models)}), "
             f"{len(self.ordered_pairs)} ordered pairs, {len(self.layers)} layers matched by "
             f"{self.match_by}"),
            "",
        ]  # fmt: skip
        head: tuple[str, ...] = ("metric", "kind", "scores", "accuracy", "hits/trials", "ties", "undefined")
        summary = [head] + [
            (m.spec, m.kind, "S+S^T" if m.combined else "S", f"{_pct(m.accuracy)}%",
             f"{m.n_hits}/{m.n_trials}", str(int(m.ties.sum())), str(int(m.undefined.sum())))
            for m in self.metrics
        ]  # fmt: skip
        lines += _aligned(summary, right_from=3)
        lines += ["", "hit rate per layer (%)"]
        head = ("layer", *(m.spec for m in self.metrics))
        rates = [head] + [
            (name, *(_pct(float(m.layer_rates()[k])) for m in self.metrics))
            for k, name in enumerate(self.layers)
        ]
        lines += _aligned(rates, right_from=1)
        for m in self.metrics:
            title = (f"confusion, {m.spec} (rows: true layer; columns: layer picked; "
                     f"{NO_PICK}: tie or undefined)")  # fmt: skip
            head = ("true \\ picked", *m.layers, NO_PICK)
            counts = [head] + [
                (name, *(str(int(c)) for c in m.confusion[k])) for k, name in enumerate(m.layers)
            ]
            lines += ["", title, *_aligned(counts, right_from=1)]
        return "\n".join(lines) + "\n"


def _pct(x: float) -> str:
    return "nan" if np.isnan(x) else f"{x:.1f}"


def _aligned(rows: Sequence[Sequence[str]], right_from: int) -> list[str]:
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    return [
        "  ".join(cell.rjust(w) if c >= right_from else cell.ljust(w)
                  for c, (cell, w) in enumerate(zip(r, widths, strict=True))).rstrip()
        for r in rows
    ]  # fmt: skip


# -------------------------------------------------------------------- the test
def _model_layers(results: Results, model: int) -> list[str]:
    """Layer names of one model (its rows, or its columns in a one-block two-model result)."""
    rows = [results.layers_a[r] for r, m in enumerate(results.row_models) if m == model]
    if rows:
        return rows
    return [results.layers_b[c] for c, m in enumerate(results.col_models) if m == model]


def _direct_block(results: Results, m: MetricResult, i: int, j: int) -> NDArray[np.float64] | None:
    """S_ij as computed (rows: model i's layers, columns: model j's), or None if not computed.

    Raises when the block was computed only in part (a shard's results)."""
    if (i, j) not in results.model_pairs:
        return None
    rows = [r for r, mod in enumerate(results.row_models) if mod == i]
    cols = [c for c, mod in enumerate(results.col_models) if mod == j]
    if m.computed is not None and not m.computed[np.ix_(rows, cols)].all():
        raise ResultsError(
            f"metric {m.spec!r}: block {results.models[i]},{results.models[j]} was only partly "
            "computed (the results of one shard?); merge the shards first (repsim merge)"
        )
    return np.asarray(m.value[np.ix_(rows, cols)], dtype=np.float64)


def _scores(results: Results, m: MetricResult, i: int, j: int) -> NDArray[np.float64] | None:
    """Scores of model i's layers (rows) against model j's (columns): S_ij for a symmetric metric
    (S_jiᵀ when only (j, i) was computed), S_ij + S_jiᵀ for an asymmetric one; None when the
    results do not hold what is needed."""
    s_ij = _direct_block(results, m, i, j)
    s_ji = _direct_block(results, m, j, i)
    if m.symmetric:
        if s_ij is not None:
            return s_ij
        return None if s_ji is None else s_ji.T.copy()
    if s_ij is None or s_ji is None:
        return None
    return s_ij + s_ji.T


def check_layers(models: Sequence[str], layers: Sequence[Sequence[str]], match_by: str) -> None:
    """The models' layers must correspond: the same names (``name``, any order) or the same number
    (``index``). Raises :class:`LayerNotFoundError` naming the models and layers that differ."""
    if match_by not in MATCH_BY:
        raise RepsimError(f"--match-by {match_by!r}: expected one of {', '.join(MATCH_BY)}")
    ref = list(layers[0])
    for name, own in zip(models[1:], layers[1:], strict=True):
        if match_by == "index":
            if len(own) != len(ref):
                raise LayerNotFoundError(
                    f"--match-by index: model {name!r} has {len(own)} layers but {models[0]!r} has "
                    f"{len(ref)}; layer-match needs models of one architecture"
                )
            continue
        missing = [x for x in ref if x not in own]
        extra = [x for x in own if x not in ref]
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"model {name!r} has no layer {', '.join(map(repr, missing))}")
            if extra:
                parts.append(f"{models[0]!r} has no layer {', '.join(map(repr, extra))}")
            raise LayerNotFoundError(
                f"--match-by name: layer names differ between {models[0]!r} and {name!r}: "
                f"{'; '.join(parts)} (use --match-by index when layers are named differently, "
                "or --layers to select common layers)"
            )


def _pick(scores: NDArray[np.float64], distance: bool, tie_tol: float) -> int:
    """Index of the single best score; -1 for a tie, -2 when every score is NaN."""
    defined = ~np.isnan(scores)
    if not defined.any():
        return -2
    values = np.where(defined, -scores if distance else scores, -np.inf)
    best = int(np.argmax(values))
    top = float(values[best])
    slack = tie_tol * max(1.0, abs(top)) if np.isfinite(top) else 0.0
    near = np.flatnonzero(defined & (values >= top - slack))
    return best if len(near) == 1 else -1


def _match_metric(
    results: Results, m: MetricResult, pairs: list[tuple[int, int]], layers: list[list[str]],
    match_by: str, tie_tol: float,
) -> LayerMatch:
    ref = layers[0]
    n_layers = len(ref)
    hits = np.zeros(n_layers, dtype=np.int64)
    totals = np.zeros(n_layers, dtype=np.int64)
    ties = np.zeros(n_layers, dtype=np.int64)
    undefined = np.zeros(n_layers, dtype=np.int64)
    confusion = np.zeros((n_layers, n_layers + 1), dtype=np.int64)
    pair_hits: dict[tuple[int, int], int] = {}

    def ref_index(model: int, position: int) -> int:
        return position if match_by == "index" else ref.index(layers[model][position])

    for i, j in pairs:
        scores = _scores(results, m, i, j)
        assert scores is not None  # pairs hold only blocks that are available
        pair_hits[(i, j)] = 0
        for row in range(scores.shape[0]):
            true = ref_index(i, row)
            target = row if match_by == "index" else layers[j].index(layers[i][row])
            pick = _pick(scores[row], m.kind == "distance", tie_tol)
            totals[true] += 1
            if pick < 0:
                confusion[true, n_layers] += 1
                (ties if pick == -1 else undefined)[true] += 1
                continue
            confusion[true, ref_index(j, pick)] += 1
            if pick == target:
                hits[true] += 1
                pair_hits[(i, j)] += 1
    return LayerMatch(m.spec, m.name, m.kind, m.symmetric, list(ref), hits, totals, ties, undefined,
                      confusion, pair_hits)  # fmt: skip


def match_results(
    results: Results,
    metrics: Sequence[str] | None = None,
    *,
    match_by: str = "name",
    tie_tol: float = TIE_TOL,
) -> LayerMatchReport:
    """Run the layer-identification test on a comparison's results (nothing is recomputed).

    ``metrics``: which of the results' metrics (spec text or name; default all). Every ordered pair
    (i, j) of distinct models whose scores the results hold is a trial set; a symmetric metric needs
    block (i, j) or (j, i), an asymmetric one both. Raises :class:`ResultsError` when the results
    hold fewer than two models, no such pair, or an asymmetric metric with one direction only.
    """
    chosen = [results.get(s) for s in metrics] if metrics else list(results.metrics.values())
    if not chosen:
        raise ResultsError("the results hold no metric")
    models = results.models
    if len(models) < 2:
        raise ResultsError(
            f"layer-match needs at least two models; the results compare {models[0]!r} with itself"
        )
    layers = [_model_layers(results, k) for k in range(len(models))]
    check_layers(models, layers, match_by)
    distinct = [(i, j) for i in range(len(models)) for j in range(len(models)) if i != j]
    out: list[LayerMatch] = []
    pairs_of: list[list[tuple[int, int]]] = []
    for m in chosen:
        pairs = [(i, j) for i, j in distinct if _scores(results, m, i, j) is not None]
        if not m.symmetric:
            one_way = [(i, j) for i, j in results.model_pairs
                       if i != j and (j, i) not in results.model_pairs]  # fmt: skip
            if one_way:
                i, j = one_way[0]
                raise ResultsError(
                    f"metric {m.spec!r} is asymmetric: layer-match scores S_ij + S_jiᵀ and needs "
                    f"both blocks {models[i]},{models[j]} and {models[j]},{models[i]}, but the "
                    "results hold one; run layer-match on the stores (it computes both), or pick "
                    "other metrics with -m"
                )
        if not pairs:
            raise ResultsError(f"metric {m.spec!r}: the results hold no block of two distinct models")
        pairs_of.append(pairs)
        out.append(_match_metric(results, m, pairs, layers, match_by, tie_tol))
    union = sorted({p for pairs in pairs_of for p in pairs})
    return LayerMatchReport(list(models), match_by, union, out)


def match_models(
    models: Sequence[tuple[str, ActivationStore]],
    metrics: Sequence[str | MetricSpec],
    *,
    match_by: str = "name",
    layers: Sequence[Sequence[str] | None] | None = None,
    tie_tol: float = TIE_TOL,
    **options: Any,
) -> LayerMatchReport:
    """Compute what the test needs from N ≥ 2 named stores of one architecture, then run it.

    Symmetric metrics are computed for the pairs i < j only (one run, each layer prepared once);
    asymmetric metrics for every ordered pair (a second run), since their scores are
    S_ij + S_jiᵀ. ``layers``: per model, layer globs (None: all). ``options`` go to
    :func:`~repsim_cli.compare.prepare_models` (memory, precision, side, progress, cache_dir).
    The layers are checked before anything is computed.
    """
    if len(models) < 2:
        raise RepsimError("layer-match needs at least two stores of the same architecture (got one)")
    specs = [m if isinstance(m, MetricSpec) else parse_spec(m) for m in metrics]
    if not specs:
        raise RepsimError("layer-match on stores needs at least one metric (-m)")
    globs = list(layers) if layers is not None else [None] * len(models)
    chosen = [select_layers(store, g) for (_, store), g in zip(models, globs, strict=True)]
    check_layers([name for name, _ in models], chosen, match_by)
    k = len(models)
    groups = [
        ([s for s in specs if s.info.symmetric], [(i, j) for i in range(k) for j in range(i + 1, k)]),
        ([s for s in specs if not s.info.symmetric],
         [(i, j) for i in range(k) for j in range(k) if i != j]),
    ]  # fmt: skip
    by_spec: dict[str, LayerMatch] = {}
    pairs: set[tuple[int, int]] = set()
    for group, override in groups:
        if not group:
            continue
        comparison = prepare_models(models, group, layers=globs, model_pairs_override=override, **options)
        try:
            results = comparison.run()
        finally:
            comparison.close()
        report = match_results(results, match_by=match_by, tie_tol=tie_tol)
        by_spec.update((m.spec, m) for m in report.metrics)
        pairs.update(report.ordered_pairs)
    return LayerMatchReport([name for name, _ in models], match_by, sorted(pairs),
                            [by_spec[s.text] for s in specs])  # fmt: skip


# -------------------------------------------------------------------- files
def write_report(report: LayerMatchReport, out: str | Path) -> None:
    """Write the report as ``.csv`` (long format, :meth:`LayerMatchReport.csv_text`) or ``.json``."""
    suffix = Path(out).suffix.lower()
    if suffix == ".csv":
        write_text(report.csv_text(), out)
    elif suffix == ".json":
        write_text(json.dumps(report.to_dict(), indent=2) + "\n", out)
    else:
        raise ResultsError(f"{out}: unknown output format (use .csv or .json)")


def write_plot(report: LayerMatchReport, out: str | Path) -> None:
    """A bar chart (PNG/SVG/PDF): hit rate of each layer and overall accuracy, one bar per metric
    in each group. Written atomically, without timestamps in the file's metadata."""
    out = Path(out)
    fmt = out.suffix.lower().lstrip(".")
    if f".{fmt}" not in PLOT_SUFFIXES:
        raise ResultsError(f"{out}: unknown plot format (use .png, .svg or .pdf)")
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    groups = [*report.layers, "all layers"]
    n_metrics = max(1, len(report.metrics))
    width = 0.8 / n_metrics
    x = np.arange(len(groups))
    fig, ax = plt.subplots(figsize=(min(30.0, 3.0 + 0.5 * len(groups) * max(1, n_metrics / 2)), 4.2),
                           layout="constrained")  # fmt: skip
    for k, m in enumerate(report.metrics):
        heights = [*m.layer_rates().tolist(), m.accuracy]
        ax.bar(x + (k - (n_metrics - 1) / 2) * width, heights, width,
               label=f"{m.spec} ({_pct(m.accuracy)}%)")  # fmt: skip
    ax.set_xticks(x, labels=groups, rotation=90 if len(groups) > 8 else 0)
    ax.set_ylim(0, 105)
    ax.set_ylabel("layer identified (%)")
    ax.set_title(f"Layer identification: {len(report.models)} models, "
                 f"{len(report.ordered_pairs)} ordered pairs, matched by {report.match_by}")  # fmt: skip
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    metadata = {"png": {"Software": None}, "svg": {"Date": None}, "pdf": {"CreationDate": None}}
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format=fmt, dpi=150, metadata=metadata.get(fmt, {}))
    plt.close(fig)
