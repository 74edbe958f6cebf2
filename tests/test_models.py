"""Many models in one run: `repsim compare S1 … SN`, its results blocks, export and show."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from reference import cka_dense

from repsim_cli.cli import cli
from repsim_cli.compare import compare_stores, model_pairs, read_store_list
from repsim_cli.merge import merge_results
from repsim_cli.results import read_results


def model_layers(seed: int, n: int = 40) -> dict[str, np.ndarray]:
    """Three layers of one 'network': shared latents per depth, a seed-specific rotation."""
    rng = np.random.default_rng(100)
    latents = [rng.standard_normal((n, 4)) for _ in range(3)]
    own = np.random.default_rng(seed)
    return {f"l{d}": z @ own.standard_normal((4, 5 + d)) + 0.3 * own.standard_normal((n, 5 + d))
            for d, z in enumerate(latents)}  # fmt: skip


@pytest.fixture
def zoo(make_store):
    layers = [model_layers(s) for s in range(4)]
    paths = [make_store(layer, ".h5", name=f"seed{k}") for k, layer in enumerate(layers)]
    return paths, layers


def run(*args: object) -> tuple[int, str, str]:
    r = CliRunner().invoke(cli, [str(a) for a in args])
    return r.exit_code, r.stdout, r.stderr


def rows_of(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_model_pairs() -> None:
    assert model_pairs(1) == [(0, 0)]
    assert model_pairs(3) == [(0, 1), (0, 2), (1, 2)]
    assert model_pairs(3, "first") == [(0, 1), (0, 2)]
    assert model_pairs(4, "consecutive") == [(0, 1), (1, 2), (2, 3)]
    assert model_pairs(2, "all", within=True) == [(0, 0), (0, 1), (1, 1)]


def test_every_pair_equals_separate_two_store_runs(zoo, tmp_path) -> None:
    paths, layers = zoo
    code, _, err = run("compare", *paths[:3], "-m", "cka", "-o", tmp_path / "zoo.csv", "-q")
    assert code == 0, err
    rows = rows_of((tmp_path / "zoo.csv").read_text())
    assert {(r["model_a"], r["model_b"]) for r in rows} == {("seed0", "seed1"), ("seed0", "seed2"),
                                                            ("seed1", "seed2")}  # fmt: skip
    assert len(rows) == 3 * 9
    for r in rows:
        a, b = int(r["model_a"][-1]), int(r["model_b"][-1])
        two = compare_stores(paths[a], paths[b], ["cka"]).metrics["cka"].value
        i, j = int(r["layer_a"][1]), int(r["layer_b"][1])
        # the same arithmetic; BLAS may block a GEMM over 9 layers differently from one over 6
        assert float(r["value"]) == pytest.approx(two[i, j], rel=1e-12, abs=1e-15)
        assert float(r["value"]) == pytest.approx(cka_dense(layers[a][r["layer_a"]], layers[b][r["layer_b"]]),
                                                  abs=1e-6)  # fmt: skip


def test_pairing_options_and_within(zoo, tmp_path) -> None:
    paths, _ = zoo
    for option, expected in (
        (["--pairs", "first"], {("seed0", "seed1"), ("seed0", "seed2"), ("seed0", "seed3")}),
        (["--pairs", "consecutive"], {("seed0", "seed1"), ("seed1", "seed2"), ("seed2", "seed3")}),
    ):
        code, out, err = run("compare", *paths, "-m", "cka", "-o", "-", "-q", *option)
        assert code == 0, err
        assert {(r["model_a"], r["model_b"]) for r in rows_of(out)} == expected
    code, out, err = run("compare", *paths[:2], "-m", "cka", "-o", "-", "-q", "--within")
    assert code == 0, err
    within = [r for r in rows_of(out) if r["model_a"] == r["model_b"]]
    assert {r["model_a"] for r in within} == {"seed0", "seed1"} and len(within) == 2 * 9
    assert all(float(r["value"]) == pytest.approx(1.0) for r in within if r["layer_a"] == r["layer_b"])


def test_names_store_list_and_duplicates(zoo, tmp_path) -> None:
    paths, _ = zoo
    listing = tmp_path / "stores.txt"
    listing.write_text(f"# the zoo\nalpha={paths[0]}\n\nbeta={paths[1]}\n{paths[2]}\n")
    assert read_store_list([], listing) == [("alpha", str(paths[0])), ("beta", str(paths[1])),
                                            (None, str(paths[2]))]  # fmt: skip
    code, out, err = run("compare", "--stores", listing, "-m", "cka", "-o", "-", "-q")
    assert code == 0, err
    assert {r["model_a"] for r in rows_of(out)} == {"alpha", "beta"}
    code, _, err = run("compare", f"x={paths[0]}", f"x={paths[1]}", paths[2], "-m", "cka", "-o", "-")
    assert code == 1 and "two stores are both named 'x'" in err
    code, _, err = run("compare", "-m", "cka", "-o", "-")
    assert code == 2 and "at least one store" in err


def test_misaligned_store_names_both(zoo, make_store, tmp_path) -> None:
    paths, layers = zoo
    other = make_store(layers[0], ".h5", name="shuffled", ids=np.arange(40)[::-1].copy())
    code, _, err = run("compare", paths[0], paths[1], other, "-m", "cka", "-o", "-")
    assert code == 1
    assert "shuffled.h5" in err and "seed0.h5" in err and "sample ids differ" in err


def test_export_block_summary_and_grid(zoo, tmp_path) -> None:
    paths, _ = zoo
    out = tmp_path / "zoo.h5"
    code, _, err = run("compare", *paths[:3], "-m", "cka", "-m", "linreg", "-o", out, "-q")
    assert code == 0, err
    two = compare_stores(paths[0], paths[2], ["cka", "linreg"])
    code, text, err = run("export", out, "--models", "seed0,seed2", "--wide", "-o", "-")
    assert code == 0, err
    body = list(csv.reader(io.StringIO(text)))
    np.testing.assert_allclose(np.array([[float(v) for v in r[1:]] for r in body[1:]]),
                               two.metrics["cka"].value, rtol=1e-12)  # fmt: skip
    # the reverse block of a symmetric metric is the transpose; of an asymmetric one, not computed
    res = read_results(out)
    np.testing.assert_allclose(res.block("seed2", "seed0").metrics["cka"].value,
                               two.metrics["cka"].value.T, rtol=1e-12)  # fmt: skip
    assert np.isnan(res.block("seed2", "seed0").metrics["linreg"].value).all()
    code, _, err = run("export", out, "--models", "seed0,nope", "-o", "-")
    assert code == 1 and "no model 'nope'" in err
    code, _, err = run("export", out, "--wide", "-o", "-")
    assert code == 1 and "--models A,B" in err
    for how in ("max", "matched", "mean"):
        code, text, err = run("export", out, "--summary", how, "--metric", "cka", "-o", "-")
        assert code == 0, err
        grid = list(csv.reader(io.StringIO(text)))
        assert grid[0] == ["layer_a", "seed0", "seed1", "seed2"]
        matrix = np.array([[float(v) for v in r[1:]] for r in grid[1:]])
        block = two.metrics["cka"].value
        expected = {"max": block.max(), "mean": block.mean(), "matched": np.diag(block).mean()}[how]
        assert matrix[0, 2] == pytest.approx(expected, rel=1e-12)
        assert np.isnan(matrix[2, 0]) or matrix[2, 0] == pytest.approx(expected, rel=1e-12)
        assert np.isnan(np.diag(matrix)).all()
    png = tmp_path / "grid.png"
    code, _, err = run("export", out, "--metric", "cka", "-o", png)
    assert code == 0 and png.stat().st_size > 0, err
    code, text, err = run("show", out, "--metric", "cka")
    assert code == 0 and text.count(" vs ") == 3, err


def test_shards_and_resume_keep_working(zoo, tmp_path) -> None:
    paths, _ = zoo
    whole = tmp_path / "whole.h5"
    assert run("compare", *paths[:3], "-m", "cka", "-m", "cca", "-o", whole, "-q")[0] == 0
    parts = []
    for k in (1, 2, 3):
        part = tmp_path / f"part{k}.h5"
        code, _, err = run("compare", *paths[:3], "-m", "cka", "-m", "cca", "-o", part, "-q",
                           "--shard", f"{k}/3")  # fmt: skip
        assert code == 0, err
        parts.append(part)
    merged = merge_results(parts)
    expected = read_results(whole)
    for spec in ("cka", "cca"):
        np.testing.assert_array_equal(merged.metrics[spec].value, expected.metrics[spec].value)
    assert merged.models == ["seed0", "seed1", "seed2"]


def test_library_call_without_argv(zoo) -> None:
    paths, _ = zoo
    code = (
        "import sys; sys.argv = ['x', '--bogus']\n"
        "from repsim_cli import compare_models\n"
        f"res = compare_models({[str(p) for p in paths[:3]]!r}, ['cka'], pairs='consecutive')\n"
        "print(res.models, res.model_pairs)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['seed0', 'seed1', 'seed2'] [(0, 1), (1, 2)]"


def test_dry_run_reports_states_and_pairs(zoo) -> None:
    paths, _ = zoo
    code, out, err = run("compare", *paths[:3], "-m", "cka", "-m", "cca", "--dry-run", "-o", "-")
    assert code == 0, err
    assert "layer states" in out and "pair work" in out
    assert "9 layers" in out


def test_one_and_two_stores_unchanged_layout(zoo) -> None:
    paths, _ = zoo
    res = compare_stores(paths[0], None, ["cka"])
    assert res.layers_a == res.layers_b == ["l0", "l1", "l2"] and not res.multi_block
    res = compare_stores(paths[0], paths[1], ["cka"])
    assert res.models == ["seed0", "seed1"] and res.model_pairs == [(0, 1)]
    back = res.block("seed1", "seed0")  # the stored block, transposed, names included
    assert back.layers_a == res.layers_b and back.layers_b == res.layers_a
    np.testing.assert_array_equal(back.metrics["cka"].value, res.metrics["cka"].value.T)
    assert Path(res.attrs["store_b"]).name == "seed1.h5"


def test_csv_results_read_back_with_their_models(zoo, tmp_path) -> None:
    paths, _ = zoo
    csv_out, h5_out = tmp_path / "zoo.csv", tmp_path / "zoo.h5"
    for out in (csv_out, h5_out):
        assert run("compare", *paths[:3], "-m", "cka", "-o", out, "-q")[0] == 0
    from_csv, from_h5 = read_results(csv_out), read_results(h5_out)
    assert from_csv.models == from_h5.models and from_csv.model_pairs == from_h5.model_pairs
    for pair in from_h5.model_pairs:
        np.testing.assert_array_equal(from_csv.block(*pair).metrics["cka"].value,
                                      from_h5.block(*pair).metrics["cka"].value)  # fmt: skip
    code, text, err = run("export", csv_out, "-o", "-")
    assert code == 0, err
    assert text == csv_out.read_text()
    # a CSV written before the model columns existed still reads, as one block
    old = tmp_path / "old.csv"
    old.write_text("metric,layer_a,layer_b,value,std_error\ncka,x,y,0.5,\ncka,x,z,0.25,\n")
    res = read_results(old)
    assert res.layers_a == ["x"] and res.layers_b == ["y", "z"] and not res.multi_block


def test_compare_layer_globs_stay_within_a_dotted_part(make_store) -> None:
    rng = np.random.default_rng(0)
    layers = {name: rng.standard_normal((20, 3)) for name in
              ("blocks.0.mlp", "blocks.0.mlp.fc1", "blocks.1.mlp", "head")}  # fmt: skip
    path = make_store(layers)
    one = compare_stores(path, None, ["cka"], layers_a=["blocks.*.mlp"])
    assert one.layers_a == ["blocks.0.mlp", "blocks.1.mlp"]
    deep = compare_stores(path, None, ["cka"], layers_a=["blocks.**"])
    assert deep.layers_a == ["blocks.0.mlp", "blocks.0.mlp.fc1", "blocks.1.mlp"]
