r"""Residual pathway priors (Finzi, Benton & Wilson, 2021): fixed priors of different strength.

Every selectable layer of the space's residual network
(:meth:`~bayesym.selectors.spaces.SearchSpace.residual_network`) is a
:class:`~bayesym.layers.PathSum` of an equivariant path and an unconstrained one (CONV + FC in
the translation space, D4 + C1 group convolutions in the D4 space). The two paths get *fixed*
Gaussian priors: a weak one (small precision :math:`\delta_{eq}`) on the equivariant path and a
strong one (large :math:`\delta_{neq}`) on the unconstrained path; every other parameter group
(e.g. the head) gets :math:`\delta_{eq}`. Training is plain MAP
(:class:`~bayesym.marglik.MarglikTrainer` with ``learn_prior=False``): nothing about the
prior is learned, the data can only outvote the strong prior where the symmetry is wrong.

**Precisions from weight decays.** RPP's reference code adds :math:`wd\,\lVert\theta\rVert^2` to
the *mean* loss over :math:`N` training images. The trainer's MAP objective is
:math:`\frac1N\sum_n -\log p(y_n|x_n,\theta) + \frac{1}{2N}\sum_g\delta_g\lVert\theta_g\rVert^2`,
so the two agree for :math:`\delta = 2\,wd\,N` (:meth:`RPPConfig.precisions`). Each path's
prior is given either as a weight decay (``prior_unit="weight_decay"``, default: the
reference's CIFAR-10 values :math:`wd_{eq} = 10^{-4}`, :math:`wd_{neq} = 10^{-2}`) or directly
as a precision (``prior_unit="precision"``).

**Read-out** (``readout``). ``"output"`` (default): per layer, the share of each path in the
layer's output energy over the validation images,
:math:`s_p = \sum_x\lVert f_p(x)\rVert^2 / \sum_q\sum_x\lVert f_q(x)\rVert^2` (forward
passes only, counted as evaluation passes), and the choice is the path with the largest
share: a function-space measure of how much the unconstrained path is used, independent of
how many weights each path has. ``"effective"``: one KFAC curvature pass over the training
data under the fixed prior, charged to the budget like a marglik hyper step, and the path
with the largest relative effective number of parameters
:math:`(\gamma_p/P_p)/\sum_q(\gamma_q/P_q)` (the marglik selector's rule); under a *fixed*
prior this mostly reflects the prior's strengths and the paths' input statistics, not what
the data need (a useless path with informative-looking inputs keeps its :math:`\gamma`), so
it is offered for comparison with the marglik only. ``effective_parameters`` holds
:math:`\gamma_g` per group with ``"effective"`` and is ``None`` with ``"output"``.

**Cost.** :math:`E` MAP epochs of :math:`N` passes (plus :math:`Md` for the effective read-out);
with ``Budget(epochs=B)``, :math:`E` is the most whole epochs that fit with the read-out.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from bayesym.data.image_dataset import ImageDataset
from bayesym.layers.paths import PathSum
from bayesym.marglik import MarglikConfig
from bayesym.marglik.evaluation import tensor_batches
from bayesym.priors import GaussianPrior
from bayesym.report import effective_parameter_report
from bayesym.selectors.base import LayerChoice, SelectionResult, SelectionRun, Selector
from bayesym.selectors.budget import BudgetExhausted, BudgetMeter
from bayesym.selectors.config_checks import check_one_of, check_positive, check_training
from bayesym.selectors.prior_training import (
    curvature_passes_per_image,
    fit_schedule,
    path_choices,
    train_metered,
    trained_result,
)
from bayesym.selectors.spaces.base import DataShape
from curvature import KFAC, compute_kfac

__all__ = [
    "RPPConfig",
    "RPPSelector",
    "output_share_choices",
    "path_precisions",
    "path_output_energy",
]


@dataclass(frozen=True)
class RPPConfig:
    r"""Configuration of :class:`RPPSelector` (module docstring).

    Attributes:
        eq_prior: the equivariant path's prior (and every other group's), in ``prior_unit``.
        neq_prior: the unconstrained path's prior, in ``prior_unit``.
        prior_unit: ``"weight_decay"`` (:math:`wd`, converted to :math:`\delta = 2\,wd\,N`)
            or ``"precision"`` (:math:`\delta` itself).
        readout: ``"output"`` (path output shares on validation) or ``"effective"`` (a
            curvature pass, charged).
        neq_init_scale: the unconstrained path's initial weights are multiplied by this
            (RPP's EMLP starts it at ``1e-3`` of the equivariant path's scale; 1: unchanged).
        training: MAP schedule and optimiser (``learn_prior`` must be False; its ``seed`` is
            replaced by :attr:`seed`; its ``epochs`` apply when the budget sets none).
        seed: seed of initialisation, batch order and Monte-Carlo curvature.
    """

    eq_prior: float = 1e-4
    neq_prior: float = 1e-2
    prior_unit: Literal["weight_decay", "precision"] = "weight_decay"
    readout: Literal["output", "effective"] = "output"
    neq_init_scale: float = 1.0
    training: MarglikConfig = field(default_factory=lambda: MarglikConfig(learn_prior=False))
    seed: int = 0

    def __post_init__(self) -> None:
        check_positive(self, "eq_prior", "neq_prior", "neq_init_scale")
        check_one_of(self, "prior_unit", ("weight_decay", "precision"))
        check_one_of(self, "readout", ("output", "effective"))
        check_training(self, learn_prior=False, why="RPP's priors are fixed")

    def precisions(self, train_size: int) -> tuple[float, float]:
        r"""``(δ_eq, δ_neq)`` on ``train_size`` images (:math:`\delta = 2\,wd\,N` for decays)."""
        if self.prior_unit == "precision":
            return self.eq_prior, self.neq_prior
        return 2.0 * self.eq_prior * train_size, 2.0 * self.neq_prior * train_size


def path_precisions(
    model: nn.Module, prior: GaussianPrior, neq_path: str, eq: float, neq: float
) -> dict[str, float]:
    """Group -> precision: ``neq`` for the ``neq_path`` of every relaxed layer, else ``eq``.

    Raises:
        ValueError: if no relaxed layer of ``model`` has a path called ``neq_path``.
    """
    relaxed = {n for n, m in model.named_modules() if isinstance(m, PathSum)}
    unconstrained = {g.name for g in prior.groups if g.layer in relaxed and g.path == neq_path}
    if not unconstrained:
        raise ValueError(f"no relaxed layer of the model has a path called {neq_path!r}")
    return {g.name: neq if g.name in unconstrained else eq for g in prior.groups}


@torch.no_grad()
def path_output_energy(
    model: nn.Module, data: ImageDataset, batch_size: int = 256
) -> dict[str, dict[str, float]]:
    r"""Per relaxed layer and path, :math:`\sum_x\lVert f_p(x)\rVert^2` over ``data`` (eval mode).

    Returns:
        ``{layer name: {path name: energy}}`` for every :class:`PathSum` of ``model``.
    """
    energy: dict[str, dict[str, float]] = {}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, PathSum):
            energy[name] = dict.fromkeys(module.paths, 0.0)

            def hook(
                _: nn.Module,
                inputs: tuple,
                __: torch.Tensor,
                key: str = name,
                layer: PathSum = module,
            ) -> None:
                for path, y in layer.path_outputs(inputs[0]).items():
                    energy[key][path] += float(y.double().square().sum())

            handles.append(module.register_forward_hook(hook))
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(data), batch_size):
            model(data.images[start : start + batch_size].to(device))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return energy


def output_share_choices(model: nn.Module, data: ImageDataset) -> tuple[LayerChoice, ...]:
    """Per relaxed layer, the path with the largest share of the output energy on ``data``.

    The scores are the shares :math:`s_p` of every path (they sum to one per layer).
    """
    modules = dict(model.named_modules())
    choices = []
    for name, paths in path_output_energy(model, data).items():
        total = sum(paths.values())
        shares = {p: e / total if total > 0 else 1.0 / len(paths) for p, e in paths.items()}
        best = max(shares, key=lambda p: (shares[p], p))
        symmetry = modules[name].path_symmetries[best].describe()
        choices.append(LayerChoice(name, best, symmetry, shares))
    return tuple(choices)


class RPPSelector(Selector, name="rpp", spaces={"translation", "d4"}, config=RPPConfig):
    """Residual pathway priors: MAP under fixed priors, read out per layer (module docs)."""

    config: RPPConfig

    def _readout_cost(self, meter: BudgetMeter, num_outputs: int) -> int:
        if self.config.readout != "effective":
            return 0
        images = min(self.config.training.marglik_subset or meter.train_size, meter.train_size)
        return images * curvature_passes_per_image(self.config.training.kfac, num_outputs)

    def search(self, selection: SelectionRun) -> SelectionResult:
        """MAP-train the residual network under fixed priors and read out each layer."""
        train, valid, space = selection.train, selection.valid, selection.space
        meter = selection.meter
        shape = DataShape.of(train)
        readout_cost = self._readout_cost(meter, shape.num_classes)
        config = fit_schedule(
            dataclasses.replace(self.config.training, seed=self.config.seed),
            meter,
            0,
            extra=readout_cost,
            what="one MAP epoch and the read-out",
        )
        selection.claim()
        torch.manual_seed(self.config.seed)
        model, eq_path, neq_path = space.residual_network(shape)
        model = model.to(selection.device)
        self._scale_unconstrained(model, neq_path)
        prior = GaussianPrior(model)
        eq, neq = self.config.precisions(len(train))
        prior.set_precisions(path_precisions(model, prior, neq_path, eq, neq))
        run = train_metered(
            selection, model, prior, config, passes_per_curvature_image=1, label=self.name
        )
        choices, effective = self._readout(model, prior, train, valid, meter, shape.num_classes)
        return trained_result(
            self,
            selection,
            run,
            choices=choices,
            effective_parameters=effective,
            record={"precision_eq": eq, "precision_neq": neq, "paths": [eq_path, neq_path]},
        )

    def _scale_unconstrained(self, model: nn.Module, neq_path: str) -> None:
        if self.config.neq_init_scale == 1.0:
            return
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, PathSum) and neq_path in module.paths:
                    for p in module.paths[neq_path].parameters():
                        p.mul_(self.config.neq_init_scale)

    def _readout(
        self,
        model: nn.Module,
        prior: GaussianPrior,
        train: ImageDataset,
        valid: ImageDataset,
        meter: BudgetMeter,
        num_outputs: int,
    ) -> tuple[tuple[LayerChoice, ...], dict[str, float] | None]:
        """The choices, and the effective parameters per group (``"effective"`` only)."""
        if self.config.readout == "effective":
            try:
                meter.charge(self._readout_cost(meter, num_outputs))
            except BudgetExhausted:  # wall-clock limit: fall back to the free read-out
                pass
            else:
                kfac = self._curvature(model, prior, train)
                subset = min(self.config.training.marglik_subset or len(train), len(train))
                report = effective_parameter_report(
                    model, prior, kfac, data_scale=len(train) / subset
                )
                effective = dict(
                    zip(prior.names, [r.effective_parameters for r in report.rows], strict=True)
                )
                return path_choices(model, report), effective
        meter.count_eval(len(valid))
        return output_share_choices(model, valid), None

    def _curvature(self, model: nn.Module, prior: GaussianPrior, train: ImageDataset) -> KFAC:
        """KFAC of ``model`` on the training data (or its seeded subset), in eval mode."""
        config = self.config.training
        x, y = train.images, train.labels
        if config.marglik_subset is not None and config.marglik_subset < len(train):
            generator = torch.Generator().manual_seed(self.config.seed + 7919)
            index = torch.randperm(len(train), generator=generator)[: config.marglik_subset]
            x, y = x[index], y[index]
        device = next(model.parameters()).device
        batches = [
            (xb.to(device), yb.to(device))
            for xb, yb in tensor_batches(x, y, config.batch_size, None)
        ]
        model.eval()
        try:
            return compute_kfac(
                model,
                batches,
                "classification",
                dataclasses.replace(config.kfac, seed=self.config.seed * 100003),
                exclude=prior.excluded,
            )
        finally:
            model.train()
