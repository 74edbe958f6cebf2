"""``repsim extract``: stream a PyTorch model's layer outputs into an activation store."""

from __future__ import annotations

from typing import Any

import click

from .._progress import StderrProgress
from ..extract.reductions import REDUCTIONS
from ._guard import guarded_output
from ._options import plural, quiet_option
from ._resume import offer_resume, withdraw_resume


def _samples_per_second_column() -> Any:
    """A rich progress column showing the task's speed in samples/s (rich tracks it)."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    class SamplesPerSecond(ProgressColumn):
        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            return Text("? samples/s" if speed is None else f"{speed:,.0f} samples/s")

    return SamplesPerSecond()


class _ExtractProgress(StderrProgress):
    """The shared stderr progress bar, with a samples/s column."""

    def __enter__(self) -> _ExtractProgress:
        super().__enter__()
        if self._progress is not None:
            columns = list(self._progress.columns)
            self._progress.columns = (*columns[:-1], _samples_per_second_column(), columns[-1])
        return self


@click.command("extract")
@click.option("--model", "model_spec", required=True, metavar="SPEC",
              help="file.py:factory, package.module:factory (returns an nn.Module), "
                   "or a TorchScript file (.pt/.ts).")  # fmt: skip
@click.option(
    "--inputs",
    "inputs_spec",
    required=True,
    metavar="FILE",
    help="Inputs, samples on axis 0: .npy, .npz[:KEY], file.h5:/path or file.zarr:/path.",
)
@click.option(
    "-o",
    "--out",
    default=None,
    metavar="STORE",
    help="The store to write: .h5/.hdf5 (HDF5) or .zarr (Zarr v3).",
)
@click.option("--layers", "layers", multiple=True, metavar="PATTERN",
              help="Module names to record, globs allowed: '*' within one dotted part "
                   "('blocks.*.mlp'), '**' across parts ('encoder.**.dense'); repeatable. "
                   "'output' is the model's own output.")  # fmt: skip
@click.option("--exclude", "exclude", multiple=True, metavar="PATTERN",
              help="Leave out the modules matching this glob (as --layers); repeatable.")
@click.option("--order", type=click.Choice(["registration", "forward"]), default="registration",
              show_default=True,
              help="Layer order in the store: as the model registers its modules, or as their "
                   "forward passes finish on the first batch.")  # fmt: skip
@click.option("--strict", is_flag=True,
              help="Stop on a chosen module that runs twice, never runs or has no batch axis "
                   "(default: skip it with a warning).")  # fmt: skip
@click.option(
    "--weights",
    metavar="CKPT",
    default=None,
    help="A state dict to load into the model (torch checkpoint or .safetensors).",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option(
    "--reduce",
    "reduction",
    type=click.Choice(REDUCTIONS),
    default="flatten",
    show_default=True,
    help="Conv maps (N,C,H,W): flatten|mean|max over space. Token sequences (N,T,D): "
    "flatten|mean|max|cls|last (mean, max and last respect an attention_mask when the inputs "
    "have one); masked-mean: mean over unmasked tokens, an error without a mask.",
)
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option(
    "--dtype",
    type=click.Choice(["float32", "float16"]),
    default="float32",
    show_default=True,
    help="Dtype of the stored activations.",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Only the first N samples.",
)
@click.option("--ids", "ids_path", default=None, metavar="FILE",
              help="Sample ids (text, one per line, or .npy); default: an 'ids' array beside the "
                   "inputs, else 0..n-1.")  # fmt: skip
@click.option(
    "--inputs-key",
    default=None,
    metavar="KEY",
    help="The array of an .npz/HDF5/Zarr inputs file (default: its only one).",
)
@click.option(
    "--output-index",
    type=int,
    default=0,
    show_default=True,
    help="Element recorded from modules that return a tuple or list.",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue an interrupted run with the same settings from its last complete batch.",
)
@click.option(
    "--force",
    is_flag=True,
    help="With --resume: extract again, with a warning, a store of other settings or inputs.",
)
@click.option(
    "--list-layers",
    is_flag=True,
    help="Print every module name with its output shape on one batch, and exit.",
)
@quiet_option
def command(
    model_spec: str,
    inputs_spec: str,
    out: str | None,
    layers: tuple[str, ...],
    exclude: tuple[str, ...],
    order: str,
    strict: bool,
    weights: str | None,
    batch_size: int,
    reduction: str,
    device: str,
    dtype: str,
    limit: int | None,
    ids_path: str | None,
    inputs_key: str | None,
    output_index: int,
    resume: bool,
    force: bool,
    list_layers: bool,
    quiet: bool,
) -> None:
    """Run a PyTorch model over inputs and stream chosen layers' outputs into a store.

    The model runs in eval mode under torch.inference_mode(), batch by batch; each batch is
    written as it is produced, so memory does not grow with the number of samples. The store
    is written under a hidden name (.NAME.partial.h5) and renamed when complete; after an
    interruption, --resume continues from the last complete batch.

    \b
    Examples:
      repsim extract --model nets.py:small_cnn --inputs images.npy --list-layers
      repsim extract --model nets.py:small_cnn --weights seed0.pt --inputs images.npy \\
          --layers 'conv*' --layers fc --reduce mean -o seed0.h5
      repsim extract --model bert.py:encoder --inputs tokens.h5:/input_ids \\
          --layers 'encoder.layer.*.output' --reduce masked-mean -o bert.zarr --resume
    """
    from ..extract import _torch

    _torch.require_torch()
    from ..extract.run import ExtractOptions, extract_activations, input_paths, layer_table
    from ..extract.run import list_layers as list_model_layers

    options = ExtractOptions(
        layers=layers, batch_size=batch_size, reduction=reduction, dtype=dtype, device=device,
        output_index=output_index, limit=limit, inputs_key=inputs_key, ids=ids_path,
        weights=weights, exclude=exclude, order=order, strict=strict,
    )  # fmt: skip
    if list_layers:
        rows = [("layer", "type", "output shape", "note"),
                *layer_table(list_model_layers(model_spec, inputs_spec, options))]  # fmt: skip
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        for row in rows:
            click.echo(
                "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False))
                + "  "
                + row[3]
            )
        return
    if out is None:
        raise click.UsageError("Missing option '-o' / '--out' (the store to write).")
    if not layers:
        raise click.UsageError("Missing option '--layers' (see --list-layers for the names).")
    from ..store.streaming import partial_path

    resuming = resume and partial_path(out).exists()
    offer_resume()
    with guarded_output(out, input_paths(model_spec, inputs_spec, options)), \
            _ExtractProgress(not quiet) as progress:

        def report_progress(description: str, completed: float, total: float) -> None:
            nonlocal resuming
            if resuming:
                resuming = False
                progress.echo(f"resuming at {completed:,.0f} / {total:,.0f} samples")
            progress(description, completed, total)

        report = extract_activations(
            model_spec, inputs_spec, out, options, resume=resume, progress=report_progress,
            force=force,
        )
    withdraw_resume()
    if quiet:
        return
    if report.already_complete:
        click.echo(f"{out} is already complete; nothing to do", err=True)
        return
    resumed = f", resumed at sample {report.resumed_from:,}" if report.resumed_from else ""
    click.echo(
        f"wrote {out}: {plural(report.n_samples, 'sample')} x {plural(len(report.layers), 'layer')} in "
        f"{report.seconds:.1f} s ({report.samples_per_second:,.0f} samples/s{resumed})",
        err=True,
    )
