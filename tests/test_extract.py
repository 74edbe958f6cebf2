"""``repsim extract``: stored activations equal a hand-written forward-hook capture, bit for bit.

The tiny MLP, CNN and transformer are defined below as source text and written to a model file,
since ``--model`` takes ``file.py:factory``. Every comparison runs the same batches through the
reference capture, so the bits compared come from the same kernels.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from click.testing import CliRunner

from repsim_cli.cli import cli
from repsim_cli.extract.models import file_sha256
from repsim_cli.extract.run import ExtractOptions, extract_activations, partial_path
from repsim_cli.results import read_results
from repsim_cli.store import StoreWriter, open_store

pytestmark = pytest.mark.torch

MODELS = textwrap.dedent('''
    import os
    import time

    import numpy as np
    import torch
    from torch import nn


    class TinyMLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(6, 16)
            self.act = nn.Tanh()
            self.fc2 = nn.Linear(16, 8)
            self.head = nn.Linear(8, 3)

        def forward(self, x):
            return self.head(torch.relu(self.fc2(self.act(self.fc1(x)))))


    class TinyCNN(nn.Module):
        def __init__(self, classes=4):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
            self.relu1 = nn.ReLU(inplace=True)  # overwrites conv1's output: hooks must copy it
            self.conv2 = nn.Conv2d(8, 16, 3, padding=1, stride=2)
            self.relu2 = nn.ReLU()
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(16, classes)

        def forward(self, x):
            x = self.relu2(self.conv2(self.relu1(self.conv1(x))))
            return self.fc(self.pool(x).flatten(1))


    class Block(nn.Module):
        def __init__(self, d):
            super().__init__()
            self.norm1 = nn.LayerNorm(d)
            self.attn = nn.MultiheadAttention(d, 2, batch_first=True)  # returns a tuple
            self.norm2 = nn.LayerNorm(d)
            self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))

        def forward(self, x, pad):
            h = self.norm1(x)
            a, _ = self.attn(h, h, h, key_padding_mask=pad, need_weights=False)
            x = x + a
            return x + self.mlp(self.norm2(x))


    class TinyTransformer(nn.Module):
        """Hugging Face style: (input_ids, attention_mask=...) -> {"last_hidden_state": ...}."""

        def __init__(self, vocab=20, length=6, d=16):
            super().__init__()
            self.embed = nn.Embedding(vocab, d)
            self.pos = nn.Parameter(0.1 * torch.randn(1, length, d))
            self.blocks = nn.ModuleList([Block(d) for _ in range(2)])
            self.norm = nn.LayerNorm(d)

        def forward(self, input_ids, attention_mask=None):
            pad = None if attention_mask is None else attention_mask == 0
            x = self.embed(input_ids) + self.pos
            for block in self.blocks:
                x = block(x, pad)
            return {"last_hidden_state": self.norm(x), "pooled": x[:, 0]}


    class SharedReLU(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2, self.act = nn.Linear(6, 4), nn.Linear(4, 4), nn.ReLU()

        def forward(self, x):
            return self.act(self.fc2(self.act(self.fc1(x))))


    class SlowMLP(TinyMLP):
        """Sleeps and ticks a file per batch when REPSIM_TEST_TICKS is set (to be killed)."""

        def forward(self, x):
            ticks = os.environ.get("REPSIM_TEST_TICKS")
            if ticks:
                time.sleep(0.02)
                with open(ticks, "ab") as fh:
                    fh.write(b".")
            return super().forward(x)


    def mlp():
        torch.manual_seed(0)
        return TinyMLP()


    def slow_mlp():
        torch.manual_seed(0)
        return SlowMLP()


    def cnn():
        torch.manual_seed(0)
        return TinyCNN()


    def cnn_seed1():
        torch.manual_seed(1)
        return TinyCNN()


    def transformer():
        torch.manual_seed(0)
        return TinyTransformer().eval()


    def shared_relu():
        torch.manual_seed(0)
        return SharedReLU()


    def toy_images(n, seed):
        """Four noisy class templates: a task a tiny CNN learns in a few dozen steps."""
        rng = np.random.default_rng(seed)
        templates = np.random.default_rng(123).standard_normal((4, 3, 8, 8))
        labels = rng.integers(0, 4, n)
        noise = 1.5 * rng.standard_normal((n, 3, 8, 8))
        return (templates[labels] + noise).astype(np.float32), labels


    def trained_cnn(seed):
        torch.manual_seed(seed)
        model = TinyCNN()
        x, y = toy_images(256, seed=10 + seed)
        x, y = torch.from_numpy(x), torch.from_numpy(y)
        optimiser = torch.optim.Adam(model.parameters(), lr=0.02)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # tiny GEMMs: one thread is faster and reproducible
        try:
            for _ in range(60):
                optimiser.zero_grad()
                nn.functional.cross_entropy(model(x), y).backward()
                optimiser.step()
        finally:
            torch.set_num_threads(threads)
        return model


    def trained_cnn_seed0():
        return trained_cnn(0)


    def trained_cnn_seed1():
        return trained_cnn(1)
''')

N = 10


# ------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the model file and the inputs of every model."""
    root = tmp_path_factory.mktemp("extract")
    (root / "tiny_models.py").write_text(MODELS)
    rng = np.random.default_rng(0)
    np.save(
        root / "vectors.npy", rng.standard_normal((N, 6))
    )  # float64: cast to the model's float32
    np.save(root / "images.npy", rng.standard_normal((N, 3, 8, 8)).astype(np.float32))
    tokens = rng.integers(0, 20, (N, 6))
    mask = np.ones((N, 6), dtype=np.int64)
    for i, keep in enumerate([6, 4, 3, 6, 5, 2, 6, 1, 6, 4]):
        mask[i, keep:] = 0  # right padding of varying length
    ids = np.array([f"s{i:02d}" for i in range(N)])
    np.savez(root / "tokens.npz", input_ids=tokens, attention_mask=mask, ids=ids)
    return root


