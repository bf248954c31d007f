r"""Layers of bayesym: strict, relaxed and parameter-shared linear maps between feature maps.

Every layer is a plain ``nn.Module`` with its parameters as ``nn.Parameter``\ s in the
shapes of the papers' formulas, a typed ``symmetry`` attribute
(:class:`~bayesym.layers.symmetry.LayerSymmetry`), and real exceptions naming the layer and
the shapes on bad input. ``__all__`` is assembled theme by theme below.
"""

from bayesym.layers.anchors import RBFBasis, default_num_anchors
from bayesym.layers.conv import PADDING_MODES, PaddingMode, SpatialConv2d
from bayesym.layers.dense import SpatialLinear
from bayesym.layers.factored import FactoredLinear
from bayesym.layers.group_conv import GroupConv2d, LiftingConv2d
from bayesym.layers.group_norm import GroupBatchNorm
from bayesym.layers.group_paths import (
    conv_plus_gconv,
    conv_plus_pgconv,
    ffc_plus_conv_plus_gconv,
    ffc_plus_conv_plus_pgconv,
    group_path_sum,
)
from bayesym.layers.group_pool import GroupPool, SymmetricAvgPool2d
from bayesym.layers.homotopic import (
    HomotopicLayer,
    equivariant_projection,
    homotopic_gconv_conv,
    homotopy_parameters,
)
from bayesym.layers.mixed import (
    ARCHITECTURE_PARAMETER_NAME,
    MixedGroupConv2d,
    MixedLiftingConv2d,
    architecture_parameters,
    weight_parameters,
)
from bayesym.layers.morphism import adapt_input_layout, relax, relax_pooled_linear
from bayesym.layers.paths import (
    PLAIN_PATH_KINDS,
    PathSum,
    conv_plus_fc,
    fc_plus_conv,
    ffc_plus_conv,
    path_sum,
    plain_path,
    sfc_plus_sconv,
)
from bayesym.layers.pointwise_group_conv import PointwiseGroupConv2d
from bayesym.layers.registry import (
    LAYER_KINDS,
    LayerKind,
    layer_kind,
    layer_kinds,
    make_layer,
    register_layer_kind,
)
from bayesym.layers.sparse import SparseConv2d, SparseFactoredLinear
from bayesym.layers.subgroup_paths import SubgroupPath, subgroup_path_sum
from bayesym.layers.subsampling import PolyphaseSubsample2d
from bayesym.layers.symmetry import TRIVIAL_SYMMETRY, LayerSymmetry, meet_symmetries

# Symmetry metadata.
__all__ = ["TRIVIAL_SYMMETRY", "LayerSymmetry", "meet_symmetries"]

# Strict and unconstrained layers on [N, C, H, W] feature maps (FC, CONV, F-FC, S-FC, S-CONV).
__all__ += [
    "PADDING_MODES",
    "FactoredLinear",
    "PaddingMode",
    "RBFBasis",
    "SparseConv2d",
    "SparseFactoredLinear",
    "SpatialConv2d",
    "SpatialLinear",
    "default_num_anchors",
]

# Relaxed layers (sums of named paths, also with a GCONV path) and ACE homotopic layers.
__all__ += [
    "HomotopicLayer",
    "PathSum",
    "conv_plus_fc",
    "conv_plus_gconv",
    "conv_plus_pgconv",
    "fc_plus_conv",
    "ffc_plus_conv",
    "ffc_plus_conv_plus_gconv",
    "ffc_plus_conv_plus_pgconv",
    "group_path_sum",
    "PLAIN_PATH_KINDS",
    "path_sum",
    "plain_path",
    "homotopy_parameters",
    "equivariant_projection",
    "homotopic_gconv_conv",
    "sfc_plus_sconv",
]

# Shift-equivariant subsampling.
__all__ += ["PolyphaseSubsample2d"]

# Layer-kind registry.
__all__ += [
    "LAYER_KINDS",
    "LayerKind",
    "layer_kind",
    "layer_kinds",
    "make_layer",
    "register_layer_kind",
]

# Group convolutions over subgroups of D4 on [N, C, |G|, H, W] feature maps.
__all__ += [
    "GroupBatchNorm",
    "GroupConv2d",
    "GroupPool",
    "LiftingConv2d",
    "PointwiseGroupConv2d",
    "SymmetricAvgPool2d",
]

# [G]-mixed layers (EquiNAS_D) and the split of their parameters.
__all__ += [
    "ARCHITECTURE_PARAMETER_NAME",
    "MixedGroupConv2d",
    "MixedLiftingConv2d",
    "architecture_parameters",
    "weight_parameters",
]

# The equivariance relaxation morphism (EquiNAS_E).
__all__ += ["adapt_input_layout", "relax", "relax_pooled_linear"]

# One group-convolution path per subgroup on D4 feature maps (the d4 space's relaxed layers).
__all__ += ["SubgroupPath", "subgroup_path_sum"]
