"""The scikit-learn digits (1797 handwritten digits, 8x8, embedded: no files needed).

Pixels: the raw values ``0..16`` are divided by 16, so images lie in ``[0, 1]`` with a
black (0) background. Optional resizing (``size``: nearest neighbour or bilinear,
``align_corners=False``, no antialiasing) and zero padding (``pad`` pixels on every side)
are applied in that order; bilinear resizing stays within ``[0, 1]``.

Splits (fixed sizes): ``test`` = 397 images chosen once with a fixed seed (the same
for every ``split_seed``, so test images never enter training); of the remaining 1400,
``val`` = 200 chosen with ``split_seed`` and ``train`` = the other 1200.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from bayesym.checks import is_positive_int
from bayesym.data.image_dataset import ImageDataset
from bayesym.data.splits import Split, check_split, validation_split
from bayesym.seeds import derive_seed

__all__ = [
    "DIGITS_TEST_SIZE",
    "DIGITS_VAL_SIZE",
    "digits_arrays",
    "load_digits",
    "resize_and_pad",
]

DIGITS_TEST_SIZE = 397
DIGITS_VAL_SIZE = 200
_TEST_CARVE_SEED = 20240101  # fixed forever: changing it would move test images into training

Interpolation = Literal["nearest", "bilinear"]


@lru_cache(maxsize=1)
def _digits_cpu() -> tuple[Tensor, Tensor]:
    from sklearn.datasets import load_digits as sklearn_load_digits

    bunch = sklearn_load_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32).div_(16.0)
    labels = torch.as_tensor(bunch.target, dtype=torch.int64)
    return images, labels


def digits_arrays() -> tuple[Tensor, Tensor]:
    """All 1797 digits: ``(images float32 [1797, 8, 8] in [0, 1], labels int64 [1797])``.

    Fresh copies are returned, so callers may modify them.
    """
    images, labels = _digits_cpu()
    return images.clone(), labels.clone()


def resize_and_pad(
    images: Tensor, size: int | None = None, interpolation: Interpolation = "nearest", pad: int = 0
) -> Tensor:
    """Resize ``images: [N, C, H, W]`` to ``size x size``, then zero-pad ``pad`` on each side.

    Returns:
        ``[N, C, size + 2 pad, size + 2 pad]`` (or ``[N, C, H + 2 pad, W + 2 pad]`` without
        resizing); dtype and device kept.

    Example:
        >>> import torch
        >>> out = resize_and_pad(torch.ones(1, 1, 2, 2), size=4, pad=1)
        >>> tuple(out.shape), float(out.sum())
        ((1, 1, 6, 6), 16.0)
    """
    if images.dim() != 4:
        raise ValueError(f"resize_and_pad: images must be [N, C, H, W], got {tuple(images.shape)}")
    if interpolation not in ("nearest", "bilinear"):
        raise ValueError(
            f"resize_and_pad: interpolation must be 'nearest' or 'bilinear', got {interpolation!r}"
        )
    if size is not None and not is_positive_int(size):
        raise ValueError(f"resize_and_pad: size must be a positive int or None, got {size!r}")
    if not isinstance(pad, int) or pad < 0:
        raise ValueError(f"resize_and_pad: pad must be a non-negative int, got {pad!r}")
    if size is not None and images.shape[-2:] != (size, size):
        if interpolation == "nearest":
            images = F.interpolate(images, size=(size, size), mode="nearest")
        else:
            images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    if pad:
        images = F.pad(images, (pad, pad, pad, pad))
    return images


def load_digits(
    split: Split = "train",
    *,
    size: int | None = None,
    interpolation: Interpolation = "nearest",
    pad: int = 0,
    split_seed: int = 0,
) -> ImageDataset:
    """The digits as an :class:`ImageDataset` with images ``[N, 1, S, S]``.

    ``S = (size or 8) + 2 * pad``; ``N`` is 1200 (train), 200 (val) or 397 (test).

    Args:
        split: ``"train"``, ``"val"`` or ``"test"`` (sizes in the module docstring).
        size: Resize to ``size x size`` first (``None``: keep 8x8).
        interpolation: ``"nearest"`` (blocky, exact copies of pixels) or ``"bilinear"``.
        pad: Zero padding on every side, after resizing.
        split_seed: Seed of the train/validation carve.

    Example:
        >>> ds = load_digits("val", size=16, pad=2)
        >>> len(ds), ds.image_shape, ds.num_classes
        (200, (1, 20, 20), 10)
    """
    check_split(split)
    images, labels = _digits_cpu()
    generator = torch.Generator().manual_seed(derive_seed(_TEST_CARVE_SEED, "digits-test"))
    order = torch.randperm(images.shape[0], generator=generator)
    test_idx = order[:DIGITS_TEST_SIZE].sort().values
    rest = order[DIGITS_TEST_SIZE:].sort().values
    if split == "test":
        index = test_idx
    else:
        train_pos, val_pos = validation_split(len(rest), DIGITS_VAL_SIZE, split_seed)
        index = rest[train_pos if split == "train" else val_pos]
    selected = resize_and_pad(images[index].unsqueeze(1), size, interpolation, pad)
    return ImageDataset(
        selected.contiguous(), labels[index], num_classes=10, name=f"digits/{split}"
    )
