"""Finite groups from Cayley tables, subgroups with explicit embeddings, cosets.

A :class:`FiniteGroup` is given by its Cayley table ``table[a, b] = index of a·b`` on the
elements ``0 .. n-1``. Construction validates the group axioms (closure, identity,
inverses, associativity) with errors that name the group and the offending elements.
A :class:`Subgroup` is a finite group together with its *embedding* into a parent group:
the tuple of parent indices of its elements, in the subgroup's own element order. Its
Cayley table is derived from the parent's, never written by hand.

Every subgroup hierarchy has a *root* (a group without parent). Two groups with the same
root can be compared (:func:`is_subgroup`) and one can be included in the other
(:func:`inclusion`) whatever path of ``parent`` links produced them.

Right cosets follow the EquiNAS paper (Sec. 4.1): for ``H <= G`` the right cosets are
``H g``; :func:`right_coset_representatives` picks one representative per coset (the
identity for ``H`` itself, otherwise the smallest ``G``-index), and every ``g`` is written
uniquely as ``g = h·s`` with ``h ∈ H`` and ``s`` a representative
(:func:`right_coset_decomposition`).

Example:
    >>> z3 = FiniteGroup("Z3", [[0, 1, 2], [1, 2, 0], [2, 0, 1]])
    >>> z3.order, z3.identity, z3.inverse(1), z3.product(2, 2)
    (3, 0, 2, 1)
    >>> trivial = generated_subgroup(z3, [], name="1")
    >>> right_coset_representatives(z3, trivial)
    (0, 1, 2)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import combinations

import torch
from torch import Tensor

__all__ = [
    "FiniteGroup",
    "Subgroup",
    "all_subgroups",
    "check_group_axioms",
    "coset_index",
    "generated_subgroup",
    "inclusion",
    "is_subgroup",
    "right_coset_decomposition",
    "right_coset_representatives",
]

# Associativity is checked in chunks of first factors so that memory stays bounded.
_ASSOCIATIVITY_ENTRIES = 1 << 22


def check_group_axioms(name: str, table: Tensor) -> int:
    """Check that ``table`` is the Cayley table of a group and return its identity.

    Args:
        name: Group name used in error messages.
        table: ``[n, n]`` integer tensor, ``table[a, b] = a·b``.

    Returns:
        The index of the identity element.

    Raises:
        ValueError: If the table is not square, has entries outside ``0 .. n-1``, has no
            identity, is not a Latin square (missing inverses / cancellation), or is not
            associative. The message names the group and a violating tuple of elements.
    """
    if table.dim() != 2 or table.shape[0] != table.shape[1] or table.shape[0] == 0:
        raise ValueError(
            f"group {name!r}: Cayley table must be a non-empty square [n, n], "
            f"got shape {tuple(table.shape)}"
        )
    n = table.shape[0]
    if table.dtype.is_floating_point or table.dtype == torch.bool:
        raise ValueError(f"group {name!r}: Cayley table must hold integers, got {table.dtype}")
    table = table.to(torch.int64)
    if int(table.min()) < 0 or int(table.max()) >= n:
        raise ValueError(
            f"group {name!r}: Cayley table entries must lie in 0..{n - 1} (closure), "
            f"got range {int(table.min())}..{int(table.max())}"
        )
    arange = torch.arange(n)
    left_identities = [e for e in range(n) if torch.equal(table[e], arange)]
    identities = [e for e in left_identities if torch.equal(table[:, e], arange)]
    if not identities:
        raise ValueError(f"group {name!r}: no identity element (no e with e·a = a·e = a)")
    identity = identities[0]
    for axis, label in ((1, "row"), (0, "column")):
        sorted_lines = table.sort(dim=axis).values
        expected = arange.unsqueeze(0) if axis == 1 else arange.unsqueeze(1)
        bad = (sorted_lines != expected).any(dim=axis).nonzero()
        if bad.numel():
            line = int(bad[0])
            raise ValueError(
                f"group {name!r}: {label} {line} of the Cayley table is not a permutation "
                "(an element lacks an inverse or cancellation fails)"
            )
    chunk = max(1, _ASSOCIATIVITY_ENTRIES // (n * n))
    for start in range(0, n, chunk):
        a = arange[start : start + chunk]
        left = table[table[a]]  # [(a·b)·c] indexed [a, b, c]
        right = torch.gather(  # a·(b·c) = table[a, table[b, c]]
            table[a].unsqueeze(1).expand(-1, n, -1),
            2,
            table.unsqueeze(0).expand(a.numel(), -1, -1),
        )
        bad = (left != right).nonzero()
        if bad.numel():
            i, b, c = (int(v) for v in bad[0])
            raise ValueError(
                f"group {name!r}: not associative: (a·b)·c != a·(b·c) for "
                f"(a, b, c) = ({int(a[i])}, {b}, {c})"
            )
    return identity


class FiniteGroup:
    """A finite group given by its Cayley table, elements indexed ``0 .. n-1``.

    Args:
        name: Human-readable name (e.g. ``"D4"``), used in every error message.
        table: ``[n, n]`` nested sequence or integer tensor with ``table[a][b] = a·b``.
        element_names: Optional names of the ``n`` elements (default ``"g0", "g1", ...``).
        validate: Check the group axioms (default). Only skip this for tables that are
            correct by construction and too large for the ``O(n^3)`` associativity check.

    Attributes:
        name: The group's name.
        order: Number of elements ``n = |G|``.
        identity: Index of the identity element.
        element_names: Tuple of ``n`` element names.

    Raises:
        ValueError: If the table violates a group axiom or ``element_names`` has the wrong
            length (messages name the group and the culprit).

    Example:
        >>> z2 = FiniteGroup("Z2", [[0, 1], [1, 0]], element_names=("e", "s"))
        >>> z2.element_name(z2.inverse(1)), z2.cayley_table.tolist()
        ('s', [[0, 1], [1, 0]])
    """

    def __init__(
        self,
        name: str,
        table: Sequence[Sequence[int]] | Tensor,
        element_names: Sequence[str] | None = None,
        *,
        validate: bool = True,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"group name must be a non-empty string, got {name!r}")
        tensor = torch.as_tensor(table).detach().to("cpu")
        if validate:
            identity = check_group_axioms(name, tensor)
        else:
            arange = torch.arange(tensor.shape[0])
            rows = [e for e in range(tensor.shape[0]) if torch.equal(tensor[e], arange)]
            if not rows:
                raise ValueError(f"group {name!r}: no identity element in the Cayley table")
            identity = rows[0]
        tensor = tensor.to(torch.int64).contiguous()
        self.name = name
        self.order = int(tensor.shape[0])
        self.identity = int(identity)
        self._table = tensor
        self._table.requires_grad_(False)
        self._inverses = (tensor == self.identity).to(torch.int64).argmax(dim=1)
        if element_names is None:
            element_names = [f"g{i}" for i in range(self.order)]
        element_names = tuple(element_names)
        if len(element_names) != self.order:
            raise ValueError(
                f"group {name!r}: element_names has {len(element_names)} entries, "
                f"expected {self.order}"
            )
        self.element_names: tuple[str, ...] = element_names

    # --- structure -----------------------------------------------------------------------
    @property
    def cayley_table(self) -> Tensor:
        """``[n, n]`` int64 (CPU) copy of the Cayley table, ``table[a, b] = a·b``."""
        return self._table.clone()

    @property
    def inverses(self) -> Tensor:
        """``[n]`` int64 (CPU) copy of the inverse map, ``inverses[a] = a^-1``."""
        return self._inverses.clone()

    @property
    def parent(self) -> FiniteGroup | None:
        """The group this one is embedded in (``None`` for a root group)."""
        return None

    @property
    def root(self) -> FiniteGroup:
        """The top of the parent chain (``self`` for a root group)."""
        group: FiniteGroup = self
        while group.parent is not None:
            group = group.parent
        return group

    @property
    def root_embedding(self) -> tuple[int, ...]:
        """Root indices of this group's elements, in this group's element order."""
        return tuple(range(self.order))

    def product(self, a: int, b: int) -> int:
        """Index of ``a·b``."""
        return int(self._table[self._check(a), self._check(b)])

    def inverse(self, a: int) -> int:
        """Index of ``a^-1``."""
        return int(self._inverses[self._check(a)])

    def element_name(self, a: int) -> str:
        """Name of element ``a``."""
        return self.element_names[self._check(a)]

    def elements(self) -> range:
        """All element indices ``0 .. n-1``."""
        return range(self.order)

    def __iter__(self):
        return iter(range(self.order))

    def __len__(self) -> int:
        return self.order

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, order={self.order})"

    # Groups are immutable and compared by identity (``group.root is dihedral4()``), so
    # copying a module that holds a group must keep the very same group object.
    def __copy__(self) -> FiniteGroup:
        return self

    def __deepcopy__(self, memo: dict) -> FiniteGroup:
        return self

    def _check(self, a: int) -> int:
        if isinstance(a, Tensor) and a.numel() == 1:
            a = int(a)
        if isinstance(a, bool) or not isinstance(a, int) or not 0 <= a < self.order:
            raise ValueError(
                f"group {self.name!r}: element index must be an int in 0..{self.order - 1}, "
                f"got {a!r}"
            )
        return a


class Subgroup(FiniteGroup):
    """A subgroup ``H <= parent`` with its explicit embedding (a list of parent indices).

    The subgroup's element ``i`` is the parent's element ``embedding[i]``; the Cayley
    table is read off the parent's (``h_i·h_j`` is the position of
    ``embedding[i]·embedding[j]`` in ``embedding``), so the embedding is a group
    homomorphism by construction.

    Args:
        name: Name of the subgroup (e.g. ``"C4"``).
        parent: The enclosing group.
        embedding: Distinct parent indices, closed under the parent's product. Their
            order becomes the subgroup's element order.

    Raises:
        ValueError: Empty or repeated indices, indices out of range, or a subset that is not
            closed under the product (the message names both groups and the product).

    Example:
        >>> z4 = FiniteGroup("Z4", [[(a + b) % 4 for b in range(4)] for a in range(4)])
        >>> z2 = Subgroup("2Z4", z4, [0, 2])
        >>> z2.embedding, z2.cayley_table.tolist()
        ((0, 2), [[0, 1], [1, 0]])
    """

    def __init__(self, name: str, parent: FiniteGroup, embedding: Sequence[int]) -> None:
        if not isinstance(parent, FiniteGroup):
            raise TypeError(f"subgroup {name!r}: parent must be a FiniteGroup, got {parent!r}")
        embedding = tuple(parent._check(int(i)) for i in embedding)
        if not embedding:
            raise ValueError(f"subgroup {name!r} of {parent.name!r}: embedding is empty")
        if len(set(embedding)) != len(embedding):
            raise ValueError(
                f"subgroup {name!r} of {parent.name!r}: embedding {embedding} repeats elements"
            )
        position = {p: i for i, p in enumerate(embedding)}
        table = []
        for a in embedding:
            row = []
            for b in embedding:
                ab = parent.product(a, b)
                if ab not in position:
                    raise ValueError(
                        f"subgroup {name!r} of {parent.name!r} is not closed: "
                        f"{parent.element_name(a)}·{parent.element_name(b)} = "
                        f"{parent.element_name(ab)} is not in it"
                    )
                row.append(position[ab])
            table.append(row)
        names = [parent.element_name(p) for p in embedding]
        # Closure of a finite non-empty subset implies the axioms (inherited from parent).
        super().__init__(name, table, names, validate=False)
        self._parent = parent
        self.embedding: tuple[int, ...] = embedding

    @property
    def parent(self) -> FiniteGroup:
        """The enclosing group."""
        return self._parent

    @property
    def root_embedding(self) -> tuple[int, ...]:
        """Root indices of this subgroup's elements (embeddings composed up the chain)."""
        above = self._parent.root_embedding
        return tuple(above[p] for p in self.embedding)

    def __repr__(self) -> str:
        return f"Subgroup({self.name!r} <= {self._parent.name!r}, order={self.order})"


