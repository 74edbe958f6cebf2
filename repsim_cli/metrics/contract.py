"""The two-stage metric contract: a per-layer *state*, then a *pair* function of two states.

Every registered metric is described by

* ``prepare(layer, params) -> state``: what the metric needs of one layer alone (a centred Gram's
  inner-product handle, an orthonormal basis with its spectrum, an RDM with its ranks, neighbour
  lists, a readout eigenbasis, ...). It runs once per layer per run, whatever the number of pairs
  the layer enters; ``layer`` is a :class:`LayerContext`.
* ``pair(state_a, state_b, params) -> Cell``: one cell (value, optional standard error, optional
  note such as "degenerate: rank 0").
* optionally ``block(states_a, states_b, params) -> CellBlock``: every cell of a block at once, for
  metrics whose pairs batch into one GEMM (the CKA family); values are identical to ``pair``'s.

The comparison (:mod:`repsim_cli.compare`) owns everything around the stages: which cells are
needed, mirroring of symmetric metrics, the order of work, the state cache and its budget,
writing results and resume. Metric modules never loop over cells or check layer lists.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from ..engine import GramEngine, LayerRef

T = TypeVar("T")
Float64 = NDArray[np.float64]


@dataclass(frozen=True)
class Cell:
    """One cell of a similarity matrix: ``value`` (NaN when undefined), an optional Monte Carlo
    ``std_error`` and an optional ``note`` describing a degenerate case (warned once per run)."""

    value: float
    std_error: float | None = None
    note: str | None = None


@dataclass
class CellBlock:
    """Cells of a block: ``value`` (La, Lb) float64, optional ``std_error`` of the same shape, the
    distinct notes raised by any of its cells, and ``cell_notes``: the note of each cell that has
    one, by (row, column) within the block."""

    value: Float64
    std_error: Float64 | None = None
    notes: set[str] = field(default_factory=set)
    cell_notes: dict[tuple[int, int], str] = field(default_factory=dict)


@dataclass(frozen=True)
class StateCost:
    """Declared cost of one layer's state: resident ``bytes`` and ``flops`` to build it (beyond the
    engine's own Gram or covariance work)."""

    bytes: float
    flops: float


class SharedCache:
    """Per-layer intermediate results shared by the states of several metrics of one run (e.g. the
    spectrum used by CCA, Procrustes and regression alike). Owned by the comparison's state store;
    each ``(name, layer)`` is built once and counted."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, str], Any] = {}
        self.counts: dict[str, int] = {}

    def get(self, name: str, layer_key: str, build: Callable[[], T]) -> T:
        key = (name, layer_key)
        if key not in self.values:
            self.counts[f"{name}:{layer_key}"] = self.counts.get(f"{name}:{layer_key}", 0) + 1
            self.values[key] = build()
        return self.values[key]  # type: ignore[no-any-return]

    def drop_layer(self, layer_key: str) -> None:
        """Forget a layer's intermediates (its states are built; they are no longer needed)."""
        for key in [k for k in self.values if k[1] == layer_key]:
            del self.values[key]


class LayerContext:
    """What a metric's ``prepare`` stage may ask of one layer.

    ``n``: samples; ``width``: features D; ``label``: ``store:layer`` for messages; ``dtype``: the
    GEMM precision of the run; ``side``: the engine side ("sample" or "feature"); ``route``: the
    side chosen for this metric's state (see :attr:`route`). The engine
    methods give the layer's exact float64 column means, its centred data or Gram, row norms and
    raw row blocks; :meth:`shared` caches an intermediate several metrics' states are built from.
    """

    def __init__(
        self, engine: GramEngine, ref: LayerRef, shared: SharedCache, route: str | None = None
    ) -> None:
        self.engine = engine
        self.ref = ref
        self._shared = shared
        self._route = route

    @property
    def key(self) -> str:
        return self.ref.key

    @property
    def n(self) -> int:
        return self.engine.n

    @property
    def width(self) -> int:
        return self.ref.width

    @property
    def label(self) -> str:
        return self.ref.label

    @property
    def dtype(self) -> np.dtype[Any]:
        return self.engine.dtype

    @property
    def side(self) -> str:
        return self.engine.plan.side

    @property
    def route(self) -> str | None:
        """The side the planner chose for this metric's state of this layer (``sample``: through
        n×n matrices; ``feature``: through p×p ones), or None where no plan chose one (in-memory
        inputs): the metric then takes the cheaper side for the layer's shape itself."""
        return self._route

    def mean(self) -> Float64:
        """Exact float64 column means (D,)."""
        return self.engine.mean(self.ref)

    def centered_gram(self) -> Float64:
        """Kc = XcXcᵀ (n, n) float64 (sample side; do not modify)."""
        return self.engine.centered_gram(self.ref)

    def centered_covariance(self) -> Float64:
        """XcᵀXc (D, D) float64 (feature side; do not modify)."""
        return self.engine.cross_product(self.ref, self.ref)

    def centered_data(self) -> NDArray[np.floating]:
        """The whole centred layer Xc (n, D) in the GEMM dtype (read in blocks; not cached)."""
        return self.engine.centered_data(self.ref)

    def gram(self, center: str = "units") -> Float64:
        """The n×n linear kernel: ``units`` (Kc), ``none`` (raw XXᵀ) or ``stimuli`` (rows centred)."""
        return self.engine.gram(self.ref, center)

    def row_sqnorms(self) -> Float64:
        """‖xc_i‖² for each sample (n,), float64: the diagonal of Kc."""
        return self.engine.row_sqnorms(self.ref)

    def blocks(self) -> Iterator[tuple[int, np.ndarray]]:
        """Raw (start, (rows, D)) blocks of the layer in the stored dtype."""
        return self.engine.blocks(self.ref)

    def check_variance(self, centred_sq: float) -> None:
        """Raise :class:`~repsim_cli.errors.DataError` naming the layer when ‖Xc‖²_F is zero up to
        round-off (a constant layer), by the engine's rule."""
        self.engine._check_constant(self.ref, centred_sq)

    def shared(self, name: str, build: Callable[[], T]) -> T:
        """An intermediate shared by several metrics' states, built once per layer per run."""
        return self._shared.get(name, self.ref.key, build)


def state_nbytes(obj: Any, _seen: set[int] | None = None) -> int:
    """Bytes held by the numpy arrays inside a state (dataclass fields, tuples, lists, dicts)."""
    seen = set() if _seen is None else _seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        return int(obj.nbytes) if obj.base is None or id(obj.base) not in seen else 0
    if isinstance(obj, dict):
        return sum(state_nbytes(v, seen) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(state_nbytes(v, seen) for v in obj)
    fields = getattr(obj, "__dataclass_fields__", None)
    if fields is not None:
        return sum(state_nbytes(getattr(obj, f), seen) for f in fields)
    return 0
