"""Finite groups, D4 and its subgroups, cosets, lattice, translations, actions, layouts."""

import itertools

import pytest
import torch

from bayesym.groups import (
    D4_SUBGROUP_NAMES,
    FiniteGroup,
    ImageAction,
    RegularAction,
    Subgroup,
    TranslationAction,
    all_subgroups,
    check_group_axioms,
    coset_index,
    d4_flip_rotation,
    d4_index,
    d4_lattice,
    d4_subgroup,
    dihedral4,
    expand_feature_map,
    expand_group_kernel,
    expand_lifting_kernel,
    generated_subgroup,
    image_transform,
    inclusion,
    is_subgroup,
    restrict_feature_map,
    restriction_index,
    right_coset_decomposition,
    right_coset_representatives,
    translation_group,
)

D4 = dihedral4()
NAMED = [d4_subgroup(n) for n in D4_SUBGROUP_NAMES]
PAIRS = d4_lattice().pairs()
PAIR_IDS = [f"{g.name}>={h.name}" for g, h in PAIRS]


def _image(size=5, channels=2):
    return torch.randn(channels, size, size, dtype=torch.float64)


# --- FiniteGroup validation ---------------------------------------------------------------


def test_finite_group_basic_structure():
    z5 = FiniteGroup("Z5", [[(a + b) % 5 for b in range(5)] for a in range(5)])
    assert z5.order == 5 and z5.identity == 0
    assert [z5.inverse(a) for a in z5] == [0, 4, 3, 2, 1]
    assert z5.product(3, 4) == 2


@pytest.mark.parametrize(
    ("table", "match"),
    [
        pytest.param([[0, 1, 2], [1, 2, 0]], "square", id="not-square"),
        pytest.param([[0, 1], [1, 2]], "closure", id="entry-out-of-range"),
        pytest.param([[1, 0], [0, 0]], "identity", id="no-identity"),
        pytest.param([[0, 1, 2], [1, 1, 0], [2, 0, 1]], "not a permutation", id="not-latin"),
        # A Latin square with identity 0 that is not associative (a loop, not a group).
        pytest.param(
            [
                [0, 1, 2, 3, 4],
                [1, 0, 3, 4, 2],
                [2, 4, 0, 1, 3],
                [3, 2, 4, 0, 1],
                [4, 3, 1, 2, 0],
            ],
            "not associative",
            id="not-associative",
        ),
    ],
)
def test_finite_group_rejects_bad_tables_naming_the_group(table, match):
    with pytest.raises(ValueError, match=match) as info:
        FiniteGroup("Bad", table)
    assert "'Bad'" in str(info.value)


def test_subgroup_must_be_closed():
    with pytest.raises(ValueError, match=r"not closed: R·R = R\^2"):
        Subgroup("bad", D4, [0, 1])


def test_element_index_validation():
    with pytest.raises(ValueError, match=r"0\.\.7"):
        D4.product(0, 8)


# --- D4 ---------------------------------------------------------------------------------------


def test_d4_product_formula_and_names():
    for a, b in itertools.product(range(8), repeat=2):
        f1, r1 = d4_flip_rotation(a)
        f2, r2 = d4_flip_rotation(b)
        assert D4.product(a, b) == d4_index(f1 ^ f2, r1 + (-1) ** f1 * r2)
    assert D4.element_names == ("e", "R", "R^2", "R^3", "F", "RF", "R^2F", "R^3F")


def test_d4_image_action_is_a_homomorphism_and_exact():
    x = _image(6)
    act = ImageAction(D4)
    for a, b in itertools.product(range(8), repeat=2):
        assert torch.equal(act(act(x, b), a), act(x, D4.product(a, b)))
    assert torch.equal(act(x, d4_index(1, 0)), x.flip(-2))
    assert torch.equal(act(x, d4_index(0, 1)), torch.rot90(x, 1, (-2, -1)))
    assert torch.equal(act(x, d4_index(1, 1)), torch.rot90(x.flip(-2), 1, (-2, -1)))


