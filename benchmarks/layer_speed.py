"""Forward+backward time of every layer of the zoo against a plain 3x3 conv, and its KFAC cost.

Part 1 (``fwd_bwd``): for every layer of :mod:`bayesym.layers` at a realistic small shape
(batch 64, 16 channels, 28x28 and 14x14 by default) one forward + backward pass
(``y = layer(x)``, ``y.backward(dy)`` with a fixed random ``dy``; the input requires a
gradient, as for a layer inside a network) is timed against a plain ``nn.Conv2d`` 3x3
(zero padding, bias) that maps the same input to the same output *shape* (flattened over the
channel and group axes). Layers with a group axis keep 16 channels once expanded (EquiNAS's
convention): C4 has 4 channels per group element, D4 2, so their input and output are
``[64, 16 / |G|, |G|, H, W]`` and the plain conv maps ``[64, 16, H, W] -> [64, 16, H, W]``.
The AEN layer acts on one-channel ``H x W`` grids (``[64, H W] -> [64, H W]``, as in the AEN
MLP) and is compared with ``nn.Conv2d(1, 1, 3)`` and, for scale, with a dense ``nn.Linear`` of
the same shape. Every method of one spatial size runs round-robin in one process (the machine
is shared and noisy); the table reports the median over the repeats, its ratio to the plain
conv's median, and the number of trainable parameters.

Part 2 (``kfac``): a small classifier built from each layer, ``layer -> ReLU -> mean over
positions (and group axis) -> nn.Linear(C, 10)`` (the AEN layer: ``-> nn.Linear(H W, 10)``), on
one batch of 64 at 14x14 by default. :func:`curvature.compute_kfac` with the exact GGN
(``ggn_type="exact"``, 9 backward passes for 10 classes) and with one Monte-Carlo sample
(``"mc"``, 1 backward pass) is timed against one forward + cross-entropy + backward of the
same model, round-robin; the ratios show what each layer's KFAC adapter costs (the plain
``nn.Conv2d`` row uses the engine's built-in adapter).

Threads: one intra-op thread by default (``--threads``). On cores that another busy process
shares, every parallel region of a multi-threaded run waits for the descheduled thread
(docs/benchmarks.md, "Design choices of the curvature engine"), which makes ratios
meaningless.

Usage::

    python benchmarks/layer_speed.py            # default configuration (~2 min on a CPU)
    python benchmarks/layer_speed.py --quick    # 14x14 only, fewer repeats (~40 s)
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from common import environment, median, time_interleaved, write_json
from torch import nn

from bayesym.groups import d4_subgroup
from bayesym.layers import (
    FactoredLinear,
    GroupConv2d,
    HomotopicLayer,
    LiftingConv2d,
    MixedGroupConv2d,
    MixedLiftingConv2d,
    SparseConv2d,
    SparseFactoredLinear,
    SpatialConv2d,
    SpatialLinear,
    ffc_plus_conv,
    ffc_plus_conv_plus_gconv,
    sfc_plus_sconv,
)
from bayesym.layers.shared import OrbitSharedLinear
from curvature import KFACConfig, compute_kfac

BASELINE = "nn.Conv2d 3x3"


@dataclass(frozen=True)
class Case:
    """One row of the tables.

    Attributes:
        name: row label.
        build: ``(channels, spatial) -> layer``.
        input_shape: ``(channels, spatial) -> per-sample input shape`` the layer takes.
        grid: the layer works on flattened one-channel grids ``[N, H W]`` (AEN, nn.Linear).
        paper: where the layer is defined.
    """

    name: str
    build: Callable[[int, tuple[int, int]], nn.Module]
    input_shape: Callable[[int, tuple[int, int]], tuple[int, ...]]
    grid: bool = False
    paper: str = ""


def _image(c: int, s: tuple[int, int]) -> tuple[int, ...]:
    return (c, *s)


def _group_map(order: int) -> Callable[[int, tuple[int, int]], tuple[int, ...]]:
    return lambda c, s: (c // order, order, *s)


def _flat(c: int, s: tuple[int, int]) -> tuple[int, ...]:
    return (s[0] * s[1],)


def cases(aen_preset: str) -> list[Case]:
    """The layer zoo at ``channels`` (expanded) channels on an ``H x W`` grid."""
    c4, d4 = d4_subgroup("C4"), d4_subgroup("D4")
    return [
        Case("FC (SpatialLinear)", lambda c, s: SpatialLinear(c, c, spatial=s), _image,
             paper="layer-wise Eq. 1"),
        Case("CONV (SpatialConv2d, circular)", lambda c, s: SpatialConv2d(c, c, 3), _image,
             paper="layer-wise Eq. 3"),
        Case("CONV (SpatialConv2d, zeros)",
             lambda c, s: SpatialConv2d(c, c, 3, padding_mode="zeros"), _image,
             paper="layer-wise Eq. 3"),
        Case("F-FC (FactoredLinear)", lambda c, s: FactoredLinear(c, c, spatial=s), _image,
             paper="layer-wise Eq. 5"),
        Case("S-FC (SparseFactoredLinear)", lambda c, s: SparseFactoredLinear(c, c, spatial=s),
             _image, paper="layer-wise Eq. 7"),
        Case("S-CONV (SparseConv2d)", lambda c, s: SparseConv2d(c, c, 3), _image,
             paper="layer-wise Eq. 6"),
        Case("LiftingConv2d C4", lambda c, s: LiftingConv2d(c, c // 4, 3, c4), _image,
             paper="EquiNAS Eq. 2"),
        Case("LiftingConv2d D4", lambda c, s: LiftingConv2d(c, c // 8, 3, d4), _image,
             paper="EquiNAS Eq. 2"),
        Case("GroupConv2d C4", lambda c, s: GroupConv2d(c // 4, c // 4, 3, c4), _group_map(4),
             paper="EquiNAS Eq. 1"),
        Case("GroupConv2d D4", lambda c, s: GroupConv2d(c // 8, c // 8, 3, d4), _group_map(8),
             paper="EquiNAS Eq. 1"),
        Case("GroupConv2d C4, zeros", lambda c, s: GroupConv2d(c // 4, c // 4, 3, c4,
             padding_mode="zeros"), _group_map(4), paper="EquiNAS Eq. 1"),
        Case("MixedLiftingConv2d [D4] (6 components)",
             lambda c, s: MixedLiftingConv2d(c, c // 8, 3, d4), _image, paper="EquiNAS Eq. 11"),
        Case("MixedGroupConv2d [D4] (6 components)",
             lambda c, s: MixedGroupConv2d(c // 8, c // 8, 3, d4), _group_map(8),
             paper="EquiNAS Eq. 11"),
        Case("F-FC + CONV", lambda c, s: ffc_plus_conv(c, c, spatial=s), _image,
             paper="layer-wise Eq. 4, 5"),
        Case("S-FC + S-CONV", lambda c, s: sfc_plus_sconv(c, c, spatial=s), _image,
             paper="layer-wise Eq. 6, 7"),
        Case("F-FC + CONV + GCONV C4",
             lambda c, s: ffc_plus_conv_plus_gconv(c // 4, c // 4, spatial=s, group=c4),
             _group_map(4), paper="layer-wise Eq. 11"),
        Case("ACE: CONV + γ·F-FC (HomotopicLayer)",
             lambda c, s: HomotopicLayer(SpatialConv2d(c, c, 3), FactoredLinear(c, c, spatial=s)),
             _image, paper="ACE"),
        Case(f"AEN OrbitSharedLinear {aen_preset}, 1 channel",
             lambda c, s: OrbitSharedLinear.from_transforms(aen_preset, s, out_spatial=s),
             _flat, grid=True, paper="AEN Sec. 4"),
        Case("nn.Linear H·W -> H·W (dense reference for AEN)",
             lambda c, s: nn.Linear(s[0] * s[1], s[0] * s[1]), _flat, grid=True),
    ]  # fmt: skip


def parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def baseline_channels(in_shape: tuple[int, ...], out_shape: tuple[int, ...], spatial) -> tuple:
    """``(C_in, C_out)`` of the plain conv mapping the same flattened shapes."""
    positions = spatial[0] * spatial[1]
    return math.prod(in_shape) // positions, math.prod(out_shape) // positions


def fwd_bwd(module: nn.Module, x: torch.Tensor, dy: torch.Tensor) -> Callable[[], None]:
    params = [p for p in module.parameters() if p.requires_grad]

    def run() -> None:
        for p in params:
            p.grad = None
        x.grad = None
        module(x).backward(dy)

    return run


def time_fwd_bwd(args, spatial: tuple[int, int], zoo: list[Case]) -> dict:
    """Part 1 at one spatial size: every layer and its plain conv(s), round-robin."""
    gen = torch.Generator().manual_seed(0)
    methods: dict[str, Callable[[], None]] = {}
    rows: dict[str, dict] = {}
    baselines: dict[tuple[int, int], str] = {}
    for case in zoo:
        torch.manual_seed(0)
        layer = case.build(args.channels, spatial)
        in_shape = case.input_shape(args.channels, spatial)
        x = torch.randn(args.batch, *in_shape, generator=gen).requires_grad_()
        with torch.no_grad():
            out_shape = tuple(layer(x).shape[1:])
        dy = torch.randn(args.batch, *out_shape, generator=gen)
        methods[case.name] = fwd_bwd(layer, x, dy)
        key = baseline_channels(in_shape, out_shape, spatial)
        if key not in baselines:
            name = f"{BASELINE} {key[0]}->{key[1]} ch"
            baselines[key] = name
            conv = nn.Conv2d(key[0], key[1], 3, padding=1)
            xb = torch.randn(args.batch, key[0], *spatial, generator=gen).requires_grad_()
            dyb = torch.randn(args.batch, key[1], *spatial, generator=gen)
            methods[name] = fwd_bwd(conv, xb, dyb)
            rows[name] = {"parameters": parameters(conv), "input": [key[0], *spatial],
                          "output": [key[1], *spatial], "baseline": name}  # fmt: skip
        rows[case.name] = {
            "parameters": parameters(layer),
            "input": list(in_shape),
            "output": list(out_shape),
            "baseline": baselines[key],
            "symmetry": layer.symmetry.describe() if hasattr(layer, "symmetry") else "none",
            "paper": case.paper,
        }
    # Baselines first in every round, so each layer is timed right after the same warm state.
    order = [n for n in methods if n in set(baselines.values())]
    order += [n for n in methods if n not in order]
    times = time_interleaved({n: methods[n] for n in order}, args.repeats, warmup=1)
    for name, row in rows.items():
        row["times_s"] = times[name]
        row["median_s"] = median(times[name])
    for row in rows.values():
        row["ratio_to_conv"] = row["median_s"] / rows[row["baseline"]]["median_s"]
    return {n: rows[n] for n in order}


class PoolHead(nn.Module):
    """Mean over every axis after the channels, then ``nn.Linear(features, classes)``."""

    def __init__(self, features: int, classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(features, classes)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """``[N, C, ...] -> [N, classes]``."""
        if y.dim() > 2:
            y = y.mean(dim=tuple(range(2, y.dim())))
        return self.linear(y)


def time_kfac(args, spatial: tuple[int, int], zoo: list[Case]) -> dict:
    """Part 2: KFAC (exact, MC-1) vs one forward+backward of a small model per layer."""
    gen = torch.Generator().manual_seed(1)
    classes = 10
    methods: dict[str, Callable[[], object]] = {}
    rows: dict[str, dict] = {}
    entries = [(BASELINE, lambda c, s: nn.Conv2d(c, c, 3, padding=1), _image)]
    entries += [(c.name, c.build, c.input_shape) for c in zoo]
    exact = KFACConfig(ggn_type="exact")
    mc1 = KFACConfig(ggn_type="mc", mc_samples=1, seed=0)
    loss_fn = nn.CrossEntropyLoss()
    for name, build, input_shape in entries:
        torch.manual_seed(0)
        layer = build(args.channels, spatial)
        x = torch.randn(args.batch, *input_shape(args.channels, spatial), generator=gen)
        with torch.no_grad():
            features = layer(x).shape[1]
        model = nn.Sequential(layer, nn.ReLU(), PoolHead(features, classes))
        y = torch.randint(0, classes, (args.batch,), generator=gen)

        def step(model=model, x=x, y=y) -> None:
            model.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()

        def kfac(config, model=model, x=x, y=y):
            return lambda: compute_kfac(model, (x, y), "classification", config)

        methods[f"{name} | fwd+bwd"] = step
        methods[f"{name} | exact"] = kfac(exact)
        methods[f"{name} | mc1"] = kfac(mc1)
        k = compute_kfac(model, (x, y), "classification", exact)
        rows[name] = {
            "parameters": parameters(model),
            "layer_parameters": parameters(layer),
            "blocks": len(k.blocks),
        }
    times = time_interleaved(methods, args.kfac_repeats, warmup=1)
    for name, row in rows.items():
        for method in ("fwd+bwd", "exact", "mc1"):
            row[f"{method}_times_s"] = times[f"{name} | {method}"]
            row[f"{method}_median_s"] = median(times[f"{name} | {method}"])
        row["exact_ratio"] = row["exact_median_s"] / row["fwd+bwd_median_s"]
        row["mc1_ratio"] = row["mc1_median_s"] / row["fwd+bwd_median_s"]
    return rows


def print_fwd_bwd(label: str, rows: dict, args) -> None:
    print(f"\nForward+backward, batch {args.batch}, {label}, median of {args.repeats} "
          "interleaved repeats")  # fmt: skip
    print("| layer | input -> output (per sample) | parameters | median ms | x plain conv |")
    print("|---|---|---|---|---|")
    for name, row in rows.items():
        shapes = f"{tuple(row['input'])} -> {tuple(row['output'])}".replace(",)", ")")
        print(
            f"| {name} | {shapes} | {row['parameters']:,} | {1e3 * row['median_s']:.2f} "
            f"| {row['ratio_to_conv']:.2f} |"
        )


def print_kfac(label: str, rows: dict, args) -> None:
    print(f"\nKFAC of layer -> ReLU -> pool -> Linear(., 10), one batch of {args.batch}, {label}, "
          f"median of {args.kfac_repeats} interleaved repeats")  # fmt: skip
    print("| layer | model parameters | fwd+bwd ms | exact KFAC ms | x fwd+bwd | MC-1 KFAC ms "
          "| x fwd+bwd |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for name, row in rows.items():
        print(
            f"| {name} | {row['parameters']:,} | {1e3 * row['fwd+bwd_median_s']:.2f} "
            f"| {1e3 * row['exact_median_s']:.2f} | {row['exact_ratio']:.1f} "
            f"| {1e3 * row['mc1_median_s']:.2f} | {row['mc1_ratio']:.1f} |"
        )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--channels", type=int, default=16, help="multiple of 8 (D4 layers)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[28, 14], help="square H = W")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--kfac-size", type=int, default=14, help="H = W of the KFAC part")
    parser.add_argument("--kfac-repeats", type=int, default=15)
    parser.add_argument("--aen-preset", default="Aug1", help="AEN transformations (Aug0..Aug5)")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads (see the module doc)"
    )
    parser.add_argument("--no-kfac", action="store_true", help="skip part 2")
    parser.add_argument("--quick", action="store_true", help="14x14 only, 15/6 repeats (~40 s)")
    parser.add_argument(
        "--output", default=None, help="results/NAME.json (default: layer_speed[_quick])"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.repeats, args.kfac_repeats = [14], 15, 6
    if args.channels % 8:
        parser.error(f"--channels must be a multiple of 8 (D4 layers), got {args.channels}")

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    zoo = cases(args.aen_preset)
    results: dict = {"fwd_bwd": {}, "kfac": {}}
    for size in args.sizes:
        label = f"{size}x{size}"
        results["fwd_bwd"][label] = time_fwd_bwd(args, (size, size), zoo)
        print_fwd_bwd(label, results["fwd_bwd"][label], args)
    if not args.no_kfac:
        label = f"{args.kfac_size}x{args.kfac_size}"
        results["kfac"][label] = time_kfac(args, (args.kfac_size, args.kfac_size), zoo)
        print_kfac(label, results["kfac"][label], args)
    wall = time.perf_counter() - start
    print(f"\nwall time {wall:.0f} s")
    payload = {
        "config": vars(args),
        "environment": environment(),
        "wall_time_s": wall,
        "results": results,
    }
    name = args.output or "layer_speed" + ("_quick" if args.quick else "")
    path = write_json(name, payload)
    print(f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()
