"""Vectorised and cached AEN orbits equal AEN's Alg. 1 (BFS over generators) for every subset."""

import collections
import itertools
import random

import pytest
import torch

from bayesym.groups.permutation import (
    PermutationGroup,
    grid_group,
    grid_pair_orbits,
    orbit_labels,
    pair_orbits,
)
from bayesym.groups.pixel_transforms import TRANSFORM_NAMES


def alg1_orbit_labels(num_points, maps):
    """AEN's Alg. 1: breadth-first search over the generators from each unlabelled point."""
    succ = [m.tolist() for m in maps]
    label, count = [-1] * num_points, 0
    for start in range(num_points):
        if label[start] >= 0:
            continue
        label[start], queue = count, collections.deque([start])
        while queue:
            point = queue.popleft()
            for table in succ:
                if label[table[point]] < 0:
                    label[table[point]] = count
                    queue.append(table[point])
        count += 1
    return torch.tensor(label), count


def subsets(max_size):
    for size in range(max_size + 1):
        yield from itertools.combinations(TRANSFORM_NAMES, size)


def test_point_orbits_of_every_one_of_the_4096_subsets_equal_alg1():
    for names in subsets(12):
        group = grid_group(names, (4, 4))
        ids, count = orbit_labels(16, list(group.generators))
        expected, expected_count = alg1_orbit_labels(16, group.generators)
        assert count == expected_count and torch.equal(ids, expected), names


def _pair_subsets():
    rng = random.Random(0)
    larger = [tuple(sorted(rng.sample(TRANSFORM_NAMES, k))) for k in (3, 4, 6, 8, 12) * 6]
    return list(subsets(3)) + larger


@pytest.mark.parametrize("out_spatial", [(4, 4), None], ids=["hidden-grid", "logits"])
def test_pair_orbits_equal_alg1_and_the_cache_for_small_and_sampled_subsets(out_spatial):
    for names in _pair_subsets():
        in_group = grid_group(names, (4, 4))
        if out_spatial is None:
            out_group = PermutationGroup.trivial(3, in_group.names)
        else:
            out_group = grid_group(names, out_spatial)
        orbits = pair_orbits(out_group, in_group)
        maps = [
            (p_out.view(-1, 1) * 16 + p_in.view(1, -1)).reshape(-1)
            for p_out, p_in in zip(out_group.generators, in_group.generators, strict=True)
        ]
        expected, count = alg1_orbit_labels(out_group.degree * 16, maps)
        assert orbits.count == count and torch.equal(orbits.ids.reshape(-1), expected), names
        cached = grid_pair_orbits(in_group.names, (4, 4), out_spatial, None if out_spatial else 3)
        again = grid_pair_orbits(in_group.names, (4, 4), out_spatial, None if out_spatial else 3)
        assert cached.ids.dtype == torch.int64 and torch.equal(cached.ids, orbits.ids), names
        assert cached.count == orbits.count and cached.names == orbits.names
        again.ids.fill_(-1)  # every call returns its own tensor: the cache is never written
        assert torch.equal(
            grid_pair_orbits(in_group.names, (4, 4), out_spatial, None if out_spatial else 3).ids,
            orbits.ids,
        )
