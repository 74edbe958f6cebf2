"""From a module's output to the rows stored for it: pick the tensor, then reduce it per sample.

Outputs: a tensor is used as is; a tuple/list gives its element ``output_index`` (default 0); a
dict or a Hugging Face ``ModelOutput`` gives ``last_hidden_state`` (or its only tensor).

Reductions, by the rank of the picked tensor (N = samples of the batch):

========================  =============================================================
(N,) or (N, D)            stored as is (recorded as ``none``) whatever ``--reduce`` says
(N, T, D) token sequence  ``flatten``: (T, D); ``mean``/``max`` over tokens; ``cls``: token 0;
                          ``last``: the last token. With an attention mask (N, T), ``mean``,
                          ``max`` and ``last`` use only the unmasked tokens; without one they
                          use every token. ``masked-mean`` is ``mean`` that requires the mask:
                          an error, never a silent mean over padding, when there is none.
(N, C, *spatial) maps     ``flatten``: (C, *spatial); ``mean``/``max`` over the spatial axes
                          (``masked-mean``: as ``mean``; a mask has no meaning here)
========================  =============================================================

Every reduction runs in the output's own dtype with plain torch operations, so the stored rows
equal what a hand-written forward hook doing the same reduction captures, bit for bit.
"""

from __future__ import annotations

from typing import Any

from ..errors import DataError, ShapeMismatchError

REDUCTIONS = ("flatten", "mean", "masked-mean", "max", "cls", "last")
HIDDEN_STATE_KEY = "last_hidden_state"


def describe_output(output: Any, output_index: int = 0) -> tuple[Any, str]:
    """Pick the tensor of a module output; return it with a note on where it came from.

    Parameters
    ----------
    output : Tensor, tuple, list, dict or object with ``last_hidden_state``
        What a module's ``forward`` returned.
    output_index : int
        Element to take from a tuple/list output.

    Returns
    -------
    (Tensor, str)
        The tensor (N, ...) and a note: ``""`` for a plain tensor, ``"[i]"`` for a sequence
        element, ``".last_hidden_state"`` or ``"[key]"`` for a mapping/object field.

    Raises
    ------
    DataError
        No tensor can be picked (the message names the output's type).
    """
    import torch

    if isinstance(output, torch.Tensor):
        return output, ""
    if isinstance(output, (tuple, list)):
        if not -len(output) <= output_index < len(output):
            raise DataError(
                f"output is a {type(output).__name__} of {len(output)} elements; "
                f"--output-index {output_index} is out of range"
            )
        inner, note = describe_output(output[output_index], 0)
        return inner, f"[{output_index}]{note}"
    if isinstance(output, dict):
        if HIDDEN_STATE_KEY in output:
            return output[HIDDEN_STATE_KEY], f".{HIDDEN_STATE_KEY}"
        tensors = [k for k, v in output.items() if isinstance(v, torch.Tensor)]
        if len(tensors) == 1:
            return output[tensors[0]], f"[{tensors[0]!r}]"
        raise DataError(
            f"output is a dict without {HIDDEN_STATE_KEY!r} and with {len(tensors)} tensors "
            f"({', '.join(map(str, tensors))})"
        )
    hidden = getattr(output, HIDDEN_STATE_KEY, None)
    if isinstance(hidden, torch.Tensor):
        return hidden, f".{HIDDEN_STATE_KEY}"
    raise DataError(f"output of type {type(output).__name__} holds no tensor to store")


def _float(t: Any) -> Any:
    import torch

    if t.is_floating_point() and t.dtype != torch.bfloat16:
        return t
    return t.float()


def _token_mask(t: Any, mask: Any) -> Any | None:
    """The attention mask as a bool (N, T) tensor when it fits this (N, T, D) output, else None."""
    if mask is None or tuple(mask.shape) != tuple(t.shape[:2]):
        return None
    keep = mask.to(device=t.device) != 0
    if not bool(keep.any(dim=1).all()):
        raise DataError("a sample's attention_mask masks every token")
    return keep


