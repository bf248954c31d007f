"""Module adapters: how each supported layer type maps to Kronecker-factored blocks.

Everything needed to write an adapter for a new layer type: the :class:`ModuleAdapter` base
with its block specifications and forward results, the covariance and tangent helpers, the
adapters of ``nn.Linear`` and ``nn.Conv2d`` (examples and building blocks), and
:func:`register_adapter`. See ``docs/curvature.md`` ("Adding a layer").
"""

from curvature.adapters import base
from curvature.adapters.base import *
from curvature.adapters.conv import Conv2dAdapter, conv2d_patches
from curvature.adapters.conv_covariance import conv_patch_covariance
from curvature.adapters.linear import LinearAdapter
from curvature.factors import BlockDiagonalFactor, DenseFactor, EigenFactor, Factor
from curvature.gram import gram_sum

__all__ = [
    # factors an adapter returns
    "BlockDiagonalFactor",
    "DenseFactor",
    "EigenFactor",
    "Factor",
    # statistics helpers beyond those of the interface
    "conv_patch_covariance",
    "gram_sum",
    # the built-in adapters
    "Conv2dAdapter",
    "LinearAdapter",
    "conv2d_patches",
]
__all__ += base.__all__  # the interface: ModuleAdapter, its block types and helpers
