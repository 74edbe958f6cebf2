"""Heatmaps of a results matrix (PNG/SVG/PDF) with matplotlib's Agg backend, no timestamps.

Made to be published as they are: text is embedded as TrueType (PDF) or kept as text (SVG), not
drawn as Type 3 glyphs or paths, so journals' checks pass and the text stays editable; the colour
scale is the metric's natural range unless asked otherwise, so two figures of one metric compare
by eye; the title states the metric, its parameters, n and the stores; undefined cells are drawn
hatched and labelled, never left looking like a low value.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from .._atomic import atomic_path
from ..errors import ResultsError
from ..results import MetricResult, Results
from .labels import auto_digits, shorten, tick_step
from .stats_view import UNIT_RANGE, WHAT_LABELS, Mark, mark_mask, require, statistic_matrix

RANGES = ("natural", "data")
# Text as TrueType in PDF/PS (not Type 3), as <text> in SVG; fixed SVG ids, for identical bytes.
PUBLISHING_RC = {"pdf.fonttype": 42, "ps.fonttype": 42, "svg.fonttype": "none",
                 "svg.hashsalt": "repsim"}  # fmt: skip
UNDEFINED_COLOUR = "#d9d9d9"


@dataclass(frozen=True)
class HeatmapStyle:
    """How to draw a heatmap.

    ``vmin``/``vmax`` fix the colour scale's ends; otherwise ``value_range`` decides:
    ``natural`` — the metric's declared bounds (widened to any value outside them),
    ``data`` — the finite values' min and max. ``title``: None for the default
    (metric, parameters, n, stores), ``""`` for none. ``digits``: decimals of the annotations,
    None to choose them from the values (:func:`~repsim_cli.export.labels.auto_digits`).
    ``what``: the matrix drawn (:data:`~repsim_cli.export.stats_view.WHAT`; ``std_error=True``
    is the older spelling of ``what="std_error"``); ``annotate_error``: cells read
    ``value ± standard error``; ``marks``: cells passing every mark get a ``*``.
    """

    annotate: bool = False
    cmap: str | None = None
    std_error: bool = False
    vmin: float | None = None
    vmax: float | None = None
    value_range: str = "natural"
    title: str | None = None
    digits: int | None = None
    what: str = "value"
    annotate_error: bool = False
    marks: tuple[Mark, ...] = ()

    @property
    def drawn(self) -> str:
        """The statistic drawn: ``what``, or ``std_error`` under the older flag."""
        return "std_error" if self.std_error else self.what


def natural_bounds(m: MetricResult) -> tuple[float, float]:
    """The metric's declared range ((-inf, inf) when the metric is not registered)."""
    from ..errors import UnknownMetricError
    from ..metrics import get_metric

    try:
        lo, hi = get_metric(m.name).bounds
    except UnknownMetricError:
        return -np.inf, np.inf
    return float(lo), float(hi)


def colour_range(data: np.ndarray, m: MetricResult, style: HeatmapStyle) -> tuple[float, float]:
    """(vmin, vmax) of the colour scale; see :class:`HeatmapStyle`."""
    finite = data[np.isfinite(data)]
    data_lo = float(finite.min()) if finite.size else 0.0
    data_hi = float(finite.max()) if finite.size else 1.0
    if style.value_range not in RANGES:
        raise ResultsError(f"unknown range {style.value_range!r}; use {' or '.join(RANGES)}")
    if style.drawn in UNIT_RANGE and style.value_range == "natural":
        lo, hi = 0.0, 1.0
    elif style.value_range == "data" or style.drawn != "value":
        lo, hi = data_lo, data_hi
    else:
        bound_lo, bound_hi = natural_bounds(m)
        lo = min(bound_lo, data_lo) if np.isfinite(bound_lo) else data_lo
        hi = max(bound_hi, data_hi) if np.isfinite(bound_hi) else data_hi
    lo = style.vmin if style.vmin is not None else lo
    hi = style.vmax if style.vmax is not None else hi
    if not lo < hi:
        if style.vmin is not None and style.vmax is not None:
            raise ResultsError(f"--vmin {style.vmin:g} must be below --vmax {style.vmax:g}")
        lo, hi = (lo - 0.5, hi + 0.5) if lo == hi else (hi, lo)
    return lo, hi


def _store_name(results: Results, side: str) -> str:
    return Path(str(results.attrs.get(f"store_{side}", side.upper()))).name


