"""The one exception type of :mod:`bgrl_werank.data` (its own module, so that the loaders, the raw-file
readers and the split code can all raise it without importing each other)."""

from __future__ import annotations

__all__ = ["DatasetError"]


class DatasetError(Exception):
    """A dataset cannot be loaded or split; the message (one line) says what to do."""
