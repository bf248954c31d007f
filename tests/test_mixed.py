"""[G]-mixed layers: restricted mixtures are equivariant, layouts match, weight norm fixed."""

import pytest
import torch

from bayesym.groups import (
    D4_SUBGROUP_NAMES,
    coset_index,
    d4_subgroup,
    d4_subgroups,
    dihedral4,
    expand_feature_map,
    is_subgroup,
    restrict_feature_map,
)
from bayesym.layers.group_conv import GroupConv2d, LiftingConv2d
from bayesym.layers.mixed import (
    ARCHITECTURE_PARAMETER_NAME,
    MixedGroupConv2d,
    MixedLiftingConv2d,
    architecture_parameters,
    weight_parameters,
)
from bayesym.testing import (
    assert_equivariant,
    assert_not_equivariant,
    image_action,
    regular_action,
)

D4 = dihedral4()
SIZE = 5


def _random_logits(layer):
    with torch.no_grad():
        layer.architecture_logits.normal_()
    return layer


def _containing(layer, sub):
    return [k for k in layer.components if is_subgroup(sub, k)]


@pytest.mark.parametrize("name", D4_SUBGROUP_NAMES)
def test_mixture_restricted_to_supergroups_is_equivariant(float64, name):
    sub = d4_subgroup(name)
    gconv = _random_logits(MixedGroupConv2d(2, 2, 3, D4))
    lift = _random_logits(MixedLiftingConv2d(1, 2, 5, D4))
    x, y = torch.randn(2, 1, SIZE, SIZE), torch.randn(2, 2, 8, SIZE, SIZE)
    restricted = gconv.restrict(_containing(gconv, sub))
    assert_equivariant(restricted, sub, y, regular_action(D4), regular_action(D4))
    lifted = lift.restrict(_containing(lift, sub))
    assert_equivariant(lifted, sub, x, image_action(D4), regular_action(D4))
    assert restricted.symmetry.point_group == name
    if name != "C1":  # the full mixture contains C1, which breaks every non-identity element
        assert_not_equivariant(gconv, sub, y, regular_action(D4), regular_action(D4))
        assert_not_equivariant(lift, sub, x, image_action(D4), regular_action(D4))


@pytest.mark.parametrize("name", D4_SUBGROUP_NAMES)
def test_single_component_equals_relayout_of_the_subgroup_layer(float64, name):
    """Eq. 10/11: component K in G-layout is expand ∘ L_K ∘ restrict, with the same weights."""
    sub = d4_subgroup(name)
    copies = coset_index(D4, sub)
    mixed = MixedGroupConv2d(2, 3, 3, D4, components=[sub])
    plain = GroupConv2d(2 * copies, 3 * copies, 3, sub, bias=False)
    with torch.no_grad():
        plain.weight.copy_(mixed.component_kernel(name))
        mixed.bias.zero_()
    y = torch.randn(2, 2, 8, SIZE, SIZE)
    expected = expand_feature_map(plain(restrict_feature_map(y, D4, sub)), D4, sub)
    torch.testing.assert_close(mixed(y), expected, atol=1e-12, rtol=0)

    mixed_lift = MixedLiftingConv2d(1, 3, 3, D4, components=[sub], bias=False)
    plain_lift = LiftingConv2d(1, 3 * copies, 3, sub, bias=False)
    with torch.no_grad():
        plain_lift.weight.copy_(mixed_lift.component_kernel(name))
    x = torch.randn(2, 1, SIZE, SIZE)
    expected = expand_feature_map(plain_lift(x), D4, sub)
    torch.testing.assert_close(mixed_lift(x), expected, atol=1e-12, rtol=0)


def test_one_convolution_equals_weighted_sum_of_component_layers(float64):
    """Eq. 11 (one conv with the summed kernel) equals Eq. 10 (sum of component outputs)."""
    mixed = _random_logits(MixedGroupConv2d(2, 2, 3, D4, bias=False))
    y = torch.randn(2, 2, 8, SIZE, SIZE)
    z = mixed.architecture_weights()
    total = sum(
        z[i] * mixed.restrict([k])(y) for i, k in enumerate(mixed.components)
    )  # each single-component layer has z = 1
    torch.testing.assert_close(mixed(y), total, atol=1e-12, rtol=0)


