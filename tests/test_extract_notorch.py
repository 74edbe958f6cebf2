"""torch is optional: every other command works without it, and ``repsim extract`` says how to
install it. torch is hidden by an import hook that refuses to find it."""

from __future__ import annotations

import importlib.abc
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from repsim_cli.cli import cli

INSTALL_LINE = (
    "Error: repsim extract needs PyTorch, which is not installed: "
    "pip install torch==2.13.0 'repsim-cli[torch]'\n"
)

HIDE_TORCH = """
import importlib.abc, sys

class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None

sys.meta_path.insert(0, NoTorch())
"""


class _NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r}")


def test_extract_without_torch_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_NoTorch(), *sys.meta_path])
    np.save(tmp_path / "x.npy", np.zeros((4, 3)))
    r = CliRunner().invoke(
        cli,
        [
            "extract",
            "--model",
            "nets.py:net",
            "--inputs",
            str(tmp_path / "x.npy"),
            "--layers",
            "fc",
            "-o",
            str(tmp_path / "out.h5"),
        ],
    )
    assert r.exit_code == 1
    assert r.output == INSTALL_LINE
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy"]
    help_text = CliRunner().invoke(cli, ["extract", "--help"])
    assert help_text.exit_code == 0
    assert "Examples:" in help_text.output
    help_text = CliRunner().invoke(cli, ["--help"])
    assert help_text.exit_code == 0
    assert "extract" in help_text.output


def test_the_cli_works_and_imports_no_torch_without_it(tmp_path: Path) -> None:
    """With torch unimportable the CLI loads every command; extract fails with the install line."""
    code = HIDE_TORCH + (
        "import repsim_cli.cli, repsim_cli.extract.run, repsim_cli.cli.extract\n"
        "from repsim_cli.cli import main\n"
        "main(['extract', '--model', 'm.py:f', '--inputs', 'x.npy', '--layers', 'a',\n"
        "      '-o', 'o.h5'])\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert r.returncode == 1, r.stderr
    assert r.stderr == INSTALL_LINE
    check = "import sys, repsim_cli.cli, repsim_cli.extract.run; print('torch' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=False)
    assert r.stdout.strip() == "False", r.stderr
