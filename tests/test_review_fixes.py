"""Command-line behaviour fixed after a review: merge's errors and provenance, influence's usage
errors and output checks, export's option messages, info's statistics, damaged states.

Budget: about 20 s in all on the shared 2-core machine, mostly start-up (tiny stores, n = 40)."""

from __future__ import annotations

import json
import sys
from unittest import mock

import numpy as np
import pytest
from click.testing import CliRunner

from repsim_cli.cli import cli


def run(*args):
    """The command line, with ``sys.argv`` as the console script would see it (provenance)."""
    argv = [str(a) for a in args]
    with mock.patch.object(sys, "argv", ["repsim", *argv]):
        return CliRunner().invoke(cli, argv)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    from repsim_cli.store.importers import import_arrays

    root = tmp_path_factory.mktemp("review")
    rng = np.random.default_rng(3)
    base = rng.standard_normal((40, 3))
    out = []
    for name in ("A", "B"):
        sources = []
        for i in range(2):
            arr = np.hstack([base, rng.standard_normal((40, 2 + i))])
            np.save(root / f"{name}{i}.npy", arr)
            sources.append(f"l{i}={root / f'{name}{i}.npy'}")
        import_arrays(sources, root / f"{name}.h5")
        out.append(root / f"{name}.h5")
    return out


def shards(stores, tmp_path, metric, tag, count=2, extra=()):
    parts = []
    for k in range(1, count + 1):
        part = tmp_path / f"{tag}{k}.h5"
        r = run("compare", *stores, "-m", metric, "-o", part, "--shard", f"{k}/{count}", "-q", *extra)
        assert r.exit_code == 0, r.output
        parts.append(part)
    return parts


# ------------------------------------------------------------------ merge: a missing file
@pytest.mark.parametrize("metric", ["cka", "procrustes"])  # partial sums, cells
@pytest.mark.parametrize("position", [0, 1])
def test_merge_names_a_missing_file_wherever_it_is(stores, tmp_path, metric, position) -> None:
    parts = shards(stores, tmp_path, metric, "p")
    missing = tmp_path / "nonexist.h5"
    given = list(parts)
    given.insert(position, missing)
    r = run("merge", *given, "-o", tmp_path / "m.h5")
    assert r.exit_code == 1
    assert r.output.strip() == f"Error: {missing}: no such file"
    assert not (tmp_path / "m.h5").exists()


def test_merge_names_a_damaged_file_among_partial_sums(stores, tmp_path) -> None:
    parts = shards(stores, tmp_path, "cka", "p")
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5 at all")
    r = run("merge", *parts, junk, "-o", tmp_path / "m.h5")
    assert r.exit_code == 1
    assert r.output.startswith(f"Error: {junk}:") and "cannot merge partial sums" not in r.output


# ------------------------------------------------------------------ influence: usage errors
def test_influence_refuses_a_second_metric(stores) -> None:
    r = run("influence", *stores, "--layer-a", "l1", "-m", "cka", "-m", "cca", "--top", "1")
    assert r.exit_code == 2
    assert "one metric" in r.output and "cka" in r.output and "cca" in r.output
    assert "value:" not in r.output


@pytest.mark.parametrize("args", [
    ("-m", "nosuch"),
    ("-m", "cka", "-o", "{a}"),
    ("-m", "cka", "--plot", "{b}"),
])  # fmt: skip
def test_influence_usage_errors_exit_2_like_compare(stores, args) -> None:
    args = [x.format(a=stores[0], b=stores[1]) for x in args]
    r = run("influence", *stores, "--layer-a", "l1", *args)
    assert r.exit_code == 2, r.output
    assert "value:" not in r.output and "Traceback" not in r.output


