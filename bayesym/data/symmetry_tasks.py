"""Symmetry tasks: fixed, seeded transformations of a base image dataset.

Each builder takes a base :class:`ImageDataset` and a seed and returns a new dataset
computed once: the same seed gives identical tensors, a different seed different ones
(random draws come from a CPU ``torch.Generator``, so results do not depend on the
device). What was drawn for every sample is kept in ``dataset.metadata``:

=====================  ===========================  ========================================
builder                metadata                     image shape ``[C, H, W]`` ->
=====================  ===========================  ========================================
:func:`rotated`        ``angle`` float32 [N] (deg)  unchanged
:func:`d4_transformed` ``d4_element`` int64 [N]     unchanged (square images only)
:func:`translated`     ``shift`` int64 [N, 2]       ``[C, H + 2 s, W + 2 s]``
:func:`quadrant_placed`  ``quadrant`` int64 [N]     ``[C, 2 H, 2 W]``
:func:`aen_transformed`  ``powers`` int64 [N, m]    unchanged
=====================  ===========================  ========================================

The base images are expected to have a zero background (as the unstandardised digits and
Fashion-MNIST do): canvases and areas rotated in from outside are filled with zeros.
Standardise after building (:class:`~bayesym.data.standardization.Standardization`).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor

from bayesym.data.image_dataset import ImageDataset
from bayesym.groups.d4 import d4_subgroup
from bayesym.groups.pixel_transforms import (
    apply_permutation,
    compose_permutations,
    d4_image_action,
    get_transform,
    pixel_permutation,
    resolve_transforms,
    transform_order,
)

__all__ = [
    "QUADRANT_NAMES",
    "aen_transformed",
    "d4_transformed",
    "quadrant_placed",
    "rotate_images",
    "rotated",
    "translated",
]

QUADRANT_NAMES = ("top-left", "top-right", "bottom-left", "bottom-right")
"""Quadrant ``q`` sits in row block ``q // 2`` and column block ``q % 2`` of the canvas."""

_CHUNK = 8192  # bounds the memory of sampling grids and per-sample permutations


def _generator(seed: int) -> torch.Generator:
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    return torch.Generator().manual_seed(seed)


def rotate_images(images: Tensor, angles: Tensor) -> Tensor:
    """Rotate each image about its centre by its angle (degrees, counter-clockwise as shown).

    Bilinear interpolation (``grid_sample``, ``align_corners=False``) with zeros outside
    the image. Rotation is done in pixel units, so non-square images are not sheared. For
    multiples of 90 degrees on square images the result equals ``torch.rot90`` up to
    floating-point rounding of the sampling grid; for other angles it is an approximation
    (interpolation blurs, and corners that leave the frame are lost).

    Args:
        images: ``[N, C, H, W]`` floating point.
        angles: ``[N]`` degrees.

    Returns:
        ``[N, C, H, W]``, dtype and device of ``images``.
    """
    if images.dim() != 4 or angles.shape != images.shape[:1]:
        raise ValueError(
            f"rotate_images: expected images [N, C, H, W] and angles [N], got "
            f"{tuple(images.shape)} and {tuple(angles.shape)}"
        )
    n, _, height, width = images.shape
    radians = torch.deg2rad(angles.to(device=images.device, dtype=images.dtype))
    cos, sin = torch.cos(radians), torch.sin(radians)
    zero = torch.zeros_like(cos)
    # Output pixel (x right, y down, normalised to [-1, 1]) samples the input at R(angle)
    # applied in pixel units: x_in = cos x - sin (H/W) y, y_in = sin (W/H) x + cos y.
    theta = torch.stack(
        [
            torch.stack([cos, -sin * height / width, zero], dim=-1),
            torch.stack([sin * width / height, cos, zero], dim=-1),
        ],
        dim=-2,
    )
    out = torch.empty_like(images)
    for start in range(0, n, _CHUNK):
        part = slice(start, start + _CHUNK)
        grid = F.affine_grid(theta[part], list(images[part].shape), align_corners=False)
        out[part] = F.grid_sample(
            images[part], grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )
    return out


