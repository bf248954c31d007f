r"""The layer-wise paper's GCONV: one ordinary convolution shared over the rotated copies.

The public model of the layer-wise equivariance paper (Sec. 6.3) builds its rotation path
from plain convolutions: the input image is *lifted* by stacking its ``|G|`` rotated copies
(``torch.rot90`` by 0, 1, 2, 3 quarter turns for C4), every GCONV layer applies **one**
ordinary ``k x k`` convolution ``ψ: [C_out, C_in, k, k]`` to each copy separately (the copies
share it), and the network max-pools over the copies before its head. Turning the input
permutes the copies, so the network is exactly invariant. App. F.3 calls this a group
convolution that is *pointwise* in the rotation subgroup:
``θ̄(c', c, x, y, θ) = ψ(c', c, x, y) 1[θ = id]``.

:class:`PointwiseGroupConv2d` is that layer in bayesym's layout of group feature maps
(``[N, C, |G|, H, W]`` with the regular action ``(g.y)(h, p) = y(g^-1 h, g^-1 p)``, as
produced by :class:`~bayesym.layers.group_conv.LiftingConv2d`, where copy ``g`` is seen in
the frame turned by ``g``):

.. math::
    y[d, g] = \sum_c x[c, g] \star T_g \psi[d, c] + b[d].

With ``u_g = T_g^{-1} x_g`` (copy ``g`` turned back) the identity
``T^{-1}(a \star T b) = (T^{-1} a) \star b`` (exact for D4 acting on square grids with
symmetric "same" padding) gives ``T_g^{-1} y_g = u_g \star \psi``: one convolution shared
over the turned-back copies — the paper's layer. The lifting layer of the paper (stack the
turned copies, convolve each with ``ψ``) is likewise ``LiftingConv2d``:
``T_g^{-1}(x \star T_g \psi) = (T_g^{-1} x) \star \psi``.

Equivariance: exactly equivariant to every ``g ∈ G`` (regular action on input and output)
and, with circular padding, to every cyclic shift — the same symmetry as the full
:class:`~bayesym.layers.group_conv.GroupConv2d`, which it restricts to filters ``ψ[d, c, u]``
that vanish for ``u ≠ e`` (no mixing between copies). Parameters: ``C_out C_in k²`` against
``C_out C_in |G| k²`` for the full group convolution and ``(C_out |G|)(C_in |G|) k²`` for a
CONV path on the merged channel/group axes: CONV : GCONV = ``|G|²`` : 1 (16 : 1 for C4), where
the full group convolution has ``|G|`` : 1 (4 : 1). Computed as one grouped ``F.conv2d``
(groups ``= |G|``) on the group-major input.

Example:
    >>> import torch
    >>> from bayesym.groups import d4_subgroup
    >>> layer = PointwiseGroupConv2d(2, 3, 3, d4_subgroup("C4"))
    >>> layer(torch.randn(5, 2, 4, 7, 7)).shape, layer.weight.shape
    (torch.Size([5, 3, 4, 7, 7]), torch.Size([3, 2, 3, 3]))
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from bayesym.groups.expansion import expand_lifting_kernel
from bayesym.layers.conv import pad_same
from bayesym.layers.group_conv import GroupConvBase

__all__ = ["PointwiseGroupConv2d"]


class PointwiseGroupConv2d(GroupConvBase):
    """GCONV pointwise in ``G``: ``[N, C_in, |G|, H, W] -> [N, C_out, |G|, H, W]`` (module doc).

    A drop-in replacement of :class:`~bayesym.layers.group_conv.GroupConv2d`: the same
    arguments, input and output, with ``|G|`` times fewer weights.

    Attributes:
        weight: ``ψ: [C_out, C_in, k, k]``, the one filter bank shared over the copies.
        bias: ``[C_out]`` or ``None``.
        group: ``G``.
        expansion_index: ``[|G|, k, k]`` buffer (:func:`~bayesym.groups.expansion.
            lifting_expansion_index`): copy ``g`` is convolved with ``T_g ψ``.

    Raises:
        ValueError / TypeError: As :class:`~bayesym.layers.group_conv.GroupConv2d`.
    """

    def copy_kernels(self) -> Tensor:
        """``[|G|, C_out, C_in, k, k]``: the filters ``T_g ψ`` applied to copy ``g``."""
        n = self.group.order
        expanded = expand_lifting_kernel(self.weight, self.group, self.expansion_index)
        return expanded.unflatten(0, (self.out_channels, n)).transpose(0, 1)

    def forward(self, x: Tensor) -> Tensor:
        """``x: [N, C_in, |G|, H, W]`` -> ``[N, C_out, |G|, H, W]``."""
        n = self.group.order
        self._check_input(x, (None, self.in_channels, n, None, None))
        batch, _, _, height, width = x.shape
        group_major = x.transpose(1, 2).reshape(batch, n * self.in_channels, height, width)
        kernel = self.copy_kernels().flatten(0, 1)  # [|G| C_out, C_in, k, k], group-major
        padded = pad_same(group_major, self.kernel_size // 2, self.padding_mode)
        out = F.conv2d(padded, kernel, groups=n)
        out = out.view(batch, n, self.out_channels, height, width).transpose(1, 2)
        if self.bias is not None:
            out = out + self.bias.view(1, -1, 1, 1, 1)
        return out.contiguous()
