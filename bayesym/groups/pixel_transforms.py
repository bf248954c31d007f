"""One table of named pixel permutations of an ``H x W`` grid, shared by data and layers.

Every transformation here is a bijection of pixel positions, stored as a LongTensor
``perm`` of length ``H * W`` in the *gather* convention

    ``out.flatten(-2)[..., i] = img.flatten(-2)[..., perm[i]]``,

i.e. output pixel ``i`` takes its value from input pixel ``perm[i]`` (row-major flat
indices, ``i = row * W + col``). Composition in this convention: applying ``inner``
first and ``outer`` second is the permutation ``inner[outer]``
(:func:`compose_permutations`).

The table :data:`PIXEL_TRANSFORMS` holds the 12 transformations of the AEN paper
(Basu et al., "Group Equivariant Neural Architecture Search via Group Decomposition and
Reinforcement Learning", Tab. 8, ``IAug1`` .. ``IAug12``), in the paper's order. Row 0
is the top row, column 0 the left column; "halves" and "quadrants" are the blocks of
size ``H/2`` x ``W/2``:

====  ==========================  =========================================================
IAug  name                        what it does (``out`` in terms of ``img``)
====  ==========================  =========================================================
1     ``rot90``                   ``torch.rot90(img, 1, dims=(-2, -1))``: a quarter turn,
                                  counter-clockwise as displayed (square grids only)
2     ``hflip``                   mirror left <-> right: ``img.flip(-1)``
3     ``vflip``                   mirror top <-> bottom: ``img.flip(-2)``
4     ``htranslate``              cyclic shift one pixel to the right:
                                  ``img.roll(1, dims=-1)``
5     ``vtranslate``              cyclic shift one pixel down: ``img.roll(1, dims=-2)``
6     ``scramble_rotate``         quadrant cycle: blocks move like a quarter turn
                                  (top-right block -> top-left -> bottom-left ->
                                  bottom-right -> top-right) without turning their content;
                                  on a 2 x 2 grid it equals ``rot90``
7     ``scramble_horizontal``     swap left and right halves (``roll(W/2, dims=-1)``)
8     ``scramble_vertical``       swap top and bottom halves (``roll(H/2, dims=-2)``)
9     ``scramble_left_vertical``  swap top and bottom halves of the left half only
10    ``scramble_right_vertical`` swap top and bottom halves of the right half only
11    ``scramble_top_horizontal`` swap left and right halves of the top half only
12    ``scramble_bottom_horizontal`` swap left and right halves of the bottom half only
====  ==========================  =========================================================

The translation step is one pixel (as in the AEN reference experiments), so ``htranslate``
has order ``W`` and ``vtranslate`` order ``H``. Each transformation ``T`` generates the
cyclic group ``{T^0, ..., T^(k-1)}`` with ``k`` its order (:func:`transform_order`).
Requirements: ``rot90`` needs a square grid; the scrambles need an even size along every
axis they halve (both axes for ``scramble_rotate`` and the restricted swaps).

:data:`AUGMENTATION_PRESETS` are the paper's augmentation arrays ``Aug0`` .. ``Aug5``
(Tab. 2). :func:`d4_image_action` is the project-wide action of the dihedral group D4 on
images: element ``(f, r)`` is ``g = R^r F^f`` with ``F = vflip`` (flip of the row axis,
dim -2) and ``R = rot90`` on dims (-2, -1); its flat index is ``4 f + r``.

Example:
    >>> import torch
    >>> img = torch.arange(4.0).reshape(2, 2)
    >>> apply_transform("scramble_rotate", img)
    tensor([[1., 3.],
            [0., 2.]])
    >>> bool((apply_transform("rot90", img) == torch.rot90(img, 1, dims=(-2, -1))).all())
    True
    >>> transform_order("htranslate", 28, 28), AUGMENTATION_PRESETS["Aug1"]
    (28, ('hflip', 'vflip', 'scramble_horizontal', 'scramble_bottom_horizontal'))
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType

import torch
from torch import Tensor

from bayesym.checks import is_positive_int

__all__ = [
    "AUGMENTATION_PRESETS",
    "PIXEL_TRANSFORMS",
    "TRANSFORM_NAMES",
    "PixelTransform",
    "apply_permutation",
    "apply_transform",
    "compose_permutations",
    "d4_image_action",
    "d4_permutation",
    "get_transform",
    "invert_permutation",
    "permutation_order",
    "pixel_permutation",
    "resolve_transforms",
    "transform_order",
]


# --- index-grid builders ------------------------------------------------------------------
# Each builder receives the index grid ``grid[r, c] = r * W + c`` ([H, W], int64) and
# returns the grid moved exactly as an image would be. Because the permutation is read off
# the moved index grid, ``out[i] = img[perm[i]]`` holds by construction.


def _rot90(grid: Tensor) -> Tensor:
    return torch.rot90(grid, 1, dims=(0, 1))


def _quadrant_cycle(grid: Tensor) -> Tensor:
    height, width = grid.shape
    blocks = grid.reshape(2, height // 2, 2, width // 2)
    # A quarter turn of the 2 x 2 arrangement of blocks (dims 0 and 2), blocks kept upright.
    return torch.rot90(blocks, 1, dims=(0, 2)).reshape(height, width)


def _swap_columns_halves(grid: Tensor) -> Tensor:
    return grid.roll(grid.shape[1] // 2, dims=1)


def _swap_row_halves(grid: Tensor) -> Tensor:
    return grid.roll(grid.shape[0] // 2, dims=0)


def _restricted(region: str) -> Callable[[Tensor], Tensor]:
    def build(grid: Tensor) -> Tensor:
        height, width = grid.shape
        out = grid.clone()
        if region == "left":
            out[:, : width // 2] = _swap_row_halves(grid[:, : width // 2])
        elif region == "right":
            out[:, width // 2 :] = _swap_row_halves(grid[:, width // 2 :])
        elif region == "top":
            out[: height // 2] = _swap_columns_halves(grid[: height // 2])
        else:  # bottom
            out[height // 2 :] = _swap_columns_halves(grid[height // 2 :])
        return out

    return build


def _need_square(height: int, width: int) -> str | None:
    return None if height == width else "a square grid (H == W)"


def _need_even_width(height: int, width: int) -> str | None:
    return None if width % 2 == 0 else "an even width"


def _need_even_height(height: int, width: int) -> str | None:
    return None if height % 2 == 0 else "an even height"


def _need_even_both(height: int, width: int) -> str | None:
    return None if height % 2 == 0 and width % 2 == 0 else "an even height and an even width"


def _no_requirement(height: int, width: int) -> str | None:
    return None


@dataclass(frozen=True)
class PixelTransform:
    """One named bijection of the pixel positions of an ``H x W`` grid.

    Attributes:
        name: Stable identifier (a key of :data:`PIXEL_TRANSFORMS`).
        paper_index: Its row ``IAug<paper_index>`` in Tab. 8 of the AEN paper (1..12).
        description: What the transformation does, in words.
        build: Moves an index grid ``[H, W]`` exactly as an image would be moved.
        requirement: Returns ``None`` when the grid size is allowed, else a phrase naming
            what the grid needs (e.g. ``"a square grid (H == W)"``).
    """

    name: str
    paper_index: int
    description: str
    build: Callable[[Tensor], Tensor]
    requirement: Callable[[int, int], str | None]

    def check_grid(self, height: int, width: int) -> None:
        """Raise ``ValueError`` if this transformation is undefined on ``height x width``."""
        if height < 1 or width < 1:
            raise ValueError(f"pixel transform {self.name!r}: grid {height}x{width} is empty")
        needed = self.requirement(height, width)
        if needed is not None:
            raise ValueError(
                f"pixel transform {self.name!r} needs {needed}; got a {height}x{width} grid"
            )

    def permutation(self, height: int, width: int, power: int = 1) -> Tensor:
        """Gather permutation of ``T^power`` on ``height x width`` (int64 ``[H*W]``, CPU).

        Negative powers give inverses. A fresh tensor is returned on every call.
        """
        return pixel_permutation(self.name, height, width, power)

    def order(self, height: int, width: int) -> int:
        """Smallest ``k >= 1`` with ``T^k = id`` on ``height x width``."""
        return transform_order(self.name, height, width)

    def apply(self, images: Tensor, power: int = 1) -> Tensor:
        """Apply ``T^power`` to ``images: [..., H, W]`` (any dtype and device)."""
        return apply_transform(self.name, images, power)


_TABLE: tuple[PixelTransform, ...] = (
    PixelTransform(
        "rot90", 1, "quarter turn, counter-clockwise as displayed", _rot90, _need_square
    ),
    PixelTransform(
        "hflip",
        2,
        "horizontal flip: mirror left <-> right (dim -1)",
        lambda g: g.flip(1),
        _no_requirement,
    ),
    PixelTransform(
        "vflip",
        3,
        "vertical flip: mirror top <-> bottom (dim -2)",
        lambda g: g.flip(0),
        _no_requirement,
    ),
    PixelTransform(
        "htranslate",
        4,
        "cyclic translation one pixel to the right",
        lambda g: g.roll(1, dims=1),
        _no_requirement,
    ),
    PixelTransform(
        "vtranslate",
        5,
        "cyclic translation one pixel down",
        lambda g: g.roll(1, dims=0),
        _no_requirement,
    ),
    PixelTransform(
        "scramble_rotate",
        6,
        "rotation scramble: quadrants cycle like a quarter turn, content not turned",
        _quadrant_cycle,
        _need_even_both,
    ),
    PixelTransform(
        "scramble_horizontal",
        7,
        "horizontal scramble: swap left and right halves",
        _swap_columns_halves,
        _need_even_width,
    ),
    PixelTransform(
        "scramble_vertical",
        8,
        "vertical scramble: swap top and bottom halves",
        _swap_row_halves,
        _need_even_height,
    ),
    PixelTransform(
        "scramble_left_vertical",
        9,
        "left vertical scramble: swap top and bottom halves of the left half",
        _restricted("left"),
        _need_even_both,
    ),
    PixelTransform(
        "scramble_right_vertical",
        10,
        "right vertical scramble: swap top and bottom halves of the right half",
        _restricted("right"),
        _need_even_both,
    ),
    PixelTransform(
        "scramble_top_horizontal",
        11,
        "top horizontal scramble: swap left and right halves of the top half",
        _restricted("top"),
        _need_even_both,
    ),
    PixelTransform(
        "scramble_bottom_horizontal",
        12,
        "bottom horizontal scramble: swap left and right halves of the bottom half",
        _restricted("bottom"),
        _need_even_both,
    ),
)

PIXEL_TRANSFORMS: Mapping[str, PixelTransform] = MappingProxyType({t.name: t for t in _TABLE})
"""Name -> :class:`PixelTransform`, in the order of Tab. 8 of the AEN paper."""

TRANSFORM_NAMES: tuple[str, ...] = tuple(PIXEL_TRANSFORMS)
"""The 12 names in the paper's order (``IAug1`` .. ``IAug12``)."""


