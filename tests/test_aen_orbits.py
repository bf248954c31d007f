"""AEN permutation groups and generator-only pair orbits vs brute-force closure."""

import pytest
import torch

from bayesym.groups.permutation import (
    PermutationGroup,
    grid_group,
    orbit_labels,
    pair_orbits,
)

TRANSFORM_SETS = [
    ("rot90",),
    ("hflip", "vflip"),
    ("htranslate",),
    ("vtranslate", "scramble_horizontal"),
    ("scramble_rotate", "hflip"),
    ("scramble_left_vertical", "scramble_top_horizontal"),
    ("rot90", "htranslate"),
    ("scramble_right_vertical", "scramble_bottom_horizontal", "vflip"),
]
GRID_PAIRS = [((4, 4), (4, 4)), ((4, 4), (2, 2)), ((2, 2), (6, 6))]


def brute_force_pair_orbit_ids(out_group, in_group):
    """Close the diagonal action on the disjoint union, then orbit = {(g_out i, g_in j)}."""
    m, n = out_group.degree, in_group.degree
    union = PermutationGroup(
        m + n,
        out_group.names,
        tuple(
            torch.cat([p_out, p_in + m])
            for p_out, p_in in zip(out_group.generators, in_group.generators, strict=True)
        ),
    )
    elements = union.elements()  # [|G|, m + n]
    g_out, g_in = elements[:, :m], elements[:, m:] - m
    # orbit of (i, j) = {(g_out[i], g_in[j])}: label by the smallest flat index i' n + j'
    flat = g_out[:, :, None] * n + g_in[:, None, :]  # [|G|, m, n]
    smallest = flat.min(dim=0).values
    return torch.unique(smallest, return_inverse=True)[1], elements.shape[0]


@pytest.mark.parametrize("grids", GRID_PAIRS, ids=lambda g: f"out{g[0]}-in{g[1]}")
@pytest.mark.parametrize("names", TRANSFORM_SETS, ids="+".join)
def test_generator_orbits_equal_brute_force_closure(names, grids):
    out_spatial, in_spatial = grids
    out_group, in_group = grid_group(names, out_spatial), grid_group(names, in_spatial)
    orbits = pair_orbits(out_group, in_group)
    expected, order = brute_force_pair_orbit_ids(out_group, in_group)
    assert order > 1
    assert torch.equal(orbits.ids, expected)
    assert orbits.count == int(expected.max()) + 1
    assert set(orbits.names) == set(names)


@pytest.mark.parametrize("names", TRANSFORM_SETS, ids="+".join)
def test_sharing_satisfies_w_of_permuted_pairs_equals_w_for_every_group_element(names):
    out_group, in_group = grid_group(names, (2, 2)), grid_group(names, (4, 4))
    ids = pair_orbits(out_group, in_group).ids
    weight = torch.randn(int(ids.max()) + 1)[ids]
    for p_out, p_in in zip(out_group.generators, in_group.generators, strict=True):
        assert torch.equal(weight[p_out][:, p_in], weight)
    # and not just generators: the whole closure
    m = out_group.degree
    union = PermutationGroup(
        m + in_group.degree,
        names,
        tuple(
            torch.cat([a, b + m])
            for a, b in zip(out_group.generators, in_group.generators, strict=True)
        ),
    )
    for g in union.elements():
        assert torch.equal(weight[g[:m]][:, g[m:] - m], weight)


def test_trivial_output_action_gives_invariant_rows():
    in_group = grid_group(["rot90"], (4, 4))
    ids = pair_orbits(PermutationGroup.trivial(3, ["rot90"]), in_group).ids
    point = in_group.point_orbits()
    # row i is constant on the rotation orbits of the input pixels, rows share nothing
    for i in range(3):
        for orbit in range(int(point.max()) + 1):
            assert torch.unique(ids[i][point == orbit]).numel() == 1
    assert len(set(ids[0].tolist()) & set(ids[1].tolist())) == 0
    assert pair_orbits(PermutationGroup.trivial(3, ["rot90"]), in_group).count == 3 * 4


def test_orbit_labels_numbers_orbits_by_their_smallest_point():
    # two cycles (0 3 5) and (1 4), fixed point 2
    perm = torch.tensor([3, 4, 2, 5, 1, 0])
    ids, count = orbit_labels(6, [perm])
    assert ids.tolist() == [0, 1, 2, 0, 1, 0] and count == 3


def test_orbit_labels_handles_long_cycles_in_few_rounds():
    n = 100_000
    perm = torch.roll(torch.arange(n), 1)  # one n-cycle: diameter n / 2
    ids, count = orbit_labels(n, [perm])
    assert count == 1 and int(ids.max()) == 0


def test_group_order_and_point_orbits_by_closure():
    assert grid_group(["rot90", "hflip"], (3, 3)).order() == 8
    assert grid_group(["htranslate", "vtranslate"], (3, 4)).order() == 12
    assert grid_group(["rot90"], (3, 3)).point_orbits().tolist() == [0, 1, 0, 1, 2, 1, 0, 1, 0]


def test_permutation_group_validates_generators():
    with pytest.raises(ValueError, match=r"generator 'g' is not a permutation of 0\.\.2"):
        PermutationGroup(3, ("g",), (torch.tensor([0, 0, 1]),))
    with pytest.raises(ValueError, match="generator 'g' has length 2, expected 3"):
        PermutationGroup(3, ("g",), (torch.tensor([1, 0]),))
    with pytest.raises(ValueError, match="1-D int64"):
        PermutationGroup(2, ("g",), (torch.tensor([1.0, 0.0]),))
    with pytest.raises(ValueError, match="unique"):
        PermutationGroup(2, ("g", "g"), (torch.tensor([1, 0]), torch.tensor([1, 0])))
    with pytest.raises(ValueError, match="same generators"):
        pair_orbits(grid_group(["hflip"], (2, 2)), grid_group(["vflip"], (2, 2)))
    with pytest.raises(ValueError, match="more than 10 elements"):
        grid_group(["htranslate", "vtranslate"], (4, 4)).elements(max_order=10)
    with pytest.raises(ValueError, match="needs a square grid"):
        grid_group(["rot90"], (2, 4))
    with pytest.raises(KeyError, match="unknown pixel transform 'shear'"):
        grid_group(["shear"], (2, 2))


def test_pair_orbits_applies_only_the_generators(monkeypatch):
    import bayesym.groups.permutation as permutation

    seen = []
    original = permutation.orbit_labels

    def spy(num_points, maps):
        seen.append(list(maps))
        return original(num_points, maps)

    monkeypatch.setattr(permutation, "orbit_labels", spy)
    out_group, in_group = grid_group("Aug4", (4, 4)), grid_group("Aug4", (2, 2))
    permutation.pair_orbits(out_group, in_group)
    (maps,) = seen
    assert len(maps) == len(out_group.names) == 6  # one map per generator, no closure
    for succ, p_out, p_in in zip(maps, out_group.generators, in_group.generators, strict=True):
        assert torch.equal(succ.view(16, 4), p_out[:, None] * 4 + p_in[None, :])
