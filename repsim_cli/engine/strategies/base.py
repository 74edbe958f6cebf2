"""What a sample-side strategy is: the planner's typed choice, with its estimates, and the object
that holds the layers' centred Grams during a run and gives whole Grams and inner products.

On the sample side every metric statistic comes from the centred Grams Kc = XcXcᵀ (n×n) of the
layers and their Frobenius inner products ⟨Kc_a, Kc_b⟩ (Kornblith et al. 2019, eq. 3: the
numerator of linear CKA). A strategy says where those Grams live (whole in memory, as packed
triangles, on disk, or never whole) and so how an inner product is computed. The planner
(:func:`repsim_cli.engine.plan.choose_sample_strategy`) picks the cheapest one that fits the budget.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np
from numpy.typing import NDArray

from ..._progress import ProgressFn

if TYPE_CHECKING:
    from ..gram import LayerRef
    from ..plan import LayerCost

Float64 = NDArray[np.float64]
# Blocks in flight while a layer streams in: the read-ahead queue and the float64 centring copy.
READ_AHEAD_BYTES = 48 * 1024**2


class GramSource(Protocol):
    """What a strategy needs of the engine: the layers, their reading and centring, and the
    records of each layer's row norms (the Gram's diagonal) and of the work done."""

    n: int
    dtype: np.dtype[Any]
    refs: list[LayerRef]
    counts: Counter[str]
    progress: ProgressFn

    def index(self, ref: LayerRef) -> int:
        """The layer's position in ``refs``."""
        ...

    def mean(self, ref: LayerRef) -> Float64:
        """Exact float64 column means (D,)."""
        ...

    def centered_data(self, ref: LayerRef) -> NDArray[np.floating]:
        """The whole centred layer (n, D) in the GEMM dtype."""
        ...

    def centered_rows(self, ref: LayerRef, start: int, stop: int) -> NDArray[np.floating]:
        """Rows [start, stop) of the centred layer in the GEMM dtype."""
        ...

    def row_sqnorms(self, ref: LayerRef) -> Float64:
        """‖xc_i‖² (n,) float64."""
        ...

    def record_row_sqnorms(self, ref: LayerRef, sqnorms: Float64, *, replace: bool) -> None:
        """Keep a layer's row norms (the first ones unless ``replace``); a constant layer raises."""
        ...

    def spill_file(self, ref: LayerRef) -> Path:
        """Where the layer's Gram goes in the disk cache (the directory is made on first use)."""
        ...


def layer_working_set(n: int, layers: Sequence[LayerCost], itemsize: int) -> int:
    """Bytes to build one layer's Gram: two centred layers (the next one is read while this one's
    SYRK runs), the SYRK output, and the blocks in flight."""
    widest = max(layer.width for layer in layers)
    return 2 * n * widest * itemsize + n * n * itemsize + READ_AHEAD_BYTES


def syrk_flops(n: int, layers: Sequence[LayerCost], n_pairs: int) -> float:
    """Every layer's Gram (n²·D) and every pair's inner product over whole Grams (2n²)."""
    return float(sum(n * n * layer.width for layer in layers) + 2.0 * n_pairs * n * n)


@dataclass(frozen=True, kw_only=True)
class SampleStrategy(ABC):
    """A sample-side strategy as the planner chose it: its estimated peak memory (bytes), flops
    and data passes per layer. ``name`` is what ``--dry-run`` prints and its JSON calls ``mode``."""

    name: ClassVar[str]
    peak_bytes: float
    flops: float
    passes: float = 1.0

    @property
    def tile_rows(self) -> int:
        """Rows per tile (tiled strategy only; else 0)."""
        return 0

    @property
    def gram_capacity(self) -> int:
        """Whole Grams held in memory at once (spilled strategy only; else 0)."""
        return 0

    def note(self) -> str | None:
        """A line for ``--dry-run`` about what this strategy does beyond its name, if any."""
        return None

    @abstractmethod
    def open(self, source: GramSource) -> SampleGrams:
        """The object that holds this run's Grams, reading the layers through ``source``."""


class SampleGrams(ABC):
    """The Grams a strategy holds for one engine, and what it gives from them."""

    def __init__(self, source: GramSource) -> None:
        self.source = source
        self.computed: set[str] = set()  # layer keys whose Gram this object has built

    @abstractmethod
    def gram(self, ref: LayerRef) -> Float64:
        """The layer's centred Gram Kc (n, n) float64 (callers must not modify it)."""

    @abstractmethod
    def inner(self, a: int, b: int) -> float:
        """⟨Kc_a, Kc_b⟩_F (float64) of the layers at indices ``a`` and ``b`` of ``source.refs``."""

    @abstractmethod
    def compute_row_sqnorms(self, ref: LayerRef) -> None:
        """Record the layer's row norms with the source, doing the work this strategy needs."""

    @abstractmethod
    def close(self) -> None:
        """Drop what is held in memory."""

    def triangle_stack(self, first: int, stop: int) -> NDArray[np.floating] | None:
        """The strict upper triangles (stop − first, n(n−1)/2) of the layers at indices
        [first, stop), row by row in the GEMM dtype, as held (a view: do not modify), when this
        strategy holds them packed and has built them all; else None."""
        return None

    def syrk(self, ref: LayerRef, xc: NDArray[np.floating] | None = None) -> NDArray[np.floating]:
        """Kc = XcXcᵀ (n, n) in the GEMM dtype (numpy dispatches A @ A.T to SYRK); ``xc`` is the
        centred layer when already read."""
        self.source.counts["gram:" + ref.key] += 1
        if xc is None:
            xc = self.source.centered_data(ref)
        gram: NDArray[np.floating] = xc @ xc.T
        return gram

    def finish(self, ref: LayerRef, gram: NDArray[np.floating]) -> None:
        """Record a freshly built Gram's float64 diagonal as the layer's row norms."""
        diag = np.diag(gram).astype(np.float64)
        self.source.record_row_sqnorms(ref, diag, replace=False)
        self.computed.add(ref.key)
        self.source.progress("centred Grams", len(self.computed), len(self.source.refs))

    def build_whole(self, ref: LayerRef) -> Float64:
        """A new float64 array holding the layer's Gram, built now."""
        whole = np.empty((self.source.n, self.source.n))
        gram = self.syrk(ref)
        np.copyto(whole, gram)
        self.finish(ref, gram)
        return whole