@pytest.mark.parametrize("group", NAMED, ids=D4_SUBGROUP_NAMES)
def test_named_subgroup_axioms_and_embedding_is_homomorphism(group):
    table = group.cayley_table
    check_group_axioms(group.name, table)
    emb = inclusion(group, D4)
    for a, b in itertools.product(range(group.order), repeat=2):
        assert emb[table[a, b]] == D4.product(int(emb[a]), int(emb[b]))
    assert int(emb[group.identity]) == D4.identity


def test_named_subgroups_have_one_reflection_axis():
    elements = {g.name: {D4.element_name(int(i)) for i in inclusion(g, D4)} for g in NAMED}
    assert elements == {
        "C1": {"e"},
        "C2": {"e", "R^2"},
        "C4": {"e", "R", "R^2", "R^3"},
        "D1": {"e", "F"},
        "D2": {"e", "R^2", "F", "R^2F"},
        "D4": set(D4.element_names),
    }


def test_unknown_subgroup_name_lists_valid_names():
    with pytest.raises(KeyError, match="C1, C2, C4, D1, D2, D4"):
        d4_subgroup("C3")


def test_all_subgroups_of_d4_brute_force():
    subs = all_subgroups(D4)
    assert [s.order for s in subs] == [1, 2, 2, 2, 2, 2, 4, 4, 4, 8]
    sets = {frozenset(s.embedding) for s in subs}
    for g in NAMED:
        assert frozenset(g.root_embedding) in sets


# --- cosets, lattice ----------------------------------------------------------------------


@pytest.mark.parametrize(("group", "sub"), PAIRS, ids=PAIR_IDS)
def test_right_cosets_partition_group(group, sub):
    members = inclusion(sub, group).tolist()
    reps = right_coset_representatives(group, sub)
    assert reps[0] == group.identity
    assert len(reps) == coset_index(group, sub) == group.order // sub.order
    cosets = [{group.product(h, s) for h in members} for s in reps]
    assert set().union(*cosets) == set(range(group.order))
    assert sum(len(c) for c in cosets) == group.order
    h_index, rep_pos = right_coset_decomposition(group, sub)
    for g in range(group.order):
        assert group.product(members[h_index[g]], reps[rep_pos[g]]) == g


def test_lattice_order_questions():
    lattice = d4_lattice()
    names = lambda groups: [g.name for g in groups]  # noqa: E731
    assert names(lattice.subgroups("D2")) == ["C1", "C2", "D1", "D2"]
    assert names(lattice.supergroups("D1")) == ["D1", "D2", "D4"]
    assert names(lattice.between(lower="C1", upper="C4")) == ["C1", "C2", "C4"]
    assert names(lattice.maximal_subgroups("D2")) == ["C2", "D1"]
    assert not lattice.leq("D1", "C4")
    assert len(lattice.pairs()) == 18
    assert lattice.index("D4", "C2") == 4
    with pytest.raises(KeyError, match="members: C1"):
        lattice.group("D3")


def test_inclusion_rejects_non_subgroup():
    with pytest.raises(ValueError, match=r"'D1' is not a subgroup of 'C4': it contains F"):
        inclusion(d4_subgroup("D1"), d4_subgroup("C4"))
    t = translation_group(2, 2)
    with pytest.raises(ValueError, match="different roots"):
        is_subgroup(t, D4)


# --- translations --------------------------------------------------------------------------


def test_translation_group_axioms_and_roll_action():
    t = translation_group(3, 4)
    check_group_axioms(t.name, t.cayley_table)
    act = TranslationAction(t)
    x = torch.randn(2, 3, 3, 4, dtype=torch.float64)
    for a, b in itertools.product(range(t.order), repeat=2):
        assert torch.equal(act(act(x, b), a), act(x, t.product(a, b)))
    assert torch.equal(act(x, t.element(1, 2)), x.roll((1, 2), (-2, -1)))


def test_translation_subgroup_of_even_shifts():
    t = translation_group(4, 4)
    even = generated_subgroup(t, [t.element(2, 0), t.element(0, 2)], name="2T")
    assert even.order == 4
    act = TranslationAction(even)
    x = torch.randn(4, 4)
    assert torch.equal(act(x, 3), x.roll((2, 2), (-2, -1)))
    with pytest.raises(ValueError, match=r"expected \[\.\.\., 4, 4\]"):
        act(torch.randn(3, 3), 1)


