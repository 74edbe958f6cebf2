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
from ..partials import compute_partial, write_partial
from ..results import write_results
from ..schedule import Journal, Shard, journal_kept_on_disk_full, resumable, shard_from_env
from ..sharding import describe_share, layers_command_hint, run_layers_stage, share_dict, share_mode
from ..state_dir import StateDir
from ..store import open_store
from ._guard import guarded_output
from ._options import MetricType, ShardType, SizeType, output_option, plural, quiet_option
from ._provenance import run_provenance
from ._resume import offer_rerun, start_resumable_compare, withdraw_resume
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
              help="Compute shard K of N (1-based): tiles of examples (CKA family: partial sums), "
                   "layer states (--stage layers) or cells; default from SLURM_ARRAY_TASK_ID.")
@click.option("--stage", type=click.Choice(["layers", "pairs"]), default=None,
              help="Two-stage sharding: prepare a share of the layers' states into --state-dir "
                   "(layers, no -o), or compute a share of the cells from them (pairs).")
@click.option("--state-dir", type=click.Path(file_okay=False), default=None,
              help="A shared directory of prepared layer states, keyed by content (looked up first).")
@click.option("--resume", is_flag=True, help="Continue a killed run from the cells it already wrote.")
@click.option("--force", is_flag=True,
              help="With --resume: compute again, with a warning, when the journal cannot be reused.")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="Where Grams spill when they exceed --memory (default: beside the output).")
@click.option("--keep-cache", is_flag=True, help="Keep the spilled Grams after the run.")
@click.option("--scheduler", default=None, metavar="ADDRESS|local:W",
              help="Run the work on a Dask cluster: a scheduler's address (tcp://host:8786) or "
                   "local:W (W local worker processes); needs repsim-cli[dask].")
@click.option("--dry-run", is_flag=True, help="Print the plan (side, passes, bytes, flops, memory) and exit.")
@click.option("--json", "as_json", is_flag=True, help="With --dry-run: print the plan as JSON.")
@statistics_options
@quiet_option
def command(
    store_args: tuple[str, ...], stores_file: str | None, pairing: str, within: bool,
    layers_all: tuple[str, ...], metrics: tuple[Any, ...], out: str, layers_a: tuple[str, ...],
    layers_b: tuple[str, ...], memory: int | None, threads: int | None, precision: str | None,
    side: str, shard_text: Shard | None, stage: str | None, state_dir: str | None, resume: bool,
    force: bool, cache_dir: str | None,
    keep_cache: bool, scheduler: str | None,
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
      repsim compare a.h5 b.h5 -m cka -o part3.h5 --shard 3/8       # partial sums
      repsim compare a.h5 b.h5 -m cca --stage layers --shard 3/8 --state-dir states
      repsim compare a.h5 b.h5 -m cca --stage pairs --shard 3/8 --state-dir states -o part3.h5
      repsim compare a.h5 b.h5 -m cka -o cka.csv --dry-run
      repsim compare seed*.h5 -m cka -o zoo.h5 --scheduler tcp://node1:8786
    """
    if stage is not None and state_dir is None:
        raise click.UsageError(f"--stage {stage} needs --state-dir DIR (the shared layer states)")
    if out is None and not dry_run and stage != "layers":
        raise click.UsageError("Missing option '-o' / '--out' (only --dry-run and --stage layers need none).")
    out = out or "-"
    if out not in ("-", os.devnull) and Path(out).suffix.lower() not in OUTPUT_SUFFIXES:
        raise ResultsError(f"{out}: unknown output format (use .csv, -, .h5, .hdf5 or .zarr)")
    shard = shard_text or shard_from_env(os.environ)
    if scheduler is not None and not dry_run:
        from ..distributed import import_distributed, parse_scheduler

        parse_scheduler(scheduler)
        import_distributed()
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
        if state_dir is not None:
            comparison.state_dir = StateDir(
                state_dir, require=stage == "pairs",
                command=layers_command_hint(state_dir, shard.count if shard else 1))  # fmt: skip
        mode = share_mode(comparison, shard, stage)
        if dry_run:
            if as_json:
                plan = comparison.to_dict()
                if shard is not None:
                    plan["share"] = share_dict(comparison, shard, stage)
                click.echo(json.dumps(plan, indent=2))
            else:
                click.echo(comparison.describe())
                if shard is not None:
                    click.echo(describe_share(comparison, shard, stage))
            return
        if mode in ("layers", "tiles"):
            offer_rerun()
        if mode == "layers":
            prepared, found = run_layers_stage(comparison, shard)
            withdraw_resume()
            if not quiet:
                click.echo(f"prepared {plural(prepared, 'layer state')} into {state_dir} ({found} already there)"
                           + (f" (shard {shard})" if shard else ""), err=True)  # fmt: skip
            return
        if mode == "tiles":
            shard = shard or Shard(1, 1)
            if out in ("-", os.devnull) or Path(out).suffix.lower() == ".csv":
                raise ResultsError(f"{out}: shard {shard} writes partial sums: give -o PART.h5 "
                                   "(or .zarr), then join the parts with `repsim merge`")  # fmt: skip
            write_partial(compute_partial(comparison, shard), out)
            withdraw_resume()
            if not quiet:
                click.echo(f"wrote {out} (partial sums of shard {shard})", err=True)
            return
        journal = None
        if out not in ("-", os.devnull):
            journal = Journal(journal_path(out), comparison.journal_header(shard),
                              content=comparison_content(comparison), force=force)  # fmt: skip
        if journal is not None and start_resumable_compare(out, comparison, journal, shard, resume, quiet):
            return
        try:
            if scheduler is not None:
                from ..distributed import run_on_dask

                results = run_on_dask(comparison, scheduler, shard=shard, journal=journal,
                                      resume=resume, threads=threads, progress=progress)  # fmt: skip
            else:
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
