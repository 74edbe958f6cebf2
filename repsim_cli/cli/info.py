"""``repsim info``: what a store holds, or what a results file describes."""

from __future__ import annotations

import json
from typing import Any

import click

from ..errors import RepsimError
from ..store import open_store


@click.command("info")
@click.argument("store_path", metavar="FILE")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def command(store_path: str, as_json: bool) -> None:
    """Show what a file holds: an activation store's layers (shape, dtype, chunking, stats), or a
    results file's metrics, stores, layers and provenance.

    \b
    Examples:
      repsim info sample_data/digits_seed0.h5 --json
      repsim info cka.h5
    """
    summary = _results_summary(store_path)
    if summary is not None:
        _print_results(summary, as_json)
        return
    if _print_partial(store_path, as_json):
        return
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


def _print_partial(path: str, as_json: bool) -> bool:
    """Describe a shard's partial-sums file (``compare --shard`` of the CKA family); False when
    ``path`` is not one."""
    from ..partials import is_partial_file, read_partial

    if not is_partial_file(path):
        return False
    part = read_partial(path)
    summary: dict[str, Any] = {
        "path": path, "format": "partial_sums", "shard": str(part.shard), "share": part.share,
        "stores": part.header.get("stores"), "metrics": [m[0] if isinstance(m, list) else m
                                                         for m in part.header.get("metrics", [])],
        "side": part.header.get("side"), "n_samples": part.header.get("n"),
        "arrays": {name: list(arr.shape) for name, arr in sorted(part.arrays.items())},
    }  # fmt: skip
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return True
    click.echo(f"{path}: partial sums of shard {summary['shard']} ({summary['share']}), "
               f"{summary['side']} side, n={summary['n_samples']}")
    click.echo(f"  stores: {', '.join(map(str, summary['stores'] or []))}")
    click.echo(f"  metrics: {', '.join(map(str, summary['metrics']))}")
    click.echo("  join every shard's file with `repsim merge PART... -o OUT`")
    return True


def _results_summary(path: str) -> dict[str, Any] | None:
    """What a results file (from compare or merge) holds; None when ``path`` is not one."""
    from ..results import is_results_file, read_results

    try:
        if not is_results_file(path):
            return None
        results = read_results(path)
    except (RepsimError, OSError):
        return None
    import numpy as np

    from ..results import STAT_FIELDS

    attrs = results.attrs
    metrics = []
    for m in results.metrics.values():
        done = m.value.size if m.computed is None else int(m.computed.sum())
        metrics.append({
            "spec": m.spec, "name": m.name, "kind": m.kind, "symmetric": m.symmetric,
            "params": m.params, "cells_computed": done, "cells": int(m.value.size),
            "std_error": m.std_error is not None,
            "statistics": [k for k in STAT_FIELDS if k in m.stats and bool(np.isfinite(m.stats[k]).any())],
        })  # fmt: skip
    provenance = {key: attrs.get(key) for key in
                  ("command", "repsim_version", "versions", "created", "host", "shard", "side",
                   "compute_dtype", "merged_from") if attrs.get(key) is not None}  # fmt: skip
    return {
        "path": path, "kind": "results", "n_samples": attrs.get("n_samples"),
        "stores": {"a": attrs.get("store_a"), "b": attrs.get("store_b")},
        "fingerprints": {"a": attrs.get("fingerprint_a"), "b": attrs.get("fingerprint_b")},
        "metrics": metrics, "layers_a": results.layers_a, "layers_b": results.layers_b,
        "statistics": attrs.get("statistics") if isinstance(attrs.get("statistics"), dict) else None,
        "provenance": provenance,
    }  # fmt: skip


_ADJUST = {"holm": "Holm", "bh": "Benjamini-Hochberg"}


def describe_statistics(settings: dict[str, Any]) -> str:
    """One line from a results file's ``statistics`` attribute (compare's --bootstrap, --ci,
    --jackknife, --permutations, --null, --adjust and --seed), e.g. ``bootstrap of 200
    replicates (95% percentile intervals); 999 permutations, p-values adjusted by Holm; seed 1``."""
    parts = []
    if settings.get("bootstrap"):
        parts.append(f"bootstrap of {int(settings['bootstrap']):,} replicates "
                     f"({100 * float(settings.get('ci', 0.95)):.4g}% "
                     f"{'BCa' if settings.get('ci_method') == 'bca' else 'percentile'} intervals)")  # fmt: skip
    if settings.get("jackknife"):
        parts.append("jackknife standard errors")
    test = None
    if settings.get("permutations"):
        test = f"{int(settings['permutations']):,} permutations"
    elif settings.get("null") == "gamma":
        test = "gamma null (fitted)"
    if test is not None:
        method = str(settings.get("adjust") or "none")
        test += ("; p-values not adjusted" if method == "none"
                 else f", p-values adjusted by {_ADJUST.get(method, method)}")  # fmt: skip
        parts.append(test)
    if settings.get("bootstrap") or settings.get("permutations"):
        parts.append(f"seed {settings.get('seed', 0)}")
    return "; ".join(parts)


def _print_results(summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(summary, indent=2, default=str))
        return
    n = summary["n_samples"]
    click.echo(f"{summary['path']}: similarity results" + (f", n = {n:,}" if n else ""))
    stores = summary["stores"]
    if stores["a"] is not None:
        click.echo(f"  store A: {stores['a']}")
        click.echo(f"  store B: {stores['b']}")
    for side in ("a", "b"):
        names = summary[f"layers_{side}"]
        click.echo(f"  layers {side.upper()} ({len(names)}): {', '.join(names)}")
    click.echo("  metrics:")
    for m in summary["metrics"]:
        extra = ", with standard errors" if m["std_error"] else ""
        if m.get("statistics"):
            extra += "; " + ", ".join(m["statistics"])
        click.echo(f"    {m['spec']} ({m['kind']}): {m['cells_computed']:,} of {m['cells']:,} "
                   f"cells computed{extra}")  # fmt: skip
    if summary.get("statistics"):
        line = describe_statistics(summary["statistics"])
        if line:
            click.echo(f"  statistics: {line}")
    prov = summary["provenance"]
    labels = {"command": "command", "created": "date", "host": "host",
              "repsim_version": "repsim", "shard": "shard", "side": "engine side",
              "compute_dtype": "precision"}  # fmt: skip
    for key, label in labels.items():
        if key in prov:
            click.echo(f"  {label}: {prov[key]}")
    if "versions" in prov:
        versions = ", ".join(f"{k} {v}" for k, v in dict(prov["versions"]).items())
        click.echo(f"  versions: {versions}")
    sources = prov.get("merged_from") or []
    if sources:
        click.echo(f"  merged from {len(sources)} shard{'s' if len(sources) > 1 else ''}:")
        for source in sources:
            when = ", ".join(str(source[k]) for k in ("created", "host") if source.get(k))
            click.echo(f"    {source.get('shard')}: {source.get('file')}" + (f" ({when})" if when else ""))
            if source.get("command"):
                click.echo(f"      command: {source['command']}")
