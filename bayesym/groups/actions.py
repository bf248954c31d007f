"""Actions of finite groups on images and on group feature maps.

Each action is a small callable object ``act(x, element) -> tensor`` that knows its group
(``act.group``) and takes element *indices of that group*. All of them are exact index
permutations (no interpolation), work on any dtype and device, and are left actions:
``act(act(x, b), a) == act(x, a·b)``.

* :class:`ImageAction` — a subgroup of D4 acting on images ``x: [..., H, H]`` through the
  project-wide D4 image action :func:`bayesym.groups.pixel_transforms.d4_image_action`:
  ``(g.x)(p) = x(g^-1 p)``, i.e. ``g.x = R^r(F^f(x))`` for ``g = R^r F^f``.
* :class:`RegularAction` — the regular action on a group feature map
  ``y: [..., |G|, H, W]`` (group axis at dim -3):
  ``(g.y)(h, p) = y(g^-1 h, g^-1 p)``, i.e. ``(g.y)[..., h, :, :] = T_g(y[..., g^-1 h, :, :])``.
* :class:`TranslationAction` — cyclic shifts acting by ``torch.roll`` on dims (-2, -1)
  (images and group feature maps alike).
* :class:`TrivialAction` — ``g.x = x``, the output action of an invariant map.

Example:
    >>> import torch
    >>> from bayesym.groups.d4 import d4_subgroup
    >>> c4 = d4_subgroup("C4")
    >>> act = RegularAction(c4)
    >>> y = torch.randn(1, 2, 4, 3, 3, generator=torch.Generator().manual_seed(0))
    >>> bool(torch.equal(act(act(y, 1), 3), act(y, c4.product(1, 3))))
    True
"""

from __future__ import annotations

from torch import Tensor

from bayesym.groups.d4 import d4_flip_rotation, dihedral4
from bayesym.groups.finite import FiniteGroup, inclusion
from bayesym.groups.pixel_transforms import apply_transform, d4_image_action
from bayesym.groups.translations import TranslationGroup

__all__ = [
    "ImageAction",
    "RegularAction",
    "TranslationAction",
    "TrivialAction",
    "image_transform",
]


def _require_d4_root(group: FiniteGroup, owner: str) -> list[int]:
    if not isinstance(group, FiniteGroup):
        raise TypeError(f"{owner}: group must be a FiniteGroup, got {type(group).__name__}")
    if group.root is not dihedral4():
        raise ValueError(
            f"{owner}: group {group.name!r} must be a subgroup of D4 "
            f"(its root is {group.root.name!r})"
        )
    return inclusion(group, dihedral4()).tolist()


def image_transform(x: Tensor, group: FiniteGroup, element: int) -> Tensor:
    """Apply ``element`` of a subgroup of D4 to images ``x: [..., H, W]``.

    Rotations need square images (``H == W``); flips work on any grid.

    Raises:
        ValueError: If ``group`` is not a subgroup of D4, ``x`` has fewer than 2 dims, or
            a rotation meets a non-square image (the message names the shape).
    """
    d4_indices = _require_d4_root(group, "image_transform")
    f, r = d4_flip_rotation(d4_indices[group._check(element)])
    if x.dim() < 2:
        raise ValueError(f"image_transform: x must be [..., H, W], got {tuple(x.shape)}")
    if r % 2 and x.shape[-2] != x.shape[-1]:
        raise ValueError(
            f"image_transform: element {group.element_name(element)!r} of {group.name} "
            f"rotates by 90 degrees and needs square images, got {tuple(x.shape)}"
        )
    if r == 0:  # pure flips are defined on any grid; the D4 action insists on squares
        return apply_transform("vflip", x, f)
    return d4_image_action(f, r, x)


