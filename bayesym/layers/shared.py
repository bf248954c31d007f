r"""AEN parameter-sharing FC layer: one free weight per orbit of (output, input) unit pairs.

Given actions of one abstract group on the ``n`` input units (``P_in``) and the ``m``
output units (``P_out``), both by named generators in the gather convention of
:mod:`bayesym.groups.pixel_transforms`, the layer ``y = W x + b`` is equivariant,

.. math::
    W (P_{in} x) = P_{out} (W x) \quad\Longleftrightarrow\quad
    W[\mathrm{perm}_{out}[i], \mathrm{perm}_{in}[j]] = W[i, j] \ \ \forall\ \text{generators},

iff ``W`` is constant on the orbits of :func:`~bayesym.groups.permutation.pair_orbits`
(Ravanbakhsh et al. 2017; AEN Sec. 4). The bias is shared over the orbits of the output
units, ``b[perm_out[i]] = b[i]``. With a trivial output action (class logits) the layer is
invariant to the input action.

Hidden units (AEN's 784-400-400-10 MLP): the 400 hidden units of a layer form a 20 x 20
grid and every named transformation acts on them exactly as on an image of that size
(rotating, flipping, translating or scrambling the 20 x 20 grid), the same structure the
AEN reference experiments use; see :mod:`bayesym.backbones.aen_mlp`.

**Forced periodic weights.** If a generator has order ``a`` on the input units and ``b != a``
on the output units, equivariance to the cyclic group it generates (order ``lcm(a, b)``) makes
its power ``g^b`` act trivially on the outputs but not on the inputs, so every row of ``W``
must be invariant to ``g^b`` on the inputs: the weights are forced to be periodic (e.g. a
one-pixel translation of a 28x28 input and a 20x20 hidden grid ties every weight to its
copies 4 pixels apart, 2,240 free weights instead of 11,200). The layer warns
(:class:`PeriodicSharingWarning`) when a generator's orders differ; a hidden grid equal to
the input grid never forces it. (The check compares generator orders; relations between
several generators that hold on one grid only are not checked.)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from bayesym.groups.permutation import (
    PairOrbits,
    PermutationGroup,
    grid_group,
    grid_pair_orbits,
    pair_orbits,
)
from bayesym.groups.pixel_transforms import permutation_order
from bayesym.layers._checks import check_input_shape
from bayesym.layers.symmetry import LayerSymmetry

__all__ = ["OrbitSharedLinear", "PeriodicSharingWarning", "order_mismatches"]


class PeriodicSharingWarning(UserWarning):
    """An orbit-shared layer's generator has different orders on its input and output units."""


def order_mismatches(
    in_group: PermutationGroup, out_group: PermutationGroup
) -> tuple[tuple[str, int, int], ...]:
    """Generators whose order on the inputs differs from their order on the outputs.

    A trivial output action (every generator the identity: class logits, an *invariant*
    layer) is intended and gives no mismatch.

    Returns:
        ``(name, order on the inputs, order on the outputs)`` per mismatched generator.
    """
    identity = torch.arange(out_group.degree)
    if all(torch.equal(p, identity) for p in out_group.generators):
        return ()
    found = []
    for name, p_in, p_out in zip(
        in_group.names, in_group.generators, out_group.generators, strict=True
    ):
        order_in, order_out = permutation_order(p_in), permutation_order(p_out)
        if order_in != order_out:
            found.append((name, order_in, order_out))
    return tuple(found)


