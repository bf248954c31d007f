"""How independent candidates are trained: one small interface, serial by default.

Selectors that train many independent networks (static baselines, EquiNAS children, AEN
children, seeds) never loop over them themselves: they call
``executor.map(fn, items, shared=...)``, where ``fn`` is a module-level function (so it can be
sent to another process) called as ``fn(shared, item)``, ``shared`` is what every call needs
(e.g. the data splits; sent once) and each ``item`` describes one candidate with its own seed.
Results come back in the order of ``items`` and must not depend on the executor, so a
distributed executor can replace :class:`SerialExecutor` without touching any selector.
Budgets are charged by the selector before it submits the candidates, never by the workers.

Example:
    >>> def square(offset, x):
    ...     return x * x + offset
    >>> SerialExecutor().map(square, [1, 2, 3], shared=10)
    [11, 14, 19]
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

__all__ = ["CandidateExecutor", "CandidateFailed", "SerialExecutor"]

Item = TypeVar("Item")
Result = TypeVar("Result")


class CandidateExecutor(ABC):
    """Runs ``fn(shared, item)`` for every item and returns the results in order.

    Subclasses implement :meth:`run_all`; :meth:`map` holds them to the contract (one result
    per item, in order, nothing dropped).
    """

    name: str = "executor"

    def map(
        self,
        fn: Callable[[Any, Item], Result],
        items: Sequence[Item],
        *,
        shared: Any = None,
    ) -> list[Result]:
        """``[fn(shared, item) for item in items]``, possibly in parallel elsewhere.

        Raises:
            CandidateFailed: if a candidate fails after the executor's retries (the message
                names the candidate), or the executor returned a result for other than every
                candidate; no result is silently dropped.
        """
        items = list(items)
        results = self.run_all(fn, items, shared) if items else []
        if len(results) != len(items):
            raise CandidateFailed(
                f"{type(self).__name__} returned {len(results)} results for {len(items)} candidates"
            )
        return results

    @abstractmethod
    def run_all(self, fn: Callable[[Any, Item], Result], items: list[Item], shared: Any) -> list:
        """The results of ``fn(shared, item)`` for every item of a non-empty list, in order."""


class CandidateFailed(RuntimeError):
    """A candidate could not be trained (after the executor's retries)."""


class SerialExecutor(CandidateExecutor):
    """Trains the candidates one after the other in this process (the default)."""

    name = "serial"

    def run_all(self, fn: Callable[[Any, Item], Result], items: list[Item], shared: Any) -> list:
        """``[fn(shared, item) for item in items]``."""
        return [fn(shared, item) for item in items]
