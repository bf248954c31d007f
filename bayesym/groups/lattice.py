"""The subgroup lattice of a family of groups sharing one root group.

:class:`SubgroupLattice` answers the order questions that architecture search asks: which
groups lie below a given one (relaxation targets), which lie between two groups (the
allowed relaxations of one layer when groups must be non-increasing with depth), and
which pairs ``H <= G`` exist (every relaxation morphism to test).

Example:
    >>> lattice = d4_lattice()
    >>> [g.name for g in lattice.between(lower="C2", upper="D4")]
    ['C2', 'C4', 'D2', 'D4']
    >>> [g.name for g in lattice.maximal_subgroups("D4")]
    ['C4', 'D2']
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

from bayesym.groups.d4 import d4_subgroups
from bayesym.groups.finite import FiniteGroup, coset_index, is_subgroup

__all__ = ["SubgroupLattice", "d4_lattice"]


class SubgroupLattice:
    """Partial order ``<=`` on a list of groups with a common root.

    Args:
        groups: Distinct groups (by element set) with one common root; names must be
            unique. Their order is kept in every answer.

    Raises:
        ValueError: Duplicate names, duplicate element sets, or different roots.
    """

    def __init__(self, groups: Sequence[FiniteGroup]) -> None:
        groups = tuple(groups)
        if not groups:
            raise ValueError("SubgroupLattice: needs at least one group")
        names = [g.name for g in groups]
        if len(set(names)) != len(names):
            raise ValueError(f"SubgroupLattice: group names must be unique, got {names}")
        sets = [frozenset(g.root_embedding) for g in groups]
        for g in groups:
            if g.root is not groups[0].root:
                raise ValueError(
                    f"SubgroupLattice: {g.name!r} has root {g.root.name!r}, "
                    f"expected {groups[0].root.name!r}"
                )
        if len(set(sets)) != len(sets):
            raise ValueError(f"SubgroupLattice: two of {names} have the same elements")
        self.groups: tuple[FiniteGroup, ...] = groups
        self._by_name = {g.name: g for g in groups}

    def group(self, name: str | FiniteGroup) -> FiniteGroup:
        """The member called ``name`` (a member itself is returned unchanged).

        Raises:
            KeyError: Unknown name (the message lists the members).
        """
        if isinstance(name, FiniteGroup):
            name = name.name
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(
                f"group {name!r} is not in the lattice; members: {', '.join(self._by_name)}"
            ) from None

    def leq(self, sub: str | FiniteGroup, group: str | FiniteGroup) -> bool:
        """Whether ``sub <= group``."""
        return is_subgroup(self.group(sub), self.group(group))

    def subgroups(self, group: str | FiniteGroup, *, proper: bool = False) -> tuple:
        """Members ``H <= group`` (``H < group`` if ``proper``)."""
        top = self.group(group)
        return tuple(h for h in self.groups if self.leq(h, top) and not (proper and h is top))

    def supergroups(self, group: str | FiniteGroup, *, proper: bool = False) -> tuple:
        """Members ``K >= group`` (``K > group`` if ``proper``)."""
        bottom = self.group(group)
        return tuple(k for k in self.groups if self.leq(bottom, k) and not (proper and k is bottom))

    def between(self, *, lower: str | FiniteGroup, upper: str | FiniteGroup) -> tuple:
        """Members ``H`` with ``lower <= H <= upper`` (empty if ``lower`` is not ``<= upper``)."""
        low, high = self.group(lower), self.group(upper)
        return tuple(h for h in self.groups if self.leq(low, h) and self.leq(h, high))

    def maximal_subgroups(self, group: str | FiniteGroup) -> tuple:
        """Members covered by ``group``: proper subgroups with no member strictly between."""
        top = self.group(group)
        proper = self.subgroups(top, proper=True)
        return tuple(h for h in proper if not any(k is not h and self.leq(h, k) for k in proper))

    def pairs(self) -> tuple[tuple[FiniteGroup, FiniteGroup], ...]:
        """Every pair ``(G, H)`` of members with ``H <= G`` (``H = G`` included)."""
        return tuple((g, h) for g in self.groups for h in self.subgroups(g))

    def index(self, group: str | FiniteGroup, sub: str | FiniteGroup) -> int:
        """``[G:H]`` for members ``H <= G``."""
        return coset_index(self.group(group), self.group(sub))


@cache
def d4_lattice() -> SubgroupLattice:
    """The lattice of the six named subgroups C1, C2, C4, D1, D2, D4 (shared instance)."""
    return SubgroupLattice(d4_subgroups())
