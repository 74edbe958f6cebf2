"""The bootstrap's copy–copy policy on the generic path: copies of one example are excluded.

A bootstrap replicate holds some examples several times; two rows holding one example form a pair
that acts like a row paired with itself (distance 0, cosine 1, kernel entry K_kk). repsim
excludes such copy–copy pairs, as rsatoolbox excludes them from its bootstrapped RDM comparisons
(Nili et al. 2014, PLoS Comput Biol 10(4): e1003553; rsatoolbox ``inference.bootstrap``). The
kernel path does so in its weighted sums (:mod:`.weighted`), RSA in its RDM entries
(:mod:`.rsa_boot`). On the generic path, a metric whose state has pairwise terms between examples
declares ``MetricInfo.prepare_grouped``: the replicate's layers are then prepared with the
original example index of each row (``groups``), and the metric's state leaves copy–copy pairs out
as it leaves out a row with itself (mutual k-NN and CKNNA: a row's neighbour search skips its
copies; dcor: copy–copy pairs leave the distance matrices' averages). Metrics without the hook
(CCA family, Procrustes, regression) see the replicate's rows as they are: they have no pairwise
terms, and a copy is a row counted twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..metrics import MetricSpec
from ..metrics.contract import LayerContext


def has_copies(rows: NDArray[np.intp]) -> bool:
    """Does the replicate ``rows`` (m,) hold some example more than once?"""
    return bool(np.unique(rows).size < np.asarray(rows).size)


def replicate_spec(spec: MetricSpec, rows: NDArray[np.intp]) -> MetricSpec:
    """The metric as a bootstrap replicate of the examples ``rows`` (m,) prepares it: with its
    ``prepare_grouped`` stage given ``rows`` as the example of each row when the replicate has
    copies and the metric declares the stage; else ``spec`` itself (the plain metric)."""
    grouped = spec.info.prepare_grouped
    if grouped is None or not has_copies(rows):
        return spec
    groups = np.array(rows, dtype=np.intp, copy=True)

    def prepare(layer: LayerContext, params: Mapping[str, Any]) -> Any:
        return grouped(layer, params, groups)

    return replace(spec, info=replace(spec.info, prepare=prepare))
