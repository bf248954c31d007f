"""Search spaces: which networks a selector may choose between, and the static baselines.

A search space is a frozen dataclass that builds networks for data of a given
:class:`DataShape` and describes the per-layer choices of a network it built. Every space lists
its *static baselines*: fixed networks of the space (e.g. every block D4, or every block a
plain convolution) against which selectors are compared on the same backbone configuration.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import nn

from bayesym.data.image_dataset import ImageDataset
from bayesym.selectors.base import LayerChoice

__all__ = ["DataShape", "SearchSpace"]


@dataclass(frozen=True)
class DataShape:
    """What a network must fit: image channels and size, number of classes.

    Attributes:
        channels: ``C`` of the images ``[N, C, H, W]``.
        height: ``H``.
        width: ``W``.
        num_classes: number of logits.
    """

    channels: int
    height: int
    width: int
    num_classes: int

    @classmethod
    def of(cls, data: ImageDataset) -> DataShape:
        """The shape of ``data``'s images and its number of classes."""
        channels, height, width = data.image_shape
        return cls(channels, height, width, data.num_classes)


class SearchSpace(ABC):
    """The networks a selector may choose between (see the module docstring).

    Subclasses are frozen dataclasses and set :attr:`name`, the key used on the command line
    and in :attr:`bayesym.selectors.base.Selector.spaces`.
    """

    name: ClassVar[str]

    @abstractmethod
    def baselines(self) -> tuple[str, ...]:
        """Names of the static baselines of this space, in display order."""

    @abstractmethod
    def build_baseline(self, name: str, shape: DataShape) -> nn.Module:
        """The static baseline ``name`` for data of ``shape`` (freshly initialised).

        Raises:
            ValueError: for an unknown baseline (the message lists :meth:`baselines`).
        """

    @abstractmethod
    def describe(self, model: nn.Module) -> tuple[LayerChoice, ...]:
        """The per-layer choices of a network built by this space (scores empty)."""

    def relaxed_network(self, shape: DataShape) -> nn.Module:
        """The relaxed network of the space (what the marglik selector learns priors on).

        Every selectable layer is a :class:`~bayesym.layers.PathSum` with one path per
        candidate symmetry of the space.

        Raises:
            NotImplementedError: if the space has no such network.
        """
        raise NotImplementedError(f"the {self.name!r} space has no relaxed (path-sum) network")

    def residual_network(self, shape: DataShape) -> tuple[nn.Module, str, str]:
        """The residual pathway network of the space (RPP).

        Every selectable layer is a :class:`~bayesym.layers.PathSum` of an equivariant and an
        unconstrained path.

        Returns:
            ``(model, equivariant path name, unconstrained path name)``.

        Raises:
            NotImplementedError: if the space has no such network.
        """
        raise NotImplementedError(f"the {self.name!r} space has no residual pathway network")

    def homotopic_network(self, shape: DataShape) -> nn.Module:
        """The homotopic network of the space (ACE).

        Every selectable layer is a :class:`~bayesym.layers.HomotopicLayer`
        ``f_eq + γ f_neq``.

        Raises:
            NotImplementedError: if the space has no such network.
        """
        raise NotImplementedError(f"the {self.name!r} space has no homotopic network")

    def check_baseline(self, name: str) -> None:
        """Raise ``ValueError`` unless ``name`` is one of :meth:`baselines`."""
        if name not in self.baselines():
            raise ValueError(
                f"unknown baseline {name!r} of the {self.name!r} space; "
                f"valid: {', '.join(self.baselines())}"
            )

    def config_json(self) -> dict[str, Any]:
        """The space's settings (JSON form)."""
        out = {"name": self.name}
        if dataclasses.is_dataclass(self):
            out.update(_plain(dataclasses.asdict(self)))
        return out


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