def _same_root(sub: FiniteGroup, group: FiniteGroup) -> None:
    if sub.root is not group.root:
        raise ValueError(
            f"groups {sub.name!r} and {group.name!r} have different roots "
            f"({sub.root.name!r} vs {group.root.name!r}); they cannot be compared"
        )


def is_subgroup(sub: FiniteGroup, group: FiniteGroup) -> bool:
    """Whether ``sub <= group`` as subsets of their common root group.

    Raises:
        ValueError: If the two groups have different roots.
    """
    _same_root(sub, group)
    return set(sub.root_embedding) <= set(group.root_embedding)


def inclusion(sub: FiniteGroup, group: FiniteGroup) -> Tensor:
    """Indices in ``group`` of the elements of ``sub`` (a homomorphism ``sub -> group``).

    Returns:
        ``[|sub|]`` int64 (CPU): ``group``-index of each element of ``sub``.

    Raises:
        ValueError: If ``sub`` is not a subgroup of ``group`` (names both groups).
    """
    _same_root(sub, group)
    position = {r: i for i, r in enumerate(group.root_embedding)}
    missing = [r for r in sub.root_embedding if r not in position]
    if missing:
        raise ValueError(
            f"{sub.name!r} is not a subgroup of {group.name!r}: it contains "
            f"{group.root.element_name(missing[0])}"
        )
    return torch.tensor([position[r] for r in sub.root_embedding], dtype=torch.int64)


