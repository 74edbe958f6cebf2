"""``repsim import``: existing arrays into an activation store."""

from __future__ import annotations

import click

from ..store.importers import import_arrays, parse_source, read_ids
from ._guard import guarded_output
from ._options import output_option, plural, quiet_option


@click.command("import")
@click.argument("sources", nargs=-1, required=True, metavar="SRC...")
@output_option("The store to write: .h5/.hdf5 (HDF5) or .zarr (Zarr v3).")
@click.option("--ids", "ids_path", metavar="FILE", help="Sample ids: a text file, one per line, or a .npy array.")
@quiet_option
def command(sources: tuple[str, ...], out: str, ids_path: str | None, quiet: bool) -> None:
    """Import arrays into an activation store.

    Each SRC is file.npy (the layer is named by the stem), file.npz, file.safetensors or file.pt
    (every array is a layer), or NAME=file.npy to name the layer. Arrays have samples first, and
    all must share the number of samples.

    \b
    Example:
      repsim import conv1=acts/conv1.npy acts/fc.npz -o model.h5 --ids ids.txt
    """
    with guarded_output(out, [*(str(parse_source(s)[1]) for s in sources), ids_path]):
        ids = read_ids(ids_path) if ids_path else None
        names = import_arrays(sources, out, ids=ids)
    if not quiet:
        click.echo(f"wrote {out}: {plural(len(names), 'layer')}", err=True)
