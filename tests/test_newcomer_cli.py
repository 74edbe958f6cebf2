"""What a new user meets first: honest interruptions, exit codes, pipes, batch logs, messages."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from slow_metric import slow_compare_script

from repsim_cli._progress import PlainLines
from repsim_cli.cli import cli
from repsim_cli.results import read_results


def run(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args])


def repsim(*args: object, **kw):
    return subprocess.run([sys.executable, "-m", "repsim_cli", *map(str, args)],
                          capture_output=True, text=True, **kw)  # fmt: skip


@pytest.fixture
def store(make_store) -> Path:
    rng = np.random.default_rng(0)
    return make_store({f"l{i}": rng.standard_normal((30, 4)) for i in range(4)}, name="s")


# ------------------------------------------------------------------------- the error funnel
BUGGY = textwrap.dedent("""
    import sys
    import repsim_cli.compare as c
    def broken(*args, **kwargs):
        raise ValueError("an internal inconsistency")
    c.Comparison.run = broken
    from repsim_cli.cli import main
    main(sys.argv[1:])
""")


def test_an_unexpected_exception_shows_its_traceback_and_asks_for_a_report(store, tmp_path) -> None:
    script = tmp_path / "buggy.py"
    script.write_text(BUGGY)
    r = subprocess.run([sys.executable, str(script), "compare", str(store), "-m", "cka", "-o",
                        str(tmp_path / "o.csv")], capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 1
    assert "Traceback (most recent call last)" in r.stderr
    assert "ValueError: an internal inconsistency" in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("This is a bug in repsim ") and "please report it" in last
    assert not r.stderr.startswith("Error:")


def test_repsim_errors_stay_one_line(store, tmp_path) -> None:
    r = repsim("compare", store, "-m", "cka", "--layers-a", "nope", "-o", tmp_path / "o.csv")
    assert r.returncode == 1
    assert r.stderr == f"Error: {store}: no layer matches 'nope'; available: l0, l1, l2, l3\n"


def test_an_unwritable_output_folder_is_one_line(store, tmp_path) -> None:
    assert run("compare", store, "-m", "cka", "-o", tmp_path / "r.h5").exit_code == 0
    out = tmp_path / "missing" / "o.png"
    r = repsim("export", tmp_path / "r.h5", "-o", out)
    assert r.returncode == 1
    assert r.stderr.startswith(f"Error: {out}: directory '{out.parent}' does not exist")


# --------------------------------------------------------------------------------- exit codes
def test_usage_errors_exit_2(store, tmp_path) -> None:
    r = run("compare", store, "-m", "cka", "--shard", "5/4", "-o", tmp_path / "o.csv")
    assert r.exit_code == 2 and "expected K/N with 1 <= K <= N" in r.output
    r = run("compare", store, "-m", "cka", "-o", "-", "--resume")
    assert r.exit_code == 2
    r = run("compare", store, "-m", "cka")
    assert r.exit_code == 2 and "Missing option '-o'" in r.output


def test_dry_run_needs_no_output_and_dev_null_is_accepted(store, tmp_path) -> None:
    r = run("compare", store, "-m", "cka", "--dry-run")
    assert r.exit_code == 0, r.output
    assert "side" in r.stdout
    r = run("compare", store, "-m", "cka", "-q", "-o", os.devnull)
    assert r.exit_code == 0, r.output
    assert r.stdout == ""
    run("compare", store, "-m", "cka", "-q", "-o", tmp_path / "r.h5")
    r = run("export", tmp_path / "r.h5", "-o", os.devnull)
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("src")) == [
        "r.h5", "s.h5"]


def test_messages_count_in_words(tmp_path) -> None:
    np.save(tmp_path / "x.npy", np.ones((3, 2)))
    r = run("import", tmp_path / "x.npy", "-o", tmp_path / "x.h5")
    assert r.exit_code == 0
    assert r.stderr == f"wrote {tmp_path / 'x.h5'}: 1 layer\n"
    r = run("import", tmp_path / "x.npy", "-o", tmp_path / "y.h5", "-q")
    assert r.exit_code == 0 and r.output == ""


# ------------------------------------------------------------------------ pipes and streams
@pytest.mark.parametrize("command", [
    ["metrics"], ["metrics", "--json"], ["info", "{store}"], ["info", "{store}", "--json"],
    ["compare", "{store}", "-m", "cka", "-o", "-", "-q"], ["show", "{results}"],
    ["export", "{results}", "-o", "-"], ["--help"], ["--version"], ["compare", "--help"],
], ids=["metrics", "metrics-json", "info", "info-json", "compare", "show", "export", "help",
        "version", "command-help"])  # fmt: skip
def test_a_closed_pipe_ends_quietly_with_status_0(command, store, tmp_path) -> None:
    results = tmp_path / "r.h5"
    assert run("compare", store, "-m", "cka", "-o", results).exit_code == 0
    args = [a.format(store=store, results=results) for a in command]
    proc = subprocess.Popen([sys.executable, "-m", "repsim_cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    proc.stdout.close()  # the reader went away before anything was written: EPIPE
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert err == ""


def test_a_closed_stdout_ends_quietly_with_status_0(store) -> None:
    for args in (["metrics"], ["info", str(store)]):
        r = subprocess.run(["sh", "-c", f'"$0" -m repsim_cli {shlex.join(args)} >&-', sys.executable],
                           capture_output=True, text=True)  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert r.stderr == ""


# ----------------------------------------------------------------------- batch-log progress
def test_progress_lines_are_paced() -> None:
    now = [0.0]
    lines: list[str] = []
    progress = PlainLines(clock=lambda: now[0])
    progress.echo = lines.append  # type: ignore[method-assign]
    for done in range(0, 10_001, 100):  # 1% per second
        now[0] = done / 100
        progress("extract", done, 10_000)
    # one line per 5% (5 s apart, over the 1 s minimum gap), none twice for the end
    assert len(lines) == 20
    assert lines[0] == "extract: 500/10,000 samples (5%), 100 samples/s, ETA 0:01:35"
    assert lines[-1] == "extract: 10,000/10,000 samples (100%), 100 samples/s, done in 0:01:40"
    lines.clear()
    slow = PlainLines(clock=lambda: now[0])
    slow.echo = lines.append  # type: ignore[method-assign]
    for second in range(61):  # 0.1% per second: a line every 10 s
        now[0] = float(second)
        slow("reading conv1", second, 1000)
    assert len(lines) == 6 and lines[0].startswith("reading conv1: 10/1,000 rows (1%), 1 rows/s")


def test_compare_prints_plain_progress_lines_when_stderr_is_not_a_terminal(store, tmp_path) -> None:
    r = repsim("compare", store, "-m", "cka", "-o", tmp_path / "o.csv")
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert any(line.startswith("feature-side pass: 30/30 rows (100%)") for line in lines), r.stderr
    assert lines[-1] == f"wrote {tmp_path / 'o.csv'}"
    quiet = repsim("compare", store, "-m", "cka", "-o", tmp_path / "q.csv", "-q")
    assert quiet.returncode == 0 and quiet.stderr == ""


# ------------------------------------------------------- interruption and resume (compare)
SLOW_COMPARE = slow_compare_script(0.05)


def _journal_lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP],
                         ids=["SIGTERM", "SIGINT", "SIGHUP"])
def test_a_stopped_compare_prints_the_exact_resume_command(make_store, tmp_path, how) -> None:
    rng = np.random.default_rng(0)
    path = make_store({f"l{i}": rng.standard_normal((20, 3)) for i in range(6)}, name="odd name")
    script = tmp_path / "slow.py"
    script.write_text(SLOW_COMPARE)
    out = tmp_path / "res ults.h5"
    journal = tmp_path / f".{out.name}.resume"
    args = ["compare", str(path), "-m", "slow_test", "-o", str(out)]
    proc = subprocess.Popen([sys.executable, str(script), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.time() + 60
    while _journal_lines(journal) < 4 and time.time() < deadline:
        assert proc.poll() is None
        time.sleep(0.01)
    proc.send_signal(how)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    last = err.strip().splitlines()[-1]
    assert last == f"Interrupted; continue with: {shlex.join(['repsim', *args, '--resume'])}"
    assert err.count("Interrupted") == 1
    assert journal.exists() and not out.exists()
    kept = _journal_lines(journal) - 1

    command = shlex.split(last.split("continue with: ", 1)[1])
    assert command[0] == "repsim"
    resumed = subprocess.run([sys.executable, str(script), *command[1:]], capture_output=True,
                             text=True)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming: {kept} of 36 cells done" in resumed.stderr.splitlines()
    reference = tmp_path / "ref.h5"
    subprocess.run([sys.executable, str(script), *args[:-1], str(reference), "-q"], check=True)
    assert np.array_equal(read_results(out).metrics["slow_test"].value,
                          read_results(reference).metrics["slow_test"].value)  # fmt: skip

    # a finished output is not computed again
    before = out.stat().st_mtime_ns
    again = subprocess.run([sys.executable, str(script), *command[1:]], capture_output=True,
                           text=True)  # fmt: skip
    assert again.returncode == 0
    assert again.stderr == f"{out} is already complete; nothing to do\n"
    assert out.stat().st_mtime_ns == before


# ------------------------------------------------------------------------ info on results
def test_info_describes_a_results_file(store, tmp_path) -> None:
    out = tmp_path / "r.h5"
    assert run("compare", store, "-m", "cka", "-m", "cka:debiased=true", "-o", out, "-q").exit_code == 0
    r = run("info", out)
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0] == f"{out}: similarity results, n = 30"
    assert f"  store A: {store}" in lines
    assert "  layers A (4): l0, l1, l2, l3" in lines
    assert "    cka:debiased=true (similarity): 16 of 16 cells computed" in lines
    assert any(line.startswith("  command: repsim ") for line in lines)
    assert any(line.startswith("  date: 20") for line in lines)
    assert any(line.startswith("  host: ") for line in lines)
    r = run("info", out, "--json")
    summary = __import__("json").loads(r.stdout)
    assert summary["kind"] == "results" and [m["spec"] for m in summary["metrics"]] == [
        "cka", "cka:debiased=true"]
    assert {"created", "host", "command"} <= set(summary["provenance"])
    run("compare", store, "-m", "cka", "-o", tmp_path / "r.csv", "-q")
    r = run("info", tmp_path / "r.csv")
    assert r.exit_code == 0 and "cka (similarity): 16 of 16 cells computed" in r.stdout


def test_messages_print_values_as_written(make_store, tmp_path) -> None:
    x = np.random.default_rng(0).standard_normal((10, 3))
    a = make_store({"x": x}, ids=np.arange(10), name="a")
    b = make_store({"x": x}, ids=np.arange(1, 11), name="b")
    r = run("compare", a, b, "-m", "cka", "-o", "-")
    assert r.exit_code == 1
    assert "(first at index 0: 1 vs 0)" in r.output and "np." not in r.output


def test_merge_names_the_one_missing_cell(store, tmp_path) -> None:
    kept = [k for k in range(1, 11) if k != 8]  # shard 8 of 10 is the diagonal cell (l2, l2)
    for k in kept:
        assert run("compare", store, "-m", "procrustes", "--shard", f"{k}/10", "-q",
                   "-o", tmp_path / f"p{k}.h5").exit_code == 0  # fmt: skip
    r = run("merge", *(tmp_path / f"p{k}.h5" for k in kept), "-o", tmp_path / "m.h5")
    assert r.exit_code == 1
    assert r.output == "Error: 1 cell was computed by no shard: procrustes (l2, l2)\n"


def test_the_readme_describes_the_demo_heatmap_truly(tmp_path) -> None:
    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text()
    for claim in ("`fc1`–`fc1` is 0.96", "`fc2`–`fc2` (0.90)", "`input`–`logits` 0.71",
                  "`logits`–`input` 0.61", "(0.77–0.87)", "`logits`–`logits` (0.77)"):  # fmt: skip
        assert claim in readme, claim
    out = tmp_path / "demo.h5"
    r = run("compare", root / "sample_data/digits_seed0.h5", root / "sample_data/digits_seed1.h5",
            "-m", "cka", "-q", "-o", out)  # fmt: skip
    assert r.exit_code == 0, r.output
    res = read_results(out)
    v = res.metrics["cka"].value
    i = {name: k for k, name in enumerate(res.layers_a)}
    assert res.layers_a == ["input", "fc1", "fc2", "fc3", "fc4", "fc5", "logits"]
    assert abs(v[0, 0] - 1) < 1e-6
    assert f"{v[1, 1]:.2f}" == "0.96" and v[1].argmax() == 1 and v[:, 1].argmax() == 1
    assert f"{v[2, 2]:.2f}" == "0.90" and v[2].argmax() == 2
    assert f"{v[0, 6]:.2f}" == "0.71" and f"{v[6, 0]:.2f}" == "0.61"
    assert v.min() > 0.6 and v.max() <= 1 + 1e-9
    for name in ("fc3", "fc4", "fc5"):
        row = v[i[name]]
        assert row.argmax() in (i["fc2"], i["fc3"]) and 0.77 <= round(row.max(), 2) <= 0.87
    assert f"{v[6, 6]:.2f}" == "0.77" and v[6].argmax() == 6
