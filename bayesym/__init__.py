"""bayesym: Bayesian symmetry selection for PyTorch.

Learn which symmetry (translation, rotations, flips, other groups) each layer of a
network should obey, with the Laplace marginal likelihood computed from Kronecker-
factored curvature (package :mod:`curvature`).

Importing any part of bayesym registers its layers' KFAC adapters with :mod:`curvature`
(:mod:`bayesym.kfac`), so ``curvature.compute_kfac`` works on every layer of the zoo.
"""

__version__ = "0.1.0"

from bayesym import kfac as _kfac  # noqa: F401  (registers the KFAC adapters)

__all__ = ["__version__"]
