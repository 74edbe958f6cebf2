"""Layer names made fit for axes and terminals: a shared prefix taken out, value formats chosen.

Real models have names like ``encoder.layer.11.attention.output.dense``: printed whole, 50 of
them make a figure unreadable. The prefix all names share (up to a ``.`` or ``/``) is written
once, in the axis label, and each tick keeps only what differs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

SEPARATORS = "./"
MIN_PREFIX = 4  # characters: a shorter common prefix is not worth taking out


def common_prefix(names: Sequence[str]) -> str:
    """The longest prefix of every name that ends at a separator (``.`` or ``/``) and leaves
    each name something; ``""`` for fewer than two names or a prefix under 4 characters."""
    if len(names) < 2:
        return ""
    first, last = min(names), max(names)
    size = 0
    while size < min(len(first), len(last)) and first[size] == last[size]:
        size += 1
    prefix = first[:size]
    cut = max(prefix.rfind(sep) for sep in SEPARATORS) + 1
    prefix = prefix[:cut]
    if len(prefix) < MIN_PREFIX or any(len(name) == len(prefix) for name in names):
        return ""
    return prefix


def shorten(names: Sequence[str]) -> tuple[str, list[str]]:
    """(shared prefix, names without it); the prefix is ``""`` when nothing is worth taking out."""
    prefix = common_prefix(names)
    return prefix, [name[len(prefix):] for name in names]


def tick_step(count: int, most: int = 40) -> int:
    """Label every k-th of ``count`` ticks so that at most ``most`` labels are drawn."""
    return max(1, math.ceil(count / most))


def auto_digits(values: np.ndarray, significant: int = 1, most: int = 6) -> int:
    """Decimals that show the smallest nonzero magnitude among ``values`` with ``significant``
    significant digits (at least 2 decimals, at most ``most``): 0.004 shows as 0.004, not 0.00."""
    finite = np.abs(values[np.isfinite(values)])
    finite = finite[finite > 0]
    if finite.size == 0:
        return 2
    smallest = float(finite.min())
    return int(min(most, max(2, significant - 1 - math.floor(math.log10(smallest)))))