class OrbitSharedLinear(nn.Module):
    """Linear layer whose weight is shared over the orbits of a permutation-group action (AEN).

    ``W[i, j] = orbit_weights[orbit_index[i, j]]`` and ``b[i] = orbit_bias[bias_index[i]]``.

    Args:
        in_group: action on the ``n`` input units.
        out_group: action on the ``m`` output units, with the same generator names.
        bias: learn a bias shared over output-unit orbits.
        orbits: the pair orbits of ``(out_group, in_group)`` when already known (e.g. from
            :func:`~bayesym.groups.permutation.grid_pair_orbits`); computed when None.

    Warns:
        PeriodicSharingWarning: if a generator's order on the inputs differs from its order
            on the outputs (the weights are then forced to be periodic, module docstring).

    Shape:
        ``x: [N, n] -> [N, m]``.

    Attributes:
        orbit_weights: ``[num_orbits]`` free weights (one per pair orbit).
        orbit_bias: ``[num_output_orbits]`` free biases, or None.
        orbit_index: ``[m, n]`` int64 buffer, orbit of each weight entry.
        bias_index: ``[m]`` int64 buffer, orbit of each output unit.

    Raises:
        ValueError: if the two actions have different generators.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> layer = OrbitSharedLinear.from_transforms(["hflip"], (2, 2), out_spatial=(2, 2))
        >>> layer.orbit_weights.numel(), layer.orbit_bias.numel()
        (8, 2)
        >>> x = torch.randn(3, 4)
        >>> flip = layer.in_group.act
        >>> torch.allclose(layer(flip("hflip", x)), layer.out_group.act("hflip", layer(x)))
        True
    """

    orbit_index: torch.Tensor
    bias_index: torch.Tensor | None
    orbit_bias: nn.Parameter | None

    def __init__(
        self,
        in_group: PermutationGroup,
        out_group: PermutationGroup,
        *,
        bias: bool = True,
        orbits: PairOrbits | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(in_group, PermutationGroup) or not isinstance(
            out_group, PermutationGroup
        ):
            raise TypeError(
                f"{type(self).__name__}: in_group and out_group must be PermutationGroups, got "
                f"{type(in_group).__name__} and {type(out_group).__name__}"
            )
        if orbits is None:
            orbits = pair_orbits(out_group, in_group)
        elif orbits.ids.shape != (out_group.degree, in_group.degree) or (
            orbits.names != in_group.names
        ):
            raise ValueError(
                f"{type(self).__name__}: orbits of shape {list(orbits.ids.shape)} for "
                f"{orbits.names} do not fit {out_group.degree} outputs, {in_group.degree} "
                f"inputs and generators {in_group.names}"
            )
        for name, order_in, order_out in order_mismatches(in_group, out_group):
            warnings.warn(
                f"{type(self).__name__}: {name!r} has order {order_in} on the "
                f"{in_group.degree} inputs but {order_out} on the {out_group.degree} outputs, "
                "which forces periodic shared weights; use an output grid on which it has "
                "the same order (e.g. the input grid)",
                PeriodicSharingWarning,
                stacklevel=2,
            )
        self.in_group = in_group
        self.out_group = out_group
        self.in_features = in_group.degree
        self.out_features = out_group.degree
        self.register_buffer("orbit_index", orbits.ids)
        self.orbit_weights = nn.Parameter(torch.empty(orbits.count))
        if bias:
            bias_index = out_group.point_orbits()
            self.register_buffer("bias_index", bias_index)
            self.orbit_bias = nn.Parameter(torch.empty(int(bias_index.max()) + 1))
        else:
            self.register_buffer("bias_index", None)
            self.orbit_bias = None
        self.reset_parameters()

    @classmethod
    def from_transforms(
        cls,
        transforms: str | Iterable[str],
        in_spatial: tuple[int, int],
        *,
        out_spatial: tuple[int, int] | None = None,
        out_features: int | None = None,
        bias: bool = True,
    ) -> OrbitSharedLinear:
        """Layer equivariant to named pixel transformations of the shared table.

        Args:
            transforms: an augmentation preset (``"Aug1"``) or transformation names.
            in_spatial: grid ``(H, W)`` of the input units (``n = H W``).
            out_spatial: grid of the output units, acted on by the same transformations;
                or None with ``out_features`` for output units nothing acts on (invariance).
            out_features: number of trivially acted output units (exclusive with
                ``out_spatial``).
            bias: learn an orbit-shared bias.

        The orbits come from the cache of
        :func:`~bayesym.groups.permutation.grid_pair_orbits`.

        Raises:
            ValueError: unless exactly one of ``out_spatial``/``out_features`` is given.
        """
        if (out_spatial is None) == (out_features is None):
            raise ValueError(
                f"{cls.__name__}.from_transforms: give exactly one of out_spatial "
                f"(got {out_spatial!r}) and out_features (got {out_features!r})"
            )
        in_group = grid_group(transforms, in_spatial)
        if out_spatial is not None:
            out_group = grid_group(transforms, out_spatial)
        else:
            assert out_features is not None  # exactly one of the two is given (checked above)
            out_group = PermutationGroup.trivial(out_features, in_group.names)
        orbits = grid_pair_orbits(in_group.names, in_spatial, out_spatial, out_features)
        return cls(in_group, out_group, bias=bias, orbits=orbits)

    def reset_parameters(self) -> None:
        """``nn.Linear``'s init (``U(+-1/sqrt(n))``) for every free weight and bias."""
        bound = 1.0 / math.sqrt(self.in_features)
        nn.init.uniform_(self.orbit_weights, -bound, bound)
        if self.orbit_bias is not None:
            nn.init.uniform_(self.orbit_bias, -bound, bound)

    @property
    def symmetry(self) -> LayerSymmetry:
        """The named transformations the layer is equivariant (or invariant) to."""
        return LayerSymmetry(pixel_permutations=self.in_group.names)

    def expanded_weight(self) -> torch.Tensor:
        """The shared weight matrix ``W: [m, n]``."""
        return self.orbit_weights[self.orbit_index]

    def expanded_bias(self) -> torch.Tensor | None:
        """The shared bias ``b: [m]``, or None."""
        if self.orbit_bias is None:
            return None
        return self.orbit_bias[self.bias_index]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``y = W x + b`` for ``x: [N, n]``."""
        check_input_shape(x, ("N", self.in_features), owner=self)
        return F.linear(x, self.expanded_weight(), self.expanded_bias())

    def extra_repr(self) -> str:
        """Constructor arguments shown by ``repr``."""
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"transforms={self.in_group.names}, num_orbits={self.orbit_weights.numel()}"
        )
