"""`repsim influence`: exact leave-one-out changes per example, ranked, with a verdict.

The acceptance test follows Davari et al. (2022): 3 of 500 examples moved far along a low-variance
direction of one side collapse linear CKA, and `influence` must rank exactly those 3 first. Values
are checked against an independent dense computation (linear CKA written here in numpy; dcor from
the ``dcor`` package).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from repsim_cli.cli import cli
from repsim_cli.influence import closed_form, influence, pc1_share, recompute
from repsim_cli.metrics import parse_spec

MOVED = [17, 240, 433]


def _cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA from the feature-space formula (Kornblith et al. 2019), independently."""
    xc, yc = x - x.mean(0), y - y.mean(0)
    return float(np.sum((xc.T @ yc) ** 2) / np.sqrt(np.sum((xc.T @ xc) ** 2) * np.sum((yc.T @ yc) ** 2)))


def _davari(n: int = 500, p: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """X, Y with linear CKA ≈ 0.86, and Y with MOVED pushed 25× the spread (the RMS distance of
    the examples from their mean) along Y's lowest-variance principal direction."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, p)) * np.geomspace(4.0, 0.05, p)
    y = x @ np.linalg.qr(rng.standard_normal((p, p)))[0] + 1.15 * rng.standard_normal((n, p))
    yc = y - y.mean(0)
    direction = np.linalg.svd(yc, full_matrices=False)[2][-1]
    spread = np.sqrt(np.mean(np.sum(yc**2, axis=1)))
    moved = y.copy()
    moved[MOVED] += 25.0 * spread * direction
    return x, y, moved


def run(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_acceptance_three_moved_examples_are_ranked_first(make_store, tmp_path) -> None:
    x, y, moved = _davari()
    before, after = _cka(x, y), _cka(x, moved)
    assert 0.84 < before < 0.88
    assert after < 0.15  # the three examples collapse CKA
    ids = np.array([f"img{i:03d}" for i in range(500)], dtype=object)
    a = make_store({"block3": x}, ids=ids, name="a")
    b = make_store({"block3": moved}, ids=ids, name="b")
    out = tmp_path / "influence.json"
    r = run("influence", a, b, "--layer-a", "block3", "-m", "cka", "--top", "5", "-o", out, "-q")
    assert r.exit_code == 0, r.output
    report = json.loads(out.read_text())
    assert report["value"] == pytest.approx(after, abs=1e-12)
    first = report["examples"][:3]
    assert sorted(e["sample_id"] for e in first) == [f"img{i:03d}" for i in MOVED]
    assert sorted(e["index"] for e in first) == MOVED
    assert report["dominated"] and sorted(report["dominant"]) == [f"img{i:03d}" for i in MOVED]
    assert "DOMINATED: 3 of 500" in r.output
    for e in first:  # the reported leave-one-out value, recomputed on the other 499 rows
        keep = np.delete(np.arange(500), e["index"])
        assert e["value_without"] == pytest.approx(_cka(x[keep], moved[keep]), abs=1e-10)
        assert e["change"] == pytest.approx(e["value_without"] - after, abs=1e-12)
    changes = [abs(e["change"]) for e in report["examples"]]
    assert changes == sorted(changes, reverse=True) and len(changes) == 500
    assert report["pc1_share_b"] == pytest.approx(pc1_share(moved))

    # Without the moved examples nothing dominates.
    c = make_store({"block3": y}, ids=ids, name="c")
    r = run("influence", a, c, "--layer-a", "block3", "-m", "cka", "-q")
    assert r.exit_code == 0, r.output
    assert "verdict: not dominated" in r.output


@pytest.mark.parametrize("spec", ["cka", "cka:debiased=true", "cka_rbf", "cka_rbf:debiased=true,threshold=0.5",
                                  "dcor"])
def test_closed_form_equals_recomputation_through_the_metric(spec: str) -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((16, 5))
    y = np.tanh(x @ rng.standard_normal((5, 4))) + 0.3 * rng.standard_normal((16, 4))
    s = parse_spec(spec)
    value, values = closed_form(x, y, s)
    ref_value, ref = recompute(x, y, s)  # the metric's own prepare/pair stages on n − 1 rows
    # cka_rbf: the closed form keeps the full data's bandwidth; recomputation re-estimates it.
    if spec.startswith("cka_rbf"):
        assert value == pytest.approx(ref_value, abs=1e-12)
        assert np.max(np.abs(values - ref)) < 0.05
    else:
        assert value == pytest.approx(ref_value, abs=1e-12)
        np.testing.assert_allclose(values, ref, rtol=0, atol=1e-10)


def _dcor(x: np.ndarray, y: np.ndarray) -> float:
    """Distance correlation (Székely, Rizzo & Bakirov 2007, V-statistic), written out here."""
    def centred(z: np.ndarray) -> np.ndarray:
        d = np.sqrt(np.sum((z[:, None, :] - z[None, :, :]) ** 2, axis=-1))
        return d - d.mean(0)[None, :] - d.mean(1)[:, None] + d.mean()

    a, b = centred(x), centred(y)
    return float(np.sqrt(np.mean(a * b) / np.sqrt(np.mean(a * a) * np.mean(b * b))))


def test_dcor_against_an_independent_formula() -> None:
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((20, 3)), rng.standard_normal((20, 2))
    y[:, 0] += x[:, 0] ** 2
    value, values = closed_form(x, y, parse_spec("dcor"))
    assert value == pytest.approx(_dcor(x, y), abs=1e-12)
    for k in range(20):
        keep = np.delete(np.arange(20), k)
        assert values[k] == pytest.approx(_dcor(x[keep], y[keep]), abs=1e-10)


@pytest.mark.filterwarnings("default::repsim_cli._warnings.RepsimWarning")
def test_recomputed_metric_via_cli_shows_cost_and_progress(make_store, tmp_path) -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((24, 4))
    y = x @ rng.standard_normal((4, 3)) + 0.5 * rng.standard_normal((24, 3))
    a = make_store({"l1": x, "l2": y})
    out = tmp_path / "p.csv"
    r = CliRunner().invoke(cli, ["influence", str(a), "--layer-a", "l1", "--layer-b", "l2",
                                 "-m", "procrustes", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "no closed-form leave-one-out: recomputing it 24 times on 23 examples" in r.output
    assert "leave-one-out recomputation: 24/24" in r.output
    rows = out.read_text().splitlines()
    assert rows[0] == "rank,index,sample_id,value_without,change,dominant" and len(rows) == 25
    spec = parse_spec("procrustes")
    full = spec.info.dense(x, y)
    worst = rows[1].split(",")
    k = int(worst[1])
    keep = np.delete(np.arange(24), k)
    assert float(worst[3]) == pytest.approx(spec.info.dense(x[keep], y[keep]), abs=1e-12)
    assert float(worst[4]) == pytest.approx(spec.info.dense(x[keep], y[keep]) - full, abs=1e-12)


def test_single_store_same_store_twice_plot_and_csv(make_store, tmp_path) -> None:
    x, _, moved = _davari(n=460, p=8, seed=4)
    a = make_store({"x": x, "y": moved})
    plot, csv = tmp_path / "rank.png", tmp_path / "rank.csv"
    one = run("influence", a, "--layer-a", "x", "--layer-b", "y", "-m", "cka", "--plot", plot,
              "-o", csv, "-q")
    twice = run("influence", a, a, "--layer-a", "x", "--layer-b", "y", "-m", "cka", "-q")
    assert one.exit_code == 0 and twice.exit_code == 0, one.output + twice.output
    assert one.output.splitlines()[1:] == twice.output.splitlines()[1:]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert csv.read_text().count("\n") == 461
    # the same layer against itself: CKA 1 without every example, nothing dominates
    r = run("influence", a, "--layer-a", "x", "-m", "cka", "--top", "2", "-q")
    assert r.exit_code == 0 and "value: 1;" in r.output and "not dominated" in r.output


def test_pc1_share_and_library_defaults() -> None:
    rng = np.random.default_rng(5)
    x = rng.standard_normal((50, 6)) * np.array([5.0, 1, 1, 1, 1, 1])
    s = np.linalg.svd(x - x.mean(0), compute_uv=False) ** 2
    assert pc1_share(x) == pytest.approx(s[0] / s.sum())
    assert pc1_share(x.T.copy()) == pytest.approx(  # p > n: through the n×n Gram
        (np.linalg.svd(x.T - x.T.mean(0), compute_uv=False) ** 2)[0]
        / np.sum(np.linalg.svd(x.T - x.T.mean(0), compute_uv=False) ** 2))
    report = influence(x, x[:, :3] + 0.1 * rng.standard_normal((50, 3)), parse_spec("cka"))
    assert report.ids.tolist() == list(range(50)) and report.method == "closed form"
    assert report.order.shape == (50,)


def test_errors_are_one_line_and_leave_no_file(make_store, tmp_path) -> None:
    rng = np.random.default_rng(6)
    a = make_store({"x": rng.standard_normal((12, 3))})
    b = make_store({"x": rng.standard_normal((13, 3))})
    out = tmp_path / "o.csv"
    cases = [
        (["influence", a, "--layer-a", "nope", "-m", "cka", "-o", out], "no layer 'nope'"),
        (["influence", a, tmp_path / "missing.h5", "--layer-a", "x", "-m", "cka", "-o", out],
         "no such file"),
        (["influence", a, "--layer-a", "x", "-m", "ckaa", "-o", out], "unknown metric 'ckaa'"),
        (["influence", a, b, "--layer-a", "x", "-m", "cka", "-o", out], "samples"),
        (["influence", a, "--layer-a", "x", "-m", "cka", "-o", tmp_path / "o.txt"], "unknown format"),
        (["influence", a, "--layer-a", "x", "-m", "cka", "-o", a], "replace that input"),
        (["influence", a, "--layer-a", "x", "-m", "cka", "--memory", "1KiB", "-o", out], "budget"),
    ]
    for args, message in cases:
        r = run(*args)
        assert isinstance(r.exception, SystemExit), (args, r.exception)  # not a bug
        assert r.exit_code in (1, 2), (args, r.output)
        errors = [line for line in r.output.splitlines() if line.startswith("Error")]
        assert len(errors) == 1 and message in errors[0], (args, r.output)
        assert "Traceback" not in r.output
        assert not out.exists()
