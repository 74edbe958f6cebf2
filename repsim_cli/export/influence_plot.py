"""The influence plot: each example's leave-one-out change against its rank (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from .._atomic import atomic_path
from ..errors import OutputError
from .heatmap import PUBLISHING_RC

if TYPE_CHECKING:
    from ..influence import Influence

PLOT_SUFFIXES = (".png", ".svg", ".pdf")
LABELLED = 5  # at most this many examples named by their sample id (the dominating, else the top 3)


def write_influence_plot(report: Influence, out: str | Path) -> None:
    """Draw Δₖ (value without example k − value) against rank by |Δ| (log-scaled rank axis),
    the band median ± threshold that the verdict uses, and the dominating examples in red with
    their sample ids. Written atomically, without dates in the file's metadata."""
    out = Path(out)
    fmt = out.suffix.lower().lstrip(".")
    if out.suffix.lower() not in PLOT_SUFFIXES:
        raise OutputError(f"{out}: unknown plot format (use {', '.join(PLOT_SUFFIXES)})")
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    order = report.order
    change = report.change[order]
    rank = np.arange(1, order.size + 1)
    finite = np.isfinite(change)
    flagged = np.isin(order, report.dominant)
    with plt.rc_context(cast(Any, PUBLISHING_RC)):
        fig, ax = plt.subplots(figsize=(6.4, 4.0), layout="constrained")
        ax.axhline(0.0, color="0.6", linewidth=0.8)
        if finite.any() and np.isfinite(report.threshold):
            centre = float(np.median(change[finite]))
            ax.axhspan(centre - report.threshold, centre + report.threshold, color="0.9",
                       label=f"median ± threshold ({report.threshold:.3g})")  # fmt: skip
        ax.scatter(rank[~flagged & finite], change[~flagged & finite], s=8, color="tab:blue",
                   label="examples")  # fmt: skip
        if flagged.any():
            ax.scatter(rank[flagged], change[flagged], s=24, color="tab:red", label="dominating")
        named = int(flagged.sum()) if flagged.any() else 3
        for r in range(min(LABELLED, named, order.size)):
            if finite[r]:  # alternate offsets so that neighbours' labels do not overlap
                ax.annotate(_sample_id(report, int(order[r])), (rank[r], change[r]),
                            textcoords="offset points", xytext=(5, 4 - 12 * (r % 2)), fontsize=7)
        ax.set_xscale("log")
        ax.set_xlabel("rank by |change| (1 = most influential)")
        ax.set_ylabel("value without the example − value")
        title = report.labels.get("title") or f"{report.spec}: leave-one-out influence"
        ax.set_title(f"{title} (value {report.value:.4g}, n = {report.n:,})", fontsize=9)
        ax.legend(fontsize=7, loc="best")
        metadata = {"png": {"Software": None}, "svg": {"Date": None}, "pdf": {"CreationDate": None}}
        with atomic_path(out) as tmp:
            fig.savefig(tmp, format=fmt, dpi=150, metadata=metadata.get(fmt, {}))
        plt.close(fig)


def _sample_id(report: Influence, k: int) -> str:
    v = report.ids[k]
    v = v.item() if isinstance(v, np.generic) else v
    return v.decode() if isinstance(v, bytes) else str(v)
