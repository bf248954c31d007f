r"""The data a trainer takes: in-memory tensors, a ``Dataset``, a ``DataLoader`` or batches.

:func:`training_data` turns what a user holds into one of three sources, each of which yields
the ``(x, y)`` batches of an epoch, the batches of a curvature pass and the number of training
points ``N`` (the scale of the prior term :math:`\frac{1}{2N}\sum_g\delta_g\lVert\theta_g\rVert^2`
and of the marginal likelihood):

* :class:`TensorData` -- ``(x [N, ...], y [N] or [N, D])`` tensors, or any object with
  ``.images`` and ``.labels`` (e.g. :class:`~bayesym.data.ImageDataset`): the fast path. The
  trainer shuffles with its seed; batches are slices of the tensors.
* :class:`DatasetData` -- a map-style :class:`torch.utils.data.Dataset` of ``(x, y)`` items:
  the same seeded order and batches as tensors, items collated by
  :func:`~torch.utils.data.default_collate`, so it trains exactly as its stacked tensors do.
* :class:`BatchData` -- a :class:`~torch.utils.data.DataLoader` or any *re-iterable* of
  batches (a list of batches, an object whose ``__iter__`` starts a new pass). The MAP steps
  take the batches as they come (the loader shuffles, transforms, loads from disk). A batch is
  an ``(x, y)`` pair, or a mapping that is the model's input and holds the targets under
  ``"labels"``. The curvature pass of a loader whose sampler says which points it visits
  (:func:`loader_points`: the whole map-style dataset, or a ``SubsetRandomSampler``'s indices)
  runs over those points in order (or the trainer's seeded subset of them) with the loader's
  ``collate_fn``; other batch sources are iterated as they are. ``N`` is the number of those
  points, else the length of the loader's sampler, else counted in one pass.

A one-shot iterator (a generator) cannot be replayed every epoch and is refused, as is any
other type, with one line that names it.

Example:
    >>> import torch
    >>> from torch.utils.data import DataLoader, TensorDataset
    >>> x, y = torch.randn(10, 3), torch.randint(0, 2, (10,))
    >>> type(training_data((x, y))).__name__, training_data((x, y)).num_data
    ('TensorData', 10)
    >>> loader = DataLoader(TensorDataset(x, y), batch_size=4)
    >>> type(training_data(loader)).__name__, training_data(loader).num_data
    ('BatchData', 10)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    IterableDataset,
    RandomSampler,
    SequentialSampler,
    default_collate,
)

from curvature.likelihoods import make_likelihood

__all__ = [
    "BatchData",
    "DataSource",
    "DatasetData",
    "TensorData",
    "TrainingData",
    "check_batch",
    "check_outputs",
    "loader_points",
    "split_batch",
    "subset_indices",
    "tensor_batches",
    "training_data",
]

TrainingData = Any
"""``(x, y)`` tensors, an object with ``.images``/``.labels``, a map-style ``Dataset`` of
``(x, y)`` items, a ``DataLoader`` or a re-iterable of ``(x, y)`` batches."""

TARGET_KEY = "labels"
"""Key of the targets in a mapping batch (the mapping itself is the model's input)."""

Batch = tuple[Tensor | Mapping[str, Any], Tensor]


def tensor_batches(
    x: Tensor, y: Tensor, size: int, seed: int | None
) -> Iterator[tuple[Tensor, Tensor]]:
    """Batches of one epoch; shuffled with a generator seeded by ``seed`` (None: in order)."""
    for index in index_batches(x.shape[0], size, seed):
        yield x[index], y[index]


def index_batches(n: int, size: int, seed: int | None) -> list[Tensor | slice]:
    """The indices of one epoch's batches of ``size`` (shuffled by ``seed``; None: in order)."""
    if seed is None:
        return [slice(start, start + size) for start in range(0, n, size)]
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return [order[start : start + size] for start in range(0, n, size)]


def subset_indices(n: int, subset: int | None, seed: int) -> Tensor | None:
    """The seeded curvature subset of ``n`` points (``None``: all of them)."""
    if subset is None or subset >= n:
        return None
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:subset]


