"""Layer globs over dotted names: ``*`` and ``?`` stay within one dotted component
(``blocks.*.mlp`` matches ``blocks.3.mlp``, not ``blocks.3.mlp.fc1``) and ``**`` crosses dots
(``encoder.**.dense``), as path globs do for ``/``. Used by ``extract --layers`` and by
``compare --layers/--layers-a/--layers-b`` alike.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence

__all__ = ["close_names", "glob_matches", "glob_regex"]


def glob_regex(pattern: str, flags: int = 0) -> re.Pattern[str]:
    """The regular expression of a layer glob: ``*`` any characters but ``.``, ``**`` any
    characters, ``?`` one character but ``.``, ``[...]``/``[!...]`` a character class."""
    parts, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            parts.append(".*")
            i += 2
            continue
        if c == "*":
            parts.append("[^.]*")
        elif c == "?":
            parts.append("[^.]")
        elif c == "[" and _class_end(pattern, i) > 0:
            end = _class_end(pattern, i)
            body = pattern[i + 1 : end]
            body = "^" + body[1:] if body.startswith("!") else body
            parts.append("[" + body.replace("\\", "\\\\") + "]")
            i = end + 1
            continue
        else:
            parts.append(re.escape(c))
        i += 1
    return re.compile("".join(parts), flags)


def _class_end(pattern: str, start: int) -> int:
    """The index of the ``]`` closing the character class opened at ``start`` (-1: none)."""
    j = start + 1
    if pattern[j : j + 1] == "!":
        j += 1
    if pattern[j : j + 1] == "]":  # a leading ] is a member, as in fnmatch
        j += 1
    return pattern.find("]", j)


def glob_matches(pattern: str, name: str) -> bool:
    """Whether a layer glob (see :func:`glob_regex`) matches the whole of ``name``."""
    return glob_regex(pattern).fullmatch(name) is not None


def close_names(pattern: str, names: Sequence[str], limit: int = 6) -> list[str]:
    """Names resembling ``pattern``: case-insensitive glob matches, then difflib's closest."""
    folded_glob = glob_regex(pattern, re.IGNORECASE)
    folded = [n for n in names if folded_glob.fullmatch(n)]
    literal = pattern.replace("*", "").replace("?", "")
    similar = difflib.get_close_matches(literal, names, n=limit, cutoff=0.5)
    ordered = list(dict.fromkeys([*folded, *similar]))
    return ordered[:limit]
