"""A laplace-torch backend running on :mod:`curvature`'s KFAC engine.

    >>> from laplace import Laplace
    >>> from curvature.laplace_backend import KFACBackend
    >>> la = Laplace(model, "classification", subset_of_weights="all",
    ...              hessian_structure="kron", backend=KFACBackend)  # doctest: +SKIP

Unlike laplace-torch's ASDL / curvlinops / BackPACK backends it supports every module type
registered with :func:`curvature.register_adapter` (bayesym's factored, anchor-point and group
layers included), builds conv patches with the conv's own padding mode, and refuses
unsupported modules instead of skipping them.

Conventions match laplace-torch's Kron: one entry per trainable parameter tensor, in
``model.parameters()`` order; ``[F_0, F_1]`` with ``kron(F_0, F_1)`` in the parameter's
row-major order, or one dense matrix; per batch of size ``M`` out of ``N`` data, the input
factor is scaled by ``M / N`` so that the sum over batches (laplace-torch adds Kron objects
factor-wise) is the KFAC of the whole data set. Structures laplace-torch cannot represent are
densified for it: block-diagonal factors (factored layers) and parameters split over several
blocks (grouped convolutions). The engine's float factors are never rescaled otherwise:
regression curvature is for unit noise, laplace-torch applies ``1/σ²`` itself.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, cast

import torch
from laplace.curvature import GGNInterface
from laplace.utils import Kron
from laplace.utils.feature_extractor import FeatureExtractor
from torch import Tensor, nn

from curvature.adapters.base import Approx, BlockSpec, ModuleAdapter
from curvature.blocks import CurvatureBlock, KroneckerBlock
from curvature.engine import KFACConfig, compute_kfac
from curvature.errors import CurvatureError
from curvature.kfac import KFAC
from curvature.likelihoods import Gaussian, GGNType
from curvature.plan import block_specs

__all__ = ["KFACBackend", "call_config"]


class _EngineKron(Kron):
    """A :class:`laplace.utils.Kron` whose factor shapes come from the engine's adapters.

    laplace-torch initialises its running sum with zero factors shaped by parameter rank
    (``[out, in·k·k]``), which is wrong for layers whose Kronecker structure is not
    ``[out, rest]`` (e.g. a factored layer's ``θ1`` is ``A ⊗ B`` over ``[(o, c), q]``). Adding an
    engine Kron to such an all-zero initial Kron therefore returns the engine's factors.
    """

    @classmethod
    def of(cls, kfacs: list[list[Tensor]]) -> _EngineKron:
        """The Kron of per-parameter factor lists ``[F_0, F_1]`` or ``[H]``.

        laplace-torch builds ``kfacs`` as lists of lists itself; its annotation
        (``list[tuple[Tensor] | Tensor]``) is narrower than its own use.
        """
        return cls(kfacs)  # type: ignore[arg-type]

    def __radd__(self, other: Kron) -> Kron:
        if isinstance(other, Kron) and all(
            not bool(torch.count_nonzero(f)) for fs in other.kfacs for f in fs
        ):
            return _EngineKron.of([[f.clone() for f in fs] for fs in self.kfacs])
        return Kron.__add__(other, self)

    def __add__(self, other: Kron) -> Kron:
        return _EngineKron(Kron.__add__(self, other).kfacs)


def _parameter_entry(
    blocks: list[CurvatureBlock], specs: Mapping[str, BlockSpec], numel: int, scale: float
) -> list[Tensor]:
    """The Kron entry of one parameter tensor from the blocks covering it."""
    if len(blocks) == 1 and blocks[0].params[0].numel == numel and len(blocks[0].params) == 1:
        block = blocks[0]
        if isinstance(block, KroneckerBlock) and len(block.factors) == 2:
            return _scaled_factors(block, specs[block.name], scale)
        if not isinstance(block, KroneckerBlock):
            return [block.factors[0].to_dense()]
    # Several blocks (e.g. conv groups) or more than two factors: one dense matrix.
    pieces = []
    for block in blocks:
        if len(block.params) != 1:
            raise CurvatureError(
                f"block {block.name!r} spans several parameters; laplace-torch's Kron needs "
                "one entry per parameter tensor"
            )
        if isinstance(block, KroneckerBlock):
            factors = _scaled_factors(block, specs[block.name], scale)
            matrix = factors[0]
            for factor in factors[1:]:
                matrix = torch.kron(matrix.contiguous(), factor.contiguous())
        else:
            matrix = block.factors[0].to_dense()
        pieces.append((block.params[0], matrix))
    dense = pieces[0][1].new_zeros(numel, numel)
    for piece, matrix in pieces:
        dense[piece.start : piece.stop, piece.start : piece.stop] = matrix
    return [dense]


def _scaled_factors(block: KroneckerBlock, spec: BlockSpec, scale: float) -> list[Tensor]:
    """Dense factors with the input factor ``A`` scaled by ``M / N`` (batch share of the data).

    The engine's input factor is an average over the batch and its output factor ``B`` a sum
    (:mod:`curvature.engine`), in the order of the block's entries: ``(B, A)`` for
    ``spec.order == "output_input"``, ``(A, B)`` for ``"input_output"``. laplace-torch adds the
    batches' factors, so ``A`` is weighted by the batch's share of the data.
    """
    out = [f.to_dense().contiguous() for f in block.factors]
    index = 1 if spec.order == "output_input" else 0
    out[index] = out[index] * scale
    return out


def _laplace_loss(kfac: KFAC, count: int) -> Tensor:
    """laplace-torch's loss: ``Σ CE``, or ``½ Σ (y - f)²`` (a Gaussian's without its constant).

    Args:
        kfac: the batch's fit (its log likelihood is at unit noise for regression).
        count: number of scalar outputs ``N D`` of the batch.
    """
    if isinstance(kfac.likelihood, Gaussian):
        return 0.5 * kfac.likelihood.sum_of_squares(kfac.log_likelihood, count)
    return -kfac.log_likelihood


_CONFIG_OPTIONS: dict[str, str] = {
    "mc_samples": "mc_samples",  # curvlinops' KFACLinearOperator (and ours)
    "n_mc_samples": "mc_samples",  # ASDL's FisherConfig
    "kfac_approx": "approx",  # curvlinops
    "approx": "approx",
    "ggn_type": "ggn_type",
    "seed": "seed",  # curvlinops, ASDL
    "progressbar": "progress",  # curvlinops
}
"""Per-call options of laplace-torch's Kron backends and ours -> :class:`KFACConfig` field."""

