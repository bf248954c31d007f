"""Wall time of marglik training vs MAP training and vs laplace-torch's ``marglik_training``.

Same model, data, optimiser and schedule for every method (the paper's schedule, App. F.6:
burn-in 10 epochs, then a hyper step every 5 epochs with 20 Adam steps at lr 0.1 on the log
prior precisions; one precision per parameter tensor, laplace-torch's "layerwise"):

* ``map``: bayesym's :class:`~bayesym.marglik.MarglikTrainer` with a fixed prior;
* ``ours``: the same trainer learning the prior with the Laplace marglik (exact GGN KFAC);
* ``ours-mc``: the same with the 1-sample Monte-Carlo KFAC;
* ``laplace-torch``: ``laplace.marglik_training`` with its default ``AsdlGGN`` KFAC backend.

Runs are repeated round-robin (the machine is shared and noisy) and reported as ratios of
medians; the final log marginal likelihood per datum and the test accuracy of both
implementations are reported side by side. Data: Fashion-MNIST-shaped synthetic images, or the
real ones with ``--fashion-mnist``.

``--model`` times our trainer on the layer zoo's backbones instead of the CNN (real
Fashion-MNIST, default prior of one precision per layer and path, no laplace-torch, which has
no curvature for their layers): ``quadrant``, the learned F-FC + CONV backbone of Table 1
(width 4, 16x16 canvas, invariant task), and ``table3``, the F-FC + CONV + GCONV (C4) backbone
of Table 3 (width 2, plain data, 16x16).

Usage::

    python benchmarks/marglik_speed.py            # default (~15 min on a CPU)
    python benchmarks/marglik_speed.py --quick    # smoke run (~1 min)
    python benchmarks/marglik_speed.py --model table3 --n 1280 --epochs 15 --repeats 1
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch
from common import environment, median, synchronize, write_json
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, TensorDataset

from bayesym.marglik import MarglikConfig, MarglikTrainer
from bayesym.priors import GaussianPrior
from bayesym.runs import resolve_device
from curvature import KFACConfig

warnings.filterwarnings("ignore", category=FutureWarning)  # ASDL's deprecated hooks


def cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10),
    )  # fmt: skip


MODELS = ("cnn", "quadrant", "table3")


def zoo_setup(model: str, n_train: int, n_test: int):
    """``(train, test, build)`` of a layer-zoo backbone on its reproduction's data."""
    from reproduce_multigroup import multigroup_data
    from reproduce_quadrants import MODELS as QUADRANT_MODELS
    from reproduce_quadrants import Schedule, quadrant_data

    from bayesym.runs import build_model

    if model == "quadrant":
        train, test = quadrant_data(n_train, n_test, 8, 0)["invariant"]
        config = Schedule(width=4).run_config("invariant", QUADRANT_MODELS["learned"], "marglik")
    else:
        train, test = multigroup_data("plain", n_train, n_test, 0)
        config = Schedule(width=2).run_config("plain", "ffc+conv+gconv", "marglik", {"group": "C4"})
    return (
        (train.images, train.labels),
        (test.images, test.labels),
        lambda: build_model(config, train),
    )


def load(n_train: int, n_test: int, real: bool):
    if real:
        from bayesym.data import load_fashion_mnist

        train, test = load_fashion_mnist("train"), load_fashion_mnist("test")
        mean, std = train.images.mean(), train.images.std()
        return (
            ((train.images[:n_train] - mean) / std, train.labels[:n_train]),
            ((test.images[:n_test] - mean) / std, test.labels[:n_test]),
        )
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n_train + n_test, 1, 28, 28, generator=g)
    teacher = cnn()
    with torch.no_grad():
        y = teacher(x).argmax(-1)
    return (x[:n_train], y[:n_train]), (x[n_train:], y[n_train:])


def accuracy(model: nn.Module, data) -> float:
    model.eval()
    with torch.no_grad():
        out = float((model(data[0]).argmax(-1) == data[1]).float().mean())
    model.train()
    return out