def _preset(bits: str) -> tuple[str, ...]:
    return tuple(
        name for name, bit in zip(TRANSFORM_NAMES, bits.split(), strict=True) if bit == "1"
    )


AUGMENTATION_PRESETS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        # Tab. 2 of the AEN paper: column j marks IAug j.
        "Aug0": _preset("0 0 0 0 0 0 0 0 0 0 0 0"),
        "Aug1": _preset("0 1 1 0 0 0 1 0 0 0 0 1"),
        "Aug2": _preset("1 1 0 0 0 0 0 0 1 1 0 0"),
        "Aug3": _preset("1 0 0 1 0 0 0 1 0 0 1 0"),
        "Aug4": _preset("1 1 1 1 1 1 0 0 0 0 0 0"),
        "Aug5": _preset("1 1 1 1 1 1 1 1 1 1 1 1"),
    }
)
"""The augmentation arrays ``Aug0`` .. ``Aug5`` of Tab. 2 as tuples of names (table order)."""


def get_transform(name: str) -> PixelTransform:
    """Look up a transformation by name.

    Raises:
        KeyError: For an unknown name; the message lists the valid names.
    """
    try:
        return PIXEL_TRANSFORMS[name]
    except (KeyError, TypeError):
        raise KeyError(
            f"unknown pixel transform {name!r}; valid names: {', '.join(TRANSFORM_NAMES)}"
        ) from None


