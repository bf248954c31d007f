"""Exceptions for user-facing data problems (the CLI prints them as one line)."""

__all__ = ["CorruptDatasetError", "DataError", "DatasetNotFoundError", "UnknownTaskError"]


class DataError(Exception):
    """Base class of the data layer's user-facing errors; messages name the culprit."""


class DatasetNotFoundError(DataError, FileNotFoundError):
    """A dataset file or directory is missing; the message says where and how to get it."""


class CorruptDatasetError(DataError, ValueError):
    """A dataset file exists but is unreadable (bad magic number, wrong dims, truncated)."""


class UnknownTaskError(DataError, ValueError):
    """A task name is not registered; the message lists the registered names."""
