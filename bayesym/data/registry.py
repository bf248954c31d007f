"""Registry of named symmetry tasks: ``make_task("quadrant-digits", split="train", seed=0)``.

Every task is a base dataset (scikit-learn ``digits``, 8x8, or ``fmnist``, Fashion-MNIST
28x28) plus one symmetry transformation from :mod:`bayesym.data.symmetry_tasks`:

- ``<base>``: the base data unchanged;
- ``quadrant-<base>`` / ``quadrant-position-<base>``: object in one of four quadrants of
  a 2x canvas; label = class / ``class * 4 + quadrant`` (40 classes);
- ``rotated-<base>``: uniform random angle, bilinear (digits are zero-padded by 2 pixels
  first, to 12x12, so rotated corners stay in the frame; Fashion-MNIST is rotated at
  28x28 as in the paper);
- ``d4-<base>``: uniformly random element of D4, an exact pixel permutation;
- ``translated-<base>``: random integer shift in ``[-s, s]`` on a canvas ``2 s`` larger
  (``s = 4`` for digits -> 16x16, ``s = 8`` for Fashion-MNIST -> 44x44, as in the paper);
- ``aen-<base>-Aug0`` .. ``aen-<base>-Aug5``: the AEN augmentation arrays (G-Fashion-MNIST
  and its digits analogue);
- ``aen-<base>-IAug1`` .. ``aen-<base>-IAug12``: one AEN transformation each (the paper's
  single-transformation tasks of Tables 4-5, ``IAug<k>`` = row ``k`` of
  :data:`~bayesym.groups.pixel_transforms.PIXEL_TRANSFORMS`).

Seeds: the base split depends on ``split_seed`` only; the random transformation of a task
is drawn with ``derive_seed(seed, task name, split)``, so train, val and test draw
independently and the same arguments always give identical tensors. With
``standardize=True`` the images are standardised with per-channel statistics of the
task's *train* split (same ``seed`` and ``split_seed``), recorded in
``dataset.info["standardization"]``.

To add a task, add one :class:`TaskSpec` to the list `_specs_for` builds (``TASKS`` itself is a
read-only mapping); a new kind of transformation also needs a branch in ``_build``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from bayesym.data.digits import load_digits, resize_and_pad
from bayesym.data.errors import UnknownTaskError
from bayesym.data.fashion_mnist import load_fashion_mnist
from bayesym.data.image_dataset import ImageDataset
from bayesym.data.splits import Split, check_split
from bayesym.data.standardization import Standardization
from bayesym.data.symmetry_tasks import (
    aen_transformed,
    d4_transformed,
    quadrant_placed,
    rotated,
    translated,
)
from bayesym.groups.pixel_transforms import AUGMENTATION_PRESETS, PIXEL_TRANSFORMS
from bayesym.seeds import derive_seed

__all__ = ["TASKS", "TaskSpec", "get_task_spec", "make_task", "task_names"]

BaseName = Literal["digits", "fmnist"]
"""``"digits"``: scikit-learn digits (8x8, embedded); ``"fmnist"``: Fashion-MNIST (28x28, files)."""

SymmetryKind = Literal[
    "none", "quadrant", "quadrant-position", "rotated", "d4", "translated", "aen"
]
"""Which transformation of :mod:`bayesym.data.symmetry_tasks` a task applies."""


@dataclass(frozen=True)
class TaskSpec:
    """A registered task.

    Attributes:
        name: Registry key, e.g. ``"quadrant-position-fmnist"``.
        base: Base dataset.
        symmetry: Transformation applied after loading (and padding).
        description: One line for ``bayesym data list``.
        num_classes: Number of classes of the task's labels.
        image_shape: ``(C, H, W)`` of the task's images.
        pad: Zero padding of the base images (each side) before the transformation.
        max_shift: Largest shift of ``translated`` tasks.
        augmentation: AEN preset (``"Aug0"`` .. ``"Aug5"``) or single transformation name
            (``"rot90"``, ...) of ``aen`` tasks.
    """

    name: str
    base: BaseName
    symmetry: SymmetryKind
    description: str
    num_classes: int
    image_shape: tuple[int, int, int]
    pad: int = 0
    max_shift: int = 0
    augmentation: str | None = None

    @property
    def needs_files(self) -> bool:
        """Whether building the task reads dataset files (``root`` matters)."""
        return self.base == "fmnist"


def _specs_for(base: BaseName, label: str, size: int, classes: int) -> list[TaskSpec]:
    rot_pad = 2 if base == "digits" else 0
    shift = 4 if base == "digits" else 8
    specs = [
        TaskSpec(base, base, "none", f"{label}, unchanged", classes, (1, size, size)),
        TaskSpec(
            f"quadrant-{base}",
            base,
            "quadrant",
            f"{label} in a random quadrant of a {2 * size}x{2 * size} canvas; label = class",
            classes,
            (1, 2 * size, 2 * size),
        ),
        TaskSpec(
            f"quadrant-position-{base}",
            base,
            "quadrant-position",
            f"{label} in a random quadrant; label = class * 4 + quadrant",
            4 * classes,
            (1, 2 * size, 2 * size),
        ),
        TaskSpec(
            f"rotated-{base}",
            base,
            "rotated",
            f"{label}{' padded by 2,' if rot_pad else ''} rotated by a uniform angle (bilinear)",
            classes,
            (1, size + 2 * rot_pad, size + 2 * rot_pad),
            pad=rot_pad,
        ),
        TaskSpec(
            f"d4-{base}",
            base,
            "d4",
            f"{label} under a uniformly random D4 element (exact rotations/flips)",
            classes,
            (1, size, size),
        ),
        TaskSpec(
            f"translated-{base}",
            base,
            "translated",
            f"{label} shifted by uniform integers in [-{shift}, {shift}] on a "
            f"{size + 2 * shift}x{size + 2 * shift} canvas",
            classes,
            (1, size + 2 * shift, size + 2 * shift),
            max_shift=shift,
        ),
    ]
    for preset, names in AUGMENTATION_PRESETS.items():
        generators = ", ".join(names) if names else "none"
        specs.append(
            TaskSpec(
                f"aen-{base}-{preset}",
                base,
                "aen",
                f"{label}, AEN array {preset} (generators: {generators})",
                classes,
                (1, size, size),
                augmentation=preset,
            )
        )
    for transform in PIXEL_TRANSFORMS.values():
        specs.append(
            TaskSpec(
                f"aen-{base}-IAug{transform.paper_index}",
                base,
                "aen",
                f"{label}, AEN single transformation IAug{transform.paper_index} "
                f"({transform.name})",
                classes,
                (1, size, size),
                augmentation=transform.name,
            )
        )
    return specs


TASKS: Mapping[str, TaskSpec] = MappingProxyType(
    {
        spec.name: spec
        for spec in _specs_for("digits", "scikit-learn digits 8x8", 8, 10)
        + _specs_for("fmnist", "Fashion-MNIST 28x28", 28, 10)
    }
)
"""All registered tasks by name."""


def task_names() -> tuple[str, ...]:
    """Names of the registered tasks, in registration order."""
    return tuple(TASKS)


def get_task_spec(name: str) -> TaskSpec:
    """The :class:`TaskSpec` of a task.

    Raises:
        UnknownTaskError: Unknown name; the message lists the registered names.
    """
    try:
        return TASKS[name]
    except (KeyError, TypeError):
        raise UnknownTaskError(
            f"unknown task {name!r}; registered tasks: {', '.join(TASKS)}"
        ) from None


def _build(
    spec: TaskSpec, split: Split, seed: int, root: str | os.PathLike[str] | None, split_seed: int
) -> ImageDataset:
    if spec.base == "digits":
        base = load_digits(split, pad=spec.pad, split_seed=split_seed)
    else:
        base = load_fashion_mnist(split, root=root, split_seed=split_seed)
        if spec.pad:
            base = base.replace(images=resize_and_pad(base.images, pad=spec.pad))
    task_seed = derive_seed(seed, spec.name, split)
    if spec.symmetry == "none":
        return base
    if spec.symmetry in ("quadrant", "quadrant-position"):
        return quadrant_placed(base, task_seed, position_labels=spec.symmetry != "quadrant")
    if spec.symmetry == "rotated":
        return rotated(base, task_seed)
    if spec.symmetry == "d4":
        return d4_transformed(base, task_seed)
    if spec.symmetry == "translated":
        return translated(base, task_seed, spec.max_shift)
    if spec.symmetry == "aen" and spec.augmentation is not None:
        return aen_transformed(base, task_seed, spec.augmentation)
    raise ValueError(f"task {spec.name!r}: unsupported symmetry {spec.symmetry!r}")


def make_task(
    name: str,
    split: Split = "train",
    seed: int = 0,
    root: str | os.PathLike[str] | None = None,
    *,
    split_seed: int = 0,
    standardize: bool = False,
) -> ImageDataset:
    """Build a registered task's split as a fixed :class:`ImageDataset`.

    Args:
        name: A key of :data:`TASKS` (``bayesym data list`` prints them).
        split: ``"train"``, ``"val"`` or ``"test"``.
        seed: Seed of the task's random transformation.
        root: Fashion-MNIST directory (ignored by digits tasks); see
            :mod:`bayesym.data.fashion_mnist`.
        split_seed: Seed of the train/validation carve.
        standardize: Standardise with the statistics of this task's train split.

    Returns:
        Images ``[N, *spec.image_shape]`` float32, labels ``[N]`` int64 in
        ``[0, spec.num_classes)``, per-sample metadata of the transformation.

    Raises:
        UnknownTaskError: Unknown task name.
        DatasetNotFoundError / CorruptDatasetError: Fashion-MNIST files missing or bad.

    Example:
        >>> ds = make_task("quadrant-position-digits", split="val", seed=0)
        >>> len(ds), ds.image_shape, ds.num_classes, sorted(ds.metadata)
        (200, (1, 16, 16), 40, ['quadrant'])
    """
    spec = get_task_spec(name)
    check_split(split)
    dataset = _build(spec, split, seed, root, split_seed)
    info = dict(dataset.info, task=spec.name, split=split, seed=seed, split_seed=split_seed)
    images = dataset.images
    if standardize:
        train = dataset if split == "train" else _build(spec, "train", seed, root, split_seed)
        stats = Standardization.fit(train.images)
        images = stats.apply(images)
        info["standardization"] = stats
    result = dataset.replace(images=images, info=info, name=f"{spec.name}/{split}")
    if result.image_shape != spec.image_shape or result.num_classes != spec.num_classes:
        raise RuntimeError(  # pragma: no cover - guards the registry itself
            f"task {spec.name!r} built images {result.image_shape} with "
            f"{result.num_classes} classes; its spec says {spec.image_shape}, "
            f"{spec.num_classes}"
        )
    return result
