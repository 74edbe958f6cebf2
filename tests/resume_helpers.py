"""A comparison run whole with a journal, the journal cut as if the run had been killed, and the
same comparison resumed from it: what the resume tests of several modules share."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from repsim_cli._warnings import RepsimWarning
from repsim_cli.compare import journal_path, prepare_models
from repsim_cli.results import Results
from repsim_cli.schedule import Journal
from repsim_cli.stats.runner import StatsOptions, attach_statistics
from repsim_cli.store import open_store


def run_killed_and_resumed(paths: list[Path], metrics: list[str], out: Path, kept: int,
                           statistics: StatsOptions | None = None, **kw: Any) -> tuple[Results, Results]:
    """(the whole run, the run resumed after being killed with ``kept`` cells journalled) of the
    comparison of the stores at ``paths`` (models "m0", "m1", …) by ``metrics``; ``kw`` go to
    :func:`prepare_models`."""
    stores = [open_store(p) for p in paths]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RepsimWarning)

            def run(resume: bool) -> Results:
                comparison = prepare_models([(f"m{k}", s) for k, s in enumerate(stores)], metrics, **kw)
                attach_statistics(comparison, statistics)
                journal = Journal(journal_path(out), comparison.journal_header(None))
                try:
                    return comparison.run(journal=journal, resume=resume)
                finally:
                    journal.close(remove=resume)
                    comparison.close()

            whole = run(resume=False)
            lines = journal_path(out).read_text().splitlines(keepends=True)
            journal_path(out).write_text("".join(lines[: 1 + kept]))  # the header and `kept` cells
            return whole, run(resume=True)
    finally:
        for store in stores:
            store.close()
