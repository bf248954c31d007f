"""Selection splits: train and validation carved from the training file, test kept apart.

:func:`selection_split` builds a task's training file once, draws a seeded permutation of it
and takes the first ``train_size`` images for training and the next ``val_size`` for
validation (disjoint by construction), optionally resizes all images (e.g. Fashion-MNIST 28x28
to 14x14 by 2x2 averaging, zero-padded to 16x16: even sizes keep polyphase subsampling exactly
equivariant), and standardises every split with the statistics of the training subset. The
test split comes from the task's test file, untouched by the permutation. Selectors receive
``train`` and ``valid`` only; the harness scores ``test`` once.

Example:
    >>> split = selection_split("digits", train_size=100, val_size=50, seed=0)
    >>> len(split.train), len(split.valid), len(split.test) > 0
    (100, 50, True)
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from bayesym.checks import is_positive_int
from bayesym.data.digits import resize_and_pad
from bayesym.data.image_dataset import ImageDataset
from bayesym.data.registry import make_task
from bayesym.data.standardization import Standardization

__all__ = ["Resize", "SelectionSplit", "selection_split"]


@dataclass(frozen=True)
class Resize:
    """Resize every image to ``size x size`` (bilinear), then zero-pad ``pad`` on each side.

    Attributes:
        size: side after resizing.
        pad: zero padding per side after resizing.
    """

    size: int
    pad: int = 0

    def __post_init__(self) -> None:
        if not is_positive_int(self.size):
            raise ValueError(f"Resize.size must be a positive int, got {self.size!r}")
        if isinstance(self.pad, bool) or not isinstance(self.pad, int) or self.pad < 0:
            raise ValueError(f"Resize.pad must be a non-negative int, got {self.pad!r}")

    @classmethod
    def to_side(cls, side: int, height: int) -> Resize | None:
        """The resize that gives ``side x side`` images from ``height``-high ones.

        Halving by averaging plus symmetric padding where the side allows it (28 -> 14 + 1
        padding each side -> 16), else a plain resize; ``None`` when no change is needed.
        """
        if side == height:
            return None
        half = height // 2
        if height > side and height % 2 == 0 and half <= side and (side - half) % 2 == 0:
            return cls(half, (side - half) // 2)
        return cls(side, 0)


@dataclass(frozen=True)
class SelectionSplit:
    """The three splits of one seed.

    Attributes:
        train: training subset (what selectors train on; the budget's unit is its size).
        valid: validation subset, disjoint from ``train``, from the same training file.
        test: the task's test split (scored once by the harness, never given to a selector).
        seed: the seed of the permutation, the task's transformation and nothing else.
    """

    train: ImageDataset
    valid: ImageDataset
    test: ImageDataset
    seed: int


def _check_sizes(train_size: int, val_size: int, available: int, task: str) -> None:
    for name, value in (("train_size", train_size), ("val_size", val_size)):
        if not is_positive_int(value):
            raise ValueError(f"selection_split: {name} must be a positive int, got {value!r}")
    if train_size + val_size > available:
        raise ValueError(
            f"selection_split: train_size + val_size = {train_size + val_size} exceeds the "
            f"{available} images of {task!r}'s training file; ask for fewer"
        )


def selection_split(
    task: str,
    *,
    train_size: int,
    val_size: int,
    seed: int,
    root: str | os.PathLike[str] | None = None,
    resize: Resize | None = None,
    test_size: int | None = None,
) -> SelectionSplit:
    """Train/validation subsets of a task's training file and its test split (module docs).

    Args:
        task: a registered task (``bayesym data list``).
        train_size: images in the training subset.
        val_size: images in the validation subset.
        seed: seed of the permutation and of the task's random transformation.
        root: Fashion-MNIST directory (digits tasks ignore it).
        resize: optional :class:`Resize` applied to every split.
        test_size: optional seeded subset of the test split (``None``: all of it).

    Raises:
        ValueError: if the sizes are not positive or exceed the training file.
    """
    # The registry carves its own validation part out of the training file: join both parts
    # so that this split draws from the whole file.
    parts = [make_task(task, split, seed, root) for split in ("train", "val")]
    file = parts[0].replace(
        images=torch.cat([p.images for p in parts]),
        labels=torch.cat([p.labels for p in parts]),
        metadata={k: torch.cat([p.metadata[k] for p in parts]) for k in parts[0].metadata},
    )
    _check_sizes(train_size, val_size, len(file), task)
    order = torch.randperm(len(file), generator=torch.Generator().manual_seed(seed))
    train = file.subset(order[:train_size].sort().values)
    valid = file.subset(order[train_size : train_size + val_size].sort().values)
    test = make_task(task, "test", seed, root)
    if test_size is not None and test_size < len(test):
        generator = torch.Generator().manual_seed(seed + 1)
        test = test.subset(torch.randperm(len(test), generator=generator)[:test_size].sort().values)
    splits = [train, valid, test]
    if resize is not None:
        splits = [
            d.replace(images=resize_and_pad(d.images, resize.size, "bilinear", resize.pad))
            for d in splits
        ]
    stats = Standardization.fit(splits[0].images)
    named = [
        d.replace(
            images=stats.apply(d.images),
            name=f"{task}/{part}",
            info={**d.info, "standardization": stats},
        )
        for d, part in zip(splits, ("train", "valid", "test"), strict=True)
    ]
    train, valid, test = named
    return SelectionSplit(train, valid, test, seed=seed)
