"""Fashion-MNIST (Xiao et al., 2017) from the four standard IDX files.

Where the files are looked for, first match wins:

1. the ``root`` argument (CLI: ``--root DIR``),
2. the environment variable ``BAYESYM_DATA``,
3. ``/usr/share/datasets/fashion-mnist`` (Debian package ``dataset-fashion-mnist``:
   ``apt-get install -y dataset-fashion-mnist``).

The chosen directory may hold the files directly or in a ``fashion-mnist/`` sub-directory.
Each file may be gzip-compressed (``train-images-idx3-ubyte.gz``) or raw
(``train-images-idx3-ubyte``).

Splits: ``train`` = the 60000 training images minus a validation part of ``val_size``
(default: a sixth of the training file, 10000, so 50000 train), chosen with a seeded
permutation (``split_seed``); ``val`` = that part; ``test`` = the 10000 test images.
(Files with other numbers of 28x28 images are accepted too, e.g. small test fixtures.)
Pixels are scaled to ``[0, 1]`` (``uint8 / 255``); images are ``[N, 1, 28, 28]``
float32, labels int64 in ``0..9``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from bayesym.data.errors import CorruptDatasetError, DatasetNotFoundError
from bayesym.data.idx import IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, read_idx
from bayesym.data.image_dataset import ImageDataset
from bayesym.data.splits import Split, check_split, validation_split

__all__ = [
    "DATA_DIR_ENV",
    "DEFAULT_FASHION_MNIST_DIR",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_FILES",
    "fashion_mnist_dir",
    "load_fashion_mnist",
    "read_fashion_mnist_part",
]

DATA_DIR_ENV = "BAYESYM_DATA"
DEFAULT_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
FASHION_MNIST_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

HOW_TO_GET = (
    "Get Fashion-MNIST with `apt-get install -y dataset-fashion-mnist` (files land in "
    f"{DEFAULT_FASHION_MNIST_DIR}) or download the four IDX files from "
    "https://github.com/zalandoresearch/fashion-mnist into a directory and pass it as "
    f"root / --root DIR or set {DATA_DIR_ENV}."
)


def _find(directory: Path, stem: str) -> Path | None:
    for folder in (directory, directory / "fashion-mnist"):
        for name in (f"{stem}.gz", stem):
            if (folder / name).is_file():
                return folder / name
    return None


def fashion_mnist_dir(root: str | os.PathLike[str] | None = None) -> Path:
    """The directory holding the Fashion-MNIST files.

    Looks in ``root``, else ``$BAYESYM_DATA``, else the Debian location; the
    ``fashion-mnist/`` sub-directory is used when the files are there.

    Raises:
        DatasetNotFoundError: No training image file in the chosen directory; the message
            names the directory, where it came from and how to get the data.
    """
    if root is not None:
        directory, source = Path(root), "the root argument"
    elif os.environ.get(DATA_DIR_ENV):
        directory, source = Path(os.environ[DATA_DIR_ENV]), f"${DATA_DIR_ENV}"
    else:
        directory, source = DEFAULT_FASHION_MNIST_DIR, "the default location"
    found = _find(directory, FASHION_MNIST_FILES["train"][0])
    if found is None:
        raise DatasetNotFoundError(
            f"Fashion-MNIST not found in {directory} (from {source}): no "
            f"{FASHION_MNIST_FILES['train'][0]}[.gz] there or in its fashion-mnist/ "
            f"sub-directory. {HOW_TO_GET}"
        )
    return found.parent


def read_fashion_mnist_part(
    part: Literal["train", "test"], root: str | os.PathLike[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Read one file pair and check it.

    Args:
        part: ``"train"`` (60000 images) or ``"test"`` (10000 images).
        root: Directory, see the module docstring.

    Returns:
        ``(images uint8 [N, 28, 28], labels uint8 [N])``; ``N`` is 60000 / 10000 for the
        real files.

    Raises:
        DatasetNotFoundError: Missing directory or file.
        CorruptDatasetError: Wrong magic number, dims, count or label range (message names
            the file and what was expected).
    """
    if part not in FASHION_MNIST_FILES:
        raise ValueError(f"Fashion-MNIST part must be 'train' or 'test', got {part!r}")
    directory = fashion_mnist_dir(root)
    image_stem, label_stem = FASHION_MNIST_FILES[part]
    paths = []
    for stem in (image_stem, label_stem):
        path = _find(directory, stem)
        if path is None:
            raise DatasetNotFoundError(
                f"Fashion-MNIST file {directory / stem}[.gz] not found. {HOW_TO_GET}"
            )
        paths.append(path)
    images = read_idx(paths[0], expected_magic=IDX_IMAGES_MAGIC, hint=HOW_TO_GET)
    labels = read_idx(paths[1], expected_magic=IDX_LABELS_MAGIC, hint=HOW_TO_GET)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise CorruptDatasetError(
            f"{paths[0]}: expected uint8 images of shape (N, 28, 28); got {images.dtype} "
            f"{images.shape}. {HOW_TO_GET}"
        )
    if labels.dtype != np.uint8 or labels.shape != images.shape[:1]:
        raise CorruptDatasetError(
            f"{paths[1]}: expected {images.shape[0]} uint8 labels (one per image in "
            f"{paths[0].name}), i.e. shape ({images.shape[0]},); got {labels.dtype} "
            f"{labels.shape}. {HOW_TO_GET}"
        )
    if labels.size == 0 or int(labels.max()) > 9:
        raise CorruptDatasetError(f"{paths[1]}: labels must be in 0..9, found {labels.max()}")
    return images, labels


def load_fashion_mnist(
    split: Split = "train",
    *,
    root: str | os.PathLike[str] | None = None,
    split_seed: int = 0,
    val_size: int | None = None,
) -> ImageDataset:
    """Fashion-MNIST as an :class:`ImageDataset`: images ``[N, 1, 28, 28]`` in ``[0, 1]``.

    Args:
        split: ``"train"`` (50000 by default), ``"val"`` (10000) or ``"test"`` (10000).
        root: Directory with the IDX files (see the module docstring).
        split_seed: Seed of the validation carve; same seed, same split.
        val_size: Number of training images held out for validation (``None``: a sixth
            of the training file, 10000 for the real data).
    """
    check_split(split)
    part: Literal["train", "test"] = "test" if split == "test" else "train"
    images, labels = read_fashion_mnist_part(part, root)
    if split != "test":
        n_val = len(labels) // 6 if val_size is None else val_size
        train_idx, val_idx = validation_split(len(labels), n_val, split_seed)
        index = (train_idx if split == "train" else val_idx).numpy()
        images, labels = images[index], labels[index]
    tensor = torch.from_numpy(images).unsqueeze(1).to(torch.float32).div_(255.0)
    return ImageDataset(
        tensor,
        torch.from_numpy(labels.astype(np.int64)),
        num_classes=10,
        class_names=FASHION_MNIST_CLASSES,
        name=f"fmnist/{split}",
    )
