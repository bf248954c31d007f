r"""Train a network with the Laplace marginal likelihood (paper Sec. 4, App. F.6).

Parameters take MAP steps on :math:`\frac1B\sum_{b} -\log p(y_b|x_b,\theta) +
\frac{1}{2N}\sum_g \delta_g\lVert\theta_g\rVert^2`; after a burn-in, every ``hyper_every``
epochs the KFAC curvature is computed on *un-augmented* training data (all of it or a fixed
seeded subset, rescaled to ``N``) in eval mode, and the prior log precisions (and, for
regression, the log noise) take ``hyper_steps`` Adam steps on :math:`-\log p(\mathcal D|\eta)/N`.
The factors are eigendecomposed once per hyper step, so its Adam steps are cheap.

The data are in-memory tensors (the fast path), a ``Dataset``, a ``DataLoader`` or any
re-iterable of batches (:mod:`bayesym.marglik.data`); they are checked before their first
step, and a NaN or infinite loss stops the run before that epoch is saved.

Every epoch is checkpointed (model, prior, both optimisers, the schedule, RNG states, history);
a run whose directory holds a checkpoint resumes from it and reaches the same result as an
uninterrupted run with the same seed. The model is in train mode for MAP steps and in eval
mode only while curvature and validation metrics are computed (laplace-torch's
``marglik_training`` leaves it in eval mode).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from bayesym.checks import is_positive_int
from bayesym.marglik.checkpoint import (
    TRAINER_KEYS,
    config_differences,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from bayesym.marglik.data import (
    DatasetData,
    DataSource,
    TensorData,
    TrainingData,
    check_batch,
    check_outputs,
    subset_indices,
    training_data,
)
from bayesym.marglik.distributed import DataParallel
from bayesym.marglik.evaluation import evaluate
from bayesym.marglik.history import EpochRecord, save_history
from bayesym.marglik.objective import (
    BlockLayout,
    effective_parameters_per_group,
    log_marginal_likelihood,
)
from bayesym.priors import GaussianPrior
from bayesym.seeds import indexed_seed
from curvature import KFAC, KFACConfig, compute_kfac
from curvature.plan import block_specs

__all__ = ["MarglikConfig", "MarglikTrainer", "NonFiniteLossError", "TrainingData"]


GPU_CURVATURE_BATCH = 512
"""Smallest default curvature batch on a GPU (see :meth:`MarglikTrainer.curvature_batch_size`)."""


@dataclass(frozen=True)
class MarglikConfig:
    """Schedule and optimisers of :class:`MarglikTrainer` (defaults follow App. F.6).

    Attributes:
        epochs: number of epochs.
        batch_size: MAP mini-batch size.
        lr: learning rate of the parameters (cosine-annealed to ``lr_min``).
        lr_min: final learning rate.
        optimizer: ``"adam"`` (paper) or ``"sgd"`` (momentum 0.9).
        learn_prior: learn the prior precisions (``False``: plain MAP with a fixed prior).
        burn_in: epochs before the first hyper step.
        hyper_every: a hyper step after every ``hyper_every`` epochs past the burn-in.
        hyper_steps: Adam steps on the log precisions per hyper step.
        lr_hyper: learning rate of the hyperparameters.
        marglik_subset: number of training points for the curvature (``None``: all).
        marglik_batch_size: batch size of the curvature pass (``None``: automatic, see
            :meth:`MarglikTrainer.curvature_batch_size`). The Kronecker factors are sums over
            all batches, so this trades memory for speed and changes no result (the exact and
            empirical GGN to round-off; the MC draws differ).
        kfac: curvature settings (GGN type, MC samples, expand/reduce); default: one-sample
            Monte-Carlo GGN (``C - 1`` times cheaper than the exact one for ``C`` classes).
        restore_best: restore the parameters/prior of the best marglik at the end.
        sigma: initial Gaussian noise (regression).
        learn_sigma: learn the Gaussian noise with the marglik (regression).
        seed: seed of shuffling, subset choice and Monte-Carlo curvature.

    Every field changes the result of a run; how a run is shown (progress bar) or where it
    runs (device, threads) is not configuration.
    """

    epochs: int = 40
    batch_size: int = 16
    lr: float = 1e-3
    lr_min: float = 0.0
    optimizer: Literal["adam", "sgd"] = "adam"
    learn_prior: bool = True
    burn_in: int = 10
    hyper_every: int = 5
    hyper_steps: int = 20
    lr_hyper: float = 0.1
    marglik_subset: int | None = None
    marglik_batch_size: int | None = None
    kfac: KFACConfig = field(default_factory=lambda: KFACConfig(ggn_type="mc"))
    restore_best: bool = False
    sigma: float = 1.0
    learn_sigma: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "hyper_every", "hyper_steps"):
            if not is_positive_int(getattr(self, name)):
                raise ValueError(
                    f"MarglikConfig.{name} must be a positive int, got {getattr(self, name)!r}"
                )
        if self.burn_in < 0:
            raise ValueError(f"MarglikConfig.burn_in must be >= 0, got {self.burn_in}")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(
                f"MarglikConfig.optimizer must be 'adam' or 'sgd', got {self.optimizer!r}"
            )
        for name in ("marglik_subset", "marglik_batch_size"):
            if getattr(self, name) is not None and not is_positive_int(getattr(self, name)):
                raise ValueError(
                    f"MarglikConfig.{name} must be a positive int or None, got "
                    f"{getattr(self, name)!r}"
                )

    def is_hyper_epoch(self, epoch: int) -> bool:
        """Whether a hyper step follows epoch ``epoch`` (0-based)."""
        done = epoch + 1
        return (
            self.learn_prior
            and done >= self.burn_in
            and (done - self.burn_in) % self.hyper_every == 0
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        out = dataclasses.asdict(self)
        out["kfac"] = dataclasses.asdict(self.kfac)
        return out


class NonFiniteLossError(FloatingPointError):
    """The training loss or the marginal likelihood became NaN or infinite."""


class MarglikTrainer:
    """Fit a model's parameters by MAP and its prior precisions by the Laplace marglik.

    Args:
        model: the network (any registered layers; see :mod:`curvature`).
        likelihood: ``"classification"`` (softmax cross-entropy) or ``"regression"``.
        prior: a :class:`~bayesym.priors.GaussianPrior` over ``model`` (default: per path).
        config: :class:`MarglikConfig`.
        run_dir: where checkpoints and ``history.json`` go; an existing checkpoint is resumed.
        augment: optional ``x -> x`` applied to MAP batches only (never to the curvature data).
        exclude: parameter/module names without curvature (passed to ``compute_kfac``);
            the parameters without prior (``prior.excluded``: mixing logits, homotopy
            coefficients) are always left out of the curvature as well.
        progress: show a progress bar over the epochs.
        progress_label: description of the progress bar (default ``"marglik"`` or ``"MAP"``).
        charge: called as ``charge(work, images)`` *before* training images are passed
            through the network: ``("map", batch size)`` before every MAP step and
            ``("curvature", images)`` before every hyper step's curvature pass. A budget
            meter uses it to count and stop the work (an exception raised by ``charge``
            stops :meth:`fit` before that work; the last checkpoint stays as it was).

    Created inside an initialised ``torch.distributed`` process group of several ranks
    (e.g. under ``torchrun``), on every rank, it trains data-parallel
    (:mod:`bayesym.marglik.distributed`): each rank passes the same ``train`` data and
    trains on its shard, every rank ends with the same parameters and prior.

    Raises:
        curvature.UnsupportedModuleError: with ``learn_prior``, a module with trainable
            parameters that the curvature cannot handle (e.g. an ``nn.LSTM``), named with the
            fix, when the trainer is built rather than at the first hyper step.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> _ = torch.manual_seed(0)
        >>> x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
        >>> model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
        >>> config = MarglikConfig(epochs=4, batch_size=64, lr=1e-2, burn_in=2, hyper_every=2)
        >>> history = MarglikTrainer(model, config=config, progress=False).fit((x, y))
        >>> [record.is_hyper_step for record in history]
        [False, True, False, True]
    """

    def __init__(
        self,
        model: nn.Module,
        likelihood: Literal["classification", "regression"] = "classification",
        *,
        prior: GaussianPrior | None = None,
        config: MarglikConfig | None = None,
        run_dir: str | Path | None = None,
        augment: Callable[[Tensor], Tensor] | None = None,
        exclude: tuple[str, ...] = (),
        progress: bool = True,
        progress_label: str | None = None,
        charge: Callable[[str, int], None] | None = None,
    ) -> None:
        if likelihood not in ("classification", "regression"):
            raise ValueError(
                f"likelihood must be 'classification' or 'regression', got {likelihood!r}"
            )
        self.model = model
        self.likelihood = likelihood
        self.config = config or MarglikConfig()
        self.prior = prior if prior is not None else GaussianPrior(model)
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.augment = augment
        self.exclude = exclude
        self.progress = progress
        self.progress_label = progress_label
        self.charge = charge
        ref = next(p for p in model.parameters() if p.requires_grad)
        if self.config.learn_prior:
            # refuse a module without curvature adapter now, not after the burn-in
            block_specs(model, exclude=self.curvature_exclude())
        self.log_sigma = nn.Parameter(
            torch.tensor(math.log(self.config.sigma), dtype=ref.dtype, device=ref.device)
        )
        params = [p for p in model.parameters() if p.requires_grad]
        if self.config.optimizer == "adam":
            self.optimizer: torch.optim.Optimizer = torch.optim.Adam(params, lr=self.config.lr)
        else:
            self.optimizer = torch.optim.SGD(params, lr=self.config.lr, momentum=0.9)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.optimizer, T_max=self.config.epochs, eta_min=self.config.lr_min
        )
        hyper = [self.prior.log_precision]
        if likelihood == "regression" and self.config.learn_sigma:
            hyper.append(self.log_sigma)
        self.hyper_optimizer = torch.optim.Adam(hyper, lr=self.config.lr_hyper)
        self.history: list[EpochRecord] = []
        self.best: dict[str, Any] | None = None
        self.epoch = 0  # next epoch to run
        self.last_kfac: KFAC | None = None
        # data-parallel training when a process group of several ranks is initialised
        self.parallel = DataParallel.detect()
        self.map_model = model if self.parallel is None else self.parallel.wrap(model)

    # ----------------------------------------------------------------------------- objectives
    def _nll(self, f: Tensor, y: Tensor) -> Tensor:
        """Mean negative log-likelihood per datum."""
        if self.likelihood == "classification":
            return F.cross_entropy(f, y)
        sigma = self.log_sigma.exp().detach()
        d = f[0].numel()
        return (
            0.5 * ((f - y) ** 2).sum() / (f.shape[0] * sigma**2)
            + 0.5 * d * math.log(2 * math.pi)
            + d * torch.log(sigma)
        )

    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    def curvature_batch_size(self) -> int:
        """Batch size of the hyper step's curvature pass.

        ``config.marglik_batch_size`` if set; else the training batch size on the CPU and at
        least :data:`GPU_CURVATURE_BATCH` on a GPU, where the pass is bound by kernel launches
        rather than arithmetic, while on the CPU a larger batch does not pay (docs/benchmarks.md,
        "Design choices of the curvature engine").
        """
        if self.config.marglik_batch_size is not None:
            return self.config.marglik_batch_size
        if self._device().type == "cuda":
            return max(self.config.batch_size, GPU_CURVATURE_BATCH)
        return self.config.batch_size

    def curvature_exclude(self) -> tuple[str, ...]:
        """What the curvature leaves out: ``exclude`` and the parameters without prior."""
        return tuple(self.exclude) + tuple(p for p in self.prior.excluded if p not in self.exclude)

    # -------------------------------------------------------------------------- hyper step
    def _hyper_step(self, source: DataSource, epoch: int) -> dict[str, Any]:
        config = self.config
        n = source.num_data
        subset = subset_indices(n, config.marglik_subset, config.seed + 7919)
        batches, count = source.curvature_batches(self.curvature_batch_size(), subset)
        kfac_config = dataclasses.replace(config.kfac, seed=config.seed * 100003 + epoch)
        if self.charge is not None:
            self.charge("curvature", count)
        if self.parallel is not None:  # this rank's batches; compute_kfac sums over the ranks
            batches = self.parallel.curvature_batches(batches)
            kfac_config = dataclasses.replace(
                kfac_config, seed=self.parallel.curvature_seed(kfac_config.seed)
            )
        self.model.eval()
        try:
            kfac = compute_kfac(
                self.model,
                batches,
                self.likelihood,
                kfac_config,
                sigma=float(self.log_sigma.detach().exp()),
                exclude=self.curvature_exclude(),
                process_group=None if self.parallel is None else self.parallel.process_group,
            )
        finally:
            self.model.train()
        data_scale = n / kfac.num_data
        sigma = self.log_sigma.exp() if self.likelihood == "regression" else None
        norms = self.prior.squared_norms(self.model).detach()  # parameters fixed from here
        layout = BlockLayout.of(kfac, self.prior)  # fixed too: built once, not per evaluation
        for _ in range(config.hyper_steps):
            self.hyper_optimizer.zero_grad(set_to_none=True)
            sigma = self.log_sigma.exp() if self.likelihood == "regression" else None
            lml = log_marginal_likelihood(
                kfac, self.prior, self.model, sigma=sigma, data_scale=data_scale,
                squared_norms=norms, layout=layout,
            )  # fmt: skip
            (-lml / n).backward()
            self.hyper_optimizer.step()
        with torch.no_grad():
            sigma = self.log_sigma.exp() if self.likelihood == "regression" else None
            lml = log_marginal_likelihood(
                kfac, self.prior, self.model, sigma=sigma, data_scale=data_scale,
                squared_norms=norms, layout=layout,
            )  # fmt: skip
            gammas = effective_parameters_per_group(
                kfac, self.prior, sigma=sigma, data_scale=data_scale, layout=layout
            )
        self.last_kfac = kfac
        return {
            "marglik": float(lml) / n,
            "effective_parameters": {k: float(v) for k, v in gammas.items()},
            "squared_norms": dict(zip(self.prior.names, norms.tolist(), strict=True)),
        }

    # ---------------------------------------------------------------------------- metrics
    def evaluate(
        self, data: TrainingData | DataSource, batch_size: int | None = None
    ) -> dict[str, float]:
        """Mean NLL and (classification) accuracy in eval mode (:func:`evaluate`)."""
        return evaluate(
            self.model,
            data,
            likelihood=self.likelihood,
            sigma=float(self.log_sigma.detach().exp()),
            batch_size=batch_size or self.config.batch_size,
        )

    # ------------------------------------------------------------------------ checkpointing
    def _checkpoint_path(self) -> Path | None:
        return None if self.run_dir is None else self.run_dir / "checkpoint.pt"

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume."""
        return {
            "epoch": self.epoch,
            "config": self.config.to_dict(),
            "model": self.model.state_dict(),
            "prior": self.prior.state_dict(),
            "log_sigma": self.log_sigma.detach().clone(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "hyper_optimizer": self.hyper_optimizer.state_dict(),
            "history": [r.to_json() for r in self.history],
            "best": self.best,
            "rng": rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from :meth:`state_dict` (the configuration must be identical).

        Raises:
            ValueError: if the checkpoint was written with a configuration that differs in a
                setting that changes the result.
        """
        changed = config_differences(state["config"], self.config.to_dict(), MarglikConfig)
        if changed:
            raise ValueError(
                f"cannot resume: the checkpoint was written with a different configuration "
                f"(differs in {changed}); use a new run directory"
            )
        self.model.load_state_dict(state["model"])
        self.prior.load_state_dict(state["prior"])
        with torch.no_grad():
            self.log_sigma.copy_(state["log_sigma"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.hyper_optimizer.load_state_dict(state["hyper_optimizer"])
        self.history = [EpochRecord.from_json(r) for r in state["history"]]
        self.best = state["best"]
        self.epoch = state["epoch"]
        set_rng_state(state["rng"])

    def _save(self) -> None:
        path = self._checkpoint_path()
        if path is None or not (self.parallel is None or self.parallel.is_main):
            return
        save_checkpoint(path, self.state_dict())
        save_history(self.history, path.parent / "history.json")

    def _saved_state(self) -> dict[str, Any] | None:
        """The checkpoint to resume from, if any (data-parallel: rank 0's, sent to all)."""
        path = self._checkpoint_path()

        def read() -> dict[str, Any] | None:
            return (
                load_checkpoint(path, TRAINER_KEYS) if path is not None and path.is_file() else None
            )

        return read() if self.parallel is None else self.parallel.from_main(read)

    def _collective_errors(self) -> contextlib.AbstractContextManager[None]:
        """Data-parallel: a failed collective raised as a clear error (:mod:`.distributed`)."""
        if self.parallel is None:
            return contextlib.nullcontext()
        return self.parallel.collective_errors(self._checkpoint_path())

    # ---------------------------------------------------------------------------- training
    def fit(self, train: TrainingData, valid: TrainingData | None = None) -> list[EpochRecord]:
        """Train for the configured epochs (resuming from ``run_dir`` if it holds a checkpoint).

        Args:
            train: training data: ``(x, y)`` tensors or an object with ``.images``/``.labels``
                (the fast path: the trainer shuffles with its seed), a map-style ``Dataset``
                of ``(x, y)`` items (the same batches as its tensors), a ``DataLoader`` or a
                re-iterable of ``(x, y)`` batches (taken as they come); see
                :mod:`bayesym.marglik.data`.
            valid: optional validation data of the same kinds, evaluated every epoch.

        Returns:
            The history: one :class:`~bayesym.marglik.history.EpochRecord` per epoch.

        Raises:
            TypeError: unsupported data (a generator, an ``IterableDataset`` outside a loader).
            ValueError: bad data, before any training for tensors and at the first bad batch
                of a loader: ``x`` and ``y`` of different lengths, NaN/inf inputs, float
                classification labels, labels outside the model's classes, regression
                targets not shaped like the outputs.
            NonFiniteLossError: the loss or the marginal likelihood became NaN/inf; no
                checkpoint of that epoch is written (the previous one stays).
        """
        source = training_data(train, "training")
        valid_source = None if valid is None else training_data(valid, "validation")
        for data, what in ((source, "training"), (valid_source, "validation")):
            if isinstance(data, TensorData):
                data.check(self.model, self.likelihood, what)
        if self.parallel is not None and isinstance(source, TensorData | DatasetData):
            self.parallel.check_batches(source.num_data, self.config.batch_size)
        state = self._saved_state()
        if state is not None:
            self.load_state_dict(state)
        config = self.config
        self.model.train()
        bar = tqdm(
            range(self.epoch, config.epochs),
            initial=self.epoch,
            total=config.epochs,
            desc=self.progress_label or ("marglik" if config.learn_prior else "MAP"),
            disable=not self.progress or not (self.parallel is None or self.parallel.is_main),
        )
        for epoch in bar:
            with self._collective_errors():  # data-parallel: a dead rank fails, never hangs
                record = self._epoch(source, valid_source, epoch)
            self.history.append(record)
            self.epoch = epoch + 1
            self._save()
            bar.set_postfix(
                {
                    k: f"{getattr(record, k):.3g}"
                    for k in ("train_loss", "marglik", "valid_accuracy")
                    if getattr(record, k) is not None
                }
            )
        if config.restore_best and self.best is not None:
            self.model.load_state_dict(self.best["model"])
            self.prior.load_state_dict(self.best["prior"])
        self.model.train()
        return self.history

    def _map_epoch(self, source: DataSource, epoch: int) -> tuple[float, float, float, int, int]:
        """One epoch of MAP steps.

        Returns:
            The summed loss, NLL and correct predictions, the number of points and the first
            step whose loss was NaN/inf (``-1``: none).
        """
        config, device, n = self.config, self._device(), source.num_data
        checked = isinstance(source, TensorData)  # checked as a whole by fit
        # Sums stay on the device (float64, the same arithmetic as Python floats) and are
        # read once per epoch: a read per step would wait for the GPU at every step.
        totals = torch.zeros(3, dtype=torch.float64, device=device)  # loss, nll, correct
        first_bad = torch.full((), -1, dtype=torch.long, device=device)
        at_once = self._checks_loss_every_step()
        count = 0
        for step, (xb, yb) in enumerate(
            source.batches(config.batch_size, indexed_seed(config.seed, epoch))
        ):
            where = f"training data, batch {step} of epoch {epoch + 1}"
            if not checked:
                check_batch(xb, yb, self.likelihood, where)
                if self.parallel is not None and step == 0:  # loaders: the same on every rank
                    self.parallel.check_same_batch(xb, yb, where)
            if self.charge is not None:
                self.charge("map", yb.shape[0])
            xb, yb = self._to_device(xb, device), yb.to(device)
            size = yb.shape[0]
            xb, yb, weight = self._local_batch(xb, yb)
            self.optimizer.zero_grad(set_to_none=True)
            f = self.map_model(xb)
            if not checked:
                check_outputs(f, yb, self.likelihood, where)
            nll = self._nll(f, yb)
            penalty = self.prior.penalty(self.model) / n
            loss = nll + penalty
            if at_once and not bool(torch.isfinite(loss)):  # before the step: weights stay
                self._stop(f"the training loss became {loss.item()} at step {step}", epoch)
            (weight * nll + penalty).backward()  # weight 1 unless data-parallel (_local_batch)
            self.optimizer.step()
            count += size
            with torch.no_grad():
                first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss), step, first_bad)
                totals[0] += loss.double() * yb.shape[0]
                totals[1] += nll.double() * yb.shape[0]
                if self.likelihood == "classification":
                    totals[2] += (f.argmax(-1) == yb).sum()
        if self.parallel is not None:
            self.parallel.sum_(totals)
        total_loss, total_nll, correct = totals.tolist()
        return total_loss, total_nll, correct, count, int(first_bad)

    def _checks_loss_every_step(self) -> bool:
        """Whether a NaN/inf loss stops the run at its step, before the parameters take it.

        On the CPU reading the loss costs nothing; on a GPU a read per step would wait for the
        device, so the first bad step is recorded there and the run stops at the epoch's end
        (in both cases before the epoch is saved).
        """
        return self._device().type == "cpu"

    def _to_device(self, x: Tensor | Any, device: torch.device) -> Tensor | Any:
        """A tensor batch moved to ``device`` and augmented; a mapping batch as it is."""
        if not isinstance(x, Tensor):
            if self.augment is not None:
                raise TypeError(
                    "augment= takes tensor batches; the data yields mappings: augment in the "
                    "Dataset or collate_fn instead"
                )
            return x
        x = x.to(device)
        return x if self.augment is None else self.augment(x)

    def _local_batch(self, x: Tensor | Any, y: Tensor) -> tuple[Tensor | Any, Tensor, float]:
        """The part of a MAP batch this process trains on, and the weight of its mean NLL.

        One process: all of it, weight 1. Data-parallel: this rank's shard, weighted so that
        the gradient average over the ranks is the whole batch's (:mod:`.distributed`).
        """
        return (x, y, 1.0) if self.parallel is None else self.parallel.shard(x, y)

    def _epoch(self, source: DataSource, valid: DataSource | None, epoch: int) -> EpochRecord:
        """MAP steps, the hyper step if one is due, validation: the epoch's record."""
        start = time.perf_counter()
        lr = self.optimizer.param_groups[0]["lr"]
        total_loss, total_nll, correct, n, first_bad = self._map_epoch(source, epoch)
        if first_bad >= 0:
            self._stop(f"the training loss became {total_loss} at step {first_bad}", epoch)
        if n == 0:
            raise ValueError(f"training data: epoch {epoch + 1} yielded no batches")
        self.scheduler.step()
        hyper: dict[str, Any] = {}
        if self.config.is_hyper_epoch(epoch):
            hyper = self._hyper_step(source, epoch)
            if not math.isfinite(hyper["marglik"]):
                self._stop(f"the log marginal likelihood became {hyper['marglik']}", epoch)
            self._remember_best(hyper["marglik"], epoch)
        metrics = {} if valid is None else self.evaluate(valid)
        classification = self.likelihood == "classification"
        return EpochRecord(
            epoch=epoch + 1,
            lr=lr,
            train_loss=total_loss / n,
            train_nll=total_nll / n,
            train_accuracy=int(correct) / n if classification else None,
            precisions=dict(self.prior.as_dict()),
            sigma=None if classification else float(self.log_sigma.detach().exp()),
            valid_nll=metrics.get("nll"),
            valid_accuracy=metrics.get("accuracy"),
            seconds=time.perf_counter() - start,
            **hyper,
        )

    def _stop(self, what: str, epoch: int) -> None:
        """Stop a run whose loss or marglik is not finite, before anything of it is saved."""
        kept = (
            f"; {self._checkpoint_path()} keeps epoch {self.epoch}"
            if self._checkpoint_path() is not None and self.epoch > 0
            else ""
        )
        raise NonFiniteLossError(
            f"epoch {epoch + 1}: {what}; training stopped and this epoch was not saved{kept}. "
            f"Lower the learning rate (lr={self.config.lr:g}) or check the data and the model "
            "for overflow"
        )

    def _remember_best(self, marglik: float, epoch: int) -> None:
        """With ``restore_best``: keep the parameters and prior of the best marglik so far."""
        if not self.config.restore_best:
            return
        if self.best is None or marglik > self.best["marglik"]:
            self.best = {
                "marglik": marglik,
                "epoch": epoch + 1,
                "model": copy.deepcopy(self.model.state_dict()),
                "prior": copy.deepcopy(self.prior.state_dict()),
            }
