"""Building one AEN child network: AEN's Alg. 1 orbit search vs the vectorised one vs the cache.

For every state (a set of pixel transformations) at 28x28 and the paper's 20x20 hidden grid
(and the default 28x28 hidden grid), one :class:`~bayesym.backbones.AENMLP` is built

* ``alg1``: with the orbits of every layer found by AEN's Alg. 1 as the reference code does it,
  a breadth-first search over the generators, one orbit at a time in Python (the "before");
* ``vectorised``: with :func:`~bayesym.groups.permutation.orbit_labels` (min-label propagation
  over all orbits at once), the orbit cache cleared first;
* ``cached``: the same state again, orbits from the cache of
  :func:`~bayesym.groups.permutation.grid_pair_orbits` (what the AEN selector pays for a
  state's retraining and its returned model);

and, for scale, one child's training: 2 epochs of 2,000 images in batches of 64 (Adam), as a
child of the CPU reproduction trains. Methods run round-robin in one process (medians over the
repeats); the table gives the ratios to ``vectorised`` and the child's training time.

Usage::

    python benchmarks/aen_build_speed.py            # ~2 min on one core
    python benchmarks/aen_build_speed.py --quick    # 3 states, one repeat (~30 s)
"""

from __future__ import annotations

import argparse
import collections

import torch
from common import environment, median, time_interleaved, write_json

from bayesym.backbones import AENMLP, AENMLPConfig
from bayesym.groups import permutation
from bayesym.groups.permutation import PairOrbits, PermutationGroup, grid_group
from bayesym.groups.pixel_transforms import resolve_transforms
from bayesym.layers.shared import OrbitSharedLinear

STATES = ["none", "rot90", "hflip+vflip", "htranslate", "Aug1", "Aug2", "Aug4", "Aug5"]
QUICK_STATES = ["rot90", "Aug1", "Aug4"]


def alg1_orbit_labels(num_points: int, maps: list[torch.Tensor]) -> tuple[torch.Tensor, int]:
    """AEN's Alg. 1: breadth-first search over the generators from each unlabelled point."""
    succ = [m.tolist() for m in maps]
    label = [-1] * num_points
    count = 0
    for start in range(num_points):
        if label[start] >= 0:
            continue
        label[start] = count
        queue = collections.deque([start])
        while queue:
            point = queue.popleft()
            for table in succ:
                nxt = table[point]
                if label[nxt] < 0:
                    label[nxt] = count
                    queue.append(nxt)
        count += 1
    return torch.tensor(label), count


def alg1_pair_orbits(out_group: PermutationGroup, in_group: PermutationGroup) -> PairOrbits:
    """:func:`~bayesym.groups.permutation.pair_orbits` computed by :func:`alg1_orbit_labels`."""
    m, n = out_group.degree, in_group.degree
    maps = [
        (p_out.view(-1, 1) * n + p_in.view(1, -1)).reshape(-1)
        for p_out, p_in in zip(out_group.generators, in_group.generators, strict=True)
    ]
    ids, count = alg1_orbit_labels(m * n, maps)
    return PairOrbits(ids.view(m, n), count, out_group.names)


def build_with_alg1(config: AENMLPConfig) -> AENMLP:
    """The network of ``config`` with every layer's orbits found by Alg. 1."""
    net = AENMLP.__new__(AENMLP)
    torch.nn.Module.__init__(net)
    net.config = config
    grids = [config.input_spatial] + [config.hidden_spatial] * config.num_hidden_layers
    layers = []
    for k, in_spatial in enumerate(grids):
        in_group = grid_group(config.transforms, in_spatial)
        last = k == len(grids) - 1
        out_group = (
            PermutationGroup.trivial(config.num_classes, in_group.names)
            if last
            else grid_group(config.transforms, config.hidden_spatial)
        )
        orbits = alg1_pair_orbits(out_group, in_group)
        layers.append(OrbitSharedLinear(in_group, out_group, orbits=orbits))
    net.layers = torch.nn.ModuleList(layers)
    return net


def build_vectorised(config: AENMLPConfig) -> AENMLP:
    permutation._cached_grid_pair_orbits.cache_clear()
    return AENMLP(config)


def train_child(config: AENMLPConfig, images: torch.Tensor, labels: torch.Tensor) -> None:
    net = AENMLP(config)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(2):
        for start in range(0, len(images), 64):
            x, y = images[start : start + 64], labels[start : start + 64]
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(net(x), y).backward()
            optimizer.step()


def transforms_of(state: str) -> tuple[str, ...]:
    if state == "none":
        return ()
    return resolve_transforms(state if state.startswith("Aug") else state.split("+"))


def measure(states: list[str], hidden: tuple[int, int], repeats: int) -> list[dict]:
    images = torch.randn(2000, 784, generator=torch.Generator().manual_seed(0))
    labels = torch.randint(10, (2000,), generator=torch.Generator().manual_seed(1))
    rows = []
    for state in states:
        config = AENMLPConfig(transforms_of(state), hidden_spatial=hidden)
        reference = build_with_alg1(config)
        fast = build_vectorised(config)
        exact = all(
            torch.equal(a.orbit_index, b.orbit_index)
            for a, b in zip(reference.layers, fast.layers, strict=True)
        )
        times = time_interleaved(
            {
                "alg1": lambda c=config: build_with_alg1(c),
                "vectorised": lambda c=config: build_vectorised(c),
                "cached": lambda c=config: AENMLP(c),
                "child_training": lambda c=config: train_child(c, images, labels),
            },
            repeats=repeats,
            warmup=0,
        )
        med = {name: median(values) for name, values in times.items()}
        rows.append(
            {
                "state": state,
                "hidden": list(hidden),
                "parameters": sum(p.numel() for p in fast.parameters()),
                "orbits_equal": exact,
                "seconds": med,
                "samples": times,
            }
        )
        print(
            f"{state:>12} hidden {hidden}: alg1 {med['alg1']:.3f}s  vectorised "
            f"{med['vectorised']:.3f}s  cached {med['cached']:.4f}s  child training "
            f"{med['child_training']:.3f}s  (orbits equal: {exact})",
            flush=True,
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 states, one repeat")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    states = QUICK_STATES if args.quick else STATES
    repeats = 1 if args.quick else args.repeats
    import warnings

    from bayesym.layers.shared import PeriodicSharingWarning

    warnings.simplefilter("ignore", PeriodicSharingWarning)  # the paper's grid, on purpose
    rows = measure(states, (20, 20), repeats)
    if not args.quick:
        rows += measure(["Aug1", "Aug4"], (28, 28), repeats)
    name = "aen_build_speed_quick" if args.quick else "aen_build_speed"
    path = write_json(
        name,
        {"environment": environment(), "repeats": repeats, "threads": args.threads, "rows": rows},
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
