"""Shared pieces of the selector tests: tiny digits splits, a toy space with a known answer."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from bayesym.data import ImageDataset
from bayesym.layers import PathSum
from bayesym.selectors import DataShape, LayerChoice, SearchSpace, selection_split

TIME_KEYS = frozenset({"seconds", "wall_seconds", "seconds_before"})


def digits(train_size=64, val_size=32, seed=0):
    """A tiny digits selection split (8x8 images, 10 classes)."""
    return selection_split("digits", train_size=train_size, val_size=val_size, seed=seed)


def without_time(value):
    """``value`` (JSON form) without wall-clock entries, for comparing resumed runs."""
    if isinstance(value, dict):
        return {k: without_time(v) for k, v in value.items() if k not in TIME_KEYS}
    if isinstance(value, list):
        return [without_time(v) for v in value]
    return value


class Columns(nn.Module):
    """Select the features ``[start, stop)`` of a flat input."""

    def __init__(self, start: int, stop: int) -> None:
        super().__init__()
        self.start, self.stop = start, stop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, self.start : self.stop]


def two_path_layer(features: int, classes: int) -> PathSum:
    """Paths ``signal`` (first half of the features) and ``noise`` (second half), equal sizes."""
    half = features // 2
    return PathSum(
        {
            "signal": nn.Sequential(Columns(0, half), nn.Linear(half, classes)),
            "noise": nn.Sequential(Columns(half, features), nn.Linear(half, classes, bias=False)),
        }
    )


def signal_noise_data(n: int, seed: int, features: int = 16, classes: int = 2) -> ImageDataset:
    """Labels from the first half of the features only; the second half is pure noise."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 1, features, generator=g)
    w = torch.randn(features // 2, classes, generator=torch.Generator().manual_seed(99))
    y = (x.flatten(1)[:, : features // 2] @ w).argmax(-1)
    return ImageDataset(x, y, num_classes=classes)


@dataclass(frozen=True)
class SignalNoiseSpace(SearchSpace):
    """A toy space whose answer is known: the ``signal`` path carries all the information.

    ``unconstrained`` names the path RPP treats as the unconstrained one.
    """

    name: ClassVar[str] = "translation"  # a name the selectors support
    unconstrained: str = "noise"

    def baselines(self) -> tuple[str, ...]:
        return ("signal", "noise")

    def build_baseline(self, name: str, shape: DataShape) -> nn.Module:
        self.check_baseline(name)
        layer = two_path_layer(shape.width, shape.num_classes)
        return nn.Sequential(layer.paths[name])

    def relaxed_network(self, shape: DataShape) -> nn.Module:
        return nn.Sequential(two_path_layer(shape.width, shape.num_classes))

    def residual_network(self, shape: DataShape) -> tuple[nn.Module, str, str]:
        eq = "signal" if self.unconstrained == "noise" else "noise"
        return self.relaxed_network(shape), eq, self.unconstrained

    def describe(self, model: nn.Module) -> tuple[LayerChoice, ...]:
        layer = model[0]
        if isinstance(layer, PathSum):
            return (LayerChoice("0", "+".join(layer.paths), "none"),)
        return (LayerChoice("0", "single", "none"),)


def replace(config, **changes):
    """``dataclasses.replace`` that also reaches into ``training``."""
    training = {k[len("training.") :]: v for k, v in changes.items() if k.startswith("training.")}
    top = {k: v for k, v in changes.items() if not k.startswith("training.")}
    if training:
        top["training"] = dataclasses.replace(config.training, **training)
    return dataclasses.replace(config, **top)


def record_data_loads(monkeypatch) -> list[tuple[str, bool]]:
    """Record every task loaded, as ``(split, inside a selector's fit)``.

    Guards the one ``Selector.fit`` every registered selector inherits, and the two places a
    task is loaded (the data registry and the selection split).
    """
    import bayesym.data.registry as data_registry
    import bayesym.selectors.split as split_module
    from bayesym.selectors import Selector

    inside_fit, loads = [False], []
    fit = Selector.fit

    def guarded_fit(self, *args, **kwargs):
        inside_fit[0] = True
        try:
            return fit(self, *args, **kwargs)
        finally:
            inside_fit[0] = False

    original = data_registry.make_task

    def recording_make_task(task, split, *args, **kwargs):
        loads.append((split, inside_fit[0]))
        return original(task, split, *args, **kwargs)

    monkeypatch.setattr(Selector, "fit", guarded_fit)
    monkeypatch.setattr(data_registry, "make_task", recording_make_task)
    monkeypatch.setattr(split_module, "make_task", recording_make_task)
    return loads
