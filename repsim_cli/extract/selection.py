"""Before an extraction runs: which layers it records, and what ``--resume`` may not replace."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import RepsimError, StoreError
from ..store import open_store
from ._torch import require_torch
from .hooks import layer_names, match_layers, probe_layers

if TYPE_CHECKING:
    from .inputs import InputSource
    from .models import LoadedModel
    from .run import ExtractOptions


def choose_layers(
    model: LoadedModel, inputs: InputSource, opts: ExtractOptions,
    to_torch: Callable[[Any, Any, str], Any], float_dtype: Any,
) -> list[str]:  # fmt: skip
    """The layers matching ``opts.layers`` and not ``opts.exclude`` that one probe batch (the
    first) shows can be stored, in ``opts.order`` (see
    :func:`~repsim_cli.extract.hooks.probe_layers`). ``to_torch(array, float_dtype, device)``
    makes the batch's tensors as the run does."""
    torch = require_torch()
    names = match_layers(layer_names(model.module), opts.layers, model.spec, opts.exclude)
    if model.scripted:
        return names
    with torch.inference_mode():
        x, mask = inputs.batch(0, min(opts.batch_size, inputs.n))
        return probe_layers(
            model.module, to_torch(x, float_dtype, opts.device),
            to_torch(mask, float_dtype, opts.device), names, output_index=opts.output_index,
            order=opts.order, strict=opts.strict, label=model.spec,
        )  # fmt: skip


def refuse_to_overwrite(final: Path, source: dict[str, Any]) -> None:
    """Raise :class:`StoreError`: ``--resume`` found ``final`` finished, but not made with these
    settings (``source``); it must not be silently replaced. The message names what differs."""
    try:
        with open_store(final) as store:
            written = store.attrs.get("source") or {}
    except (RepsimError, OSError):
        written = {}
    differing = sorted(k for k in set(written) | set(source) if written.get(k) != source.get(k))
    raise StoreError(
        f"{final}: already exists and was not made by this command"
        + (f" ({', '.join(differing)} differ)" if written else "")
        + "; --resume never replaces a finished store: run without --resume to replace it, "
        "or write to another file"
    )