class ImageAction:
    """A subgroup ``G <= D4`` acting on images ``x: [..., H, H]`` by rotations/flips.

    Args:
        group: ``G``, with root :func:`~bayesym.groups.d4.dihedral4`.

    Raises:
        ValueError: If ``group`` is not a subgroup of D4.
    """

    def __init__(self, group: FiniteGroup) -> None:
        _require_d4_root(group, "ImageAction")
        self.group = group

    def __call__(self, x: Tensor, element: int) -> Tensor:
        """``g.x`` for ``x: [..., H, H]``; same shape, dtype and device."""
        return image_transform(x, self.group, element)

    def __repr__(self) -> str:
        return f"ImageAction({self.group.name})"


class RegularAction:
    """Regular action of ``G <= D4`` on group feature maps ``y: [..., |G|, H, H]``.

    ``(g.y)[..., h, :, :] = T_g(y[..., g^-1 h, :, :])`` where ``T_g`` is the image action
    and ``h`` runs over the element indices of ``G`` (the group axis is dim -3).

    Args:
        group: ``G``, with root D4.

    Raises:
        ValueError: If ``group`` is not a subgroup of D4, or (on call) the group axis of
            ``y`` does not have ``|G|`` entries.
    """

    def __init__(self, group: FiniteGroup) -> None:
        _require_d4_root(group, "RegularAction")
        self.group = group
        self._table = group.cayley_table
        self._inverses = group.inverses

    def __call__(self, y: Tensor, element: int) -> Tensor:
        """``g.y`` for ``y: [..., |G|, H, H]``; same shape, dtype and device."""
        if y.dim() < 3 or y.shape[-3] != self.group.order:
            raise ValueError(
                f"RegularAction({self.group.name}): expected a group feature map "
                f"[..., {self.group.order}, H, W], got {tuple(y.shape)}"
            )
        g = self.group._check(element)
        source = self._table[self._inverses[g]].to(y.device)  # g^-1 h for every h
        return image_transform(y.index_select(-3, source), self.group, g)

    def __repr__(self) -> str:
        return f"RegularAction({self.group.name})"


class TranslationAction:
    """Cyclic shifts of the last two dims: ``g.x = torch.roll(x, (dy, dx), (-2, -1))``.

    Acts on images ``[..., H, W]`` and group feature maps ``[..., |G|, H, W]`` alike.

    Args:
        group: A :class:`~bayesym.groups.translations.TranslationGroup` or a subgroup of
            one (e.g. the even shifts).

    Raises:
        ValueError: If the root of ``group`` is not a translation group, or (on call) the
            grid of ``x`` differs from the group's grid.
    """

    def __init__(self, group: FiniteGroup) -> None:
        if not isinstance(group.root, TranslationGroup):
            raise ValueError(
                f"TranslationAction: group {group.name!r} must be a translation group or "
                f"a subgroup of one (its root is {group.root.name!r})"
            )
        self.group = group
        self._root: TranslationGroup = group.root
        self._root_index = group.root_embedding

    def __call__(self, x: Tensor, element: int) -> Tensor:
        """Shift ``x: [..., H, W]`` cyclically; same shape, dtype and device."""
        root = self._root
        if x.dim() < 2 or tuple(x.shape[-2:]) != (root.height, root.width):
            raise ValueError(
                f"TranslationAction({self.group.name}): expected [..., {root.height}, "
                f"{root.width}], got {tuple(x.shape)}"
            )
        dy, dx = root.shift(self._root_index[self.group._check(element)])
        return x.roll((dy, dx), dims=(-2, -1))

    def __repr__(self) -> str:
        return f"TranslationAction({self.group.name})"


class TrivialAction:
    """``g.x = x`` for every element: the output action of an invariant map.

    Args:
        group: Optional group the elements belong to (only used to name elements).
    """

    def __init__(self, group: FiniteGroup | None = None) -> None:
        self.group = group

    def __call__(self, x: Tensor, element: int) -> Tensor:
        """Return ``x`` unchanged."""
        return x

    def __repr__(self) -> str:
        return "TrivialAction()"