def rotated(base: ImageDataset, seed: int) -> ImageDataset:
    """Rotate every image by an angle drawn uniformly from ``[0, 360)`` degrees.

    The layer-wise equivariance paper's "Rotated MNIST" (App. F.5). Bilinear and therefore
    approximate, see :func:`rotate_images`. Metadata ``angle``: ``[N]`` float32 degrees.
    """
    angles = torch.rand(len(base), generator=_generator(seed), dtype=torch.float64) * 360.0
    angles = torch.remainder(angles.to(torch.float32), 360.0)  # rounding could give 360.0
    images = rotate_images(base.images, angles)
    return base.replace(
        images=images,
        metadata={**base.metadata, "angle": angles.to(base.images.device)},
        name=f"{base.name}+rotated",
    )


def d4_transformed(base: ImageDataset, seed: int, group: str = "D4") -> ImageDataset:
    """Apply a uniformly random element of ``group`` (a D4 subgroup) to every image.

    An exact pixel permutation. The element is drawn uniformly from the subgroup's elements
    (e.g. ``"C4"``: the four rotations by multiples of 90 degrees); D4 element ``e = 4 f + r``
    acts as ``R^r F^f`` through :func:`bayesym.groups.pixel_transforms.d4_image_action`.
    Metadata ``d4_element``: ``[N]`` int64, the D4 index of the element applied.

    Raises:
        ValueError: Non-square images.
        KeyError: An unknown subgroup name (the message lists the valid ones).
    """
    _, height, width = base.image_shape
    if height != width:
        raise ValueError(f"d4_transformed: {group} needs square images, got {height}x{width}")
    subgroup = d4_subgroup(group)
    members = torch.tensor(subgroup.root_embedding, dtype=torch.int64)
    elements = members[torch.randint(len(members), (len(base),), generator=_generator(seed))]
    images = base.images.clone()
    on_device = elements.to(images.device)
    for element in members.tolist():
        mask = on_device == element
        if bool(mask.any()):
            images[mask] = d4_image_action(element // 4, element % 4, base.images[mask])
    suffix = "d4" if group == "D4" else group.lower()
    return base.replace(
        images=images,
        metadata={**base.metadata, "d4_element": on_device},
        name=f"{base.name}+{suffix}",
    )


def translated(base: ImageDataset, seed: int, max_shift: int) -> ImageDataset:
    """Shift every image by random integers on a larger zero canvas (no wrap-around).

    The image is placed on a ``(H + 2 s) x (W + 2 s)`` canvas (``s = max_shift``) with its
    top-left corner at ``(s + dy, s + dx)``; ``dy, dx`` are independent and uniform on
    ``{-s, ..., s}``. The whole image always stays on the canvas. The layer-wise
    equivariance paper's "Translated MNIST" uses ``s = 8`` on 28x28 images (App. F.5).
    Metadata ``shift``: ``[N, 2]`` int64 ``(dy, dx)``, positive = down / right.
    """
    if not isinstance(max_shift, int) or max_shift < 0:
        raise ValueError(f"translated: max_shift must be a non-negative int, got {max_shift!r}")
    n, channels, height, width = base.images.shape
    shifts = torch.randint(-max_shift, max_shift + 1, (n, 2), generator=_generator(seed))
    canvas = base.images.new_zeros(n, channels, height + 2 * max_shift, width + 2 * max_shift)
    codes = (shifts[:, 0] + max_shift) * (2 * max_shift + 1) + (shifts[:, 1] + max_shift)
    for code in codes.unique().tolist():
        index = torch.nonzero(codes == code).squeeze(1).to(base.images.device)
        top = code // (2 * max_shift + 1)
        left = code % (2 * max_shift + 1)
        canvas[index, :, top : top + height, left : left + width] = base.images[index]
    return base.replace(
        images=canvas,
        metadata={**base.metadata, "shift": shifts.to(base.images.device)},
        name=f"{base.name}+translated",
    )


def quadrant_placed(base: ImageDataset, seed: int, *, position_labels: bool) -> ImageDataset:
    """Place every image in one of the four quadrants of a ``2H x 2W`` zero canvas.

    The quadrant task of the layer-wise equivariance paper (section 6.1). Quadrants are
    uniform; ``q = 0, 1, 2, 3`` is top-left, top-right, bottom-left, bottom-right.

    Args:
        base: Dataset with ``num_classes = K``.
        seed: Seed of the quadrant draws.
        position_labels: ``False``: label = class (translation-invariant task, ``K``
            classes). ``True``: label = ``class * 4 + q`` (class and position, ``4 K``
            classes; class names ``"<class> <quadrant>"``).

    Returns:
        Dataset with images ``[N, C, 2H, 2W]`` and metadata ``quadrant``: ``[N]`` int64.
    """
    n, channels, height, width = base.images.shape
    quadrants = torch.randint(4, (n,), generator=_generator(seed)).to(base.images.device)
    canvas = base.images.new_zeros(n, channels, 2 * height, 2 * width)
    for q in range(4):
        index = torch.nonzero(quadrants == q).squeeze(1)
        rows = slice((q // 2) * height, (q // 2 + 1) * height)
        cols = slice((q % 2) * width, (q % 2 + 1) * width)
        canvas[index, :, rows, cols] = base.images[index]
    if position_labels:
        labels = base.labels * 4 + quadrants.to(base.labels.device)
        num_classes = base.num_classes * 4
        class_names = tuple(f"{c} {q}" for c in base.class_names for q in QUADRANT_NAMES)
    else:
        labels, num_classes, class_names = base.labels, base.num_classes, base.class_names
    return base.replace(
        images=canvas,
        labels=labels,
        num_classes=num_classes,
        class_names=class_names,
        metadata={**base.metadata, "quadrant": quadrants},
        name=f"{base.name}+quadrant" + ("-position" if position_labels else ""),
    )


def aen_transformed(base: ImageDataset, seed: int, transforms: str | Iterable[str]) -> ImageDataset:
    """Apply a random element of the group generated by AEN table transformations.

    ``transforms`` is a preset (``"Aug0"`` .. ``"Aug5"``, Tab. 2 of the AEN paper) or a
    list of names from :data:`~bayesym.groups.pixel_transforms.PIXEL_TRANSFORMS`; the
    generators ``G_1, ..., G_m`` are taken in table order. Each sample draws independent
    powers ``k_j`` uniform on ``{0, ..., order(G_j) - 1}`` and is mapped to

        ``x -> G_m^{k_m}( ... G_2^{k_2}(G_1^{k_1}(x)))``    (``G_1`` applied first).

    The result is always an element of the generated group. It is uniform over that group
    when the generators commute; otherwise some elements are more likely than others and
    elements that need longer words (e.g. ``G_1 G_2 G_1``) may never be drawn. (The
    paper's reference code instead applies each generator once with probability 1/2 and
    uses continuous rotations for the data but 90-degree rotations in the network; here
    data and layers share the same table.)

    Returns:
        Dataset with the same image shape; metadata ``powers``: ``[N, m]`` int64 (column
        ``j`` is ``k_j``); ``info["transforms"]`` the generator names.

    Raises:
        KeyError: Unknown preset or transform name.
        ValueError: A transformation undefined on the image grid (e.g. ``rot90`` on a
            non-square image).
    """
    names = resolve_transforms(transforms)
    n, _, height, width = base.images.shape
    for name in names:
        get_transform(name).check_grid(height, width)
    generator = _generator(seed)
    orders = [transform_order(name, height, width) for name in names]
    powers = (
        torch.stack([torch.randint(order, (n,), generator=generator) for order in orders], dim=1)
        if names
        else torch.zeros(n, 0, dtype=torch.int64)
    )
    device = base.images.device
    tables = [
        torch.stack([pixel_permutation(name, height, width, k) for k in range(order)]).to(device)
        for name, order in zip(names, orders, strict=True)
    ]
    powers_dev = powers.to(device)
    images = torch.empty_like(base.images)
    for start in range(0, n, _CHUNK):
        part = slice(start, start + _CHUNK)
        count = base.images[part].shape[0]
        perm = torch.arange(height * width, device=device).expand(count, -1)
        for j, table in enumerate(tables):
            perm = compose_permutations(table[powers_dev[part, j]], perm)
        images[part] = apply_permutation(perm[:, None, :], base.images[part])
    return base.replace(
        images=images,
        metadata={**base.metadata, "powers": powers_dev},
        info={**base.info, "transforms": names},
        name=f"{base.name}+aen",
    )