def resolve_transforms(spec: str | Iterable[str]) -> tuple[str, ...]:
    """Turn a preset name (``"Aug3"``) or a list of transform names into names in table order.

    Duplicates are dropped; the result is sorted by position in Tab. 8, so the same set
    of generators always yields the same tuple.

    Raises:
        KeyError: For an unknown preset or transform name (the message lists valid ones).
    """
    if isinstance(spec, str):
        if spec in AUGMENTATION_PRESETS:
            return AUGMENTATION_PRESETS[spec]
        if spec.startswith("Aug"):
            raise KeyError(
                f"unknown augmentation preset {spec!r}; valid: {', '.join(AUGMENTATION_PRESETS)}"
            )
        spec = [spec]
    names = {get_transform(name).name for name in spec}
    return tuple(name for name in TRANSFORM_NAMES if name in names)


def _check_size(height: int, width: int) -> None:
    for label, value in (("height", height), ("width", width)):
        if not is_positive_int(value):
            raise ValueError(f"pixel grid {label} must be a positive int, got {value!r}")


@lru_cache(maxsize=256)
def _base_permutation(name: str, height: int, width: int) -> Tensor:
    transform = get_transform(name)
    _check_size(height, width)
    transform.check_grid(height, width)
    grid = torch.arange(height * width, dtype=torch.int64).reshape(height, width)
    perm = transform.build(grid).reshape(-1).contiguous()
    if perm.shape != (height * width,) or not torch.equal(
        perm.sort().values, torch.arange(height * width)
    ):  # pragma: no cover - guards the table itself
        raise RuntimeError(f"pixel transform {name!r} is not a bijection on {height}x{width}")
    return perm


