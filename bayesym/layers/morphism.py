"""The equivariance relaxation morphism (EquiNAS Sec. 4.1, Eq. 3-9).

:func:`relax` turns a G-layer into a function-identical H-layer for a subgroup ``H <= G``.
With right-coset representatives ``R = (s_0 = e, s_1, ...)`` of ``H`` in ``G`` and the
layer's expanded G-kernel ``W[(d, g), (c, g')] = T_g ψ[d, c, g^-1 g']``
(:mod:`bayesym.groups.expansion`):

* **Feature maps** (Eq. 3): a G-feature map ``y: [N, C, |G|, X, Y]`` is re-read as the
  H-feature map ``ỹ: [N, C·[G:H], |H|, X, Y]`` with ``ỹ[(c, s), h] = y[c, h·s]``, channel
  index ``c·[G:H] + j`` for ``s = s_j`` (:func:`~bayesym.groups.restriction.restrict_feature_map`).
* **Group convolution** (Eq. 4): ``ψ̃[(d, t), (c, s), h] = W[(d, t), (c, h·s)]
  = T_t ψ[d, c, t^-1 h s]`` — the G-expanded filters at the representatives ``t, s``
  become independent H-parameters: ``[G:H]²·|H| = [G:H]·|G|`` filters per ``(d, c)``
  instead of ``|G|``, i.e. ``[G:H]`` times the parameters.
* **Lifting convolution**: ``ψ̃[(d, t), c] = W[(d, t), c] = T_t ψ[d, c]``; ``[G:H]`` times
  the parameters.
* **Bias / normalisation**: biases are repeated over the copies ``t``;
  :class:`~bayesym.layers.group_norm.GroupBatchNorm` keeps its statistics per base channel
  (``shared_copies`` multiplied by ``[G:H]``) and repeats its affine parameters, so it stays
  identical in train and eval mode.

Then ``relax(L, H)(restrict(x)) == restrict(L(x))`` (for lifting layers
``relax(L, H)(x) == restrict(L(x))``) exactly, up to floating-point summation order.

In a network whose groups shrink with depth, a layer reads the previous layer's output
re-read through a *chain* of restrictions, and two chains to the same subgroup can differ by
a relabelling ``A[a, h] = B[σ(a), h·h_a]`` (a channel permutation plus a right translation of
the group axis per channel — which commutes with the regular action).
:func:`adapt_input_layout` absorbs such a relabelling into a group convolution's weights,
and :func:`relax_pooled_linear` adapts a linear layer reading group-mean-pooled features, so
one layer of a network can be relaxed without changing the network's function.

Example:
    >>> import torch
    >>> from bayesym.groups import d4_subgroup, restrict_feature_map
    >>> from bayesym.layers.group_conv import GroupConv2d
    >>> d4, c4 = d4_subgroup("D4"), d4_subgroup("C4")
    >>> layer = GroupConv2d(2, 3, 3, d4).double()
    >>> relaxed = relax(layer, c4)
    >>> y = torch.randn(1, 2, 8, 5, 5, dtype=torch.float64)
    >>> out = relaxed(restrict_feature_map(y, d4, c4))
    >>> bool(torch.allclose(out, restrict_feature_map(layer(y), d4, c4), atol=1e-12))
    True
    >>> relaxed.weight.numel() // layer.weight.numel()
    2
"""

from __future__ import annotations

from typing import Any, overload

import torch
from torch import Tensor, nn

from bayesym.checks import is_positive_int
from bayesym.groups.finite import FiniteGroup, coset_index, right_coset_representatives
from bayesym.groups.restriction import restriction_index
from bayesym.layers.group_conv import GroupConv2d, LiftingConv2d
from bayesym.layers.group_norm import GroupBatchNorm

__all__ = ["adapt_input_layout", "relax", "relax_pooled_linear"]

RelaxableLayer = LiftingConv2d | GroupConv2d | GroupBatchNorm


def _check_subgroup(layer: RelaxableLayer, subgroup: FiniteGroup) -> int:
    group = layer.group
    if not isinstance(subgroup, FiniteGroup):
        raise TypeError(f"relax: subgroup must be a FiniteGroup, got {type(subgroup).__name__}")
    if subgroup.root is not group.root:
        raise ValueError(
            f"relax: {subgroup.name!r} and the layer's group {group.name!r} have different roots"
        )
    try:
        return coset_index(group, subgroup)
    except ValueError:
        raise ValueError(
            f"relax: {subgroup.name!r} is not a subgroup of the layer's group {group.name!r} "
            f"({type(layer).__name__})"
        ) from None


