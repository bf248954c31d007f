"""The explicit table of supported module types and their KFAC adapters.

Supporting a new layer is one adapter class plus one entry here, made either in this
file or by the layer's package at import time::

    from curvature import register_adapter
    register_adapter(FactoredLinear, FactoredLinearAdapter())

Look-up is by exact type (no subclass discovery): a subclass that overrides ``forward`` could
compute something the parent's adapter does not describe, so it must be registered itself.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from curvature.adapters.base import ModuleAdapter
from curvature.adapters.conv import Conv2dAdapter
from curvature.adapters.linear import LinearAdapter

__all__ = ["ADAPTERS", "adapter_for", "register_adapter", "supported_modules"]

ADAPTERS: dict[type[nn.Module], ModuleAdapter] = {
    nn.Linear: LinearAdapter(),
    nn.Conv2d: Conv2dAdapter(),
}
"""Module type -> adapter. The default registry used by :func:`curvature.compute_kfac`."""


def register_adapter(
    module_type: type[nn.Module],
    adapter: ModuleAdapter,
    *,
    registry: dict[type[nn.Module], ModuleAdapter] | None = None,
    replace: bool = False,
) -> None:
    """Register ``adapter`` for modules of exactly ``module_type``.

    Args:
        module_type: the ``nn.Module`` subclass.
        adapter: its :class:`~curvature.adapters.base.ModuleAdapter`.
        registry: the table to add to (default: :data:`ADAPTERS`).
        replace: allow overriding an existing entry.

    Raises:
        TypeError: if the arguments are not a module type and an adapter.
        ValueError: if ``module_type`` is registered already and ``replace`` is false.
    """
    table = ADAPTERS if registry is None else registry
    if not (isinstance(module_type, type) and issubclass(module_type, nn.Module)):
        raise TypeError(f"module_type must be an nn.Module subclass, got {module_type!r}")
    if not isinstance(adapter, ModuleAdapter):
        raise TypeError(f"adapter must be a ModuleAdapter, got {type(adapter).__name__}")
    existing = table.get(module_type)
    if existing is not None and existing is not adapter and not replace:
        raise ValueError(
            f"{module_type.__name__} already has adapter {type(existing).__name__}; "
            "pass replace=True to override it"
        )
    table[module_type] = adapter


def adapter_for(
    module: nn.Module, registry: Mapping[type[nn.Module], ModuleAdapter] | None = None
) -> ModuleAdapter | None:
    """The adapter registered for ``type(module)`` exactly, or ``None``."""
    return (ADAPTERS if registry is None else registry).get(type(module))


def supported_modules(
    registry: Mapping[type[nn.Module], ModuleAdapter] | None = None,
) -> list[str]:
    """Names of the supported module types (for error messages and docs)."""
    table = ADAPTERS if registry is None else registry
    return sorted(f"{t.__module__}.{t.__qualname__}" for t in table)
