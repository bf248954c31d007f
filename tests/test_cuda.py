"""Everything that has a device runs on CUDA and agrees with the CPU (skipped without CUDA).

The CPU computation is the reference: in float64 the curvature blocks, log-determinants,
effective parameters, the marglik trainer's history and laplace-torch's marglik through our
backend must agree to round-off (only the order of floating-point sums differs). Monte-Carlo
curvature draws from a generator on the model's device, so CPU and CUDA draw different labels:
there only finiteness and the device of the result are checked.

Also on CPU-only machines: asking for an unavailable device is a clear error.
"""

import copy
import json

import pytest
import torch
from torch import nn

import bayesym  # noqa: F401  (registers the adapters)
from bayesym.backbones.layerwise import LayerwiseBackbone, LayerwiseBackboneConfig
from bayesym.cli import main
from bayesym.groups.d4 import d4_subgroup
from bayesym.layers import (
    GroupBatchNorm,
    GroupConv2d,
    GroupPool,
    HomotopicLayer,
    LiftingConv2d,
    MixedGroupConv2d,
    MixedLiftingConv2d,
)
from bayesym.layers.registry import LAYER_KINDS
from bayesym.layers.shared import OrbitSharedLinear
from bayesym.marglik import MarglikConfig, MarglikTrainer
from bayesym.runs import resolve_device
from curvature import KFACConfig, compute_kfac

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


class Head(nn.Module):
    """Mean over every axis but the channels, then a linear classifier."""

    def __init__(self, channels: int, classes: int = 3) -> None:
        super().__init__()
        self.linear = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(2).mean(-1))


def backbone(kind: str) -> tuple[nn.Module, tuple[int, ...]]:
    config = LayerwiseBackboneConfig(
        layer_kind=kind, width=1, in_channels=1, num_classes=3, input_size=(8, 8)
    )
    return LayerwiseBackbone(config), (1, 8, 8)


def plain() -> tuple[nn.Module, tuple[int, ...]]:
    model = nn.Sequential(
        nn.Conv2d(2, 3, 3, stride=2, padding=1, padding_mode="circular"),
        nn.ReLU(),
        nn.Conv2d(3, 4, 3, padding="same", dilation=2, bias=False),
        nn.Tanh(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * 2 * 2, 3),
    )
    return model, (2, 8, 8)


def mixed() -> tuple[nn.Module, tuple[int, ...]]:
    g = d4_subgroup("D4")
    comps = [d4_subgroup(k) for k in ("C1", "C4", "D4")]
    model = nn.Sequential(
        MixedLiftingConv2d(1, 2, 3, g, components=comps),
        nn.Tanh(),
        MixedGroupConv2d(2, 2, 3, g, components=comps),
        nn.Tanh(),
        Head(2),
    )
    return model, (1, 6, 6)


def homotopic() -> tuple[nn.Module, tuple[int, ...]]:
    g = d4_subgroup("C4")
    model = nn.Sequential(
        LiftingConv2d(1, 3, 3, g), GroupBatchNorm(3, g), nn.Tanh(),
        HomotopicLayer(GroupConv2d(3, 3, 3, g), GroupConv2d(3, 3, 1, g, bias=False)),
        GroupPool("mean"), Head(3),
    )  # fmt: skip
    model.train()
    with torch.no_grad():
        model(torch.randn(6, 1, 5, 5))  # non-trivial running statistics
    return model.eval(), (1, 5, 5)


def orbit_shared() -> tuple[nn.Module, tuple[int, ...]]:
    layer = OrbitSharedLinear.from_transforms(["hflip", "vflip"], (2, 4), out_features=4)
    return nn.Sequential(nn.Flatten(), layer, nn.Tanh(), nn.Linear(4, 3)), (2, 4)


MODELS = {
    "plain": plain,
    "mixed": mixed,
    "homotopic": homotopic,
    "orbit-shared": orbit_shared,
    **{f"backbone-{kind}": (lambda kind=kind: backbone(kind)) for kind in LAYER_KINDS},
}


def to_cuda(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model).cuda()


# ----------------------------------------------------------------------------- curvature
SETTINGS = [("exact", "expand"), ("exact", "reduce"), ("empirical", "expand")]
CASES = [
    (name, ggn, approx)
    for name in MODELS
    for ggn, approx in (SETTINGS if not name.startswith("backbone") else SETTINGS[:1])
]  # every layer kind of the backbones once (their group-conv factors are large)


@needs_cuda
@pytest.mark.parametrize(("name", "ggn", "approx"), CASES)
def test_kfac_on_cuda_equals_kfac_on_cpu(float64, name, ggn, approx):
    torch.manual_seed(0)
    model, shape = MODELS[name]()
    x, y = torch.randn(6, *shape), torch.randint(0, 3, (6,))
    batches = [(x[:4], y[:4]), (x[4:], y[4:])]
    config = KFACConfig(ggn_type=ggn, approx=approx)
    cpu = compute_kfac(model, batches, config=config)
    gpu = compute_kfac(to_cuda(model), [(a.cuda(), b.cuda()) for a, b in batches], config=config)
    assert [b.name for b in gpu] == [b.name for b in cpu]
    for want, got in zip(cpu, gpu, strict=True):
        assert [type(f) for f in got.factors] == [type(f) for f in want.factors], want.name
        for f_want, f_got in zip(want.factors, got.factors, strict=True):
            dense = f_got.to_dense()  # factors, not the (possibly huge) Kronecker product
            assert dense.is_cuda, want.name
            torch.testing.assert_close(dense.cpu(), f_want.to_dense(), rtol=1e-9, atol=1e-12)
    precision = {b.name: 0.5 + i for i, b in enumerate(cpu)}
    logdet = gpu.logdet(precision)
    assert logdet.is_cuda
    torch.testing.assert_close(logdet.cpu(), cpu.logdet(precision), rtol=1e-10, atol=0)
    for block, gamma in gpu.effective_parameters(precision).items():
        want = cpu.effective_parameters(precision)[block]
        torch.testing.assert_close(gamma.cpu(), want, rtol=1e-9, atol=1e-12)