def _factory(layer: nn.Module) -> dict[str, Any]:
    reference: Tensor | None = next(iter(layer.parameters()), None)
    if reference is None:
        reference = next(iter(layer.buffers()))
    return {"device": reference.device, "dtype": reference.dtype}


@overload
def relax(layer: LiftingConv2d, subgroup: FiniteGroup) -> LiftingConv2d: ...
@overload
def relax(layer: GroupConv2d, subgroup: FiniteGroup) -> GroupConv2d: ...
@overload
def relax(layer: GroupBatchNorm, subgroup: FiniteGroup) -> GroupBatchNorm: ...
def relax(layer: RelaxableLayer, subgroup: FiniteGroup) -> RelaxableLayer:
    """Function-identical copy of a G-layer parametrised over ``subgroup = H <= G``.

    Args:
        layer: A :class:`~bayesym.layers.group_conv.LiftingConv2d`,
            :class:`~bayesym.layers.group_conv.GroupConv2d` or
            :class:`~bayesym.layers.group_norm.GroupBatchNorm` over ``G``.
        subgroup: ``H <= G`` (``H = G`` returns an identical copy).

    Returns:
        A new layer of the same type over ``H`` with ``[G:H]`` times the channels (layout
        in the module docstring). The input layer is not modified; parameters are copied
        (no shared storage).

    Raises:
        TypeError: Unsupported layer type.
        ValueError: ``subgroup`` is not a subgroup of the layer's group.
    """
    if not isinstance(layer, (LiftingConv2d, GroupConv2d, GroupBatchNorm)):
        raise TypeError(
            f"relax: expected LiftingConv2d, GroupConv2d or GroupBatchNorm, "
            f"got {type(layer).__name__}"
        )
    copies = _check_subgroup(layer, subgroup)
    if isinstance(layer, GroupBatchNorm):
        return _relax_norm(layer, subgroup, copies)
    group = layer.group
    reps = torch.tensor(right_coset_representatives(group, subgroup))
    with torch.no_grad():
        expanded = layer.expanded_kernel()
        k = layer.kernel_size
        c_out, c_in = layer.out_channels, layer.in_channels
        if isinstance(layer, LiftingConv2d):
            blocks = expanded.reshape(c_out, group.order, c_in, k, k)
            weight = blocks[:, reps.to(expanded.device)].reshape(c_out * copies, c_in, k, k)
            new_in = c_in
        else:
            blocks = expanded.reshape(c_out, group.order, c_in, group.order, k, k)
            rows = blocks[:, reps.to(expanded.device)]  # [d, t, c, g', i, j]
            columns = restriction_index(group, subgroup).to(expanded.device)  # [s, h] -> h·s
            weight = rows[:, :, :, columns]  # [d, t, c, s, h, i, j]
            weight = weight.reshape(c_out * copies, c_in * copies, subgroup.order, k, k)
            new_in = c_in * copies
        new = type(layer)(
            new_in,
            c_out * copies,
            k,
            subgroup,
            padding_mode=layer.padding_mode,
            bias=layer.bias is not None,
            **_factory(layer),
        )
        new.weight.copy_(weight)
        if layer.bias is not None:
            assert new.bias is not None  # built with bias=True just above
            new.bias.copy_(layer.bias.repeat_interleave(copies))
    new.train(layer.training)
    return new


def _relax_norm(layer: GroupBatchNorm, subgroup: FiniteGroup, copies: int) -> GroupBatchNorm:
    new = GroupBatchNorm(
        layer.num_channels * copies,
        subgroup,
        shared_copies=layer.shared_copies * copies,
        eps=layer.eps,
        momentum=layer.momentum,
        affine=layer.weight is not None,
        **_factory(layer),
    )
    with torch.no_grad():
        new.running_mean.copy_(layer.running_mean)
        new.running_var.copy_(layer.running_var)
        new.num_batches_tracked.copy_(layer.num_batches_tracked)
        if layer.weight is not None:
            new.weight.copy_(layer.weight.repeat_interleave(copies))
            new.bias.copy_(layer.bias.repeat_interleave(copies))
    new.train(layer.training)
    return new


