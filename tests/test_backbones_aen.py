"""AEN's 784-400-400-10 MLP with parameter-shared layers."""

import pytest
import torch

from bayesym.backbones import AENMLP, AENMLPConfig
from bayesym.groups.pixel_transforms import AUGMENTATION_PRESETS, apply_transform
from bayesym.layers.shared import PeriodicSharingWarning

PAPER_HIDDEN = (20, 20)
TRANSLATIONS = {"htranslate", "vtranslate"}


def n_weights(net):
    return sum(layer.orbit_weights.numel() for layer in net.layers)


@pytest.mark.parametrize(
    "names,weights,paper_millions",
    [
        ((), 784 * 400 + 400 * 400 + 400 * 10, None),  # Tab. 3 prints 0.47 for 477,600
        (("rot90",), (784 * 400 + 400 * 400 + 400 * 10) // 4, 0.12),
        (("hflip",), (784 * 400 + 400 * 400 + 400 * 10) // 2, 0.24),
        (("vflip",), (784 * 400 + 400 * 400 + 400 * 10) // 2, 0.24),
    ],
    ids=["Eq0", "Eq1-rot90", "Eq2-hflip", "Eq3-vflip"],
)
def test_paper_sized_parameter_counts(names, weights, paper_millions):
    net = AENMLP(AENMLPConfig(names, hidden_spatial=PAPER_HIDDEN))
    assert n_weights(net) == weights
    if paper_millions is not None:
        assert round(weights / 1e6, 2) == paper_millions  # Table 3 of the AEN paper


def test_hidden_units_are_a_20x20_grid_acted_on_like_images(float64):
    net = AENMLP(AENMLPConfig(("rot90", "hflip"), hidden_spatial=PAPER_HIDDEN))
    x = torch.randn(2, 28, 28)
    first = net.layers[0]
    for name in ("rot90", "hflip"):
        hidden = first(apply_transform(name, x).flatten(1)).view(2, 20, 20)
        expected = apply_transform(name, first(x.flatten(1)).view(2, 20, 20))
        torch.testing.assert_close(hidden, expected)


@pytest.mark.parametrize("preset", sorted(AUGMENTATION_PRESETS))
def test_network_is_invariant_to_every_selected_transformation(float64, preset):
    config = AENMLPConfig(preset, input_spatial=(8, 8), hidden_spatial=(4, 4))
    if TRANSLATIONS & set(config.transforms):  # order 8 on the input, 4 on the hidden grid
        with pytest.warns(PeriodicSharingWarning, match="translate' has order 8"):
            net = AENMLP(config)
    else:
        net = AENMLP(config)
    x = torch.randn(3, 1, 8, 8)
    y = net(x)
    for name in config.transforms:
        torch.testing.assert_close(net(apply_transform(name, x)), y, rtol=0, atol=1e-10)


def test_network_is_not_invariant_to_unselected_transformations(float64):
    net = AENMLP(AENMLPConfig(("hflip",), input_spatial=(8, 8), hidden_spatial=(4, 4)))
    x = torch.randn(3, 8, 8)
    for name in ("vflip", "rot90", "htranslate"):
        assert (net(apply_transform(name, x)) - net(x)).abs().max() > 1e-4, name


def test_all_twelve_transformations_build_at_paper_size_quickly():
    net = AENMLP(AENMLPConfig("Aug5"))
    assert len(net.config.transforms) == 12 and net.config.hidden_spatial == (28, 28)
    assert net(torch.randn(2, 784)).shape == (2, 10)


@pytest.mark.parametrize("name", ["htranslate", "vtranslate"])
def test_paper_hidden_grid_forces_periodic_weights_and_warns(name):
    """A one-pixel translation: order 28 on the input, 20 on the paper's hidden grid."""
    with pytest.warns(PeriodicSharingWarning, match=f"'{name}' has order 28 .* but 20"):
        paper = AENMLP(AENMLPConfig((name,), hidden_spatial=PAPER_HIDDEN))
    assert paper.layers[0].orbit_weights.numel() == 784 * 400 // 140  # lcm(28, 20) = 140
    default = AENMLP(AENMLPConfig((name,)))  # no warning (warnings are errors here)
    assert default.layers[0].orbit_weights.numel() == 784 * 784 // 28


def test_default_hidden_grid_never_forces_periodic_weights():
    """Every transformation and the full set: the input grid as hidden grid never warns."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", PeriodicSharingWarning)
        for names in [(n,) for n in AUGMENTATION_PRESETS["Aug5"]] + [AUGMENTATION_PRESETS["Aug5"]]:
            AENMLP(AENMLPConfig(names, input_spatial=(8, 8)))


def test_config_is_normalised_and_hashable():
    a = AENMLPConfig(("vflip", "hflip", "hflip"))
    b = AENMLPConfig(["hflip", "vflip"])
    assert a == b and hash(a) == hash(b) and a.transforms == ("hflip", "vflip")
    with pytest.raises(KeyError, match="unknown pixel transform 'shear'"):
        AENMLPConfig(("shear",))
    net = AENMLP(AENMLPConfig(input_spatial=(4, 4), hidden_spatial=(2, 2)))
    with pytest.raises(ValueError, match=r"expected images \[N, 4, 4\].*got \[2, 3, 4, 4\]"):
        net(torch.randn(2, 3, 4, 4))
