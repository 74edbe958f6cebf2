"""Render a results matrix in the terminal (colour by value), fitted to the terminal's width.

Columns are as wide as the values; when the column layers' names are wider than that, columns
are labelled ``b0``, ``b1``, ... with a legend below. When the columns still do not fit, the
matrix is printed in several panels of columns, each with every row. Nothing is cut to ``…``.
"""

from __future__ import annotations

import numpy as np

from .._console import stdout_console
from ..results import Results
from .labels import shorten

PALETTE = ("grey35", "blue", "cyan", "green", "yellow", "bold bright_yellow")
MAX_ROW_LABEL = 40  # characters, before row labels become a0, a1, ... with a legend


def _colour(value: float, lo: float, hi: float, distance: bool) -> str:
    if not np.isfinite(value):
        return "dim"
    t = 0.0 if hi <= lo else (value - lo) / (hi - lo)
    if distance:
        t = 1.0 - t
    return PALETTE[min(len(PALETTE) - 1, int(t * len(PALETTE)))]


def _legend(tag: str, prefix: str, names: list[str]) -> list[str]:
    return [f"{tag}{i} = {prefix}{name}" for i, name in enumerate(names)]


def render_matrix(
    results: Results, spec: str | None = None, digits: int = 2, width: int | None = None,
    stats: bool = True,
) -> None:
    """Print one metric's matrix to stdout (rows: layers of A, columns: layers of B).

    ``width``: characters per line (default: the terminal's, or 80 when not a terminal).
    ``stats``: when the results hold them, each cell also shows its interval ``[low, high]`` (or
    ``±se``) and p-value (:func:`~repsim_cli.export.stats_view.cell_texts`), with a caption.
    """
    from .stats_view import cell_texts

    console = stdout_console(soft_wrap=True, highlight=False)
    width = max(40, width or console.width)
    m = results.get(spec)
    finite = m.value[np.isfinite(m.value)]
    lo = float(finite.min()) if finite.size else 0.0
    hi = float(finite.max()) if finite.size else 1.0
    caption: str | None = None
    if stats:
        texts, caption = cell_texts(m, digits)
    else:
        texts = [["—" if not np.isfinite(v) else f"{v:.{digits}f}" for v in row] for row in m.value]
    cell = max(3, *(len(t) for row in texts for t in row)) if texts and texts[0] else 3

    prefix_a, rows = shorten(results.layers_a)
    prefix_b, cols = shorten(results.layers_b)
    legends: list[str] = []
    if max((len(r) for r in rows), default=0) > min(MAX_ROW_LABEL, width // 3):
        legends += _legend("a", prefix_a, rows)
        rows = [f"a{i}" for i in range(len(rows))]
    elif prefix_a:
        legends.append(f"rows: {prefix_a}…")
    widest = max((len(c) for c in cols), default=0)
    label = max(len("A \\ B"), *(len(r) for r in rows)) if rows else len("A \\ B")
    if widest > cell and label + len(cols) * (widest + 1) <= width:
        cell = widest  # the names fit as they are
    elif widest > cell:
        legends += _legend("b", prefix_b, cols)
        cols = [f"b{j}" for j in range(len(cols))]
        cell = max(cell, *(len(c) for c in cols))
    elif prefix_b:
        legends.append(f"columns: {prefix_b}…")
    label = max(len("A \\ B"), *(len(r) for r in rows)) if rows else len("A \\ B")
    per_panel = max(1, (width - label) // (cell + 1))

    a_name = results.attrs.get("store_a", "A")
    b_name = results.attrs.get("store_b", "B")
    console.print(f"{m.spec} ({m.kind}); rows: A = {a_name}, columns: B = {b_name}", markup=False)
    for start in range(0, len(cols), per_panel):
        stop = min(len(cols), start + per_panel)
        if len(cols) > per_panel:
            console.print(f"columns {start + 1}–{stop} of {len(cols)}", style="dim")
        header = "A \\ B".ljust(label) + "".join(" " + c.rjust(cell) for c in cols[start:stop])
        console.print(header, style="bold", markup=False)
        for i, name in enumerate(rows):
            cells = "".join(
                f" [{_colour(float(m.value[i, j]), lo, hi, m.kind == 'distance')}]"
                f"{texts[i][j].rjust(cell)}[/]"
                for j in range(start, stop)
            )
            console.print(f"[bold]{_escape(name.ljust(label))}[/]{cells}")
    for line in legends:
        console.print(line, markup=False)
    if caption:
        console.print(caption, markup=False)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