def _data_error(what: str, message: str) -> ValueError:
    return ValueError(f"{what} data: {message}")


def split_batch(batch: Any, what: str, index: int) -> Batch:
    """``(x, y)`` of one batch: a pair, or a mapping holding the targets under ``"labels"``."""
    if isinstance(batch, Mapping):
        if TARGET_KEY not in batch:
            raise _data_error(
                what,
                f"batch {index} is a mapping without the key {TARGET_KEY!r} (keys "
                f"{sorted(map(str, batch))}); put the targets under {TARGET_KEY!r}",
            )
        x, y = batch, batch[TARGET_KEY]
    elif isinstance(batch, (tuple, list)) and len(batch) == 2:
        x, y = batch
    else:
        raise _data_error(
            what,
            f"batch {index} is a {type(batch).__name__}; yield (x, y) pairs of tensors or "
            f"mappings holding the targets under {TARGET_KEY!r} (e.g. with a collate_fn)",
        )
    if not isinstance(x, (Tensor, Mapping)) or not isinstance(y, Tensor):
        raise _data_error(
            what,
            f"batch {index} holds ({type(x).__name__}, {type(y).__name__}); x must be a tensor "
            "(or a mapping the model takes) and y a tensor: convert with torch.as_tensor",
        )
    return x, y


def check_batch(x: Tensor | Mapping[str, Any], y: Tensor, likelihood: str, where: str) -> None:
    """Refuse a bad batch with one line naming ``where`` and the fix.

    Bad: ``x`` and ``y`` of different lengths, NaN/inf inputs (or regression targets),
    classification labels that are not integers.
    """
    inputs = [x] if isinstance(x, Tensor) else [v for v in x.values() if isinstance(v, Tensor)]
    if y.ndim == 0:
        raise ValueError(
            f"{where}: y is a scalar, so this is one item, not a batch; pass a list of items "
            "through torch.utils.data.DataLoader(items, batch_size=...)"
        )
    if isinstance(x, Tensor) and x.shape[:1] != y.shape[:1]:
        raise ValueError(
            f"{where}: x has {x.shape[0] if x.ndim else 0} points but y has {y.shape[0]}; "
            "pass inputs and targets of the same length"
        )
    for t in inputs:
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ValueError(
                f"{where}: the inputs contain NaN or inf; clean or impute them before training"
            )
    if likelihood == "classification" and (y.is_floating_point() or y.dtype == torch.bool):
        raise ValueError(
            f"{where}: classification labels must be integer class indices, got dtype "
            f"{y.dtype}; convert them with y.long() (or use likelihood='regression')"
        )
    if likelihood == "regression" and not bool(torch.isfinite(y.float()).all()):
        raise ValueError(f"{where}: the regression targets contain NaN or inf; clean them")


def check_outputs(f: Tensor, y: Tensor, likelihood: str, where: str) -> None:
    """Refuse targets that do not fit the model's outputs ``f`` (label range, target shape)."""
    try:
        make_likelihood(likelihood).check_output(f, y)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None


@dataclass
class TensorData:
    """In-memory ``x [N, ...]``, ``y [N]`` or ``[N, D]``; batches are slices."""

    x: Tensor
    y: Tensor

    @property
    def num_data(self) -> int:
        """``N``."""
        return self.x.shape[0]

    def batches(self, size: int, seed: int | None) -> Iterator[Batch]:
        """One epoch's batches (shuffled by ``seed``; None: in order)."""
        return tensor_batches(self.x, self.y, size, seed)

    def curvature_batches(self, size: int, subset: Tensor | None) -> tuple[Iterable[Batch], int]:
        """The curvature pass's batches in order over ``subset`` (None: all) and their count."""
        x, y = (self.x, self.y) if subset is None else (self.x[subset], self.y[subset])
        return list(tensor_batches(x, y, size, None)), x.shape[0]

    def check(self, model: torch.nn.Module, likelihood: str, what: str) -> None:
        """Check all of the data before training (:func:`check_batch`, :func:`check_outputs`).

        The label range and target shape are checked against the output of one point passed
        through ``model`` in eval mode without gradients.
        """
        check_batch(self.x, self.y, likelihood, f"{what} data")
        if self.num_data == 0:
            raise ValueError(f"{what} data: no points; pass at least one (x, y) pair")
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                f = model(self.x[:1].to(device))
        finally:
            model.train(was_training)
        shape = (self.num_data, *f.shape[1:])
        check_outputs(_like(f, shape), self.y, likelihood, f"{what} data")


