"""``repsim verify``: re-read a store and check it against what was recorded when it was written."""

from __future__ import annotations

import click

from ..errors import CorruptStoreError
from ..integrity import digest_note, verify_store
from ..store import open_store


@click.command("verify")
@click.argument("store_path", metavar="STORE")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing when the store is sound.")
def command(store_path: str, quiet: bool) -> None:
    """Check every row of a store: chunks present and readable, content digests, NaN/Inf, and
    the stored column statistics.

    Prints one line per layer (ok, or its first problem with the rows) and exits 1 naming the
    first bad layer and row block, 0 when every check passes.

    \b
    Example:
      repsim verify model.h5
    """
    with open_store(store_path, require_complete=False) as store:
        findings = verify_store(store)
        note = digest_note(store)
    bad = [f for f in findings if not f.ok]
    if not quiet or bad:
        width = max((len(f.layer) for f in findings), default=0)
        for f in findings:
            click.echo(f"{(f.layer or '(store)').ljust(width)}  {f.text()}")
    if bad:
        first = bad[0]
        where = f"layer {first.layer!r}: " if first.layer else ""
        raise CorruptStoreError(f"{store_path}: {where}{first.text()}")
    if not quiet:
        click.echo(f"{store_path}: {len(findings)} layers sound; {note}", err=True)
