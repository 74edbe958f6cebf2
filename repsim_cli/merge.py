"""Merge the results stores written by the shards of a job array into one."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ResultsError
from .results import MetricResult, Results, read_results
from .stats.runner import adjust_results

# Attributes that must agree between shards of one comparison: the stores and their content (the
# fingerprints include the layers' content digests), the models, and every setting that changes values.
_SAME = ("store_a", "store_b", "fingerprint_a", "fingerprint_b", "n_samples", "models", "stores",
         "fingerprints", "model_pairs", "compute_dtype", "side", "statistics")
_WORDS = {"fingerprint_a": "the content of store A (fingerprint)", "fingerprint_b": "the content of store B (fingerprint)",
          "fingerprints": "the content of the stores (fingerprints)",
          "compute_dtype": "the precision (--precision)", "side": "the engine side (--side)",
          "statistics": "the statistics options (--bootstrap, --permutations, --seed, ...)"}  # fmt: skip


# A shard's own provenance: kept per shard under ``merged_from``, not as the merged file's.
SHARD_PROVENANCE = ("shard", "command", "created", "host")


def shard_source(path: str | Path, attrs: dict[str, object], shard: object = None) -> dict[str, object]:
    """One entry of a merged file's ``merged_from``: the shard file as given, its ``K/N``, and the
    command, date and host it recorded (those it has)."""
    entry: dict[str, object] = {"file": str(path)}
    if shard is not None or attrs.get("shard") is not None:
        entry["shard"] = str(shard if shard is not None else attrs["shard"])
    entry.update({k: attrs[k] for k in SHARD_PROVENANCE[1:] if attrs.get(k) is not None})
    return entry


class MissingCellsError(ResultsError):
    """The shards together do not cover every cell; ``missing`` lists (spec, layer_a, layer_b)."""

    def __init__(self, message: str, missing: list[tuple[str, str, str]]) -> None:
        super().__init__(message)
        self.missing = missing


def _same_value(x: float, y: float) -> bool:
    return bool(x == y or (np.isnan(x) and np.isnan(y)))


def merge_files(paths: Sequence[str | Path]) -> Results:
    """Merge shard files of either kind: partial sums (:func:`repsim_cli.partials.merge_partials`)
    or results of cells (:func:`merge_results`).

    Every file is checked first, so a missing or unreadable file is named as such wherever it
    stands in the list, before any complaint about mixing the two kinds.
    """
    from .partials import is_partial_file, merge_partials

    if not paths:
        raise ResultsError("merge needs at least one results file")
    for p in paths:
        if not Path(p).exists():
            raise ResultsError(f"{p}: no such file")
    partial = [is_partial_file(p) for p in paths]
    if all(partial):
        return merge_partials(paths)
    if any(partial):
        for p, is_partial in zip(paths, partial, strict=True):
            if not is_partial:
                read_results(p)  # names a file that is neither kind (damaged, not repsim's)
        odd = paths[partial.index(False)] if partial[0] else paths[partial.index(True)]
        raise ResultsError(f"{odd}: cannot merge partial sums (compare --shard of inner-product "
                           "metrics) with results of cells; merge each kind separately")  # fmt: skip
    return merge_results(paths)


def merge_results(paths: Sequence[str | Path]) -> Results:
    """Union the cells of shard results (``.h5``/``.zarr`` from ``compare --shard``).

    The merged attributes are the shards' common ones; each shard's own command, date and host
    go to ``merged_from`` (:func:`shard_source`), in the order given.

    Refuses shards of different comparisons (stores, layers, metrics or parameters differ) and a
    cell computed by two shards with different values; raises :class:`MissingCellsError` naming
    every cell no shard computed.
    """
    if not paths:
        raise ResultsError("merge needs at least one results file")
    parts = [(Path(p), read_results(p)) for p in paths]
    first_path, first = parts[0]
    attrs = {k: v for k, v in first.attrs.items() if k not in SHARD_PROVENANCE}
    attrs["merged_from"] = [shard_source(path, part.attrs) for path, part in parts]
    merged = Results(list(first.layers_a), list(first.layers_b), attrs=attrs)
    for spec, m in first.metrics.items():
        merged.metrics[spec] = MetricResult(
            spec=spec, name=m.name, kind=m.kind, symmetric=m.symmetric, params=dict(m.params),
            value=np.full_like(m.value, np.nan), computed=np.zeros(m.value.shape, dtype=bool),
            std_error=None if m.std_error is None else np.full_like(m.value, np.nan),
            stats={k: np.full_like(m.value, np.nan) for k in m.stats},
        )  # fmt: skip
    for path, part in parts:
        for key in _SAME:
            if part.attrs.get(key) != first.attrs.get(key):
                raise ResultsError(
                    f"{path}: {_WORDS.get(key, key)} is {_shown(key, part.attrs.get(key))}, but "
                    f"{first_path} has {_shown(key, first.attrs.get(key))}; these are shards of "
                    "different comparisons"
                )
        if (part.layers_a, part.layers_b) != (first.layers_a, first.layers_b):
            raise ResultsError(f"{path}: layers differ from {first_path}")
        if list(part.metrics) != list(first.metrics):
            raise ResultsError(
                f"{path}: metrics {', '.join(part.metrics)} differ from {first_path}'s "
                f"{', '.join(first.metrics)}"
            )
        for spec, m in part.metrics.items():
            out = merged.metrics[spec]
            if m.params != out.params:
                raise ResultsError(f"{path}: metric {spec!r} has parameters {m.params}, "
                                   f"but {first_path} has {out.params}")
            assert out.computed is not None
            for i, j in zip(*np.nonzero(m.computed if m.computed is not None else np.ones_like(out.computed)), strict=True):
                if out.computed[i, j] and not _same_value(out.value[i, j], m.value[i, j]):
                    raise ResultsError(
                        f"{path}: metric {spec!r}: cell ({part.layers_a[i]}, {part.layers_b[j]}) is "
                        f"{float(m.value[i, j])!r}, but an earlier shard has {float(out.value[i, j])!r}"
                    )
                out.value[i, j] = m.value[i, j]
                out.computed[i, j] = True
                if out.std_error is not None and m.std_error is not None:
                    out.std_error[i, j] = m.std_error[i, j]
                for k, arr in out.stats.items():
                    if k in m.stats:
                        arr[i, j] = m.stats[k][i, j]
    required = merged.block_mask()  # an N-model comparison computes its model-pair blocks only
    missing = [
        (spec, merged.layers_a[i], merged.layers_b[j])
        for spec, m in merged.metrics.items()
        for i, j in zip(*np.nonzero(~m.computed & required), strict=True)  # type: ignore[operator]
    ]
    if missing:
        shown = "; ".join(f"{s} ({a}, {b})" for s, a, b in missing[:20])
        more = f" and {len(missing) - 20} more" if len(missing) > 20 else ""
        count = f"{len(missing)} cell was" if len(missing) == 1 else f"{len(missing)} cells were"
        raise MissingCellsError(f"{count} computed by no shard: {shown}{more}", missing)
    for m in merged.metrics.values():
        m.computed = None if required.all() else required
    adjust_results(merged)  # p_adjusted over the whole matrix, not one shard's share
    return merged


def _shown(key: str, value: Any) -> str:
    """An attribute as a merge error shows it: statistics options as ``--bootstrap 200 --seed 1``
    (``no statistics`` when absent), anything else as its repr."""
    if key != "statistics":
        return repr(value)
    if not value:
        return "no statistics"
    flags = []
    for name, v in sorted(dict(value).items()):
        flag = "--" + name.replace("_", "-")
        if v is True:
            flags.append(flag)
        elif v not in (False, None, 0):
            flags.append(f"{flag} {v}")
    return " ".join(flags) or "no statistics"