def run_ours(train, test, args, learn: bool, ggn: str) -> dict:
    torch.manual_seed(0)
    model = args.build().to(args.device)
    prior = GaussianPrior(model, "tensor") if args.model == "cnn" else GaussianPrior(model)
    config = MarglikConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, lr_min=args.lr,
        learn_prior=learn, burn_in=args.burn_in, hyper_every=args.hyper_every,
        hyper_steps=args.hyper_steps, kfac=KFACConfig(ggn_type=ggn),
        marglik_batch_size=args.marglik_batch_size,
    )  # fmt: skip
    synchronize(args.device)
    start = time.perf_counter()
    history = MarglikTrainer(model, prior=prior, config=config, progress=False).fit(train)
    synchronize(args.device)
    seconds = time.perf_counter() - start
    marglik = [r.marglik for r in history if r.is_hyper_step]
    return {"seconds": seconds, "marglik": marglik[-1] if marglik else None,
            "test_accuracy": accuracy(model, test),
            "epoch_seconds": [r.seconds for r in history],
            "hyper_epoch": [r.is_hyper_step for r in history]}  # fmt: skip


def hyper_step_cost(runs: list[dict]) -> float | None:
    """Extra seconds of an epoch with a hyper step over the median plain epoch, in epochs.

    Pooled over repeats: ``median(hyper epochs) / median(plain epochs) - 1``. Under the
    paper's schedule (a hyper step every 5 epochs for 1000-4000 epochs) the wall time of
    marglik training over MAP tends to ``1 + cost / 5``.
    """
    pairs = [p for r in runs for p in zip(r["epoch_seconds"], r["hyper_epoch"], strict=True)]
    plain = [t for t, h in pairs if not h]
    hyper = [t for t, h in pairs if h]
    if not plain or not hyper:
        return None
    return median(hyper) / median(plain) - 1


def run_laplace(train, test, args) -> dict:
    from laplace import marglik_training
    from laplace.curvature import AsdlGGN

    torch.manual_seed(0)
    model = cnn().to(args.device)
    dataset = TensorDataset(*train)
    sampler = BatchSampler(
        RandomSampler(dataset, generator=torch.Generator().manual_seed(0)),
        args.batch_size,
        drop_last=False,
    )
    loader = DataLoader(dataset, batch_size=None, sampler=sampler)
    synchronize(args.device)
    start = time.perf_counter()
    # laplace-torch counts epochs from 1 and steps when epoch % frequency == 0 and
    # epoch >= burn-in: hyper steps after epochs 10, 15, 20 like ours.
    _, model, margliks, _ = marglik_training(
        model, loader, "classification", hessian_structure="kron", backend=AsdlGGN,
        optimizer_kwargs={"lr": args.lr}, n_epochs=args.epochs, lr_hyp=0.1,
        prior_structure="layerwise", n_epochs_burnin=args.burn_in,
        n_hypersteps=args.hyper_steps, marglik_frequency=args.hyper_every,
    )  # fmt: skip
    synchronize(args.device)
    seconds = time.perf_counter() - start
    model.train()  # laplace-torch leaves it in eval mode
    return {"seconds": seconds, "marglik": -margliks[-1] / len(dataset),
            "test_accuracy": accuracy(model, test)}  # fmt: skip


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--n-test", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--burn-in", type=int, default=10)
    parser.add_argument("--hyper-every", type=int, default=5)
    parser.add_argument("--hyper-steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument(
        "--marglik-batch-size",
        type=int,
        default=None,
        help="batch size of our curvature pass (default: the training batch size)",
    )
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--fashion-mnist", action="store_true")
    parser.add_argument(
        "--model",
        choices=MODELS,
        default="cnn",
        help="cnn (default; also laplace-torch), or a layer-zoo backbone on real Fashion-MNIST: "
        "quadrant (learned F-FC + CONV of Table 1), table3 (F-FC + CONV + GCONV of Table 3)",
    )
    parser.add_argument("--quick", action="store_true", help="n=512, 6 epochs, 1 repeat")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's choice)"
    )
    parser.add_argument(
        "--output", default=None, help="results/NAME.json (default: marglik_speed[_quick])"
    )
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    parser.add_argument(
        "--warmup",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run every method untimed for one epoch with a hyper step first, so that CUDA "
        "start-up and kernel loading are charged to none (default: on for cuda, off for cpu)",
    )
    return parser.parse_args(argv)


