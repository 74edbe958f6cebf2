"""Which modules to record (glob patterns over qualified names) and forward hooks that record them.

Layer names are the qualified names of ``model.named_modules()`` (``layer1.0.conv2``), kept in that
(registration) order, plus the pseudo-layer ``output``: the model's own return value, which is the
only layer a TorchScript archive offers (scripted modules accept no forward hooks).
"""

from __future__ import annotations

import difflib
import fnmatch
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import DataError, LayerNotFoundError, ShapeMismatchError
from ._torch import ModelError
from .reductions import describe_output, reduce_output

OUTPUT_LAYER = "output"


def layer_names(model: Any) -> list[str]:
    """Every recordable name in model order: qualified module names, then ``output``.

    ``output`` (the model's return value) is left out when a module already has that name.
    """
    names = [name for name, _ in model.named_modules() if name]
    return [*names, OUTPUT_LAYER] if OUTPUT_LAYER not in names else names


def close_names(pattern: str, names: Sequence[str], limit: int = 6) -> list[str]:
    """Names resembling ``pattern``: case-insensitive glob matches, then difflib's closest."""
    folded = [n for n in names if fnmatch.fnmatch(n.lower(), pattern.lower())]
    literal = pattern.replace("*", "").replace("?", "")
    similar = difflib.get_close_matches(literal, names, n=limit, cutoff=0.5)
    ordered = list(dict.fromkeys([*folded, *similar]))
    return ordered[:limit]


def match_layers(names: Sequence[str], patterns: Sequence[str], label: str) -> list[str]:
    """The names matching any glob of ``patterns`` (comma-separated globs allowed), in model order.

    Raises
    ------
    LayerNotFoundError
        A glob matches nothing; the message lists close names (or the first names) of the model.
    """
    globs = [g.strip() for p in patterns for g in p.split(",") if g.strip()]
    if not globs:
        raise LayerNotFoundError(f"{label}: no --layers pattern given (see --list-layers)")
    for glob in globs:
        if not any(fnmatch.fnmatchcase(name, glob) for name in names):
            close = close_names(glob, names)
            hint = (
                f"close names: {', '.join(close)}"
                if close
                else f"modules: {', '.join(names[:8])}{', ...' if len(names) > 8 else ''}"
            )
            raise LayerNotFoundError(
                f"{label}: no module matches {glob!r}; {hint} (see --list-layers)"
            )
    return [name for name in names if any(fnmatch.fnmatchcase(name, g) for g in globs)]


def _run_model(model: Any, x: Any, mask: Any) -> Any:
    return model(x) if mask is None else model(x, attention_mask=mask)


@dataclass(frozen=True)
class LayerListing:
    """One line of ``--list-layers``: name, module type, output shape of one batch, a note."""

    name: str
    module_type: str
    shape: tuple[int, ...] | None
    note: str


