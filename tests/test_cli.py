"""The CLI contract: exit codes, the exact ``Error:`` line, no partial output, data-only stdout."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from repsim_cli.cli import cli
from repsim_cli.results import read_results


def run(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args])


def only_entries(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


@pytest.fixture
def two_stores(make_store):
    rng = np.random.default_rng(0)
    base = rng.standard_normal((40, 5))
    a = {"conv1": np.hstack([base, rng.standard_normal((40, 3))]), "conv2": rng.standard_normal((40, 2, 3)),
         "fc": base @ rng.standard_normal((5, 4))}
    b = {"conv1": base + 0.1 * rng.standard_normal((40, 5)), "fc": rng.standard_normal((40, 6))}
    return make_store(a, ".h5", name="a"), make_store(b, ".zarr", name="b")


def test_compare_csv_to_stdout_holds_only_data(two_stores) -> None:
    a, b = two_stores
    r = CliRunner().invoke(cli, ["compare", str(a), str(b), "-m", "cka", "-m", "cka:debiased=true", "-o", "-"])
    assert r.exit_code == 0, r.output
    rows = list(csv.reader(io.StringIO(r.stdout)))
    assert rows[0][:4] == ["metric", "layer_a", "layer_b", "value"]
    assert len(rows) == 1 + 2 * 3 * 2
    assert {row[0] for row in rows[1:]} == {"cka", "cka:debiased=true"}
    assert all(0 <= float(row[3]) <= 1 for row in rows[1:] if row[0] == "cka")


def test_compare_results_store_then_export_and_show(two_stores, tmp_path) -> None:
    a, b = two_stores
    for suffix in (".h5", ".zarr"):
        out = tmp_path / f"res{suffix}"
        r = run("compare", a, b, "-m", "cka", "--layers-a", "conv*", "-o", out)
        assert r.exit_code == 0, r.output
        res = read_results(out)
        assert res.layers_a == ["conv1", "conv2"] and res.layers_b == ["conv1", "fc"]
        assert res.attrs["n_samples"] == 40 and res.metrics["cka"].value.shape == (2, 2)
    for fmt in ("png", "svg", "pdf"):
        r = run("export", tmp_path / "res.h5", "-o", tmp_path / f"h.{fmt}", "--annotate")
        assert r.exit_code == 0, r.output
        assert (tmp_path / f"h.{fmt}").stat().st_size > 1000
    r = run("export", tmp_path / "res.h5", "--wide", "-o", "-")
    assert r.stdout.splitlines()[0] == "layer_a,conv1,fc"
    r = run("show", tmp_path / "res.zarr")
    assert r.exit_code == 0 and "conv2" in r.stdout


def test_heatmap_is_deterministic(two_stores, tmp_path) -> None:
    a, _ = two_stores
    run("compare", a, "-m", "cka", "-o", tmp_path / "r.h5")
    run("export", tmp_path / "r.h5", "-o", tmp_path / "1.png")
    run("export", tmp_path / "r.h5", "-o", tmp_path / "2.png")
    assert (tmp_path / "1.png").read_bytes() == (tmp_path / "2.png").read_bytes()


def test_one_store_compares_with_itself(two_stores) -> None:
    a, _ = two_stores
    r = run("compare", a, "-m", "cka", "-o", "-")
    rows = list(csv.reader(io.StringIO(r.stdout)))[1:]
    assert len(rows) == 9
    values = {(x[1], x[2]): float(x[3]) for x in rows}
    assert values[("conv1", "conv1")] == pytest.approx(1.0)
    assert values[("conv1", "fc")] == values[("fc", "conv1")]


def test_dry_run_prints_plan_and_writes_nothing(two_stores, tmp_path) -> None:
    a, b = two_stores
    r = run("compare", a, b, "-m", "cka", "-o", tmp_path / "x.csv", "--dry-run", "--json")
    assert r.exit_code == 0
    plan = json.loads(r.stdout)
    assert plan["side"] in {"sample", "feature"} and plan["n"] == 40
    assert not (tmp_path / "x.csv").exists()
    r = run("compare", a, b, "-m", "cka", "-o", tmp_path / "x.csv", "--dry-run", "--side", "sample")
    assert "side: sample" in r.stdout and "passes per layer" in r.stdout


def test_info_and_metrics(two_stores) -> None:
    a, _ = two_stores
    r = run("info", a, "--json")
    info = json.loads(r.stdout)
    assert info["n_samples"] == 40 and [x["name"] for x in info["layers"]] == ["conv1", "conv2", "fc"]
    assert info["layers"][1]["shape"] == [40, 2, 3] and all(x["stats"] for x in info["layers"])
    assert "conv2" in run("info", a).stdout
    listed = json.loads(run("metrics", "--json").stdout)
    assert any(m["name"] == "cka" and m["params"] == {"debiased": False} for m in listed)


def test_import_command(tmp_path) -> None:
    np.save(tmp_path / "x.npy", np.arange(12.0).reshape(4, 3))
    (tmp_path / "ids.txt").write_text("a\nb\nc\nd\n")
    r = run("import", f"hidden={tmp_path / 'x.npy'}", "-o", tmp_path / "s.h5", "--ids", tmp_path / "ids.txt")
    assert r.exit_code == 0 and r.stdout == ""
    info = json.loads(run("info", tmp_path / "s.h5", "--json").stdout)
    assert info["layers"][0]["name"] == "hidden"


# ---------------------------------------------------------------------------- errors
def assert_error(result, line: str, code: int = 1) -> None:
    assert result.exit_code == code, result.output
    assert result.output.strip().splitlines()[-1] == line
    assert "Traceback" not in result.output


def test_missing_file(tmp_path) -> None:
    missing = tmp_path / "nope.h5"
    r = run("compare", missing, "-m", "cka", "-o", tmp_path / "o.csv")
    assert_error(r, f"Error: {missing}: no such file or directory")
    assert only_entries(tmp_path) == set()


def test_not_a_store(tmp_path) -> None:
    bad = tmp_path / "bad.h5"
    bad.write_text("hello")
    r = run("compare", bad, "-m", "cka", "-o", tmp_path / "o.csv")
    assert_error(r, f"Error: {bad}: not an HDF5 file (OSError)")
    r = run("info", tmp_path / "x.txt")
    assert_error(r, f"Error: {tmp_path / 'x.txt'}: unknown store format (use a .h5, .hdf5 or .zarr path)")


def test_unknown_layer_lists_available(two_stores, tmp_path) -> None:
    a, b = two_stores
    r = run("compare", a, b, "-m", "cka", "--layers-b", "conv9", "-o", tmp_path / "o.csv")
    assert_error(r, f"Error: {b}: no layer matches 'conv9'; available: conv1, fc")
    assert not (tmp_path / "o.csv").exists()


def test_unknown_metric_is_a_usage_error(two_stores, tmp_path) -> None:
    a, _ = two_stores
    r = run("compare", a, "-m", "ckaa", "-o", tmp_path / "o.csv")
    assert r.exit_code == 2
    assert "unknown metric 'ckaa'; known metrics: " in r.output and "cka" in r.output
    r = run("compare", a, "-m", "cka:debiased=maybe", "-o", tmp_path / "o.csv")
    assert r.exit_code == 2 and "debiased='maybe' is not a valid bool" in r.output
    r = run("compare", a, "-m", "cka:bogus=1", "-o", tmp_path / "o.csv")
    assert r.exit_code == 2 and "metric 'cka' has no parameter 'bogus' (parameters: debiased)" in r.output


def test_sample_count_mismatch(make_store, tmp_path) -> None:
    a = make_store({"x": np.random.default_rng(0).standard_normal((10, 2))}, name="a")
    b = make_store({"x": np.random.default_rng(0).standard_normal((12, 2))}, name="b")
    r = run("compare", a, b, "-m", "cka", "-o", tmp_path / "o.csv")
    assert_error(r, f"Error: {b}: 12 samples, but {a} has 10; stores must hold the same samples")
    assert not (tmp_path / "o.csv").exists()


def test_sample_id_mismatch(make_store, tmp_path) -> None:
    x = np.random.default_rng(0).standard_normal((4, 2))
    a = make_store({"x": x}, name="a", ids=np.array(["p", "q", "r", "s"]))
    b = make_store({"x": x}, name="b", ids=np.array(["p", "q", "s", "r"]))
    r = run("compare", a, b, "-m", "cka", "-o", tmp_path / "o.csv")
    assert_error(r, f"Error: {b}: sample ids differ from {a} (first at index 2: 's' vs 'r'); "
                    "stores must hold the same samples in the same order")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_in_a_layer(make_store, tmp_path, bad) -> None:
    x = np.random.default_rng(0).standard_normal((8, 3))
    y = x.copy()
    y[3, 1] = bad
    path = make_store({"ok": x, "broken": y})
    out = tmp_path / "o.h5"
    r = run("compare", path, "-m", "cka", "-o", out)
    assert_error(r, f"Error: {path}: layer 'broken': contains NaN or Inf values")
    assert not out.exists() and not list(tmp_path.glob(".o.tmp-*"))


@pytest.mark.parametrize("side", ["sample", "feature"])
def test_constant_layer(make_store, tmp_path, side) -> None:
    x = np.random.default_rng(0).standard_normal((8, 3))
    path = make_store({"ok": x, "dead": np.full((8, 4), 3.25, dtype=np.float32)})
    r = run("compare", path, "-m", "cka", "--side", side, "-o", tmp_path / "o.csv")
    assert_error(r, f"Error: {path}: layer 'dead': constant layer (zero variance); similarity is undefined")
    assert not (tmp_path / "o.csv").exists()


def test_budget_too_small(two_stores, tmp_path) -> None:
    a, _ = two_stores
    r = run("compare", a, "-m", "cka", "--memory", "1KiB", "-o", tmp_path / "o.csv")
    assert r.exit_code == 1 and r.output.startswith("Error: the ") and "raise --memory" in r.output
    r = run("compare", a, "-m", "cka", "--memory", "lots", "-o", tmp_path / "o.csv")
    assert r.exit_code == 2 and "not a size: 'lots'" in r.output


def test_bad_output_suffix(two_stores, tmp_path) -> None:
    a, _ = two_stores
    r = run("compare", a, "-m", "cka", "-o", tmp_path / "o.txt")
    assert_error(r, f"Error: {tmp_path / 'o.txt'}: unknown output format (use .csv, -, .h5, .hdf5 or .zarr)")
    run("compare", a, "-m", "cka", "-o", tmp_path / "r.h5")
    r = run("export", tmp_path / "r.h5", "-o", tmp_path / "o.gif")
    assert_error(r, f"Error: {tmp_path / 'o.gif'}: unknown export format (use .png, .svg, .pdf, .csv or -)")
    r = run("export", tmp_path / "r.h5", "--metric", "rsa", "-o", "-")
    assert_error(r, "Error: no metric 'rsa' in the results; available: cka")


def test_debug_shows_traceback(tmp_path) -> None:
    r = CliRunner().invoke(cli, ["--debug", "info", str(tmp_path / "x.h5")])
    assert r.exit_code == 1 and r.exception is not None


def test_every_command_has_help_with_example() -> None:
    for name, command in cli.commands.items():
        r = run(name, "--help")
        assert r.exit_code == 0, name
        assert "\b" in (command.help or ""), f"{name} help has no example block"
        assert "repsim " + name in (command.help or "")


# ---------------------------------------------------------------------------- subprocess
def repsim(*args: str, **kw):
    return subprocess.run([sys.executable, "-m", "repsim_cli", *map(str, args)], capture_output=True,
                          text=True, **kw)


def test_subprocess_exit_codes_and_streams(two_stores, tmp_path) -> None:
    a, b = two_stores
    ok = repsim("compare", a, b, "-m", "cka", "-o", "-", "-q")
    assert ok.returncode == 0 and ok.stderr == "" and ok.stdout.startswith("metric,layer_a,layer_b,value")
    bad = repsim("compare", tmp_path / "missing.h5", "-m", "cka", "-o", "-")
    assert bad.returncode == 1 and bad.stdout == ""
    assert bad.stderr == f"Error: {tmp_path / 'missing.h5'}: no such file or directory\n"
    usage = repsim("compare", a)
    assert usage.returncode == 2 and "Missing option '-m'" in usage.stderr


def test_help_needs_neither_torch_nor_matplotlib() -> None:
    """Nor scipy.linalg (0.2 s of start-up, deferred to the metrics that use it)."""
    code = textwrap.dedent("""
        import sys
        from repsim_cli.cli import main
        try:
            main(["--help"])
        except SystemExit as e:
            assert e.code == 0
        bad = [m for m in ("torch", "matplotlib", "h5py", "zarr", "scipy.linalg") if m in sys.modules]
        print("loaded:" + ",".join(bad))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "loaded:"


