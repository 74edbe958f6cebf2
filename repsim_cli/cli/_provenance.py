"""When and where a command's output was made, for ``repsim info`` (added by the CLI only: the
library's results stay the same bytes for the same inputs)."""

from __future__ import annotations

import datetime
import os
import shlex
import sys


def run_provenance() -> dict[str, str]:
    """``{"created": ISO 8601 UTC time to the second, "host": this machine's name}``."""
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    return {"created": now.isoformat(), "host": _host_name()}


def _host_name() -> str:
    """This machine's network name (os.uname where there is one: no socket module to import)."""
    uname = getattr(os, "uname", None)
    if uname is not None:
        return str(uname().nodename)
    import socket

    return socket.gethostname()


def command_line() -> str:
    """This process's command as typed (``repsim ...``), quoted for a shell."""
    return shlex.join(["repsim", *sys.argv[1:]])
