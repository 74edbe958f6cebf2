"""Load the model to extract from: ``file.py:factory``, ``package.module:factory`` or TorchScript.

A factory is any callable taking no arguments and returning a ``torch.nn.Module`` (a function or
the module class itself). ``--weights`` then loads a state dict (``torch.load`` with
``weights_only=True``, or ``.safetensors``) into it. A ``.pt``/``.ts`` file without ``:factory`` is
a TorchScript archive read with ``torch.jit.load``.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import StoreError
from ._torch import ModelError, require_torch

TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".ts", ".jit")
# State dicts are often saved wrapped by training loops; these keys hold the real one.
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")


@dataclass
class LoadedModel:
    """A model ready for inference, with what is needed to record where it came from.

    ``scripted`` is True for TorchScript archives: they run, but accept no forward hooks, so
    only the model's own output can be extracted from them.
    """

    module: Any
    spec: str
    scripted: bool
    file_sha256: str | None
    weights: str | None
    weights_sha256: str | None

    def source(self) -> dict[str, Any]:
        """Provenance fields for the store's ``source`` attribute (file paths made absolute)."""
        target, factory = split_spec(self.spec)
        model = self.spec
        if self.file_sha256 is not None:
            model = str(Path(target).resolve()) + (f":{factory}" if factory else "")
        weights = str(Path(self.weights).resolve()) if self.weights else None
        return {
            "model": model, "model_sha256": self.file_sha256,
            "weights": weights, "weights_sha256": self.weights_sha256,
        }  # fmt: skip


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for piece in iter(lambda: fh.read(1 << 20), b""):
            digest.update(piece)
    return digest.hexdigest()


def split_spec(spec: str) -> tuple[str, str | None]:
    """Split ``target:factory`` at the last colon; a spec without a factory gives (spec, None)."""
    target, sep, factory = spec.rpartition(":")
    if not sep or not factory or not target or "/" in factory or "\\" in factory:
        return spec, None
    return target, factory


def _import_file(path: Path) -> Any:
    """Import a Python file as a new module; its folder goes on sys.path for its own imports."""
    if not path.exists():
        raise ModelError(f"{path}: model file not found")
    folder = str(path.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:10]
    name = f"repsim_model_{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ModelError(f"{path}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:
        sys.modules.pop(name, None)
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise ModelError(
            f"{path}: the model file failed to import: {type(exc).__name__}: {exc}"
        ) from exc
    return module


def _import_package(target: str) -> Any:
    try:
        return importlib.import_module(target)
    except Exception as exc:
        raise ModelError(
            f"{target}: the model module failed to import: {type(exc).__name__}: {exc}"
        ) from exc


def _call_factory(module: Any, where: str, factory: str) -> Any:
    torch = require_torch()
    fn = getattr(module, factory, None)
    if fn is None or not callable(fn):
        available = sorted(
            k for k, v in vars(module).items() if callable(v) and not k.startswith("_")
            and getattr(v, "__module__", None) == module.__name__
        )  # fmt: skip
        raise ModelError(
            f"{where}: no callable {factory!r}; callables defined there: "
            f"{', '.join(available) or '(none)'}"
        )
    try:
        model = fn()
    except Exception as exc:
        raise ModelError(f"{where}:{factory}() failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, torch.nn.Module):
        raise ModelError(
            f"{where}:{factory}() returned {type(model).__name__}, not a torch.nn.Module"
        )
    return model


def _load_torchscript(path: Path) -> Any:
    torch = require_torch()
    if not path.exists():
        raise ModelError(f"{path}: model file not found")
    try:
        with warnings.catch_warnings():
            # torch >= 2.10 deprecates TorchScript but still loads it; the user chose this format
            warnings.filterwarnings("ignore", message=r".*torch\.jit", category=DeprecationWarning)
            return torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise ModelError(
            f"{path}: not a TorchScript archive ({type(exc).__name__}); for a state dict use "
            f"--model file.py:factory --weights {path.name}"
        ) from exc


def read_state_dict(path: Path) -> dict[str, Any]:
    """A state dict from ``.safetensors`` or a torch checkpoint (plain or wrapped in a dict)."""
    torch = require_torch()
    if not path.exists():
        raise StoreError(f"{path}: weights file not found")
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            return dict(load_file(str(path)))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelError(f"{path}: cannot read weights ({type(exc).__name__}: {exc})") from exc
    if isinstance(state, dict):
        for key in WRAPPER_KEYS:
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path}: expected a state dict (parameter name -> tensor)")
    return state


def _apply_weights(model: Any, path: Path) -> None:
    state = read_state_dict(path)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise ModelError(
            f"{path}: weights do not fit the model: {' '.join(line.strip() for line in first[:3])}"
        ) from exc


def load_model(spec: str, weights: str | Path | None = None, device: str = "cpu") -> LoadedModel:
    """Load a model for inference (``eval()`` mode, on ``device``).

    Parameters
    ----------
    spec : str
        ``path/to/file.py:factory``, ``package.module:factory``, or a TorchScript file
        (``.pt``, ``.pth``, ``.ts``, ``.jit``).
    weights : path, optional
        A state dict to load (strict): a torch checkpoint, possibly wrapped under
        ``state_dict``/``model_state_dict``/``model``, or a ``.safetensors`` file.
    device : str
        ``"cpu"`` or ``"cuda"``.

    Returns
    -------
    LoadedModel
        The module and its provenance (spec, SHA-256 of the model file and of the weights).

    Raises
    ------
    ModelError
        The spec is malformed, the file fails to import (the message names it), the factory
        is missing, fails or returns no ``nn.Module``, or the weights do not fit.
    """
    torch = require_torch()
    target, factory = split_spec(spec)
    path = Path(target)
    scripted = False
    sha: str | None = None
    if factory is None:
        if path.suffix.lower() not in TORCHSCRIPT_SUFFIXES:
            raise ModelError(
                f"{spec}: expected file.py:factory, package.module:factory or a TorchScript "
                f"file ({', '.join(TORCHSCRIPT_SUFFIXES)})"
            )
        model = _load_torchscript(path)
        scripted, sha = True, file_sha256(path)
    elif path.suffix.lower() == ".py" or path.exists():
        module = _import_file(path)
        model = _call_factory(module, str(path), factory)
        sha = file_sha256(path)
    else:
        model = _call_factory(_import_package(target), target, factory)
    weights_sha = None
    if weights is not None:
        _apply_weights(model, Path(weights))
        weights_sha = file_sha256(Path(weights))
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError("--device cuda: no CUDA device is available to PyTorch")
    model = model.to(device).eval()
    return LoadedModel(model, spec, scripted, sha, str(weights) if weights else None, weights_sha)
