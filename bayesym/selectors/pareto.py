r"""Pareto fronts of candidates scored by several costs (all minimised), and selection from them.

A cost vector :math:`a` *dominates* :math:`b` if :math:`a_k \le b_k` for every cost and
:math:`a_k < b_k` for at least one. The *front* is the set of candidates no other candidate
dominates.

**Ties and duplicates.** Equal cost vectors do not dominate each other, so every copy of a
non-dominated cost vector is on the front (two candidates with the same validation error and
the same number of parameters are both kept); a copy of a dominated vector is dominated too.

:func:`pareto_select` keeps a population of ``size``: the front first; a front smaller than
``size`` is topped up with the remaining candidates in lexicographic order of their costs
(lowest first cost first: for EquiNAS_E the most accurate), ties by index; a front larger than
``size`` is kept whole (``cap=False``, the EquiNAS paper's rule, so the population can grow
past ``size``) or cut to its ``size`` lexicographically smallest members (``cap=True``). The
returned indices are in lexicographic order of (costs, index), so equal inputs always give the
same population in the same order.

Example:
    >>> costs = [(0.10, 500), (0.20, 100), (0.15, 800), (0.10, 500), (0.30, 50)]
    >>> pareto_front(costs)
    [0, 1, 3, 4]
    >>> pareto_select(costs, 2)
    [0, 3, 1, 4]
    >>> pareto_select(costs, 2, cap=True)
    [0, 3]
    >>> pareto_select(costs[:3], 3)
    [0, 2, 1]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from bayesym.checks import is_positive_int

__all__ = ["dominates", "pareto_front", "pareto_select"]


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether ``a`` dominates ``b`` (no worse in every cost, better in one; minimised)."""
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(
        x < y for x, y in zip(a, b, strict=True)
    )


def _checked(costs: Sequence[Sequence[float]]) -> list[tuple[float, ...]]:
    points = [tuple(float(c) for c in point) for point in costs]
    if points and len({len(p) for p in points}) != 1:
        raise ValueError("pareto_front: every candidate needs the same number of costs")
    for i, point in enumerate(points):
        if not point or not all(math.isfinite(c) for c in point):
            raise ValueError(f"pareto_front: candidate {i} has missing or non-finite costs {point}")
    return points


def pareto_front(costs: Sequence[Sequence[float]]) -> list[int]:
    """Indices (ascending) of the candidates no other candidate dominates (module docstring).

    Raises:
        ValueError: for cost vectors of different lengths, empty or non-finite costs.
    """
    points = _checked(costs)
    return [
        i
        for i, point in enumerate(points)
        if not any(dominates(other, point) for j, other in enumerate(points) if j != i)
    ]


def pareto_select(costs: Sequence[Sequence[float]], size: int, *, cap: bool = False) -> list[int]:
    """A population of ``size`` (or the whole front, if larger and ``cap`` is False).

    See the module docstring for the order, the top-up and the cap.

    Raises:
        ValueError: for ``size < 1`` or bad costs.
    """
    if not is_positive_int(size):
        raise ValueError(f"pareto_select: size must be a positive int, got {size!r}")
    points = _checked(costs)

    def order(indices: Sequence[int]) -> list[int]:
        return sorted(indices, key=lambda i: (points[i], i))

    front = order(pareto_front(points))
    if len(front) >= size:
        return front[:size] if cap else front
    rest = order([i for i in range(len(points)) if i not in set(front)])
    return order(front + rest[: size - len(front)])
