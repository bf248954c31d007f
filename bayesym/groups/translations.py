"""The group of cyclic translations of an ``H x W`` pixel grid, ``Z_H x Z_W``.

Element ``i·W + j`` is the shift by ``(i, j)``: ``i`` pixels down (dim -2) and ``j``
pixels right (dim -1), acting on ``x: [..., H, W]`` by ``torch.roll(x, (i, j), (-2, -1))``
(see :class:`bayesym.groups.actions.TranslationAction`). The product adds shifts modulo
the grid size. All ``H·W`` elements are present, so a convolution layer can be tested
against every shift; subgroups such as the even shifts come from
:func:`~bayesym.groups.finite.generated_subgroup`.

Example:
    >>> t = translation_group(3, 4)
    >>> t.order, t.shift(t.product(t.element(1, 3), t.element(2, 2)))
    (12, (0, 1))
    >>> t.element_name(t.element(2, 1))
    't(2,1)'
"""

from __future__ import annotations

import torch

from bayesym.checks import is_positive_int
from bayesym.groups.finite import FiniteGroup

__all__ = ["TranslationGroup", "translation_group"]

# Above this order the O(n^3) associativity check is skipped: the table is modular
# addition, a group by construction (tests check the axioms on small grids).
_VALIDATE_UP_TO = 144


class TranslationGroup(FiniteGroup):
    """Cyclic shifts of an ``height x width`` grid (a root group of order ``H·W``).

    Args:
        height: Grid height ``H >= 1``.
        width: Grid width ``W >= 1``.

    Attributes:
        height: ``H``.
        width: ``W``.

    Raises:
        ValueError: Non-positive or non-integer sizes.
    """

    def __init__(self, height: int, width: int) -> None:
        for label, value in (("height", height), ("width", width)):
            if not is_positive_int(value):
                raise ValueError(
                    f"translation group: {label} must be a positive int, got {value!r}"
                )
        dy = torch.arange(height).repeat_interleave(width)
        dx = torch.arange(width).repeat(height)
        table = ((dy[:, None] + dy[None, :]) % height) * width + (dx[:, None] + dx[None, :]) % width
        names = [f"t({i},{j})" for i in range(height) for j in range(width)]
        super().__init__(
            f"T({height}x{width})", table, names, validate=height * width <= _VALIDATE_UP_TO
        )
        self.height = height
        self.width = width

    def element(self, dy: int, dx: int) -> int:
        """Index of the shift by ``dy`` rows and ``dx`` columns (taken modulo the grid)."""
        return (dy % self.height) * self.width + dx % self.width

    def shift(self, element: int) -> tuple[int, int]:
        """``(dy, dx)`` of an element index, ``0 <= dy < H``, ``0 <= dx < W``."""
        element = self._check(element)
        return element // self.width, element % self.width


def translation_group(height: int, width: int) -> TranslationGroup:
    """All ``H·W`` cyclic shifts of an ``height x width`` grid."""
    return TranslationGroup(height, width)