def summarise(results: dict[str, list[dict]]) -> dict:
    med = {k: median([r["seconds"] for r in v]) for k, v in results.items()}
    others = [k for k in ("ours", "ours-mc", "laplace-torch") if k in med]
    laplace = med.get("laplace-torch")
    return {
        "median_seconds": med,
        "marglik_over_map": {k: med[k] / med["map"] for k in others},
        "laplace_torch_over_ours": None if laplace is None else laplace / med["ours"],
        "laplace_torch_over_ours_mc": None if laplace is None else laplace / med["ours-mc"],
        "hyper_step_cost_in_epochs": {k: hyper_step_cost(results[k]) for k in ("ours", "ours-mc")},
        "final_marglik_per_datum": {k: v[-1]["marglik"] for k, v in results.items()},
        "test_accuracy": {k: v[-1]["test_accuracy"] for k, v in results.items()},
    }


def print_summary(args: argparse.Namespace, summary: dict) -> None:
    med = summary["median_seconds"]
    print(
        f"{args.model}: N={args.n}, {args.epochs} epochs, burn-in {args.burn_in}, hyper step every "
        f"{args.hyper_every} epochs x {args.hyper_steps} steps, {args.repeats} repeats"
    )
    print("| method | median s | x MAP | final log marglik / N | test acc |")
    print("|---|---|---|---|---|")
    for k in med:
        ml = summary["final_marglik_per_datum"][k]
        print(
            f"| {k} | {med[k]:.1f} | {med[k] / med['map']:.2f} | "
            f"{'-' if ml is None else f'{ml:.4f}'} | {summary['test_accuracy'][k]:.4f} |"
        )
    if summary["laplace_torch_over_ours"] is not None:
        print(f"laplace-torch / ours (exact): {summary['laplace_torch_over_ours']:.2f}x")
        print(f"laplace-torch / ours (MC): {summary['laplace_torch_over_ours_mc']:.2f}x")
    for k, cost in summary["hyper_step_cost_in_epochs"].items():
        if cost is not None:
            print(
                f"{k}: a hyper step costs {cost:.2f} epochs; paper schedule (every "
                f"{args.hyper_every} epochs, long run) -> {1 + cost / args.hyper_every:.2f}x MAP"
            )


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    args.device = str(resolve_device(args.device))
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.n, args.n_test, args.epochs, args.burn_in, args.hyper_every, args.repeats = (
            512,
            256,
            6,
            2,
            2,
            1,
        )
    if args.model == "cnn":
        train, test = load(args.n, args.n_test, args.fashion_mnist)
        args.build = cnn
    else:
        train, test, args.build = zoo_setup(args.model, args.n, args.n_test)
    train, test = (tuple(t.to(args.device) for t in split) for split in (train, test))
    methods = {
        "map": lambda: run_ours(train, test, args, learn=False, ggn="exact"),
        "ours": lambda: run_ours(train, test, args, learn=True, ggn="exact"),
        "ours-mc": lambda: run_ours(train, test, args, learn=True, ggn="mc"),
        "laplace-torch": lambda: run_laplace(train, test, args),
    }
    if args.model != "cnn":
        del methods["laplace-torch"]
    if args.warmup if args.warmup is not None else args.device.startswith("cuda"):
        timed = args.epochs, args.burn_in, args.hyper_every
        args.epochs, args.burn_in, args.hyper_every = 1, 1, 1
        for fn in methods.values():
            fn()
        args.epochs, args.burn_in, args.hyper_every = timed
    results: dict[str, list[dict]] = {k: [] for k in methods}
    for _ in range(args.repeats):
        for name, fn in methods.items():
            results[name].append(fn())
    summary = summarise(results)
    print_summary(args, summary)
    config = {k: v for k, v in vars(args).items() if k != "build"}
    payload = {"config": config, "environment": environment(), "runs": results,
               "summary": summary}  # fmt: skip
    name = args.output or "marglik_speed" + ("_quick" if args.quick else "")
    print(f"wrote {write_json(name, payload)}")
    return payload


if __name__ == "__main__":
    main()
