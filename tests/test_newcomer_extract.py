"""``repsim extract`` for a newcomer: Ctrl-C in a terminal and SIGTERM keep the work and print the
exact resume command; layer globs that respect dots, --exclude, --order forward; modules that
cannot be stored are skipped with a warning (or stop the run with --strict); masked-mean needs
its mask; plain progress lines in batch logs."""

from __future__ import annotations

import os
import re
import select
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from click.testing import CliRunner

from repsim_cli.cli import cli
from repsim_cli.extract.hooks import glob_matches, match_layers
from repsim_cli.extract.run import partial_path
from repsim_cli.store import open_store

pytestmark = pytest.mark.torch

MODELS = textwrap.dedent('''
    import os
    import time

    import torch
    from torch import nn


    class Slow(nn.Module):
        """Sleeps and ticks a file per batch when REPSIM_TEST_TICKS is set (to be stopped)."""

        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(6, 8), nn.Linear(8, 3)

        def forward(self, x):
            ticks = os.environ.get("REPSIM_TEST_TICKS")
            if ticks:
                time.sleep(0.03)
                with open(ticks, "ab") as fh:
                    fh.write(b".")
            return self.fc2(torch.tanh(self.fc1(x)))


    class Awkward(nn.Module):
        """Registered in another order than it runs; a shared module, one never run, and a
        position embedding without a batch axis (as GPT-2's wpe)."""

        def __init__(self):
            super().__init__()
            self.head = nn.Linear(8, 3)
            self.body = nn.Linear(6, 8)
            self.shared = nn.ReLU()
            self.unused = nn.Linear(2, 2)
            self.wpe = nn.Embedding(4, 8)

        def forward(self, x):
            pos = self.wpe(torch.arange(1))
            h = self.shared(self.body(x)) + pos
            return self.head(self.shared(h))


    class Nested(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList(
                [nn.Sequential(nn.Linear(6, 6), nn.Tanh()) for _ in range(2)])

        def forward(self, x):
            for block in self.blocks:
                x = block(x)
            return x


    class Tokens(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(20, 4)

        def forward(self, input_ids, attention_mask=None):
            return self.embed(input_ids)


    def slow():
        torch.manual_seed(0)
        return Slow()


    def awkward():
        torch.manual_seed(0)
        return Awkward()


    def nested():
        torch.manual_seed(0)
        return Nested()


    def tokens():
        torch.manual_seed(0)
        return Tokens()
''')

N = 100


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("newcomer")
    (root / "nets.py").write_text(MODELS)
    rng = np.random.default_rng(0)
    np.save(root / "x.npy", rng.standard_normal((N, 6)).astype(np.float32))
    ids = rng.integers(0, 20, (12, 5))
    mask = np.ones((12, 5), dtype=np.int64)
    mask[::2, 3:] = 0
    np.save(root / "ids.npy", ids)
    np.savez(root / "masked.npz", input_ids=ids, attention_mask=mask)
    return root


def run(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args])


def layers_of(path: Path) -> list[str]:
    with open_store(path) as store:
        return list(store.layers)


def rows_of(path: Path) -> dict[str, np.ndarray]:
    with open_store(path) as store:
        return {name: store.read_rows(name, 0, store.n_samples) for name in store.layers}


# ------------------------------------------------------------------------------ interruptions
def slow_args(work: Path, out: Path) -> list[str]:
    return ["extract", "--model", f"{work / 'nets.py'}:slow", "--inputs", str(work / "x.npy"),
            "--layers", "fc*", "--batch-size", "2", "-o", str(out)]  # fmt: skip


