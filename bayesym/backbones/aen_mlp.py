"""AEN's parameter-shared MLP (784-400-400-10 in the paper; Basu et al., Sec. 5).

Every linear layer is an :class:`~bayesym.layers.shared.OrbitSharedLinear` equivariant to
the selected named transformations of :mod:`bayesym.groups.pixel_transforms`:

* input units: the ``H x W`` image pixels (28 x 28);
* hidden units: each hidden layer's units form a grid acted on by the same transformations
  applied to an image of that size. The default grid is the input grid, on which every
  transformation acts with the same order as on the input, so no weight is forced to be
  periodic; the paper's 400 units (``hidden_spatial=(20, 20)``, the AEN reference's grid
  structure) force periodic weights for the translations of a 28x28 input, and the layers
  warn (:class:`~bayesym.layers.shared.PeriodicSharingWarning`);
* output units (class logits): nothing acts on them, so the last layer is invariant.

With pointwise ReLUs in between the network is therefore exactly *invariant* to every
selected transformation (and to the group they generate). With no transformation selected
it is a plain MLP (477,600 weights + 810 biases for the paper's sizes).

Example:
    >>> AENMLPConfig(("htranslate",)).hidden_spatial  # the input grid by default
    (28, 28)

"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from bayesym.checks import check_positive_int
from bayesym.groups.pixel_transforms import resolve_transforms
from bayesym.layers._checks import check_spatial
from bayesym.layers.shared import OrbitSharedLinear

__all__ = ["AENMLP", "AENMLPConfig"]


@dataclass(frozen=True)
class AENMLPConfig:
    """Configuration of :class:`AENMLP` (hashable: usable as a cache key for a search state).

    Attributes:
        transforms: selected transformation names (or an ``"Aug<k>"`` preset), normalised to
            the table order of :data:`~bayesym.groups.pixel_transforms.TRANSFORM_NAMES`.
        input_spatial: image grid ``(H, W)``.
        hidden_spatial: grid of each hidden layer's units; None (default): the input grid
            (the paper: ``(20, 20)`` = 400 units, which forces periodic weights for
            translations, see the module docstring).
        num_hidden_layers: number of hidden layers (2 in the paper).
        num_classes: number of logits.
        bias: orbit-shared biases.

    Raises:
        KeyError: for an unknown transformation name.
        ValueError: for non-positive sizes.
    """

    transforms: tuple[str, ...] = ()
    input_spatial: tuple[int, int] = (28, 28)
    hidden_spatial: tuple[int, int] | None = None
    num_hidden_layers: int = 2
    num_classes: int = 10
    bias: bool = True

    def __post_init__(self) -> None:
        owner = type(self).__name__
        spec = self.transforms
        names = (
            resolve_transforms(spec) if isinstance(spec, str) else resolve_transforms(list(spec))
        )
        object.__setattr__(self, "transforms", names)
        object.__setattr__(self, "input_spatial", check_spatial(self.input_spatial, owner=owner))
        hidden = self.input_spatial if self.hidden_spatial is None else self.hidden_spatial
        object.__setattr__(self, "hidden_spatial", check_spatial(hidden, owner=owner))
        check_positive_int(self.num_hidden_layers, name="num_hidden_layers", owner=owner)
        check_positive_int(self.num_classes, name="num_classes", owner=owner)


class AENMLP(nn.Module):
    """MLP whose layers share weights over orbits of the selected pixel transformations.

    Args:
        config: an :class:`AENMLPConfig`.

    Shape:
        ``x: [N, H, W]``, ``[N, 1, H, W]`` or ``[N, H * W]`` -> logits ``[N, num_classes]``.

    Attributes:
        layers: ``nn.ModuleList`` of :class:`OrbitSharedLinear` (input -> hidden ... -> classes).

    Example:
        >>> _ = torch.manual_seed(0)
        >>> config = AENMLPConfig(("hflip",), input_spatial=(4, 4), hidden_spatial=(2, 2))
        >>> net = AENMLP(config)
        >>> x = torch.randn(3, 4, 4)
        >>> torch.allclose(net(x), net(x.flip(-1)))
        True
    """

    def __init__(self, config: AENMLPConfig) -> None:
        super().__init__()
        if not isinstance(config, AENMLPConfig):
            raise TypeError(
                f"{type(self).__name__} needs an AENMLPConfig, got {type(config).__name__}"
            )
        self.config = config
        names, hidden = config.transforms, config.hidden_spatial
        assert hidden is not None  # AENMLPConfig.__post_init__ fills in the default grid
        layers = [
            OrbitSharedLinear.from_transforms(
                names, config.input_spatial, out_spatial=hidden, bias=config.bias
            )
        ]
        for _ in range(config.num_hidden_layers - 1):
            layers.append(
                OrbitSharedLinear.from_transforms(
                    names, hidden, out_spatial=hidden, bias=config.bias
                )
            )
        layers.append(
            OrbitSharedLinear.from_transforms(
                names, hidden, out_features=config.num_classes, bias=config.bias
            )
        )
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, num_classes]`` for images (see class docstring for accepted shapes)."""
        height, width = self.config.input_spatial
        ok_shapes = (x.dim() == 2 and x.shape[1] == height * width) or (
            x.dim() in (3, 4)
            and tuple(x.shape[-2:]) == (height, width)
            and math.prod(x.shape[1:-2]) == 1
        )
        if not ok_shapes:
            raise ValueError(
                f"{type(self).__name__}(transforms={self.config.transforms}): expected images "
                f"[N, {height}, {width}], [N, 1, {height}, {width}] or [N, {height * width}], "
                f"got {list(x.shape)}"
            )
        h = x.reshape(x.shape[0], -1)
        for layer in self.layers[:-1]:
            h = torch.relu(layer(h))
        return self.layers[-1](h)
