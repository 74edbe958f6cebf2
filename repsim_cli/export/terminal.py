"""Render a results matrix in the terminal with rich (colour by value)."""

from __future__ import annotations

import numpy as np

from ..results import Results


def _colour(value: float, lo: float, hi: float, distance: bool) -> str:
    if not np.isfinite(value):
        return "dim"
    t = 0.0 if hi <= lo else (value - lo) / (hi - lo)
    if distance:
        t = 1.0 - t
    palette = ["grey35", "blue", "cyan", "green", "yellow", "bold bright_yellow"]
    return palette[min(len(palette) - 1, int(t * len(palette)))]


def render_matrix(results: Results, spec: str | None = None, digits: int = 2) -> None:
    """Print one metric's matrix as a table to stdout (rows: layers of A, columns: layers of B)."""
    from rich.console import Console
    from rich.table import Table

    m = results.get(spec)
    finite = m.value[np.isfinite(m.value)]
    lo = float(finite.min()) if finite.size else 0.0
    hi = float(finite.max()) if finite.size else 1.0
    table = Table(title=f"{m.spec} ({m.kind}); rows: A, columns: B", show_lines=False)
    table.add_column("A \\ B", style="bold")
    for name in results.layers_b:
        table.add_column(name, justify="right")
    for i, name in enumerate(results.layers_a):
        cells = []
        for v in m.value[i]:
            text = "—" if not np.isfinite(v) else f"{v:.{digits}f}"
            cells.append(f"[{_colour(float(v), lo, hi, m.kind == 'distance')}]{text}[/]")
        table.add_row(name, *cells)
    Console(soft_wrap=True).print(table)
