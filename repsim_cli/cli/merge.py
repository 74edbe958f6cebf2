"""``repsim merge``: the shards of a job array into one results file."""

from __future__ import annotations

import click

from ..merge import merge_files
from ..results import write_results
from ._guard import guarded_output
from ._options import output_option
from ._provenance import command_line, run_provenance


@click.command("merge")
@click.argument("shards", nargs=-1, required=True, metavar="SHARD...")
@output_option("The merged results: .h5/.zarr (results store), .csv or - (CSV on stdout).")
def command(shards: tuple[str, ...], out: str) -> None:
    """Merge shard results (from `compare --shard K/N`) into one results file.

    Refuses shards of different comparisons and conflicting cells; exits 1 listing the cells no
    shard computed. The merged values are exactly those of a single unsharded run. The merged
    file records this merge's command, date and host, and each shard's command (`repsim info`).

    \b
    Example:
      repsim merge parts/cka.*.h5 -o cka.h5
    """
    with guarded_output(out, shards, "shard"):
        merged = merge_files(shards)
        merged.attrs.update(command=command_line(), **run_provenance())  # the shards' under merged_from
        write_results(merged, out)
