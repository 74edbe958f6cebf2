"""Escape layer names so that any name (``blocks.0/attn``, ``__x``) is a valid HDF5/Zarr node name."""

from __future__ import annotations

from urllib.parse import quote, unquote


def escape_name(name: str) -> str:
    """Escape ``/`` and ``%`` (and a leading ``_`` or ``.``, reserved by Zarr v3) as ``%XX``."""
    escaped = quote(name, safe="")
    if escaped[:1] in {"_", "."}:
        escaped = f"%{ord(escaped[0]):02X}{escaped[1:]}"
    return escaped


def unescape_name(node: str) -> str:
    """Invert :func:`escape_name`."""
    return unquote(node)
