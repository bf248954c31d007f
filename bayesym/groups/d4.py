"""The dihedral group D4 of the square and its named subgroups C1, C2, C4, D1, D2, D4.

Project convention (the same for data and layers): the element ``(f, r)`` with ``f ∈ {0, 1}`` and
``r ∈ {0, 1, 2, 3}`` is ``g = R^r F^f``, where ``F`` flips the row axis (dim -2) and ``R``
is ``torch.rot90`` on dims (-2, -1); its flat index is ``4 f + r``. Since
``F R F = R^-1``, the product is

    ``(f1, r1)·(f2, r2) = (f1 xor f2, r1 + (-1)^f1 r2 mod 4)``.

Element names: ``e, R, R^2, R^3, F, RF, R^2F, R^3F`` (indices 0..7).

The named subgroups (EquiNAS paper, Sec. 6) are *generated* from the one Cayley table,
with one fixed reflection axis (``F``, the row flip) for D1 and D2:

====  =====================  ===========================
name  generators             elements (D4 indices)
====  =====================  ===========================
C1    (none)                 e (0)
C2    R^2                    e, R^2 (0, 2)
C4    R                      e, R, R^2, R^3 (0..3)
D1    F                      e, F (0, 4)
D2    R^2, F                 e, R^2, F, R^2F (0, 2, 4, 6)
D4    R, F                   all 8
====  =====================  ===========================

Everything downstream (filter banks, channel layouts, relaxation morphisms, mixtures) is
derived from these objects and their right-coset representatives.

Example:
    >>> d4 = dihedral4()
    >>> d4.element_name(d4.product(d4_index(1, 0), d4_index(0, 1)))  # F·R = R^3 F
    'R^3F'
    >>> d4_subgroup("D2").embedding
    (0, 2, 4, 6)
"""

from __future__ import annotations

from functools import cache

from bayesym.groups.finite import FiniteGroup, generated_subgroup

__all__ = [
    "D4_SUBGROUP_NAMES",
    "d4_flip_rotation",
    "d4_index",
    "d4_subgroup",
    "d4_subgroups",
    "dihedral4",
]

D4_SUBGROUP_NAMES: tuple[str, ...] = ("C1", "C2", "C4", "D1", "D2", "D4")
"""Names accepted by :func:`d4_subgroup`, in the order of :func:`d4_subgroups`."""


def d4_index(f: int, r: int) -> int:
    """Flat index ``4 f + (r mod 4)`` of the D4 element ``R^r F^f``.

    Raises:
        ValueError: If ``f`` is not 0 or 1, or ``r`` is not an int.
    """
    if isinstance(f, bool) or f not in (0, 1):
        raise ValueError(f"D4 element (f, r): f must be 0 or 1, got {f!r}")
    if isinstance(r, bool) or not isinstance(r, int):
        raise ValueError(f"D4 element (f, r): r must be an int (taken mod 4), got {r!r}")
    return 4 * f + r % 4


def d4_flip_rotation(index: int) -> tuple[int, int]:
    """``(f, r)`` of the D4 element with flat index ``index`` (inverse of :func:`d4_index`)."""
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < 8:
        raise ValueError(f"D4 element index must be an int in 0..7, got {index!r}")
    return index // 4, index % 4


def _name(f: int, r: int) -> str:
    rotation = {0: "", 1: "R", 2: "R^2", 3: "R^3"}[r]
    name = rotation + ("F" if f else "")
    return name or "e"


@cache
def dihedral4() -> FiniteGroup:
    """The group D4 (order 8) in the project convention; one shared instance."""
    table = []
    for a in range(8):
        f1, r1 = d4_flip_rotation(a)
        row = []
        for b in range(8):
            f2, r2 = d4_flip_rotation(b)
            row.append(d4_index(f1 ^ f2, r1 + (-1) ** f1 * r2))
        table.append(row)
    names = [_name(*d4_flip_rotation(i)) for i in range(8)]
    return FiniteGroup("D4", table, names)


_GENERATORS: dict[str, tuple[tuple[int, int], ...]] = {
    "C1": (),
    "C2": ((0, 2),),
    "C4": ((0, 1),),
    "D1": ((1, 0),),
    "D2": ((0, 2), (1, 0)),
}


@cache
def _subgroup(name: str) -> FiniteGroup:
    d4 = dihedral4()
    if name == "D4":
        return d4
    generators = [d4_index(f, r) for f, r in _GENERATORS[name]]
    return generated_subgroup(d4, generators, name=name)


def d4_subgroup(name: str) -> FiniteGroup:
    """One of the named subgroups of D4 (shared instances: ``is`` comparisons work).

    ``"D4"`` returns :func:`dihedral4` itself; the others are :class:`Subgroup` objects
    whose parent is D4.

    Raises:
        KeyError: For an unknown name; the message lists the valid names.
    """
    if name not in D4_SUBGROUP_NAMES:
        raise KeyError(f"unknown D4 subgroup {name!r}; valid names: {', '.join(D4_SUBGROUP_NAMES)}")
    return _subgroup(name)


def d4_subgroups() -> tuple[FiniteGroup, ...]:
    """The six named subgroups in the order of :data:`D4_SUBGROUP_NAMES`."""
    return tuple(d4_subgroup(name) for name in D4_SUBGROUP_NAMES)
