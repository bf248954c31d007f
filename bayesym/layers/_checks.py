"""Argument and input validation shared by the layers (real exceptions, named culprits)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, cast, get_args

import torch
from torch import nn

from bayesym.checks import check_positive_int

__all__ = [
    "PADDING_MODES",
    "PaddingMode",
    "check_padding_mode",
    "check_conv_sizes",
    "check_spatial_sizes",
    "check_feature_map",
    "check_finite_float",
    "check_input_shape",
    "check_kernel_size",
    "check_spatial",
]

PaddingMode = Literal["circular", "zeros", "reflect", "replicate"]
"""How a stride-1 'same' convolution extends the input beyond its border.

* ``"circular"``: periodic (torus) extension, exact equivariance to cyclic shifts;
* ``"zeros"``: zero padding (``nn.Conv2d``'s default);
* ``"reflect"``: mirror without repeating the edge pixel (needs padding < H and < W);
* ``"replicate"``: repeat the edge pixel.
"""

PADDING_MODES: tuple[str, ...] = get_args(PaddingMode)


def check_padding_mode(padding_mode: object, *, owner: str) -> PaddingMode:
    """Return ``padding_mode`` if it is one of :data:`PADDING_MODES`, else raise ValueError."""
    if padding_mode not in PADDING_MODES:
        raise ValueError(
            f"{owner}: padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}"
        )
    return cast(PaddingMode, padding_mode)  # one of PADDING_MODES, checked above


def check_channels(in_channels: object, out_channels: object, *, owner: str) -> tuple[int, int]:
    """Return ``(in_channels, out_channels)`` if both are positive ints, else raise."""
    return (
        check_positive_int(in_channels, name="in_channels", owner=owner),
        check_positive_int(out_channels, name="out_channels", owner=owner),
    )


def check_spatial(spatial: object, *, owner: str) -> tuple[int, int]:
    """Validate a spatial size ``(H, W)`` of two positive ints and return it as a tuple."""
    if not isinstance(spatial, (tuple, list)) or len(spatial) != 2:
        raise ValueError(f"{owner}: spatial must be a pair (H, W), got {spatial!r}")
    height = check_positive_int(spatial[0], name="spatial[0] (H)", owner=owner)
    width = check_positive_int(spatial[1], name="spatial[1] (W)", owner=owner)
    return height, width


def check_kernel_size(kernel_size: object, *, owner: str) -> int:
    """Validate an odd positive (square) kernel size, so that 'same' padding is symmetric."""
    size = check_positive_int(kernel_size, name="kernel_size", owner=owner)
    if size % 2 == 0:
        raise ValueError(
            f"{owner}: kernel_size must be odd (centred filters keep the output grid aligned "
            f"with the input grid), got {size}"
        )
    return size


def check_conv_sizes(
    layer: nn.Module,
    in_channels: object,
    out_channels: object,
    kernel_size: object,
    padding_mode: object,
) -> tuple[int, int, int, PaddingMode]:
    """``(in_channels, out_channels, kernel_size, padding_mode)`` of a convolution, checked.

    Channels are positive ints, the kernel size an odd positive int, the padding mode one of
    :data:`PADDING_MODES`; errors name ``layer``'s class.
    """
    owner = type(layer).__name__
    return (
        *check_channels(in_channels, out_channels, owner=owner),
        check_kernel_size(kernel_size, owner=owner),
        check_padding_mode(padding_mode, owner=owner),
    )


def check_spatial_sizes(
    layer: nn.Module, in_channels: object, out_channels: object, spatial: object
) -> tuple[int, int, tuple[int, int]]:
    """``(in_channels, out_channels, spatial)`` of a layer on ``H x W`` maps, checked.

    Channels are positive ints, ``spatial`` a pair ``(H, W)`` of positive ints; errors name
    ``layer``'s class.
    """
    owner = type(layer).__name__
    return (
        *check_channels(in_channels, out_channels, owner=owner),
        check_spatial(spatial, owner=owner),
    )


def check_finite_float(value: object, *, name: str, owner: str) -> float:
    """Return ``value`` as float if it is a finite real number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{owner}: {name} must be a real number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{owner}: {name} must be finite, got {value}")
    return float(value)


def _describe(owner: object) -> str:
    return owner if isinstance(owner, str) else repr(owner)


def check_input_shape(
    x: object, expected: Sequence[int | str], *, owner: object, what: str = "input"
) -> None:
    """Raise ``ValueError`` unless ``x`` is a tensor of the ``expected`` shape.

    Args:
        x: the input to check.
        expected: one entry per dimension: an int is the required size, a string (``"N"``,
            ``"H"``, ``"?"``, ...) accepts any size and stands for it in the message.
        owner: the layer (its ``repr`` names it in the error message) or a description;
            the ``repr`` is only computed when raising.
        what: what ``x`` should be, for the message ``"{owner}: expected {what} [N, 3, H, W],
            got [2, 4, 5, 5]"`` (a non-tensor is named by its type instead of its shape).
    """
    shape = list(x.shape) if isinstance(x, torch.Tensor) else None
    ok = (
        shape is not None
        and len(shape) == len(expected)
        and all(isinstance(e, str) or e == s for e, s in zip(expected, shape, strict=True))
    )
    if not ok:
        layout = ", ".join(str(e) for e in expected)
        got = type(x).__name__ if shape is None else shape
        raise ValueError(f"{_describe(owner)}: expected {what} [{layout}], got {got}")


def check_feature_map(
    x: object,
    *,
    owner: object,
    channels: int,
    spatial: tuple[int, int] | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Check that ``x`` is a floating feature map ``[N, C, H, W]`` of the expected shape.

    Args:
        x: the input to check.
        owner: the layer (its ``repr`` names it in the error message) or a description;
            the ``repr`` is only computed when raising.
        channels: expected channel count ``C``.
        spatial: expected ``(H, W)``, or None if any size is accepted.
        dtype: the layer's parameter dtype the input must match, or None.

    Returns:
        ``x`` unchanged.

    Raises:
        TypeError: if ``x`` is not a floating-point tensor or has another dtype than ``dtype``.
        ValueError: if the shape does not match.
    """
    if not isinstance(x, torch.Tensor):
        owner = _describe(owner)
        raise TypeError(f"{owner}: expected a torch.Tensor input, got {type(x).__name__}")
    if not x.is_floating_point():
        owner = _describe(owner)
        raise TypeError(f"{owner}: expected a floating-point input, got dtype {x.dtype}")
    height, width = spatial if spatial is not None else ("H", "W")
    check_input_shape(x, ["N", channels, height, width], owner=owner, what="input of shape")
    if dtype is not None and x.dtype != dtype:
        owner = _describe(owner)
        raise TypeError(f"{owner}: input dtype {x.dtype} differs from the parameters' {dtype}")
    return x