def _like(f: Tensor, shape: tuple[int, ...]) -> Tensor:
    """A zero-stride stand-in of the outputs of all points (only its shape is read)."""
    return f.detach()[:1].expand(*shape)


def _collated(dataset: Dataset, index: Tensor) -> Any:
    """The items ``dataset[i]`` for ``i`` in ``index``, collated into one batch."""
    return default_collate([dataset[int(i)] for i in index])


@dataclass
class DatasetData:
    """A map-style ``Dataset`` of ``(x, y)`` items: tensor-path order, items collated."""

    dataset: Dataset
    what: str

    @property
    def num_data(self) -> int:
        """``N = len(dataset)``."""
        # Dataset is not Sized in torch's stubs; training_data admits only sized ones
        return len(self.dataset)  # type: ignore[arg-type]

    def batches(self, size: int, seed: int | None) -> Iterator[Batch]:
        """One epoch's batches, the same indices as :meth:`TensorData.batches`."""
        everything = torch.arange(self.num_data)
        for i, index in enumerate(index_batches(self.num_data, size, seed)):
            yield split_batch(_collated(self.dataset, everything[index]), self.what, i)

    def curvature_batches(self, size: int, subset: Tensor | None) -> tuple[Iterable[Batch], int]:
        """The curvature pass's batches in order over ``subset`` (None: all) and their count."""
        index = torch.arange(self.num_data) if subset is None else subset
        batches = (_collated(self.dataset, index[s : s + size]) for s in range(0, len(index), size))
        return (split_batch(b, self.what, i) for i, b in enumerate(batches)), len(index)


def loader_points(loader: DataLoader) -> Tensor | None:
    """The dataset indices a loader visits once per epoch, if its sampler says so.

    The sampler is the loader's (or its batch sampler's ``.sampler``): one with ``.indices``
    (e.g. ``SubsetRandomSampler``) visits those; a ``SequentialSampler`` or a full
    ``RandomSampler`` without replacement visits the whole map-style dataset. ``None`` for any
    other sampler and for an ``IterableDataset``: the points are known only by iterating.
    """
    if isinstance(loader.dataset, IterableDataset):
        return None
    batches = loader.batch_sampler
    sampler = loader.sampler if batches is None else getattr(batches, "sampler", None)
    indices = getattr(sampler, "indices", None)
    if indices is not None:
        return torch.as_tensor(list(indices), dtype=torch.long)
    n = len(loader.dataset)  # type: ignore[arg-type]  # a map-style Dataset (not Sized in stubs)
    full_random = (
        isinstance(sampler, RandomSampler) and not sampler.replacement and sampler.num_samples == n
    )
    if isinstance(sampler, SequentialSampler) or full_random:
        return torch.arange(n)
    return None


