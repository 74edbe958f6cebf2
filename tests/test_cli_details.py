"""Command-line details found in review: statistics options that would change nothing are usage
errors; --dry-run --json shows the statistics and each metric's chosen-side flops; statistics
report progress; a resume with no cells says so; merge and info speak in the user's terms; errors
name the store and layer."""

from __future__ import annotations

import json
import re
import warnings

import numpy as np
import pytest
from click.testing import CliRunner

from repsim_cli._warnings import RepsimWarning
from repsim_cli.cli import cli


@pytest.fixture
def store(make_store):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((30, 4))
    return make_store({"a": x, "b": x @ rng.standard_normal((4, 5))}, name="S")


@pytest.mark.parametrize(("extra", "message"), [
    (["--ci", "0.9"], "--ci"),
    (["--adjust", "bh"], "--adjust"),
    (["--null", "permutation"], "--null"),
    (["--seed", "-1", "--bootstrap", "5"], "--seed"),
])  # fmt: skip
def test_options_that_would_change_nothing_are_usage_errors(store, tmp_path, extra, message) -> None:
    out = tmp_path / "r.csv"
    r = CliRunner().invoke(cli, ["compare", str(store), "-m", "cka", *extra, "-o", str(out)])
    assert r.exit_code == 2, r.output
    assert message in r.output and "Traceback" not in r.output and not out.exists()


def test_the_same_options_with_their_statistic_are_accepted(store, tmp_path) -> None:
    out = tmp_path / "r.csv"
    r = CliRunner().invoke(cli, ["compare", str(store), "-m", "cka", "--bootstrap", "5", "--ci", "0.9",
                                 "--permutations", "5", "--adjust", "bh", "--null", "permutation",
                                 "-o", str(out), "-q"])  # fmt: skip
    assert r.exit_code == 0, r.output and out.exists()


def test_dry_run_json_shows_the_statistics(store) -> None:
    r = CliRunner().invoke(cli, ["compare", str(store), "-m", "cka", "-m", "procrustes", "--bootstrap", "7",
                                 "--dry-run", "--json"])  # fmt: skip
    assert r.exit_code == 0, r.output
    stats = json.loads(r.output)["statistics"]
    assert stats["options"]["bootstrap"] == 7
    assert any("generic path" in line for line in stats["plan"])
    plain = CliRunner().invoke(cli, ["compare", str(store), "-m", "cka", "--dry-run", "--json"])
    assert "statistics" not in json.loads(plain.output)


