"""Atomic outputs: write to a temporary sibling, rename into place only when complete.

Make and SLURM scripts must never see a half-written target, and a failed or interrupted run must
leave nothing behind. Works for files (HDF5, CSV, PNG) and directories (Zarr).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from .errors import OutputError

# Failures of the disk, not of repsim: reported as one line naming the output.
_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


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
    ``os.devnull`` is accepted: the output is written to a temporary folder and discarded.

    Raises
    ------
    OutputError
        The output's folder does not exist or is not writable, or the disk is full.
    """
    final = Path(path)
    if os.fspath(path) == os.devnull:
        with tempfile.TemporaryDirectory(prefix="repsim-discard-") as folder:
            yield Path(folder) / "discarded"
        return
    check_writable(final)
    tmp = temporary_sibling(final)
    try:
        yield tmp
    except OSError as exc:
        remove_path(tmp)
        if exc.errno in _DISK_ERRNOS and not isinstance(exc, OutputError):
            raise OutputError(f"{final}: cannot write ({exc.strerror})") from exc
        raise
    except BaseException:
        remove_path(tmp)
        raise
    replace_path(tmp, final)


def check_writable(final: Path) -> None:
    """Raise :class:`OutputError` unless ``final``'s folder exists and is writable."""
    parent = final.parent if str(final.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"{final}: cannot write: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{final}: cannot write: folder {parent} is not writable")