def coset_index(group: FiniteGroup, sub: FiniteGroup) -> int:
    """The index ``[G:H] = |G| / |H|`` (raises ``ValueError`` if ``H`` is not ``<= G``)."""
    inclusion(sub, group)
    return group.order // sub.order


def right_coset_representatives(group: FiniteGroup, sub: FiniteGroup) -> tuple[int, ...]:
    """One representative ``s`` per right coset ``H s`` of ``H = sub`` in ``G = group``.

    The identity represents ``H`` itself; every other coset is represented by its
    smallest ``G``-index. Representatives are returned sorted by the ``G``-index of the
    coset's smallest element, which puts the identity's coset first.

    Returns:
        Tuple of ``[G:H]`` ``G``-indices.
    """
    members = inclusion(sub, group).tolist()
    seen: set[int] = set()
    reps: list[int] = []
    for g in sorted(range(group.order), key=lambda g: (g != group.identity, g)):
        if g in seen:
            continue
        coset = {group.product(h, g) for h in members}
        seen |= coset
        reps.append(group.identity if group.identity in coset else min(coset))
    return tuple(reps)


def right_coset_decomposition(group: FiniteGroup, sub: FiniteGroup) -> tuple[Tensor, Tensor]:
    """Write every ``g ∈ G`` uniquely as ``g = h·s``, ``h ∈ H``, ``s`` a representative.

    Returns:
        ``(h_index, rep_position)``: two ``[|G|]`` int64 tensors; ``h_index[g]`` is the
        ``H``-index of ``h`` and ``rep_position[g]`` the position of ``s`` in
        :func:`right_coset_representatives`.
    """
    members = inclusion(sub, group).tolist()
    reps = right_coset_representatives(group, sub)
    h_index = torch.full((group.order,), -1, dtype=torch.int64)
    rep_position = torch.full((group.order,), -1, dtype=torch.int64)
    for j, s in enumerate(reps):
        for i, h in enumerate(members):
            g = group.product(h, s)
            h_index[g] = i
            rep_position[g] = j
    return h_index, rep_position


