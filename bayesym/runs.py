"""One training run end to end: task -> model -> marglik (or MAP) training -> report files.

A run directory holds everything needed to inspect, resume or reproduce it:

============================  =====================================================
``config.json``               the :class:`RunConfig`
``groups.json``               the prior groups (layer, path, number of parameters)
``checkpoint.pt``             written every epoch by the trainer (resume point)
``history.json``              per-epoch losses, metrics, marglik, precisions, γ
``report.txt|csv|json``       effective parameters per layer and path (App. D)
``plot.png``                  training curves and relative effective parameters
``metrics.json``              final train/validation/test metrics, parameter count
============================  =====================================================

Running :func:`run` again on the same directory resumes from the checkpoint and ends with
the same result as an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from bayesym.backbones.layerwise import LayerwiseBackbone, LayerwiseBackboneConfig
from bayesym.data.image_dataset import ImageDataset
from bayesym.data.registry import make_task
from bayesym.inspection import EffectiveParameterReport, plot_history, report_from_history
from bayesym.marglik import MarglikConfig, MarglikTrainer
from bayesym.priors import GaussianPrior, ParameterGroup
from curvature import KFACConfig

__all__ = ["RunConfig", "RunResult", "build_model", "load_groups", "resolve_device", "run"]


@dataclass(frozen=True)
class RunConfig:
    """What to train and how (JSON-serialisable; ``bayesym fit`` exposes every field).

    Attributes:
        task: a registered task name (``bayesym data list``).
        layer_kind: layer kind of the 8-block backbone (``"ffc+conv"``, ``"conv"``, ``"fc"``...).
        width: width multiplier ``a`` of the backbone.
        layer_options: extra options of every block's layer (e.g. ``{"group": "C4"}``).
        method: ``"marglik"`` (learn the prior) or ``"map"`` (fixed unit prior).
        epochs: training epochs.
        batch_size: mini-batch size.
        lr: learning rate (Adam, cosine-annealed).
        burn_in: epochs before the first hyper step.
        hyper_every: epochs between hyper steps.
        hyper_steps: Adam steps on the log precisions per hyper step.
        ggn: curvature type (``"exact"``, ``"mc"`` (one sample; default: ``C - 1`` times cheaper
            than exact for ``C`` classes), ``"empirical"``).
        approx: weight-sharing approximation (``"expand"``, ``"reduce"``).
        marglik_subset: training points used for the curvature (``None``: all).
        marglik_batch_size: batch size of the curvature pass (``None``: the training batch
            size on the CPU, at least 512 on a GPU; see ``MarglikTrainer.curvature_batch_size``).
        train_subset: use only this many training images (``None``: all).
        seed: seed of model init, task transformation, shuffling and MC curvature.
        data_root: Fashion-MNIST directory (``None``: ``$BAYESYM_DATA`` or the Debian path).
    """

    task: str = "quadrant-digits"
    layer_kind: str = "ffc+conv"
    width: int = 8
    layer_options: dict[str, Any] = field(default_factory=dict)
    method: Literal["marglik", "map"] = "marglik"
    epochs: int = 40
    batch_size: int = 16
    lr: float = 1e-3
    burn_in: int = 10
    hyper_every: int = 5
    hyper_steps: int = 20
    ggn: Literal["exact", "mc", "empirical"] = "mc"
    approx: Literal["expand", "reduce"] = "expand"
    marglik_subset: int | None = None
    marglik_batch_size: int | None = None
    train_subset: int | None = None
    seed: int = 0
    data_root: str | None = None

    def __post_init__(self) -> None:
        if self.method not in ("marglik", "map"):
            raise ValueError(f"method must be 'marglik' or 'map', got {self.method!r}")

    def trainer_config(self, progress: bool) -> MarglikConfig:
        """The :class:`MarglikConfig` of this run."""
        return MarglikConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            learn_prior=self.method == "marglik",
            burn_in=self.burn_in,
            hyper_every=self.hyper_every,
            hyper_steps=self.hyper_steps,
            marglik_subset=self.marglik_subset,
            marglik_batch_size=self.marglik_batch_size,
            kfac=KFACConfig(ggn_type=self.ggn, approx=self.approx),
            seed=self.seed,
            progress=progress,
        )


@dataclass(frozen=True)
class RunResult:
    """What :func:`run` returns.

    Attributes:
        metrics: final metrics (``test_accuracy``, ``test_nll``, ``parameters``, ...).
        report: effective parameters per layer/path (``None`` for MAP runs).
        history: the training history.
        run_dir: where the files are.
    """

    metrics: dict[str, Any]
    report: EffectiveParameterReport | None
    history: list[dict[str, Any]]
    run_dir: Path


def config_differences(previous: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Names of the :class:`RunConfig` fields whose values differ between two JSON forms.

    A field missing from ``previous`` (a run written before the field existed) counts as its
    default, so that older run directories resume when the new field keeps its default.
    """
    defaults = {
        f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
        for f in dataclasses.fields(RunConfig)
        if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
    }
    previous = {**json.loads(json.dumps(defaults)), **previous}
    missing = object()
    return sorted(
        k
        for k in set(previous) | set(current)
        if previous.get(k, missing) != current.get(k, missing)
    )


