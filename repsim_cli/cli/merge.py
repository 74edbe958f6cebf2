"""``repsim merge``: the shards of a job array into one results file."""

from __future__ import annotations

import click

from ..errors import ResultsError
from ..merge import merge_results
from ..results import write_results
from ._guard import guarded_output
from ._options import output_option


@click.command("merge")
@click.argument("shards", nargs=-1, required=True, metavar="SHARD...")
@output_option("The merged results: .h5/.zarr (results store), .csv or - (CSV on stdout).")
def command(shards: tuple[str, ...], out: str) -> None:
    """Merge shard results (from `compare --shard K/N`) into one results file.

    Refuses shards of different comparisons and conflicting cells; exits 1 listing the cells no
    shard computed. The merged values are exactly those of a single unsharded run.

    \b
    Example:
      repsim merge parts/cka.*.h5 -o cka.h5
    """
    from ..partials import is_partial_file, merge_partials

    with guarded_output(out, shards, "shard"):
        partial = [is_partial_file(p) for p in shards]
        if any(partial) and not all(partial):
            odd = shards[partial.index(False)] if partial[0] else shards[partial.index(True)]
            raise ResultsError(f"{odd}: cannot merge partial sums (compare --shard of inner-product "
                               "metrics) with results of cells; merge each kind separately")  # fmt: skip
        write_results(merge_partials(shards) if all(partial) else merge_results(shards), out)
