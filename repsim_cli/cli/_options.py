"""Shared click option decorators and parameter types."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from .._units import parse_size
from ..errors import RepsimError

F = Callable[..., Any]

if TYPE_CHECKING:
    _ParamType = click.ParamType[Any]  # generic in click's type hints from 8.2 on
else:
    _ParamType = click.ParamType


class SizeType(_ParamType):
    """A byte size such as ``4GiB`` or ``512M``; zero and negative sizes are refused."""

    name = "SIZE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        try:
            size = value if isinstance(value, int) else parse_size(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        if size <= 0:
            self.fail(f"{value!r}: a size must be more than 0 bytes (e.g. 512MiB, 4GiB)", param, ctx)
        return size


class MetricType(_ParamType):
    """``NAME[:key=value,...]`` parsed against the metric registry."""

    name = "SPEC"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from ..metrics import MetricSpec, parse_spec

        if isinstance(value, MetricSpec):
            return value
        try:
            return parse_spec(str(value))
        except RepsimError as exc:
            self.fail(str(exc), param, ctx)


class ShardType(_ParamType):
    """``K/N``: shard K (1-based) of N; a bad value is a usage error (exit 2)."""

    name = "K/N"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from ..schedule import Shard, parse_shard

        if isinstance(value, Shard):
            return value
        try:
            return parse_shard(str(value))
        except RepsimError as exc:
            self.fail(str(exc), param, ctx)


def output_option(help_text: str, required: bool = True) -> Callable[[F], F]:
    """``-o/--out PATH`` (``os.devnull`` is accepted: the output is computed and discarded)."""
    return click.option("-o", "--out", "out", required=required, metavar="PATH", help=help_text)


def quiet_option(f: F) -> F:
    return click.option("-q", "--quiet", is_flag=True, help="No progress output on stderr.")(f)


def plural(count: int, word: str) -> str:
    """``1 layer``, ``2 layers``, ``1,024 samples``."""
    return f"{count:,} {word}{'' if count == 1 else 's'}"
