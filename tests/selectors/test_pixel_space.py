"""The pixel-permutation space (AEN): states, baselines, description, registry."""

import pytest
import torch
from selector_toys import digits

from bayesym.backbones import AENMLP
from bayesym.groups.pixel_transforms import TRANSFORM_NAMES, apply_transform
from bayesym.selectors import (
    SPACES,
    Budget,
    DataShape,
    PixelSpace,
    StaticConfig,
    make_selector,
    make_space,
)
from bayesym.selectors.spaces.pixel import (
    NUM_STATES,
    parse_state,
    state_label,
    state_of,
    state_transforms,
)

SHAPE = DataShape(1, 8, 8, 10)


def test_registered_as_pixel_and_built_by_name():
    assert SPACES["pixel"] is PixelSpace
    space = make_space("pixel", hidden_spatial=(4, 4))
    assert isinstance(space, PixelSpace) and space.hidden_spatial == (4, 4)


def test_every_state_round_trips_through_names_and_labels():
    for state in range(NUM_STATES):
        names = state_transforms(state)
        assert state_of(names) == state
        assert parse_state(state_label(state)) == state
    assert state_label(0) == "none" and state_label(NUM_STATES - 1) == "all"
    assert state_of(["rot90"]) == 1 and state_of(["scramble_bottom_horizontal"]) == 1 << 11


def test_bad_states_and_labels_are_refused_with_the_valid_choices():
    with pytest.raises(ValueError, match=r"int in \[0, 4096\).*rot90"):
        state_transforms(4096)
    with pytest.raises(ValueError, match=r"'shear'.*valid names: rot90"):
        parse_state("hflip+shear")
    with pytest.raises(
        ValueError, match="unknown baseline 'shear' of the 'pixel' space; valid: none"
    ):
        PixelSpace().build_baseline("shear", SHAPE)
    with pytest.raises(ValueError, match="one-channel images; got 3 channels"):
        PixelSpace().network(1, DataShape(3, 8, 8, 10))


def test_baselines_are_no_symmetry_each_single_transform_and_all():
    space = PixelSpace()
    assert space.baselines() == ("none", *TRANSFORM_NAMES, "all")
    for name in space.baselines():
        net = space.build_baseline(name, SHAPE)
        expected = () if name == "none" else TRANSFORM_NAMES if name == "all" else (name,)
        assert net.config.transforms == expected


def test_network_of_a_state_is_invariant_to_exactly_its_transforms(float64):
    space = PixelSpace()
    state = state_of(["hflip", "scramble_rotate"])
    net = space.network(state, SHAPE).double()
    x = torch.randn(4, 1, 8, 8, dtype=torch.float64)
    y = net(x)
    for name in ("hflip", "scramble_rotate"):
        torch.testing.assert_close(net(apply_transform(name, x)), y, rtol=0, atol=1e-10)
    assert (net(apply_transform("vflip", x)) - y).abs().max() > 1e-4
    assert net.config.hidden_spatial == (8, 8)  # the input grid by default


def test_describe_names_the_state_and_symmetry_of_every_layer():
    space = PixelSpace(num_hidden_layers=2)
    choices = space.describe(space.network(state_of(["vflip", "rot90"]), SHAPE))
    assert [c.layer for c in choices] == ["layers.0", "layers.1", "layers.2"]
    assert {c.choice for c in choices} == {"rot90+vflip"}
    assert {c.symmetry for c in choices} == {"{rot90, vflip}"}
    none = space.describe(space.build_baseline("none", SHAPE))
    assert {(c.choice, c.symmetry) for c in none} == {("none", "none")}
    with pytest.raises(TypeError, match="needs an AENMLP"):
        space.describe(torch.nn.Linear(2, 2))


def test_rebuilding_a_state_reuses_its_orbits_exactly():
    space = PixelSpace()
    first, second = space.network(5, SHAPE), space.network(5, SHAPE)
    for a, b in zip(first.layers, second.layers, strict=True):
        assert torch.equal(a.orbit_index, b.orbit_index)
        assert a.orbit_index.data_ptr() != b.orbit_index.data_ptr()  # not aliased


def test_static_selector_trains_pixel_baselines():
    split = digits(train_size=64, val_size=32)
    selector = make_selector("static", StaticConfig(baselines=("none", "hflip")))
    result = selector.fit(
        split.train, split.valid, space=PixelSpace(), budget=Budget(epochs=2), progress=False
    )
    assert isinstance(result.model, AENMLP)
    assert result.choices[0].choice in ("none", "hflip")
    assert set(result.choices[0].scores) == {"none", "hflip"}
