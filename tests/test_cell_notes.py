"""Degenerate cells carry their note into every output: the results store, the CSV, blocks, and
a heatmap that marks them (a value defined by construction is not a measurement)."""

from __future__ import annotations

import csv
import io
import warnings

import numpy as np
from click.testing import CliRunner

from repsim_cli._warnings import RepsimWarning
from repsim_cli.cli import cli
from repsim_cli.compare import compare_stores
from repsim_cli.metrics._linalg import FORCED_NOTE
from repsim_cli.results import read_results


def narrow_and_wide(n: int = 12) -> dict[str, np.ndarray]:
    """Two layers with rank 3 and one with rank 10 of n = 12 samples: the wide layer paired with
    itself or the other wide one has rank_a + rank_b > n − 1 (some correlations are 1 by
    construction); the narrow pair does not."""
    rng = np.random.default_rng(0)
    return {"narrow": rng.standard_normal((n, 3)), "narrow2": rng.standard_normal((n, 3)),
            "wide": rng.standard_normal((n, 10))}  # fmt: skip


def test_notes_follow_the_cells_into_every_output(make_store, tmp_path) -> None:
    path = make_store(narrow_and_wide())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RepsimWarning)
        res = compare_stores(path, None, ["cca"])
    m = res.metrics["cca"]
    names = res.layers_a
    forced = {(names[i], names[j]) for (i, j), note in m.notes.items() if note == FORCED_NOTE}
    assert ("wide", "narrow") in forced and ("narrow", "wide") in forced  # mirrored too
    assert ("narrow", "narrow2") not in forced and ("wide", "wide") not in forced  # identity

    out, table = tmp_path / "cca.h5", tmp_path / "cca.csv"
    runner = CliRunner()
    for target in (out, table):
        with warnings.catch_warnings():
            warnings.simplefilter("default", RepsimWarning)  # printed by the CLI, not raised
            r = runner.invoke(cli, ["compare", str(path), "-m", "cca", "-o", str(target), "-q"])
        assert r.exit_code == 0, r.output
    assert read_results(out).metrics["cca"].notes == m.notes
    assert read_results(table).metrics["cca"].notes == m.notes
    rows = list(csv.DictReader(io.StringIO(table.read_text())))
    assert {(r["layer_a"], r["layer_b"]) for r in rows if r["note"]} == forced
    svg = tmp_path / "cca.svg"
    r = runner.invoke(cli, ["export", str(out), "-o", str(svg)])
    assert r.exit_code == 0, r.output
    text = svg.read_text()
    assert text.count(">†<") == len(forced) and "degenerate" in text


def test_notes_survive_a_resume(make_store, tmp_path) -> None:
    from repsim_cli.compare import prepare_comparison
    from repsim_cli.schedule import Journal
    from repsim_cli.store import open_store

    path = make_store(narrow_and_wide())
    journal_file = tmp_path / ".out.h5.resume"
    with warnings.catch_warnings(), open_store(path) as store:
        warnings.simplefilter("ignore", RepsimWarning)
        first = prepare_comparison(store, None, ["cca"])
        journal = Journal(journal_file, first.journal_header(None))
        fresh = first.run(journal=journal)
        journal.close(remove=False)
        first.close()
        # every cell now comes from the journal, as after a kill at the very end
        again = prepare_comparison(store, None, ["cca"])
        journal = Journal(journal_file, again.journal_header(None))
        resumed = again.run(journal=journal, resume=True)
        journal.close(remove=True)
        again.close()
    assert fresh.metrics["cca"].notes and resumed.metrics["cca"].notes == fresh.metrics["cca"].notes
    np.testing.assert_array_equal(resumed.metrics["cca"].value, fresh.metrics["cca"].value)