# --- actions --------------------------------------------------------------------------------


@pytest.mark.parametrize("group", NAMED, ids=D4_SUBGROUP_NAMES)
def test_regular_action_is_a_left_action(group):
    act = RegularAction(group)
    y = torch.randn(2, 3, group.order, 5, 5, dtype=torch.float64)
    for a, b in itertools.product(range(group.order), repeat=2):
        assert torch.equal(act(act(y, b), a), act(y, group.product(a, b)))


def test_regular_action_definition():
    act = RegularAction(D4)
    y = torch.randn(1, 1, 8, 3, 3)
    g = d4_index(1, 3)
    out = act(y, g)
    for h in range(8):
        source = D4.product(D4.inverse(g), h)
        assert torch.equal(out[:, :, h], image_transform(y[:, :, source], D4, g))


def test_action_input_errors():
    with pytest.raises(ValueError, match="square"):
        image_transform(torch.randn(3, 4), D4, d4_index(0, 1))
    assert image_transform(torch.randn(3, 4), D4, d4_index(1, 0)).shape == (3, 4)
    with pytest.raises(ValueError, match=r"RegularAction\(C4\).*\[..., 4, H, W\]"):
        RegularAction(d4_subgroup("C4"))(torch.randn(1, 2, 8, 3, 3), 1)
    with pytest.raises(ValueError, match="subgroup of D4"):
        ImageAction(translation_group(2, 2))


# --- feature-map restriction ----------------------------------------------------------------


@pytest.mark.parametrize(("group", "sub"), PAIRS, ids=PAIR_IDS)
def test_restriction_commutes_with_subgroup_action(group, sub):
    index = restriction_index(group, sub)
    assert sorted(index.flatten().tolist()) == list(range(group.order))
    y = torch.randn(2, 3, group.order, 5, 5, dtype=torch.float64)
    z = restrict_feature_map(y, group, sub)
    assert z.shape == (2, 3 * coset_index(group, sub), sub.order, 5, 5)
    assert torch.equal(expand_feature_map(z, group, sub), y)
    act_g, act_h = RegularAction(group), RegularAction(sub)
    for h, g in enumerate(inclusion(sub, group).tolist()):
        assert torch.equal(restrict_feature_map(act_g(y, g), group, sub), act_h(z, h))


def test_restriction_layout_is_channel_major():
    d4, c4 = D4, d4_subgroup("C4")
    y = torch.randn(1, 2, 8, 1, 1)
    z = restrict_feature_map(y, d4, c4)
    reps = right_coset_representatives(d4, c4)
    members = inclusion(c4, d4).tolist()
    for c, (j, s), (i, h) in itertools.product(range(2), enumerate(reps), enumerate(members)):
        assert z[0, c * len(reps) + j, i] == y[0, c, d4.product(h, s)]


# --- kernel expansion -----------------------------------------------------------------------


@pytest.mark.parametrize("group", NAMED, ids=D4_SUBGROUP_NAMES)
def test_expanded_kernels_match_brute_force(group):
    k = 3
    psi = torch.randn(2, 3, k, k, dtype=torch.float64)
    w = expand_lifting_kernel(psi, group).reshape(2, group.order, 3, k, k)
    for g in range(group.order):
        assert torch.equal(w[:, g], image_transform(psi, group, g))
    psi = torch.randn(2, 3, group.order, k, k, dtype=torch.float64)
    w = expand_group_kernel(psi, group).reshape(2, group.order, 3, group.order, k, k)
    for r, h in itertools.product(range(group.order), repeat=2):
        u = group.product(group.inverse(r), h)
        assert torch.equal(w[:, r, :, h], image_transform(psi[:, :, u], group, r))


def test_even_kernel_rejected():
    with pytest.raises(ValueError, match="odd"):
        expand_lifting_kernel(torch.randn(1, 1, 2, 2), D4)