def default_title(results: Results, m: MetricResult, std_error: bool | str) -> str:
    """``cka (debiased=True) — n = 1,797 — A: a.h5, B: b.h5``; ``std_error``: True (the standard
    error) or the name of the statistic drawn (:data:`~repsim_cli.export.stats_view.WHAT`)."""
    params = ", ".join(f"{k}={v}" for k, v in sorted(m.params.items()))
    what = f"{m.name} ({params})" if params else m.name
    drawn = "std_error" if std_error is True else (std_error or "value")
    if drawn != "value":
        what += f": {WHAT_LABELS.get(drawn, drawn)}"
    parts = [what]
    n = results.attrs.get("n_samples")
    if n is not None:
        parts.append(f"n = {int(n):,}")
    if results.multi_block:
        parts.append(f"{len(results.models)} models")
    elif "store_a" in results.attrs:
        parts.append(f"A: {_store_name(results, 'a')}, B: {_store_name(results, 'b')}")
    return " — ".join(parts)


def _set_ticks(ax: Any, axis: str, names: list[str], font: float) -> None:
    step = tick_step(len(names))
    font = min(10.0, font * step)  # labels k cells apart have k times the room
    positions = list(range(0, len(names), step))
    labels = [names[i] for i in positions]
    if axis == "x":
        ax.set_xticks(positions, labels=labels, rotation=90, fontsize=font)
    else:
        ax.set_yticks(positions, labels=labels, fontsize=font)


def _axis_label(side: str, store: str, prefix: str) -> str:
    return f"{side}: {store}" + (f"  (layers {prefix}…)" if prefix else "")


def model_spans(models: list[int]) -> list[tuple[int, int, int]]:
    """Runs of equal model index along an axis: (model, first, stop)."""
    spans: list[tuple[int, int, int]] = []
    for k, m in enumerate(models):
        if spans and spans[-1][0] == m:
            spans[-1] = (m, spans[-1][1], k + 1)
        else:
            spans.append((m, k, k + 1))
    return spans


def mark_model_blocks(ax: Any, results: Results) -> None:
    """Separate the model-pair blocks of an N-model matrix with lines and name each model's span
    on both axes (above the matrix and to its right)."""
    names = results.models
    for axis, models in (("y", results.row_models), ("x", results.col_models)):
        for m, first, stop in model_spans(models):
            if first > 0:
                (ax.axhline if axis == "y" else ax.axvline)(first - 0.5, color="white", linewidth=1.5)
            middle = (first + stop - 1) / 2
            if axis == "y":
                ax.text(1.01, middle, names[m], transform=ax.get_yaxis_transform(), va="center",
                        ha="left", fontsize=8, fontweight="bold", rotation=270)
            else:
                ax.text(middle, 1.01, names[m], transform=ax.get_xaxis_transform(), ha="center",
                        va="bottom", fontsize=8, fontweight="bold")


