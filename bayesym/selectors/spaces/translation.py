r"""The translation space: which blocks of the paper's 8-block network are convolutional.

Networks are :class:`~bayesym.backbones.LayerwiseBackbone`\\ s (no normalisation layers, LSUV
initialisation) whose 8 block layers are of one layer kind. The static baselines are the strict
kinds (``"conv"``: translation-equivariant, ``"ffc"`` and ``"fc"``: no symmetry); the
relaxed network sums an F-FC and a CONV path per block (the layer-wise paper's proposal), the
residual pathway network a CONV and an FC path with its own per-unit bias (RPP), and the
homotopic network is ``conv(x) + γ ffc(x)`` per block (ACE). Selectable layers are the 8 block
layers ``blocks.k.layer``; the head (1x1 convolutions) is shared by every network.

Example:
    >>> space = TranslationSpace(width=1)
    >>> net = space.build_baseline("conv", DataShape(1, 8, 8, 10))
    >>> [c.symmetry for c in space.describe(net)][:2]
    ['translations', 'translations']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from bayesym.backbones.layerwise import LayerwiseBackbone, LayerwiseBackboneConfig
from bayesym.checks import check_positive_int
from bayesym.layers.paths import PathSum, path_symmetry
from bayesym.layers.registry import layer_kind
from bayesym.selectors.base import LayerChoice
from bayesym.selectors.spaces.base import DataShape, SearchSpace

__all__ = ["TranslationSpace"]


@dataclass(frozen=True)
class TranslationSpace(SearchSpace):
    """Layer kinds of the 8-block backbone (see the module docstring).

    Attributes:
        width: width multiplier ``a`` of the backbone.
        kernel_size: filter size of the convolutional paths.
        static_kinds: layer kinds of the static baselines.
        relaxed_kind: layer kind of the relaxed network (marglik).
        residual_kind: layer kind of the residual pathway network (RPP); its paths are
            ``residual_paths``.
        residual_paths: ``(equivariant path, unconstrained path)`` of ``residual_kind``.
        homotopic_kind: layer kind of the homotopic network (ACE).
    """

    name: ClassVar[str] = "translation"

    width: int = 2
    kernel_size: int = 3
    static_kinds: tuple[str, ...] = ("conv", "ffc", "fc")
    relaxed_kind: str = "ffc+conv"
    residual_kind: str = "conv+fc"
    residual_paths: tuple[str, str] = ("conv", "fc")
    homotopic_kind: str = "homotopic-conv-ffc"

    def __post_init__(self) -> None:
        check_positive_int(self.width, name="width", owner="TranslationSpace")
        check_positive_int(self.kernel_size, name="kernel_size", owner="TranslationSpace")
        for kind in (
            *self.static_kinds,
            self.relaxed_kind,
            self.residual_kind,
            self.homotopic_kind,
        ):
            layer_kind(kind)  # raises for an unknown kind, listing the known ones
            if layer_kind(kind).group_axis:
                raise ValueError(
                    f"TranslationSpace: {kind!r} has a group axis; use the 'd4' space for "
                    "group convolutions"
                )

    def network(self, kind: str, shape: DataShape) -> LayerwiseBackbone:
        """The 8-block backbone of layer kind ``kind`` for data of ``shape``."""
        return LayerwiseBackbone(
            LayerwiseBackboneConfig(
                layer_kind=kind,
                width=self.width,
                in_channels=shape.channels,
                num_classes=shape.num_classes,
                input_size=(shape.height, shape.width),
                kernel_size=self.kernel_size,
            )
        )

    def baselines(self) -> tuple[str, ...]:
        """The static kinds."""
        return self.static_kinds

    def build_baseline(self, name: str, shape: DataShape) -> nn.Module:
        """The backbone whose 8 blocks are all of kind ``name``."""
        self.check_baseline(name)
        return self.network(name, shape)

    def relaxed_network(self, shape: DataShape) -> nn.Module:
        """The backbone of :attr:`relaxed_kind` (F-FC + CONV per block)."""
        return self.network(self.relaxed_kind, shape)

    def residual_network(self, shape: DataShape) -> tuple[nn.Module, str, str]:
        """The backbone of :attr:`residual_kind` and its (equivariant, unconstrained) paths."""
        return (self.network(self.residual_kind, shape), *self.residual_paths)

    def homotopic_network(self, shape: DataShape) -> nn.Module:
        """The backbone of :attr:`homotopic_kind` (``conv + γ ffc`` per block)."""
        return self.network(self.homotopic_kind, shape)

    def describe(self, model: nn.Module) -> tuple[LayerChoice, ...]:
        """Per block layer: its kind (or its paths) and the symmetry it obeys.

        Raises:
            TypeError: if ``model`` is not a backbone of this space.
        """
        if not isinstance(model, LayerwiseBackbone):
            raise TypeError(f"TranslationSpace.describe needs a LayerwiseBackbone, got {model!r}")
        choices = []
        for name, layer in model.named_layers():
            if isinstance(layer, PathSum):
                choice = "+".join(layer.paths)
                symmetry = layer.strict_symmetry().describe()
            else:
                choice = model.config.layer_kind
                symmetry = path_symmetry(layer).describe()
            choices.append(LayerChoice(name, choice, symmetry))
        return tuple(choices)
