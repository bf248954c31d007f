"""Time KFAC + log marginal likelihood against a training epoch and laplace-torch's backends.

All methods run on the same model and data, round-robin in ONE process (the machine is
shared and noisy), and are reported as ratios to the median forward+backward epoch:

* ``epoch``: one plain training epoch (forward, cross-entropy, backward, SGD step);
* ``ours-exact`` / ``ours-mc1``: :func:`curvature.compute_kfac` (exact GGN / 1 MC sample)
  over the epoch's batches, then the log marginal likelihood from the factors; default
  ``backward="auto"`` (vectorised directions for the MLP, a loop for the CNN);
* ``ours-exact-loop`` / ``ours-exact-vmap``: exact with either backward mode forced;
* ``laplace-ours``: laplace-torch's ``KronLaplace`` fitted with our ``KFACBackend``;
* ``laplace-asdl`` / ``laplace-curvlinops``: ``KronLaplace`` with laplace-torch's
  ``AsdlGGN`` / ``CurvlinopsGGN`` (exact GGN), ``*-mc1`` their stochastic variants.

Data: Fashion-MNIST-shaped synthetic images ``[N, 1, 28, 28]`` with 10 classes (the timing does
not depend on pixel values), or the real training images with ``--fashion-mnist``.

Usage::

    python benchmarks/kfac_speed.py                 # default configuration (~10 min on a CPU)
    python benchmarks/kfac_speed.py --quick         # small smoke configuration (~1 min)
"""

from __future__ import annotations

import argparse
import math
import warnings

import torch
from common import environment, median, time_interleaved, write_json
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, SequentialSampler, TensorDataset
from torch.utils.flop_counter import FlopCounterMode

from bayesym.runs import resolve_device
from curvature import KFACConfig, compute_kfac
from curvature.laplace_backend import KFACBackend

warnings.filterwarnings("ignore", category=FutureWarning)  # ASDL's deprecated hooks


def models() -> dict[str, nn.Module]:
    return {
        "mlp": nn.Sequential(
            nn.Flatten(),
            nn.Linear(784, 256),
            nn.ReLU(),
            nn.Linear(256, 256),
            nn.ReLU(),
            nn.Linear(256, 10),
        ),
        # arithmetic negligible (7x7 average pooling first): measures the per-batch fixed cost
        # of a KFAC pass against an epoch's (kfac_breakdown.py --models tiny)
        "tiny": nn.Sequential(
            nn.AvgPool2d(7),
            nn.Flatten(),
            nn.Linear(16, 8),
            nn.ReLU(),
            nn.Linear(8, 8),
            nn.ReLU(),
            nn.Linear(8, 10),
        ),
        "cnn": nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(32 * 7 * 7, 128),
            nn.ReLU(),
            nn.Linear(128, 10),
        ),
    }


def load_data(n: int, fashion_mnist: bool) -> tuple[torch.Tensor, torch.Tensor]:
    if fashion_mnist:
        from bayesym.data import load_fashion_mnist

        data = load_fashion_mnist("train")
        return data.images[:n], data.labels[:n]
    gen = torch.Generator().manual_seed(0)
    return torch.rand(n, 1, 28, 28, generator=gen), torch.randint(0, 10, (n,), generator=gen)


def batches(x: torch.Tensor, y: torch.Tensor, batch_size: int) -> DataLoader:
    """A DataLoader that slices whole batches (no per-item collation); has ``.dataset``."""
    dataset = TensorDataset(x, y)
    sampler = BatchSampler(SequentialSampler(dataset), batch_size, drop_last=False)
    return DataLoader(dataset, batch_size=None, sampler=sampler)


def training_epoch(model: nn.Module, loader: DataLoader):
    """One plain training epoch (forward, cross-entropy, backward, SGD step) as a callable."""
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()

    def epoch():
        for xb, yb in loader:
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(xb), yb).backward()
            optimizer.step()

    return epoch


def laplace_fit(model: nn.Module, loader: DataLoader, backend, **backend_kwargs):
    """laplace-torch's KronLaplace fit + log marglik (prior precision 1) on ``backend``."""
    from laplace import Laplace

    def run():
        la = Laplace(
            model,
            "classification",
            subset_of_weights="all",
            hessian_structure="kron",
            backend=backend,
            backend_kwargs=backend_kwargs or None,
        )
        la.fit(loader)
        out = float(la.log_marginal_likelihood(prior_precision=torch.tensor(1.0)))
        model.train()  # laplace-torch leaves the model in eval mode
        return out

    return run


