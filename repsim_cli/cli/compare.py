"""``repsim compare``: layer-by-layer similarity matrices between stores."""

from __future__ import annotations

import json
import os
import shlex
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import click

from .._progress import progress_context
from ..compare import (
    default_model_name,
    journal_path,
    prepare_comparison,
    prepare_models,
    read_store_list,
)
from ..errors import RepsimError, ResultsError
from ..integrity import comparison_content
from ..results import write_results
from ..schedule import Journal, Shard, journal_kept_on_disk_full, resumable, shard_from_env
from ..store import open_store
from ._guard import guarded_output
from ._options import MetricType, ShardType, SizeType, output_option, quiet_option
from ._provenance import run_provenance
from ._resume import start_resumable_compare, withdraw_resume
from ._stats_options import statistics_options, stats_options

OUTPUT_SUFFIXES = (".csv", ".h5", ".hdf5", ".zarr")


@click.command("compare")
@click.argument("store_args", metavar="STORE... ", nargs=-1)
@click.option("--stores", "stores_file", type=click.Path(dir_okay=False), default=None,
              help="A file listing stores, one [NAME=]PATH per line (with or after STORE...).")
@click.option("--pairs", "pairing", type=click.Choice(["all", "first", "consecutive"]), default="all",
              help="Which model pairs with 3+ stores: every pair (default), the first against each "
                   "other, or consecutive ones (checkpoints).")
@click.option("--within", is_flag=True, help="Also compare each model with itself.")
@click.option("--layers", "layers_all", multiple=True, metavar="GLOB",
              help="Layers of every store to use (globs); --layers-a/--layers-b override per side.")
@click.option("-m", "--metric", "metrics", type=MetricType(), multiple=True, required=True,
              help="NAME[:key=value,...]; repeat for several metrics (see `repsim metrics`).")
@output_option("Results: .csv (long format), - (CSV on stdout), or .h5/.zarr (results store).",
               required=False)
@click.option("--layers-a", multiple=True, metavar="GLOB", help="Layers of STORE_A to use (globs).")
@click.option("--layers-b", multiple=True, metavar="GLOB", help="Layers of STORE_B to use (globs).")
@click.option("--memory", type=SizeType(), default=None, help="Memory budget, e.g. 4GiB (default: half of RAM).")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Cap the BLAS threads.")
@click.option("--precision", type=click.Choice(["float32", "float64"]), default=None,
              help="GEMM precision (default: float32 for float16/32 stores, float64 otherwise).")
@click.option("--side", type=click.Choice(["auto", "sample", "feature"]), default="auto",
              help="Force the engine side (default: the planner's choice).")
@click.option("--shard", "shard_text", type=ShardType(), default=None, metavar="K/N",
              help="Compute shard K of N (1-based) of the cells; default from SLURM_ARRAY_TASK_ID.")
@click.option("--resume", is_flag=True, help="Continue a killed run from the cells it already wrote.")
@click.option("--force", is_flag=True,
              help="With --resume: compute again, with a warning, when the journal cannot be reused.")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="Where Grams spill when they exceed --memory (default: beside the output).")
