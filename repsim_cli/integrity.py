"""Content identity of stores: what reused work (resume journals, shards) is checked against, and
the full check behind ``repsim verify``.

* :func:`rehash_layer` re-reads a layer and recomputes its chunk digests and layer digest; for a
  store with recorded digests it also names the first chunk that no longer matches.
* :class:`LayerContent` is what a resume journal records of the layers a comparison reads: their
  recorded digests (free to read), or for stores written before digests existed, digests computed
  from the rows. On resume every layer is hashed again, so rows edited in place, permuted or
  damaged since the journal was started are found before a single journalled cell is reused.
* :func:`verify_store` checks a whole store: structure, every chunk present and readable, digests,
  NaN/Inf, and the stored column statistics.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ContentMismatchError, RepsimError
from .store import ActivationStore
from .store.digests import LayerHasher, layer_digest


@dataclass(frozen=True)
class Rehash:
    """A layer hashed again from its rows: its digest, and the (first, stop) rows of the first
    chunk that differs from the recorded chunk digests (None when all match or none are recorded)."""

    digest: str
    first_bad: tuple[int, int] | None


def rehash_layer(store: ActivationStore, name: str) -> Rehash:
    """Read every row of a layer (chunk by chunk) and recompute its digests. Raises
    :class:`~repsim_cli.errors.CorruptStoreError` for a missing or unreadable chunk."""
    info = store.info(name)
    hasher = LayerHasher(store.n_samples, info.chunk_rows)
    for start in range(0, store.n_samples, info.chunk_rows):
        block = store.read_rows(name, start, min(start + info.chunk_rows, store.n_samples), check=False)
        hasher.update(start, np.ascontiguousarray(block).reshape(len(block), *info.feature_shape))
    recorded = store.chunk_digests(name)
    first_bad = None
    if recorded is not None:
        differs = np.flatnonzero((recorded != hasher.digests).any(axis=1))
        if differs.size:
            first = int(differs[0]) * info.chunk_rows
            first_bad = (first, min(first + info.chunk_rows, store.n_samples))
    return Rehash(layer_digest(info.shape, info.dtype, info.chunk_rows, hasher.digests), first_bad)


def _changed(store: ActivationStore, name: str, rows: tuple[int, int]) -> str:
    return (f"{store.path}: layer {name!r}: rows {rows[0]}-{rows[1] - 1} no longer match their content "
            "digest (changed since the store was written)")


class LayerContent:
    """The content identity of some layers of some stores (``(store, layer)`` pairs)."""

    def __init__(self, layers: Iterable[tuple[ActivationStore, str]]) -> None:
        self.layers = list(dict.fromkeys((store, name) for store, name in layers))

    @staticmethod
    def _key(store: ActivationStore, name: str) -> str:
        return f"{store.path}::{name}"

    def record(self) -> dict[str, str]:
        """{"store::layer": digest}: the recorded digests, or computed ones for older stores."""
        out = {}
        for store, name in self.layers:
            recorded = (store.content_digests() or {}).get(name)
            out[self._key(store, name)] = recorded if recorded else rehash_layer(store, name).digest
        return out

    def check(self, recorded: dict[str, Any] | None) -> None:
        """Hash every layer again and compare with ``recorded`` (from :meth:`record`); raise
        :class:`ContentMismatchError` naming the first layer (and rows) that changed."""
        if not isinstance(recorded, dict):
            raise ContentMismatchError("it records no content digests (written by an older repsim)")
        for store, name in self.layers:
            again = rehash_layer(store, name)
            if again.first_bad is not None:
                raise ContentMismatchError(_changed(store, name, again.first_bad))
            if recorded.get(self._key(store, name)) != again.digest:
                raise ContentMismatchError(
                    f"{store.path}: layer {name!r}: its rows differ from those the journal was started with"
                )


@dataclass(frozen=True)
class Finding:
    """One result of :func:`verify_store`: a layer (or "" for the store), and a problem or None."""

    layer: str
    problem: str | None
    rows: tuple[int, int] | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None

    def text(self) -> str:
        where = f"rows {self.rows[0]}-{self.rows[1] - 1}: " if self.rows else ""
        return "ok" if self.problem is None else f"{where}{self.problem}"


def verify_store(store: ActivationStore, layers: Sequence[str] | None = None) -> list[Finding]:
    """Check each layer of an open store: chunks present and readable, digests, NaN/Inf, and the
    stored column sums and sums of squares (recomputed in float64). One finding per layer (its
    first problem), plus store-wide ones (incomplete store, duplicate ids) with layer "".
    """
    findings: list[Finding] = []
    if not store.complete:
        findings.append(Finding("", "the store is incomplete (its writing was interrupted)"))
    ids = store.ids().tolist()
    if len(set(ids)) != len(ids):
        findings.append(Finding("", "sample ids are not unique"))
    findings += [_verify_layer(store, name) for name in (layers if layers is not None else store.layers)]
    return findings


def _verify_layer(store: ActivationStore, name: str) -> Finding:
    info = store.info(name)
    step = info.chunk_rows
    hasher = LayerHasher(store.n_samples, step)
    sums = np.zeros(info.width)
    sumsq = np.zeros(info.width)
    scale = np.zeros(info.width)
    for start in range(0, store.n_samples, step):
        stop = min(start + step, store.n_samples)
        try:
            block = store.read_rows(name, start, stop, check=False)
        except RepsimError as exc:
            return Finding(name, str(exc).split(f"layer {name!r}: ", 1)[-1], None)
        hasher.update(start, np.ascontiguousarray(block).reshape(len(block), *info.feature_shape))
        wide = block.astype(np.float64)
        if not np.isfinite(wide).all():
            bad = start + int(np.argmin(np.isfinite(wide).all(axis=1)))
            return Finding(name, f"NaN or Inf values (first in row {bad})", (start, stop))
        sums += wide.sum(axis=0)
        sumsq += np.einsum("ij,ij->j", wide, wide)
        scale += np.abs(wide).sum(axis=0)
    recorded = store.chunk_digests(name)
    if recorded is not None:
        differs = np.flatnonzero((recorded != hasher.digests).any(axis=1))
        if differs.size:
            first = int(differs[0]) * step
            return Finding(name, "do not match their content digest (changed or damaged since the store was written)", (first, min(first + step, store.n_samples)))
        digest = layer_digest(info.shape, info.dtype, step, hasher.digests)
        if (store.content_digests() or {}).get(name) != digest:
            return Finding(name, "the layer's digest does not match its chunk digests")
    stored_sums, stored_sumsq = store.column_sums(name), store.column_sumsq(name)
    # Sums in another block order round differently: allow a few ulps of the sum of |x|.
    tol = 1e-9 * scale + 1e-300
    if stored_sums is not None and not (np.abs(stored_sums - sums) <= tol).all():
        return Finding(name, "the stored column sums do not match the rows")
    if stored_sumsq is not None and not (np.abs(stored_sumsq - sumsq) <= 1e-9 * sumsq + 1e-300).all():
        return Finding(name, "the stored column sums of squares do not match the rows")
    return Finding(name, None)


def digest_note(store: ActivationStore) -> str:
    """A line saying whether the store carries content digests."""
    if store.content_digests() is None:
        return "no content digests (written by an older repsim): checked chunks, values and stats only"
    return f"content digests of {len(store.layers)} layers checked"


def comparison_content(comparison: Any) -> LayerContent:
    """The content identity of every layer a :class:`~repsim_cli.compare.Comparison` reads."""
    return LayerContent((ref.store, ref.name) for ref in (*comparison.refs_a, *comparison.refs_b))