def write_heatmap(
    results: Results, out: str | Path, *, spec: str | None = None, style: HeatmapStyle | None = None
) -> None:
    """Draw one metric's (La, Lb) matrix: rows are layers of A, columns layers of B.

    Tick labels are the layer names without their shared prefix (given once in the axis label),
    every k-th when there are more than 40, in a font that shrinks with the layer count. Cells
    computed as NaN (undefined for these layers) are hatched grey and labelled "n/a"; cells no
    shard computed are labelled "—". Written atomically; the file's metadata carries no date, so
    the same results give the same bytes.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    style = style or HeatmapStyle()
    if results.multi_block:
        results = results.cropped()
    m = results.get(spec)
    data, label = statistic_matrix(m, style.drawn)
    if style.annotate_error:
        if style.drawn != "value":
            raise ResultsError("--annotate error writes value ± standard error: it goes with the "
                               f"value's heatmap, not --what {style.drawn}")  # fmt: skip
        require(m, "std_error")
    marked = mark_mask(m, style.marks) if style.marks else None
    vmin, vmax = colour_range(data, m, style)
    prefix_a, la = shorten(results.layers_a)
    prefix_b, lb = shorten(results.layers_b)
    n_max = max(len(la), len(lb))
    cell = 0.45 if n_max <= 20 else max(0.16, 9.0 / n_max)
    fig_w = min(40.0, 3.0 + cell * len(lb) + 1.5)
    fig_h = min(40.0, 2.8 + cell * len(la))
    font = max(4.0, min(10.0, 220.0 / n_max))
    cmap_name = style.cmap or ("magma_r" if m.kind == "distance" else "viridis")
    with plt.rc_context(cast(Any, PUBLISHING_RC)):
        try:
            cmap = matplotlib.colormaps[cmap_name].with_extremes(bad=UNDEFINED_COLOUR)
        except KeyError:
            raise ResultsError(f"unknown colormap {cmap_name!r} (see matplotlib's colormap list)") from None
        fig, ax = plt.subplots(figsize=(fig_w, fig_h), layout="constrained")
        image = ax.imshow(np.ma.masked_invalid(data), cmap=cmap, vmin=vmin, vmax=vmax,
                          aspect="auto", interpolation="nearest")  # fmt: skip
        _set_ticks(ax, "x", lb, font)
        _set_ticks(ax, "y", la, font)
        if results.multi_block:  # model names label the blocks (above and to the right)
            ax.set_xlabel(_axis_label("columns", "models", prefix_b))
            ax.set_ylabel(_axis_label("rows", "models", prefix_a))
            mark_model_blocks(ax, results)
        else:
            ax.set_xlabel(_axis_label("B", _store_name(results, "b"), prefix_b))
            ax.set_ylabel(_axis_label("A", _store_name(results, "a"), prefix_a))
        title = default_title(results, m, style.drawn) if style.title is None else style.title
        if title:
            ax.set_title(title, fontsize=10, pad=16 if results.multi_block else 6)
        finite = data[np.isfinite(data)]
        extend = ("both" if finite.size and finite.min() < vmin and finite.max() > vmax
                  else "min" if finite.size and finite.min() < vmin
                  else "max" if finite.size and finite.max() > vmax else "neither")  # fmt: skip
        bar = fig.colorbar(image, ax=ax, shrink=0.8, extend=extend)
        bar.set_label(label)
        _mark_cells(ax, data, m, style, vmin, vmax, cmap, font, results.block_mask(), marked)
        out = Path(out)
        metadata = {"png": {"Software": None}, "svg": {"Date": None}, "pdf": {"CreationDate": None}}
        fmt = out.suffix.lower().lstrip(".")
        with atomic_path(out) as tmp:
            fig.savefig(tmp, format=fmt, dpi=150, metadata=metadata.get(fmt, {}))
        plt.close(fig)


def _mark_cells(
    ax: Any, data: np.ndarray, m: MetricResult, style: HeatmapStyle, vmin: float, vmax: float,
    cmap: Any, font: float, inside: np.ndarray, marked: np.ndarray | None = None,
) -> None:  # fmt: skip
    """Hatch and label undefined cells; mark degenerate ones (a value the metric defines, but by
    construction — the cell's note) with a dagger and its note in the legend; write the values
    (or ``value ± error``) when annotating; put a ``*`` on the cells that pass every ``--mark``
    (``marked``). Cells outside the model-pair blocks of an N-model matrix (``inside`` False)
    stay blank."""
    from matplotlib.patches import Rectangle

    error = m.std_error if style.annotate_error else None
    digits = style.digits if style.digits is not None else auto_digits(data)
    if style.digits is None and error is not None:
        digits = max(digits, auto_digits(error))
    size = max(3.0, font * 0.8)
    undefined = False
    marks = {note: "†" * (k + 1) for k, note in enumerate(sorted(set(m.notes.values())))}
    for i in range(data.shape[0]):
        for j in range(data.shape[1]):
            v = float(data[i, j])
            if not inside[i, j]:
                continue
            if not m.is_computed(i, j):
                ax.text(j, i, "—", ha="center", va="center", fontsize=size, color="0.4")
            elif not np.isfinite(v):
                undefined = True
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///",
                                       edgecolor="0.55", linewidth=0))  # fmt: skip
                ax.text(j, i, "n/a", ha="center", va="center", fontsize=size, color="0.2")
            else:
                star = marked is not None and bool(marked[i, j])
                if not (style.annotate or star or (i, j) in m.notes):
                    continue
                t = (min(max(v, vmin), vmax) - vmin) / (vmax - vmin)
                red, green, blue, _ = cmap(t)
                dark = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5
                text = f"{v:.{digits}f}" if style.annotate else ""
                if error is not None and style.annotate and np.isfinite(error[i, j]):
                    text += f" ± {float(error[i, j]):.{digits}f}"
                text += marks.get(m.notes.get((i, j), ""), "")
                text += "*" if star else ""
                ax.text(j, i, text, ha="center", va="center", fontsize=size,
                        color="white" if dark else "black")  # fmt: skip
    notes = [f"{mark} degenerate: {note}" for note, mark in marks.items()]
    if style.marks:
        notes.append("*: " + " and ".join(mark.describe() for mark in style.marks))
    if undefined:
        notes.append("n/a (hatched): undefined for these layers (NaN)")
    if m.computed is not None and not m.computed[inside].all():
        notes.append("—: not computed (a shard's share)")
    if notes:  # under the axis label, where constrained layout makes room for it
        import textwrap

        width = max(40, int(ax.figure.get_figwidth() * 11))  # characters that fit the figure
        ax.set_xlabel(ax.get_xlabel() + "\n" + textwrap.fill("; ".join(notes), width))
