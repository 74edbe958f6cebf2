"""The comparison's store of per-layer metric states: built once, kept within a budget, spilled to
disk (and read back, never rebuilt) when they do not fit.

A state is keyed by the metric's state key (its name and the parameters that change the state)
and the layer's key; :class:`StateStore` counts every build, so tests can assert that no layer is
prepared twice in a run.
"""

from __future__ import annotations

import pickle
import shutil
import tempfile
from collections import Counter, OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

from .metrics.contract import state_nbytes

StateKey = tuple[Hashable, str]


class StateStore:
    """States of (state key, layer key), least recently used first out of ``budget`` bytes.

    A state that is evicted is pickled to ``cache_dir`` once and loaded again when asked for.
    ``pinned`` states (those the engine itself references, whose bytes live in the engine) are
    never spilled.
    """

    def __init__(self, budget: int, cache_dir: str | Path | None = None) -> None:
        self.budget = max(0, int(budget))
        self.cache_root = Path(cache_dir) if cache_dir is not None else None
        self._dir: Path | None = None
        self._resident: OrderedDict[StateKey, Any] = OrderedDict()
        self._sizes: dict[StateKey, int] = {}
        self._spilled: dict[StateKey, Path] = {}
        self._pinned: dict[StateKey, Any] = {}
        self.resident_bytes = 0
        self.peak_bytes = 0
        self.counts: Counter[str] = Counter()

    def get(
        self, key: Hashable, layer: str, build: Callable[[], Any],
        lookup: Callable[[], Any | None] | None = None, keep: Callable[[Any], None] | None = None,
    ) -> Any:
        """The state of ``layer`` under ``key``: from memory, from the spill directory, from a
        shared state directory (``lookup``, see :mod:`repsim_cli.state_dir`), or built (and then
        handed to ``keep``, which stores it there)."""
        k: StateKey = (key, layer)
        if k in self._pinned:
            return self._pinned[k]
        if k in self._resident:
            self._resident.move_to_end(k)
            return self._resident[k]
        if k in self._spilled:
            with self._spilled[k].open("rb") as fh:
                state = pickle.load(fh)
            self.counts[f"load:{layer}"] += 1
        else:
            state = lookup() if lookup is not None else None
            if state is not None:
                self.counts[f"shared:{key!r}:{layer}"] += 1
            else:
                state = build()
                self.counts[f"prepare:{key!r}:{layer}"] += 1
                if keep is not None:
                    keep(state)
        self._admit(k, state)
        return state

    def prepared(self, layer: str) -> int:
        """How many states were built for a layer (over every key)."""
        return sum(v for c, v in self.counts.items() if c.startswith("prepare:") and c.endswith(f":{layer}"))

    def _admit(self, k: StateKey, state: Any) -> None:
        if getattr(state, "pinned", False):  # a handle into the engine: tiny, never spilled
            self._pinned[k] = state
            return
        size = state_nbytes(state)
        self._sizes[k] = size
        self._resident[k] = state
        self.resident_bytes += size
        while self.resident_bytes > self.budget and len(self._resident) > 1:
            old, old_state = next(iter(self._resident.items()))
            if old == k:
                break
            self._spill(old, old_state)
        self.peak_bytes = max(self.peak_bytes, self.resident_bytes)

    def _spill(self, k: StateKey, state: Any) -> None:
        del self._resident[k]
        self.resident_bytes -= self._sizes[k]
        if k in self._spilled:
            return
        if self._dir is None:
            root = self.cache_root if self.cache_root is not None else Path(tempfile.gettempdir())
            root.mkdir(parents=True, exist_ok=True)
            self._dir = Path(tempfile.mkdtemp(prefix="repsim-states-", dir=root))
        path = self._dir / f"state{len(self._spilled)}.pkl"
        with path.open("wb") as fh:
            pickle.dump(state, fh, protocol=pickle.HIGHEST_PROTOCOL)
        self._spilled[k] = path
        self.counts[f"spill:{k[1]}"] += 1

    def close(self, keep: bool = False) -> None:
        """Drop every state and remove the spill directory (unless ``keep``)."""
        self._resident.clear()
        self._pinned.clear()
        self.resident_bytes = 0
        if self._dir is not None and not keep:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
            self._spilled.clear()
