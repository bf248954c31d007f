"""Kronecker-factored curvature (KFAC of the GGN) for standard and custom layers.

This package is self-contained: it imports nothing from :mod:`bayesym`.

Fit the factors with :func:`compute_kfac`; the result (:class:`KFAC`) gives log-determinants
and effective numbers of parameters with one prior precision per block. New layer types get
KFAC through one :class:`ModuleAdapter` and one :func:`register_adapter` call; the helpers
for writing adapters are in :mod:`curvature.adapters`, factor types in :mod:`curvature.factors`,
the spectral maths in :mod:`curvature.linalg`.
"""

from curvature.adapters import BlockSpec, ForwardResult, InputStatistic, ModuleAdapter
from curvature.blocks import CurvatureBlock, DenseBlock, KroneckerBlock
from curvature.engine import KFACConfig, compute_kfac
from curvature.errors import (
    CurvatureError,
    FactorTooLargeError,
    NonFiniteError,
    UnsupportedModuleError,
)
from curvature.kfac import KFAC
from curvature.likelihoods import CrossEntropy, Gaussian, GGNType, Likelihood, make_likelihood
from curvature.linalg import kron_effective_parameters, kron_logdet
from curvature.registry import register_adapter, supported_modules
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
    # blocks and their spectra
    "BlockSpectra",
    "CurvatureBlock",
    "DenseBlock",
    "KroneckerBlock",
    "kron_effective_parameters",
    "kron_logdet",
    # extension point (the adapter toolkit is curvature.adapters)
    "BlockSpec",
    "ForwardResult",
    "InputStatistic",
    "ModuleAdapter",
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