@pytest.mark.parametrize("name", ["C2", "D1", "D2"])
def test_regression_mismatched_mixture_channel_layout(float64, name):
    """Reference code summed component kernels without reordering them into one layout."""
    sub = d4_subgroup(name)
    mixed = MixedGroupConv2d(2, 2, 3, D4, components=[sub, D4])
    y = torch.randn(2, 2, 8, SIZE, SIZE)
    assert_equivariant(mixed, sub, y, regular_action(D4), regular_action(D4))
    perm = getattr(mixed, f"layout_permutation_{name}")
    assert not torch.equal(perm, torch.arange(8))  # the reordering is not a no-op here
    setattr(mixed, f"layout_permutation_{name}", torch.arange(8))
    assert_not_equivariant(mixed, sub, y, regular_action(D4), regular_action(D4))


def test_component_sizes_and_expanded_widths():
    mixed = MixedGroupConv2d(2, 3, 3, D4)
    lift = MixedLiftingConv2d(1, 3, 3, D4)
    d4_params = mixed.directions["D4"].numel()
    for k in mixed.components:
        copies = coset_index(D4, k)
        assert mixed.directions[k.name].numel() == copies * d4_params
        assert lift.directions[k.name].numel() == copies * lift.directions["D4"].numel()
        assert mixed.expanded_component(k.name).shape == (3 * 8, 2 * 8, 3, 3)
        assert lift.expanded_component(k.name).shape == (3 * 8, 1, 3, 3)


def test_weight_norm_is_fixed_at_init():
    mixed = MixedGroupConv2d(2, 3, 3, D4)
    norms = {k.name: mixed.component_norm(k.name).clone() for k in mixed.components}
    for k in mixed.components:
        kernel = mixed.component_kernel(k.name)
        torch.testing.assert_close(kernel, mixed.directions[k.name])  # psi = v at init
    assert all(not n.startswith("norm_") for n, _ in mixed.named_parameters())
    optimiser = torch.optim.SGD(weight_parameters(mixed), lr=1.0)
    mixed(torch.randn(2, 2, 8, SIZE, SIZE)).square().sum().backward()
    optimiser.step()
    for k in mixed.components:
        current = mixed.component_kernel(k.name).flatten(1).norm(dim=1)
        torch.testing.assert_close(current, norms[k.name])
        assert torch.equal(mixed.component_norm(k.name), norms[k.name])
        assert not torch.allclose(mixed.component_kernel(k.name), mixed.directions[k.name])
    with torch.no_grad():  # scaling the direction does not change the kernel
        before = mixed.component_kernel("C4").clone()
        mixed.directions["C4"].mul_(3.0)
    torch.testing.assert_close(mixed.component_kernel("C4"), before)


@pytest.mark.parametrize("layer_type", [MixedLiftingConv2d, MixedGroupConv2d])
def test_saved_state_dicts_keep_loading(layer_type):
    """The state dict keeps the names models were saved with (norms: buffers ``norm_<K>``)."""
    components = [d4_subgroup("C1"), d4_subgroup("C4")]
    layer = layer_type(2, 3, 3, d4_subgroup("C4"), components=components)
    saved = {
        name: torch.randn_like(value) for name, value in layer.state_dict().items()
    }  # the names as written by every earlier version:
    assert sorted(saved) == [
        "architecture_logits", "bias", "directions.C1", "directions.C4", "norm_C1", "norm_C4"
    ]  # fmt: skip
    fresh = layer_type(2, 3, 3, d4_subgroup("C4"), components=components)
    fresh.load_state_dict(saved)
    for name in ("C1", "C4"):
        assert torch.equal(fresh.component_norm(name), saved[f"norm_{name}"])
        direction = saved[f"directions.{name}"]
        scale = saved[f"norm_{name}"] / direction.flatten(1).norm(dim=1)
        want = direction * scale.reshape(-1, *[1] * (direction.dim() - 1))
        torch.testing.assert_close(fresh.component_kernel(name), want)
    with pytest.raises(KeyError, match=r"no component 'D4'; components: C1, C4"):
        fresh.component_norm("D4")


