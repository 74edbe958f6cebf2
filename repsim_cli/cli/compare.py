"""``repsim compare``: layer-by-layer similarity matrices between stores."""

from __future__ import annotations

import json
import os
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import click

from .._progress import progress_context
from ..compare import prepare_comparison
from ..errors import RepsimError, ResultsError
from ..integrity import comparison_content
from ..results import write_results
from ..schedule import Journal, journal_kept_on_disk_full, parse_shard, resumable, shard_from_env
from ..store import open_store
from ._guard import guarded_output
from ._options import MetricType, SizeType, output_option, quiet_option

OUTPUT_SUFFIXES = (".csv", ".h5", ".hdf5", ".zarr")


def journal_path(out: str) -> Path:
    """The resume journal of an output: a hidden sibling, ``.NAME.resume``."""
    p = Path(out)
    return p.with_name(f".{p.name}.resume")


@click.command("compare")
@click.argument("store_a", metavar="STORE_A")
@click.argument("store_b", metavar="[STORE_B]", required=False)
@click.option("-m", "--metric", "metrics", type=MetricType(), multiple=True, required=True,
              help="NAME[:key=value,...]; repeat for several metrics (see `repsim metrics`).")
@output_option("Results: .csv (long format), - (CSV on stdout), or .h5/.zarr (results store).")
@click.option("--layers-a", multiple=True, metavar="GLOB", help="Layers of STORE_A to use (globs).")
@click.option("--layers-b", multiple=True, metavar="GLOB", help="Layers of STORE_B to use (globs).")
@click.option("--memory", type=SizeType(), default=None, help="Memory budget, e.g. 4GiB (default: half of RAM).")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Cap the BLAS threads.")
@click.option("--precision", type=click.Choice(["float32", "float64"]), default=None,
              help="GEMM precision (default: float32 for float16/32 stores, float64 otherwise).")
@click.option("--side", type=click.Choice(["auto", "sample", "feature"]), default="auto",
              help="Force the engine side (default: the planner's choice).")
@click.option("--shard", "shard_text", default=None, metavar="K/N",
              help="Compute shard K of N (1-based) of the cells; default from SLURM_ARRAY_TASK_ID.")
@click.option("--resume", is_flag=True, help="Continue a killed run from the cells it already wrote.")
@click.option("--force", is_flag=True,
              help="With --resume: compute again, with a warning, when the journal cannot be reused.")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="Where Grams spill when they exceed --memory (default: beside the output).")
@click.option("--keep-cache", is_flag=True, help="Keep the spilled Grams after the run.")
@click.option("--dry-run", is_flag=True, help="Print the plan (side, passes, bytes, flops, memory) and exit.")
@click.option("--json", "as_json", is_flag=True, help="With --dry-run: print the plan as JSON.")
@quiet_option
def command(
    store_a: str, store_b: str | None, metrics: tuple[Any, ...], out: str, layers_a: tuple[str, ...],
    layers_b: tuple[str, ...], memory: int | None, threads: int | None, precision: str | None,
    side: str, shard_text: str | None, resume: bool, force: bool, cache_dir: str | None, keep_cache: bool,
    dry_run: bool, as_json: bool, quiet: bool,
) -> None:
    """Compare every layer of STORE_A with every layer of STORE_B (or of STORE_A itself).

    Cell (a, b) of each matrix compares layer a of STORE_A with layer b of STORE_B. The two stores
    must hold the same samples in the same order. Finished cells are journalled beside the output
    (.OUT.resume) so that --resume continues a killed run; the journal is removed on success.

    \b
    Examples:
      repsim compare a.h5 b.h5 -m cka -m cka:debiased=true -o cka.h5
      repsim compare a.h5 -m cka --layers-a 'conv*' -o - | head
      repsim compare a.h5 b.h5 -m cka -o part3.h5 --shard 3/8
      repsim compare a.h5 b.h5 -m cka -o cka.csv --dry-run
    """
    if out != "-" and Path(out).suffix.lower() not in OUTPUT_SUFFIXES:
        raise ResultsError(f"{out}: unknown output format (use .csv, -, .h5, .hdf5 or .zarr)")
    shard = parse_shard(shard_text) if shard_text else shard_from_env(os.environ)
    if resume and out == "-":
        raise RepsimError("--resume needs an output file (-o PATH), not stdout")
    with ExitStack() as stack:
        stack.enter_context(guarded_output(None if dry_run else out, [store_a, store_b], "input store"))
        a = stack.enter_context(open_store(store_a))
        b = stack.enter_context(open_store(store_b)) if store_b else None
        progress = stack.enter_context(progress_context(not quiet))
        if threads:
            from threadpoolctl import threadpool_limits

            stack.enter_context(threadpool_limits(limits=threads))
        comparison = prepare_comparison(
            a, b, metrics, layers_a=layers_a or None, layers_b=layers_b or None,
            memory=memory, precision=precision, side=side, progress=progress,
            cache_dir=cache_dir or (Path(out).parent if out != "-" else None),
        )  # fmt: skip
        stack.callback(comparison.engine.close, keep_cache)
        if dry_run:
            plan = comparison.plan
            click.echo(json.dumps(plan.to_dict(), indent=2) if as_json else plan.describe())
            return
        journal = None if out == "-" else Journal(journal_path(out), comparison.journal_header(shard),
                                                  content=comparison_content(comparison), force=force)  # fmt: skip
        try:
            results = comparison.run(shard=shard, journal=journal, resume=resume)
        except BaseException as exc:
            if journal is not None:
                journal.close(remove=not resumable(exc))
            raise
        if journal is not None:
            journal.close(remove=False)
        with journal_kept_on_disk_full(journal, out):
            write_results(results, out)
        if journal is not None:
            journal.close(remove=True)
    if out != "-" and not quiet:
        click.echo(f"wrote {out}" + (f" (shard {shard})" if shard else ""), err=True)