def build_model(config: RunConfig, data: ImageDataset) -> nn.Module:
    """The 8-block backbone of ``config`` for the images and classes of ``data``."""
    channels, height, width = data.image_shape
    backbone = LayerwiseBackboneConfig(
        layer_kind=config.layer_kind,
        width=config.width,
        in_channels=channels,
        num_classes=data.num_classes,
        input_size=(height, width),
        layer_options=config.layer_options,
    )
    return LayerwiseBackbone(backbone)


def load_groups(run_dir: str | Path) -> list[ParameterGroup]:
    """The prior groups saved in a run directory."""
    records = json.loads((Path(run_dir) / "groups.json").read_text())
    return [ParameterGroup(**{**r, "parameters": tuple(r["parameters"])}) for r in records]


def _data(config: RunConfig) -> tuple[ImageDataset, ImageDataset, ImageDataset]:
    options = {"seed": config.seed, "root": config.data_root, "standardize": True}
    train = make_task(config.task, "train", **options)
    if config.train_subset is not None and config.train_subset < len(train):
        generator = torch.Generator().manual_seed(config.seed + 1)
        train = train.subset(torch.randperm(len(train), generator=generator)[: config.train_subset])
    return (
        train,
        make_task(config.task, "val", **options),
        make_task(config.task, "test", **options),
    )


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``device`` as a ``torch.device`` (None: CPU); refuses an unavailable CUDA device.

    Raises:
        ValueError: if the name is not a device, or CUDA is asked for and not available.
    """
    if device is None:
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"unknown device {device!r} (e.g. 'cpu', 'cuda', 'cuda:1')") from err
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} asked for, but torch sees no CUDA device")
        count = torch.cuda.device_count()
        if resolved.index is not None and resolved.index >= count:
            raise ValueError(f"device {device!r} asked for, but torch sees {count} CUDA device(s)")
    return resolved


def run(
    config: RunConfig,
    run_dir: str | Path,
    *,
    progress: bool = True,
    device: str | torch.device | None = None,
) -> RunResult:
    """Train ``config`` into ``run_dir`` (resuming if it holds a checkpoint of the same config).

    ``device`` (default CPU) holds the model and the data during training. It is not part of
    the configuration: a run may be resumed on another device (results then differ by
    floating-point round-off); ``metrics.json`` records the device of the last session.

    Raises:
        ValueError: if ``run_dir`` holds a run of a different configuration, or ``device``
            is not available.
    """
    target = resolve_device(device)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    config_path = run_dir / "config.json"
    as_json = dataclasses.asdict(config)
    if config_path.is_file():
        changed = config_differences(json.loads(config_path.read_text()), as_json)
        if changed:
            raise ValueError(
                f"{run_dir} holds a run with a different configuration (differs in {changed}); "
                "use another directory"
            )
    config_path.write_text(json.dumps(as_json, indent=1))

    train, valid, test = (d.to(target) for d in _data(config))
    torch.manual_seed(config.seed)
    model = build_model(config, train).to(target)
    prior = GaussianPrior(model)
    (run_dir / "groups.json").write_text(
        json.dumps([dataclasses.asdict(g) for g in prior.groups], indent=1)
    )
    trainer = MarglikTrainer(
        model, prior=prior, config=config.trainer_config(progress), run_dir=run_dir
    )
    start = time.perf_counter()
    history = trainer.fit(train, valid)
    seconds = time.perf_counter() - start
    metrics: dict[str, Any] = {
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_size": len(train),
        "fit_seconds_this_session": seconds,
        "device": str(target),
        **{f"test_{k}": v for k, v in trainer.evaluate(test).items()},
        **{f"valid_{k}": v for k, v in trainer.evaluate(valid).items()},
    }
    hyper = [r for r in history if r["marglik"] is not None]
    if hyper:
        metrics["marglik"] = hyper[-1]["marglik"]
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    report = None
    if hyper:
        report = report_from_history(history, prior.groups)
        (run_dir / "report.txt").write_text(report.to_table() + "\n")
        report.to_csv(run_dir / "report.csv")
        report.to_json(run_dir / "report.json")
        plot_history(history, prior.groups, run_dir / "plot.png")
    return RunResult(metrics, report, history, run_dir)
