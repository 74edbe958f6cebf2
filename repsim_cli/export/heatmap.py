"""Heatmaps of a results matrix (PNG/SVG/PDF) with matplotlib's Agg backend, no timestamps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import atomic_path
from ..errors import ResultsError
from ..results import Results


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
    results: Results,
    out: str | Path,
    *,
    spec: str | None = None,
    annotate: bool = False,
    cmap: str | None = None,
    std_error: bool = False,
) -> None:
    """Draw one metric's (La, Lb) matrix: rows are layers of A, columns layers of B.

    Layer names label both axes (font shrinks with the layer count so 50×50 stays readable); the
    colorbar is labelled with the metric spec and its kind. Written atomically; the file's metadata
    carries no date, so the same results give the same bytes.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    m = results.get(spec)
    if std_error:
        if m.std_error is None:
            raise ResultsError(f"metric {m.spec!r} has no standard error (only Monte Carlo metrics do)")
        data, label = m.std_error, f"{m.spec} — Monte Carlo standard error"
    else:
        data, label = m.value, f"{m.spec} ({m.kind})"
    la, lb = results.layers_a, results.layers_b
    n_max = max(len(la), len(lb))
    cell = 0.45 if n_max <= 20 else max(0.16, 9.0 / n_max)
    fig_w = min(40.0, 3.0 + cell * len(lb) + 1.5)
    fig_h = min(40.0, 2.5 + cell * len(la))
    font = max(4.0, min(10.0, 220.0 / n_max))
    cmap = cmap or ("magma_r" if m.kind == "distance" else "viridis")
    fig, ax = plt.subplots(figsize=(fig_w, fig_h), layout="constrained")
    finite = data[np.isfinite(data)]
    vmin = float(finite.min()) if finite.size else 0.0
    vmax = float(finite.max()) if finite.size else 1.0
    # The colour scale spans the data (not the metric's full range) so structure stays visible.
    image = ax.imshow(np.ma.masked_invalid(data), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto",
                      interpolation="nearest")
    ax.set_xticks(range(len(lb)), labels=lb, rotation=90, fontsize=font)
    ax.set_yticks(range(len(la)), labels=la, fontsize=font)
    ax.set_xlabel(f"B: {Path(str(results.attrs.get('store_b', 'B'))).name}")
    ax.set_ylabel(f"A: {Path(str(results.attrs.get('store_a', 'A'))).name}")
    if results.multi_block:
        mark_model_blocks(ax, results)
    bar = fig.colorbar(image, ax=ax, shrink=0.8)
    bar.set_label(label)
    if annotate:
        mid = (vmin + vmax) / 2
        for i in range(len(la)):
            for j in range(len(lb)):
                v = data[i, j]
                text = "" if not np.isfinite(v) else f"{v:.2f}"
                ax.text(j, i, text, ha="center", va="center", fontsize=max(3.0, font * 0.8),
                        color="white" if (v < mid) == (cmap.endswith("_r") is False) else "black")
    out = Path(out)
    metadata = {"png": {"Software": None}, "svg": {"Date": None}, "pdf": {"CreationDate": None}}
    fmt = out.suffix.lower().lstrip(".")
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format=fmt, dpi=150, metadata=metadata.get(fmt, {}))
    plt.close(fig)
