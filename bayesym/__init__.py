"""bayesym: Bayesian symmetry selection for PyTorch.

Learn which symmetry (translation, rotations, flips, other groups) each layer of a
network should obey, with the Laplace marginal likelihood computed from Kronecker-
factored curvature (package :mod:`curvature`).
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
