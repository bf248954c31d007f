r"""KFAC of the paper's GCONV (:class:`~bayesym.layers.PointwiseGroupConv2d`).

The layer convolves copy ``g`` of its input with ``T_g ψ``:
``y[d, g, t] = Σ_{c, p} ψ[d, c, L_g(p)] x_pad[c, g, t + p]`` (``L_g`` the layer's
``expansion_index[g]``, a permutation of the ``k²`` filter taps). Re-indexed by the parameter,

.. math::
    y_{d, g, t} = \sum_{c, q} \psi[d, c, q]\, a_{g, t}[c, q], \qquad
    a_{g, t}[c, q] = p_t\big[(c |G| + g) k^2 + L_g^{-1}(q)\big],

with ``p_t`` the 'same' patch of the merged input ``[N, C_in |G|, H, W]`` (channel
``c |G| + g``) at position ``t``. So ``ψ [C_out, C_in k²]`` is a linear map shared over
(copy ``g``, position ``t``) whose copy ``g`` reads a gather of the merged patch — the
:class:`~bayesym.adapters.gathered.GatherStructure` of the gathered convolutions with
``inverse[g] = (c |G| + g) k² + L_g^{-1}(q)`` and ``copy_rows[d, g] = d |G| + g``:

* expand: ``A = (1/|G|) Σ_g Π_g C Π_gᵀ`` from the one merged patch covariance ``C`` (the one
  the CONV path of the same relaxed layer uses, computed once), ``B = Σ g gᵀ`` over the
  output gradients of all copies and positions;
* reduce: ``ā_n = mean_{g, t} a``, ``ĝ_n = Σ_{g, t} g``;
* the bias ``[C_out]`` (shared over copies and positions): a dense output factor.

The index maps are the layer's own ``expansion_index``, so the adapter cannot drift from it.
"""

from __future__ import annotations

import torch
from torch import nn

from bayesym.adapters.convolutions import _GatheredConvAdapter
from bayesym.adapters.gathered import GatherStructure, cached_structure
from bayesym.layers.pointwise_group_conv import PointwiseGroupConv2d

__all__ = ["PointwiseGroupConvAdapter", "pointwise_gather_structure"]


def pointwise_gather_structure(module: PointwiseGroupConv2d) -> GatherStructure:
    """The :class:`GatherStructure` of a pointwise group convolution (module docstring)."""
    n, k2 = module.group.order, module.kernel_size**2
    taps = module.expansion_index.cpu().reshape(n, k2).argsort(dim=1)  # L_g^-1: [|G|, k²]
    channels = torch.arange(module.in_channels)
    elements = torch.arange(n)
    base = (channels[None, :] * n + elements[:, None]) * k2  # [|G|, C_in]
    inverse = (base[:, :, None] + taps[:, None, :]).reshape(n, -1)  # [|G|, C_in k²]
    copy_rows = torch.arange(module.out_channels)[:, None] * n + elements[None, :]
    return GatherStructure(inverse=inverse, copy_rows=copy_rows)


class PointwiseGroupConvAdapter(_GatheredConvAdapter):
    """The paper's GCONV: ``ψ`` shared over (copy, position), each copy a gather of the patch."""

    def structure(self, module: nn.Module) -> GatherStructure:
        """Built from the layer's index maps, once per configuration."""
        if not isinstance(module, PointwiseGroupConv2d):
            raise TypeError(f"PointwiseGroupConvAdapter: got a {type(module).__name__}")
        key = (
            type(module).__name__,
            module.group.name,
            tuple(module.weight.shape),
        )
        return cached_structure(key, lambda: pointwise_gather_structure(module))
