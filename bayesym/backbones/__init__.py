"""Ready-made networks: the layer-wise paper's 8-block backbone and AEN's shared MLP."""

from bayesym.backbones.aen_mlp import AENMLP, AENMLPConfig
from bayesym.backbones.equinas import EquiNASBlock, EquiNASConfig, EquiNASNet
from bayesym.backbones.equinas_paths import EquiNASPathNet
from bayesym.backbones.layerwise import (
    LayerwiseBackbone,
    LayerwiseBackboneConfig,
    block_plan,
)

# The 8-block backbone of the layer-wise equivariance paper (App. F.1).
__all__ = ["LayerwiseBackbone", "LayerwiseBackboneConfig", "block_plan"]

# AEN's parameter-shared 784-400-400-10 MLP.
__all__ += ["AENMLP", "AENMLPConfig"]

# The EquiNAS network over subgroups of D4 (fixed-group or [G]-mixed blocks).
__all__ += ["EquiNASBlock", "EquiNASConfig", "EquiNASNet"]

# The norm-free EquiNAS network with one path per subgroup in every block.
__all__ += ["EquiNASPathNet"]
