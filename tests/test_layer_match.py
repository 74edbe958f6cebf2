"""`repsim layer-match`: the layer-identification test of Kornblith et al. (2019).

Counts are checked on hand-built results whose picks are worked out by hand (a tie, a distance, an
asymmetric metric whose S_ij alone would pick wrongly), and end to end on synthetic "seeds" built so
that CKA can identify every layer while mean CCA cannot.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from repsim_cli.cli import cli
from repsim_cli.errors import LayerNotFoundError, ResultsError
from repsim_cli.layer_match import match_models, match_results
from repsim_cli.results import MetricResult, Results
from repsim_cli.store import open_store


def run(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args])


def n_model_results(layers: list[list[str]], pairs: list[tuple[int, int]],
                    blocks: dict[str, tuple[str, bool, dict[tuple[int, int], list[list[float]]]]]) -> Results:
    """Results in the N-model layout: rows and columns list every model's layers; ``blocks`` maps a
    spec to (kind, symmetric, {(i, j): S_ij})."""
    flat = [name for model in layers for name in model]
    owners = [k for k, model in enumerate(layers) for _ in model]
    res = Results(flat, flat, attrs={
        "models": [chr(ord("A") + k) for k in range(len(layers))], "row_models": owners,
        "col_models": owners, "model_pairs": [list(p) for p in pairs],
    })  # fmt: skip
    for spec, (kind, symmetric, values) in blocks.items():
        value = np.full((len(flat), len(flat)), np.nan)
        for (i, j), s in values.items():
            rows = [r for r, m in enumerate(owners) if m == i]
            cols = [c for c, m in enumerate(owners) if m == j]
            value[np.ix_(rows, cols)] = s
        res.metrics[spec] = MetricResult(spec, spec.partition(":")[0], kind, symmetric, {}, value)
    return res


# Three models with layers x, y, z; only the blocks i < j are stored (symmetric metrics).
S_AB = [[0.9, 0.1, 0.1], [0.2, 0.8, 0.3], [0.1, 0.7, 0.7]]  # row z: a tie between y and z
S_AC = [[0.9, 0.1, 0.1], [0.1, 0.9, 0.1], [0.1, 0.1, 0.9]]  # every layer found
S_BC = [[0.1, 0.9, 0.1], [0.9, 0.1, 0.1], [0.1, 0.1, 0.9]]  # x and y swapped
XYZ = ["x", "y", "z"]


def three_models(permute_c: bool = False) -> Results:
    blocks = {(0, 1): S_AB, (0, 2): S_AC, (1, 2): S_BC}
    dist = {p: (1.0 - np.array(s)).tolist() for p, s in blocks.items()}
    layers = [XYZ, XYZ, XYZ]
    if permute_c:  # model C stores its layers as z, x, y: the same network, another order
        order = [2, 0, 1]
        layers[2] = [XYZ[k] for k in order]
        for table in (blocks, dist):
            for p in ((0, 2), (1, 2)):
                table[p] = np.array(table[p])[:, order].tolist()
    return n_model_results(layers, [(0, 1), (0, 2), (1, 2)], {
        "cka": ("similarity", True, blocks), "procrustes": ("distance", True, dist),
    })  # fmt: skip


def test_hand_built_counts_with_tie_and_distance() -> None:
    # Hits by ordered pair: AB 2 (z is a tie), BA 3, AC 3, CA 3, BC 1, CB 1 -> 13 of 18.
    report = match_results(three_models())
    assert report.models == ["A", "B", "C"]
    assert report.ordered_pairs == [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)]
    for m in report.metrics:  # the distance (1 - S, argmin) gives the same picks as argmax of S
        assert (m.n_hits, m.n_trials) == (13, 18), m.spec
        assert m.accuracy == pytest.approx(100 * 13 / 18)
        assert m.hits.tolist() == [4, 4, 5] and m.totals.tolist() == [6, 6, 6]
        assert m.ties.tolist() == [0, 0, 1] and m.undefined.tolist() == [0, 0, 0]
        assert m.confusion.tolist() == [[4, 2, 0, 0], [2, 4, 0, 0], [0, 0, 5, 1]]
        assert m.pair_hits == {(0, 1): 2, (1, 0): 3, (0, 2): 3, (2, 0): 3, (1, 2): 1, (2, 1): 1}
    assert [m.kind for m in report.metrics] == ["similarity", "distance"]


def test_argmax_of_a_distance_would_differ() -> None:
    """The distance metric must be read by argmin: the same numbers read as a similarity miss."""
    res = three_models()
    res.metrics["procrustes"].kind = "similarity"
    assert match_results(res, ["procrustes"]).metrics[0].n_hits < 13


def test_match_by_name_follows_names_and_index_follows_positions() -> None:
    by_name = match_results(three_models(permute_c=True), ["cka"], match_by="name").metrics[0]
    assert (by_name.n_hits, by_name.confusion.tolist()) == (13, [[4, 2, 0, 0], [2, 4, 0, 0], [0, 0, 5, 1]])
    by_index = match_results(three_models(permute_c=True), ["cka"], match_by="index").metrics[0]
    # A and B keep their positions (2 + 3 hits); C's are rotated, so only chance agreements of
    # position remain: A-C none, B-C one each way (B.y and C.x, both at position 1).
    assert by_index.n_hits == 7
    assert by_index.pair_hits == {(0, 1): 2, (1, 0): 3, (0, 2): 0, (2, 0): 0, (1, 2): 1, (2, 1): 1}


def test_asymmetric_metric_scores_s_plus_s_transposed() -> None:
    s_ab = [[0.5, 0.6], [0.1, 0.9]]  # alone, row x of A would pick y of B
    s_ba = [[0.9, 0.1], [0.2, 0.8]]
    res = n_model_results([["x", "y"], ["x", "y"]], [(0, 1), (1, 0)],
                          {"linreg": ("similarity", False, {(0, 1): s_ab, (1, 0): s_ba})})
    m = match_results(res).metrics[0]
    assert m.combined and (m.n_hits, m.n_trials) == (4, 4)
    # The same numbers declared symmetric use each block as it is: A's row x picks y.
    res.metrics["linreg"].symmetric = True
    assert match_results(res).metrics[0].n_hits == 3


def test_asymmetric_metric_with_one_direction_is_refused() -> None:
    res = n_model_results([["x", "y"], ["x", "y"]], [(0, 1)],
                          {"linreg": ("similarity", False, {(0, 1): [[1.0, 0.0], [0.0, 1.0]]})})
    with pytest.raises(ResultsError, match=r"asymmetric.*both blocks A,B and B,A"):
        match_results(res)


def test_all_nan_row_is_undefined_and_a_miss() -> None:
    res = n_model_results([["x", "y"], ["x", "y"]], [(0, 1)],
                          {"cka": ("similarity", True, {(0, 1): [[np.nan, np.nan], [0.1, 0.9]]})})
    m = match_results(res).metrics[0]
    # A->B: x undefined, y hit. B->A (columns): x picks y (nan ignored), y picks y.
    assert (m.n_hits, m.undefined.tolist(), m.ties.tolist()) == (2, [1, 0], [0, 0])
    assert m.confusion.tolist() == [[0, 1, 1], [0, 2, 0]]


def test_results_of_one_model_or_partial_shard_are_refused() -> None:
    one = Results(XYZ, XYZ, attrs={"models": ["A"], "row_models": [0] * 3, "col_models": [0] * 3,
                                   "model_pairs": [[0, 0]]})  # fmt: skip
    one.metrics["cka"] = MetricResult("cka", "cka", "similarity", True, {}, np.eye(3))
    with pytest.raises(ResultsError, match="at least two models"):
        match_results(one)
    part = three_models()
    part.metrics["cka"].computed = np.ones((9, 9), dtype=bool)
    part.metrics["cka"].computed[1, 4] = False  # a cell of block A,B
    assert match_results(part, ["procrustes"]).metrics[0].n_hits == 13
    with pytest.raises(ResultsError, match="only partly computed"):
        match_results(part, ["cka"])


def test_two_model_one_block_results_read_both_directions() -> None:
    """A two-store compare has one block (rows: A, columns: B): B's layers are only columns."""
    res = Results(["x", "y"], ["x", "y"], attrs={"models": ["A", "B"], "row_models": [0, 0],
                                                 "col_models": [1, 1], "model_pairs": [[0, 1]]})  # fmt: skip
    res.metrics["cka"] = MetricResult("cka", "cka", "similarity", True, {},
                                      np.array([[0.9, 0.2], [0.8, 0.7]]))  # fmt: skip
    m = match_results(res).metrics[0]
    # A->B: x->x hit, y->x miss; B->A (columns): x->x hit, y->y hit.
    assert (m.n_hits, m.confusion.tolist()) == (3, [[2, 0, 0], [1, 1, 0]])


