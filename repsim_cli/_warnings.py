"""Warnings repsim emits for degenerate-but-defined input (the value is documented, e.g. NaN)."""


class RepsimWarning(UserWarning):
    """A metric returned its documented value for degenerate input (see the message)."""
