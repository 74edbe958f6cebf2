"""A shared, content-addressed directory of per-layer metric states (``compare --state-dir``).

The two-stage way to shard every metric that is not a sum over examples: ``compare --stage layers
--shard K/N`` prepares a balanced share of the layers' states (by their declared cost) into the
directory; ``compare --stage pairs --shard K/N`` computes a share of the cells from those states,
reading them, never preparing one. A state's file name is the SHA-256 of everything the state
depends on: the store's content identity (its fingerprint, which covers the layers' content
digests, and the layer's own digest), the layer, the metric's state key (its name and the
parameters that change the state), the engine side, the GEMM precision and n. A changed store
therefore gets new names and an old state is never reused. Files are written to a unique
temporary sibling and renamed into place, so concurrent shards preparing the same state leave one
complete file (the last rename wins; both are the same state).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ._version import __version__
from .errors import RepsimError
from .schedule import Shard

STATE_FORMAT = 1


class MissingStateError(RepsimError):
    """``--stage pairs`` needs a state that no ``--stage layers`` run has written."""


class DamagedStateError(MissingStateError):
    """``--stage pairs`` needs a state whose file is there but cannot be used (truncated, not a
    pickle of repsim's, or the record of another state)."""


class StateDir:
    """States of (metric state key, layer) under ``root``, keyed by content.

    ``require``: a missing state is an error (the pairs stage) instead of being prepared here.
    ``command`` is the ``--stage layers`` command line to name in that error. ``counts`` tells
    how many states were loaded from the directory and how many written.
    """

    def __init__(self, root: str | Path, *, require: bool = False, command: str = "") -> None:
        self.root = Path(root)
        self.require = require
        self.command = command
        self.counts: Counter[str] = Counter()
        self.damaged: dict[Path, str] = {}  # a state file that is there but unusable: why
        self._identity: dict[tuple[str, str], str] = {}
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RepsimError(f"{self.root}: cannot create the state directory ({exc.strerror})") from None

    def _layer_identity(self, ref: Any) -> str:
        """The store's fingerprint and the layer's content digest (recorded, else hashed)."""
        key = (str(Path(ref.store.path).resolve()), ref.name)
        if key not in self._identity:
            from .integrity import rehash_layer

            digest = (ref.store.content_digests() or {}).get(ref.name) or rehash_layer(ref.store, ref.name).digest
            self._identity[key] = f"{ref.store.fingerprint()}:{digest}"
        return self._identity[key]

    def material(self, state_key: Any, ref: Any, side: str, dtype: str, n: int) -> dict[str, Any]:
        """Everything a state depends on (hashed into its file name, stored inside it)."""
        return {
            "format": STATE_FORMAT, "repsim": __version__, "content": self._layer_identity(ref),
            "layer": ref.name, "state_key": repr(state_key), "side": side, "dtype": dtype, "n": n,
        }  # fmt: skip

    def path(self, material: dict[str, Any]) -> Path:
        digest = hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()
        return self.root / f"{digest[:40]}.state"

    def load(self, material: dict[str, Any]) -> Any | None:
        """The stored state, or None when absent or unusable (then prepared again, or, where a
        state is required, :attr:`damaged` says why its file was not used)."""
        path = self.path(material)
        try:
            with path.open("rb") as fh:
                record = pickle.load(fh)
        except FileNotFoundError:
            return None
        except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ValueError, ImportError,
                IndexError, TypeError) as exc:  # fmt: skip
            self.counts["unreadable"] += 1
            self.damaged[path] = f"unreadable: {type(exc).__name__}" + (f": {exc}" if str(exc) else "")
            return None
        if not isinstance(record, dict) or record.get("material") != material:
            self.counts["mismatch"] += 1
            self.damaged[path] = "it holds another state than its name stands for"
            return None
        self.damaged.pop(path, None)
        self.counts["loaded"] += 1
        return record["state"]

    def save(self, material: dict[str, Any], state: Any) -> None:
        """Write a state atomically: a unique temporary sibling, fsynced, renamed into place."""
        path = self.path(material)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            with tmp.open("wb") as fh:
                pickle.dump({"material": material, "state": state}, fh, protocol=pickle.HIGHEST_PROTOCOL)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        self.counts["written"] += 1

    def lookup(self, info: Any, params: Any, ref: Any, plan: Any,
               side: str | None = None) -> tuple[Callable[[], Any], Callable[[Any], None]]:
        """(load, store) functions for one state of the comparison: ``load()`` returns the stored
        state or None; ``store(state)`` keeps a freshly prepared one (engine handles excepted)."""
        side = side or plan.side  # the metric's own side where the planner chose one per metric
        material = self.material(info.key_of(params), ref, side, plan.compute_dtype, plan.n)

        def load() -> Any | None:
            state = self.load(material)
            if state is None and self.require and not _engine_state(info):
                path = self.path(material)
                if path in self.damaged:
                    raise DamagedStateError(
                        f"{path}: damaged state file ({self.damaged[path]}) of the {info.name} state "
                        f"of layer {ref.label}; run the layers stage again to replace it: {self.command}"
                    )
                raise MissingStateError(
                    f"{self.root}: no prepared {info.name} state of layer {ref.label} (side {side}, "
                    f"precision {plan.compute_dtype}); run the layers stage first: {self.command}"
                )
            return state

        def store(state: Any) -> None:
            if not getattr(state, "pinned", False):
                self.save(material, state)

        return load, store


def _engine_state(info: Any) -> bool:
    """States that are handles into the engine (the CKA family) are never stored: the pairs stage
    computes them itself."""
    return bool(info.inner_products_only)


def layer_share(costs: Sequence[tuple[str, float]], shard: Shard) -> list[str]:
    """Shard K of N's layers: largest cost first, each to the least loaded shard (ties: lowest
    shard, then the layer's order), so every shard agrees on the split."""
    load = [0.0] * shard.count
    owner: dict[str, int] = {}
    order = {key: i for i, (key, _) in enumerate(costs)}
    for key, cost in sorted(costs, key=lambda kc: (-kc[1], order[kc[0]])):
        k = min(range(shard.count), key=lambda s: (load[s], s))
        load[k] += cost
        owner[key] = k
    return [key for key, _ in costs if owner[key] == shard.index - 1]


def layer_costs(comparison: Any) -> list[tuple[str, float]]:
    """Each layer's declared cost of its stored states (flops: the states' own plus the engine's
    Gram or covariance work they need), in the engine's layer order."""
    from .partials import tileable

    plan = comparison.plan
    out = []
    tiles = tileable(comparison.specs, plan.side)
    for ref in comparison.engine.refs:
        if tiles:  # only RBF bandwidths: each a whole Gram and its distances
            count = sum(1 for s in comparison.specs if s.name == "cka_rbf")
            out.append((ref.key, count * (float(plan.n) * plan.n * ref.width + 40.0 * plan.n * plan.n)))
            continue
        flops = 0.0
        keys = set()
        for spec in comparison.specs:
            info = spec.info
            key = info.key_of(spec.params)
            if _engine_state(info) or key in keys:
                continue
            keys.add(key)
            flops += info.state_cost(plan.n, ref.width, plan.side, spec.params).flops
            if info.needs_gram:
                flops += float(plan.n) * plan.n * ref.width
        out.append((ref.key, flops))
    return out
