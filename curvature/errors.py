"""Exceptions raised by the curvature engine.

Every error names its culprit (module, parameter, block, shape, dtype or batch) so that a
user can fix the model or the data without reading the engine's code.
"""

__all__ = [
    "CurvatureError",
    "FactorTooLargeError",
    "NonFiniteError",
    "UnsupportedModuleError",
]


class CurvatureError(ValueError):
    """Base class of all errors raised by :mod:`curvature`."""


class UnsupportedModuleError(CurvatureError):
    """A module with trainable parameters has no registered adapter (or an unsupported setting)."""


class NonFiniteError(CurvatureError):
    """NaN or infinity in the data, the model output or a Kronecker factor."""


class FactorTooLargeError(CurvatureError):
    """A Kronecker factor would exceed the configured memory limit."""
