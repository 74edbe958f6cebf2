"""Content digests of stored layers: one per on-disk chunk of rows, and one per layer over those.

A chunk's digest is the first 16 bytes of SHA-256 over the bytes of its rows as stored (C order,
the stored dtype with its byte order; the padding Zarr adds to an edge chunk is not included).
A layer's digest is SHA-256 over its shape, dtype, rows per chunk and chunk digests, in hex.
SHA-256 runs at about 1.7 GB/s per core on CPUs with SHA instructions and releases the GIL, so
hashing each chunk as the writer thread writes it costs the model's threads nothing.

The writer computes them as rows stream in (:class:`LayerHasher`), and the readers check every
whole chunk they read against them (:func:`chunk_digest`), so that rows changed after writing —
edited in place, permuted, or damaged on disk — are found, not silently used.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

ALGORITHM = "sha256-128 per chunk of rows; layer: sha256 over shape, dtype, chunk rows and chunk digests"
DIGEST_BYTES = 16


def chunk_digest(rows: np.ndarray) -> bytes:
    """The digest of one chunk's rows (C-contiguous bytes as stored)."""
    data = np.ascontiguousarray(rows)
    return hashlib.sha256(data.reshape(-1).view(np.uint8).data).digest()[:DIGEST_BYTES]


def layer_digest(shape: Sequence[int], dtype: Any, chunk_rows: int, chunks: np.ndarray) -> str:
    """The layer's digest (hex) from its chunk digests ((n_chunks, 16) uint8)."""
    h = hashlib.sha256(f"{tuple(int(s) for s in shape)}|{np.dtype(dtype).str}|{chunk_rows}|".encode())
    h.update(np.ascontiguousarray(chunks, dtype=np.uint8).tobytes())
    return h.hexdigest()


def n_chunks(n: int, chunk_rows: int) -> int:
    return -(-n // max(1, chunk_rows))


class LayerHasher:
    """Chunk digests of one layer, from its rows written in order (any block sizes).

    A write that does not continue where the last one stopped marks the hasher ``broken``: the
    digests are then computed by reading the layer back at the end.
    """

    def __init__(self, n: int, chunk_rows: int) -> None:
        self.n = n
        self.chunk_rows = max(1, chunk_rows)
        self.next_row = 0
        self.broken = False
        self.digests = np.zeros((n_chunks(n, self.chunk_rows), DIGEST_BYTES), dtype=np.uint8)
        self._open: Any = None  # the hash object of the chunk being filled

    def update(self, start: int, rows: np.ndarray) -> None:
        """Add rows [start, start + len(rows)) (C-contiguous, stored dtype)."""
        if self.broken or not len(rows):
            return
        if start != self.next_row:
            self.broken = True
            return
        first = 0
        while first < len(rows):
            row = start + first
            index, offset = divmod(row, self.chunk_rows)
            end = min(self.n, (index + 1) * self.chunk_rows)
            take = min(end - row, len(rows) - first)
            part = np.ascontiguousarray(rows[first : first + take])
            if offset == 0 and take == end - row:
                self.digests[index] = np.frombuffer(chunk_digest(part), dtype=np.uint8)
            else:
                if self._open is None:
                    self._open = hashlib.sha256()
                self._open.update(part.reshape(-1).view(np.uint8).data)
                if row + take == end:
                    self.digests[index] = np.frombuffer(self._open.digest()[:DIGEST_BYTES], dtype=np.uint8)
                    self._open = None
            first += take
        self.next_row = start + len(rows)

    @property
    def complete(self) -> bool:
        return not self.broken and self.next_row == self.n


class ReadVerifier:
    """Checks the chunks of one layer against their digests as rows are read.

    A chunk is checked when one read covers it whole, or when consecutive reads cover it in
    order (the engine's passes read a layer front to back in blocks that need not match the
    chunks); a checked chunk is not hashed again. Reads out of order leave the chunks they cut
    unchecked (``repsim verify`` checks every chunk).
    """

    def __init__(self, digests: np.ndarray, chunk_rows: int, n: int) -> None:
        self.digests = digests
        self.chunk_rows = max(1, chunk_rows)
        self.n = n
        self.checked: set[int] = set()
        self._index = -1  # the chunk being hashed across reads, the next row it expects, its hash
        self._next = 0
        self._hash: Any = None

    def feed(self, start: int, block: np.ndarray) -> tuple[int, int] | None:
        """Hash rows [start, start + len(block)); return the (first, stop) rows of the first
        chunk that does not match its digest, else None."""
        stop = start + len(block)
        row = start
        while row < stop:
            index = row // self.chunk_rows
            chunk_start = index * self.chunk_rows
            chunk_stop = min(chunk_start + self.chunk_rows, self.n)
            end = min(chunk_stop, stop)
            if index not in self.checked:
                part = np.ascontiguousarray(block[row - start : end - start])
                if row == chunk_start:
                    self._index, self._next, self._hash = index, row, hashlib.sha256()
                if self._index == index and self._next == row:
                    self._hash.update(part.reshape(-1).view(np.uint8).data)
                    self._next = end
                    if end == chunk_stop:
                        good = self._hash.digest()[:DIGEST_BYTES] == self.digests[index].tobytes()
                        self._index, self._hash = -1, None
                        if not good:
                            return chunk_start, chunk_stop
                        self.checked.add(index)
            row = end
        return None
