"""``repsim metrics``: the metric registry."""

from __future__ import annotations

import json
from typing import Any

import click

from ..metrics import REGISTRY


@click.command("metrics")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.option("--markdown", is_flag=True, help="Print the README's metrics table (Markdown).")
def command(as_json: bool, markdown: bool) -> None:
    """List every metric with its kind, range, parameters and citation.

    \b
    Example:
      repsim metrics --json
    """
    if markdown:
        from ..metrics.table import metrics_block

        click.echo(metrics_block())
        return
    rows: list[dict[str, Any]] = [
        {
            "name": m.name, "kind": m.kind, "symmetric": m.symmetric,
            "range": m.range_text or f"[{m.bounds[0]:g}, {m.bounds[1]:g}]",
            "params": {p.name: p.default for p in m.params},
            "param_help": [p.describe() for p in m.params], "aliases": list(m.aliases),
            "sides": list(m.sides), "citation": m.citation, "summary": m.summary,
        }
        for m in REGISTRY.values()
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        params = ", ".join(r["param_help"]) or "no parameters"
        sym = "symmetric" if r["symmetric"] else "asymmetric"
        click.echo(f"{r['name']}: {r['summary']} — {r['kind']}, {r['range']}, {sym}")
        click.echo(f"    parameters: {params}")
        click.echo(f"    {r['citation']}")