def generated_subgroup(
    group: FiniteGroup, generators: Iterable[int], name: str | None = None
) -> Subgroup:
    """The smallest subgroup of ``group`` containing ``generators`` (closure by products).

    Elements are listed in increasing ``group``-index order.

    Args:
        group: The parent group.
        generators: Element indices of ``group`` (may be empty: the trivial subgroup).
        name: Name of the result (default ``"<g1, g2>"`` from the element names).

    Example:
        >>> z6 = FiniteGroup("Z6", [[(a + b) % 6 for b in range(6)] for a in range(6)])
        >>> generated_subgroup(z6, [4]).embedding
        (0, 2, 4)
    """
    generators = [group._check(int(g)) for g in generators]
    elements = {group.identity}
    frontier = [group.identity]
    while frontier:
        new = []
        for a in frontier:
            for g in generators:
                ag = group.product(a, g)
                if ag not in elements:
                    elements.add(ag)
                    new.append(ag)
        frontier = new
    if name is None:
        name = "<" + ", ".join(group.element_name(g) for g in generators) + ">"
    return Subgroup(name, group, sorted(elements))


def all_subgroups(group: FiniteGroup) -> tuple[Subgroup, ...]:
    """Every subgroup of a (small) finite group, by brute force.

    Every subgroup is the join of its cyclic subgroups, so starting from the cyclic
    subgroups and closing under joins finds them all. Cost grows quickly with the
    number of subgroups; meant for groups of order up to a few dozen.

    Returns:
        Subgroups sorted by (order, element indices); named ``"<...>"`` by generators.
    """
    found: dict[frozenset[int], list[int]] = {}
    for g in range(group.order):
        cyclic = generated_subgroup(group, [g])
        found.setdefault(frozenset(cyclic.embedding), [g])
    changed = True
    while changed:
        changed = False
        for (a, gens_a), (b, gens_b) in combinations(list(found.items()), 2):
            if a <= b or b <= a:
                continue
            gens = gens_a + gens_b
            join = frozenset(generated_subgroup(group, gens).embedding)
            if join not in found:
                found[join] = gens
                changed = True
    ordered = sorted(found.items(), key=lambda item: (len(item[0]), sorted(item[0])))
    return tuple(generated_subgroup(group, gens) for _, gens in ordered)
