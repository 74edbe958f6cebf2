"""Atomic outputs: write to a temporary sibling, rename into place only when complete.

Make and SLURM scripts must never see a half-written target, and a failed or interrupted run must
leave nothing behind. Works for files (HDF5, CSV, PNG) and directories (Zarr).

The clean-up itself runs with SIGINT and SIGTERM held back (:func:`signals_deferred`), so a second
Ctrl-C cannot leave half a temporary tree; and where no one has set a SIGTERM handler,
:func:`terminate_cleanly` turns SIGTERM into an exception for the length of a write, so that the
temporary file is removed before the process ends by the signal as it would have.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from .errors import DiskFullError, OutputError
from .outputs import check_output_dir, is_disk_full

_DEFERRED = (signal.SIGINT, signal.SIGTERM)


class Terminated(BaseException):
    """SIGTERM, raised as an exception inside :func:`terminate_cleanly`."""


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back for the ``with`` block (main thread only; elsewhere a no-op):
    a signal arriving meanwhile is delivered when the block ends."""
    if not _main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _DEFERRED)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


@contextlib.contextmanager
def terminate_cleanly() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` (so ``except``/``finally`` clean-up
    runs); once it has propagated out, the process ends by SIGTERM as it would have. Does nothing
    outside the main thread or when a SIGTERM handler is already installed (the CLI's own)."""
    if not _main_thread() or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def _raise(signum: int, frame: FrameType | None) -> None:
        raise Terminated()

    signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    except Terminated:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        raise
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


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


# Failures of the file system other than a full disk: reported as one line naming the output.
_DENIED_ERRNOS = {errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write; rename it onto ``path`` on success, delete it on any error.

    ``BaseException`` is caught, so Ctrl-C (KeyboardInterrupt), SIGTERM and SystemExit also clean
    up. ``os.devnull`` is accepted: the output is written to a temporary folder and discarded.
    Raises :class:`StoreError` when the output's directory does not exist, :class:`OutputError`
    when it is not writable (or the file system refuses the write), and :class:`DiskFullError`
    (saying that nothing was left) when the disk fills up.
    """
    final = Path(path)
    if os.fspath(path) == os.devnull:
        with tempfile.TemporaryDirectory(prefix="repsim-discard-") as folder:
            yield Path(folder) / "discarded"
        return
    check_output_dir(final)
    check_writable(final)
    tmp = temporary_sibling(final)
    with terminate_cleanly():
        try:
            yield tmp
            replace_path(tmp, final)
        except BaseException as exc:
            with signals_deferred():
                remove_path(tmp)
            if is_disk_full(exc):
                raise DiskFullError(
                    f"{final}: no space left on device while writing it; nothing was written "
                    "(its temporary file was removed): free some space and run the command again"
                ) from exc
            if isinstance(exc, OSError) and exc.errno in _DENIED_ERRNOS:
                raise OutputError(f"{final}: cannot write ({exc.strerror})") from exc
            raise


def check_writable(final: Path) -> None:
    """Raise :class:`OutputError` unless ``final``'s folder is writable (it exists: checked first)."""
    parent = final.parent if str(final.parent) else Path(".")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{final}: cannot write: folder {parent} is not writable")
