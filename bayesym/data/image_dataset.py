"""Whole-tensor image datasets and a batch loader that slices them without per-item overhead.

A dataset stores all its images as one tensor ``images: [N, C, H, W]`` (float32) and all
labels as ``labels: [N]`` (int64). :class:`BatchLoader` draws batches by indexing these
tensors directly, which avoids the per-item ``__getitem__`` calls and collation of
``torch.utils.data.DataLoader``; the datasets still work with a normal ``DataLoader``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from types import MappingProxyType

import torch
from torch import Tensor
from torch.utils.data import Dataset

from bayesym.checks import is_positive_int

__all__ = ["BatchLoader", "ImageDataset"]


def _check_images_and_labels(images: Tensor, labels: Tensor, num_classes: int, name: str) -> None:
    """Raise naming ``name`` unless the images and labels make a dataset.

    Images: finite ``[N, C, H, W]`` floats; labels: ``[N]`` int64 in ``[0, num_classes)``.
    """
    if not isinstance(images, Tensor) or images.dim() != 4:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"{name}: images must be a tensor [N, C, H, W], got {shape}")
    if not images.is_floating_point():
        raise ValueError(f"{name}: images must be floating point, got {images.dtype}")
    if not isinstance(labels, Tensor) or labels.shape != images.shape[:1]:
        shape = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
        raise ValueError(f"{name}: labels must be [N={images.shape[0]}], got {shape}")
    if labels.dtype != torch.int64:
        raise ValueError(f"{name}: labels must be int64, got {labels.dtype}")
    if not is_positive_int(num_classes):
        raise ValueError(f"{name}: num_classes must be a positive int, got {num_classes!r}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(
            f"{name}: labels must lie in [0, {num_classes}), got range "
            f"[{int(labels.min())}, {int(labels.max())}]"
        )
    # A sum is much cheaper than an elementwise isfinite and propagates NaN and inf; the
    # exact check only runs when the sum is not finite (or overflowed).
    if not bool(torch.isfinite(images.sum())) and not bool(torch.isfinite(images).all()):
        raise ValueError(f"{name}: images contain NaN or infinite values")


class ImageDataset(Dataset):
    """Labelled images held as two tensors, torchvision-style item access.

    Attributes:
        images: ``[N, C, H, W]`` floating point (float32 for every dataset of this package).
        labels: ``[N]`` int64 in ``[0, num_classes)``.
        num_classes: Number of classes of the task.
        class_names: One name per class (``len == num_classes``).
        metadata: Per-sample facts, each a tensor with leading dim ``N`` (e.g. ``"angle"``,
            ``"quadrant"``, ``"shift"``, ``"d4_element"``, ``"powers"``); see the builders in
            :mod:`bayesym.data.symmetry_tasks`.
        info: Dataset-level facts (e.g. the AEN generators, the standardisation applied).
        name: Human-readable name used in messages and plots.

    Example:
        >>> import torch
        >>> ds = ImageDataset(torch.zeros(5, 1, 2, 2), torch.tensor([0, 1, 0, 1, 1]), num_classes=2)
        >>> image, label = ds[1]
        >>> tuple(image.shape), int(label), len(ds), ds.image_shape
        ((1, 2, 2), 1, 5, (1, 2, 2))
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        *,
        num_classes: int,
        class_names: Sequence[str] | None = None,
        metadata: Mapping[str, Tensor] | None = None,
        info: Mapping[str, object] | None = None,
        name: str = "dataset",
    ) -> None:
        _check_images_and_labels(images, labels, num_classes, name)
        names = (
            tuple(class_names) if class_names is not None else tuple(map(str, range(num_classes)))
        )
        if len(names) != num_classes:
            raise ValueError(f"{name}: {len(names)} class names for {num_classes} classes")
        metadata = dict(metadata or {})
        for key, value in metadata.items():
            if not isinstance(value, Tensor) or value.shape[:1] != images.shape[:1]:
                shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
                raise ValueError(
                    f"{name}: metadata {key!r} must be a tensor with leading dim "
                    f"N={images.shape[0]}, got {shape}"
                )
        self.images = images
        self.labels = labels
        self.num_classes = num_classes
        self.class_names = names
        self.metadata: Mapping[str, Tensor] = MappingProxyType(metadata)
        self.info: Mapping[str, object] = MappingProxyType(dict(info or {}))
        self.name = name

    def __getstate__(self) -> dict[str, object]:
        # Read-only mapping views cannot be pickled (DataLoader workers, copy.deepcopy).
        return {**self.__dict__, "metadata": dict(self.metadata), "info": dict(self.info)}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self.metadata = MappingProxyType(dict(self.metadata))
        self.info = MappingProxyType(dict(self.info))

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of every image."""
        channels, height, width = self.images.shape[1:]
        return (channels, height, width)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        """Return ``(image [C, H, W], label [])`` like a torchvision dataset."""
        return self.images[index], self.labels[index]

    def __repr__(self) -> str:
        return (
            f"ImageDataset(name={self.name!r}, n={len(self)}, image_shape={self.image_shape}, "
            f"num_classes={self.num_classes}, metadata={sorted(self.metadata)})"
        )

    def replace(
        self,
        *,
        images: Tensor | None = None,
        labels: Tensor | None = None,
        num_classes: int | None = None,
        class_names: Sequence[str] | None = None,
        metadata: Mapping[str, Tensor] | None = None,
        info: Mapping[str, object] | None = None,
        name: str | None = None,
    ) -> ImageDataset:
        """A new dataset with the given fields replaced (the others shared, not copied).

        When ``num_classes`` changes and ``class_names`` is not given, names default to
        ``"0", "1", ...``.
        """
        if num_classes is not None and class_names is None and num_classes != self.num_classes:
            class_names = tuple(map(str, range(num_classes)))
        return ImageDataset(
            self.images if images is None else images,
            self.labels if labels is None else labels,
            num_classes=self.num_classes if num_classes is None else num_classes,
            class_names=self.class_names if class_names is None else class_names,
            metadata=self.metadata if metadata is None else metadata,
            info=self.info if info is None else info,
            name=self.name if name is None else name,
        )

    def subset(self, indices: Tensor | Sequence[int]) -> ImageDataset:
        """The samples at ``indices`` (int64 ``[M]`` or a sequence), metadata included."""
        index = torch.as_tensor(indices, dtype=torch.int64, device=self.images.device)
        return self.replace(
            images=self.images[index],
            labels=self.labels[index.to(self.labels.device)],
            metadata={k: v[index.to(v.device)] for k, v in self.metadata.items()},
        )

    def to(self, device: torch.device | str) -> ImageDataset:
        """Move images, labels and metadata to ``device`` (e.g. to keep a dataset on the GPU)."""
        return self.replace(
            images=self.images.to(device),
            labels=self.labels.to(device),
            metadata={k: v.to(device) for k, v in self.metadata.items()},
        )

    def loader(
        self,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        device: torch.device | str | None = None,
    ) -> BatchLoader:
        """A :class:`BatchLoader` over this dataset (see there for the arguments)."""
        return BatchLoader(
            self.images,
            self.labels,
            batch_size,
            shuffle=shuffle,
            seed=seed,
            drop_last=drop_last,
            device=device,
        )


class BatchLoader:
    """Iterate ``(images [B, C, H, W], labels [B])`` batches by slicing whole tensors.

    Each ``iter()`` is one epoch. With ``shuffle=True`` epoch ``e`` uses the ``e``-th
    permutation drawn from a CPU generator seeded with ``seed``, so the sequence of
    batches is reproducible and differs between epochs. Without shuffling, batches are
    contiguous views of the stored tensors (no copy).

    Args:
        images: ``[N, ...]``.
        labels: ``[N]``.
        batch_size: Samples per batch (``>= 1``).
        shuffle: Draw a new random order every epoch.
        seed: Seed of the shuffling generator.
        drop_last: Drop the final batch if it has fewer than ``batch_size`` samples.
        device: Move each batch there (``None``: leave the batches where the data lives).

    Example:
        >>> import torch
        >>> loader = BatchLoader(torch.arange(5.0)[:, None], torch.arange(5), 2, shuffle=False)
        >>> [y.tolist() for _, y in loader], len(loader)
        ([[0, 1], [2, 3], [4]], 3)
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        device: torch.device | str | None = None,
    ) -> None:
        if not is_positive_int(batch_size):
            raise ValueError(f"BatchLoader: batch_size must be a positive int, got {batch_size!r}")
        if images.shape[:1] != labels.shape[:1]:
            raise ValueError(f"BatchLoader: {images.shape[0]} images but {labels.shape[0]} labels")
        self.images = images
        self.labels = labels
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.device = None if device is None else torch.device(device)
        self._generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        n = self.images.shape[0]
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        n = self.images.shape[0]
        order = torch.randperm(n, generator=self._generator) if self.shuffle else None
        for b in range(len(self)):
            start, stop = b * self.batch_size, min((b + 1) * self.batch_size, n)
            if order is None:
                images, labels = self.images[start:stop], self.labels[start:stop]
            else:
                index = order[start:stop]
                images = self.images[index.to(self.images.device)]
                labels = self.labels[index.to(self.labels.device)]
            if self.device is not None:
                images = images.to(self.device, non_blocking=True)
                labels = labels.to(self.device, non_blocking=True)
            yield images, labels