@pytest.mark.parametrize(("option", "name"), [("-o", "x.csv"), ("--plot", "x.png")])
def test_influence_checks_output_directory_before_computing(stores, tmp_path, option, name) -> None:
    target = tmp_path / "nonexist" / name
    r = run("influence", *stores, "--layer-a", "l1", "-m", "cka", option, target)
    assert r.exit_code == 1
    assert "does not exist" in r.output and str(target) in r.output
    assert "value:" not in r.output and "verdict" not in r.output  # nothing computed, nothing printed


def test_influence_checks_output_suffix_before_computing(stores, tmp_path) -> None:
    r = run("influence", *stores, "--layer-a", "l1", "-m", "cka", "-o", tmp_path / "x.txt")
    assert r.exit_code == 1 and "unknown format" in r.output and "value:" not in r.output


# ------------------------------------------------------------------ merge: provenance
@pytest.mark.parametrize("metric", ["cka", "procrustes"])  # partial sums, cells
def test_merged_results_say_they_were_merged(stores, tmp_path, metric) -> None:
    parts = shards(stores, tmp_path, metric, "s", count=3)
    merged = tmp_path / "merged.h5"
    r = run("merge", *parts, "-o", merged)
    assert r.exit_code == 0, r.output
    info = run("info", merged, "--json")
    prov = json.loads(info.stdout)["provenance"]
    assert prov["command"].startswith("repsim ")  # the merge's command, not shard 1's
    assert "--shard" not in prov["command"]
    assert prov["created"] and prov["host"] and "shard" not in prov
    sources = prov["merged_from"]
    assert [s["shard"] for s in sources] == ["1/3", "2/3", "3/3"]
    assert [s["file"] for s in sources] == [str(p) for p in parts]
    for k, source in enumerate(sources, start=1):
        assert f"--shard {k}/3" in source["command"] and str(parts[k - 1]) in source["command"]
    text = run("info", merged).stdout
    assert "merged from 3 shards" in text
    assert all(f"--shard {k}/3" in text for k in (1, 2, 3))


# ------------------------------------------------------------------ export: option messages
@pytest.fixture(scope="module")
def zoo(stores, tmp_path_factory):
    """Results of three models (the third is B again under another file name)."""
    import shutil

    root = tmp_path_factory.mktemp("zoo")
    third = root / "C.h5"
    shutil.copy(stores[1], third)
    out = root / "zoo.h5"
    r = run("compare", *stores, third, "-m", "cka", "--permutations", "9", "--seed", "1", "-o", out, "-q")
    assert r.exit_code == 0, r.output
    return out


def test_export_names_annotate_and_its_choices_for_a_wrong_value(zoo, tmp_path) -> None:
    r = run("export", zoo, "-o", tmp_path / "h.png", "--annotate", "bogus")
    assert r.exit_code == 2
    assert "--annotate" in r.output and "'bogus'" in r.output
    assert "value" in r.output and "error" in r.output and "extra argument" not in r.output
    assert not (tmp_path / "h.png").exists()


@pytest.mark.parametrize("out", ["zs.csv", "-", "zs.png"])
def test_export_summary_with_a_statistic_says_summary_draws_values(zoo, tmp_path, out) -> None:
    target = out if out == "-" else tmp_path / out
    r = run("export", zoo, "--summary", "max", "-o", target, "--what", "p_value")
    assert r.exit_code == 2
    assert "--summary draws values only" in r.output and "--wide" not in r.output


