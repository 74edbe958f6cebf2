"""In-memory layers that read like an activation store, so that the library functions on two
arrays (``MetricInfo.dense``) run the same prepare/pair code as a comparison of stores."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from numpy.typing import ArrayLike

from .errors import DataError
from .store.base import LayerInfo

if TYPE_CHECKING:
    from .store.base import ActivationStore


class ArrayStore:
    """Read-only store over in-memory (n, ...) arrays, one per layer (no copies of float arrays).

    It answers the reading side of :class:`~repsim_cli.store.base.ActivationStore`: ``path``,
    ``layers``, ``n_samples``, ``ids()``, ``info()``, ``read_rows()``, ``has_stats()`` (False:
    the engine streams its own float64 column sums) and ``fingerprint()``.
    """

    def __init__(self, layers: Mapping[str, ArrayLike], label: str = "<memory>") -> None:
        self.path = label
        self._arrays: dict[str, np.ndarray] = {}
        for name, arr in layers.items():
            a = np.asarray(arr)
            if a.ndim < 2:
                a = a.reshape(-1, 1) if a.ndim == 1 else a.reshape(1, 1)
            if a.dtype.kind not in "f":
                a = a.astype(np.float64)
            self._arrays[name] = a.reshape(a.shape[0], -1)
        sizes = {a.shape[0] for a in self._arrays.values()}
        if len(sizes) > 1:
            raise DataError(f"{label}: layers have different numbers of samples: {sorted(sizes)}")
        self.layers = list(self._arrays)
        self.n_samples = sizes.pop() if sizes else 0
        self.complete = True
        self.attrs: dict[str, Any] = {}

    def __enter__(self) -> ArrayStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to release."""

    def ids(self) -> np.ndarray:
        return np.arange(self.n_samples, dtype=np.int64)

    def info(self, name: str) -> LayerInfo:
        a = self._arrays[name]
        return LayerInfo(name=name, shape=tuple(a.shape), dtype=a.dtype, chunk_rows=max(1, a.shape[0]))

    def read_rows(self, name: str, start: int, stop: int) -> np.ndarray:
        return self._arrays[name][start:stop]

    def has_stats(self, name: str) -> bool:
        return False

    def column_sums(self, name: str) -> np.ndarray | None:
        return None

    def column_sumsq(self, name: str) -> np.ndarray | None:
        return None

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for name, a in self._arrays.items():
            h.update(name.encode())
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()[:16]


def dense_value(metric: str | Any, x: ArrayLike, y: ArrayLike, params: Mapping[str, Any]) -> float:
    """One metric on two in-memory layers X (n, p) and Y (n, q), through the metric's prepare and
    pair stages on the engine, in float64. Returns the cell's value (warnings as in a comparison).
    """
    from .compare import prepare_models
    from .metrics import MetricSpec, get_metric

    info = get_metric(metric) if isinstance(metric, str) else metric
    full = {p.name: p.default for p in info.params}
    full.update(params)
    if info.validate is not None:
        info.validate(full)
    spec = MetricSpec(text=info.name, info=info, params=full)
    xa, ya = np.asarray(x), np.asarray(y)
    if xa.shape[0] != ya.shape[0]:
        raise DataError(f"X has {xa.shape[0]} samples but Y has {ya.shape[0]}")
    if info.identity_exact and xa.shape == ya.shape and np.array_equal(xa, ya):
        return float(info.identity)  # as a comparison does for a layer paired with itself
    # ArrayStore answers the reading side of ActivationStore, which is all a comparison uses
    stores = [("X", cast("ActivationStore", ArrayStore({"X": xa}, "<X>"))),
              ("Y", cast("ActivationStore", ArrayStore({"Y": ya}, "<Y>")))]  # fmt: skip
    comparison = prepare_models(stores, [spec], precision="float64", model_pairs_override=[(0, 1)])
    try:
        res = comparison.run()
    finally:
        comparison.close()
    return float(res.metrics[spec.text].value[0, 0])


def dense_function(info_name: str) -> Any:
    """``f(X, Y, **params) -> float`` for a registered metric, running :func:`dense_value`."""

    def dense(x: ArrayLike, y: ArrayLike, **params: Any) -> float:
        return dense_value(info_name, x, y, params)

    dense.__name__ = f"{info_name}_dense"
    dense.__doc__ = f"Metric {info_name!r} of X (n, p) and Y (n, q) in float64 (engine prepare/pair path)."
    return dense


__all__: Sequence[str] = ("ArrayStore", "dense_function", "dense_value")
