"""Datasets and symmetry tasks as whole tensors, with a fast batch loader.

Base data: the embedded scikit-learn digits (:func:`load_digits`) and Fashion-MNIST from
IDX files (:func:`load_fashion_mnist`). Symmetry tasks (rotated, D4, translated,
quadrant, AEN augmentation arrays) are fixed, seeded transformations of a base dataset;
:func:`make_task` builds any registered task by name. May import :mod:`bayesym.groups`,
never :mod:`bayesym.layers`.
"""

from bayesym.data.digits import DIGITS_TEST_SIZE, DIGITS_VAL_SIZE, load_digits, resize_and_pad
from bayesym.data.errors import (
    CorruptDatasetError,
    DataError,
    DatasetNotFoundError,
    UnknownTaskError,
)
from bayesym.data.fashion_mnist import (
    DATA_DIR_ENV,
    DEFAULT_FASHION_MNIST_DIR,
    FASHION_MNIST_CLASSES,
    fashion_mnist_dir,
    load_fashion_mnist,
)
from bayesym.data.idx import read_idx
from bayesym.data.image_dataset import BatchLoader, ImageDataset
from bayesym.data.registry import TASKS, TaskSpec, get_task_spec, make_task, task_names
from bayesym.data.splits import SPLITS, Split, validation_split
from bayesym.data.standardization import Standardization
from bayesym.data.symmetry_tasks import (
    QUADRANT_NAMES,
    aen_transformed,
    d4_transformed,
    quadrant_placed,
    rotate_images,
    rotated,
    translated,
)
from bayesym.seeds import derive_seed

__all__ = [
    "DATA_DIR_ENV",
    "DEFAULT_FASHION_MNIST_DIR",
    "DIGITS_TEST_SIZE",
    "DIGITS_VAL_SIZE",
    "FASHION_MNIST_CLASSES",
    "QUADRANT_NAMES",
    "SPLITS",
    "TASKS",
    "BatchLoader",
    "CorruptDatasetError",
    "DataError",
    "DatasetNotFoundError",
    "ImageDataset",
    "Split",
    "Standardization",
    "TaskSpec",
    "UnknownTaskError",
    "aen_transformed",
    "d4_transformed",
    "derive_seed",
    "fashion_mnist_dir",
    "get_task_spec",
    "load_digits",
    "load_fashion_mnist",
    "make_task",
    "quadrant_placed",
    "read_idx",
    "resize_and_pad",
    "rotate_images",
    "rotated",
    "task_names",
    "translated",
    "validation_split",
]