_NEUTRAL_OPTIONS: dict[str, tuple[Any, str]] = {
    "var": (1.0, "laplace-torch applies the noise itself: set Laplace(sigma_noise=...)"),
    "scale": (1.0, "the GGN is not rescaled here; temper with Laplace(temperature=...)"),
    "ignore_modules": (None, "leave modules out with backend_kwargs={'exclude': [names]}"),
    "ignore_index": (-1, "remove the data to ignore from the batches"),
    "num_per_example_loss_terms": (None, "one loss term per datum: outputs must be [N, C]"),
    "num_data": (None, "laplace-torch passes the data size N itself"),
    "is_distributed": (False, "distributed curvature is not supported"),
    "all_reduce": (False, "distributed curvature is not supported"),
}
"""Options accepted only at the value that leaves the result unchanged, and the alternative."""

_INERT_OPTIONS = frozenset({"fisher_attr", "fvp_attr", "is_master", "batch_size_fn"})
"""Options without effect here (ASDL's storage names; the batch size is ``len(y)``)."""


def _config_fields(method: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The :class:`KFACConfig` fields set by per-call ``options``; refuse what we cannot do."""
    fields: dict[str, Any] = {}
    for key, value in options.items():
        if key in _CONFIG_OPTIONS:
            fields[_CONFIG_OPTIONS[key]] = value
        elif key in _NEUTRAL_OPTIONS:
            neutral, alternative = _NEUTRAL_OPTIONS[key]
            if not (value is None if neutral is None else value == neutral):
                raise CurvatureError(
                    f"KFACBackend.{method} option {key}={value!r} is not supported (only "
                    f"{key}={neutral!r}): {alternative}"
                )
        elif key not in _INERT_OPTIONS:
            hint = " (use ggn_type=)" if key == "fisher_type" else ""
            raise CurvatureError(
                f"KFACBackend.{method} got the unsupported option {key!r}{hint}; it accepts "
                f"{sorted(_CONFIG_OPTIONS)} per call (laplace-torch: asdl_fisher_kwargs), "
                "other settings go to the backend (backend_kwargs, see KFACBackend)"
            )
    return fields


def _check_samples(method: str, options: Mapping[str, Any], monte_carlo: bool) -> None:
    """More than one sample only for the Monte-Carlo Fisher (as curvlinops requires)."""
    for key in ("mc_samples", "n_mc_samples"):
        if options.get(key, 1) != 1 and not monte_carlo:
            raise CurvatureError(
                f"KFACBackend.{method} option {key}={options[key]!r} needs the Monte-Carlo "
                "Fisher: build the backend with backend_kwargs={'stochastic': True}"
                + (" or pass ggn_type='mc'" if method == "kron" else "")
            )


def call_config(config: KFACConfig, options: Mapping[str, Any]) -> KFACConfig:
    """``config`` with the per-call options of ``kron`` applied.

    laplace-torch forwards ``KronLaplace(..., asdl_fisher_kwargs=...)`` to ``kron(**kwargs)``,
    with the names of the backend it was written for: curvlinops' ``mc_samples``,
    ``kfac_approx``, ``seed``, ``progressbar``; ASDL's ``n_mc_samples``, ``seed``; and ours,
    ``ggn_type``, ``mc_samples``, ``approx``, ``seed``. Options that change nothing at their
    default (ASDL's ``var``, ``scale``, ``ignore_modules``, ...) are accepted at that value;
    everything else is refused, naming the alternative. More than one sample is refused for
    the exact GGN and the empirical Fisher, as curvlinops does.

    Raises:
        CurvatureError: an option that cannot be honoured, or an invalid value.
    """
    fields = _config_fields("kron", options)
    try:
        result = replace(config, **fields)
    except ValueError as error:
        raise CurvatureError(f"KFACBackend.kron options {dict(options)}: {error}") from error
    _check_samples("kron", options, result.ggn_type == "mc")
    return result


class KFACBackend(GGNInterface):
    """laplace-torch ``CurvatureInterface`` computing ``kron`` with :func:`curvature.compute_kfac`.

    ``full`` and ``diag`` are inherited from laplace-torch's ``GGNInterface`` (``torch.func``
    Jacobians). Batches may be mappings (laplace-torch's ``dict_key_x`` / ``dict_key_y``
    Huggingface-style batches): the model is called on the mapping. ``kron`` takes the
    per-call options laplace-torch forwards from ``KronLaplace(..., asdl_fisher_kwargs=...)``
    (:func:`call_config`). Extra keyword arguments (``backend_kwargs`` of ``Laplace``):

    Args:
        model: the network.
        likelihood: ``"classification"`` or ``"regression"``.
        last_layer: only the last layer (laplace-torch's last-layer Laplace).
        subnetwork_indices: subnetwork Laplace, for the inherited ``full`` and ``diag`` (as
            laplace-torch's ``SubnetLaplace`` sets it); ``kron`` refuses it.
        dict_key_x: see laplace-torch.
        dict_key_y: see laplace-torch.
        stochastic: laplace-torch's switch for the Monte-Carlo Fisher (``ggn_type="mc"``); the
            name is laplace-torch's, which passes it to every backend.
        num_samples: Monte-Carlo samples per datum.
        ggn_type: ``"exact"``, ``"mc"`` or ``"empirical"`` (overrides ``stochastic``).
        approx: ``"expand"`` or ``"reduce"`` weight-sharing approximation.
        exclude: module/parameter names to leave out (they get zero curvature in Kron).
        registry: adapter table (default: the global one).
        seed: seed of the Monte-Carlo draws.
    """

    def __init__(
        self,
        model: nn.Module,
        likelihood: str,
        last_layer: bool = False,
        subnetwork_indices: torch.LongTensor | None = None,
        dict_key_x: str = "input_ids",
        dict_key_y: str = "labels",
        stochastic: bool = False,
        num_samples: int = 1,
        ggn_type: GGNType | None = None,
        approx: Approx = "expand",
        exclude: Collection[str] = (),
        registry: Mapping[type[nn.Module], ModuleAdapter] | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(
            model,
            likelihood,
            last_layer,
            subnetwork_indices,
            dict_key_x,
            dict_key_y,
            stochastic,
            num_samples,
        )
        self.config = KFACConfig(
            ggn_type=ggn_type or ("mc" if stochastic else "exact"),
            mc_samples=num_samples,
            approx=approx,
            seed=seed,
        )
        self.exclude = tuple(exclude)
        self.registry = registry

    def kron(self, x: Any, y: Tensor, N: int, **kwargs: Any) -> tuple[Tensor, Kron]:
        """Loss (``Σ`` NLL, laplace-torch's convention) and the batch's Kron contribution.

        Args:
            x: the batch's inputs ``[M, ...]``, or a mapping the model takes (laplace-torch's
                ``dict_key_x`` / ``dict_key_y`` batches: ``y`` is already taken from it).
            y: targets ``[M]`` or ``[M, D]``.
            N: size of the whole data set.
            **kwargs: per-call options, as laplace-torch forwards them from
                ``KronLaplace(..., asdl_fisher_kwargs=...)``; see :func:`call_config`.
        """
        if self.subnetwork_indices is not None:
            raise CurvatureError(
                "KFACBackend.kron: Kronecker factors of a subnetwork are not supported; "
                "subnetwork Laplace takes hessian_structure='full' or 'diag'"
            )
        config = call_config(self.config, kwargs)
        model, inputs = self._model, x
        if self.last_layer:
            # laplace-torch wraps the model for last-layer Laplace
            _, inputs = cast(FeatureExtractor, self.model).forward_with_features(x)
        kfac = compute_kfac(
            model,
            (inputs, y),
            self.likelihood,
            config,
            exclude=self.exclude,
            registry=self.registry,
        )
        specs = block_specs(model, self.exclude, self.registry)
        scale = len(y) / N
        by_param: dict[str, list[CurvatureBlock]] = {}
        for block in kfac.blocks:
            by_param.setdefault(block.params[0].name, []).append(block)
        kfacs = []
        for name, p in model.named_parameters():
            if not p.requires_grad:
                continue
            blocks = by_param.get(name)
            if blocks is None:  # excluded: zero curvature in laplace-torch's layout
                kfacs.append([p.new_zeros(p.numel(), p.numel())])
                continue
            kfacs.append(_parameter_entry(blocks, specs, p.numel(), scale))
        return _laplace_loss(kfac, y.numel()).to(y.device), _EngineKron.of(kfacs)

    def full(self, x: Any, y: Tensor, **kwargs: Any) -> tuple[Tensor, Tensor]:
        """laplace-torch's ``GGNInterface.full`` with a per-call ``mc_samples`` honoured."""
        with self._samples_per_call("full", kwargs):
            return super().full(x, y)

    def diag(self, x: Any, y: Tensor, **kwargs: Any) -> tuple[Tensor, Tensor]:
        """laplace-torch's ``GGNInterface.diag`` with a per-call ``mc_samples`` honoured."""
        with self._samples_per_call("diag", kwargs):
            return super().diag(x, y)

    @contextmanager
    def _samples_per_call(self, method: str, options: Mapping[str, Any]) -> Iterator[None]:
        """Run the inherited Monte-Carlo GGN with the per-call number of samples.

        laplace-torch calls ``full`` / ``diag`` with ``N`` (unused: both are batch sums) and
        ``diag`` with ``asdl_fisher_kwargs``; of those only the number of samples applies to
        the ``torch.func`` GGN, whose Monte-Carlo switch is ``stochastic``.
        """
        options = {k: v for k, v in options.items() if k != "N"}
        fields = _config_fields(method, options)
        other = sorted(k for k in options if _CONFIG_OPTIONS.get(k, "mc_samples") != "mc_samples")
        if other:
            raise CurvatureError(
                f"KFACBackend.{method}: per call only mc_samples applies to the torch.func GGN, "
                f"not {other}; set the rest on the backend (backend_kwargs)"
            )
        _check_samples(method, options, self.stochastic)
        samples = fields.get("mc_samples", self.num_samples)
        if not isinstance(samples, int) or samples < 1:
            raise CurvatureError(f"KFACBackend.{method}: mc_samples must be >= 1, got {samples!r}")
        saved, self.num_samples = self.num_samples, samples
        try:
            yield
        finally:
            self.num_samples = saved
