"""``repsim extract`` under concurrent runs and changed inputs.

Before this work, two ``extract --resume`` runs on one partial store both reported success (Zarr:
a store without its array metadata; HDF5: the second deleted the first's partial), inputs
regenerated with the same file name, shape and dtype resumed into a store holding rows of both,
and on a complete store ``--resume`` said "nothing to do" and kept the stale data.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import textwrap
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from click.testing import CliRunner

from repsim_cli._warnings import RepsimWarning
from repsim_cli.cli import cli
from repsim_cli.extract.run import ExtractOptions, extract_activations
from repsim_cli.outputs import lock_path
from repsim_cli.store import open_store
from repsim_cli.store.streaming import partial_path

pytestmark = pytest.mark.torch

@contextlib.contextmanager
def warnings_printed() -> Iterator[None]:
    """Let RepsimWarnings through (the suite turns warnings into errors): the command prints
    each as a ``Warning:`` line on stderr, which the test then looks for."""
    with warnings.catch_warnings():
        warnings.simplefilter("default", RepsimWarning)
        yield


MODEL = textwrap.dedent('''
    import os
    import time

    import torch
    from torch import nn


    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(6, 16)
            self.fc2 = nn.Linear(16, 8)

        def forward(self, x):
            hold = os.environ.get("REPSIM_TEST_HOLD")  # wait while this file exists (at most 60 s)
            deadline = time.monotonic() + 60
            while hold and os.path.exists(hold) and time.monotonic() < deadline:
                time.sleep(0.01)
            return self.fc2(torch.tanh(self.fc1(x)))


    def mlp():
        torch.manual_seed(0)
        return MLP()
''')


@pytest.fixture
def work(tmp_path: Path) -> Path:
    (tmp_path / "model.py").write_text(MODEL)
    np.save(tmp_path / "x.npy", np.random.default_rng(0).standard_normal((64, 6)))
    return tmp_path


def extract_args(work: Path, out: Path, *extra: str, quiet: bool = True) -> list[str]:
    return ["extract", "--model", f"{work / 'model.py'}:mlp", "--inputs", str(work / "x.npy"),
            "--layers", "fc*", "--batch-size", "2", *(["-q"] if quiet else []), "-o", str(out), *extra]  # fmt: skip


def run_cli(*args: str):
    return CliRunner().invoke(cli, list(args))


def interrupted(work: Path, out: Path, at: int) -> None:
    """An extraction stopped by Ctrl-C after ``at`` samples (a chunk per batch: rows are kept)."""

    def stop(description: str, done: float, total: float) -> None:
        if done >= at:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        extract_activations(f"{work / 'model.py'}:mlp", str(work / "x.npy"), out,
                            ExtractOptions(layers=("fc*",), batch_size=2), progress=stop)  # fmt: skip
    assert partial_path(out).exists()


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("repsim_cli.extract.run.TARGET_CHUNK_BYTES", 64)  # a chunk per batch


@pytest.mark.parametrize("suffix", [".h5", ".zarr"], ids=["hdf5", "zarr"])
def test_resume_refuses_regenerated_inputs(work, small_chunks, suffix) -> None:
    out = work / f"s{suffix}"
    interrupted(work, out, at=20)
    np.save(work / "x.npy", np.random.default_rng(1).standard_normal((64, 6)))  # same name, shape, dtype
    r = run_cli(*extract_args(work, out, "--resume"))
    assert r.exit_code == 1
    assert r.output.startswith(f"Error: {partial_path(out)}: the partial store was started from other inputs (")
    assert "run without --resume (or add --force) to start again" in r.output
    assert not out.exists()
    with warnings_printed():
        r = run_cli(*extract_args(work, out, "--resume", "--force"))  # starts again, from the new inputs
    assert r.exit_code == 0, r.output
    assert re.search(r"Warning: .*started from other inputs .*; --force: extracting again", r.output)
    with open_store(out) as store:
        with torch.no_grad():
            want = torch.tanh(_fc1(work)(torch.from_numpy(np.load(work / "x.npy")).float()))
        assert store.n_samples == 64 and store.layers == ["fc1", "fc2"]
        np.testing.assert_allclose(np.tanh(store.read_rows("fc1", 0, 64)), want.numpy(), rtol=1e-5, atol=1e-6)


def _fc1(work: Path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("integrity_model", work / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module.mlp().fc1


def test_resume_with_the_same_inputs_continues(work, small_chunks) -> None:
    out = work / "s.h5"
    interrupted(work, out, at=20)
    r = run_cli(*extract_args(work, out, "--resume", quiet=False))
    assert r.exit_code == 0, r.output
    assert "resumed at sample " in r.output
    reference = work / "ref.h5"
    assert run_cli(*extract_args(work, reference)).exit_code == 0
    with open_store(out) as a, open_store(reference) as b:
        assert a.content_digests() == b.content_digests()
        assert a.attrs["inputs_digest"] == b.attrs["inputs_digest"]


def test_resume_of_a_complete_store_checks_its_inputs(work) -> None:
    out = work / "s.zarr"
    assert run_cli(*extract_args(work, out)).exit_code == 0
    r = run_cli(*extract_args(work, out, "--resume", quiet=False))
    assert r.exit_code == 0 and "is already complete; nothing to do" in r.output
    np.save(work / "x.npy", np.random.default_rng(1).standard_normal((64, 6)))
    r = run_cli(*extract_args(work, out, "--resume"))
    assert r.exit_code == 1
    assert r.output.startswith(f"Error: {out}: the store was extracted from other inputs")
    with open_store(out) as store:
        before = store.content_digests()
    with warnings_printed():
        r = run_cli(*extract_args(work, out, "--resume", "--force"))
    assert r.exit_code == 0, r.output
    assert re.search(r"Warning: .*extracted from other inputs .*; --force: extracting again", r.output)
    with open_store(out) as store:
        assert store.content_digests() != before
    assert run_cli(*extract_args(work, out, "--resume")).exit_code == 0  # now it matches


def test_extract_refuses_to_write_over_its_inputs(work, tmp_path) -> None:
    import h5py

    with h5py.File(tmp_path / "data.h5", "w") as f:
        f["x"] = np.random.default_rng(0).standard_normal((8, 6))
    before = (tmp_path / "data.h5").read_bytes()
    r = run_cli("extract", "--model", f"{work / 'model.py'}:mlp", "--inputs", f"{tmp_path / 'data.h5'}:/x",
                "--layers", "fc1", "-o", str(tmp_path / "." / "data.h5"))  # fmt: skip
    assert r.exit_code == 2, r.output
    assert "is the input" in r.output and (tmp_path / "data.h5").read_bytes() == before


@pytest.mark.parametrize("suffix", [".h5", ".zarr"], ids=["hdf5", "zarr"])
def test_two_extract_resumes_on_one_partial_one_wins(work, small_chunks, suffix) -> None:
    out = work / f"s{suffix}"
    interrupted(work, out, at=20)
    hold = work / "hold"
    hold.touch()
    args = [sys.executable, "-m", "repsim_cli", *extract_args(work, out, "--resume")]
    first = subprocess.Popen(args, env={**os.environ, "REPSIM_TEST_HOLD": str(hold)}, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not lock_path(out).exists() and time.monotonic() < deadline:
            assert first.poll() is None, first.communicate()[1].decode()
            time.sleep(0.01)
        second = run_cli(*extract_args(work, out, "--resume"))
        assert second.exit_code == 1, second.output
        assert second.output.startswith(f"Error: {out}: another repsim run is writing it (pid {first.pid}, lock file")
        assert first.poll() is None  # the second stopped at once, while the first still waits
    finally:
        hold.unlink()
    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err.decode()
    r = run_cli("verify", str(out))
    assert r.exit_code == 0, r.output
    reference = work / f"ref{suffix}"
    assert run_cli(*extract_args(work, reference)).exit_code == 0
    with open_store(out) as a, open_store(reference) as b:
        assert a.content_digests() == b.content_digests()