def invert_permutation(perm: Tensor) -> Tensor:
    """Inverse of a gather permutation: ``apply(inv, apply(perm, x)) == x``.

    Args:
        perm: ``[..., n]`` int64 permutations.

    Returns:
        ``[..., n]`` int64 with ``inv[perm[i]] = i``.
    """
    return torch.argsort(perm, dim=-1)


def compose_permutations(outer: Tensor, inner: Tensor) -> Tensor:
    """Permutation of "apply ``inner`` first, then ``outer``": ``inner[outer]``.

    Works batched: ``outer, inner: [..., n]`` broadcast along the leading dims.

    Example:
        >>> import torch
        >>> rot = pixel_permutation("rot90", 3, 3)
        >>> bool((compose_permutations(rot, rot) == pixel_permutation("rot90", 3, 3, 2)).all())
        True
    """
    outer, inner = torch.broadcast_tensors(outer, inner)
    return torch.gather(inner, -1, outer)


def permutation_order(perm: Tensor) -> int:
    """Order of a permutation (lcm of its cycle lengths), for ``perm: [n]`` int64."""
    if perm.dim() != 1:
        raise ValueError(f"permutation_order: expected a 1-D permutation, got {tuple(perm.shape)}")
    seen = torch.zeros(perm.numel(), dtype=torch.bool)
    targets = perm.tolist()
    order = 1
    for start in range(len(targets)):
        if seen[start]:
            continue
        length, pos = 0, start
        while not seen[pos]:
            seen[pos] = True
            pos = targets[pos]
            length += 1
        order = math.lcm(order, length)
    return order


@lru_cache(maxsize=256)
def _order(name: str, height: int, width: int) -> int:
    return permutation_order(_base_permutation(name, height, width))


def transform_order(name: str, height: int, width: int) -> int:
    """Order ``k`` of the cyclic group a transformation generates on ``height x width``.

    ``k`` is the smallest positive integer with ``T^k = id`` (e.g. 4 for ``rot90`` and
    ``scramble_rotate``, ``W`` for ``htranslate``, 2 for flips and half swaps on grids
    with at least two pixels along the moved axis).

    Raises:
        KeyError: Unknown name.
        ValueError: Transformation undefined on this grid (message names the sizes).
    """
    return _order(get_transform(name).name, height, width)


def pixel_permutation(name: str, height: int, width: int, power: int = 1) -> Tensor:
    """Gather permutation of ``T^power`` on a ``height x width`` grid.

    Args:
        name: A key of :data:`PIXEL_TRANSFORMS`.
        height: ``H >= 1``.
        width: ``W >= 1``.
        power: Any integer; negative powers give inverses, ``0`` the identity.

    Returns:
        ``perm: [H*W]`` int64 on CPU with
        ``out.flatten(-2)[..., i] = img.flatten(-2)[..., perm[i]]``.

    Raises:
        KeyError: Unknown name (lists the valid names).
        ValueError: Transformation undefined on this grid (names the sizes).
    """
    name = get_transform(name).name
    base = _base_permutation(name, height, width)
    k = power % _order(name, height, width)
    perm = torch.arange(height * width, dtype=torch.int64)
    for _ in range(k):
        perm = compose_permutations(base, perm)
    return perm


