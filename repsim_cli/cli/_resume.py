"""The exact command that continues an interrupted run, and what a resumed run reports.

``main`` remembers the arguments the user gave; a command that can be resumed calls
:func:`offer_resume` before its long work, so that an interruption prints the user's own command
line plus ``--resume``, shell-quoted, instead of a bare "Interrupted.".
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from typing import Any

PROG = "repsim"
RESUME_FLAG = "--resume"

_argv: list[str] | None = None
_offered: str | None = None


def remember_argv(argv: Sequence[str] | None) -> None:
    """Record the command's arguments (without the program name); None means ``sys.argv[1:]``."""
    global _argv, _offered
    _argv = list(argv) if argv is not None else list(sys.argv[1:])
    _offered = None


def resume_command(argv: Sequence[str] | None = None) -> str:
    """The user's command line with ``--resume`` added (once), quoted for a POSIX shell."""
    args = list(argv) if argv is not None else list(_argv if _argv is not None else sys.argv[1:])
    if RESUME_FLAG not in args:
        if "--" in args:  # options must come before a literal "--"
            args.insert(args.index("--"), RESUME_FLAG)
        else:
            args.append(RESUME_FLAG)
    return shlex.join([PROG, *args])


def offer_resume() -> None:
    """Declare that the running command can be continued with ``--resume`` if interrupted."""
    global _offered
    _offered = resume_command()


def offer_rerun() -> None:
    """Declare that the running command, run again as it is, continues an interrupted run: work
    that keeps no journal but whose finished pieces are kept (layer states in a state directory)
    or cheap to redo whole (one shard's partial sums, written atomically)."""
    global _offered
    _offered = shlex.join([PROG, *(_argv if _argv is not None else sys.argv[1:])])


def withdraw_resume() -> None:
    """The work that could be resumed is over (finished, or nothing was kept)."""
    global _offered
    _offered = None


def interrupted_message() -> str:
    """What an interruption prints: the resume command when the command offered one."""
    if _offered is None:
        return "Interrupted."
    return f"Interrupted; continue with: {_offered}"


def comparison_cells(comparison: Any, shard: Any) -> list[tuple[int, int, int]]:
    """Every (metric index, i, j) cell a run of ``comparison`` (shard ``shard``) computes."""
    from ..schedule import shard_cells

    cells = []
    for s, spec in enumerate(comparison.specs):
        cells += [(s, i, j) for i, j in shard_cells(comparison.layout.cells(spec.info.symmetric), shard)]
    return cells


def resume_note(comparison: Any, journal: Any, shard: Any) -> str | None:
    """``resuming: 37 of 144 cells done`` when ``journal`` exists for this comparison (it refuses
    one written by another comparison; a journal killed before its first cell says 0), else None."""
    done = journal.load()
    if not done and not journal.path.exists():
        return None  # nothing to resume from: a fresh run
    cells = comparison_cells(comparison, shard)
    kept = sum(1 for cell in cells if cell in done)
    return f"resuming: {kept:,} of {len(cells):,} cells done"


def finished_output(out: str, comparison: Any, shard: Any) -> bool:
    """Whether ``out`` is a results store holding this very comparison, every cell computed
    (same stores by content fingerprint, layers, metrics with parameters, shard)."""
    from pathlib import Path

    from ..errors import RepsimError
    from ..results import read_results

    path = Path(out)
    if out == "-" or path.suffix.lower() == ".csv" or not path.exists():
        return False  # a CSV records no provenance to check against
    try:
        results = read_results(path)
    except (RepsimError, OSError):
        return False
    import json

    def plain(value: Any) -> str:
        return json.dumps(value, sort_keys=True, default=lambda v: v.tolist())

    attrs, wanted = results.attrs, comparison.attrs
    same = (
        all(plain(attrs.get(k)) == plain(wanted.get(k)) for k in
            ("store_a", "store_b", "fingerprint_a", "fingerprint_b", "n_samples", "models",
             "stores", "fingerprints", "model_pairs"))
        and results.layers_a == [r.name for r in comparison.refs_a]
        and results.layers_b == [r.name for r in comparison.refs_b]
        and list(results.metrics) == [s.text for s in comparison.specs]
        and all(results.metrics[s.text].params == dict(s.params) for s in comparison.specs)
        and attrs.get("shard") == (str(shard) if shard else None)
    )  # fmt: skip
    if not same:
        return False
    cells = comparison_cells(comparison, shard)
    return all(results.metrics[comparison.specs[s].text].is_computed(i, j) for s, i, j in cells)


def start_resumable_compare(
    out: str, comparison: Any, journal: Any, shard: Any, resume: bool, quiet: bool
) -> bool:
    """Before a compare with a journal runs: with ``resume``, say where it resumes, or return
    True when ``out`` already holds this finished comparison (nothing to do; said on stderr).
    Either way, an interruption from here on prints the command that resumes."""
    import click

    if resume:
        if not journal.path.exists() and finished_output(out, comparison, shard):
            if not quiet:
                click.echo(f"{out} is already complete; nothing to do", err=True)
            return True
        note = resume_note(comparison, journal, shard)
        if note and not quiet:
            click.echo(note, err=True)
    offer_resume()
    return False
