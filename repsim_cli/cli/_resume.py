"""The exact command that continues an interrupted run, and what a resumed run reports.

``main`` remembers the arguments the user gave; a command that can be resumed calls
:func:`offer_resume` before its long work, so that an interruption prints the user's own command
line plus ``--resume``, shell-quoted, instead of a bare "Interrupted.".
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence

PROG = "repsim"
RESUME_FLAG = "--resume"

_argv: list[str] | None = None
_offered: str | None = None


def remember_argv(argv: Sequence[str] | None) -> None:
    """Record the command's arguments (without the program name); None means ``sys.argv[1:]``."""
    global _argv, _offered
    _argv = list(argv) if argv is not None else list(sys.argv[1:])
    _offered = None


def resume_command(argv: Sequence[str] | None = None) -> str:
    """The user's command line with ``--resume`` added (once), quoted for a POSIX shell."""
    args = list(argv) if argv is not None else list(_argv if _argv is not None else sys.argv[1:])
    if RESUME_FLAG not in args:
        if "--" in args:  # options must come before a literal "--"
            args.insert(args.index("--"), RESUME_FLAG)
        else:
            args.append(RESUME_FLAG)
    return shlex.join([PROG, *args])


def offer_resume() -> None:
    """Declare that the running command can be continued with ``--resume`` if interrupted."""
    global _offered
    _offered = resume_command()


def withdraw_resume() -> None:
    """The work that could be resumed is over (finished, or nothing was kept)."""
    global _offered
    _offered = None


def interrupted_message() -> str:
    """What an interruption prints: the resume command when the command offered one."""
    if _offered is None:
        return "Interrupted."
    return f"Interrupted; continue with: {_offered}"