def test_ctrl_c_exits_130_and_leaves_nothing(two_stores, tmp_path) -> None:
    a, _ = two_stores
    tmp_path = tmp_path / "run"
    tmp_path.mkdir()
    marker = tmp_path / "started"
    code = textwrap.dedent(f"""
        import pathlib, time
        import repsim_cli.compare as c
        def slow_run(self, **kw):
            pathlib.Path({str(marker)!r}).write_text("x")
            time.sleep(60)
        c.Comparison.run = slow_run
        from repsim_cli.cli import main
        main(["compare", {str(a)!r}, "-m", "cka", "-o", {str(tmp_path / 'out.h5')!r}])
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.time() + 30
    while not marker.exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == (
        f"Interrupted; continue with: repsim compare {a} -m cka -o {tmp_path / 'out.h5'} --resume"
    )
    assert only_entries(tmp_path) == {"started"}


def test_module_imports_keep_layers_apart() -> None:
    # Nothing below cli/ imports click; engine/ and metrics/ import neither h5py nor zarr.
    code = textwrap.dedent("""
        import sys
        import repsim_cli.engine, repsim_cli.metrics, repsim_cli.compare, repsim_cli.results
        print(",".join(m for m in ("click", "h5py", "zarr") if m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ})
    assert out.stdout.strip() == ""
