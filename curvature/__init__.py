"""Kronecker-factored curvature (KFAC of the GGN) for standard and custom layers.

This package is self-contained: it imports nothing from :mod:`bayesym`.

Fit the factors with :func:`compute_kfac`; the result (:class:`KFAC`) gives log-determinants
and effective numbers of parameters with one prior precision per block. New layer types get
KFAC through one :class:`ModuleAdapter` and one :func:`register_adapter` call.
"""

from curvature.adapters.base import (
    Approx,
    BlockSpec,
    ForwardResult,
    InputStatistic,
    ModuleAdapter,
    block_is_active,
    covariance,
    parameter_tangents,
    patch_covariance,
    project_rows,
    tangent_ggn,
)
from curvature.adapters.conv import Conv2dAdapter, conv2d_patches
from curvature.adapters.conv_covariance import conv_patch_covariance
from curvature.adapters.linear import LinearAdapter
from curvature.blocks import CurvatureBlock, DenseBlock, KroneckerBlock, ParameterSlice
from curvature.engine import KFACConfig, compute_kfac
from curvature.errors import (
    CurvatureError,
    FactorTooLargeError,
    NonFiniteError,
    UnsupportedModuleError,
)
from curvature.factors import BlockDiagonalFactor, DenseFactor, EigenFactor, Factor
from curvature.gram import gram_sum
from curvature.kfac import KFAC, PriorPrecision
from curvature.likelihoods import CrossEntropy, Gaussian, GGNType, Likelihood, make_likelihood
from curvature.linalg import kron_effective_parameters, kron_eigenvalues, kron_logdet
from curvature.registry import ADAPTERS, adapter_for, register_adapter, supported_modules
from curvature.spectra import BlockSpectra

__all__ = [
    # fitting
    "KFAC",
    "KFACConfig",
    "compute_kfac",
    # likelihoods
    "CrossEntropy",
    "GGNType",
    "Gaussian",
    "Likelihood",
    "make_likelihood",
    # blocks and factors
    "BlockDiagonalFactor",
    "CurvatureBlock",
    "DenseBlock",
    "DenseFactor",
    "EigenFactor",
    "Factor",
    "KroneckerBlock",
    "ParameterSlice",
    "BlockSpectra",
    "PriorPrecision",
    # linear algebra
    "kron_effective_parameters",
    "kron_eigenvalues",
    "kron_logdet",
    # extension point
    "ADAPTERS",
    "Approx",
    "BlockSpec",
    "Conv2dAdapter",
    "ForwardResult",
    "InputStatistic",
    "LinearAdapter",
    "ModuleAdapter",
    "adapter_for",
    "conv2d_patches",
    "conv_patch_covariance",
    "block_is_active",
    "covariance",
    "gram_sum",
    "parameter_tangents",
    "patch_covariance",
    "project_rows",
    "tangent_ggn",
    "register_adapter",
    "supported_modules",
    # errors
    "CurvatureError",
    "FactorTooLargeError",
    "NonFiniteError",
    "UnsupportedModuleError",
    # laplace-torch backend (imported lazily: laplace-torch is slow to import)
    "KFACBackend",
]


def __getattr__(name: str):
    if name == "KFACBackend":
        from curvature.laplace_backend import KFACBackend

        return KFACBackend
    raise AttributeError(f"module 'curvature' has no attribute {name!r}")