def _reduce_tokens(t: Any, mode: str, mask: Any) -> tuple[Any, str, bool]:
    import torch

    if mode in {"flatten", "cls"}:
        return (t if mode == "flatten" else t[:, 0]), mode, False
    keep = _token_mask(t, mask)
    if keep is None and mode == "masked-mean":
        if mask is None:
            raise DataError(
                "--reduce masked-mean needs an attention mask, and the inputs have none (an "
                "'attention_mask' array beside them); use --reduce mean to average every token"
            )
        raise ShapeMismatchError(
            f"--reduce masked-mean: the attention mask's shape {tuple(mask.shape)} does not fit "
            f"this token sequence (N, T, D) = {tuple(t.shape)}; use --reduce mean to average "
            "every token"
        )
    if mode == "masked-mean":
        mode = "mean"
    if keep is None:
        reduced = {"mean": lambda: t.mean(dim=1), "max": lambda: t.amax(dim=1),
                   "last": lambda: t[:, -1]}[mode]()  # fmt: skip
        return reduced, mode, False
    if mode == "mean":
        weights = keep.to(t.dtype).unsqueeze(-1)
        return (t * weights).sum(dim=1) / weights.sum(dim=1), mode, True
    if mode == "max":
        return t.masked_fill(~keep.unsqueeze(-1), float("-inf")).amax(dim=1), mode, True
    positions = torch.arange(t.shape[1], device=t.device)
    last = torch.where(keep, positions, torch.zeros_like(positions)).amax(dim=1)
    return t[torch.arange(t.shape[0], device=t.device), last], mode, True


def reduce_output(t: Any, mode: str, mask: Any = None) -> tuple[Any, str, bool]:
    """Reduce one batch of a layer's output to the rows stored for it.

    Parameters
    ----------
    t : Tensor
        (N, ...) output of one batch; non-float outputs are converted to float32, bfloat16 too.
    mode : {"flatten", "mean", "masked-mean", "max", "cls", "last"}
        See the module docstring for what each does at each rank.
    mask : Tensor, optional
        (N, T) attention mask (nonzero = keep); used for (N, T, D) outputs with the same N, T.

    Returns
    -------
    (Tensor, str, bool)
        The (N, *feature_shape) rows, the reduction applied (``none`` for outputs of rank <= 2),
        and whether the attention mask was used.

    Raises
    ------
    ShapeMismatchError
        ``cls``/``last`` asked of a feature map (N, C, H, ...), or an output of rank 0.
    DataError
        A sample's attention mask is all zero; ``masked-mean`` of tokens without a mask.

    References
    ----------
    Mean pooling over unmasked tokens follows Reimers & Gurevych (2019), Sentence-BERT;
    ``cls`` pooling follows Devlin et al. (2019), BERT.
    """
    if mode not in REDUCTIONS:
        raise ValueError(f"unknown reduction {mode!r}; use one of {', '.join(REDUCTIONS)}")
    t = _float(t)
    if t.dim() == 0:
        raise ShapeMismatchError("output is a scalar, not one row per sample")
    if t.dim() == 1:
        return t.unsqueeze(1), "none", False
    if t.dim() == 2:
        return t, "none", False
    if t.dim() == 3:
        return _reduce_tokens(t, mode, mask)
    if mode in {"cls", "last"}:
        raise ShapeMismatchError(
            f"output of shape (N, {', '.join(map(str, t.shape[1:]))}) is a feature map; "
            f"--reduce {mode} applies to token sequences (N, T, D): use flatten, mean or max"
        )
    if mode == "flatten":
        return t, "flatten", False
    spatial = tuple(range(2, t.dim()))
    if mode == "masked-mean":
        mode = "mean"
    return (t.mean(dim=spatial) if mode == "mean" else t.amax(dim=spatial)), mode, False
