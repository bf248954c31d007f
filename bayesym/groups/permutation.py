r"""Permutation groups on finite sets (pixel grids, hidden units) and their orbits (AEN).

A :class:`PermutationGroup` is given by *named generators*, each a permutation of
``{0, ..., n-1}`` in the gather convention of :mod:`bayesym.groups.pixel_transforms`:
the generator ``perm`` moves a vector ``v`` to ``v[perm]`` (entry ``i`` of the result is
``v[perm[i]]``). Two groups with the same generator names describe one abstract group
acting on two sets, generator ``k`` acting on both at once; that is how the AEN layers act
on the input pixels and on the hidden units.

Parameter sharing (Ravanbakhsh et al. 2017, AEN Sec. 4): a weight matrix ``W: [m, n]``
between a set acted on by ``P_out`` and one acted on by ``P_in`` is equivariant,
``W (v[perm_in]) = (W v)[perm_out]``, iff ``W[perm_out[i], perm_in[j]] = W[i, j]`` for every
generator, i.e. iff ``W`` is constant on the orbits of the pairs ``(i, j)`` under
``(i, j) -> (perm_out[i], perm_in[j])``. :func:`pair_orbits` finds those orbits by applying
**only the generators** (never the group closure), as AEN's Alg. 1; by AEN Thm. 1 this
gives the orbits of the whole generated group.

Example:
    >>> group = grid_group(["hflip"], (2, 2))
    >>> pair_orbits(group, group).count  # 16 pairs, none fixed by a flip of a 2-wide grid
    8
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor

from bayesym.checks import is_positive_int
from bayesym.groups.pixel_transforms import pixel_permutation, resolve_transforms

__all__ = [
    "PairOrbits",
    "PermutationGroup",
    "grid_group",
    "grid_pair_orbits",
    "orbit_labels",
    "pair_orbits",
]


def _check_permutation(perm: object, *, degree: int, name: str) -> Tensor:
    if not isinstance(perm, Tensor):
        raise TypeError(f"PermutationGroup: generator {name!r} must be a tensor, got {type(perm)}")
    if perm.dtype != torch.int64 or perm.dim() != 1:
        raise ValueError(
            f"PermutationGroup: generator {name!r} must be a 1-D int64 tensor, got dtype "
            f"{perm.dtype} and shape {list(perm.shape)}"
        )
    if perm.numel() != degree:
        raise ValueError(
            f"PermutationGroup: generator {name!r} has length {perm.numel()}, expected {degree}"
        )
    if not torch.equal(perm.sort().values, torch.arange(degree, device=perm.device)):
        raise ValueError(
            f"PermutationGroup: generator {name!r} is not a permutation of 0..{degree - 1}"
        )
    return perm.cpu()


@dataclass(frozen=True, eq=False)
class PermutationGroup:
    """A group of permutations of ``{0, ..., degree-1}`` given by named generators.

    Attributes:
        degree: size ``n`` of the set acted on.
        names: generator names (unique), e.g. transformation names of the pixel table.
        generators: one int64 ``[n]`` gather permutation per name (CPU).

    Equality is identity (the generators are tensors); compare ``names`` and
    ``generators`` explicitly if needed.

    Raises:
        ValueError: for duplicate names, a count mismatch, or a generator that is not a
            permutation of ``0..n-1`` (the message names the generator).

    Example:
        >>> g = PermutationGroup(3, ("cycle",), (torch.tensor([1, 2, 0]),))
        >>> g.order(), g.point_orbits().tolist()
        (3, [0, 0, 0])
    """

    degree: int
    names: tuple[str, ...]
    generators: tuple[Tensor, ...]

    def __post_init__(self) -> None:
        if not is_positive_int(self.degree):
            raise ValueError(
                f"PermutationGroup: degree must be a positive int, got {self.degree!r}"
            )
        names = tuple(self.names)
        generators = tuple(self.generators)
        if len(names) != len(generators):
            raise ValueError(
                f"PermutationGroup: {len(names)} names {names} but {len(generators)} generators"
            )
        if len(set(names)) != len(names):
            raise ValueError(f"PermutationGroup: generator names must be unique, got {names}")
        checked = tuple(
            _check_permutation(perm, degree=self.degree, name=name)
            for name, perm in zip(names, generators, strict=True)
        )
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "generators", checked)

    @classmethod
    def trivial(cls, degree: int, names: Sequence[str] = ()) -> PermutationGroup:
        """The group acting trivially: every named generator is the identity.

        Used for units nothing acts on (e.g. class logits), so that a layer into them is
        *invariant* to the generators acting on its input.
        """
        identity = torch.arange(degree)
        return cls(degree, tuple(names), tuple(identity.clone() for _ in names))

    def elements(self, max_order: int = 100_000) -> Tensor:
        """Brute-force closure: every group element as a permutation, ``[|G|, n]``.

        Breadth-first over group elements (products with generators until closed); the
        identity comes first. Meant for small groups and tests.

        Args:
            max_order: give up beyond this many elements.

        Raises:
            ValueError: if the group has more than ``max_order`` elements.
        """
        identity = torch.arange(self.degree)
        seen = {tuple(identity.tolist())}
        frontier = [identity]
        found = [identity]
        while frontier:
            next_frontier = []
            for element in frontier:
                for generator in self.generators:
                    product = element[generator]  # generator first, then element
                    key = tuple(product.tolist())
                    if key not in seen:
                        seen.add(key)
                        found.append(product)
                        next_frontier.append(product)
                        if len(found) > max_order:
                            raise ValueError(
                                f"PermutationGroup{self.names}: more than {max_order} elements"
                            )
            frontier = next_frontier
        return torch.stack(found)

    def order(self, max_order: int = 100_000) -> int:
        """``|G|`` by brute-force closure (see :meth:`elements`)."""
        return self.elements(max_order).shape[0]

    def point_orbits(self) -> Tensor:
        """Orbit id of every point, ``[n]`` int64, numbered by smallest member."""
        return orbit_labels(self.degree, self.generators)[0]

    def act(self, name: str, values: Tensor) -> Tensor:
        """Apply generator ``name`` to ``values: [..., n]`` (gather along the last axis)."""
        try:
            perm = self.generators[self.names.index(name)]
        except ValueError:
            raise KeyError(f"PermutationGroup: no generator {name!r}; has {self.names}") from None
        if values.shape[-1] != self.degree:
            raise ValueError(
                f"PermutationGroup.act: last axis must have {self.degree} entries, got "
                f"{list(values.shape)}"
            )
        return values[..., perm.to(values.device)]


def grid_group(transforms: str | Iterable[str], spatial: tuple[int, int]) -> PermutationGroup:
    """The permutation group of an ``H x W`` pixel grid generated by named transformations.

    Generators come from the single table :data:`~bayesym.groups.pixel_transforms.PIXEL_TRANSFORMS`
    (so data augmentation and layers agree), in table order.

    Args:
        transforms: an augmentation preset (``"Aug3"``) or transformation names.
        spatial: ``(H, W)``; pixel ``(r, c)`` is point ``r * W + c``.

    Returns:
        The group, of degree ``H * W``.

    Raises:
        KeyError: for an unknown name.
        ValueError: if a transformation is undefined on the grid (e.g. ``rot90`` on 4x6).
    """
    names = resolve_transforms(transforms)
    height, width = spatial
    perms = tuple(pixel_permutation(name, height, width) for name in names)
    return PermutationGroup(height * width, names, perms)


def orbit_labels(num_points: int, maps: Sequence[Tensor]) -> tuple[Tensor, int]:
    """Orbits of the group generated by the permutations ``maps`` of ``num_points`` points.

    The search applies only the given maps: it finds the connected components of the graph
    with an edge ``e -- map(e)`` for every point and map (the Schreier graph). AEN's Alg. 1
    walks this graph breadth-first one orbit at a time in Python; here every orbit is
    explored at once with vectorised min-label propagation along the edges plus pointer
    jumping (each point repeatedly adopts the smallest label among itself and its
    neighbours, then the label of its label), which ends with every point labelled by the
    smallest point of its orbit. Work per round is ``O(len(maps) * num_points)``; pointer
    jumping keeps the number of rounds far below an orbit's length (round counts for AEN's
    layers: docs/benchmarks.md, "Design choices of the curvature engine").

    Args:
        num_points: number of points ``N``.
        maps: int64 ``[N]`` permutations (any device).

    Returns:
        ``(ids, count)``: ``ids: [N]`` int64 orbit ids ``0..count-1``, numbered in the order
        of each orbit's smallest point (the numbering of Alg. 1), and the number of orbits.

    Example:
        >>> ids, count = orbit_labels(4, [torch.tensor([1, 0, 2, 3])])
        >>> ids.tolist(), count
        ([0, 0, 1, 2], 3)
    """
    label = torch.arange(num_points)
    maps = [m.to(label.device) for m in maps]
    while True:
        new = label.clone()
        for succ in maps:
            both = torch.minimum(label, label[succ])
            new = torch.minimum(new, both)
            new.scatter_reduce_(0, succ, both, reduce="amin")
        while True:  # pointer jumping: follow labels to their root
            jumped = new[new]
            if torch.equal(jumped, new):
                break
            new = jumped
        if torch.equal(new, label):
            break
        label = new
    roots, ids = torch.unique(label, return_inverse=True)
    return ids, int(roots.numel())


@dataclass(frozen=True, eq=False)
class PairOrbits:
    """Orbits of (output unit, input unit) pairs: the parameter sharing of an equivariant FC layer.

    Attributes:
        ids: ``[m, n]`` int64, orbit id of pair ``(i, j)`` (``W[i, j] = theta[ids[i, j]]``).
        count: number of orbits = number of free parameters.
        names: generator names the sharing is equivariant to.
    """

    ids: Tensor
    count: int
    names: tuple[str, ...]


def pair_orbits(out_group: PermutationGroup, in_group: PermutationGroup) -> PairOrbits:
    """Orbits of pairs ``(i, j)`` under ``(i, j) -> (perm_out[i], perm_in[j])`` per generator.

    Generator ``k`` of the abstract group acts by ``out_group.generators[k]`` on the ``m``
    output units and ``in_group.generators[k]`` on the ``n`` input units. Only generators
    are applied (see :func:`orbit_labels`); cost ``O(k m n)`` per round with ``k`` the
    number of generators, instead of AEN's ``O(sum_i |G_i| m n)`` or the closure's
    ``O(|G| m n)``.

    Args:
        out_group: action on the output units (degree ``m``).
        in_group: action on the input units (degree ``n``), same generator names.

    Returns:
        The orbits; ``ids: [m, n]``.

    Raises:
        ValueError: if the generator names differ.

    Example:
        >>> rot = grid_group(["rot90"], (2, 2))
        >>> pair_orbits(PermutationGroup.trivial(3, ["rot90"]), rot).ids.tolist()
        [[0, 0, 0, 0], [1, 1, 1, 1], [2, 2, 2, 2]]
    """
    if out_group.names != in_group.names:
        raise ValueError(
            "pair_orbits: output and input actions must have the same generators, got "
            f"{out_group.names} (output) and {in_group.names} (input)"
        )
    m, n = out_group.degree, in_group.degree
    maps = [
        (p_out.view(-1, 1) * n + p_in.view(1, -1)).reshape(-1)
        for p_out, p_in in zip(out_group.generators, in_group.generators, strict=True)
    ]
    ids, count = orbit_labels(m * n, maps)
    return PairOrbits(ids=ids.view(m, n), count=count, names=out_group.names)


def grid_pair_orbits(
    transforms: tuple[str, ...],
    in_spatial: tuple[int, int],
    out_spatial: tuple[int, int] | None = None,
    out_features: int | None = None,
) -> PairOrbits:
    """:func:`pair_orbits` of named pixel transformations between two grids, cached.

    The AEN search builds one network per visited state, and a state's networks (a child,
    its retraining, the returned model) share their layers' orbits; this function keeps the
    orbits of the most recently used layers (:data:`ORBIT_CACHE_SIZE` of them, stored as
    int32) so that rebuilding costs a copy instead of a search. Every call returns fresh
    int64 ``ids`` (a caller may write into them).

    Args:
        transforms: transformation names (table order, as :func:`resolve_transforms` gives).
        in_spatial: input grid ``(H, W)``.
        out_spatial: output grid acted on by the same transformations, or None with
            ``out_features`` for output units nothing acts on.
        out_features: number of trivially acted output units.

    Returns:
        The orbits of :func:`pair_orbits` for ``grid_group(transforms, out_spatial)`` (or the
        trivial group on ``out_features`` units) and ``grid_group(transforms, in_spatial)``.
    """
    ids, count, names = _cached_grid_pair_orbits(
        tuple(transforms), tuple(in_spatial), out_spatial and tuple(out_spatial), out_features
    )
    return PairOrbits(ids=ids.to(torch.int64), count=count, names=names)


ORBIT_CACHE_SIZE = 48
"""Number of layers whose orbits :func:`grid_pair_orbits` keeps (about 16 AEN states)."""


@lru_cache(maxsize=ORBIT_CACHE_SIZE)
def _cached_grid_pair_orbits(
    transforms: tuple[str, ...],
    in_spatial: tuple[int, int],
    out_spatial: tuple[int, int] | None,
    out_features: int | None,
) -> tuple[Tensor, int, tuple[str, ...]]:
    in_group = grid_group(transforms, in_spatial)
    if out_spatial is not None:
        out_group = grid_group(transforms, out_spatial)
    elif out_features is not None:
        out_group = PermutationGroup.trivial(out_features, in_group.names)
    else:
        raise ValueError("grid_pair_orbits: give out_spatial or out_features")
    orbits = pair_orbits(out_group, in_group)
    return orbits.ids.to(torch.int32), orbits.count, orbits.names
