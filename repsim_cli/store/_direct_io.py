"""Writing whole chunks of a store past the OS page cache (``O_DIRECT``) where the system allows it.

Why: a streaming extraction writes ~100 MB/s while the model's threads use every core. Buffered
writes copy each chunk into freshly allocated page-cache pages, which on virtual machines costs
1-2 ms of CPU per MB, taken from the model. With ``O_DIRECT`` the device reads the chunk from our
buffer (DMA): the writing thread waits, but uses almost no CPU.

``O_DIRECT`` needs the buffer address, the file offset and the length to be multiples of the
device's block size; :data:`ALIGN` (4 KiB) covers the usual 512 B and 4 KiB blocks. A write is
split into its aligned head (direct) and the remaining bytes (buffered through a second descriptor
of the same file). Where the file system refuses ``O_DIRECT`` (``EINVAL``: tmpfs on older kernels,
some network file systems) or the platform lacks it, everything is written buffered. The bytes in
the file are the same either way.
"""

from __future__ import annotations

import errno
import os
import uuid
from pathlib import Path

import numpy as np

from .._allocator import ALIGN, aligned_empty

_O_DIRECT = getattr(os, "O_DIRECT", 0)


def _aligned(address: int) -> bool:
    return address % ALIGN == 0


def _pwrite_all(fd: int, view: memoryview, offset: int) -> None:
    """``os.pwrite`` until every byte of ``view`` is written."""
    while len(view):
        done = os.pwrite(fd, view, offset)
        view, offset = view[done:], offset + done


def _refused(exc: OSError) -> bool:
    """Whether an error means "no O_DIRECT here" rather than a failed write (full disk, ...)."""
    return exc.errno in {errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP}


class _Staging:
    """A reusable aligned scratch buffer for data that does not start on an aligned address."""

    def __init__(self) -> None:
        self._buffer = np.empty(0, dtype=np.uint8)

    def aligned_copy(self, data: np.ndarray) -> np.ndarray:
        """``data``'s bytes at an aligned address (``data`` itself when already aligned)."""
        raw = data.reshape(-1).view(np.uint8)
        if _aligned(raw.ctypes.data):
            return raw
        if self._buffer.size < raw.size:
            self._buffer = aligned_empty((raw.size,), np.uint8)
        self._buffer[: raw.size] = raw
        return self._buffer[: raw.size]


class PositionalWriter:
    """Writes byte ranges of one existing file at given offsets (the chunks of an HDF5 dataset).

    Two descriptors: one opened with ``O_DIRECT`` for the aligned whole blocks of each write,
    one buffered for the rest; the direct one is dropped for good at the first refusal.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_WRONLY)
        self._direct_fd: int | None = None
        if _O_DIRECT:
            try:
                self._direct_fd = os.open(self.path, os.O_WRONLY | _O_DIRECT)
            except OSError as exc:
                if not _refused(exc):
                    os.close(self._fd)
                    raise
        self._staging = _Staging()

    @property
    def direct(self) -> bool:
        """Whether aligned blocks still go past the page cache."""
        return self._direct_fd is not None

    def write_at(self, offset: int, data: np.ndarray) -> None:
        """Write the bytes of C-contiguous ``data`` at byte ``offset`` of the file."""
        raw = data.reshape(-1).view(np.uint8)
        head = 0
        if self._direct_fd is not None and _aligned(offset) and raw.size >= ALIGN:
            head = raw.size // ALIGN * ALIGN
            source = self._staging.aligned_copy(raw[:head])
            try:
                _pwrite_all(self._direct_fd, source.data, offset)
            except OSError as exc:
                if not _refused(exc):
                    raise
                self._drop_direct()
                head = 0
        if head < raw.size:
            _pwrite_all(self._fd, raw[head:].data, offset + head)

    def _drop_direct(self) -> None:
        if self._direct_fd is not None:
            os.close(self._direct_fd)
            self._direct_fd = None

    def close(self) -> None:
        """Close both descriptors (the data is in the file; durability is the caller's flush)."""
        self._drop_direct()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class FileWriter:
    """Writes whole files (the chunk files of a Zarr array), each atomically: into a hidden
    temporary sibling, then renamed over the target, as Zarr's own local store does."""

    def __init__(self) -> None:
        self._staging = _Staging()
        self._direct = bool(_O_DIRECT)

    def write_file(self, path: Path, data: np.ndarray, size: int | None = None) -> None:
        """Make ``path`` hold the bytes of C-contiguous ``data``, zero-padded to ``size`` bytes."""
        raw = data.reshape(-1).view(np.uint8)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
        try:
            fd, direct = self._open(tmp)
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, direct = self._open(tmp)
        try:
            head = raw.size // ALIGN * ALIGN if direct else 0
            if head:
                try:
                    _pwrite_all(fd, self._staging.aligned_copy(raw[:head]).data, 0)
                except OSError as exc:
                    if not _refused(exc):
                        raise
                    self._direct, head = False, 0
            if direct:
                _clear_direct(fd)
            if head < raw.size:
                _pwrite_all(fd, raw[head:].data, head)
            if size is not None and size > raw.size:
                os.ftruncate(fd, size)  # the extension reads as zeros
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        os.close(fd)
        os.replace(tmp, path)

    def _open(self, path: Path) -> tuple[int, bool]:
        """A new file's descriptor, and whether it was opened with ``O_DIRECT``."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        if self._direct:
            try:
                return os.open(path, flags | _O_DIRECT, 0o644), True
            except OSError as exc:
                if not _refused(exc):
                    raise
                self._direct = False
        return os.open(path, flags, 0o644), False


def _clear_direct(fd: int) -> None:
    """Turn ``O_DIRECT`` off for an open descriptor (Linux allows it through F_SETFL), for the
    unaligned tail of a file."""
    import fcntl

    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~_O_DIRECT)
