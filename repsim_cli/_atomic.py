"""Atomic outputs: write to a temporary sibling, rename into place only when complete.

Make and SLURM scripts must never see a half-written target, and a failed or interrupted run must
leave nothing behind. Works for files (HDF5, CSV, PNG) and directories (Zarr).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path


def temporary_sibling(path: Path) -> Path:
    """Return a unique temporary path in the same directory as ``path`` (same filesystem)."""
    return path.with_name(f".{path.stem}.tmp-{uuid.uuid4().hex[:8]}{path.suffix}")


def remove_path(path: Path) -> None:
    """Remove a file or a directory tree if it exists."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def replace_path(src: Path, dst: Path) -> None:
    """Move ``src`` onto ``dst``, replacing a file or directory already there."""
    if dst.is_dir() and not dst.is_symlink():
        trash = temporary_sibling(dst)
        os.replace(dst, trash)
        os.replace(src, dst)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(src, dst)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write; rename it onto ``path`` on success, delete it on any error.

    ``BaseException`` is caught, so Ctrl-C (KeyboardInterrupt) and SystemExit also clean up.
    """
    final = Path(path)
    tmp = temporary_sibling(final)
    try:
        yield tmp
    except BaseException:
        remove_path(tmp)
        raise
    replace_path(tmp, final)
