"""KFAC adapters of bayesym's layers, registered with :mod:`curvature` on import.

The table below is the one place that says which layer uses which adapter; adding a layer to
the curvature engine is one adapter plus one line here. ``import bayesym`` registers them.

======================================  =========================================
layer                                   blocks
======================================  =========================================
SpatialLinear (FC)                      ``B ⊗ A`` on the flattened map, bias
SpatialConv2d (CONV)                    ``B ⊗ A`` from patches padded as the layer
SparseConv2d (S-CONV)                   ``B ⊗ (I⊗Φ) A (I⊗Φ)ᵀ``, RBF tangents, bias
FactoredLinear (F-FC)                   ``A_1 ⊗ B_1``, ``B_2 ⊗ A_2`` (block-diagonal A)
SparseFactoredLinear (S-FC)             projected F-FC factors, RBF tangents, bias
LiftingConv2d, GroupConv2d (GCONV)      ``B ⊗ A`` shared over (group element, position)
PointwiseGroupConv2d (paper's GCONV)    ``B ⊗ A`` shared over (copy, position), bias
MixedLiftingConv2d, MixedGroupConv2d    one block per component, logits (exact), bias
OrbitSharedLinear (AEN)                 exact dense blocks of orbit weights / biases
HomotopicLayer (ACE)                    exact dense block of ``γ`` (paths: their own)
GroupBatchNorm (eval mode)              exact dense blocks of weight and bias
======================================  =========================================
"""

from torch import nn

from bayesym.adapters.convolutions import (
    GroupConvAdapter,
    MixedConvAdapter,
    SparseConvAdapter,
    SpatialConvAdapter,
)
from bayesym.adapters.dense import OrbitSharedLinearAdapter, SpatialLinearAdapter
from bayesym.adapters.factored import FactoredLinearAdapter
from bayesym.adapters.gathered import GatherStructure, gather_structure
from bayesym.adapters.pointwise_group_conv import PointwiseGroupConvAdapter
from bayesym.adapters.scalars import GroupBatchNormAdapter, HomotopicAdapter
from bayesym.layers.conv import SpatialConv2d
from bayesym.layers.dense import SpatialLinear
from bayesym.layers.factored import FactoredLinear
from bayesym.layers.group_conv import GroupConv2d, LiftingConv2d
from bayesym.layers.group_norm import GroupBatchNorm
from bayesym.layers.homotopic import HomotopicLayer
from bayesym.layers.mixed import MixedGroupConv2d, MixedLiftingConv2d
from bayesym.layers.pointwise_group_conv import PointwiseGroupConv2d
from bayesym.layers.shared import OrbitSharedLinear
from bayesym.layers.sparse import SparseConv2d, SparseFactoredLinear
from curvature import ModuleAdapter, register_adapter

__all__ = [
    "BAYESYM_ADAPTERS",
    "register_bayesym_adapters",
    # adapters
    "FactoredLinearAdapter",
    "GroupBatchNormAdapter",
    "GroupConvAdapter",
    "HomotopicAdapter",
    "MixedConvAdapter",
    "OrbitSharedLinearAdapter",
    "PointwiseGroupConvAdapter",
    "SparseConvAdapter",
    "SpatialConvAdapter",
    "SpatialLinearAdapter",
    # helpers for new gathered convolutions
    "GatherStructure",
    "gather_structure",
]

_factored, _group, _mixed = FactoredLinearAdapter(), GroupConvAdapter(), MixedConvAdapter()

BAYESYM_ADAPTERS: dict[type[nn.Module], ModuleAdapter] = {
    SpatialLinear: SpatialLinearAdapter(),
    SpatialConv2d: SpatialConvAdapter(),
    SparseConv2d: SparseConvAdapter(),
    FactoredLinear: _factored,
    SparseFactoredLinear: _factored,
    LiftingConv2d: _group,
    GroupConv2d: _group,
    PointwiseGroupConv2d: PointwiseGroupConvAdapter(),
    MixedLiftingConv2d: _mixed,
    MixedGroupConv2d: _mixed,
    OrbitSharedLinear: OrbitSharedLinearAdapter(),
    HomotopicLayer: HomotopicAdapter(),
    GroupBatchNorm: GroupBatchNormAdapter(),
}
"""bayesym layer type -> KFAC adapter."""


def register_bayesym_adapters(registry: dict[type[nn.Module], ModuleAdapter] | None = None) -> None:
    """Register :data:`BAYESYM_ADAPTERS` (idempotent) in ``registry`` (default: the global one)."""
    for module_type, adapter in BAYESYM_ADAPTERS.items():
        register_adapter(module_type, adapter, registry=registry, replace=True)


register_bayesym_adapters()