def _relabelling(expected: Tensor, provided: Tensor, group: FiniteGroup) -> tuple[Tensor, Tensor]:
    """``(σ, h_a)`` with ``expected[a, h] == provided[σ(a), h·h_a]`` for all ``a, h``."""
    if expected.shape != provided.shape or expected.shape[1:] != (group.order,):
        raise ValueError(
            f"adapt_input_layout: label tables must both be [C, {group.order}], got "
            f"{tuple(expected.shape)} and {tuple(provided.shape)}"
        )
    flat = provided.flatten()
    position = torch.argsort(flat)
    if not torch.equal(flat[position], torch.sort(expected.flatten()).values):
        raise ValueError("adapt_input_layout: the two layouts do not hold the same entries")
    found = position[torch.searchsorted(flat[position], expected[:, group.identity].contiguous())]
    sigma, shift = found // group.order, found % group.order
    table = group.cayley_table
    columns = table[:, shift].T  # [a, h] -> h·h_a
    if not torch.equal(provided[sigma[:, None], columns], expected):
        raise ValueError(
            "adapt_input_layout: the layouts differ by more than a channel permutation with "
            f"right translations of {group.name}; the layer cannot absorb the difference"
        )
    return sigma, shift


def adapt_input_layout(layer: GroupConv2d, expected: Tensor, provided: Tensor) -> GroupConv2d:
    """Copy of ``layer`` that reads inputs laid out as ``provided`` instead of ``expected``.

    ``expected`` and ``provided`` are integer label tables ``[C_in, |K|]`` (``K`` the
    layer's group) saying which entry of some common source each input position holds;
    they must differ by ``expected[a, h] = provided[σ(a), h·h_a]``. Then the returned
    layer satisfies ``new(B) == layer(A)`` for inputs ``A``/``B`` laid out accordingly:
    ``ψ_new[d, σ(a), κ] = ψ[d, a, κ·h_a^-1]``.

    Raises:
        TypeError: ``layer`` is not a :class:`~bayesym.layers.group_conv.GroupConv2d`.
        ValueError: Label tables of the wrong shape or not related as above.
    """
    if not isinstance(layer, GroupConv2d):
        raise TypeError(f"adapt_input_layout: expected a GroupConv2d, got {type(layer).__name__}")
    group = layer.group
    if expected.shape[0] != layer.in_channels:
        raise ValueError(
            f"adapt_input_layout: {layer.in_channels} input channels but label tables have "
            f"{expected.shape[0]} rows"
        )
    sigma, shift = _relabelling(expected.cpu(), provided.cpu(), group)
    inverses, table = group.inverses, group.cayley_table
    source = table[:, inverses[shift]].T  # [a, κ] -> κ·h_a^-1
    new = GroupConv2d(
        layer.in_channels,
        layer.out_channels,
        layer.kernel_size,
        group,
        padding_mode=layer.padding_mode,
        bias=layer.bias is not None,
        **_factory(layer),
    )
    with torch.no_grad():
        weight = layer.weight
        device = weight.device
        a = torch.arange(layer.in_channels, device=device)
        gathered = weight[:, a[:, None], source.to(device)]  # [d, a, κ, i, j]
        new.weight[:, sigma.to(device)] = gathered
        if layer.bias is not None:
            assert new.bias is not None  # built with bias=True just above
            new.bias.copy_(layer.bias)
    new.train(layer.training)
    return new


def relax_pooled_linear(linear: nn.Linear, copies: int) -> nn.Linear:
    """Adapt a linear layer on group-MEAN-pooled features to a relaxed predecessor.

    After relaxing the last group layer by ``copies = [G:H]``, pooled feature ``c`` (the
    mean over G) becomes ``copies`` features ``(c, s)`` (means over the cosets ``H s``),
    with ``mean_G = (1/copies) Σ_s mean_{Hs}``. So ``W_new[:, (c, s)] = W[:, c] / copies``
    keeps the output identical. (Max pooling has no such linear identity.)

    Raises:
        ValueError: ``copies`` is not a positive int.
    """
    if not is_positive_int(copies):
        raise ValueError(f"relax_pooled_linear: copies must be a positive int, got {copies!r}")
    new = nn.Linear(
        linear.in_features * copies, linear.out_features, bias=linear.bias is not None,
        **_factory(linear),
    )  # fmt: skip
    with torch.no_grad():
        new.weight.copy_(linear.weight.repeat_interleave(copies, dim=1) / copies)
        if linear.bias is not None:
            new.bias.copy_(linear.bias)
    new.train(linear.training)
    return new
