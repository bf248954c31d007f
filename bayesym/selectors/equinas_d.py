r"""EquiNAS_D: differentiable search over the subgroups of D4 with [G]-mixed layers.

The differentiable method of *Equivariance-aware architectural optimization of neural
networks* (Sec. 5.2, Alg. 2, App. B). Every block of the space's mixed network
(:meth:`D4SubgroupSpace.mixed_network <bayesym.selectors.spaces.D4SubgroupSpace.mixed_network>`,
an :class:`~bayesym.backbones.EquiNASNet` with ``layer_type="mixed"``) is a [G]-mixed layer over
:math:`[G] = \{C_1, D_1, C_2, D_2, C_4, D_4\}`: one kernel :math:`\psi^K` per subgroup
:math:`K` and architecture logits :math:`\alpha`, computing ONE convolution with
:math:`\sum_K z_K E_K(\psi^K)`, :math:`z = \mathrm{softmax}(\alpha)`
(:class:`~bayesym.layers.MixedGroupConv2d`).

**Frozen weight norms.** Each kernel is weight-normalised,
:math:`\psi^K[d] = n^K[d]\, v^K[d] / \lVert v^K[d]\rVert`, per output channel :math:`d`: only
the direction :math:`v^K` is a parameter; the norm :math:`n^K` is a buffer of the layer set to
:math:`\lVert v^K[d]\rVert` at initialisation and never updated (it is not a parameter, so no
optimiser sees it). A component's scale therefore cannot grow to stand in for its mixture
weight :math:`z_K`: only :math:`\alpha` decides how much of each subgroup a layer uses.

**Backbones.** The space's ``norm`` chooses the backbone: ``"group_batch"`` is the paper's
(group batch norm after every mixed convolution, batch norm in the head), ``"none"`` the
norm-free one (biased convolutions, the frozen norms scaled once at initialisation to unit
output moments). Compare EquiNAS_D only with static baselines of the same ``norm``.

**The alternating steps (Alg. 2's order).** Every step draws two batches of size :math:`B`
from the *training* split, one for each update, from two independent seeded permutations per
epoch (:func:`search_orders`):

1. Z-step: :math:`\alpha \leftarrow \mathrm{Adam}_Z(\nabla_\alpha L(\Psi, \alpha; x_a, y_a))`
   on the architecture batch at the current :math:`\Psi` (first order, no unrolling).
   The gradient is taken with respect to :math:`\alpha` only and *assigned*, never
   accumulated, so it is the gradient of the architecture batch's loss alone (the reference
   code adds the weight batch's :math:`\alpha`-gradient to it). The batch-norm running
   statistics are left as they were before the Z-step: they follow the weight batches only.
2. :math:`\Psi`-step: :math:`\Psi \leftarrow \mathrm{Adam}_\Psi(\nabla_\Psi L(\Psi, \alpha;
   x_w, y_w))` on the weight batch, gradients with respect to every parameter but
   :math:`\alpha`.

``order="weights_first"`` swaps the two (the reference code's order). There is no
temperature, annealing or size penalty (the paper's Sec. 6.2). ``logit_init="uniform"``
(default, the paper) starts every :math:`\alpha` at zero; ``"favour_full"`` sets
:math:`\alpha = -2` for every component but the layer's layout group (the reference code's
``--prior`` flag, not in the paper).

**Epochs and budget.** A search epoch is :math:`\lceil N/B\rceil` steps (a last batch of a
single image is dropped, as batch norm needs two), so it makes :math:`2N` training image
passes (both batches charged to the :class:`~bayesym.selectors.budget.BudgetMeter` before
each step). With ``Budget(epochs=E)`` the search runs until the meter has spent
:math:`\lceil EN\rceil` passes (minus what the retraining reserves), i.e. :math:`E/2` search
epochs, possibly ending within an epoch; without a budget it runs ``epochs`` search epochs
(paper: 100 on rotated MNIST).

**Result.** The trained mixed network itself (the paper's output: no discretisation, no
retraining). Per block (``blocks.b.conv``, the space's layer names), a
:class:`~bayesym.selectors.base.LayerChoice` with the mixture weights :math:`z` as scores,
the group of largest :math:`z` as the choice and that group's symmetry in words.
``variant="discretised"`` additionally restricts every block to its argmax group
(:meth:`~bayesym.layers.MixedGroupConv2d.restrict`, weights inherited) and fine-tunes the
weights for ``retrain_epochs`` with a fresh Adam: the result is labelled by
``config["variant"]`` and the history's ``phase`` (``"search"`` / ``"retrain"``). The history
holds :math:`z` per block after every epoch (``z``; record 0 is the initialisation), plotted
by :func:`bayesym.selectors.equinas_d_figure.plot_mixture_history`.

**Checkpoints.** With a ``run_dir``, the network, both optimisers, the meter and the history
are saved atomically after every epoch; a rerun in the same directory resumes from there and
reaches the same result (the batch order depends only on the seed and the epoch).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from bayesym.data.image_dataset import ImageDataset
from bayesym.layers.mixed import (
    MixedGroupConv2d,
    MixedLiftingConv2d,
    architecture_parameters,
    weight_parameters,
)
from bayesym.layers.symmetry import LayerSymmetry
from bayesym.marglik.checkpoint import load_checkpoint, save_checkpoint
from bayesym.seeds import indexed_seed
from bayesym.selectors.base import LayerChoice, SelectionResult, SelectionRun, Selector
from bayesym.selectors.budget import BudgetExhausted, BudgetMeter
from bayesym.selectors.config_checks import (
    check_one_of,
    check_positive,
    check_positive_int,
)
from bayesym.selectors.spaces.base import DataShape
from bayesym.selectors.training import evaluate_model, train_epochs

__all__ = [
    "EquiNASDConfig",
    "EquiNASDSelector",
    "architecture_step",
    "discretise",
    "group_mass",
    "mixed_layers",
    "mixture_choices",
    "mixture_weights",
    "search_orders",
    "search_step",
    "weight_step",
]

MixedConv = MixedLiftingConv2d | MixedGroupConv2d
CHECKPOINT = "equinas_d_checkpoint.pt"
"""File name of the per-epoch checkpoint in a run directory."""


@dataclass(frozen=True)
class EquiNASDConfig:
    r"""Configuration of :class:`EquiNASDSelector` (defaults: the paper's App. B).

    Attributes:
        epochs: search epochs when the budget sets none (paper: 100 on rotated MNIST).
        batch_size: size of each of the two batches of a step (paper: 64).
        weight_lr: Adam learning rate of the weights :math:`\Psi` (paper: 0.01).
        architecture_lr: Adam learning rate of the logits :math:`\alpha` (paper: 0.01).
        order: ``"architecture_first"`` (Alg. 2) or ``"weights_first"`` (reference code).
        logit_init: ``"uniform"`` (paper) or ``"favour_full"`` (reference ``--prior``).
        variant: ``"mixed"`` (the paper's output) or ``"discretised"`` (argmax group per
            block, then weights fine-tuned).
        retrain_epochs: fine-tuning epochs of the discretised variant (reserved out of the
            budget before the search).
        seed: seed of the initialisation and of both batch streams.
    """

    epochs: int = 100
    batch_size: int = 64
    weight_lr: float = 0.01
    architecture_lr: float = 0.01
    order: Literal["architecture_first", "weights_first"] = "architecture_first"
    logit_init: Literal["uniform", "favour_full"] = "uniform"
    variant: Literal["mixed", "discretised"] = "mixed"
    retrain_epochs: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        check_positive_int(self, "epochs", "batch_size", "retrain_epochs")
        check_positive(self, "weight_lr", "architecture_lr")
        check_one_of(self, "order", ("architecture_first", "weights_first"))
        check_one_of(self, "logit_init", ("uniform", "favour_full"))
        check_one_of(self, "variant", ("mixed", "discretised"))


# --- the mixed layers of a network ------------------------------------------------------------
def mixed_layers(model: nn.Module) -> list[tuple[str, MixedConv]]:
    """``(qualified name, layer)`` of every [G]-mixed convolution of ``model``, in order."""
    return [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, (MixedLiftingConv2d, MixedGroupConv2d))
    ]


def mixture_weights(model: nn.Module) -> dict[str, dict[str, float]]:
    """``{layer: {group: z_K}}`` of every mixed layer (``z = softmax(α)``), by qualified name."""
    out = {}
    for name, layer in mixed_layers(model):
        z = layer.architecture_weights().detach().double().cpu().tolist()
        out[name] = {k.name: float(v) for k, v in zip(layer.components, z, strict=True)}
    return out


def _argmax(weights: dict[str, float]) -> str:
    """The group of largest weight (ties: the first in the layer's component order)."""
    names = list(weights)
    return max(names, key=lambda k: (weights[k], -names.index(k)))


def mixture_choices(
    weights: dict[str, dict[str, float]],
    chosen: dict[str, str] | None = None,
    padding_mode: str = "circular",
) -> tuple[LayerChoice, ...]:
    """One :class:`LayerChoice` per layer of ``weights`` (:func:`mixture_weights`' form).

    The choice is ``chosen[layer]`` if given, else the argmax group; the symmetry is that
    group's (with translations for circular padding); the scores are the mixture weights.
    """
    choices = []
    for label, z in weights.items():
        best = chosen[label] if chosen else _argmax(z)
        symmetry = LayerSymmetry(translations=padding_mode == "circular", point_group=best)
        choices.append(LayerChoice(label, best, symmetry.describe(), dict(z)))
    return tuple(choices)


def group_mass(
    choices: tuple[LayerChoice, ...], groups: tuple[str, ...] = ("C4", "D4")
) -> list[float]:
    """Per layer, the summed mixture weight of ``groups`` (default: the 90° rotation groups).

    E.g. the EquiNAS paper's reading "less constrained layers toward the end of the network"
    is ``group_mass`` decreasing with depth.
    """
    return [sum(float(c.scores.get(g, 0.0)) for g in groups) for c in choices]


def initialise_logits(model: nn.Module, init: str) -> None:
    """``"uniform"``: every α zero; ``"favour_full"``: −2 except the layout group's 0."""
    with torch.no_grad():
        for _, layer in mixed_layers(model):
            layer.architecture_logits.zero_()
            if init == "favour_full":
                for i, k in enumerate(layer.components):
                    if k.name != layer.group.name:
                        layer.architecture_logits[i] = -2.0


def discretise(model: nn.Module, choices: dict[str, str] | None = None) -> nn.Module:
    """``model`` with every mixed layer restricted to one component, in place.

    Args:
        model: a network with mixed layers.
        choices: ``{layer name: group}``; default: the argmax group of every layer.

    Returns:
        ``model`` (each mixed layer replaced by its one-component restriction, weights kept).
    """
    choices = choices or {label: _argmax(z) for label, z in mixture_weights(model).items()}
    for name, layer in mixed_layers(model):
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, layer.restrict([choices[name]]))
    return model


# --- the two updates ----------------------------------------------------------------------------
@contextlib.contextmanager
def frozen_running_statistics(model: nn.Module) -> Iterator[None]:
    """Restore every normalisation layer's running statistics on exit (train-mode passes)."""
    saved = {
        name: buffer.clone()
        for name, buffer in model.named_buffers()
        if name.rsplit(".", 1)[-1] in ("running_mean", "running_var", "num_batches_tracked")
    }
    try:
        yield
    finally:
        with torch.no_grad():
            for name, value in saved.items():
                model.get_buffer(name).copy_(value)


def architecture_step(
    model: nn.Module, x: Tensor, y: Tensor, optimizer: torch.optim.Optimizer
) -> float:
    r"""One Z-step: the logits' gradient set to :math:`\nabla_\alpha L(x, y)`, then a step.

    ``x: [B, C, H, W]``, ``y: [B]``. The model is in train mode; running statistics are left
    unchanged. Returns the batch's mean cross-entropy.
    """
    logits = list(architecture_parameters(model))
    model.train()
    with frozen_running_statistics(model):
        loss = F.cross_entropy(model(x), y)
        grads = torch.autograd.grad(loss, logits)
    for p, g in zip(logits, grads, strict=True):
        p.grad = g
    optimizer.step()
    return float(loss.detach())


def weight_step(
    model: nn.Module, x: Tensor, y: Tensor, optimizer: torch.optim.Optimizer
) -> tuple[float, int]:
    r"""One :math:`\Psi`-step: gradients of every non-logit parameter assigned, then a step.

    Returns the batch's mean cross-entropy and its number of correct predictions.
    """
    weights = [p for p in weight_parameters(model) if p.requires_grad]
    model.train()
    out = model(x)
    loss = F.cross_entropy(out, y)
    grads = torch.autograd.grad(loss, weights, allow_unused=True)
    for p, g in zip(weights, grads, strict=True):
        p.grad = g
    optimizer.step()
    return float(loss.detach()), int((out.argmax(-1) == y).sum())


def search_step(
    model: nn.Module,
    architecture_batch: tuple[Tensor, Tensor],
    weight_batch: tuple[Tensor, Tensor],
    architecture_optimizer: torch.optim.Optimizer,
    weight_optimizer: torch.optim.Optimizer,
    order: str = "architecture_first",
) -> dict[str, float]:
    """One step of Alg. 2: the Z-step on one batch and the Ψ-step on the other, in ``order``."""
    if order == "architecture_first":
        arch_loss = architecture_step(model, *architecture_batch, architecture_optimizer)
        loss, correct = weight_step(model, *weight_batch, weight_optimizer)
    else:
        loss, correct = weight_step(model, *weight_batch, weight_optimizer)
        arch_loss = architecture_step(model, *architecture_batch, architecture_optimizer)
    return {"loss": loss, "architecture_loss": arch_loss, "correct": correct}


def search_orders(size: int, seed: int, epoch: int) -> tuple[Tensor, Tensor]:
    """Epoch ``epoch``'s weight-batch and architecture-batch orders: two seeded permutations.

    They are drawn from independent generators seeded by ``(seed, epoch, stream)``, so the two
    batches of a step are independent uniform draws from the training split.
    """
    base = indexed_seed(seed, epoch) * 2
    weights_order, architecture_order = (
        torch.randperm(size, generator=torch.Generator().manual_seed(base + stream))
        for stream in (0, 1)
    )
    return weights_order, architecture_order


# --- the selector ---------------------------------------------------------------------------------
@dataclass
class _State:
    """What a checkpoint holds besides the network and the optimisers."""

    phase: str = "search"
    epoch: int = 0
    weight_images: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    choices: dict[str, str] | None = None


class EquiNASDSelector(Selector, name="equinas-d", spaces={"d4"}, config=EquiNASDConfig):
    """EquiNAS_D: alternating Z- and Ψ-steps on a [G]-mixed network of the ``d4`` space.

    Configured by :class:`EquiNASDConfig`; returns the trained mixed network (or its
    discretised, fine-tuned variant) with the mixture weights ``z`` of every block as the
    scores of its :class:`~bayesym.selectors.base.LayerChoice`. The algorithm, the frozen
    weight norms, the budget and the checkpoints are described in
    :mod:`bayesym.selectors.equinas_d`.
    """

    config: EquiNASDConfig

    def search(self, selection: SelectionRun) -> SelectionResult:
        """Search, optionally discretise and fine-tune, and read out ``z`` per block."""
        train, valid, space = selection.train, selection.valid, selection.space
        builder = getattr(space, "mixed_network", None)
        if builder is None:
            raise ValueError(
                f"selector {self.name!r} needs a space with a mixed network "
                f"(mixed_network(shape)); the {space.name!r} space {type(space).__name__} has none"
            )
        config = self.config
        target = selection.device
        meter = selection.meter
        reserve = len(train) * config.retrain_epochs if config.variant == "discretised" else 0
        step = 2 * min(config.batch_size, len(train))
        what = "one EquiNAS_D step (two batches)" + (" and the retraining" if reserve else "")
        meter.require(step + reserve, what)
        shape = DataShape.of(train)
        torch.manual_seed(config.seed)
        model = builder(shape).to(target)  # refuses data the space cannot take, before work
        if not mixed_layers(model):
            raise ValueError(f"the {space.name!r} space's mixed network has no mixed layer")
        folder = selection.claim()
        initialise_logits(model, config.logit_init)
        padding = getattr(mixed_layers(model)[0][1], "padding_mode", "circular")
        state = _State(history=[{"phase": "search", "epoch": 0, "z": mixture_weights(model)}])
        arch_opt = torch.optim.Adam(architecture_parameters(model), lr=config.architecture_lr)
        weight_opt: torch.optim.Optimizer = torch.optim.Adam(
            [p for p in weight_parameters(model) if p.requires_grad], lr=config.weight_lr
        )
        checkpoint = None if folder is None else folder / CHECKPOINT
        if checkpoint is not None and checkpoint.is_file():
            model, weight_opt = self._resume(checkpoint, model, arch_opt, weight_opt, meter, state)
        if state.phase == "search":
            self._search(model, train, valid, meter, reserve, arch_opt, weight_opt, state,
                         checkpoint, selection.progress)  # fmt: skip
        if state.phase == "search_done" and config.variant == "discretised":
            model, weight_opt = self._start_retraining(model, state)
            self._save(checkpoint, model, None, weight_opt, meter, state)
        if state.phase == "retrain":
            self._retrain(
                model, train, valid, meter, weight_opt, state, checkpoint, selection.progress
            )
        return self._result(selection, model, state, padding)

    # --- phases ---------------------------------------------------------------------------------
    def _search(
        self,
        model: nn.Module,
        train: ImageDataset,
        valid: ImageDataset,
        meter: BudgetMeter,
        reserve: int,
        arch_opt: torch.optim.Optimizer,
        weight_opt: torch.optim.Optimizer,
        state: _State,
        checkpoint: Path | None,
        progress: bool,
    ) -> None:
        """Search epochs from ``state.epoch`` until the schedule or the budget ends."""
        config, n = self.config, len(train)
        limit = None if meter.limit is None else meter.limit - reserve
        epochs = config.epochs if limit is None else math.ceil(limit / (2 * n))
        device = next(model.parameters()).device
        bar = tqdm(total=epochs, initial=state.epoch, desc=self.name, disable=not progress)
        stopped = False
        while state.epoch < epochs and not stopped:
            weight_order, arch_order = search_orders(n, config.seed, state.epoch)
            sums: dict[str, float] = dict.fromkeys(
                ("loss", "architecture_loss", "correct", "images"), 0.0
            )
            for start in range(0, n, config.batch_size):
                wi = weight_order[start : start + config.batch_size]
                ai = arch_order[start : start + config.batch_size]
                if len(wi) < 2 < n:  # a last batch of one image: batch norm needs two
                    break
                try:
                    if limit is not None and meter.image_passes >= limit:
                        raise BudgetExhausted("search share of the budget spent")
                    meter.charge(len(wi) + len(ai))
                except BudgetExhausted:
                    stopped = True
                    break
                batch_w = (train.images[wi].to(device), train.labels[wi].to(device))
                batch_a = (train.images[ai].to(device), train.labels[ai].to(device))
                out = search_step(model, batch_a, batch_w, arch_opt, weight_opt, config.order)
                sums["loss"] += out["loss"] * len(wi)
                sums["architecture_loss"] += out["architecture_loss"] * len(ai)
                sums["correct"] += out["correct"]
                sums["images"] += len(wi)
            if sums["images"] == 0:
                break
            state.epoch += 1
            state.weight_images += int(sums["images"])
            record = self._record(model, valid, meter, "search", state.epoch, sums)
            state.history.append(record)
            self._save(checkpoint, model, arch_opt, weight_opt, meter, state)
            bar.update(1)
            bar.set_postfix(
                loss=f"{record['train_loss']:.3f}", val=f"{record['valid_accuracy']:.3f}"
            )
        bar.close()
        state.phase = "search_done"
        state.choices = {label: _argmax(z) for label, z in mixture_weights(model).items()}
        self._save(checkpoint, model, arch_opt, weight_opt, meter, state)

    def _start_retraining(
        self, model: nn.Module, state: _State
    ) -> tuple[nn.Module, torch.optim.Optimizer]:
        """Restrict every block to its chosen group; a fresh Adam over the weights."""
        model = discretise(model, state.choices)
        state.phase, state.epoch = "retrain", 0
        optimizer = torch.optim.Adam(
            [p for p in weight_parameters(model) if p.requires_grad], lr=self.config.weight_lr
        )
        return model, optimizer

    def _retrain(
        self,
        model: nn.Module,
        train: ImageDataset,
        valid: ImageDataset,
        meter: BudgetMeter,
        optimizer: torch.optim.Optimizer,
        state: _State,
        checkpoint: Path | None,
        progress: bool,
    ) -> None:
        """Fine-tune the discretised network for ``retrain_epochs`` (budget permitting)."""
        config = self.config
        bar = tqdm(
            total=config.retrain_epochs,
            initial=state.epoch,
            desc=f"{self.name} retrain",
            disable=not progress,
        )
        while state.epoch < config.retrain_epochs:
            stats = train_epochs(
                model,
                train,
                epochs=1.0,
                optimizer=optimizer,
                batch_size=config.batch_size,
                seed=indexed_seed(config.seed, state.epoch) * 2 + 7,
                meter=meter,
            )
            if stats.images == 0:
                break
            state.epoch += 1
            state.weight_images += stats.images
            sums = {
                "loss": stats.mean_loss * stats.images,
                "correct": round(stats.accuracy * stats.images),
                "images": stats.images,
            }
            state.history.append(self._record(model, valid, meter, "retrain", state.epoch, sums))
            self._save(checkpoint, model, None, optimizer, meter, state)
            bar.update(1)
            if stats.stopped_by_budget:
                break
        bar.close()

    def _record(
        self,
        model: nn.Module,
        valid: ImageDataset,
        meter: BudgetMeter,
        phase: str,
        epoch: int,
        sums: dict[str, float],
    ) -> dict[str, Any]:
        """The history record of one finished epoch."""
        metrics = evaluate_model(model, valid, meter)
        images = sums["images"]
        record = {
            "phase": phase,
            "epoch": epoch,
            "train_loss": sums["loss"] / images,
            "train_accuracy": sums["correct"] / images,
            "valid_accuracy": metrics["accuracy"],
            "valid_nll": metrics["nll"],
            "image_passes": meter.image_passes,
            "seconds": meter.wall_seconds,
            "z": mixture_weights(model),
        }
        if "architecture_loss" in sums:
            record["architecture_loss"] = sums["architecture_loss"] / images
        return record

    # --- checkpoints and result ---------------------------------------------------------------
    def _save(
        self,
        path: Path | None,
        model: nn.Module,
        arch_opt: torch.optim.Optimizer | None,
        weight_opt: torch.optim.Optimizer,
        meter: BudgetMeter,
        state: _State,
    ) -> None:
        if path is None:
            return
        payload = {
            "model": model.state_dict(),
            "architecture_optimizer": None if arch_opt is None else arch_opt.state_dict(),
            "weight_optimizer": weight_opt.state_dict(),
            "meter": meter.state_dict(),
            "state": vars(state),
        }
        save_checkpoint(path, payload)

    def _resume(
        self,
        path: Path,
        model: nn.Module,
        arch_opt: torch.optim.Optimizer,
        weight_opt: torch.optim.Optimizer,
        meter: BudgetMeter,
        state: _State,
    ) -> tuple[nn.Module, torch.optim.Optimizer]:
        """Load the checkpoint into ``model``, the optimisers, the meter and ``state``."""
        saved = load_checkpoint(path)
        vars(state).update(saved["state"])
        if state.phase == "retrain":
            model = discretise(model, state.choices)
            weight_opt = torch.optim.Adam(
                [p for p in weight_parameters(model) if p.requires_grad], lr=self.config.weight_lr
            )
        model.load_state_dict(saved["model"])
        if saved["architecture_optimizer"] is not None:
            arch_opt.load_state_dict(saved["architecture_optimizer"])
        weight_opt.load_state_dict(saved["weight_optimizer"])
        meter.load_state_dict(saved["meter"])
        return model, weight_opt

    def _result(
        self, selection: SelectionRun, model: nn.Module, state: _State, padding: str
    ) -> SelectionResult:
        meter, folder = selection.meter, selection.folder
        searched = [r for r in state.history if r["phase"] == "search"][-1]["z"]
        choices = mixture_choices(searched, state.choices, padding)
        meter.count_candidate()
        result = self.result(
            selection.space,
            model,
            choices=choices,
            valid=evaluate_model(model, selection.valid, meter),
            cost=meter.cost(final_model_epochs=state.weight_images / meter.train_size),
            history=tuple(state.history),
        )
        if folder is not None:
            from bayesym.selectors.equinas_d_figure import plot_mixture_history

            plot_mixture_history(result.history, folder / "mixture_weights.png")
        return result
