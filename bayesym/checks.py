"""Checks of single argument values shared by every package (real exceptions, named culprits).

A positive int is an ``int`` of at least 1 that is not a ``bool`` (``True`` is an ``int`` to
Python, never a count to a user).

Example:
    >>> is_positive_int(3), is_positive_int(0), is_positive_int(True), is_positive_int(2.0)
    (True, False, False, False)
    >>> check_positive_int(0, name="width", owner="MyNet")
    Traceback (most recent call last):
        ...
    ValueError: MyNet: width must be a positive int, got 0
"""

from __future__ import annotations

__all__ = ["check_positive_int", "is_positive_int"]


def is_positive_int(value: object) -> bool:
    """Whether ``value`` is an ``int`` (not a ``bool``) of at least 1."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def check_positive_int(value: object, *, name: str, owner: str) -> int:
    """Return ``value`` if it is a positive int, else raise naming ``owner`` and ``name``.

    Raises:
        TypeError: ``value`` is not an ``int`` (or is a ``bool``).
        ValueError: ``value < 1``.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{owner}: {name} must be an int, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{owner}: {name} must be a positive int, got {value!r}")
    return value
