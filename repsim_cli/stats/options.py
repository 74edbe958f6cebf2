"""What ``compare`` computes per cell (:class:`StatsOptions`) and how a cell's statistics ride in
the resume journal — the light part of :mod:`repsim_cli.stats`, imported by every ``compare``;
the computations (:mod:`.runner`) are imported only by runs that ask for statistics."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import RepsimError
from .adjust import METHODS

NULLS = ("permutation", "gamma")
CI_METHODS = ("percentile", "bca")  # the intervals of .intervals
# journal notes carrying statistics start with this (a plain note never does)
_JOURNAL_TAG = "\x1estats:"


@dataclass(frozen=True)
class StatsOptions:
    """What ``compare`` computes per cell: ``bootstrap`` replicates (0: none) and the ``ci`` level
    of their interval (``ci_method``: ``percentile`` or ``bca``), ``jackknife`` standard errors,
    ``permutations`` (0: none) with the ``null`` (``permutation`` or ``gamma``) and the
    ``adjust`` method over the matrix, all from ``seed``."""

    bootstrap: int = 0
    ci: float = 0.95
    seed: int = 0
    jackknife: bool = False
    permutations: int = 0
    null: str = "permutation"
    adjust: str = "holm"
    ci_method: str = "percentile"

    def __post_init__(self) -> None:
        if self.bootstrap < 0 or self.permutations < 0:
            raise RepsimError("--bootstrap and --permutations take a count ≥ 0")
        if not 0.0 < self.ci < 1.0:
            raise RepsimError(f"--ci {self.ci}: the interval's level must be in (0, 1), e.g. 0.95")
        if self.null not in NULLS:
            raise RepsimError(f"--null {self.null!r}: expected one of {', '.join(NULLS)}")
        if self.null == "gamma" and self.permutations:
            raise RepsimError("--null gamma needs no --permutations (it fits the null instead); "
                              "give one or the other")
        if self.ci_method not in CI_METHODS:
            raise RepsimError(f"--ci-method {self.ci_method!r}: expected one of {', '.join(CI_METHODS)}")
        if self.adjust not in METHODS:
            raise RepsimError(f"--adjust {self.adjust!r}: expected one of {', '.join(METHODS)}")

    @property
    def testing(self) -> bool:
        """A null is computed (permutations, or the gamma fit)."""
        return self.permutations > 0 or self.null == "gamma"

    @property
    def needs_loo(self) -> bool:
        """Leave-one-out values are computed (the jackknife, or BCa's acceleration)."""
        return self.jackknife or (self.bootstrap > 0 and self.ci_method == "bca")

    @property
    def active(self) -> bool:
        return self.bootstrap > 0 or self.jackknife or self.testing

    def to_dict(self) -> dict[str, Any]:
        """The options as the results' ``statistics`` attribute and the journal header hold them;
        ``ci_method`` only when not the default, so files from before it existed still merge
        and resume with percentile runs."""
        out = asdict(self)
        if out["ci_method"] == "percentile":
            del out["ci_method"]
        return out


@dataclass
class CellResult:
    """One cell's statistics: ``std_error`` (jackknife, else bootstrap SD; None: neither), the
    statistics of :data:`~repsim_cli.results.STAT_FIELDS` computed, and the examples that dominate
    it (jackknife)."""

    std_error: float | None = None
    stats: dict[str, float] = field(default_factory=dict)
    dominated: list[int] = field(default_factory=list)


def encode_note(note: str | None, result: CellResult) -> str:
    """The journal's note field of a cell with statistics (:func:`decode_note` reverses it)."""
    payload = {"note": note, "se": result.std_error, "stats": result.stats, "dominated": result.dominated}
    return _JOURNAL_TAG + json.dumps(payload)


def decode_note(text: str | None) -> tuple[str | None, CellResult | None]:
    """(the cell's own note, its statistics) from a journal note field."""
    if text is None or not text.startswith(_JOURNAL_TAG):
        return text, None
    payload = json.loads(text[len(_JOURNAL_TAG):])
    return payload["note"], CellResult(payload["se"], dict(payload["stats"]), list(payload["dominated"]))


