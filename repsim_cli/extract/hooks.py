"""Which modules to record (glob patterns over qualified names) and forward hooks that record them.

Layer names are the qualified names of ``model.named_modules()`` (``layer1.0.conv2``), kept in that
(registration) order or, with ``order="forward"``, in the order their forward passes finish on the
first batch; plus the pseudo-layer ``output``: the model's own return value, which is the only
layer a TorchScript archive offers (scripted modules accept no forward hooks).

Patterns are globs over the dotted names in which ``*`` and ``?`` stay within one component
(``blocks.*.mlp`` matches ``blocks.3.mlp`` but not ``blocks.3.mlp.fc1``) and ``**`` crosses dots
(``encoder.**.dense``), as path globs do for ``/``.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .._warnings import RepsimWarning
from ..errors import DataError, LayerNotFoundError, ShapeMismatchError
from ..globs import close_names, glob_matches
from ._torch import ModelError
from .reductions import describe_output, reduce_output

OUTPUT_LAYER = "output"
ORDERS = ("registration", "forward")


def layer_names(model: Any) -> list[str]:
    """Every recordable name in model order: qualified module names, then ``output``.

    ``output`` (the model's return value) is left out when a module already has that name.
    """
    names = [name for name, _ in model.named_modules() if name]
    return [*names, OUTPUT_LAYER] if OUTPUT_LAYER not in names else names


def _split_globs(patterns: Sequence[str]) -> list[str]:
    return [g.strip() for p in patterns for g in p.split(",") if g.strip()]


def _check_globs(globs: Sequence[str], names: Sequence[str], label: str, option: str) -> None:
    for glob in globs:
        if not any(glob_matches(glob, name) for name in names):
            close = close_names(glob, names)
            hint = (
                f"close names: {', '.join(close)}"
                if close
                else f"modules: {', '.join(names[:8])}{', ...' if len(names) > 8 else ''}"
            )
            what = "no module matches" if option == "--layers" else f"{option}: no module matches"
            raise LayerNotFoundError(f"{label}: {what} {glob!r}; {hint} (see --list-layers)")


def match_layers(
    names: Sequence[str], patterns: Sequence[str], label: str, exclude: Sequence[str] = ()
) -> list[str]:
    """The names matching any glob of ``patterns`` and none of ``exclude`` (comma-separated globs
    allowed; see :func:`glob_regex`), in model order.

    Raises
    ------
    LayerNotFoundError
        A glob (of either list) matches nothing, or nothing is left after the exclusions; the
        message lists close names (or the first names) of the model.
    """
    globs, excluded = _split_globs(patterns), _split_globs(exclude)
    if not globs:
        raise LayerNotFoundError(f"{label}: no --layers pattern given (see --list-layers)")
    _check_globs(globs, names, label, "--layers")
    _check_globs(excluded, names, label, "--exclude")
    chosen = [name for name in names if any(glob_matches(g, name) for g in globs)
              and not any(glob_matches(g, name) for g in excluded)]  # fmt: skip
    if not chosen:
        raise LayerNotFoundError(f"{label}: --exclude leaves none of the layers --layers matched")
    return chosen


def _run_model(model: Any, x: Any, mask: Any) -> Any:
    return model(x) if mask is None else model(x, attention_mask=mask)


def batch_axis_problem(tensor: Any, batch: int) -> str | None:
    """Why an output cannot be stored as one row per sample of a batch of ``batch``, or None."""
    shape = tuple(int(s) for s in tensor.shape)
    if len(shape) == 0:
        return "its output is a scalar, not one row per sample"
    if shape[0] != batch:
        return (
            f"its output of shape {shape} has no batch axis (axis 0 has {shape[0]}, the batch "
            f"{batch} samples): it is the same for every sample (a position embedding, a "
            "buffer), so there is no row per sample to store"
        )
    return None


def probe_layers(
    model: Any, x: Any, mask: Any, names: Sequence[str], *, output_index: int = 0,
    order: str = "registration", strict: bool = False, label: str = "model",
) -> list[str]:  # fmt: skip
    """Run one batch with a hook on each chosen module; keep those that can be stored.

    A module that never runs in the forward pass (a container such as a ModuleList), that runs
    more than once (a shared module: no single output per sample), or whose output has no batch
    axis (a position embedding) is skipped with a :class:`RepsimWarning` naming it and why; with
    ``strict`` it stops the run instead. ``order="forward"``: the kept names in the order their
    modules finished on this batch (``output`` last), instead of registration order.

    Raises
    ------
    DataError
        With ``strict``, a chosen module that cannot be stored; or none of them can be.
    """
    if order not in ORDERS:
        raise DataError(f"unknown --order {order!r}; use {' or '.join(ORDERS)}")
    modules = dict(model.named_modules())
    hooked = [n for n in names if n in modules and n != ""]
    calls: Counter[str] = Counter()
    finished: list[str] = []
    outputs: dict[str, Any] = {}

    def hook_for(name: str) -> Any:
        def hook(module: Any, args: Any, output: Any) -> None:
            calls[name] += 1
            if calls[name] == 1:
                finished.append(name)
                outputs[name] = output

        return hook

    handles = [modules[n].register_forward_hook(hook_for(n)) for n in hooked]
    try:
        output = _run_model(model, x, mask)
    finally:
        for handle in handles:
            handle.remove()
    if OUTPUT_LAYER in names and OUTPUT_LAYER not in modules:
        calls[OUTPUT_LAYER] = 1
        finished.append(OUTPUT_LAYER)
        outputs[OUTPUT_LAYER] = output
    batch = int(x.shape[0])
    problems: dict[str, str] = {}
    for name in names:
        if calls[name] == 0:
            problems[name] = "it did not run in the forward pass (a container such as a ModuleList?)"
        elif calls[name] > 1:
            problems[name] = (f"it ran {calls[name]} times in one forward pass (a shared module), "
                              "so it has no single output per sample")  # fmt: skip
        else:
            try:
                tensor, _ = describe_output(outputs[name], output_index)
            except DataError as exc:
                problems[name] = f"its {exc}"
                continue
            why = batch_axis_problem(tensor, batch)
            if why is not None:
                problems[name] = why
    if problems and (strict or len(problems) == len(names)):
        detail = "; ".join(f"layer {n!r}: {why}" for n, why in problems.items())
        advice = "leave it out of --layers (or --exclude it)" if len(problems) == 1 else \
            "leave them out of --layers (or --exclude them)"
        raise DataError(f"{label}: {detail}: {advice}; see --list-layers")
    for name, why in problems.items():
        warnings.warn(f"{label}: layer {name!r} skipped: {why} (--strict stops instead)",
                      RepsimWarning, stacklevel=2)  # fmt: skip
    kept = [n for n in names if n not in problems]
    if order == "forward":
        rank = {n: i for i, n in enumerate(finished)}
        kept.sort(key=lambda n: rank[n])
    return kept


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
        self._batch: int | None = None
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
            why = None if self._batch is None else batch_axis_problem(tensor, self._batch)
            if why is not None:
                raise ShapeMismatchError(f"cannot be stored: {why}")
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
        self._batch = int(x.shape[0]) if hasattr(x, "shape") and len(x.shape) else None
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