@click.option("--keep-cache", is_flag=True, help="Keep the spilled Grams after the run.")
@click.option("--dry-run", is_flag=True, help="Print the plan (side, passes, bytes, flops, memory) and exit.")
@click.option("--json", "as_json", is_flag=True, help="With --dry-run: print the plan as JSON.")
@statistics_options
@quiet_option
def command(
    store_args: tuple[str, ...], stores_file: str | None, pairing: str, within: bool,
    layers_all: tuple[str, ...], metrics: tuple[Any, ...], out: str, layers_a: tuple[str, ...],
    layers_b: tuple[str, ...], memory: int | None, threads: int | None, precision: str | None,
    side: str, shard_text: Shard | None, resume: bool, force: bool, cache_dir: str | None,
    keep_cache: bool,
    dry_run: bool, as_json: bool, quiet: bool, **stats: Any,
) -> None:
    """Compare every layer of each store with every layer of another (or of itself).

    One store: its layers with each other. Two stores A B: cell (a, b) compares layer a of A with
    layer b of B. Three or more: every model pair (--pairs), each layer of each store read and
    prepared once for the whole run. Name a model with NAME=PATH (default: the file stem). All
    stores must hold the same samples in the same order. Finished cells are journalled beside the
    output (.OUT.resume) so that --resume continues a killed run; the journal is removed on success.

    \b
    Examples:
      repsim compare a.h5 b.h5 -m cka -m cka:debiased=true -o cka.h5
      repsim compare a.h5 -m cka --layers-a 'conv*' -o - | head
      repsim compare seed*.h5 -m cka -o zoo.h5            # every pair of models
      repsim compare ckpt1.h5 ckpt2.h5 ckpt3.h5 --pairs consecutive -m cka -o ckpt.h5
      repsim compare a.h5 b.h5 -m cka -o part3.h5 --shard 3/8
      repsim compare a.h5 b.h5 -m cka -o cka.csv --dry-run
    """
    if out is None and not dry_run:
        raise click.UsageError("Missing option '-o' / '--out' (only --dry-run needs none).")
    out = out or "-"
    if out not in ("-", os.devnull) and Path(out).suffix.lower() not in OUTPUT_SUFFIXES:
        raise ResultsError(f"{out}: unknown output format (use .csv, -, .h5, .hdf5 or .zarr)")
    shard = shard_text or shard_from_env(os.environ)
    if resume and out == "-":
        raise click.UsageError("--resume needs an output file (-o PATH), not stdout")
    named = read_store_list(store_args, stores_file)
    if not named:
        raise click.UsageError("compare needs at least one store (STORE... or --stores FILE)")
    with ExitStack() as stack:
        stack.enter_context(guarded_output(None if dry_run else out, [p for _, p in named],
                                           "input store"))  # fmt: skip
        opened = [(name, stack.enter_context(open_store(path))) for name, path in named]
        progress = stack.enter_context(progress_context(not quiet))
        if threads:
            from .._threads import limit_threads

            stack.enter_context(limit_threads(threads))
        options: dict[str, Any] = {
            "memory": memory, "precision": precision, "side": side, "progress": progress,
            "cache_dir": cache_dir or (Path(out).parent if out != "-" else None),
            "command": shlex.join(["repsim", *sys.argv[1:]]),
            "statistics": stats_options(stats),
        }  # fmt: skip
        if len(opened) <= 2 and not within and not any(name for name, _ in named):
            comparison = prepare_comparison(
                opened[0][1], opened[1][1] if len(opened) == 2 else None, metrics,
                layers_a=layers_a or layers_all or None,
                layers_b=layers_b or layers_all or None, **options,
            )  # fmt: skip
        else:
            if (layers_a or layers_b) and len(opened) > 2:
                raise RepsimError("--layers-a/--layers-b need one or two stores; use --layers")
            names = [name or default_model_name(path, [p for _, p in named]) for name, path in named]
            globs = [list(layers_a or layers_all) or None] + [
                list(layers_b or layers_all) or None if len(opened) == 2 else list(layers_all) or None
            ] * (len(opened) - 1)
            comparison = prepare_models(
                [(nm, store) for nm, (_, store) in zip(names, opened, strict=True)], metrics,
                layers=globs[: len(opened)], pairs=pairing, within=within, **options,
            )  # fmt: skip
        stack.callback(comparison.close, keep_cache)
        if dry_run:
            click.echo(json.dumps(comparison.to_dict(), indent=2) if as_json else comparison.describe())
            return
        journal = None
        if out not in ("-", os.devnull):
            journal = Journal(journal_path(out), comparison.journal_header(shard),
                              content=comparison_content(comparison), force=force)  # fmt: skip
        if journal is not None and start_resumable_compare(out, comparison, journal, shard, resume, quiet):
            return
        try:
            results = comparison.run(shard=shard, journal=journal, resume=resume)
        except BaseException as exc:
            if journal is not None:
                journal.close(remove=not resumable(exc))
            raise
        if journal is not None:
            journal.close(remove=False)
        results.attrs.update(run_provenance())
        with journal_kept_on_disk_full(journal, out):
            write_results(results, out)
        if journal is not None:
            journal.close(remove=True)
    withdraw_resume()
    if out != "-" and not quiet:
        click.echo(f"wrote {out}" + (f" (shard {shard})" if shard else ""), err=True)