def test_expand_component_is_the_expansion_of_any_kernel(float64):
    """The public expansion is linear and gives the component's expanded kernel for ψ^K."""
    layer = MixedGroupConv2d(2, 3, 3, D4)
    for k in layer.components:
        psi = layer.component_kernel(k.name)
        torch.testing.assert_close(
            layer.expand_component(psi, k.name), layer.expanded_component(k.name)
        )
        a, b = torch.randn_like(psi), torch.randn_like(psi)
        torch.testing.assert_close(
            layer.expand_component(2 * a - b, k.name),
            2 * layer.expand_component(a, k.name) - layer.expand_component(b, k.name),
        )


def test_architecture_and_weight_parameters_split():
    net = torch.nn.Sequential(MixedLiftingConv2d(1, 2, 3, D4), MixedGroupConv2d(2, 2, 3, D4))
    arch, weights = list(architecture_parameters(net)), list(weight_parameters(net))
    assert len(arch) == 2 and all(p.shape == (6,) for p in arch)
    assert {id(p) for p in arch}.isdisjoint(id(p) for p in weights)
    assert len(arch) + len(weights) == len(list(net.parameters()))
    assert all(n.endswith(ARCHITECTURE_PARAMETER_NAME) for n, p in net.named_parameters()
               if any(p is a for a in arch))  # fmt: skip
    torch.testing.assert_close(net[1].architecture_weights(), torch.full((6,), 1 / 6))
    net(torch.randn(2, 1, SIZE, SIZE)).square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in arch)


def test_layout_group_smaller_than_d4(float64):
    c4 = d4_subgroup("C4")
    mixed = _random_logits(MixedGroupConv2d(2, 2, 3, c4))
    assert [k.name for k in mixed.components] == ["C1", "C2", "C4"]
    y = torch.randn(2, 2, 4, SIZE, SIZE)
    restricted = mixed.restrict(["C2", "C4"])
    c2 = d4_subgroup("C2")
    assert_equivariant(restricted, c2, y, regular_action(c4), regular_action(c4))


def test_validation():
    c4, d1 = d4_subgroup("C4"), d4_subgroup("D1")
    with pytest.raises(
        ValueError, match="component 'D1' is not a subgroup of the layout group 'C4'"
    ):
        MixedGroupConv2d(2, 2, 3, c4, components=[d1])
    with pytest.raises(ValueError, match="unique"):
        MixedGroupConv2d(2, 2, 3, D4, components=[c4, c4])
    mixed = MixedGroupConv2d(2, 2, 3, D4)
    with pytest.raises(KeyError, match="no component 'C3'"):
        mixed.restrict(["C3"])
    with pytest.raises(
        ValueError, match=r"MixedGroupConv2d\(D4\): expected input \[N, 2, 8, H, W\]"
    ):
        mixed(torch.randn(2, 2, 4, SIZE, SIZE))
    with pytest.raises(
        ValueError, match=r"MixedLiftingConv2d\(D4\): expected input \[N, 1, H, W\]"
    ):
        MixedLiftingConv2d(1, 2, 3, D4)(torch.randn(2, 2, SIZE, SIZE))


def test_float32_and_device():
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        net = torch.nn.Sequential(
            MixedLiftingConv2d(1, 2, 3, D4, device=device),
            MixedGroupConv2d(2, 2, 3, D4, device=device),
        )
        x = torch.randn(2, 1, SIZE, SIZE, device=device)
        assert net(x).dtype == torch.float32 and net(x).device.type == device
        subs = [k for k in d4_subgroups() if k.name in ("C4", "D4")]
        restricted = torch.nn.Sequential(net[0].restrict(subs), net[1].restrict(subs))
        c4 = d4_subgroup("C4")
        assert_equivariant(restricted, c4, x, image_action(D4), regular_action(D4))
