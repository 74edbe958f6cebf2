"""``repsim info``: what a store holds."""

from __future__ import annotations

import json
from typing import Any

import click

from ..store import open_store


@click.command("info")
@click.argument("store_path", metavar="STORE")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def command(store_path: str, as_json: bool) -> None:
    """Show the layers of an activation store: shape, dtype, chunking, stats.

    \b
    Example:
      repsim info sample_data/digits_seed0.h5 --json
    """
    with open_store(store_path, require_complete=False) as store:
        layers: list[dict[str, Any]] = []
        for name in store.layers:
            info = store.info(name)
            layers.append({
                "name": name, "shape": list(info.shape), "dtype": str(info.dtype),
                "chunk_rows": info.chunk_rows, "stats": store.has_stats(name),
                "reduction": info.attrs.get("reduction"),
            })  # fmt: skip
        summary = {
            "path": str(store.path), "backend": store.backend, "n_samples": store.n_samples,
            "complete": store.complete, "format_version": store.attrs.get("format_version"),
            "repsim_version": store.attrs.get("repsim_version"), "layers": layers,
        }  # fmt: skip
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    from rich.table import Table

    from .._console import stdout_console

    table = Table(title=f"{summary['path']} ({summary['backend']}, n={summary['n_samples']}"
                  + ("" if summary["complete"] else ", INCOMPLETE") + ")")
    for col in ("layer", "shape", "dtype", "chunk rows", "stats"):
        table.add_column(col)
    for layer in layers:
        table.add_row(str(layer["name"]), "×".join(map(str, layer["shape"])), str(layer["dtype"]),
                      str(layer["chunk_rows"]), "yes" if layer["stats"] else "no")
    stdout_console(soft_wrap=True).print(table)
