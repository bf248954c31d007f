"""Typed symmetry metadata of a layer: which transformations it is exactly equivariant to.

Every layer of :mod:`bayesym.layers` exposes a ``symmetry`` attribute of type
:class:`LayerSymmetry`. It is *computed from the layer's structure* (e.g. a convolution is
translation-equivariant only with circular padding), never claimed by hand, so that
priors, selectors and reports can ask "which paths of this relaxed layer are strict?"
without inspecting class names.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["TRIVIAL_SYMMETRY", "LayerSymmetry", "meet_symmetries"]


@dataclass(frozen=True)
class LayerSymmetry:
    """The transformations a layer commutes with exactly (escnn-style typed metadata).

    A layer ``f`` with symmetry ``s`` satisfies ``f(T_in x) = T_out f(x)`` for every
    transformation ``T`` described by ``s``:

    * ``translations``: every cyclic shift of the ``H x W`` grid (Eq. (2) of the layer-wise
      equivariance paper with periodic boundaries), acting identically on input and output.
    * ``point_group``: a finite group (name as used by :mod:`bayesym.groups`, e.g. ``"C4"``)
      acting on the grid by rotations/reflections *and* on the group axis of the feature map
      by its regular representation (group convolutions, App. A).
    * ``pixel_permutations``: names of pixel permutations from the shared table
      :mod:`bayesym.groups.pixel_transforms` (AEN parameter sharing), each acting on the
      input grid and on the output grid of the layer.

    Attributes:
        translations: True if equivariant to all cyclic shifts of the spatial grid.
        point_group: name of the point group, or None.
        pixel_permutations: sorted, duplicate-free tuple of transformation names.

    Raises:
        TypeError: if a field has the wrong type.
        ValueError: if ``point_group`` is an empty string or a name is empty.

    Example:
        >>> conv = LayerSymmetry(translations=True)
        >>> gconv = LayerSymmetry(translations=True, point_group="C4")
        >>> conv.meet(gconv) == conv
        True
        >>> LayerSymmetry(pixel_permutations=("vflip", "hflip")).pixel_permutations
        ('hflip', 'vflip')
    """

    translations: bool = False
    point_group: str | None = None
    pixel_permutations: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if not isinstance(self.translations, bool):
            raise TypeError(
                f"LayerSymmetry.translations must be a bool, got {type(self.translations).__name__}"
            )
        if self.point_group is not None:
            if not isinstance(self.point_group, str):
                raise TypeError(
                    "LayerSymmetry.point_group must be a group name (str) or None, got "
                    f"{type(self.point_group).__name__}"
                )
            if not self.point_group:
                raise ValueError("LayerSymmetry.point_group must not be an empty string")
        if isinstance(self.pixel_permutations, str):
            raise TypeError(
                "LayerSymmetry.pixel_permutations must be an iterable of names, got the single "
                f"string {self.pixel_permutations!r}"
            )
        names = tuple(self.pixel_permutations)
        for name in names:
            if not isinstance(name, str) or not name:
                raise ValueError(
                    f"LayerSymmetry.pixel_permutations must hold non-empty strings, got {name!r}"
                )
        object.__setattr__(self, "pixel_permutations", tuple(sorted(set(names))))

    @property
    def is_trivial(self) -> bool:
        """True if the layer is not known to be equivariant to anything but the identity."""
        return not self.translations and self.point_group is None and not self.pixel_permutations

    def meet(self, other: LayerSymmetry) -> LayerSymmetry:
        """What both layers are equivariant to (the symmetry of their sum).

        A sum of two linear maps commutes with every transformation that both commute with,
        so this is a correct (possibly conservative) claim for path sums.

        Args:
            other: the symmetry of the other layer.

        Returns:
            The common symmetry.
        """
        if not isinstance(other, LayerSymmetry):
            raise TypeError(f"meet() needs a LayerSymmetry, got {type(other).__name__}")
        point_group = self.point_group if self.point_group == other.point_group else None
        common = set(self.pixel_permutations) & set(other.pixel_permutations)
        return LayerSymmetry(
            translations=self.translations and other.translations,
            point_group=point_group,
            pixel_permutations=tuple(common),
        )

    def describe(self) -> str:
        """Short human-readable description, e.g. ``"translations x C4"`` or ``"none"``."""
        parts = []
        if self.translations:
            parts.append("translations")
        if self.point_group is not None:
            parts.append(self.point_group)
        if self.pixel_permutations:
            parts.append("{" + ", ".join(self.pixel_permutations) + "}")
        return " x ".join(parts) if parts else "none"


TRIVIAL_SYMMETRY = LayerSymmetry()
"""Symmetry of a layer with no structural equivariance (FC, F-FC, S-FC, zero-padded CONV)."""


def meet_symmetries(symmetries: Iterable[LayerSymmetry]) -> LayerSymmetry:
    """Common symmetry of several layers (see :meth:`LayerSymmetry.meet`).

    Args:
        symmetries: at least one symmetry.

    Returns:
        The symmetry shared by all of them.

    Raises:
        ValueError: if ``symmetries`` is empty.
    """
    items = list(symmetries)
    if not items:
        raise ValueError("meet_symmetries() needs at least one LayerSymmetry")
    result = items[0]
    for item in items[1:]:
        result = result.meet(item)
    return result
