"""Lazy access to PyTorch, and the errors of the extract package.

torch is an optional dependency: nothing outside :mod:`repsim_cli.extract` imports it, and modules
inside import it only within functions, through :func:`require_torch`, so ``repsim --help`` and
every other command work without it.
"""

from __future__ import annotations

from typing import Any

from ..errors import RepsimError

INSTALL_HINT = "pip install torch==2.13.0 'repsim-cli[torch]'"


class TorchMissingError(RepsimError, ImportError):
    """``repsim extract`` was asked for but PyTorch is not installed."""


class ModelError(RepsimError, ValueError):
    """A model cannot be loaded: bad spec, a file failing to import, a bad factory or weights."""


def require_torch() -> Any:
    """Return the ``torch`` module, or raise :class:`TorchMissingError` saying how to install it."""
    try:
        import torch
    except ImportError:
        raise TorchMissingError(
            f"repsim extract needs PyTorch, which is not installed: {INSTALL_HINT}"
        ) from None
    return torch