def methods_for(model: nn.Module, loader: DataLoader, include_mc_baselines: bool) -> dict:
    epoch = training_epoch(model, loader)

    def ours(config: KFACConfig):
        def run():
            kfac = compute_kfac(model, loader, "classification", config)
            theta = torch.nn.utils.parameters_to_vector(model.parameters()).detach()
            delta = 1.0
            # log p(D | θ) + log p(θ) - ½ log det(H + δ I) + P/2 log δ (Gaussian prior N(0, 1/δ))
            value = (
                kfac.log_likelihood
                - 0.5 * delta * theta.square().sum()
                + 0.5 * theta.numel() * math.log(delta)
                - 0.5 * kfac.logdet(delta)
            )
            return float(value)

        return run

    def laplace(backend, **backend_kwargs):
        return laplace_fit(model, loader, backend, **backend_kwargs)

    from laplace.curvature import AsdlGGN, CurvlinopsGGN

    out = {
        "epoch": epoch,
        "ours-exact": ours(KFACConfig(ggn_type="exact")),
        "ours-mc1": ours(KFACConfig(ggn_type="mc", mc_samples=1, seed=0)),
        "ours-exact-loop": ours(KFACConfig(ggn_type="exact", backward="loop")),
        "ours-exact-vmap": ours(KFACConfig(ggn_type="exact", backward="vmap")),
        "laplace-ours": laplace(KFACBackend),
        "laplace-asdl": laplace(AsdlGGN),
        "laplace-curvlinops": laplace(CurvlinopsGGN),
    }
    if include_mc_baselines:
        out["laplace-asdl-mc1"] = laplace(AsdlGGN, stochastic=True)
        out["laplace-curvlinops-mc1"] = laplace(CurvlinopsGGN, stochastic=True)
    return out


FLOP_METHODS = ("epoch", "ours-exact", "ours-mc1", "laplace-asdl", "laplace-curvlinops")


def count_flops(methods: dict, names: tuple[str, ...] = FLOP_METHODS) -> dict[str, int]:
    """Matrix-product FLOPs (mm, bmm, conv and their backward) of one call of each named method.

    ``torch.utils.flop_counter`` counts the FLOPs of matrix products and convolutions only,
    not element-wise ops or eigendecompositions; ratios of these counts show how much of a
    time ratio is arithmetic that any implementation of the same algorithm must do.
    """
    out = {}
    for name in names:
        with FlopCounterMode(display=False) as counter:
            methods[name]()
        out[name] = int(counter.get_total_flops())
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=10000, help="number of training images")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--models", nargs="+", default=["mlp", "cnn"])
    parser.add_argument("--fashion-mnist", action="store_true", help="use the real images")
    parser.add_argument("--no-mc-baselines", action="store_true")
    parser.add_argument("--quick", action="store_true", help="n=1024, repeats=2 (smoke run)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's choice)"
    )
    parser.add_argument(
        "--output", default=None, help="results/NAME.json (default: kfac_speed[_quick])"
    )
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    args = parser.parse_args(argv)
    args.device = str(resolve_device(args.device))
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.n, args.repeats = 1024, 2

    torch.manual_seed(0)
    x, y = (t.to(args.device) for t in load_data(args.n, args.fashion_mnist))
    loader = batches(x, y, args.batch_size)
    results = {}
    for name in args.models:
        model = models()[name].to(args.device)
        methods = methods_for(model, loader, not args.no_mc_baselines)
        flops = count_flops(methods)
        times = time_interleaved(methods, args.repeats, device=args.device)
        epoch = median(times["epoch"])
        laplace_exact = min(median(times["laplace-asdl"]), median(times["laplace-curvlinops"]))
        results[name] = {
            "parameters": sum(p.numel() for p in model.parameters()),
            "times_s": times,
            "median_s": {k: median(v) for k, v in times.items()},
            "ratio_to_epoch": {k: median(v) / epoch for k, v in times.items()},
            "speedup_exact_vs_fastest_laplace_exact": laplace_exact / median(times["ours-exact"]),
            "flops": flops,
            "flop_ratio_to_epoch": {k: v / flops["epoch"] for k, v in flops.items()},
        }
        print(
            f"\n{name} ({results[name]['parameters']} parameters), N={args.n}, "
            f"batch {args.batch_size}, {args.repeats} interleaved repeats"
        )
        print("| method | median s | x epoch | matrix-product FLOPs x epoch |")
        print("|---|---|---|---|")
        for k, v in results[name]["median_s"].items():
            flop_ratio = results[name]["flop_ratio_to_epoch"].get(k)
            flop_text = "-" if flop_ratio is None else f"{flop_ratio:.2f}"
            print(f"| {k} | {v:.3f} | {results[name]['ratio_to_epoch'][k]:.2f} | {flop_text} |")
        print(
            f"exact KFAC speed-up over fastest laplace-torch exact backend: "
            f"{results[name]['speedup_exact_vs_fastest_laplace_exact']:.2f}x"
        )
    payload = {"config": vars(args), "environment": environment(), "results": results}
    name = args.output or "kfac_speed" + ("_quick" if args.quick else "")
    path = write_json(name, payload)
    print(f"\nwrote {path}")
    return payload


if __name__ == "__main__":
    main()
