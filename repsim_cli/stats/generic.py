"""The generic resampling path: a metric's whole prepare/pair pipeline on resampled rows.

For metrics without a closed form over a kernel (CCA family, Procrustes, RSA, neighbours, ...),
each replicate re-prepares every layer's state from the resampled rows of the layer's in-memory
data (:class:`~repsim_cli.arrays.ArrayStore`, float64) — once per replicate per layer, not per
cell — and runs the pair stage on every wanted cell. In a bootstrap replicate, copy–copy pairs
are excluded for the metrics that declare how (:mod:`.copies`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, cast

import numpy as np
from numpy.typing import NDArray

from ..arrays import ArrayStore
from ..metrics import MetricSpec
from .copies import replicate_spec

if TYPE_CHECKING:
    from ..store import ActivationStore

Float64 = NDArray[np.float64]


def matrix_on_rows(
    spec: MetricSpec, data: Mapping[str, np.ndarray], row_keys: Sequence[str], col_keys: Sequence[str],
    rows: NDArray[np.intp], cols: NDArray[np.intp] | None = None, *, exclude_copies: bool = True,
) -> Float64:
    """The metric's (len(row_keys), len(col_keys)) matrix with the row layers' examples taken at
    ``rows`` and the column layers' at ``cols`` (the same as ``rows`` when None: a bootstrap
    replicate, where a layer on both sides is prepared once; its copy–copy pairs are excluded
    (:func:`~.copies.replicate_spec`) unless ``exclude_copies`` is False)."""
    from ..compare import prepare_models

    if cols is None:
        if exclude_copies:
            spec = replicate_spec(spec, rows)
        keys = list(dict.fromkeys([*row_keys, *col_keys]))
        store = ArrayStore({k: data[k][rows] for k in keys}, "<resampled>")
        models = [("m", cast("ActivationStore", store))]
        pairs = [(0, 0)]
        pos_a = pos_b = {k: i for i, k in enumerate(keys)}
    else:
        a = ArrayStore({k: data[k][rows] for k in row_keys}, "<rows>")
        b = ArrayStore({k: data[k][cols] for k in col_keys}, "<cols>")
        models = [("rows", cast("ActivationStore", a)), ("cols", cast("ActivationStore", b))]
        pairs = [(0, 1)]
        pos_a = {k: i for i, k in enumerate(row_keys)}
        pos_b = {k: i for i, k in enumerate(col_keys)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # degenerate replicates are NaN; the run warns once for them
        comparison = prepare_models(models, [spec], precision="float64", model_pairs_override=pairs)
        try:
            value = comparison.run().metrics[spec.text].value
        finally:
            comparison.close()
    out = np.empty((len(row_keys), len(col_keys)))
    for i, ka in enumerate(row_keys):
        for j, kb in enumerate(col_keys):
            out[i, j] = value[pos_a[ka], pos_b[kb]]
    return out
