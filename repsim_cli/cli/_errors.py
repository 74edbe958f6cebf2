"""The one place where library errors become CLI errors (message, exit code)."""

from __future__ import annotations

from typing import Any

import click

from ..errors import RepsimError


class RepsimGroup(click.Group):
    """A click group that turns :class:`RepsimError` into ``Error: <message>`` with exit code 1.

    With ``--debug`` the original exception propagates (traceback).
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RepsimError as exc:
            if ctx.find_root().params.get("debug"):
                raise
            raise click.ClickException(str(exc)) from None
        except (OSError, ValueError) as exc:
            # Unexpected low-level failures (disk full, permission denied) still get one clean line.
            if ctx.find_root().params.get("debug") or isinstance(exc, click.ClickException):
                raise
            raise click.ClickException(f"{exc.__class__.__name__}: {exc}") from None