def test_statistics_report_progress_in_batch_logs(store, tmp_path) -> None:
    import subprocess
    import sys

    out = tmp_path / "r.csv"
    r = subprocess.run([sys.executable, "-m", "repsim_cli", "compare", str(store), "-m", "cka",
                        "--bootstrap", "5", "-o", str(out)], capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 0, r.stderr
    # plain lines, as stderr is not a terminal
    assert re.search(r"^statistics of cka: (\d+)/\1 cells \(100%\)", r.stderr, re.MULTILINE), r.stderr


def test_a_resume_from_a_journal_without_cells_says_so(store, tmp_path) -> None:
    from repsim_cli.compare import journal_path, prepare_comparison
    from repsim_cli.integrity import comparison_content
    from repsim_cli.schedule import Journal
    from repsim_cli.store import open_store

    out = tmp_path / "r.h5"
    with open_store(store) as s:  # a run killed before its first cell: the journal holds its header only
        comparison = prepare_comparison(s, None, ["cka"])
        journal = Journal(journal_path(out), comparison.journal_header(None), content=comparison_content(comparison))
        journal.open(resume=False)
        journal.close(remove=False)
        comparison.close()
    r = CliRunner().invoke(cli, ["compare", str(store), "-m", "cka", "-o", str(out), "--resume"])
    assert r.exit_code == 0, r.output
    assert "resuming: 0 of 3 cells done" in r.output


def test_dry_run_json_metric_flops_are_those_of_the_chosen_side(store) -> None:
    r = CliRunner().invoke(cli, ["compare", str(store), "-m", "cka", "-m", "procrustes", "--dry-run", "--json"])
    plan = json.loads(r.output)
    route = plan["metric_sides"]["procrustes"]  # a metric with its own side: the case that differed
    assert route["choice"] in route["estimates"]
    assert plan["metric_flops"]["procrustes"] == route["estimates"][route["choice"]]
    for spec, route in plan["metric_sides"].items():
        if route["choice"] in route["estimates"]:
            assert plan["metric_flops"][spec] == route["estimates"][route["choice"]]


def test_merge_names_differing_statistics_in_options(store, tmp_path) -> None:
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    base = ["compare", str(store), "-m", "procrustes", "-q"]
    assert CliRunner().invoke(cli, [*base, "--shard", "1/2", "--bootstrap", "5", "-o", str(a)]).exit_code == 0
    assert CliRunner().invoke(cli, [*base, "--shard", "2/2", "-o", str(b)]).exit_code == 0
    r = CliRunner().invoke(cli, ["merge", str(a), str(b), "-o", str(tmp_path / "m.h5")])
    assert r.exit_code == 1
    assert "--bootstrap 5" in r.output and "no statistics" in r.output and "{" not in r.output


def test_info_describes_a_partial_sums_file(store, tmp_path) -> None:
    part = tmp_path / "p.h5"
    r = CliRunner().invoke(cli, ["compare", str(store), "-m", "cka", "--shard", "1/2", "-o", str(part), "-q"])
    assert r.exit_code == 0, r.output
    text = CliRunner().invoke(cli, ["info", str(part)])
    assert text.exit_code == 0 and "partial sums of shard 1/2" in text.output and "repsim merge" in text.output
    as_json = json.loads(CliRunner().invoke(cli, ["info", str(part), "--json"]).output)
    assert as_json["format"] == "partial_sums" and as_json["metrics"] == ["cka"]


def test_influence_names_the_constant_layer(make_store) -> None:
    rng = np.random.default_rng(1)
    path = make_store({"flat": np.ones((20, 3)), "x": rng.standard_normal((20, 4))}, name="C")
    r = CliRunner().invoke(cli, ["influence", str(path), "--layer-a", "x", "--layer-b", "flat", "-m", "cka"])
    assert r.exit_code == 1 and f"{path}:flat is constant" in r.output


def test_bootstrap_intervals_that_exclude_their_value_are_flagged(make_store) -> None:
    rng = np.random.default_rng(0)
    latent = rng.standard_normal((200, 5))

    def layers() -> dict[str, np.ndarray]:
        return {f"l{w}": latent @ rng.standard_normal((5, w)) + rng.standard_normal((200, w)) for w in (10, 30, 60)}

    a, b = make_store(layers(), name="A"), make_store(layers(), name="B")
    common = ["compare", str(a), str(b), "--bootstrap", "50", "--seed", "2", "-o", "-"]
    with warnings.catch_warnings():  # as outside pytest: the CLI prints warnings as lines
        warnings.simplefilter("default", RepsimWarning)
        biased = CliRunner().invoke(cli, [*common, "-m", "procrustes"])
    assert biased.exit_code == 0, biased.output
    assert "procrustes: the bootstrap interval excludes the cell's own value" in biased.output
    fine = CliRunner().invoke(cli, [*common, "-m", "cka"])
    assert fine.exit_code == 0 and "excludes the cell's own value" not in fine.output


def test_a_jackknife_too_small_for_the_estimator_says_so(make_store) -> None:
    rng = np.random.default_rng(3)
    path = make_store({"a": rng.standard_normal((4, 3)), "b": rng.standard_normal((4, 5))}, name="N4")
    with warnings.catch_warnings():
        warnings.simplefilter("default", RepsimWarning)
        r = CliRunner().invoke(cli, ["compare", str(path), "-m", "cka:debiased=true", "--jackknife", "-o", "-"])
    assert r.exit_code == 0, r.output
    assert "leaving one example out needs at least 5 examples (n=4)" in r.output and "divide by zero" not in r.output


def test_an_interrupted_layers_stage_names_the_command_that_continues_it(make_store, tmp_path) -> None:
    import signal
    import subprocess
    import sys
    import time

    from slow_metric import slow_compare_script

    rng = np.random.default_rng(4)
    path = make_store({f"l{i}": rng.standard_normal((20, 3)) for i in range(6)}, name="S6")
    script, states = tmp_path / "slow.py", tmp_path / "states"
    script.write_text(slow_compare_script(0.0, seconds_per_state=0.4))
    args = ["compare", str(path), "-m", "slow_test", "--stage", "layers", "--state-dir", str(states)]
    proc = subprocess.Popen([sys.executable, str(script), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.time() + 60
    while not (states.exists() and any(states.glob("*.state"))) and time.time() < deadline:
        assert proc.poll() is None
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("Interrupted; continue with: repsim compare ") and "--resume" not in last
    again = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    kept = re.search(r"prepared (\d+) layer states? into .* \((\d+) already there\)", again.stderr)
    assert kept is not None and int(kept.group(2)) >= 1 and int(kept.group(1)) + int(kept.group(2)) == 6