# ------------------------------------------------------------------ info: which statistics
def test_info_says_which_statistics_a_results_file_holds(stores, tmp_path) -> None:
    out = tmp_path / "st.h5"
    r = run("compare", *stores, "-m", "cka", "--bootstrap", "5", "--ci", "0.9", "--jackknife",
            "--permutations", "9", "--adjust", "bh", "--seed", "4", "-o", out, "-q")  # fmt: skip
    assert r.exit_code == 0, r.output
    text = run("info", out).stdout
    line = next(x for x in text.splitlines() if x.strip().startswith("statistics:"))
    for words in ("bootstrap of 5 replicates", "90% percentile intervals", "jackknife standard errors",
                  "9 permutations", "Benjamini-Hochberg", "seed 4"):
        assert words in line, (words, line)
    assert "ci_low, ci_high, p_value, p_adjusted, null_mean, null_std, null_adjusted" in text
    summary = json.loads(run("info", out, "--json").stdout)
    assert summary["statistics"] == {"bootstrap": 5, "ci": 0.9, "seed": 4, "jackknife": True,
                                     "permutations": 9, "null": "permutation", "adjust": "bh"}
    assert summary["metrics"][0]["statistics"][:2] == ["ci_low", "ci_high"]

    gamma = tmp_path / "g.h5"
    assert run("compare", *stores, "-m", "cka", "--null", "gamma", "-o", gamma, "-q").exit_code == 0
    line = next(x for x in run("info", gamma).stdout.splitlines() if x.strip().startswith("statistics:"))
    assert "gamma" in line and "Holm" in line and "bootstrap" not in line and "jackknife" not in line

    plain = tmp_path / "plain.h5"
    assert run("compare", *stores, "-m", "cka", "-o", plain, "-q").exit_code == 0
    assert "statistics" not in run("info", plain).stdout


# ------------------------------------------------------------------ a damaged state file
@pytest.mark.parametrize("damage", ["truncate", "foreign"])
def test_a_damaged_state_file_is_named_as_damaged(stores, tmp_path, damage) -> None:
    import pickle

    st = tmp_path / "states"
    r = run("compare", stores[0], "-m", "cca", "--stage", "layers", "--state-dir", st, "-q")
    assert r.exit_code == 0, r.output
    files = sorted(st.glob("*.state"))
    assert len(files) == 2
    victim = files[0]
    if damage == "truncate":
        victim.write_bytes(victim.read_bytes()[:50])
    else:  # a complete pickle, but not the state its name stands for
        victim.write_bytes(pickle.dumps({"material": {"layer": "other"}, "state": None}))
    r = run("compare", stores[0], "-m", "cca", "--stage", "pairs", "--state-dir", st,
            "-o", tmp_path / "p.h5")  # fmt: skip
    assert r.exit_code == 1
    assert str(victim) in r.output and "damaged" in r.output and "no prepared" not in r.output
    assert "--stage layers" in r.output  # how to make it again
    # the layers stage replaces the damaged file; then the pairs stage runs
    assert run("compare", stores[0], "-m", "cca", "--stage", "layers", "--state-dir", st, "-q").exit_code == 0
    r = run("compare", stores[0], "-m", "cca", "--stage", "pairs", "--state-dir", st, "-o", tmp_path / "p.h5", "-q")
    assert r.exit_code == 0, r.output


# ------------------------------------------------------------------ the README says what is so
README = (__import__("pathlib").Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_readme_names_the_commands_that_take_q() -> None:
    with_q = {name for name, c in cli.commands.items() if any("-q" in p.opts for p in c.params)}
    assert with_q and with_q != set(cli.commands)
    paragraph = README[README.index("`-q` silences") :].split("\n\n")[0]
    head, _, rest = paragraph.partition(";")  # the commands with -q; then those without
    assert all(f"`{name}`" in head for name in with_q), head
    assert all(f"`{name}`" in rest for name in set(cli.commands) - with_q), rest
    assert "on every command" not in paragraph


def test_readme_results_format_lists_the_statistics() -> None:
    from repsim_cli.results import STAT_FIELDS

    block = README[README.index("### Results (`.h5` / `.zarr`)") :]
    block = block[: block.index("```", block.index("```") + 3)]
    for name in STAT_FIELDS:
        assert name in block, name
    assert "statistics=" in block and "merged_from" in block


def test_readme_says_the_n_model_family_of_p_adjusted() -> None:
    row = next(x for x in README.splitlines() if x.startswith("| `--adjust"))
    assert "every block" in row
