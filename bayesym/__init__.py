"""bayesym: Bayesian symmetry selection for PyTorch.

Learn which symmetry (translation, rotations, flips, other groups) each layer of a
network should obey, with the Laplace marginal likelihood computed from Kronecker-
factored curvature (package :mod:`curvature`).

Sub-packages (each re-exports its own API): :mod:`bayesym.groups`, :mod:`bayesym.data`,
:mod:`bayesym.layers`, :mod:`bayesym.backbones`, :mod:`bayesym.adapters`, :mod:`bayesym.marglik`,
:mod:`bayesym.report`.
The most used entry points are re-exported here. Importing any part of bayesym registers
its layers' KFAC adapters with :mod:`curvature`, so ``curvature.compute_kfac`` works on every
layer of the zoo.
"""

__version__ = "0.1.0"

from bayesym import adapters as _adapters  # noqa: F401  (registers the KFAC adapters)
from bayesym.marglik import EpochRecord, MarglikConfig, MarglikTrainer, log_marginal_likelihood
from bayesym.priors import GaussianPrior, parameter_groups
from bayesym.report import EffectiveParameterReport, effective_parameter_report
from bayesym.runs import ModelConfig, RunConfig, run

__all__ = [
    "__version__",
    # priors and the marginal likelihood
    "GaussianPrior",
    "parameter_groups",
    "log_marginal_likelihood",
    # training
    "MarglikConfig",
    "MarglikTrainer",
    "EpochRecord",
    "ModelConfig",
    "RunConfig",
    "run",
    # which symmetry each layer chose
    "EffectiveParameterReport",
    "effective_parameter_report",
]