def apply_permutation(perm: Tensor, images: Tensor) -> Tensor:
    """Move the pixels of ``images: [..., H, W]`` by a gather permutation ``perm: [H*W]``.

    ``perm`` may also be batched, ``[..., H*W]``, broadcasting against the leading dims of
    ``images`` (e.g. ``perm: [N, 1, H*W]`` for ``images: [N, C, H, W]``). The result has
    the dtype and device of ``images``.
    """
    if images.dim() < 2:
        raise ValueError(f"images must be [..., H, W], got shape {tuple(images.shape)}")
    height, width = images.shape[-2:]
    if perm.shape[-1] != height * width:
        raise ValueError(
            f"permutation of length {perm.shape[-1]} does not fit images of shape "
            f"{tuple(images.shape)} (needs H*W = {height * width})"
        )
    perm = perm.to(device=images.device, dtype=torch.int64)
    flat = images.flatten(-2)
    if perm.dim() == 1:
        moved = flat[..., perm]
    else:
        lead = torch.broadcast_shapes(flat.shape[:-1], perm.shape[:-1])
        moved = torch.gather(
            flat.expand(*lead, height * width), -1, perm.expand(*lead, height * width)
        )
    return moved.unflatten(-1, (height, width))


def apply_transform(name: str, images: Tensor, power: int = 1) -> Tensor:
    """Apply ``T^power`` of the named transformation to ``images: [..., H, W]``.

    Raises:
        KeyError: Unknown name.
        ValueError: Transformation undefined on the images' ``H x W`` grid.
    """
    if images.dim() < 2:
        raise ValueError(f"images must be [..., H, W], got shape {tuple(images.shape)}")
    height, width = images.shape[-2:]
    return apply_permutation(pixel_permutation(name, height, width, power), images)


def _check_d4(f: int, r: int) -> tuple[int, int]:
    """Validate a D4 element ``(f, r)``; returns plain ints (``r`` reduced mod 4)."""
    try:
        f_int, r_int = operator.index(f), operator.index(r)
    except TypeError:
        raise ValueError(f"D4 element (f, r) must be integers, got ({f!r}, {r!r})") from None
    if isinstance(f, bool) or isinstance(r, bool) or f_int not in (0, 1):
        raise ValueError(f"D4 element (f, r): f must be 0 or 1 and r an int, got ({f!r}, {r!r})")
    return f_int, r_int % 4


def d4_permutation(f: int, r: int, height: int, width: int) -> Tensor:
    """Gather permutation of the D4 element ``g = R^r F^f`` on a square grid.

    ``F`` is ``vflip`` (row axis, dim -2), ``R`` is ``rot90`` on dims (-2, -1); ``F`` acts
    first. Both come from :data:`PIXEL_TRANSFORMS`, so data and layers agree.

    Args:
        f: 0 or 1.
        r: Any int, taken mod 4.
        height: ``H``.
        width: ``W`` (must equal ``H``).

    Returns:
        ``[H*W]`` int64 on CPU.
    """
    f, r = _check_d4(f, r)
    flip = pixel_permutation("vflip", height, width, f)
    rotation = pixel_permutation("rot90", height, width, r)
    return compose_permutations(rotation, flip)


def d4_image_action(f: int, r: int, images: Tensor) -> Tensor:
    """Act with the D4 element ``g = R^r F^f`` (flat index ``4 f + r``) on images.

    ``g . x = R^r(F^f(x))`` with ``F = x.flip(-2)`` and ``R = torch.rot90(x, 1, (-2, -1))``.
    This is a left action: ``act(g1, act(g2, x)) == act(g1 g2, x)`` with the product
    ``(f1, r1)(f2, r2) = (f1 xor f2, r1 + (-1)^f1 r2 mod 4)``. It is an
    exact pixel permutation.

    Args:
        f: 0 or 1.
        r: Any int, taken mod 4.
        images: ``[..., H, H]``, any dtype and device.

    Returns:
        ``[..., H, H]``, same dtype and device.

    Example:
        >>> import torch
        >>> x = torch.arange(4).reshape(2, 2)
        >>> d4_image_action(1, 1, x)
        tensor([[3, 1],
                [2, 0]])
    """
    if images.dim() < 2:
        raise ValueError(f"images must be [..., H, W], got shape {tuple(images.shape)}")
    height, width = images.shape[-2:]
    return apply_permutation(d4_permutation(f, r, height, width), images)
