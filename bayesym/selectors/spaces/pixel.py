r"""The pixel-permutation space (AEN): which of the 12 named pixel transformations the MLP obeys.

A *state* is a subset of the 12 transformations of
:data:`~bayesym.groups.pixel_transforms.TRANSFORM_NAMES` (the AEN paper's ``IAug1`` ..
``IAug12``), held as a 12-bit integer: bit ``i`` set means every layer of the
:class:`~bayesym.backbones.AENMLP` shares its weights over the orbits of transformation ``i``
(so the network is invariant to the group the selected transformations generate). The same
state names every layer, so :meth:`PixelSpace.describe` gives one choice per layer, all equal.

States are written as labels: ``"none"``, ``"all"``, or the names joined by ``"+"`` in table
order (``"hflip+vflip"``). The static baselines are the no-symmetry MLP (``"none"``, the
paper's ``Eq0``), each single transformation (``Eq1`` .. ``Eq12`` of the paper's Table 5) and
``"all"``. The hidden grid defaults to the input grid, on which no transformation forces
periodic weights; the paper's 20x20 grid is ``hidden_spatial=(20, 20)``.

Example:
    >>> space = PixelSpace()
    >>> state = state_of(["vflip", "hflip"])
    >>> state, state_label(state), state_transforms(parse_state("hflip+vflip"))
    (6, 'hflip+vflip', ('hflip', 'vflip'))
    >>> net = space.network(state, DataShape(1, 8, 8, 10))
    >>> [c.choice for c in space.describe(net)]
    ['hflip+vflip', 'hflip+vflip', 'hflip+vflip']
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from bayesym.backbones.aen_mlp import AENMLP, AENMLPConfig
from bayesym.checks import check_positive_int
from bayesym.groups.pixel_transforms import TRANSFORM_NAMES, resolve_transforms
from bayesym.layers._checks import check_spatial
from bayesym.layers.symmetry import LayerSymmetry
from bayesym.selectors.base import LayerChoice
from bayesym.selectors.spaces.base import DataShape, SearchSpace

__all__ = [
    "NUM_STATES",
    "PixelSpace",
    "parse_state",
    "state_label",
    "state_of",
    "state_transforms",
]

NUM_STATES = 1 << len(TRANSFORM_NAMES)
"""Number of states (``2**12``)."""

ALL_STATE = NUM_STATES - 1


def _check_state(state: object) -> int:
    if isinstance(state, bool) or not isinstance(state, int) or not 0 <= state < NUM_STATES:
        raise ValueError(
            f"a pixel-space state is an int in [0, {NUM_STATES}) (a bit per transformation of "
            f"{', '.join(TRANSFORM_NAMES)}), got {state!r}"
        )
    return state


def state_transforms(state: int) -> tuple[str, ...]:
    """The transformation names of ``state`` (table order)."""
    state = _check_state(state)
    return tuple(name for i, name in enumerate(TRANSFORM_NAMES) if state >> i & 1)


def state_of(transforms: Iterable[str]) -> int:
    """The state of a set of transformation names.

    Raises:
        KeyError: for an unknown name (the message lists the valid ones).
    """
    names = resolve_transforms(list(transforms))
    return sum(1 << TRANSFORM_NAMES.index(name) for name in names)


def state_label(state: int) -> str:
    """``"none"``, ``"all"`` or the names of ``state`` joined by ``"+"``."""
    if _check_state(state) == 0:
        return "none"
    if state == ALL_STATE:
        return "all"
    return "+".join(state_transforms(state))


def parse_state(label: str) -> int:
    """The state of a label written by :func:`state_label` (or any ``+``-joined names).

    Raises:
        ValueError: for an unknown transformation name (the message lists the valid ones).
    """
    if label == "none":
        return 0
    if label == "all":
        return ALL_STATE
    try:
        return state_of(label.split("+"))
    except KeyError as error:
        raise ValueError(f"pixel-space state {label!r}: {error.args[0]}") from None


@dataclass(frozen=True)
class PixelSpace(SearchSpace):
    """Subsets of the 12 pixel transformations for the AEN MLP (see the module docstring).

    Attributes:
        hidden_spatial: grid of each hidden layer's units; None: the input grid (no
            transformation forces periodic weights), ``(20, 20)``: the paper's 400 units.
        num_hidden_layers: hidden layers of the MLP (2 in the paper).
        baseline_states: labels of the static baselines.
    """

    name: ClassVar[str] = "pixel"

    hidden_spatial: tuple[int, int] | None = None
    num_hidden_layers: int = 2
    baseline_states: tuple[str, ...] = ("none", *TRANSFORM_NAMES, "all")

    def __post_init__(self) -> None:
        owner = type(self).__name__
        if self.hidden_spatial is not None:
            object.__setattr__(
                self, "hidden_spatial", check_spatial(self.hidden_spatial, owner=owner)
            )
        check_positive_int(self.num_hidden_layers, name="num_hidden_layers", owner=owner)
        if isinstance(self.baseline_states, str):
            raise ValueError(f"{owner}.baseline_states must be a tuple of state labels")
        object.__setattr__(self, "baseline_states", tuple(self.baseline_states))
        for label in self.baseline_states:
            parse_state(label)  # raises for an unknown name

    def config(self, state: int, shape: DataShape) -> AENMLPConfig:
        """The MLP configuration of ``state`` for data of ``shape`` (hashable).

        Raises:
            ValueError: for images with more than one channel.
        """
        if shape.channels != 1:
            raise ValueError(
                f"the 'pixel' space permutes the pixels of one-channel images; got "
                f"{shape.channels} channels (use a grey-scale task such as aen-fmnist-Aug1)"
            )
        return AENMLPConfig(
            state_transforms(state),
            input_spatial=(shape.height, shape.width),
            hidden_spatial=self.hidden_spatial,
            num_hidden_layers=self.num_hidden_layers,
            num_classes=shape.num_classes,
        )

    def network(self, state: int, shape: DataShape) -> AENMLP:
        """The MLP of ``state`` (freshly initialised; its layers' orbits are cached)."""
        return AENMLP(self.config(state, shape))

    def baselines(self) -> tuple[str, ...]:
        """The labels of the static baselines."""
        return self.baseline_states

    def build_baseline(self, name: str, shape: DataShape) -> nn.Module:
        """The MLP of the state labelled ``name``."""
        self.check_baseline(name)
        return self.network(parse_state(name), shape)

    def describe(self, model: nn.Module) -> tuple[LayerChoice, ...]:
        """One choice per layer ``layers.k``: the state's label and the symmetry it obeys.

        Raises:
            TypeError: if ``model`` is not an :class:`~bayesym.backbones.AENMLP`.
        """
        if not isinstance(model, AENMLP):
            raise TypeError(f"PixelSpace.describe needs an AENMLP, got {type(model).__name__}")
        names = model.config.transforms
        label = state_label(state_of(names))
        symmetry = LayerSymmetry(pixel_permutations=names).describe()
        return tuple(LayerChoice(f"layers.{k}", label, symmetry) for k in range(len(model.layers)))
