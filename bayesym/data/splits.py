"""Deterministic train / validation / test splits.

Validation sets are carved from a training file with a seeded permutation: the same
``split_seed`` always gives the same split, on every machine (the permutation is drawn
on a CPU ``torch.Generator``). Train and validation indices are returned sorted, so the
samples keep their file order.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import Tensor

from bayesym.seeds import derive_seed

__all__ = ["SPLITS", "Split", "check_split", "validation_split"]

Split = Literal["train", "val", "test"]
"""``"train"``: training data minus the validation part; ``"val"``: the part carved from the
training data; ``"test"``: the held-out test data."""

SPLITS: tuple[str, ...] = get_args(Split)


def check_split(split: str) -> None:
    """Raise ``ValueError`` unless ``split`` is one of :data:`SPLITS`."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")


def validation_split(num_samples: int, val_size: int, split_seed: int) -> tuple[Tensor, Tensor]:
    """Carve ``val_size`` validation indices out of ``range(num_samples)``.

    Args:
        num_samples: Size of the training file.
        val_size: Number of validation samples, ``0 <= val_size < num_samples``.
        split_seed: Seed of the permutation.

    Returns:
        ``(train_idx [num_samples - val_size], val_idx [val_size])``, int64, sorted, disjoint.

    Example:
        >>> train, val = validation_split(10, 3, split_seed=0)
        >>> len(train), len(val), sorted(train.tolist() + val.tolist()) == list(range(10))
        (7, 3, True)
    """
    if not 0 <= val_size < num_samples:
        raise ValueError(
            f"validation size must be in [0, {num_samples}) for {num_samples} samples, "
            f"got {val_size}"
        )
    generator = torch.Generator().manual_seed(derive_seed(split_seed, "validation", num_samples))
    order = torch.randperm(num_samples, generator=generator)
    return order[val_size:].sort().values, order[:val_size].sort().values