@dataclass
class BatchData:
    """A ``DataLoader`` or a re-iterable of batches; ``N`` as the module docstring says.

    Attributes:
        source: the loader or iterable.
        what: names the data in errors.
        num_data: ``N``.
        points: the dataset indices a loader visits per epoch (:func:`loader_points`), or
            ``None`` where they are unknown (the curvature pass then takes the batches as
            they come).
    """

    source: Iterable[Any]
    what: str
    num_data: int
    points: Tensor | None = None

    def batches(self, size: int, seed: int | None) -> Iterator[Batch]:
        """The batches as the source yields them (``size`` and ``seed`` are the source's)."""
        for i, batch in enumerate(self.source):
            yield split_batch(batch, self.what, i)

    def curvature_batches(self, size: int, subset: Tensor | None) -> tuple[Iterable[Batch], int]:
        """The curvature pass's batches and the number of points asked for.

        A loader whose points are known (:attr:`points`): those points of its dataset in order
        (or the ``subset``-th of them) in batches of ``size`` with the loader's collate
        function. Any other source: its batches as they come, with a ``subset`` only the first
        batches that hold at least ``len(subset)`` points.
        """
        loader = self.source
        if isinstance(loader, DataLoader) and self.points is not None:
            index = self.points if subset is None else self.points[subset]
            ordered = DataLoader(
                loader.dataset,
                batch_sampler=BatchSampler(index.tolist(), size, drop_last=False),
                collate_fn=loader.collate_fn,
                num_workers=loader.num_workers,
                pin_memory=loader.pin_memory,
                generator=torch.Generator().manual_seed(0),  # leaves the global RNG alone
            )
            batches = (split_batch(b, self.what, i) for i, b in enumerate(ordered))
            return batches, len(index)
        if subset is None:
            return self.batches(size, None), self.num_data
        return _first_points(self.batches(size, None), len(subset)), len(subset)


DataSource = TensorData | DatasetData | BatchData
"""What :func:`training_data` makes of any :data:`TrainingData`: batches on demand."""


def _first_points(batches: Iterable[Batch], points: int) -> Iterator[Batch]:
    """The first batches that hold at least ``points`` points."""
    seen = 0
    for x, y in batches:
        if seen >= points:
            return
        seen += y.shape[0]
        yield x, y


def _count(source: Iterable[Any], what: str) -> int:
    """Points of one pass over a batch source (its length is unknown)."""
    total = 0
    for i, batch in enumerate(source):
        _, y = split_batch(batch, what, i)
        total += y.shape[0] if y.ndim else 1  # a scalar target: refused by check_batch
    return total


def _loader_data(loader: DataLoader, what: str) -> BatchData:
    """A DataLoader's source: its points when it samples a fixed set, else its length."""
    points = loader_points(loader)
    if points is not None:
        return BatchData(loader, what, len(points), points)
    try:  # Sampler is not Sized in torch's stubs; one without __len__ raises TypeError here
        n = len(loader.sampler)  # type: ignore[arg-type]
    except TypeError:
        n = _count(loader, what)
    return BatchData(loader, what, n)


def training_data(data: Any, what: str = "training") -> DataSource:
    """The source of ``data`` (see the module docstring).

    Args:
        data: what the user passed.
        what: ``"training"`` or ``"validation"`` (names the data in errors).

    Raises:
        TypeError: for a one-shot iterator, an ``IterableDataset`` not in a loader, or any
            other unsupported type (one line naming it and what to pass instead).
    """
    if isinstance(data, DataSource):
        return data
    if hasattr(data, "images") and hasattr(data, "labels"):
        return TensorData(data.images, data.labels)
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], Tensor):
        if not isinstance(data[1], Tensor):
            raise TypeError(
                f"{what} data: y is a {type(data[1]).__name__}, not a tensor; convert it with "
                "torch.as_tensor"
            )
        return TensorData(*data)
    if isinstance(data, DataLoader):
        return _loader_data(data, what)
    if isinstance(data, IterableDataset):
        raise TypeError(
            f"{what} data: an IterableDataset yields single items; wrap it in "
            "torch.utils.data.DataLoader(dataset, batch_size=...)"
        )
    if isinstance(data, Dataset) and hasattr(data, "__len__"):
        return DatasetData(data, what)
    if isinstance(data, Iterator):
        raise TypeError(
            f"{what} data: a one-shot iterator ({type(data).__name__}) cannot be replayed every "
            "epoch; pass a DataLoader, a Dataset or a list of (x, y) batches"
        )
    if isinstance(data, Iterable) and not isinstance(data, (str, bytes, Tensor, Mapping)):
        return BatchData(data, what, _count(data, what))
    raise TypeError(
        f"{what} data: unsupported {type(data).__name__}; pass (x, y) tensors, an object with "
        ".images/.labels, a map-style Dataset of (x, y) items, a DataLoader, or a list of "
        "(x, y) batches"
    )
