"""What the display commands show of a cell's statistics (intervals, p-values, standard errors).

``compare --bootstrap/--jackknife/--permutations`` store per-cell statistics beside each value
(:data:`repsim_cli.results.STAT_FIELDS` and ``std_error``). This module turns them into what
``export`` and ``show`` draw:

* :func:`statistic_matrix` — one statistic as a matrix of its own (``export --what``);
* :func:`parse_mark` / :func:`mark_mask` — the cells that pass a test (``export --mark p<0.05``,
  ``p_adjusted<0.01``, ``ci-excludes-0``);
* :func:`cell_texts` — ``value [low, high] p`` texts for ``show``.

A statistic the comparison did not compute is an error that names the metric and the
``compare`` option that computes it, never an empty figure.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ..errors import ResultsError
from ..results import MetricResult

Float64 = NDArray[np.float64]

# ``export --what`` choices; ``value`` is the metric itself.
WHAT = ("value", "ci-width", "p_value", "p_adjusted", "std_error", "null_adjusted")
WHAT_LABELS = {
    "value": "",
    "ci-width": "confidence interval width",
    "p_value": "p-value",
    "p_adjusted": "adjusted p-value",
    "std_error": "standard error",
    "null_adjusted": "null-adjusted value",
}
# The compare option that computes each statistic (named in the error when it is missing).
SOURCE = {
    "ci_low": "--bootstrap B", "ci_high": "--bootstrap B", "ci-width": "--bootstrap B",
    "p_value": "--permutations P", "p_adjusted": "--permutations P",
    "null_mean": "--permutations P", "null_std": "--permutations P",
    "null_adjusted": "--permutations P",
    "std_error": "--jackknife (or a Monte Carlo metric)",
}  # fmt: skip
# p-values live in [0, 1]: their colour scale is that range, whatever the data.
UNIT_RANGE = ("p_value", "p_adjusted")


def _stat(m: MetricResult, key: str) -> Float64 | None:
    arr = m.std_error if key == "std_error" else m.stats.get(key)
    if arr is None:
        return None
    a = np.asarray(arr, dtype=np.float64)
    return a if np.isfinite(a).any() else None


def has_statistic(m: MetricResult, what: str) -> bool:
    """Whether ``m`` holds ``what`` (a :data:`WHAT` name or a ``STAT_FIELDS`` key) for some cell."""
    if what == "value":
        return True
    keys = ("ci_low", "ci_high") if what == "ci-width" else (what,)
    return all(_stat(m, k) is not None for k in keys)


def require(m: MetricResult, what: str) -> None:
    """Raise :class:`ResultsError` naming the metric and the compare option unless ``m`` holds
    ``what``."""
    if not has_statistic(m, what):
        name = WHAT_LABELS.get(what) or what
        raise ResultsError(
            f"metric {m.spec!r} has no {name} ({what}) in these results: run compare with "
            f"{SOURCE.get(what, 'the option that computes it')} to compute it"
        )


def statistic_matrix(m: MetricResult, what: str) -> tuple[Float64, str]:
    """(the (La, Lb) matrix to draw, its colour-bar label) for a :data:`WHAT` name."""
    if what not in WHAT:
        raise ResultsError(f"unknown statistic {what!r}; use one of {', '.join(WHAT)}")
    if what == "value":
        return m.value, f"{m.spec} ({m.kind})"
    require(m, what)
    if what == "ci-width":
        data: Float64 = np.asarray(m.stats["ci_high"] - m.stats["ci_low"], dtype=np.float64)
    else:
        data = _stat(m, what)  # type: ignore[assignment]  # present: require() checked
    return data, f"{m.spec} — {WHAT_LABELS[what]}"


@dataclass(frozen=True)
class Mark:
    """A test a cell passes to be marked: ``stat op threshold`` on a p-value, or an interval
    that excludes ``threshold`` (``stat == "ci"``). ``text`` is the option as given."""

    text: str
    stat: str
    op: str
    threshold: float

    def describe(self) -> str:
        """``p < 0.05``, ``adjusted p < 0.01``, ``interval excludes 0``."""
        if self.stat == "ci":
            return f"interval excludes {self.threshold:g}"
        name = "p" if self.stat == "p_value" else "adjusted p"
        return f"{name} {self.op} {self.threshold:g}"


_P_NAMES = {"p": "p_value", "p_value": "p_value", "p_adjusted": "p_adjusted", "p_adj": "p_adjusted"}
_MARK_RE = re.compile(r"^\s*(p_adjusted|p_adj|p_value|p)\s*(<=|<)\s*([0-9.eE+-]+)\s*$")
_CI_RE = re.compile(r"^\s*ci[-_]excludes[-_]?(-?[0-9.eE+-]+)\s*$")


def parse_mark(text: str) -> Mark:
    """Parse ``p<0.05``, ``p<=0.01``, ``p_adjusted<0.05`` (or ``p_adj``), ``ci-excludes-0``
    (any number after ``ci-excludes-``). Raises :class:`ResultsError` for anything else."""
    hit = _MARK_RE.match(text)
    if hit:
        threshold = _number(hit.group(3), text)
        if not 0.0 < threshold <= 1.0:
            raise ResultsError(f"--mark {text!r}: a p-value threshold must be in (0, 1]")
        return Mark(text, _P_NAMES[hit.group(1)], hit.group(2), threshold)
    hit = _CI_RE.match(text)
    if hit:
        return Mark(text, "ci", "excludes", _number(hit.group(1), text))
    raise ResultsError(
        f"--mark {text!r}: expected p<ALPHA, p_adjusted<ALPHA (also <=) or ci-excludes-VALUE, "
        "e.g. p<0.05 or ci-excludes-0"
    )


def _number(text: str, mark: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ResultsError(f"--mark {mark!r}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ResultsError(f"--mark {mark!r}: {text!r} is not a finite number")
    return value


def mark_mask(m: MetricResult, marks: tuple[Mark, ...] | list[Mark]) -> NDArray[np.bool_]:
    """(La, Lb) bool: the cells that pass every mark (cells whose statistic is NaN never do)."""
    out = np.ones(m.value.shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        for mark in marks:
            if mark.stat == "ci":
                require(m, "ci-width")
                lo, hi = m.stats["ci_low"], m.stats["ci_high"]
                both = np.isfinite(lo) & np.isfinite(hi)  # half an interval marks nothing
                out &= both & ((lo > mark.threshold) | (hi < mark.threshold))
            else:
                require(m, mark.stat)
                p = m.stats[mark.stat]
                out &= (p < mark.threshold) if mark.op == "<" else (p <= mark.threshold)
    return out


def _p_text(p: float) -> str:
    if not math.isfinite(p):
        return ""
    return "p<.001" if p < 0.001 else f"p={p:.3f}".replace("=0.", "=.")


def cell_texts(m: MetricResult, digits: int) -> tuple[list[list[str]], str | None]:
    """``show``'s cell texts: the value, then ``[low, high]`` when an interval was computed (else
    ``±se`` when a standard error was), then the p-value (the adjusted one when present);
    ``—`` for an undefined value. Also the caption saying what the cells hold (None when the
    cells hold values only)."""
    ci = has_statistic(m, "ci-width")
    se = not ci and has_statistic(m, "std_error")
    p_key = "p_adjusted" if has_statistic(m, "p_adjusted") else "p_value" if has_statistic(m, "p_value") else None
    rows: list[list[str]] = []
    for i in range(m.value.shape[0]):
        row = []
        for j in range(m.value.shape[1]):
            v = float(m.value[i, j])
            if not math.isfinite(v):
                row.append("—")
                continue
            text = f"{v:.{digits}f}"
            if ci:
                lo, hi = float(m.stats["ci_low"][i, j]), float(m.stats["ci_high"][i, j])
                if math.isfinite(lo) and math.isfinite(hi):
                    text += f" [{lo:.{digits}f}, {hi:.{digits}f}]"
            elif se and m.std_error is not None and math.isfinite(float(m.std_error[i, j])):
                text += f" ±{float(m.std_error[i, j]):.{digits}f}"
            if p_key is not None:
                p = _p_text(float(m.stats[p_key][i, j]))
                text += f" {p}" if p else ""
            row.append(text)
        rows.append(row)
    parts = ["value"]
    if ci:
        parts.append("[confidence interval]")
    elif se:
        parts.append("± standard error")
    if p_key is not None:
        parts.append("adjusted p-value" if p_key == "p_adjusted" else "p-value")
    return rows, (None if len(parts) == 1 else "cells: " + " ".join(parts))