@given(n_models=st.integers(2, 4), n_layers=st.integers(1, 5), symmetric=st.booleans(),
       distance=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_counts_match_a_direct_count(n_models, n_layers, symmetric, distance, seed) -> None:
    """Random blocks (continuous values: no ties) against a plain loop over the definition, and
    the same counts when one model lists its layers in another order (matching by name)."""
    rng = np.random.default_rng(seed)
    pairs = [(i, j) for i in range(n_models) for j in range(n_models) if i != j and (not symmetric or i < j)]
    blocks = {p: rng.random((n_layers, n_layers)) for p in pairs}
    names = [f"l{k}" for k in range(n_layers)]
    kind = "distance" if distance else "similarity"
    res = n_model_results([names] * n_models, pairs, {"m": (kind, symmetric, blocks)})
    got = match_results(res).metrics[0]

    def s(i: int, j: int) -> np.ndarray:
        return blocks[(i, j)] if (i, j) in blocks else blocks[(j, i)].T

    expected_hits = np.zeros(n_layers, dtype=int)
    for i in range(n_models):
        for j in range(n_models):
            if i == j:
                continue
            score = s(i, j) if symmetric else s(i, j) + s(j, i).T
            picks = score.argmin(axis=1) if distance else score.argmax(axis=1)
            expected_hits += picks == np.arange(n_layers)
    assert got.hits.tolist() == expected_hits.tolist()
    assert got.n_trials == n_models * (n_models - 1) * n_layers
    assert got.confusion.sum() == got.n_trials and got.ties.sum() == 0

    order = rng.permutation(n_layers)  # the last model stores its layers in another order
    last = n_models - 1
    permuted = {}
    for (i, j), b in blocks.items():
        b = b[order] if i == last else b
        permuted[(i, j)] = b[:, order] if j == last else b
    res = n_model_results([names] * last + [[names[k] for k in order]], pairs, {"m": (kind, symmetric, permuted)})
    again = match_results(res, match_by="name").metrics[0]
    assert again.hits.tolist() == got.hits.tolist()
    assert again.confusion.tolist() == got.confusion.tolist()


# ---------------------------------------------------------------- synthetic seeds, end to end
N, D, N_LAYERS = 300, 16, 4


def random_rotation(rng: np.random.Generator, d: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def seed_layers(n_models: int, copy_last: bool = False) -> list[dict[str, np.ndarray]]:
    """Every model's layer l is a shared latent Z_l, rotated at random per model, plus noise.

    Z_{l+1} = Z_l A_l with A_l invertible and strongly anisotropic: CKA (invariant to rotations,
    not to anisotropic maps) tells the layers apart; CCA (invariant to every invertible linear map)
    sees the same subspace in every layer and is left with the noise. ``copy_last``: the last layer
    of every model is an exact copy of the one before (a near-copy deep layer at its extreme).
    """
    rng = np.random.default_rng(0)
    latents = [rng.standard_normal((N, D))]
    for _ in range(N_LAYERS - 1):
        latents.append(latents[-1] @ (random_rotation(rng, D) * np.geomspace(0.3, 3.0, D)))
    models = []
    for _ in range(n_models):
        layers = {}
        for k, z in enumerate(latents):
            x = z @ random_rotation(rng, D) + 0.3 * z.std() * rng.standard_normal((N, D))
            layers[f"layer{k}"] = x.astype(np.float32)
        if copy_last:
            layers[f"layer{N_LAYERS - 1}"] = layers[f"layer{N_LAYERS - 2}"].copy()
        models.append(layers)
    return models


@pytest.fixture
def seeds(make_store) -> list[Path]:
    return [make_store(layers, ".h5", name=f"seed{k}") for k, layers in enumerate(seed_layers(3))]


def test_cli_on_seeds_cka_finds_every_layer_cca_does_not(seeds, tmp_path) -> None:
    csv_out, json_out, png = tmp_path / "m.csv", tmp_path / "m.json", tmp_path / "m.png"
    r = run("layer-match", *seeds, "-m", "cka", "-m", "cca", "-o", csv_out, "-q")
    assert r.exit_code == 0, r.output
    assert "3 models (seed0, seed1, seed2), 6 ordered pairs, 4 layers matched by name" in r.stdout
    rows = list(csv.DictReader(io.StringIO(csv_out.read_text())))
    accuracy = {row["metric"]: float(row["percent"]) for row in rows if row["record"] == "accuracy"}
    assert accuracy["cka"] == 100.0
    assert accuracy["cca"] <= 50.0
    assert {row["total"] for row in rows if row["record"] == "accuracy"} == {"24"}
    layer_rows = [row for row in rows if row["record"] == "layer" and row["metric"] == "cka"]
    assert [(row["layer"], row["count"], row["total"]) for row in layer_rows] == [
        (f"layer{k}", "6", "6") for k in range(N_LAYERS)]
    cka_confusion = [row for row in rows if row["record"] == "confusion" and row["metric"] == "cka"]
    assert all(row["layer"] == row["picked"] for row in cka_confusion)
    # JSON and the plot from the same run agree with the CSV.
    r = run("layer-match", *seeds, "-m", "cka", "-m", "cca", "-o", json_out, "--plot", png, "-q")
    assert r.exit_code == 0, r.output
    doc = json.loads(json_out.read_text())
    assert [m["accuracy"] for m in doc["metrics"]] == pytest.approx([accuracy["cka"], accuracy["cca"]])
    assert doc["metrics"][0]["confusion"]["counts"] == [
        [6 if c == k else 0 for c in range(N_LAYERS + 1)] for k in range(N_LAYERS)]
    assert len(doc["ordered_pairs"]) == 6 and doc["match_by"] == "name"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_results_file_gives_the_same_report_as_the_stores(seeds, tmp_path) -> None:
    zoo = tmp_path / "zoo.h5"
    assert run("compare", *seeds, "-m", "cka", "-m", "procrustes", "-o", zoo, "-q").exit_code == 0
    from_results = run("layer-match", zoo, "-o", tmp_path / "a.json")
    from_stores = run("layer-match", *seeds, "-m", "cka", "-m", "procrustes", "-o", tmp_path / "b.json", "-q")
    assert from_results.exit_code == 0 and from_stores.exit_code == 0, from_results.output
    assert from_results.stdout == from_stores.stdout
    assert (tmp_path / "a.json").read_text() == (tmp_path / "b.json").read_text()
    assert run("layer-match", zoo, "--layers", "layer1").exit_code == 2
    one = run("layer-match", zoo, "-m", "procrustes")
    assert one.exit_code == 0 and "\nprocrustes " in one.stdout and "\ncka " not in one.stdout


def test_asymmetric_metric_from_stores_uses_both_directions(seeds) -> None:
    """linreg from stores: both (i, j) and (j, i) are computed and summed, so the report equals
    the one from a results object that holds every ordered block."""
    with open_store(seeds[0]) as a, open_store(seeds[1]) as b:
        report = match_models([("s0", a), ("s1", b)], ["linreg", "cka"])
        from repsim_cli.compare import prepare_models

        comparison = prepare_models([("s0", a), ("s1", b)], ["linreg"], model_pairs_override=[(0, 1), (1, 0)])
        try:
            both = comparison.run()
        finally:
            comparison.close()
    assert [m.spec for m in report.metrics] == ["linreg", "cka"]
    assert report.metrics[0].combined and not report.metrics[1].combined
    expected = match_results(both).metrics[0]
    assert report.metrics[0].confusion.tolist() == expected.confusion.tolist()
    assert report.metrics[0].n_trials == 8


def test_exact_copy_of_a_deep_layer_gives_ties(make_store, tmp_path) -> None:
    stores = [make_store(layers, ".h5", name=f"copy{k}") for k, layers in enumerate(seed_layers(3, True))]
    out = tmp_path / "copy.json"
    r = run("layer-match", *stores, "-m", "cka", "-o", out, "-q")
    assert r.exit_code == 0, r.output
    m = json.loads(out.read_text())["metrics"][0]
    # layer2 and layer3 are the same array in every model: both rows tie between them.
    assert m["accuracy"] == pytest.approx(50.0) and m["ties"] == 12
    assert [row["percent"] for row in m["per_layer"]] == [100.0, 100.0, 0.0, 0.0]
    assert "ties" in r.stdout and "(none)" in r.stdout


# ---------------------------------------------------------------- errors
def test_one_store_is_an_error(seeds, tmp_path) -> None:
    r = run("layer-match", seeds[0], "-m", "cka", "-o", tmp_path / "x.csv")
    assert r.exit_code == 1
    assert r.output.startswith("Error: ") and "at least two stores" in r.output
    assert not (tmp_path / "x.csv").exists()


def test_mismatched_layer_names_are_an_error(make_store, seeds, tmp_path) -> None:
    other = seed_layers(1)[0]
    other["extra"] = other.pop("layer3")
    odd = make_store(other, ".h5", name="odd")
    r = run("layer-match", seeds[0], odd, "-m", "cka", "-o", tmp_path / "x.csv")
    assert r.exit_code == 1
    assert r.output.splitlines() == [(
        "Error: --match-by name: layer names differ between 'seed0' and 'odd': model 'odd' has no "
        "layer 'layer3'; 'seed0' has no layer 'extra' (use --match-by index when layers are named "
        "differently, or --layers to select common layers)")]
    assert not (tmp_path / "x.csv").exists()
    # By position the layers correspond (the renamed one is the same array), so it runs.
    r = run("layer-match", seeds[0], odd, "-m", "cka", "--match-by", "index", "-q")
    assert r.exit_code == 0 and "matched by index" in r.output
    short = make_store({k: v for k, v in seed_layers(1)[0].items() if k != "layer0"}, ".h5", name="short")
    with open_store(seeds[0]) as a, open_store(short) as b, pytest.raises(LayerNotFoundError, match="3 layers"):
        match_models([("a", a), ("b", b)], ["cka"], match_by="index")


def test_bad_inputs_and_output_names(seeds, tmp_path) -> None:
    r = run("layer-match", *seeds, "-m", "cka", "-o", tmp_path / "x.txt")
    assert r.exit_code == 1 and "Error: " in r.output and "use .csv or .json" in r.output
    r = run("layer-match", *seeds, "-m", "cka", "--plot", tmp_path / "x.gif")
    assert r.exit_code == 1 and "use .png, .svg or .pdf" in r.output
    r = run("layer-match", *seeds)
    assert r.exit_code == 2 and "-m" in r.output
    r = run("layer-match", *seeds, "-m", "nosuch")
    assert r.exit_code == 2 and "unknown metric 'nosuch'" in r.output
    r = run("layer-match", tmp_path / "missing.h5", seeds[0], "-m", "cka")
    assert r.exit_code == 1 and "no such file" in r.output
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix in {".txt", ".gif"}) == []