@pytest.fixture(scope="module")
def models(workdir: Path) -> Any:
    """The model file imported as a module, for the reference captures."""
    spec = importlib.util.spec_from_file_location(
        "tiny_models_reference", workdir / "tiny_models.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def run_cli(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args))


# ----------------------------------------------------------------------- the reference capture
def pick(output: Any) -> Any:
    if isinstance(output, (tuple, list)):
        return output[0]
    if isinstance(output, dict):
        return output["last_hidden_state"]
    return output


def reduce_reference(t: Any, how: str, mask: Any) -> Any:
    """What a user's own hook would do with an output of one batch."""
    if t.dim() <= 2 or how == "flatten":
        return t
    if t.dim() == 4:
        return t.mean(dim=(2, 3)) if how == "mean" else t.amax(dim=(2, 3))
    if how == "cls":
        return t[:, 0]
    if mask is None:
        return {"mean": t.mean(dim=1), "max": t.amax(dim=1), "last": t[:, -1]}[how]
    m = mask.to(t.dtype).unsqueeze(-1)
    if how == "mean":
        return (t * m).sum(dim=1) / m.sum(dim=1)
    if how == "max":
        return t.masked_fill(m == 0, float("-inf")).amax(dim=1)
    last = torch.tensor([int(np.flatnonzero(row.numpy())[-1]) for row in mask])
    return t[torch.arange(t.shape[0]), last]


def manual_capture(
    model: Any,
    names: list[str],
    inputs: np.ndarray,
    mask: np.ndarray | None,
    how: str,
    batch: int,
    ranks: dict[str, int] | None = None,
) -> dict[str, np.ndarray]:
    """Forward hooks by hand, over the same batches: the expected store contents.

    ``ranks`` receives the rank of each layer's raw output."""
    model.eval()
    modules = dict(model.named_modules())
    current: dict[str, Any] = {}
    handles = [
        modules[name].register_forward_hook(
            lambda mod, args, out, name=name: current.__setitem__(name, pick(out).clone())
        )
        for name in names
        if name != "output"
    ]
    rows: dict[str, list[np.ndarray]] = {name: [] for name in names}
    if inputs.dtype.kind == "f":
        inputs = inputs.astype(np.float32)
    try:
        with torch.inference_mode():
            for start in range(0, len(inputs), batch):
                x = torch.tensor(inputs[start : start + batch])  # a copy in torch's memory
                m = None if mask is None else torch.tensor(mask[start : start + batch])
                out = model(x) if m is None else model(x, attention_mask=m)
                current["output"] = pick(out)
                for name in names:
                    rows[name].append(reduce_reference(current[name], how, m).numpy().copy())
                    if ranks is not None:
                        ranks[name] = current[name].dim()
    finally:
        for h in handles:
            h.remove()
    return {name: np.concatenate(parts) for name, parts in rows.items()}


def assert_same_store(a: Path, b: Path) -> None:
    """Same layers, ids, attributes, rows and stats, bit for bit."""
    with open_store(a) as sa, open_store(b) as sb:
        assert sa.layers == sb.layers
        assert sa.n_samples == sb.n_samples
        assert sa.attrs == sb.attrs
        assert np.array_equal(sa.ids(), sb.ids())
        for name in sa.layers:
            assert sa.info(name).attrs == sb.info(name).attrs
            assert sa.info(name).shape == sb.info(name).shape
            assert np.array_equal(
                sa.read_rows(name, 0, sa.n_samples), sb.read_rows(name, 0, sb.n_samples)
            )
            assert np.array_equal(sa.column_sums(name), sb.column_sums(name))
            assert np.array_equal(sa.column_sumsq(name), sb.column_sumsq(name))


# ---------------------------------------------------------------------- bit-exact extraction
CASES = [
    ("mlp", "vectors.npy", ["fc1", "act", "fc2", "output"], "flatten"),
    ("mlp", "vectors.npy", ["fc2"], "mean"),  # 2-D output: stored as is
    ("cnn", "images.npy", ["conv1", "relu1", "conv2", "pool", "fc", "output"], "flatten"),
    ("cnn", "images.npy", ["conv1", "conv2", "pool", "fc"], "mean"),
    ("cnn", "images.npy", ["conv1", "conv2", "fc"], "max"),
    ("transformer", "tokens.npz", ["embed", "blocks.0.attn", "blocks.1", "output"], "flatten"),
    ("transformer", "tokens.npz", ["embed", "blocks.0.attn", "blocks.1", "output"], "mean"),
    ("transformer", "tokens.npz", ["blocks.0.attn", "blocks.1.mlp", "output"], "max"),
    ("transformer", "tokens.npz", ["blocks.0", "output"], "cls"),
    ("transformer", "tokens.npz", ["blocks.0", "output"], "last"),
]


@pytest.mark.parametrize("batch", [3, 5], ids=["batch-not-dividing-n", "batch-dividing-n"])
@pytest.mark.parametrize(
    ("factory", "inputs", "names", "how"), CASES, ids=[f"{c[0]}-{c[3]}" for c in CASES]
)
def test_rows_equal_manual_hook_capture(
    workdir: Path,
    models: Any,
    tmp_path: Path,
    factory: str,
    inputs: str,
    names: list[str],
    how: str,
    batch: int,
) -> None:
    suffix = ".zarr" if batch == 3 else ".h5"
    out = tmp_path / f"acts{suffix}"
    options = ExtractOptions(layers=tuple(names), batch_size=batch, reduction=how)
    extract_activations(
        f"{workdir / 'tiny_models.py'}:{factory}", str(workdir / inputs), out, options
    )
    data = np.load(workdir / inputs)
    x, mask = (
        (data["input_ids"], data["attention_mask"]) if inputs.endswith(".npz") else (data, None)
    )
    ranks: dict[str, int] = {}
    expected = manual_capture(getattr(models, factory)(), names, x, mask, how, batch, ranks)
    with open_store(out) as store:
        assert store.layers == names
        for name in names:
            stored = store.read_rows(name, 0, N)
            want = expected[name].reshape(N, -1)
            assert stored.dtype == np.float32 == want.dtype
            assert np.array_equal(stored, want), (name, np.flatnonzero((stored != want).any(1)))
            np.testing.assert_allclose(
                store.column_sums(name), want.astype(np.float64).sum(0), rtol=1e-12, atol=1e-12
            )
            assert store.info(name).attrs["reduction"] == ("none" if ranks[name] <= 2 else how)
            assert store.info(name).feature_shape == expected[name].shape[1:]
        if factory == "transformer":
            assert store.ids().tolist() == [f"s{i:02d}" for i in range(N)]


def test_reduction_and_feature_shape_are_recorded(workdir: Path, tmp_path: Path) -> None:
    model = f"{workdir / 'tiny_models.py'}:transformer"
    out = tmp_path / "t.h5"
    extract_activations(
        model,
        str(workdir / "tokens.npz"),
        out,
        ExtractOptions(layers=("embed", "blocks.0.attn", "output"), reduction="mean"),
    )
    with open_store(out) as store:
        embed, attn, output = (store.info(n) for n in store.layers)
        assert embed.feature_shape == (16,)
        assert embed.attrs["reduction"] == "mean"
        assert embed.attrs["attention_mask"] is True
        assert embed.attrs["module"] == "Embedding"
        assert attn.attrs["output"] == "[0]"
        assert output.attrs["output"] == ".last_hidden_state"
        source = store.attrs["source"]
    assert source["command"] == "extract"
    assert source["reduction"] == "mean"
    assert source["model"] == model
    assert source["model_sha256"] == file_sha256(workdir / "tiny_models.py")
    assert source["inputs"] == str((workdir / "tokens.npz").resolve())
    assert source["layers"] == ["embed", "blocks.0.attn", "output"]
    assert source["layer_patterns"] == ["embed", "blocks.0.attn", "output"]
    assert source["versions"]["torch"] == torch.__version__


def test_flatten_keeps_the_feature_map_shape_and_inplace_relu_does_not_leak(
    workdir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "c.h5"
    extract_activations(
        f"{workdir / 'tiny_models.py'}:cnn",
        str(workdir / "images.npy"),
        out,
        ExtractOptions(layers=("conv1",), batch_size=4),
    )
    with open_store(out) as store:
        assert store.info("conv1").feature_shape == (8, 8, 8)
        # conv1 is followed by ReLU(inplace=True): without a copy its rows would be >= 0
        assert store.read_rows("conv1", 0, N).min() < 0


def test_float16_store(workdir: Path, models: Any, tmp_path: Path) -> None:
    out = tmp_path / "h.h5"
    extract_activations(
        f"{workdir / 'tiny_models.py'}:cnn",
        str(workdir / "images.npy"),
        out,
        ExtractOptions(layers=("conv2", "fc"), batch_size=4, dtype="float16"),
    )
    want = manual_capture(
        models.cnn(), ["conv2", "fc"], np.load(workdir / "images.npy"), None, "flatten", 4
    )
    with open_store(out) as store:
        for name in ("conv2", "fc"):
            rows = store.read_rows(name, 0, N)
            assert rows.dtype == np.float16
            assert np.array_equal(rows, want[name].reshape(N, -1).astype(np.float16))
            # the stats describe what is stored
            np.testing.assert_allclose(
                store.column_sums(name), rows.astype(np.float64).sum(0), rtol=1e-12
            )


def test_rows_are_written_while_batches_are_produced(
    workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Streaming: each chunk is written as soon as it is full, not at the end."""
    done: list[float] = []
    writes: list[tuple[int, int, float]] = []
    original = StoreWriter.write_rows

    def spy(self: StoreWriter, name: str, start: int, block: np.ndarray) -> None:
        writes.append((start, len(block), done[-1]))
        original(self, name, start, block)

    monkeypatch.setattr(StoreWriter, "write_rows", spy)
    # conv1 rows are 2 KiB: chunks of 8 KiB hold 4 rows, i.e. 4 batches of 1
    monkeypatch.setattr("repsim_cli.extract.run.TARGET_CHUNK_BYTES", 4 * 8 * 8 * 8 * 4)
    extract_activations(
        f"{workdir / 'tiny_models.py'}:cnn",
        str(workdir / "images.npy"),
        tmp_path / "s.h5",
        ExtractOptions(layers=("conv1",), batch_size=1),
        progress=lambda _d, rows, _t: done.append(rows),
    )
    assert [(start, rows) for start, rows, _ in writes] == [(0, 4), (4, 4), (8, 2)]
    # the writer thread trails the forward passes by at most the chunks of 2 queued batches,
    # 1 in hand and the chunk being filled (here 4 rows each); it makes the store first
    lags = [computed - (start + rows) for start, rows, computed in writes]
    assert max(lags) <= 3 * 4, writes
    with open_store(tmp_path / "s.h5") as store:
        assert store.info("conv1").chunk_rows == 4


@pytest.mark.parametrize("suffix", [".h5", ".zarr"], ids=["hdf5", "zarr"])
@pytest.mark.parametrize(
    ("target_rows", "chunk_rows"),
    [(1, 2), (8, 8)],
    ids=["chunks-within-batches", "chunks-of-2-batches"],
)
def test_chunks_within_or_across_batches_keep_rows_and_stats_exact(
    workdir: Path,
    models: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    suffix: str,
    target_rows: int,
    chunk_rows: int,
) -> None:
    """Chunks inside a batch are written straight from it, chunks spanning batches are gathered
    first; either way the rows are the forward pass's bits and the stats are the float64 column
    sums (of squares) of the rows stored."""
    row_bytes = 8 * 8 * 8 * 4  # conv1
    monkeypatch.setattr("repsim_cli.extract.run.TARGET_CHUNK_BYTES", target_rows * row_bytes)
    out = tmp_path / f"c{suffix}"
    extract_activations(
        f"{workdir / 'tiny_models.py'}:cnn",
        str(workdir / "images.npy"),
        out,
        ExtractOptions(layers=("conv1", "fc"), batch_size=4),
    )
    want = manual_capture(
        models.cnn(), ["conv1", "fc"], np.load(workdir / "images.npy"), None, "flatten", 4
    )
    with open_store(out) as store:
        assert store.info("conv1").chunk_rows == chunk_rows
        for name in ("conv1", "fc"):
            rows = store.read_rows(name, 0, N)
            assert np.array_equal(rows, want[name].reshape(N, -1))
            wide = rows.astype(np.float64)
            np.testing.assert_allclose(store.column_sums(name), wide.sum(0), rtol=1e-13, atol=1e-12)
            np.testing.assert_allclose(
                store.column_sumsq(name), (wide**2).sum(0), rtol=1e-13, atol=1e-12
            )


# ------------------------------------------------------------------------------ layer choice
def test_globs_select_in_model_order(workdir: Path, tmp_path: Path) -> None:
    out = tmp_path / "g.h5"
    r = run_cli(
        "extract",
        "--model",
        f"{workdir / 'tiny_models.py'}:transformer",
        "--inputs",
        str(workdir / "tokens.npz"),
        "--layers",
        "blocks.*.mlp",
        "--layers",
        "embed",
        "--reduce",
        "cls",
        "-q",
        "-o",
        str(out),
    )
    assert r.exit_code == 0, r.output
    with open_store(out) as store:
        assert store.layers == ["embed", "blocks.0.mlp", "blocks.1.mlp"]
    r = run_cli(
        "extract",
        "--model",
        f"{workdir / 'tiny_models.py'}:cnn",
        "--inputs",
        str(workdir / "images.npy"),
        "--layers",
        "fc,conv*",
        "-q",
        "-o",
        str(out),
    )
    assert r.exit_code == 0, r.output
    with open_store(out) as store:
        assert store.layers == ["conv1", "conv2", "fc"]


def test_list_layers(workdir: Path) -> None:
    r = run_cli(
        "extract",
        "--model",
        f"{workdir / 'tiny_models.py'}:transformer",
        "--inputs",
        str(workdir / "tokens.npz"),
        "--list-layers",
        "--batch-size",
        "4",
    )
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["layer", "type", "output", "shape", "note"]
    table = {line.split()[0]: line for line in lines[1:]}
    assert list(table)[:3] == ["embed", "blocks", "blocks.0"]
    assert "Embedding" in table["embed"]
    assert "(4, 6, 16)" in table["embed"]
    assert "MultiheadAttention" in table["blocks.0.attn"]
    assert "[0]" in table["blocks.0.attn"]
    assert "(4, 6, 32)" in table["blocks.1.mlp.0"]
    assert "did not run" in table["blocks"]  # a ModuleList is never called itself
    assert list(table)[-1] == "output"
    assert ".last_hidden_state" in table["output"]
    assert r.stderr == ""


def test_pattern_matching_nothing_lists_close_names(workdir: Path, tmp_path: Path) -> None:
    model = f"{workdir / 'tiny_models.py'}:cnn"
    r = run_cli(
        "extract",
        "--model",
        model,
        "--inputs",
        str(workdir / "images.npy"),
        "--layers",
        "conv1",
        "--layers",
        "conv3",
        "-o",
        str(tmp_path / "x.h5"),
    )
    assert r.exit_code == 1
    assert r.output == (
        f"Error: {model}: no module matches 'conv3'; close names: conv2, conv1 "
        "(see --list-layers)\n"
    )
    assert not list(tmp_path.iterdir())


def test_model_file_that_fails_to_import(tmp_path: Path, workdir: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("import torch\nraise RuntimeError('no GPU driver here')\n")
    r = run_cli(
        "extract",
        "--model",
        f"{broken}:net",
        "--inputs",
        str(workdir / "images.npy"),
        "--layers",
        "fc",
        "-o",
        str(tmp_path / "x.h5"),
    )
    assert r.exit_code == 1
    assert r.output == (
        f"Error: {broken}: the model file failed to import: RuntimeError: no GPU driver here\n"
    )
    assert not (tmp_path / "x.h5").exists()
    r = run_cli(
        "extract",
        "--model",
        f"{workdir / 'tiny_models.py'}:resnet",
        "--inputs",
        str(workdir / "images.npy"),
        "--layers",
        "fc",
        "-o",
        str(tmp_path / "x.h5"),
    )
    assert r.exit_code == 1
    assert r.output.startswith(f"Error: {workdir / 'tiny_models.py'}: no callable 'resnet'; ")
    assert "cnn" in r.output


def test_unusable_layers_and_reductions_fail_cleanly(workdir: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.h5"
    common = ["--inputs", str(workdir / "images.npy"), "-o", str(out)]
    r = run_cli(
        "extract",
        "--model",
        f"{workdir / 'tiny_models.py'}:cnn",
        "--layers",
        "conv1",
        "--reduce",
        "cls",
        *common,
    )
    assert r.exit_code == 1
    assert "layer 'conv1': output of shape (N, 8, 8, 8) is a feature map; --reduce cls" in r.output
    r = run_cli(
        "extract",
        "--model",
        f"{workdir / 'tiny_models.py'}:shared_relu",
        "--layers",
        "act",
        "--inputs",
        str(workdir / "vectors.npy"),
        "-o",
        str(out),
    )
    assert r.exit_code == 1
    assert "layer 'act': it ran 2 times" in r.output
    assert not out.exists()
    assert not partial_path(out).exists()


# ------------------------------------------------------------------ models from other sources
def test_torchscript_model(workdir: Path, models: Any, tmp_path: Path) -> None:
    archive = tmp_path / "mlp.pt"
    with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript; loading still works
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(models.mlp().eval()), str(archive))
    out = tmp_path / "ts.h5"
    r = run_cli(
        "extract",
        "--model",
        str(archive),
        "--inputs",
        str(workdir / "vectors.npy"),
        "--layers",
        "output",
        "--batch-size",
        "4",
        "-q",
        "-o",
        str(out),
    )
    assert r.exit_code == 0, r.output
    want = manual_capture(
        models.mlp(), ["output"], np.load(workdir / "vectors.npy"), None, "flatten", 4
    )
    with open_store(out) as store:
        assert np.array_equal(store.read_rows("output", 0, N), want["output"])
    r = run_cli(
        "extract",
        "--model",
        str(archive),
        "--inputs",
        str(workdir / "vectors.npy"),
        "--layers",
        "fc*",
        "-o",
        str(out),
    )
    assert r.exit_code == 1
    assert "TorchScript modules accept no forward hooks" in r.output


def test_weights_file(workdir: Path, models: Any, tmp_path: Path) -> None:
    weights = tmp_path / "seed1.pt"
    torch.save(models.cnn_seed1().state_dict(), weights)
    model = f"{workdir / 'tiny_models.py'}:cnn"
    options = ExtractOptions(layers=("conv2", "fc"), batch_size=4, weights=str(weights))
    extract_activations(model, str(workdir / "images.npy"), tmp_path / "w.h5", options)
    extract_activations(
        f"{workdir / 'tiny_models.py'}:cnn_seed1",
        str(workdir / "images.npy"),
        tmp_path / "s1.h5",
        ExtractOptions(layers=("conv2", "fc"), batch_size=4),
    )
    with open_store(tmp_path / "w.h5") as a, open_store(tmp_path / "s1.h5") as b:
        assert np.array_equal(a.read_rows("fc", 0, N), b.read_rows("fc", 0, N))
        assert a.attrs["source"]["weights_sha256"] == file_sha256(weights)
    bad = tmp_path / "bad.pt"
    torch.save(models.mlp().state_dict(), bad)
    r = run_cli(
        "extract",
        "--model",
        model,
        "--weights",
        str(bad),
        "--inputs",
        str(workdir / "images.npy"),
        "--layers",
        "fc",
        "-o",
        str(tmp_path / "x.h5"),
    )
    assert r.exit_code == 1
    assert r.output.startswith(f"Error: {bad}: weights do not fit the model")


def test_hdf5_inputs_with_ids_beside_and_limit(workdir: Path, models: Any, tmp_path: Path) -> None:
    import h5py

    images = np.load(workdir / "images.npy")
    with h5py.File(tmp_path / "in.h5", "w") as f:
        f["data/images"] = images
        f["data/ids"] = np.arange(100, 100 + N)
    out = tmp_path / "lim.zarr"
    r = run_cli(
        "extract",
        "--model",
        f"{workdir / 'tiny_models.py'}:cnn",
        "--inputs",
        f"{tmp_path / 'in.h5'}:/data/images",
        "--layers",
        "fc",
        "--limit",
        "7",
        "--batch-size",
        "3",
        "-q",
        "-o",
        str(out),
    )
    assert r.exit_code == 0, r.output
    want = manual_capture(models.cnn(), ["fc"], images[:7], None, "flatten", 3)
    with open_store(out) as store:
        assert store.n_samples == 7
        assert store.ids().tolist() == list(range(100, 107))
        assert np.array_equal(store.read_rows("fc", 0, 7), want["fc"])
        assert store.attrs["source"]["limit"] == 7


# ----------------------------------------------------------------------- interruption, resume
def _start_slow_extract(workdir: Path, out: Path, ticks: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "REPSIM_TEST_TICKS": str(ticks)}
    command = [
        sys.executable,
        "-m",
        "repsim_cli",
        "extract",
        "--model",
        f"{workdir / 'tiny_models.py'}:slow_mlp",
        "--inputs",
        str(workdir / "many.npy"),
        "--layers",
        "fc*",
        "--layers",
        "output",
        "--batch-size",
        "2",
        "-o",
        str(out),
    ]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.parametrize("suffix", [".h5", ".zarr"], ids=["hdf5", "zarr"])
def test_resume_after_the_process_is_killed(workdir: Path, tmp_path: Path, suffix: str) -> None:
    n = 100  # 50 batches of 2; the narrow layers' chunks hold 16 batches
    if not (workdir / "many.npy").exists():
        np.save(workdir / "many.npy", np.random.default_rng(1).standard_normal((n, 6)))
    reference = tmp_path / f"reference{suffix}"
    r = run_cli(
        "extract",
        "--model",
        f"{workdir / 'tiny_models.py'}:slow_mlp",
        "--inputs",
        str(workdir / "many.npy"),
        "--layers",
        "fc*",
        "--layers",
        "output",
        "--batch-size",
        "2",
        "-q",
        "-o",
        str(reference),
    )
    assert r.exit_code == 0, r.output

    out, ticks = tmp_path / f"killed{suffix}", tmp_path / "ticks"
    proc = _start_slow_extract(workdir, out, ticks)
    deadline = time.monotonic() + 60
    while (not ticks.exists() or ticks.stat().st_size < 20) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1].decode()
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, stderr.decode()
    assert not out.exists()
    partial = partial_path(out)
    assert partial.exists()

    # an incomplete store is refused with a clear error
    r = run_cli("compare", str(partial), "-m", "cka", "-o", str(tmp_path / "cka.csv"))
    assert r.exit_code == 1
    assert r.output == (
        f"Error: {partial}: store is incomplete (its writing was interrupted); "
        "finish it with 'repsim extract --resume' or write it again\n"
    )
    assert not (tmp_path / "cka.csv").exists()

    r = run_cli(
        "extract",
        "--model",
        f"{workdir / 'tiny_models.py'}:slow_mlp",
        "--inputs",
        str(workdir / "many.npy"),
        "--layers",
        "fc*",
        "--layers",
        "output",
        "--batch-size",
        "2",
        "--resume",
        "-o",
        str(out),
    )
    assert r.exit_code == 0, r.output
    resumed_at = int(r.stderr.split("resumed at sample ")[1].split(")")[0])
    assert 32 <= resumed_at < n
    assert resumed_at % 32 == 0  # whole chunks of 16 batches kept
    assert not partial.exists()
    assert_same_store(out, reference)


def test_resume_refuses_a_partial_store_from_other_settings(
    workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("repsim_cli.extract.run.TARGET_CHUNK_BYTES", 128)  # a chunk per batch
    out = tmp_path / "other.h5"
    options = ExtractOptions(layers=("fc1",), batch_size=2)
    model = f"{workdir / 'tiny_models.py'}:mlp"

    def ctrl_c_at_six(description: str, done: float, total: float) -> None:
        if done >= 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        extract_activations(
            model, str(workdir / "vectors.npy"), out, options, progress=ctrl_c_at_six
        )
    assert partial_path(out).exists()
    assert not out.exists()  # Ctrl-C keeps the rows written
    r = run_cli(
        "extract",
        "--model",
        model,
        "--inputs",
        str(workdir / "vectors.npy"),
        "--layers",
        "fc1",
        "--batch-size",
        "3",
        "--resume",
        "-o",
        str(out),
    )
    assert r.exit_code == 1
    assert r.output == (
        f"Error: {partial_path(out)}: the partial store was started with different "
        "settings (batch_size); run without --resume to start again\n"
    )
    r = run_cli(
        "extract",
        "--model",
        model,
        "--inputs",
        str(workdir / "vectors.npy"),
        "--layers",
        "fc1",
        "--batch-size",
        "3",
        "-q",
        "-o",
        str(out),
    )
    assert r.exit_code == 0
    assert not partial_path(out).exists()
    with open_store(out) as store:
        assert store.attrs["source"]["batch_size"] == 3


# -------------------------------------------------------------------------------- end to end
def test_two_seeds_of_the_tiny_cnn_compare_diagonal_dominates(
    workdir: Path, models: Any, tmp_path: Path
) -> None:
    images, _ = models.toy_images(96, seed=99)
    np.save(tmp_path / "probe.npy", images)
    for seed in (0, 1):
        r = run_cli(
            "extract",
            "--model",
            f"{workdir / 'tiny_models.py'}:trained_cnn_seed{seed}",
            "--inputs",
            str(tmp_path / "probe.npy"),
            "--layers",
            "conv1",
            "--layers",
            "relu2",
            "--layers",
            "fc",
            "--batch-size",
            "32",
            "-q",
            "-o",
            str(tmp_path / f"seed{seed}.h5"),
        )
        assert r.exit_code == 0, r.output
    r = run_cli(
        "compare",
        str(tmp_path / "seed0.h5"),
        str(tmp_path / "seed1.h5"),
        "-m",
        "cka",
        "-q",
        "-o",
        str(tmp_path / "cka.h5"),
    )
    assert r.exit_code == 0, r.output
    cka = read_results(tmp_path / "cka.h5").metrics["cka"].value
    assert cka.shape == (3, 3)
    for i in range(3):  # each layer is most like the same layer of the other seed
        assert cka[i, i] > np.delete(cka[i], i).max(), cka
        assert cka[i, i] > np.delete(cka[:, i], i).max(), cka
    # and the stores' provenance says where they came from
    with open_store(tmp_path / "seed1.h5") as store:
        assert store.attrs["source"]["model"].endswith("tiny_models.py:trained_cnn_seed1")


def test_resume_of_a_finished_store_does_nothing_and_usage_errors(
    workdir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "done.h5"
    args = [
        "extract",
        "--model",
        f"{workdir / 'tiny_models.py'}:mlp",
        "--inputs",
        str(workdir / "vectors.npy"),
        "--layers",
        "fc2",
        "-o",
        str(out),
    ]
    assert run_cli(*args, "-q").exit_code == 0
    before = out.stat().st_mtime_ns
    r = run_cli(*args, "--resume")
    assert r.exit_code == 0
    assert r.stderr == f"{out} is already complete; nothing to do\n"
    assert out.stat().st_mtime_ns == before
    r = run_cli(*args[:-2])
    assert r.exit_code == 2
    assert "Missing option '-o' / '--out'" in r.output
    r = run_cli(*args[:-4], "-o", str(out))
    assert r.exit_code == 2
    assert "Missing option '--layers'" in r.output


@pytest.mark.parametrize("order", ["C", "F"])
def test_npy_rows_are_read_without_a_memory_map(tmp_path: Path, order: str) -> None:
    from repsim_cli.extract.inputs import NpyRows

    array = np.asarray(np.random.default_rng(0).standard_normal((7, 3, 2)), order=order)
    np.save(tmp_path / "a.npy", array)
    rows = NpyRows(tmp_path / "a.npy")
    assert rows.shape == (7, 3, 2)
    for start, stop in [(0, 7), (2, 5), (5, 9), (7, 7)]:
        assert np.array_equal(rows[start:stop], array[start:stop])


def test_gil_slices_are_short_while_extracting_and_restored_after(workdir: Path, tmp_path: Path) -> None:
    """While the writer thread runs beside the model, a thread waiting for the GIL gets it
    within 0.5 ms; the interpreter's own setting is back afterwards, also after an error."""
    import sys

    from repsim_cli.extract.run import GIL_SWITCH_INTERVAL

    before = sys.getswitchinterval()
    seen: list[float] = []
    extract_activations(
        f"{workdir / 'tiny_models.py'}:cnn",
        str(workdir / "images.npy"),
        tmp_path / "s.h5",
        ExtractOptions(layers=("conv1",), batch_size=4),
        progress=lambda *_: seen.append(sys.getswitchinterval()),
    )
    assert seen and set(seen) == {min(before, GIL_SWITCH_INTERVAL)}
    assert sys.getswitchinterval() == before

    def fail(*_: object) -> None:
        if len(seen) > 3:
            raise KeyboardInterrupt
        seen.append(sys.getswitchinterval())

    seen.clear()
    with pytest.raises(KeyboardInterrupt):
        extract_activations(
            f"{workdir / 'tiny_models.py'}:cnn",
            str(workdir / "images.npy"),
            tmp_path / "t.h5",
            ExtractOptions(layers=("conv1",), batch_size=1),
            progress=fail,
        )
    assert sys.getswitchinterval() == before
