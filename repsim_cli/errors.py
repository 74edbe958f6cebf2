"""Typed errors of the repsim library.

Every error subclasses :class:`RepsimError` and, where one fits, the matching builtin, so library users
can catch either. Messages name the file, the layer and the problem; the CLI prints them as one
``Error: ...`` line (see ``repsim_cli.cli._errors``).
"""

from __future__ import annotations


class RepsimError(Exception):
    """Root of every error repsim raises on purpose (bad input, bad data, budget)."""


class StoreError(RepsimError, OSError):
    """A file is missing, is not a repsim store, or is incomplete."""


class LayerNotFoundError(RepsimError, KeyError):
    """A layer name or pattern matches nothing in a store."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ShapeMismatchError(RepsimError, ValueError):
    """Two inputs disagree on the number of samples, the sample ids or a shape."""


class DataError(RepsimError, ValueError):
    """A layer holds data a metric cannot use (NaN/Inf, constant, too few samples)."""


class UnknownMetricError(RepsimError, KeyError):
    """A metric name is not in the registry, or a parameter is not one of its parameters."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class MetricParameterError(RepsimError, ValueError):
    """A metric parameter has a value the metric does not accept."""


class BudgetError(RepsimError, MemoryError):
    """The work cannot be done within the memory budget."""


class ResultsError(RepsimError, ValueError):
    """A results file is missing, malformed, or disagrees with another (merge)."""


class OutputError(RepsimError, OSError):
    """An output cannot be written: its folder is missing or read-only, or the disk is full."""


class OutputIsInputError(RepsimError, ValueError):
    """An output path names one of the command's inputs (writing it would destroy that input).

    A usage error: the command line exits with status 2 (``exit_code``).
    """

    exit_code = 2


class OutputLockedError(RepsimError):
    """Another process holds the lock of an output (it is writing it now)."""


class DiskFullError(StoreError):
    """The file system ran out of space while writing; the message says what was left behind."""


class CorruptStoreError(StoreError):
    """A store's data is damaged: a missing or unreadable chunk, or rows that no longer match
    their recorded content digest."""


class ContentMismatchError(RepsimError, ValueError):
    """Work to be reused (a resume journal, a partial store, shards) was made from other content
    or other settings than the current run's."""
