"""Kronecker factors of the GGN over a data loader.

One pass per batch: a forward pass with hooks on every registered module (input factors are
accumulated right there, nothing large is kept), then ``S`` backward passes of the output
directions of :mod:`curvature.likelihoods` (``C - 1`` for the exact softmax GGN, ``k`` for
Monte-Carlo, one for the empirical Fisher) *to the module outputs only* — no parameter
gradient is ever formed — and the adapters turn the output gradients into output factors.

Normalisation (the Laplace GGN is a sum over data): ``B`` sums over data and directions,
``A`` is an average (over data, and over sharing positions for ``"expand"``), so that
``A ⊗ B ≈ Σ_n J_nᵀ Λ_n J_n`` with exact equality for a single datum without weight sharing.

Example:
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    >>> x, y = torch.randn(8, 3), torch.randint(0, 2, (8,))
    >>> kfac = compute_kfac(model, [(x, y)], "classification")
    >>> kfac.names
    ['0.weight', '0.bias', '2.weight', '2.bias']
    >>> [tuple(f.dim for f in kfac[n].factors) for n in kfac.names]
    [(4, 3), (4,), (2, 4), (2,)]
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from curvature.adapters.base import (
    Approx,
    BlockSpec,
    InputStatistic,
    ModuleAdapter,
    StatisticsRequest,
)
from curvature.blocks import DenseBlock, KroneckerBlock, ParameterSlice
from curvature.distributed import all_reduce_sums, check_every_rank_has_data
from curvature.errors import (
    CurvatureError,
    FactorTooLargeError,
    NonFiniteError,
    UnsupportedModuleError,
)
from curvature.factors import DenseFactor, Factor, all_finite
from curvature.gram import gram_update_, mirror_lower_
from curvature.kfac import KFAC
from curvature.likelihoods import GGNType, Likelihood, make_likelihood
from curvature.plan import planned_modules, qualified_name
from curvature.registry import ADAPTERS

__all__ = ["VMAP_FRIENDLY_MODULES", "KFACConfig", "compute_kfac", "resolve_backward"]


@dataclass(frozen=True)
class KFACConfig:
    """How the Kronecker factors are computed.

    Attributes:
        ggn_type: ``"exact"`` GGN, ``"mc"`` Monte-Carlo Fisher or ``"empirical"`` Fisher.
        mc_samples: number ``k`` of Monte-Carlo samples per datum (``ggn_type="mc"``).
        approx: weight-sharing approximation, ``"expand"`` or ``"reduce"``.
        seed: seed of the Monte-Carlo draws (``None``: torch's global generator).
        max_factor_bytes: refuse any factor larger than this (default 2 GiB).
        max_gradient_bytes: with ``backward="vmap"``, back-propagate output directions in chunks
            whose module-output gradients take at most this much memory (default 1 GiB; at
            least one direction). ``"loop"`` holds one direction's gradients at a time.
        progress: show a tqdm progress bar over the batches.
        backward: how the output directions are back-propagated: ``"loop"``, one autograd pass
            per direction (to the module outputs only), ``"vmap"``, all directions of a chunk
            in one vectorised pass (``is_grads_batched``), or ``"auto"`` (default): ``"vmap"``
            when every module of the model is one of :data:`VMAP_FRIENDLY_MODULES` (MLPs),
            else ``"loop"``: vmap is faster for MLPs but slower for CNNs, whose pooling
            backward has no batching rule and falls back to a loop (docs/benchmarks.md).
    """

    ggn_type: GGNType = "exact"
    mc_samples: int = 1
    approx: Approx = "expand"
    seed: int | None = None
    max_factor_bytes: int = 2 * 1024**3
    max_gradient_bytes: int = 1024**3
    progress: bool = False
    backward: Literal["auto", "loop", "vmap"] = "auto"

    def __post_init__(self) -> None:
        if self.ggn_type not in ("exact", "mc", "empirical"):
            raise ValueError(
                f"ggn_type must be 'exact', 'mc' or 'empirical', got {self.ggn_type!r}"
            )
        if self.approx not in ("expand", "reduce"):
            raise ValueError(f"approx must be 'expand' or 'reduce', got {self.approx!r}")
        if self.backward not in ("auto", "loop", "vmap"):
            raise ValueError(f"backward must be 'auto', 'loop' or 'vmap', got {self.backward!r}")
        if self.mc_samples < 1:
            raise ValueError(f"mc_samples must be >= 1, got {self.mc_samples}")


VMAP_FRIENDLY_MODULES: tuple[type[nn.Module], ...] = (
    nn.Sequential, nn.ModuleList, nn.Linear, nn.Flatten, nn.Unflatten, nn.Identity, nn.Dropout,
    nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Softplus,
    nn.LayerNorm,
)  # fmt: skip
"""Module types whose backward vectorises well over output directions (``backward="auto"``)."""


def resolve_backward(
    model: nn.Module, backward: Literal["auto", "loop", "vmap"]
) -> Literal["loop", "vmap"]:
    """The backward mode ``"auto"`` stands for on ``model`` (other modes pass through).

    ``"vmap"`` iff every module (the root included: a custom ``forward`` may call any
    functional op) has exactly one of the types :data:`VMAP_FRIENDLY_MODULES`.
    """
    if backward != "auto":
        return backward
    friendly = all(type(m) in VMAP_FRIENDLY_MODULES for m in model.modules())
    return "vmap" if friendly else "loop"


@dataclass(eq=False)
class _Accumulator:
    """Running sums of one block."""

    name: str
    spec: BlockSpec
    params: tuple[ParameterSlice, ...]
    keep: bool
    like: Tensor
    a_total: Factor | None = None
    a_count: int = 0
    b_total: Tensor | None = None
    a_lower_only: bool = False  # a_total's upper triangle is stale (symmetric Gram updates)

    @torch.no_grad()
    def add_input(self, stat: InputStatistic) -> None:
        rows = stat.rows
        if self.a_total is None:
            # the first batch as a full product: a one-batch fit (laplace-torch calls its
            # backend per batch) then never pays for mirroring a triangle
            total = stat.materialise()
            self.a_total = total if rows is not None else total.with_data(total.data.clone())
        elif (
            rows is not None
            and isinstance(self.a_total, DenseFactor)
            and self.a_total.dim == rows.shape[1]
        ):
            # in place, no temporary; wide CPU factors: lower triangle only (gram.py)
            self.a_lower_only |= gram_update_(self.a_total.matrix, rows)
        else:
            total = stat.materialise()
            if type(total) is not type(self.a_total) or total.data.shape != self.a_total.data.shape:
                raise UnsupportedModuleError(
                    f"block {self.name!r}: the adapter returned input statistics of different "
                    f"structures across calls ({type(self.a_total).__name__}"
                    f"{tuple(self.a_total.data.shape)} then {type(total).__name__}"
                    f"{tuple(total.data.shape)})"
                )
            self.a_total.data.add_(total.data)  # in place: no new [d, d] per batch
        self.a_count += stat.count

    def input_factor(self) -> Factor:
        """``A``: the sum of the input statistics divided by their count."""
        total = self.a_total
        if total is None:  # the engine requires a statistic at every call of a kept block
            raise UnsupportedModuleError(f"block {self.name!r} received no input statistics")
        if self.a_lower_only and isinstance(total, DenseFactor):
            mirror_lower_(total.matrix)
        return total * (1.0 / self.a_count)

    def add_output(self, total: Tensor) -> None:
        self.b_total = total.clone() if self.b_total is None else self.b_total.add_(total)


@dataclass(eq=False)
class _ModulePlan:
    """A registered module, its adapter, what its calls are asked and its blocks' sums."""

    name: str
    module: nn.Module
    adapter: ModuleAdapter
    request: StatisticsRequest
    accumulators: list[_Accumulator]
    calls: int = 0


@dataclass(eq=False)
class _Capture:
    """One call of a registered module during the current forward pass."""

    plan: _ModulePlan
    output: Tensor
    version: int
    state: Any


@dataclass(eq=False)
class _Session:
    """Hooks and captures of one fit."""

    plans: list[_ModulePlan]
    captures: list[_Capture] = field(default_factory=list)
    busy: bool = False  # an adapter is computing: its own forward calls are not captured

    @contextmanager
    def adapter_call(self):
        """Mark an adapter computation (hooks ignore the forward passes it may run)."""
        self.busy = True
        try:
            yield
        finally:
            self.busy = False


def _check_factor_bytes(name: str, spec: BlockSpec, like: Tensor, limit: int) -> None:
    """Refuse a kept block whose factors would exceed ``limit`` bytes."""
    for what, size in spec.factor_bytes(like.element_size()).items():
        if size > limit:
            raise FactorTooLargeError(
                f"block {name!r}: its {what} would take {size / 1024**2:.1f} MiB "
                f"(> max_factor_bytes = {limit / 1024**2:.1f} MiB); raise "
                "KFACConfig.max_factor_bytes or exclude the module"
            )


def _plan(
    model: nn.Module,
    registry: Mapping[type[nn.Module], ModuleAdapter],
    exclude: Collection[str],
    config: KFACConfig,
) -> list[_ModulePlan]:
    """The modules to hook, with an accumulator per block (see :mod:`curvature.plan`)."""
    plans = []
    for planned in planned_modules(model, registry, exclude):
        mname, module = planned.name, planned.module
        accumulators = []
        for spec, kept in planned.blocks:
            name = qualified_name(mname, spec.name)
            like = module.get_parameter(spec.params[0][0])
            if kept:
                _check_factor_bytes(name, spec, like, config.max_factor_bytes)
            slices = tuple(
                ParameterSlice(qualified_name(mname, attr), start, stop)
                for attr, start, stop in spec.params
            )
            accumulators.append(_Accumulator(name, spec, slices, keep=kept, like=like))
        active = frozenset(spec.name for spec, kept in planned.blocks if kept)
        request = StatisticsRequest(config.approx, active)
        plans.append(_ModulePlan(mname, module, planned.adapter, request, accumulators))
    return plans


def _forward_hook(session: _Session, plan: _ModulePlan):
    def hook(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        if session.busy:
            return
        if not isinstance(output, Tensor):
            raise UnsupportedModuleError(
                f"module {plan.name!r} ({type(module).__name__}) returned "
                f"{type(output).__name__}; KFAC adapters need a single tensor output"
            )
        if not output.requires_grad:
            raise UnsupportedModuleError(
                f"module {plan.name!r}: its output does not require grad (was it called under "
                "torch.no_grad()?)"
            )
        with torch.no_grad(), session.adapter_call():
            result = plan.adapter.forward_statistics(module, inputs, output, plan.request)
        if len(result.inputs) != len(plan.accumulators):
            raise UnsupportedModuleError(
                f"{type(plan.adapter).__name__} returned {len(result.inputs)} input statistics "
                f"for module {plan.name!r}, which has {len(plan.accumulators)} blocks"
            )
        for acc, stat in zip(plan.accumulators, result.inputs, strict=True):
            if acc.spec.structure == "kronecker":
                if stat is None:
                    raise UnsupportedModuleError(
                        f"{type(plan.adapter).__name__} gave no input statistic for the "
                        f"Kronecker block {acc.name!r}"
                    )
                if acc.keep:
                    acc.add_input(stat)
        plan.calls += 1
        session.captures.append(_Capture(plan, output, output._version, result.state))

    return hook


def _as_batches(data: Any) -> Iterable[Any]:
    """``data`` as an iterable of batches: one ``(x, y)`` tuple or one mapping is one batch."""
    if isinstance(data, Mapping):  # iterating it would yield its keys
        return [data]
    if isinstance(data, tuple) and len(data) == 2:
        x, y = data
        if isinstance(x, Tensor) or (isinstance(x, Mapping) and isinstance(y, Tensor)):
            return [data]
    return data


def _batch_error(index: int, batch: Any, target_key: str) -> CurvatureError:
    return CurvatureError(
        f"batch {index} is a {type(batch).__name__}; compute_kfac needs (x, y) pairs (x a "
        "tensor, or a mapping the model takes; y a tensor) or mappings holding the targets "
        f"under target_key={target_key!r}: yield those from the data, e.g. with a collate_fn"
    )


def _split_batch(batch: Any, index: int, target_key: str) -> tuple[Tensor | Mapping, Tensor]:
    """``(x, y)`` of one batch; a mapping batch is the model input and holds the targets."""
    if isinstance(batch, Mapping):
        if target_key not in batch:
            raise CurvatureError(
                f"batch {index} is a mapping without the target key {target_key!r} (keys: "
                f"{sorted(map(str, batch))}); pass compute_kfac(..., target_key=<its key>)"
            )
        x, y = batch, batch[target_key]
    elif isinstance(batch, (tuple, list)) and len(batch) == 2:
        x, y = batch
    else:
        raise _batch_error(index, batch, target_key)
    if not isinstance(x, (Tensor, Mapping)) or not isinstance(y, Tensor):
        raise _batch_error(index, batch, target_key)
    return x, y


def _prepare_batch(
    batch: Any, index: int, device: torch.device, target_key: str
) -> tuple[Tensor | Mapping, Tensor]:
    """Split a batch, move tensors to ``device`` and refuse NaN/inf inputs or targets.

    A mapping input is handed to the model as it is (the model moves what it takes); its
    floating tensor values are checked.
    """
    x, y = _split_batch(batch, index, target_key)
    y = y.to(device)
    if isinstance(x, Tensor):
        x = x.to(device)
        inputs = [x]
    else:
        inputs = [v for v in x.values() if isinstance(v, Tensor)]
    for what, tensors in (("inputs", inputs), ("targets", [y])):
        if any(t.is_floating_point() and not all_finite(t) for t in tensors):
            raise NonFiniteError(f"batch {index}: the {what} contain NaN or inf")
    return x, y


def _directions_per_chunk(captures: list[_Capture], limit: int) -> int:
    per_direction = sum(c.output.numel() * c.output.element_size() for c in captures)
    return max(1, limit // max(1, per_direction))


def _gradient_chunks(
    f: Tensor, outputs: list[Tensor], directions: Tensor, mode: str, chunk: int
) -> Iterator[list[Tensor]]:
    """Yield, per group of directions, one ``[k, *output.shape]`` gradient per output.

    ``"loop"``: one autograd pass per direction (``k = 1``, no stacking copies);
    ``"vmap"``: ``chunk`` directions per vectorised pass.
    """
    total = directions.shape[0]
    step = 1 if mode == "loop" else chunk
    for start in range(0, total, step):
        stop = min(total, start + step)
        common = dict(retain_graph=stop < total, allow_unused=True, materialize_grads=True)
        # no local keeps a chunk's gradients: the caller frees them before the next pass
        if mode == "loop":
            yield [
                g.unsqueeze(0) for g in torch.autograd.grad(f, outputs, directions[start], **common)
            ]
        else:
            yield list(
                torch.autograd.grad(
                    f, outputs, directions[start:stop], is_grads_batched=True, **common
                )
            )


def _backward(session: _Session, f: Tensor, directions: Tensor, limit: int, mode: str) -> None:
    """Back-propagate every direction to the captured outputs and accumulate ``B``."""
    captures = session.captures
    for cap in captures:
        if cap.output._version != cap.version:
            raise UnsupportedModuleError(
                f"the output of module {cap.plan.name!r} was modified in place after the module "
                "returned (e.g. ReLU(inplace=True)); its gradient would be wrong. Use out-of-place "
                "operations after registered modules."
            )
    outputs = [c.output for c in captures]
    if directions.shape[0] == 1:
        mode = "loop"  # nothing to vectorise (one MC sample, regression with one output)
    chunk = _directions_per_chunk(captures, limit)
    for grads_per_output in _gradient_chunks(f, outputs, directions, mode, chunk):
        for cap, grads in zip(captures, grads_per_output, strict=True):
            plan = cap.plan
            with torch.no_grad(), session.adapter_call():
                stats = plan.adapter.backward_statistics(
                    plan.module, cap.state, grads, plan.request
                )
            if len(stats) != len(plan.accumulators):
                raise UnsupportedModuleError(
                    f"{type(plan.adapter).__name__} returned {len(stats)} output statistics for "
                    f"module {plan.name!r}, which has {len(plan.accumulators)} blocks"
                )
            for acc, stat in zip(plan.accumulators, stats, strict=True):
                if acc.keep:
                    acc.add_output(stat)
        # Free this chunk's gradients before the next backward pass allocates its own: held
        # across the pass, they double the live memory and the next pass writes to fresh pages.
        del grads_per_output, grads


def _sum_over_ranks(
    plans: list[_ModulePlan], num_data: int, log_lik: Tensor, device: torch.device, group: Any
) -> tuple[int, Tensor]:
    """Add every kept block's sums, the data count and the log likelihood over the ranks.

    The input factor sums and their counts are summed, not their averages, so the averages
    formed afterwards by :func:`_finalise` are those of all the ranks' data together
    (:mod:`curvature.distributed`).
    """
    num_data = check_every_rank_has_data(num_data, device, group)
    kept = [acc for p in plans for acc in p.accumulators if acc.keep]
    sums = []
    for acc in kept:
        if acc.a_total is not None:
            if acc.a_lower_only and isinstance(acc.a_total, DenseFactor):
                mirror_lower_(acc.a_total.matrix)  # each rank's stale triangle, before the sum
                acc.a_lower_only = False
            sums.append(acc.a_total.data)
        if acc.b_total is not None:
            sums.append(acc.b_total)
    counts = torch.tensor([acc.a_count for acc in kept], dtype=torch.float64, device=device)
    total_log_lik = log_lik.reshape(1).to(device)
    all_reduce_sums([*sums, counts, total_log_lik], group)
    for acc, count in zip(kept, counts.tolist(), strict=True):
        acc.a_count = round(count)
    return num_data, total_log_lik.cpu().reshape(())


def _finalise(acc: _Accumulator) -> KroneckerBlock | DenseBlock:
    spec = acc.spec
    b = acc.b_total
    if b is None:  # no output directions at all: a single-class problem has Λ = 0
        b = acc.like.new_zeros(spec.output_dim, spec.output_dim).detach()
    block: KroneckerBlock | DenseBlock
    if spec.structure == "dense":
        block = DenseBlock(acc.name, acc.params, matrix=DenseFactor(b))
    else:
        a = acc.input_factor()
        factors = (DenseFactor(b), a) if spec.order == "output_input" else (a, DenseFactor(b))
        block = KroneckerBlock(acc.name, acc.params, kron_factors=factors)
    if not block.is_finite():
        raise NonFiniteError(
            f"block {acc.name!r}: a Kronecker factor contains NaN or inf (check the model's "
            "activations and parameters for overflow)"
        )
    return block


def compute_kfac(
    model: nn.Module,
    data: Iterable[Any] | tuple[Tensor | Mapping, Tensor] | Mapping,
    likelihood: str | Likelihood = "classification",
    config: KFACConfig | None = None,
    *,
    sigma: float = 1.0,
    exclude: Collection[str] = (),
    registry: Mapping[type[nn.Module], ModuleAdapter] | None = None,
    target_key: str = "labels",
    process_group: Any = None,
) -> KFAC:
    """Kronecker-factored GGN (KFAC) of ``model`` summed over ``data``.

    The model's train/eval mode is left as it is (dropout or batch statistics in train mode
    make the curvature stochastic: call ``model.eval()`` first if that is not wanted).

    Args:
        model: the network; every module with trainable parameters needs an adapter.
        data: iterable of batches (e.g. a DataLoader), or one batch. A batch is an ``(x, y)``
            tuple, ``x: [N, ...]`` or a mapping the model takes (e.g. a Huggingface batch),
            ``y: [N]`` class indices or ``[N, D]`` regression targets; or a mapping that is
            the model's input and holds ``y`` under ``target_key``. Tensor inputs are moved
            to the model's device, mapping inputs are passed to the model as they are.
        likelihood: ``"classification"`` (softmax cross-entropy), ``"regression"``
            (Gaussian with noise ``sigma``) or a :class:`~curvature.likelihoods.Likelihood`.
        config: :class:`KFACConfig` (GGN type, MC samples, expand/reduce, limits).
        sigma: Gaussian noise standard deviation (regression only).
        exclude: module or qualified parameter names to leave out of the curvature.
        registry: module type -> adapter table (default :data:`curvature.registry.ADAPTERS`).
        target_key: key of the targets in mapping batches.
        process_group: a ``torch.distributed`` process group (``dist.group.WORLD`` for all
            ranks) whose ranks each pass their own shard of the data: the factor sums, data
            counts and log likelihoods are summed over its ranks before the factors are
            normalised (:mod:`curvature.distributed`), so every rank returns the KFAC of all
            shards together. Every rank must call with the same model and settings. ``None``
            (default): this process's data only.

    Returns:
        The :class:`~curvature.kfac.KFAC` with one block per adapter block.

    Raises:
        UnsupportedModuleError: a module with trainable parameters has no adapter (naming it),
            returns a non-tensor, or its output is modified in place.
        NonFiniteError: NaN/inf in a batch's inputs or targets, the model output or a factor.
        FactorTooLargeError: a factor would exceed ``config.max_factor_bytes``.
        CurvatureError: a batch is neither an ``(x, y)`` pair nor a mapping (naming its type),
            or a mapping batch lacks ``target_key``.
    """
    config = config or KFACConfig()
    backward = resolve_backward(model, config.backward)
    lik = make_likelihood(likelihood, sigma)
    plans = _plan(model, ADAPTERS if registry is None else registry, exclude, config)
    session = _Session(plans)
    handles = [p.module.register_forward_hook(_forward_hook(session, p)) for p in plans]
    device = next(p for p in model.parameters()).device
    generator = None
    num_data = output_dim = 0
    log_lik = torch.zeros(())
    try:
        for index, batch in enumerate(
            tqdm(_as_batches(data), desc="KFAC", disable=not config.progress)
        ):
            x, y = _prepare_batch(batch, index, device, target_key)
            session.captures.clear()
            with torch.enable_grad():
                f = model(x)
            lik.check_output(f, y)
            if not all_finite(f):
                raise NonFiniteError(f"batch {index}: the model output contains NaN or inf")
            if generator is None and config.seed is not None:
                generator = torch.Generator(device=f.device).manual_seed(config.seed)
            directions = lik.output_directions(
                f, y, config.ggn_type, config.mc_samples, generator
            ).to(f.dtype)
            log_lik = log_lik.to(f.dtype) + lik.log_likelihood(f.detach(), y).cpu()
            num_data += f.shape[0]
            output_dim = f.shape[1]
            if directions.shape[0]:
                _backward(session, f, directions, config.max_gradient_bytes, backward)
            session.captures.clear()
            if index == 0:
                idle = [f"{p.name!r} ({type(p.module).__name__})" for p in plans if p.calls == 0]
                if idle:
                    raise UnsupportedModuleError(
                        f"modules {idle} have trainable parameters but were not called in the "
                        "forward pass; exclude them"
                    )
    finally:
        for handle in handles:
            handle.remove()
        session.captures.clear()
    if process_group is not None:
        num_data, log_lik = _sum_over_ranks(plans, num_data, log_lik, device, process_group)
    if num_data == 0:
        raise ValueError("data yielded no batches")
    blocks = tuple(_finalise(acc) for p in plans for acc in p.accumulators if acc.keep)
    return KFAC(blocks, num_data, log_lik, lik, config, output_dim=output_dim)
