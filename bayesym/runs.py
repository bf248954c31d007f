"""One training run end to end: task -> model -> marglik (or MAP) training -> report files.

A run directory holds everything needed to inspect, resume or reproduce it:

============================  =====================================================
``config.json``               the :class:`RunConfig`
``groups.json``               the prior groups (layer, path, symmetry, number of parameters)
``checkpoint.pt``             written every epoch by the trainer (resume point)
``checkpoint.prev.pt``        the epoch before (the fallback if the newest is unreadable)
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
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from bayesym.backbones.layerwise import LayerwiseBackbone, LayerwiseBackboneConfig
from bayesym.checks import check_positive_int
from bayesym.data.image_dataset import ImageDataset
from bayesym.data.registry import make_task
from bayesym.layers.registry import layer_kind
from bayesym.marglik import MarglikConfig, MarglikTrainer
from bayesym.marglik.checkpoint import (
    TRAINER_KEYS,
    config_differences,
    load_checkpoint,
    previous_checkpoint_path,
)
from bayesym.marglik.distributed import is_main_process
from bayesym.marglik.history import EpochRecord, hyper_records
from bayesym.priors import GaussianPrior, ParameterGroup
from bayesym.report import (
    EffectiveParameterReport,
    group_symmetries,
    plot_history,
    report_from_history,
)
from curvature import KFACConfig

__all__ = [
    "RUN_FILES",
    "ModelConfig",
    "RunConfig",
    "RunResult",
    "build_model",
    "check_resumable",
    "load_data",
    "load_groups",
    "load_symmetries",
    "resolve_device",
    "run",
    "run_title",
    "upgrade_config_json",
]


RUN_FILES: dict[str, str] = {
    "config.json": "the configuration",
    "groups.json": "the prior groups and the symmetry of each path",
    "checkpoint.pt": "the last epoch's state (rerun the command to resume)",
    "checkpoint.prev.pt": "the epoch before (fallback if the newest is unreadable)",
    "history.json": "per-epoch losses, marglik, precisions, effective parameters",
    "report.txt": "the effective-parameter table",
    "report.csv": "the table's every column",
    "report.json": "the table's every column and each layer's chosen path",
    "plot.png": "training curves and each layer's choice over training",
    "metrics.json": "test and validation accuracy and NLL, parameter count",
}
"""The files of a run directory and what each holds, in the order they are listed."""

LOCATION_FIELDS = frozenset({"data_root"})
"""Fields of :class:`RunConfig` that say where things are, not what is computed: a run may
resume with other values (the new command's are used)."""


@dataclass(frozen=True)
class ModelConfig:
    """The network of a run: the 8-block backbone of one layer kind.

    Attributes:
        layer_kind: layer kind of every block (``bayesym.layers.layer_kinds()``: ``"ffc+conv"``,
            ``"conv"``, ``"fc"``, ``"ffc+conv+gconv"``, ...).
        width: width multiplier ``a`` of the backbone.
        layer_options: extra options of every block's layer (e.g. ``{"group": "C4"}``).
    """

    layer_kind: str = "ffc+conv"
    width: int = 8
    layer_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        layer_kind(self.layer_kind)  # raises for an unknown kind, listing the known ones
        check_positive_int(self.width, name="width", owner="ModelConfig")
        object.__setattr__(self, "layer_options", dict(self.layer_options))


@dataclass(frozen=True)
class RunConfig:
    """What to train and how: a task, a model and the trainer's configuration.

    The JSON form (:meth:`to_json`, saved as ``config.json``) nests the parts; ``bayesym fit``
    exposes their fields as options (:mod:`bayesym.cli.options`).

    Attributes:
        task: a registered task name (``bayesym data list``).
        model: the network (:class:`ModelConfig`).
        training: the trainer's schedule, optimisers and curvature
            (:class:`~bayesym.marglik.MarglikConfig`); its ``seed`` also seeds the model's
            initialisation and the task's random transformation.
        train_subset: use only this many training images (``None``: all).
        data_root: Fashion-MNIST directory (``None``: ``$BAYESYM_DATA`` or the Debian path).
    """

    task: str = "quadrant-digits"
    model: ModelConfig = field(default_factory=ModelConfig)
    training: MarglikConfig = field(default_factory=MarglikConfig)
    train_subset: int | None = None
    data_root: str | None = None

    def __post_init__(self) -> None:
        if self.train_subset is not None:
            check_positive_int(self.train_subset, name="train_subset", owner="RunConfig")

    @property
    def seed(self) -> int:
        """The run's seed (``training.seed``)."""
        return self.training.seed

    @property
    def method(self) -> Literal["marglik", "map"]:
        """``"marglik"`` when the prior is learned, else ``"map"`` (fixed unit prior)."""
        return "marglik" if self.training.learn_prior else "map"

    def to_json(self) -> dict[str, Any]:
        """The JSON form (nested: ``model``, ``training``, ``training.kfac``)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunConfig:
        """Read :meth:`to_json`'s form, or the flat form that older versions saved."""
        data = upgrade_config_json(data)
        training = dict(data.get("training", {}))
        kfac = KFACConfig(**training.pop("kfac", {}))
        return cls(
            task=data.get("task", cls.task),
            model=ModelConfig(**data.get("model", {})),
            training=MarglikConfig(**{**training, "kfac": kfac}),
            train_subset=data.get("train_subset"),
            data_root=data.get("data_root"),
        )


_LEGACY_FIELDS: dict[str, str] = {
    **{k: f"model.{k}" for k in ("layer_kind", "width", "layer_options")},
    **{
        k: f"training.{k}"
        for k in ("epochs", "batch_size", "lr", "burn_in", "hyper_every", "hyper_steps",
                  "marglik_subset", "marglik_batch_size", "seed")
    },
    "ggn": "training.kfac.ggn_type",
    "approx": "training.kfac.approx",
}  # fmt: skip
"""Fields of the flat ``config.json`` of older versions -> their place in the nested form."""


def upgrade_config_json(data: Mapping[str, Any]) -> dict[str, Any]:
    """The nested JSON form of a run configuration saved flat by an older version.

    A nested form is returned unchanged. The flat form's ``method`` becomes
    ``training.learn_prior``.
    """
    if "model" in data or "training" in data:
        return dict(data)
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key == "method":
            key, value = "training.learn_prior", value == "marglik"
        parts = _LEGACY_FIELDS.get(key, key).split(".")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


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
    history: list[EpochRecord]
    run_dir: Path


def build_model(config: RunConfig, data: ImageDataset) -> nn.Module:
    """The 8-block backbone of ``config.model`` for the images and classes of ``data``."""
    channels, height, width = data.image_shape
    backbone = LayerwiseBackboneConfig(
        layer_kind=config.model.layer_kind,
        width=config.model.width,
        in_channels=channels,
        num_classes=data.num_classes,
        input_size=(height, width),
        layer_options=config.model.layer_options,
    )
    return LayerwiseBackbone(backbone)


def load_groups(run_dir: str | Path) -> list[ParameterGroup]:
    """The prior groups saved in a run directory."""
    records = json.loads((Path(run_dir) / "groups.json").read_text())
    return [
        ParameterGroup(
            name=r["name"],
            layer=r["layer"],
            path=r["path"],
            parameters=tuple(r["parameters"]),
            numel=r["numel"],
        )
        for r in records
    ]


def load_symmetries(run_dir: str | Path) -> dict[str, str]:
    """Group name -> symmetry of its path, as saved in ``groups.json`` (empty for old runs)."""
    records = json.loads((Path(run_dir) / "groups.json").read_text())
    return {r["name"]: r["symmetry"] for r in records if "symmetry" in r}


def load_data(config: RunConfig) -> tuple[ImageDataset, ImageDataset, ImageDataset]:
    """The ``(train, valid, test)`` splits of ``config.task``, standardised.

    ``train_subset`` draws a seeded subset of the training split; one larger than the split
    uses all of it, with a warning that names both numbers.
    """
    options: dict[str, Any] = {"seed": config.seed, "root": config.data_root, "standardize": True}
    train = make_task(config.task, "train", **options)
    if config.train_subset is not None and config.train_subset > len(train):
        warnings.warn(
            f"train_subset={config.train_subset} is more than the {len(train)} training images "
            f"of {config.task}; training on all {len(train)}",
            stacklevel=2,
        )
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


def check_resumable(config: RunConfig, run_dir: Path) -> None:
    """Raise unless ``run_dir`` is new or holds a run of the same configuration.

    Raises:
        ValueError: naming the settings that differ.
    """
    config_path = run_dir / "config.json"
    if not config_path.is_file():
        return
    previous = upgrade_config_json(json.loads(config_path.read_text()))
    changed = config_differences(previous, config.to_json(), RunConfig)
    changed = [name for name in changed if name not in LOCATION_FIELDS]
    if changed:
        raise ValueError(
            f"{run_dir} holds a run with a different configuration (differs in {changed}); "
            "use another directory"
        )


def run(
    config: RunConfig,
    run_dir: str | Path,
    *,
    progress: bool = True,
    device: str | torch.device | None = None,
) -> RunResult:
    """Train ``config`` into ``run_dir`` (resuming if it holds a checkpoint of the same config).

    The configuration, the device, the data, the network and the trainer are checked, loaded
    and built before anything is written, so a run that fails to start leaves ``run_dir`` as
    it was (and the corrected command may use it). If the newest checkpoint is missing but
    the previous one is there, the run resumes from that, with a warning. A ``data_root``
    other than the saved one does not block a resume (it says where the data are, not what
    they are).

    ``device`` (default CPU) holds the model and the data during training. It is not part of
    the configuration: a run may be resumed on another device (results then differ by
    floating-point round-off); ``metrics.json`` records the device of the last session.

    Raises:
        ValueError: if ``run_dir`` holds a run of a different configuration, ``device`` is
            not available, or the network cannot be built with the layer options.
        OSError: if a file cannot be written (read-only or full disk), naming it.
    """
    target = resolve_device(device)
    run_dir = Path(run_dir)
    check_resumable(config, run_dir)
    train, valid, test = (d.to(target) for d in load_data(config))
    torch.manual_seed(config.seed)
    model = _build_model(config, train).to(target)
    prior = GaussianPrior(model)
    trainer = MarglikTrainer(
        model,
        prior=prior,
        config=config.training,
        run_dir=run_dir,
        progress=progress,
        progress_label=f"{config.task} {config.method}",
    )
    # Everything is checked and loaded: only now is anything written.
    main = is_main_process()  # data-parallel (torchrun): rank 0 writes the run directory
    symmetries = group_symmetries(model, prior.groups)
    run_dir.mkdir(parents=True, exist_ok=True)
    if main:
        (run_dir / "config.json").write_text(json.dumps(config.to_json(), indent=1))
        groups = [
            {**dataclasses.asdict(g), "symmetry": symmetries.get(g.name)} for g in prior.groups
        ]
        (run_dir / "groups.json").write_text(json.dumps(groups, indent=1))
    checkpoint = run_dir / "checkpoint.pt"
    if not checkpoint.is_file() and previous_checkpoint_path(checkpoint).is_file():
        # the newest is missing: load_checkpoint warns and takes the previous one
        trainer.load_state_dict(load_checkpoint(checkpoint, TRAINER_KEYS))
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
    hyper = hyper_records(history)
    if hyper:
        metrics["marglik"] = hyper[-1].marglik
    if main:
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    report = None
    if hyper:
        report = report_from_history(history, prior.groups, symmetries)
    if report is not None and main:
        (run_dir / "report.txt").write_text(report.to_table() + "\n")
        report.to_csv(run_dir / "report.csv")
        report.to_json(run_dir / "report.json")
        plot_history(history, prior.groups, run_dir / "plot.png", title=run_title(config))
    return RunResult(metrics, report, history, run_dir)


def run_title(config: RunConfig) -> str:
    """What a run is, in one line: ``quadrant-digits: ffc+conv, marglik`` (plots, summaries)."""
    group = config.model.layer_options.get("group")
    kind = config.model.layer_kind + (f" ({group})" if group else "")
    return f"{config.task}: {kind}, {config.method}"


def _build_model(config: RunConfig, data: ImageDataset) -> nn.Module:
    """:func:`build_model`, its errors as one ``ValueError`` naming the kind and options."""
    try:
        return build_model(config, data)
    except (KeyError, TypeError) as err:
        reason = err.args[0] if err.args else str(err)
        raise ValueError(
            f"cannot build the {config.model.layer_kind!r} network with the options "
            f"{dict(config.model.layer_options)}: {reason}"
        ) from None
