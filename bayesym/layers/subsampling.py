r"""Adaptive polyphase subsampling (APS, Chaman & Dokmanic 2021; App. F.2 of the layer-wise paper).

A stride-``s`` subsampling keeps one of the ``s^2`` polyphase components
``x[..., i::s, j::s]``. Fixed strided subsampling (``i = j = 0``) is not shift-equivariant;
APS keeps, **for each sample separately**, the component of largest norm (``l_inf`` as in
App. F.2). A cyclic shift of the input permutes the components (and shifts them), so the
selected component is the same one up to a cyclic shift: with ``x'`` the input shifted by
``(a, b)``,

.. math::
    \mathrm{APS}(x') = \mathrm{roll}\big(\mathrm{APS}(x), (\lfloor (a + i)/s \rfloor,
    \lfloor (b + j)/s \rfloor)\big),

where ``(i, j)`` is the phase chosen for ``x``. Hence a stack of circular convolutions,
pointwise nonlinearities and APS layers followed by global pooling (or ending at ``1 x 1``)
is *exactly invariant* to every cyclic shift of its input, as long as every subsampled size
is divisible by ``s`` and no two components tie in norm (ties are broken towards the lowest
phase index ``i * s + j``, which is measure-zero for continuous inputs).

Choosing a single phase for the whole batch (as the public reference code does) makes a
sample's output depend on the other samples and breaks shift equivariance.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import nn

from bayesym.checks import check_positive_int

__all__ = ["PhaseNorm", "PolyphaseSubsample2d"]

PhaseNorm = Literal["linf", "l2"]
"""Norm that ranks polyphase components: ``"linf"`` (max-abs, App. F.2) or ``"l2"``."""


class PolyphaseSubsample2d(nn.Module):
    """Per-sample adaptive polyphase subsampling of the last two (spatial) axes.

    Args:
        stride: subsampling factor ``s`` (default 2).
        norm: see :data:`PhaseNorm` (default ``"linf"``).

    Shape:
        ``x: [N, *, H, W] -> [N, *, H / s, W / s]`` (``*`` e.g. channels, or channels and a
        group axis); the norm of a component is taken over everything but the batch axis, so a
        group feature map ``[N, C, G, H, W]`` uses one phase for all group channels (which
        keeps rotation/flip equivariance on square grids with ``H`` divisible by ``s``).

    Raises:
        ValueError: if ``H`` or ``W`` is not divisible by ``stride``.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> aps = PolyphaseSubsample2d()
        >>> x = torch.randn(3, 2, 8, 8)
        >>> y, y_shifted = aps(x), aps(torch.roll(x, (1, 3), (-2, -1)))
        >>> torch.equal(y.amax((-2, -1)), y_shifted.amax((-2, -1)))
        True
    """

    def __init__(self, stride: int = 2, *, norm: PhaseNorm = "linf") -> None:
        super().__init__()
        owner = type(self).__name__
        self.stride = check_positive_int(stride, name="stride", owner=owner)
        if norm not in get_args(PhaseNorm):
            raise ValueError(f"{owner}: norm must be one of {get_args(PhaseNorm)}, got {norm!r}")
        self.norm: PhaseNorm = norm

    def _components(self, x: torch.Tensor) -> torch.Tensor:
        """All polyphase components: ``[N, s*s, *, H/s, W/s]``, phase index ``i * s + j``."""
        if x.dim() < 3:
            raise ValueError(f"{self!r}: expected input [N, *, H, W], got {list(x.shape)}")
        s = self.stride
        height, width = x.shape[-2:]
        if height % s or width % s:
            raise ValueError(
                f"{self!r}: spatial size ({height}, {width}) of input {list(x.shape)} is not "
                f"divisible by the stride {s}; exact shift equivariance needs divisible sizes"
            )
        return torch.stack([x[..., i::s, j::s] for i in range(s) for j in range(s)], dim=1)

    def _phase_scores(self, components: torch.Tensor) -> torch.Tensor:
        flat = components.flatten(2)
        if self.norm == "linf":
            return flat.abs().amax(-1)
        return flat.pow(2).sum(-1)

    def select_phases(self, x: torch.Tensor) -> torch.Tensor:
        """The phase chosen for each sample: ``[N, 2]`` long tensor of ``(i, j)``."""
        index = self._phase_scores(self._components(x)).argmax(dim=1)
        return torch.stack([index // self.stride, index % self.stride], dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Keep each sample's largest-norm polyphase component."""
        components = self._components(x)
        index = self._phase_scores(components).argmax(dim=1)
        gather_index = index.view(-1, 1, *([1] * (components.dim() - 2)))
        gather_index = gather_index.expand(-1, 1, *components.shape[2:])
        return components.gather(1, gather_index).squeeze(1)

    def extra_repr(self) -> str:
        """Constructor arguments shown by ``repr``."""
        return f"stride={self.stride}, norm={self.norm!r}"
