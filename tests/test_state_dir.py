"""Two-stage shards: `--stage layers` prepares a share of the layer states into a shared,
content-addressed directory; `--stage pairs` computes a share of the cells from them."""

from __future__ import annotations

import threading
from contextlib import ExitStack

import numpy as np
import pytest
from click.testing import CliRunner

from repsim_cli.cli import cli
from repsim_cli.compare import prepare_models
from repsim_cli.schedule import Shard
from repsim_cli.sharding import run_layers_stage
from repsim_cli.state_dir import MissingStateError, StateDir, layer_share
from repsim_cli.store import open_store

TWO_STAGE = ["-m", "cca", "-m", "procrustes"]


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def layers(seed: int, count: int = 5) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((40, 3))
    return {f"l{i}": np.hstack([base, rng.standard_normal((40, 2 + i))]) for i in range(count)}


@pytest.fixture
def store(make_store):
    return make_store(layers(0), name="S")


@pytest.mark.parametrize("count", [1, 2, 3, 5, 7])
def test_two_stages_merge_to_the_single_run(store, tmp_path, count) -> None:
    single = run("compare", store, *TWO_STAGE, "-o", "-", "-q")
    assert single.exit_code == 0, single.output
    states = tmp_path / "states"
    for k in range(1, count + 1):
        r = run("compare", store, *TWO_STAGE, "--stage", "layers", "--shard", f"{k}/{count}",
                "--state-dir", states, "-q")  # fmt: skip
        assert r.exit_code == 0, r.output
    assert len(list(states.glob("*.state"))) == 10  # per layer: cca's basis and procrustes' state
    parts = []
    for k in range(1, count + 1):
        part = tmp_path / f"part{k}.h5"
        r = run("compare", store, *TWO_STAGE, "--stage", "pairs", "--shard", f"{k}/{count}",
                "--state-dir", states, "-o", part, "-q")  # fmt: skip
        assert r.exit_code == 0, r.output
        parts.append(part)
    merged = run("merge", *parts, "-o", "-")
    assert merged.exit_code == 0, merged.output
    assert merged.stdout == single.stdout  # the stored states are the states: same bytes


def comparison_of(stack: ExitStack, path, metrics, state_dir, require=False):
    s = stack.enter_context(open_store(path))
    comparison = prepare_models([("S", s)], metrics)
    stack.callback(comparison.close)
    comparison.state_dir = StateDir(state_dir, require=require, command="the layers stage")
    return comparison


def prepares(comparison, key: str = "") -> int:
    return sum(v for k, v in comparison.states.counts.items() if k.startswith(f"prepare:{key}"))


def test_each_state_is_prepared_once_across_shards(store, tmp_path) -> None:
    total = 0
    for k in range(1, 4):  # three shards of the layers stage, then all of them again
        with ExitStack() as stack:
            c = comparison_of(stack, store, ["cca", "procrustes", "cka"], tmp_path / "st")
            prepared, found = run_layers_stage(c, Shard(k, 3))
            assert (prepared, found) == (prepares(c), 0)
            total += prepared
    assert total == 10  # 5 layers × (cca's basis, procrustes' state)
    with ExitStack() as stack:
        c = comparison_of(stack, store, ["cca", "procrustes", "cka"], tmp_path / "st", require=True)
        assert run_layers_stage(c, Shard(1, 1)) == (0, 10)
    with ExitStack() as stack:
        c = comparison_of(stack, store, ["cca", "procrustes", "cka"], tmp_path / "st", require=True)
        res = c.run(shard=Shard(2, 2))  # the pairs stage reads every state it needs
        assert prepares(c, "('basis',)") == 0 and c.state_dir.counts["loaded"] >= 1
        assert prepares(c, "('gram_handle',)") >= 1  # CKA's handles into the engine are never stored
        assert np.isfinite(res.metrics["cca"].value[res.metrics["cca"].computed]).all()


def test_a_changed_store_invalidates_its_states(store, make_store, tmp_path) -> None:
    st = tmp_path / "st"
    assert run("compare", store, "-m", "cca", "--stage", "layers", "--state-dir", st, "-q").exit_code == 0
    store.unlink()
    changed = layers(0)
    changed["l2"] = changed["l2"][::-1].copy()  # same sums, other content
    make_store(changed, name="S")
    r = run("compare", store, "-m", "cca", "--stage", "pairs", "--state-dir", st, "--shard", "1/2",
            "-o", tmp_path / "p.h5")  # fmt: skip
    assert r.exit_code == 1 and not (tmp_path / "p.h5").exists()
    assert "no prepared cca state of layer" in r.output and ":l0" in r.output and "--stage layers" in r.output
    with ExitStack() as stack:  # the key covers the whole store's content: every state again
        c = comparison_of(stack, store, ["cca"], st)
        assert run_layers_stage(c, Shard(1, 1)) == (5, 0)
    with ExitStack() as stack:
        c = comparison_of(stack, store, ["cca"], st)
        assert run_layers_stage(c, Shard(1, 1)) == (0, 5)


def test_a_missing_state_names_the_layer_and_the_command(store, tmp_path) -> None:
    with ExitStack() as stack:
        c = comparison_of(stack, store, ["procrustes"], tmp_path / "empty", require=True)
        with pytest.raises(MissingStateError, match=r"no prepared procrustes state of layer .*:l0.*the layers stage"):
            c.run()
    r = run("compare", store, "-m", "cca", "--stage", "pairs", "-o", tmp_path / "p.h5")
    assert r.exit_code == 2 and "--stage pairs needs --state-dir" in r.output


def test_concurrent_writers_leave_one_valid_file(tmp_path) -> None:
    sd = StateDir(tmp_path / "st")
    material = {"layer": "x", "content": "c"}
    big = np.random.default_rng(0).standard_normal((300, 300))
    errors: list[BaseException] = []

    def write() -> None:
        try:
            for _ in range(5):
                sd.save(material, {"basis": big})
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=write) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    files = list((tmp_path / "st").iterdir())
    assert [f.name for f in files] == [sd.path(material).name]  # no temporary file left
    np.testing.assert_array_equal(sd.load(material)["basis"], big)
    sd.path(material).write_bytes(b"damaged")
    assert sd.load(material) is None and sd.counts["unreadable"] == 1


def test_layer_shares_balance_by_cost() -> None:
    costs = [(f"l{i}", float(c)) for i, c in enumerate([9, 1, 1, 1, 4, 4, 2, 2])]
    shares = [layer_share(costs, Shard(k, 3)) for k in (1, 2, 3)]
    assert sorted(x for s in shares for x in s) == sorted(k for k, _ in costs)
    loads = [sum(dict(costs)[k] for k in s) for s in shares]
    assert max(loads) == 9 and min(loads) >= 7