def _ticks(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _read_all(fd: int, proc: subprocess.Popen[bytes], until: float) -> bytes:
    chunks = []
    while time.monotonic() < until:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                data = os.read(fd, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    return b"".join(chunks)


CONTROLLING_TTY = (
    "import fcntl, os, sys, termios; os.setsid(); fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
    "os.execv(sys.executable, [sys.executable, '-m', 'repsim_cli', *sys.argv[1:]])"
)


def _resume_and_compare(work: Path, message: str, out: Path, reference: Path) -> str:
    command = shlex.split(message.split("continue with: ", 1)[1])
    assert command[0] == "repsim" and command[-1] == "--resume"
    resumed = subprocess.run([sys.executable, "-m", "repsim_cli", *command[1:]],
                             capture_output=True, text=True)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert not partial_path(out).exists()
    expected, got = rows_of(reference), rows_of(out)
    assert expected.keys() == got.keys()
    assert all(np.array_equal(expected[k], got[k]) for k in expected)
    return resumed.stderr


@pytest.fixture(scope="module")
def reference(work: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "ref.h5"
    assert run(*slow_args(work, out), "-q").exit_code == 0
    return out


def test_ctrl_c_in_a_terminal_keeps_the_partial_and_prints_the_resume_command(
    work: Path, tmp_path: Path, reference: Path
) -> None:
    out, ticks = tmp_path / "my store.h5", tmp_path / "ticks"
    master, slave = os.openpty()
    env = {**os.environ, "REPSIM_TEST_TICKS": str(ticks), "COLUMNS": "300"}
    args = slow_args(work, out)
    proc = subprocess.Popen([sys.executable, "-c", CONTROLLING_TTY, *args], stdin=slave,
                            stdout=slave, stderr=slave, env=env)  # fmt: skip
    os.close(slave)
    try:
        deadline = time.monotonic() + 60
        seen = b""
        while _ticks(ticks) < 20 and time.monotonic() < deadline:
            assert proc.poll() is None, seen.decode(errors="replace")
            seen += _read_all(master, proc, time.monotonic() + 0.02)
        os.write(master, b"\x03")  # Ctrl-C, as typed: the terminal sends SIGINT
        seen += _read_all(master, proc, time.monotonic() + 30)
        assert proc.wait(timeout=30) == 130, seen.decode(errors="replace")
    finally:
        os.close(master)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", seen.decode(errors="replace")).replace("\r", "")
    messages = [line for line in text.splitlines() if "Interrupted" in line]
    assert messages == [f"Interrupted; continue with: {shlex.join(['repsim', *args, '--resume'])}"]
    assert partial_path(out).exists() and not out.exists()
    stderr = _resume_and_compare(work, messages[0], out, reference)
    at = re.search(r"^resuming at (\d+) / 100 samples$", stderr, re.MULTILINE)
    assert at is not None, stderr
    assert 0 < int(at.group(1)) < N


def test_sigterm_before_the_first_chunk_keeps_the_partial(
    work: Path, tmp_path: Path, reference: Path
) -> None:
    out, ticks = tmp_path / "o.h5", tmp_path / "ticks"
    env = {**os.environ, "REPSIM_TEST_TICKS": str(ticks)}
    proc = subprocess.Popen([sys.executable, "-m", "repsim_cli", *slow_args(work, out)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 60
    while _ticks(ticks) < 3 and time.monotonic() < deadline:  # well before 16 batches
        assert proc.poll() is None
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("Interrupted; continue with: repsim extract ") and "..." not in last
    assert err.count("Interrupted") == 1
    assert partial_path(out).exists()
    stderr = _resume_and_compare(work, last, out, reference)
    assert "resuming at 0 / 100 samples" in stderr.splitlines()


def test_resume_never_overwrites_a_finished_store_made_otherwise(work: Path, tmp_path: Path) -> None:
    out = tmp_path / "done.h5"
    common = ["extract", "--model", f"{work / 'nets.py'}:slow", "--inputs", work / "x.npy", "-o", out]
    assert run(*common, "--layers", "fc1", "-q").exit_code == 0
    before = out.stat().st_mtime_ns
    r = run(*common, "--layers", "fc1", "--layers", "fc2", "--resume")
    assert r.exit_code == 1
    assert r.output.startswith(f"Error: {out}: already exists and was not made by this command (")
    assert "layers" in r.output and "--resume never replaces a finished store" in r.output
    assert out.stat().st_mtime_ns == before and layers_of(out) == ["fc1"]


# ---------------------------------------------------------------------------- layer selection
def test_star_stays_within_one_dotted_part() -> None:
    assert glob_matches("blocks.*.mlp", "blocks.3.mlp")
    assert not glob_matches("blocks.*.mlp", "blocks.3.attn.mlp")
    assert glob_matches("blocks.**.mlp", "blocks.3.attn.mlp")
    assert glob_matches("**.dense", "encoder.layer.1.output.dense")
    assert not glob_matches("encoder.layer.*.output", "encoder.layer.1.attention.output")
    assert glob_matches("layer[12].conv?", "layer2.conv1")
    names = ["encoder.layer.0.attention.output", "encoder.layer.0.output",
             "encoder.layer.1.attention.output", "encoder.layer.1.output"]  # fmt: skip
    # The BERT example selects what it says: each layer's output block, not attention's.
    assert match_layers(names, ["encoder.layer.*.output"], "bert") == [
        "encoder.layer.0.output", "encoder.layer.1.output"]


def test_globs_exclude_and_forward_order_in_a_real_run(work: Path, tmp_path: Path) -> None:
    model = f"{work / 'nets.py'}:nested"
    common = ["extract", "--model", model, "--inputs", work / "x.npy", "-q"]
    r = run(*common, "--layers", "blocks.*", "-o", tmp_path / "a.h5")
    assert r.exit_code == 0, r.output
    assert layers_of(tmp_path / "a.h5") == ["blocks.0", "blocks.1"]
    r = run(*common, "--layers", "blocks.**", "--exclude", "blocks.*.1", "-o", tmp_path / "b.h5")
    assert r.exit_code == 0, r.output
    assert layers_of(tmp_path / "b.h5") == ["blocks.0", "blocks.0.0", "blocks.1", "blocks.1.0"]
    r = run(*common, "--layers", "blocks.**", "--order", "forward", "-o", tmp_path / "c.h5")
    assert r.exit_code == 0, r.output
    assert layers_of(tmp_path / "c.h5") == [
        "blocks.0.0", "blocks.0.1", "blocks.0", "blocks.1.0", "blocks.1.1", "blocks.1"]
    r = run(*common, "--layers", "blocks.*", "--exclude", "nothing*", "-o", tmp_path / "d.h5")
    assert r.exit_code == 1 and "--exclude: no module matches 'nothing*'" in r.output


def test_modules_that_cannot_be_stored_are_skipped_with_a_warning(work: Path, tmp_path: Path) -> None:
    model = f"{work / 'nets.py'}:awkward"
    common = ["extract", "--model", model, "--inputs", work / "x.npy", "--batch-size", "5"]
    r = subprocess.run([sys.executable, "-m", "repsim_cli", *map(str, common), "--layers", "*",
                        "-q", "-o", str(tmp_path / "a.h5")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert layers_of(tmp_path / "a.h5") == ["head", "body", "output"]
    warnings = [line for line in r.stderr.splitlines() if line.startswith("Warning:")]
    assert len(warnings) == 3, r.stderr
    assert "layer 'shared' skipped: it ran 2 times in one forward pass" in warnings[0]
    assert "layer 'unused' skipped: it did not run in the forward pass" in warnings[1]
    assert "layer 'wpe' skipped: its output of shape (1, 8) has no batch axis" in warnings[2]
    r = subprocess.run([sys.executable, "-m", "repsim_cli", *map(str, common), "--layers", "*",
                        "-q", "--order", "forward", "-o", str(tmp_path / "f.h5")], capture_output=True)
    assert r.returncode == 0
    assert layers_of(tmp_path / "f.h5") == ["body", "head", "output"]
    r = run(*common, "--layers", "*", "--strict", "-o", tmp_path / "s.h5")
    assert r.exit_code == 1
    assert "layer 'shared': it ran 2 times" in r.output
    assert "layer 'wpe': its output of shape (1, 8)" in r.output
    assert not (tmp_path / "s.h5").exists()
    r = run(*common, "--layers", "wpe", "-o", tmp_path / "w.h5")
    assert r.exit_code == 1
    assert "has no batch axis (axis 0 has 1, the batch 5 samples)" in r.output


def test_masked_mean_needs_its_mask(work: Path, tmp_path: Path) -> None:
    model = f"{work / 'nets.py'}:tokens"
    common = ["extract", "--model", model, "--layers", "embed", "-q"]
    r = run(*common, "--inputs", work / "ids.npy", "--reduce", "masked-mean", "-o", tmp_path / "x.h5")
    assert r.exit_code == 1
    assert "layer 'embed': --reduce masked-mean needs an attention mask" in r.output
    assert not (tmp_path / "x.h5").exists()
    for how in ("masked-mean", "mean"):
        r = run(*common, "--inputs", work / "masked.npz", "--reduce", how, "-o", tmp_path / f"{how}.h5")
        assert r.exit_code == 0, r.output
    assert np.array_equal(rows_of(tmp_path / "masked-mean.h5")["embed"],
                          rows_of(tmp_path / "mean.h5")["embed"])  # fmt: skip
    with open_store(tmp_path / "masked-mean.h5") as store:
        assert store.info("embed").attrs["reduction"] == "mean"
        assert store.info("embed").attrs["attention_mask"]


def test_extract_prints_plain_progress_lines_in_a_batch_log(work: Path, tmp_path: Path) -> None:
    out = tmp_path / "log.h5"
    r = subprocess.run([sys.executable, "-m", "repsim_cli", *slow_args(work, out)],
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert any(line.startswith("extract: 100/100 samples (100%)") for line in lines), r.stderr
    assert lines[-1].startswith(f"wrote {out}: 100 samples x 2 layers in ")
