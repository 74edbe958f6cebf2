"""Displaying per-cell statistics: export --mark / --what / --annotate error, and show.

Results with statistics are built in memory (as compare --bootstrap/--jackknife/--permutations
would write them) and saved with write_results; the figures are checked through their SVG text.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from click.testing import CliRunner

from repsim_cli.cli import cli
from repsim_cli.cli.export import bare_annotate_as_value
from repsim_cli.errors import ResultsError
from repsim_cli.export.heatmap import HeatmapStyle, colour_range, default_title
from repsim_cli.export.stats_view import mark_mask, parse_mark, statistic_matrix
from repsim_cli.results import STAT_FIELDS, MetricResult, Results, write_results

VALUE = np.array([[0.61, 0.32, 0.13, 0.11], [0.75, 0.83, 0.59, 0.68], [0.53, 0.85, 0.75, 0.10]])
P = np.array([[0.2, 0.01, 0.0004, 0.04], [0.5, 0.001, 0.03, 0.9], [0.06, np.nan, 0.0, 0.7]])


def results_with_stats(stats: bool = True, std_error: bool = True) -> Results:
    st = {k: np.full(VALUE.shape, np.nan) for k in STAT_FIELDS} if stats else {}
    if stats:
        st["ci_low"], st["ci_high"] = VALUE - 0.05, VALUE + 0.07
        st["ci_low"][0, 0], st["ci_high"][2, 3] = -0.1, np.nan
        st["p_value"], st["p_adjusted"] = P, np.minimum(P * 12, 1.0)
        st["null_mean"], st["null_std"] = np.full(VALUE.shape, 0.05), np.full(VALUE.shape, 0.01)
        st["null_adjusted"] = (VALUE - 0.05) / 0.95
    se = np.full(VALUE.shape, 0.0123) if std_error else None
    m = MetricResult("cka", "cka", "similarity", True, {}, VALUE.copy(), se, stats=st)
    return Results(["l0", "l1", "l2"], ["m0", "m1", "m2", "m3"], {"cka": m},
                   {"store_a": "/x/a.h5", "store_b": "/x/b.h5", "n_samples": 500})


@pytest.fixture
def saved(tmp_path):
    def save(res: Results):
        path = tmp_path / f"r{len(list(tmp_path.glob('r*.h5')))}.h5"
        write_results(res, path)
        return path

    return save


def run(*args: object, **kw):
    return CliRunner().invoke(cli, [str(a) for a in args], **kw)


def cell_texts(svg: str) -> list[str]:
    return re.findall(r">([^<>]*\d[^<>]*)</text>", svg)


# ------------------------------------------------------------------ marks


def test_parse_mark_forms() -> None:
    assert parse_mark("p<0.05").stat == "p_value" and parse_mark("p<0.05").op == "<"
    assert parse_mark("p <= 0.01").op == "<="
    assert parse_mark("p_adjusted<0.05").stat == "p_adjusted" == parse_mark("p_adj<.1").stat
    ci = parse_mark("ci-excludes-0")
    assert (ci.stat, ci.threshold) == ("ci", 0.0)
    assert parse_mark("ci-excludes-0.5").threshold == 0.5
    assert parse_mark("ci_excludes_-1").threshold == -1.0
    for bad in ("q<0.05", "p>0.05", "p<2", "p<0", "ci-excludes-x", "p<abc"):
        with pytest.raises(ResultsError):
            parse_mark(bad)


def test_mark_mask_against_the_definitions() -> None:
    m = results_with_stats().metrics["cka"]
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(mark_mask(m, [parse_mark("p<0.05")]), P < 0.05)
        np.testing.assert_array_equal(mark_mask(m, [parse_mark("p<=0.04")]), P <= 0.04)
        np.testing.assert_array_equal(mark_mask(m, [parse_mark("p_adjusted<0.05")]), P * 12 < 0.05)
    excludes0 = np.ones(VALUE.shape, dtype=bool)
    excludes0[0, 0] = excludes0[2, 3] = False  # [−0.1, ...] holds 0; a NaN bound marks nothing
    np.testing.assert_array_equal(mark_mask(m, [parse_mark("ci-excludes-0")]), excludes0)
    lo, hi = VALUE - 0.05, VALUE + 0.07
    lo[0, 0] = -0.1
    expected = (lo > 0.6) | (hi < 0.6)
    expected[2, 3] = False
    np.testing.assert_array_equal(mark_mask(m, [parse_mark("ci-excludes-0.6")]), expected)
    both = mark_mask(m, [parse_mark("p<0.05"), parse_mark("ci-excludes-0.6")])
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(both, expected & (P < 0.05))


def test_export_marks_cells_on_the_heatmap(saved, tmp_path) -> None:
    path = saved(results_with_stats())
    out = tmp_path / "m.svg"
    r = run("export", path, "-o", out, "--mark", "p<0.05", "--annotate")
    assert r.exit_code == 0, r.output
    svg = out.read_text()
    starred = [t for t in cell_texts(svg) if t.endswith("*")]
    with np.errstate(invalid="ignore"):
        expected = sorted(f"{v:.2f}*" for v in VALUE[P < 0.05])
    assert sorted(starred) == expected
    assert "*: p &lt; 0.05" in svg
    # without --annotate, a marked cell holds the star alone
    r = run("export", path, "-o", out, "--mark", "ci-excludes-0", "--mark", "p_adjusted<0.05")
    assert r.exit_code == 0, r.output
    svg = out.read_text()
    with np.errstate(invalid="ignore"):
        count = int(np.sum((P * 12 < 0.05) & (VALUE - 0.05 > 0)))
    assert len(re.findall(r">\*</text>", svg)) == count == 3
    assert "*: interval excludes 0 and adjusted p &lt; 0.05" in svg


# ------------------------------------------------------------------ --what and --annotate error


@pytest.mark.parametrize(("what", "expected"), [
    ("ci-width", (VALUE + 0.07) - (VALUE - 0.05)),
    ("p_value", P),
    ("p_adjusted", np.minimum(P * 12, 1.0)),
    ("std_error", np.full(VALUE.shape, 0.0123)),
    ("null_adjusted", (VALUE - 0.05) / 0.95),
    ("value", VALUE),
])
def test_what_draws_the_statistic(saved, tmp_path, what: str, expected: np.ndarray) -> None:
    res = results_with_stats()
    m = res.metrics["cka"]
    data, label = statistic_matrix(m, what)
    exp = expected.copy()
    if what == "ci-width":
        exp[0, 0], exp[2, 3] = VALUE[0, 0] + 0.07 + 0.1, np.nan
    np.testing.assert_allclose(data, exp, equal_nan=True)
    path = saved(res)
    out = tmp_path / f"{what}.svg"
    r = run("export", path, "-o", out, "--what", what, "--annotate", "--digits", "4")
    assert r.exit_code == 0, r.output
    texts = cell_texts(out.read_text())
    for v in exp[np.isfinite(exp)].ravel()[:5]:
        assert f"{v:.4f}" in texts
    if what != "value":
        assert default_title(res, m, what).startswith(f"cka: {label.split(' — ')[1]}")
    # a wide CSV of the same statistic
    csv_out = tmp_path / f"{what}.csv"
    r = run("export", path, "-o", csv_out, "--what", what, "--wide")
    assert r.exit_code == 0, r.output
    rows = [line.split(",") for line in csv_out.read_text().splitlines()]
    got = np.array([[float(x) if x else np.nan for x in row[1:]] for row in rows[1:]])
    np.testing.assert_allclose(got, exp, equal_nan=True)


def test_p_values_use_the_unit_colour_range() -> None:
    m = results_with_stats().metrics["cka"]
    data, _ = statistic_matrix(m, "p_value")
    assert colour_range(data, m, HeatmapStyle(what="p_value")) == (0.0, 1.0)
    data, _ = statistic_matrix(m, "ci-width")
    lo, hi = colour_range(data, m, HeatmapStyle(what="ci-width"))
    assert (lo, hi) == pytest.approx((0.12, 0.78))  # the data range


def test_annotate_error_and_the_bare_annotate_flag(saved, tmp_path) -> None:
    path = saved(results_with_stats())
    out = tmp_path / "e.svg"
    r = run("export", path, "-o", out, "--annotate", "error")
    assert r.exit_code == 0, r.output
    texts = cell_texts(out.read_text())
    assert "0.61 ± 0.01" in texts
    small = results_with_stats()
    small.metrics["cka"].std_error = np.full(VALUE.shape, 0.004)
    r = run("export", saved(small), "-o", out, "--annotate", "error")
    assert "0.610 ± 0.004" in cell_texts(out.read_text())  # digits widened to show the error
    # the flag of earlier versions, in every position
    for args in (["export", path, "-o", out, "--annotate"],
                 ["export", "--annotate", path, "-o", out],
                 ["export", path, "--annotate", "-o", out],
                 ["export", path, "--annotate", "value", "-o", out],
                 ["export", path, "-o", out, "--annotate=value"]):  # fmt: skip
        out.unlink(missing_ok=True)
        r = run(*args)
        assert r.exit_code == 0, (args, r.output)
        texts = cell_texts(out.read_text())
        assert "0.61" in texts and not any("±" in t for t in texts), args
    assert bare_annotate_as_value(["--annotate", "--", "--annotate"]) == \
        ["--annotate=value", "--", "--annotate"]


# ------------------------------------------------------------------ missing statistics


def test_missing_statistics_name_the_metric_and_the_compare_option(saved, tmp_path) -> None:
    path = saved(results_with_stats(stats=False, std_error=False))
    out = tmp_path / "x.png"
    cases = [
        (["--what", "p_value"], "--permutations"),
        (["--what", "ci-width"], "--bootstrap"),
        (["--mark", "ci-excludes-0"], "--bootstrap"),
        (["--mark", "p_adjusted<0.05"], "--permutations"),
        (["--annotate", "error"], "--jackknife"),
        (["--std-error"], "--jackknife"),
        (["--what", "null_adjusted"], "--permutations"),
    ]
    for extra, option in cases:
        r = run("export", path, "-o", out, *extra)
        assert r.exit_code == 1, (extra, r.output)
        assert r.output.startswith("Error: metric 'cka' has no ") and option in r.output, r.output
        assert r.output.count("\n") == 1 and not out.exists()


def test_usage_errors(saved, tmp_path) -> None:
    path = saved(results_with_stats())
    for extra in (["-o", tmp_path / "l.csv", "--what", "p_value"],
                  ["-o", tmp_path / "l.csv", "--mark", "p<0.05"],
                  ["-o", tmp_path / "x.png", "--std-error", "--what", "p_value"],
                  ["-o", tmp_path / "x.png", "--mark", "p>0.05"],
                  ["-o", tmp_path / "x.png", "--annotate", "error", "--what", "p_value"]):  # fmt: skip
        r = run("export", path, *extra)
        assert r.exit_code in (1, 2), (extra, r.output)
        assert "Traceback" not in r.output
        assert not list(tmp_path.glob("l.csv")) and not list(tmp_path.glob("x.png"))


# ------------------------------------------------------------------ show


def test_show_prints_interval_and_p(saved) -> None:
    path = saved(results_with_stats())
    r = run("show", path, env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "0.83 [0.78, 0.90] p=.012" in r.stdout  # adjusted p = 12 × 0.001
    assert "0.75 [0.70, 0.82] p<.001" in r.stdout
    assert "0.10 p=1.000" in r.stdout  # NaN upper bound: no interval for that cell
    assert "cells: value [confidence interval] adjusted p-value" in r.stdout
    r = run("show", path, "--no-stats", env={"COLUMNS": "200"})
    assert "[" not in r.stdout and "p=" not in r.stdout
    # a standard error alone prints as ±se; plain results print as before
    path = saved(results_with_stats(stats=False))
    r = run("show", path, env={"COLUMNS": "200"})
    assert "0.61 ±0.01" in r.stdout and "cells: value ± standard error" in r.stdout
    path = saved(results_with_stats(stats=False, std_error=False))
    r = run("show", path, env={"COLUMNS": "200"})
    assert "cells:" not in r.stdout and "0.61 0.32 0.13 0.11" in r.stdout
