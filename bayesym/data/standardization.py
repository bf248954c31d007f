"""Per-channel standardisation to zero mean and unit variance, fitted on a training split.

The papers standardise inputs to zero mean and unit variance (layer-wise equivariance
paper, App. F.5). The statistics are computed once on the training split of a task and
then applied unchanged to its validation and test splits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Standardization"]


@dataclass(frozen=True)
class Standardization:
    """``x -> (x - mean_c) / std_c`` for every channel ``c``.

    Attributes:
        mean: Per-channel means, length ``C``.
        std: Per-channel standard deviations (population, ``> 0``), length ``C``.

    Example:
        >>> import torch
        >>> x = torch.tensor([0.0, 1.0, 2.0, 3.0]).reshape(1, 1, 2, 2)
        >>> s = Standardization.fit(x)
        >>> round(s.mean[0], 4), round(s.std[0], 4)
        (1.5, 1.118)
        >>> s.apply(x).flatten().tolist() == ((x - 1.5) / s.std[0]).flatten().tolist()
        True
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.mean) != len(self.std) or not self.mean:
            raise ValueError(
                f"Standardization: mean and std need one entry per channel, got "
                f"{len(self.mean)} and {len(self.std)}"
            )
        if any(not s > 0 for s in self.std):
            raise ValueError(f"Standardization: std must be positive, got {self.std}")

    @classmethod
    def fit(cls, images: Tensor) -> Standardization:
        """Fit per-channel statistics to ``images: [N, C, H, W]`` (computed in float64)."""
        if images.dim() != 4 or images.shape[0] == 0:
            raise ValueError(
                f"Standardization.fit: images must be a non-empty [N, C, H, W], "
                f"got {tuple(images.shape)}"
            )
        flat = images.transpose(0, 1).reshape(images.shape[1], -1).to(torch.float64)
        std = flat.std(dim=1, correction=0)
        if bool((std == 0).any()):
            raise ValueError("Standardization.fit: a channel is constant (zero variance)")
        return cls(tuple(flat.mean(dim=1).tolist()), tuple(std.tolist()))

    def apply(self, images: Tensor) -> Tensor:
        """Standardise ``images: [N, C, H, W]``; dtype and device are kept."""
        if images.dim() != 4 or images.shape[1] != len(self.mean):
            raise ValueError(
                f"Standardization.apply: expected [N, {len(self.mean)}, H, W], "
                f"got {tuple(images.shape)}"
            )
        mean = torch.tensor(self.mean, dtype=images.dtype, device=images.device)
        std = torch.tensor(self.std, dtype=images.dtype, device=images.device)
        return (images - mean[:, None, None]) / std[:, None, None]
