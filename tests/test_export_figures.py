"""Figures people would publish: colour scales, titles, annotation digits, undefined cells,
embedded TrueType text, readable labels at 50 × 50; and ``show`` beyond a handful of layers."""

from __future__ import annotations

import re

import numpy as np
import pytest
from click.testing import CliRunner

from repsim_cli.cli import cli
from repsim_cli.export.heatmap import HeatmapStyle, colour_range, default_title
from repsim_cli.export.labels import auto_digits, common_prefix, shorten, tick_step
from repsim_cli.results import MetricResult, Results, write_results


def run(*args: object, **kw):
    return CliRunner().invoke(cli, [str(a) for a in args], **kw)


def results_of(names_a, names_b, value, name="cka", kind="similarity", std_error=None, **attrs):
    m = MetricResult(name, name, kind, True, {}, np.asarray(value, dtype=float), std_error)
    return Results(list(names_a), list(names_b), {name: m},
                   {"store_a": "/x/a.h5", "store_b": "/x/b.h5", "n_samples": 1797, **attrs})


def test_colour_scale_is_the_metrics_range_unless_asked() -> None:
    r = results_of(["a", "b"], ["a", "b"], [[0.6, 0.7], [0.65, 0.9]])
    m = r.metrics["cka"]
    assert colour_range(m.value, m, HeatmapStyle()) == (0.0, 1.0)
    assert colour_range(m.value, m, HeatmapStyle(value_range="data")) == (0.6, 0.9)
    assert colour_range(m.value, m, HeatmapStyle(vmin=0.5)) == (0.5, 1.0)
    # a value outside the declared range (debiased CKA dips below 0) widens the scale
    low = results_of(["a"], ["a"], [[-0.1]]).metrics["cka"]
    assert colour_range(low.value, low, HeatmapStyle()) == (-0.1, 1.0)
    # an unbounded metric uses the data for its open end
    kl = results_of(["a", "b"], ["a"], [[0.0], [3.0]], name="bayes_kl", kind="distance")
    assert colour_range(kl.metrics["bayes_kl"].value, kl.metrics["bayes_kl"], HeatmapStyle()) == (0.0, 3.0)


def test_default_title_states_metric_parameters_n_and_stores() -> None:
    r = results_of(["a"], ["a"], [[1.0]])
    r.metrics["cka"].params = {"debiased": True}
    assert default_title(r, r.metrics["cka"], False) == "cka (debiased=True) — n = 1,797 — A: a.h5, B: b.h5"


def test_annotation_digits_show_small_values() -> None:
    assert auto_digits(np.array([0.004, 0.01])) == 3
    assert f"{0.004:.{auto_digits(np.array([0.004]))}f}" != "0.00"
    assert auto_digits(np.array([0.5, 0.93, np.nan])) == 2
    assert auto_digits(np.array([0.0, np.nan])) == 2


def test_long_names_lose_their_shared_prefix_and_ticks_thin_out() -> None:
    names = [f"encoder.layer.{i}.output" for i in range(12)]
    assert common_prefix(names) == "encoder.layer."
    assert shorten(names)[1][:2] == ["0.output", "1.output"]
    assert common_prefix(["conv1", "conv2"]) == ""  # no separator: nothing taken out
    assert common_prefix(["fc.a", "fc.b"]) == ""  # too short to be worth it
    assert common_prefix(["blocks.0", "blocks.0.mlp"]) == "blocks."
    assert tick_step(50) == 2 and tick_step(40) == 1


@pytest.fixture
def saved(tmp_path):
    def save(res: Results):
        path = tmp_path / "r.h5"
        write_results(res, path)
        return path

    return save


def test_pdf_and_svg_embed_text_not_type3_glyphs(saved, tmp_path) -> None:
    path = saved(results_of(["l0", "l1"], ["l0", "l1"], [[1.0, 0.5], [0.5, 1.0]]))
    assert run("export", path, "-o", tmp_path / "h.pdf", "--annotate").exit_code == 0
    pdf = (tmp_path / "h.pdf").read_bytes()
    assert b"/Type3" not in pdf
    assert b"/FontFile2" in pdf  # a TrueType font program (in a Type 0 / CIDFontType2 font)
    assert run("export", path, "-o", tmp_path / "h.svg", "--annotate").exit_code == 0
    svg = (tmp_path / "h.svg").read_text()
    assert "<text" in svg and "0.50" in svg
    assert "n = 1,797" in svg  # the default title


def test_annotations_title_range_and_undefined_cells_in_the_figure(saved, tmp_path) -> None:
    se = np.array([[0.004, 0.0123], [0.002, 0.03]])
    res = results_of(["l0", "l1"], ["l0", "l1"], [[0.9, np.nan], [0.5, 1.0]], std_error=se)
    path = saved(res)
    r = run("export", path, "-o", tmp_path / "v.svg", "--annotate", "--title", "My CKA")
    assert r.exit_code == 0, r.output
    svg = (tmp_path / "v.svg").read_text()
    assert "My CKA" in svg and "n/a" in svg and "undefined for these layers" in svg
    r = run("export", path, "-o", tmp_path / "se.svg", "--annotate", "--std-error")
    assert r.exit_code == 0, r.output
    svg = (tmp_path / "se.svg").read_text()
    assert "0.004<" in svg and "0.012<" in svg  # not 0.00 / 0.01
    r = run("export", path, "-o", tmp_path / "d.svg", "--annotate", "--digits", "4", "--title", "")
    assert "0.9000" in (tmp_path / "d.svg").read_text()
    r = run("export", path, "-o", tmp_path / "x.svg", "--vmin", "1", "--vmax", "0")
    assert r.exit_code == 1 and r.output == "Error: --vmin 1 must be below --vmax 0\n"
    r = run("export", path, "-o", tmp_path / "x.svg", "--cmap", "no_such_map")
    assert r.exit_code == 1 and "unknown colormap 'no_such_map'" in r.output


def test_a_50_by_50_matrix_keeps_readable_labels(saved, tmp_path) -> None:
    names = [f"model.encoder.layer.{i}.attention.output" for i in range(50)]
    value = np.random.default_rng(0).random((50, 50))
    path = saved(results_of(names, names, value))
    assert run("export", path, "-o", tmp_path / "big.svg").exit_code == 0
    svg = (tmp_path / "big.svg").read_text()
    assert "model.encoder.layer.0.attention" not in svg  # the prefix is written once
    assert "(layers model.encoder.layer.…)" in svg
    labels = re.findall(r">(\d+)\.attention\.output<", svg)
    assert 20 <= len(set(labels)) <= 2 * 40  # every other layer on each axis


def test_show_fits_the_terminal_width_without_cutting_values(saved) -> None:
    names = [f"encoder.layer.{i}.output.dense" for i in range(20)]
    value = np.round(np.random.default_rng(1).random((20, 20)), 2)
    path = saved(results_of(names, names, value))
    r = run("show", path, env={"COLUMNS": "80"})
    assert r.exit_code == 0, r.output
    assert "…" not in r.stdout.replace("encoder.layer.…", "")
    assert all(len(line) <= 80 for line in r.stdout.splitlines())
    shown = re.findall(r"\d\.\d\d", r.stdout)
    assert len(shown) == 400
    assert "b19 = encoder.layer.19.output.dense" in r.stdout
