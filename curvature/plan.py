"""Which curvature blocks a model has: its modules matched with adapters and their blocks.

Every module with trainable parameters needs an adapter (looked up by exact type); an adapter
may cover parameters of descendants (dotted names such as ``"basis.omega"``), which then need
no adapter of their own. A block is kept unless its parameters are frozen or excluded (all or
none of them). :func:`block_specs` lists the blocks :func:`curvature.compute_kfac` returns,
without data.

Example:
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    >>> {name: spec.structure for name, spec in block_specs(model, exclude=["2.bias"]).items()}
    {'0.weight': 'kronecker', '0.bias': 'dense', '2.weight': 'kronecker'}
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from torch import nn

from curvature.adapters.base import BlockSpec, ModuleAdapter
from curvature.errors import UnsupportedModuleError
from curvature.registry import ADAPTERS, supported_modules

__all__ = ["PlannedModule", "block_specs", "planned_modules", "qualified_name"]


def qualified_name(module_name: str, attr: str) -> str:
    """``"<module>.<attr>"``, or ``attr`` for the root module (named ``""``)."""
    return f"{module_name}.{attr}" if module_name else attr


def _excluded(qualified: str, exclude: set[str]) -> bool:
    """A parameter is excluded by its own name or the name of any module containing it."""
    parts = qualified.split(".")
    return any(".".join(parts[:i]) in exclude for i in range(1, len(parts) + 1))


def _trainable(model: nn.Module, exclude: set[str]) -> set[str]:
    """Names of the trainable parameters not excluded; refuse unknown ``exclude`` names."""
    known_modules = {name for name, _ in model.named_modules()}
    known_params = {name for name, _ in model.named_parameters()}
    unknown = sorted(exclude - known_modules - known_params)
    if unknown:
        raise ValueError(f"exclude names {unknown} are neither modules nor parameters of the model")
    return {n for n, p in model.named_parameters() if p.requires_grad and not _excluded(n, exclude)}


def _adapter_of(
    mname: str,
    module: nn.Module,
    own: set[str],
    registry: Mapping[type[nn.Module], ModuleAdapter],
) -> ModuleAdapter:
    """The adapter of a module with trainable parameters ``own``, or an error naming it."""
    adapter = registry.get(type(module))
    if adapter is None:
        raise UnsupportedModuleError(
            f"module {mname!r} ({type(module).__name__}) has trainable parameters "
            f"{sorted(own)} but no KFAC adapter is registered for its type. Register one "
            f"with curvature.register_adapter, or exclude it (exclude=[{mname!r}]). "
            f"Supported: {supported_modules(registry)}"
        )
    return adapter


@dataclass(frozen=True)
class PlannedModule:
    """A module, its adapter and its blocks, each with whether it is kept (not excluded).

    Attributes:
        name: the module's qualified name.
        module: the module.
        adapter: its adapter.
        blocks: ``(spec, kept)`` for every block of the adapter, in the adapter's order.
    """

    name: str
    module: nn.Module
    adapter: ModuleAdapter
    blocks: tuple[tuple[BlockSpec, bool], ...]


def _module_blocks(
    mname: str, module: nn.Module, adapter: ModuleAdapter, own: set[str], trainable: set[str]
) -> tuple[tuple[tuple[BlockSpec, bool], ...], set[str]]:
    """The module's blocks with whether each is kept, and the parameters they cover.

    A block is kept iff its parameters are trainable and not excluded: all or none of them.
    """
    covered: set[str] = set()
    blocks = []
    for spec in adapter.blocks(module):
        names = {qualified_name(mname, attr) for attr, _, _ in spec.params}
        kept = names & trainable
        if kept and kept != names:
            raise UnsupportedModuleError(
                f"block {qualified_name(mname, spec.name)!r} couples parameters {sorted(names)}; "
                f"exclude all or none of them (trainable and not excluded: {sorted(kept)})"
            )
        covered |= names
        blocks.append((spec, bool(kept)))
    uncovered = sorted(own - covered)
    if uncovered:
        raise UnsupportedModuleError(
            f"module {mname!r} ({type(module).__name__}): parameters {uncovered} are not "
            f"covered by {type(adapter).__name__}; exclude them explicitly "
            f"(exclude={uncovered})"
        )
    return tuple(blocks), covered


def planned_modules(
    model: nn.Module,
    registry: Mapping[type[nn.Module], ModuleAdapter],
    exclude: Collection[str],
) -> list[PlannedModule]:
    """Match every module with trainable parameters to an adapter, or fail naming it.

    Modules are visited parents first; an adapter may cover parameters of its descendants
    (dotted names such as ``"basis.omega"``), which then need no adapter of their own.
    """
    trainable = _trainable(model, set(exclude))
    covered_by_ancestors: set[str] = set()
    planned = []
    for mname, module in model.named_modules():
        attrs = (attr for attr, _ in module.named_parameters(recurse=False))
        own = {qualified_name(mname, attr) for attr in attrs} & (trainable - covered_by_ancestors)
        if not own:
            continue
        adapter = _adapter_of(mname, module, own, registry)
        blocks, covered = _module_blocks(mname, module, adapter, own, trainable)
        covered_by_ancestors |= covered
        planned.append(PlannedModule(mname, module, adapter, blocks))
    if not planned:
        raise UnsupportedModuleError("the model has no trainable parameters to compute KFAC for")
    return planned


def block_specs(
    model: nn.Module,
    exclude: Collection[str] = (),
    registry: Mapping[type[nn.Module], ModuleAdapter] | None = None,
) -> dict[str, BlockSpec]:
    """The blocks :func:`compute_kfac` returns for ``model``, as their adapters specify them.

    Needs no data: the block names (in the order of the KFAC's blocks) with their structure,
    factor sides and the order of their Kronecker factors (:class:`BlockSpec`). The arguments
    are :func:`compute_kfac`'s.

    Raises:
        UnsupportedModuleError: as :func:`compute_kfac` for a module it cannot handle.

    """
    return {
        qualified_name(p.name, spec.name): spec
        for p in planned_modules(model, ADAPTERS if registry is None else registry, exclude)
        for spec, kept in p.blocks
        if kept
    }
