"""Kronecker-factored curvature (KFAC of the GGN) for standard and custom layers.

This package is self-contained: it imports nothing from :mod:`bayesym`.
"""

__all__: list[str] = []
