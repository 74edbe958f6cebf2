"""Guards around every output a command writes: never onto an input, one writer at a time, a
directory that exists, and a clear message when the disk fills up.

* :func:`check_not_input` refuses an output that is one of the command's inputs, whatever the
  spelling (``./a.h5``, ``dir/../a.h5``, a symbolic link to it): writing it would replace the input.
* :func:`output_lock` holds an exclusive advisory lock (``flock``) on a hidden lock file beside the
  output, ``.NAME.lock``, for a writer's whole run, so a second writer of the same output (and of its
  journal or partial store) stops at once instead of interleaving its writes with the first one's.
  The lock is the kernel's: it goes away with the process, ``kill -9`` included, and a stale lock
  file left by a killed run is simply locked again.
* :func:`check_output_dir` refuses an output whose directory does not exist (repsim creates no
  directories for you: a mistyped path should not silently grow a tree).
* :func:`is_disk_full` recognises "no space left" from the OS, h5py and zarr alike.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .errors import OutputIsInputError, OutputLockedError, StoreError

_HELD: dict[Path, int] = {}  # lock file -> depth, so that one process may nest its own locks


def resolved(path: str | os.PathLike[str]) -> Path:
    """The absolute path with symbolic links and ``.``/``..`` resolved (for a path that does not
    exist yet: its existing directory resolved, then its name)."""
    p = Path(path).expanduser()
    try:
        return p.resolve(strict=False)
    except (OSError, RuntimeError):  # a symlink loop
        return Path(os.path.abspath(p))


def _same_file(a: Path, b: Path) -> bool:
    if resolved(a) == resolved(b):
        return True
    try:
        return os.path.samefile(a, b)  # hard links, bind mounts
    except OSError:
        return False


def check_not_input(
    out: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str] | None], what: str = "input"
) -> None:
    """Raise :class:`OutputIsInputError` when ``out`` is one of ``inputs`` (``-`` and None are
    skipped), naming both spellings."""
    if str(out) == "-":
        return
    for given in inputs:
        if given is None or str(given) == "-":
            continue
        if _same_file(Path(out), Path(given)):
            raise OutputIsInputError(
                f"output {os.fspath(out)!r} is the {what} {os.fspath(given)!r}; writing it would "
                "replace that input: choose another output path"
            )


def check_output_dir(out: str | os.PathLike[str]) -> None:
    """Raise :class:`StoreError` when the directory of ``out`` does not exist."""
    if str(out) == "-":
        return
    parent = Path(out).parent
    if not parent.is_dir():
        raise StoreError(
            f"{os.fspath(out)}: directory {os.fspath(parent)!r} does not exist; create it first "
            f"(mkdir -p {os.fspath(parent)})"
        )


def lock_path(out: str | os.PathLike[str]) -> Path:
    """The lock file of an output: ``.NAME.lock`` beside the resolved output."""
    final = resolved(out)
    return final.with_name(f".{final.name}.lock")


def _holder(path: Path, patience: float = 1.0) -> str:
    """``pid N`` of the lock's holder. The holder writes its pid just after taking the lock, so an
    empty file is read again for up to ``patience`` seconds before giving up on the number."""
    deadline = time.monotonic() + patience
    while True:
        try:
            pid = path.read_text().strip()
        except OSError:
            pid = ""
        if pid.isdigit() or time.monotonic() >= deadline:
            return f"pid {pid}" if pid.isdigit() else "another process"
        time.sleep(0.01)


@contextlib.contextmanager
def output_lock(out: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold the exclusive lock of ``out`` for the ``with`` block; yield the lock file's path.

    Raises :class:`OutputLockedError` at once (no waiting) when another process holds it. Nested
    calls for the same output in one process share the lock. The lock file is removed on release,
    also when SIGTERM ends the writer (see :func:`repsim_cli._atomic.terminate_cleanly`).
    """
    from ._atomic import terminate_cleanly

    path = lock_path(out)
    if path in _HELD:
        _HELD[path] += 1
        try:
            yield path
        finally:
            _HELD[path] -= 1
        return
    with terminate_cleanly():
        fd = _acquire(path, out)
        _HELD[path] = 1
        try:
            yield path
        finally:
            del _HELD[path]
            # Unlink while still holding the lock: a waiting process that opened the old file
            # finds after locking that the path no longer names its file, and starts over.
            with contextlib.suppress(OSError):
                os.unlink(path)
            os.close(fd)


def _acquire(path: Path, out: str | os.PathLike[str]) -> int:
    for _ in range(100):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:
            check_output_dir(out)
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise OutputLockedError(
                    f"{os.fspath(out)}: another repsim run is writing it ({_holder(path)}, lock "
                    f"file {path}); wait for it to finish, or stop it first"
                ) from None
            raise
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            with contextlib.suppress(OSError):  # the pid only informs; a full disk may refuse it
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            return fd
        os.close(fd)  # the holder removed the file between our open and our lock: try again
    raise StoreError(f"{path}: could not take the lock file")


def is_disk_full(exc: BaseException) -> bool:
    """Whether an exception means the file system is out of space (or quota)."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc)
    return "No space left on device" in text or "errno = 28" in text or "Disk quota exceeded" in text


def _h5py_dealloc_after_disk_full(value: BaseException | None, tb: Any) -> bool:
    """Whether an exception is h5py failing to flush an object it frees, for lack of space."""
    if value is None or not is_disk_full(value):
        return False
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_name == "_dealloc" and "_objects" in code.co_filename:
            return True
        tb = tb.tb_next
    return "decrement id ref count" in str(value)


def _drop_unraisable(unraisable: Any) -> None:
    if not _h5py_dealloc_after_disk_full(unraisable.exc_value, unraisable.exc_traceback):
        _hooks["unraisable"](unraisable)


def _drop_excepthook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
    if not _h5py_dealloc_after_disk_full(value, tb):
        _hooks["except"](kind, value, tb)


_hooks: dict[str, Any] = {}


def drop_disk_full_noise() -> None:
    """Once the disk is full, h5py fails to flush each object it frees and prints that failure
    with a traceback (through ``sys.excepthook`` and ``sys.unraisablehook``, from Cython's
    ``__dealloc__``). The full disk surfaces anyway as the write's or the close's own error,
    reported once by the command; these hooks drop only that noise and pass everything else on.
    Installed once, by writers of HDF5 files."""
    if sys.unraisablehook is not _drop_unraisable:
        _hooks["unraisable"] = sys.unraisablehook
        sys.unraisablehook = _drop_unraisable
    if sys.excepthook is not _drop_excepthook:
        _hooks["except"] = sys.excepthook
        sys.excepthook = _drop_excepthook