@needs_cuda
@pytest.mark.parametrize("name", ["plain", "mixed", "backbone-ffc+conv"])
def test_monte_carlo_kfac_runs_on_cuda(name):
    torch.manual_seed(0)
    model, shape = MODELS[name]()
    model = model.cuda()
    x, y = torch.randn(8, *shape, device="cuda"), torch.randint(0, 3, (8,), device="cuda")
    kfac = compute_kfac(model, (x, y), config=KFACConfig(ggn_type="mc", seed=3))
    logdet = kfac.logdet(1.0)
    assert logdet.is_cuda and torch.isfinite(logdet)


# ------------------------------------------------------------------------------- trainer
@needs_cuda
@pytest.mark.parametrize("name", ["plain", "backbone-ffc+conv"])
def test_trainer_on_cuda_follows_the_cpu_run(float64, name):
    torch.manual_seed(0)
    model, shape = MODELS[name]()
    x, y = torch.randn(48, *shape), torch.randint(0, 3, (48,))
    config = MarglikConfig(
        epochs=3, batch_size=16, lr=1e-2, burn_in=1, hyper_every=1, hyper_steps=5,
        kfac=KFACConfig(ggn_type="exact"),
    )  # fmt: skip
    runs = {}
    for device, net in (("cpu", model), ("cuda", to_cuda(model))):
        trainer = MarglikTrainer(net, config=config, progress=False)
        history = trainer.fit((x.to(device), y.to(device)))
        runs[device] = (history, trainer.evaluate((x.to(device), y.to(device))))
        assert net.training  # train mode restored
    (cpu, cpu_eval), (gpu, gpu_eval) = runs["cpu"], runs["cuda"]
    for want, got in zip(cpu, gpu, strict=True):
        assert got.train_accuracy == want.train_accuracy
        for key in ("train_loss", "marglik"):
            assert getattr(got, key) == pytest.approx(getattr(want, key), rel=1e-7, abs=1e-12)
        for group, value in want.precisions.items():
            assert got.precisions[group] == pytest.approx(value, rel=1e-7)
    assert gpu_eval["nll"] == pytest.approx(cpu_eval["nll"], rel=1e-7)


@needs_cuda
def test_cli_fit_trains_on_cuda_and_its_run_directory_reopens_on_cpu(tmp_path, capsys):
    tiny = ["--width", "1", "--train-subset", "64", "--batch-size", "32", "--burn-in", "1",
            "--hyper-every", "1", "--hyper-steps", "2", "--epochs", "2", "--quiet"]  # fmt: skip
    out = tmp_path / "run"
    args = ["fit", "--task", "quadrant-digits", "--out", str(out), *tiny]
    assert main([*args, "--device", "cuda"]) == 0
    on_cuda = json.loads((out / "metrics.json").read_text())
    assert on_cuda["device"] == "cuda"
    assert main([*args, "--device", "cpu"]) == 0  # finished checkpoint: loaded, evaluated
    on_cpu = json.loads((out / "metrics.json").read_text())
    assert on_cpu["device"] == "cpu"
    assert on_cpu["test_nll"] == pytest.approx(on_cuda["test_nll"], rel=1e-4)
    assert on_cpu["marglik"] == on_cuda["marglik"]
    capsys.readouterr()


@needs_cuda
def test_laplace_torch_marglik_through_our_backend_on_cuda(float64):
    laplace = pytest.importorskip("laplace")
    from torch.utils.data import DataLoader, TensorDataset

    from curvature.laplace_backend import KFACBackend

    torch.manual_seed(0)
    model, shape = MODELS["plain"]()
    x, y = torch.randn(12, *shape), torch.randint(0, 3, (12,))
    values = {}
    for device, net in (("cpu", model), ("cuda", to_cuda(model))):
        loader = DataLoader(TensorDataset(x.to(device), y.to(device)), batch_size=4)
        la = laplace.Laplace(
            net, "classification", subset_of_weights="all", hessian_structure="kron",
            backend=KFACBackend, prior_precision=0.7,
        )  # fmt: skip
        la.fit(loader)
        values[device] = float(la.log_marginal_likelihood())
    assert values["cuda"] == pytest.approx(values["cpu"], rel=1e-9)


# ----------------------------------------------------------------------- device errors
def test_an_unavailable_or_unknown_device_is_a_clear_error(monkeypatch):
    assert resolve_device(None) == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown device 'gpu0'"):
        resolve_device("gpu0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="'cuda' asked for, but torch sees no CUDA device"):
        resolve_device("cuda")


def test_cli_names_an_unavailable_device(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code = main(["fit", "--epochs", "1", "--map", "--out", str(tmp_path / "r"), "--device", "cuda"])
    assert code != 0
    assert "'cuda' asked for, but torch sees no CUDA device" in capsys.readouterr().err