class LayerCapture:
    """Forward hooks that keep the reduced output of the chosen layers for one batch.

    Use as a context manager (hooks are removed on exit) and call :meth:`run` per batch.
    Each recorded module must run exactly once per forward pass: a module that runs twice
    (shared weights) has no single output to store and raises :class:`DataError`.

    Parameters
    ----------
    model : torch.nn.Module
        In eval mode; TorchScript allowed when only ``output`` is recorded.
    names : list of str
        Layer names from :func:`layer_names` (model order).
    reduction : str
        See :func:`repsim_cli.extract.reductions.reduce_output`.
    output_index : int
        Element of tuple/list outputs to record.
    """

    def __init__(
        self,
        model: Any,
        names: Sequence[str],
        reduction: str,
        output_index: int = 0,
        scripted: bool = False,
        label: str = "model",
    ) -> None:
        self.model = model
        self.names = list(names)
        self.reduction = reduction
        self.output_index = output_index
        self.label = label
        inner = [n for n in self.names if n != OUTPUT_LAYER or n in self._modules()]
        if scripted and inner:
            raise ModelError(
                f"{label}: TorchScript modules accept no forward hooks, so only the model's "
                f"'{OUTPUT_LAYER}' can be extracted (asked for: {', '.join(inner[:5])}); load the "
                "model from its Python source (file.py:factory --weights) to record inner layers"
            )
        self._inner = inner
        self._handles: list[Any] = []
        self._mask: Any = None
        self.rows: dict[str, Any] = {}
        # Where recorded rows go: None keeps a private copy of each in ``rows``; a callable
        # ``sink(name, rows)`` is handed each layer's rows inside its hook and must copy them
        # before returning (a later in-place module may overwrite the output).
        self.sink: Callable[[str, Any], None] | None = None
        self.applied: dict[str, tuple[str, bool, str, str]] = {}
        self._calls: Counter[str] = Counter()

    def _modules(self) -> dict[str, Any]:
        return dict(self.model.named_modules())

    def __enter__(self) -> LayerCapture:
        modules = self._modules()
        for name in self._inner:
            self._handles.append(modules[name].register_forward_hook(self._hook(name)))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _record(self, name: str, output: Any, module_type: str) -> None:
        import torch

        try:
            tensor, note = describe_output(output, self.output_index)
            rows, applied, used_mask = reduce_output(tensor, self.reduction, self._mask)
        except (DataError, ShapeMismatchError) as exc:
            raise type(exc)(f"{self.label}: layer {name!r}: {exc}") from None
        self.applied[name] = (applied, used_mask, note, module_type)
        if self.sink is not None:
            self.sink(name, rows.detach())
            self.rows[name] = None
            return
        if rows.untyped_storage().data_ptr() == tensor.untyped_storage().data_ptr():
            # The output itself or a view of it: a later in-place module (ReLU(inplace=True))
            # would overwrite what was recorded.
            rows = rows.clone(memory_format=torch.contiguous_format)
        self.rows[name] = rows.detach()

    def _hook(self, name: str) -> Any:
        def hook(module: Any, args: Any, output: Any) -> None:
            self._calls[name] += 1
            if self._calls[name] == 1:
                self._record(name, output, type(module).__name__)

        return hook

    def run(self, x: Any, mask: Any = None) -> dict[str, Any]:
        """One forward pass; return ``{name: (N, *feature_shape) tensor}`` in model order."""
        self.rows, self._calls = {}, Counter()
        self._mask = mask
        output = _run_model(self.model, x, mask)
        if OUTPUT_LAYER in self.names and OUTPUT_LAYER not in self._inner:
            self._calls[OUTPUT_LAYER] += 1
            self._record(OUTPUT_LAYER, output, type(self.model).__name__)
        for name in self.names:
            calls = self._calls[name]
            if calls != 1:
                why = (
                    "did not run in the forward pass (a container such as a ModuleList?)"
                    if calls == 0
                    else f"ran {calls} times in one forward pass (shared module)"
                )
                raise DataError(
                    f"{self.label}: layer {name!r} {why}; it has no single output per sample "
                    "to store: leave it out of --layers (see --list-layers)"
                )
        return {name: self.rows[name] for name in self.names}


def list_layer_outputs(
    model: Any, x: Any, mask: Any = None, output_index: int = 0, scripted: bool = False
) -> list[LayerListing]:
    """Run one batch with a hook on every module; report each module's output shape.

    Returns
    -------
    list of LayerListing
        In model order, ``output`` last. ``shape`` is None for modules that did not run, that
        return no tensor, or (TorchScript) that cannot be hooked.
    """
    modules = dict(model.named_modules())
    seen: dict[str, list[Any]] = {name: [] for name in modules if name}
    handles = []
    if not scripted:
        for name, outputs in seen.items():
            handles.append(modules[name].register_forward_hook(_appender(outputs)))
    try:
        output = _run_model(model, x, mask)
    finally:
        for handle in handles:
            handle.remove()
    listing = []
    for name in layer_names(model):
        if name == OUTPUT_LAYER and name not in modules:
            listing.append(_listing(name, type(model).__name__, [output], output_index, False))
        else:
            listing.append(
                _listing(name, type(modules[name]).__name__, seen[name], output_index, scripted)
            )
    return listing


def _appender(outputs: list[Any]) -> Any:
    def hook(module: Any, args: Any, output: Any) -> None:
        outputs.append(output)

    return hook


def _listing(
    name: str, module_type: str, outputs: list[Any], index: int, scripted: bool
) -> LayerListing:
    if scripted:
        return LayerListing(name, module_type, None, "TorchScript: no hooks")
    if not outputs:
        return LayerListing(name, module_type, None, "did not run")
    try:
        tensor, note = describe_output(outputs[0], index)
    except DataError as exc:
        return LayerListing(name, module_type, None, str(exc))
    if len(outputs) > 1:
        note = f"{note} ran {len(outputs)} times".strip()
    return LayerListing(name, module_type, tuple(int(s) for s in tensor.shape), note)
