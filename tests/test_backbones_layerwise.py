"""The 8-block backbone: plan per input size, exact shift invariance of strict kinds."""

import pytest
import torch

from bayesym.backbones import LayerwiseBackbone, LayerwiseBackboneConfig, block_plan
from bayesym.groups import d4_subgroup, translation_group
from bayesym.layers import PathSum, PolyphaseSubsample2d
from bayesym.testing import (
    assert_not_equivariant,
    image_action,
    translation_action,
    trivial_action,
)

SOME_SHIFTS = [1, 7, 9, 30, 63]  # element indices of T(8x8): (0,1), (0,7), (1,1), (3,6), (7,7)


def assert_invariant_to_all_shifts(net, x, tol=1e-10):
    """One batched forward over every cyclic shift of every sample (APS works per sample)."""
    n, h, w = x.shape[0], x.shape[-2], x.shape[-1]
    shifted = torch.stack(
        [torch.roll(x, (a, b), (-2, -1)) for a in range(h) for b in range(w)]
    )  # [h * w, N, C, H, W]
    with torch.no_grad():
        reference = net(x)
        outputs = net(shifted.flatten(0, 1)).view(h * w, n, -1)
    error = (outputs - reference).abs().max().item()
    assert error <= tol * (1 + reference.abs().max().item()), error


@pytest.mark.parametrize(
    "size,strides,final",
    [
        (32, [1, 2, 1, 2, 1, 2, 2, 2], 1),
        (16, [1, 2, 1, 2, 1, 2, 2, 1], 1),
        (28, [1, 2, 1, 2, 1, 1, 1, 1], 7),
        (8, [1, 2, 1, 2, 1, 2, 1, 1], 1),
        (12, [1, 2, 1, 2, 1, 1, 1, 1], 3),
    ],
)
def test_block_plan_keeps_the_first_exact_halvings(size, strides, final):
    plan = block_plan((size, size))
    assert [s for s, _ in plan] == strides
    last_stride, (h, _) = plan[-1]
    assert h // last_stride == final
    assert plan[0][1] == (size, size)


def test_widths_and_head_follow_appendix_f1():
    config = LayerwiseBackboneConfig(
        "conv", width=2, in_channels=3, num_classes=7, input_size=(32, 32)
    )
    net = LayerwiseBackbone(config)
    widths = [layer.out_channels for _, layer in net.named_layers()]
    assert widths == [2, 4, 4, 8, 8, 16, 16, 32]
    assert [type(b.subsample) is PolyphaseSubsample2d for b in net.blocks] == [
        False,
        True,
        False,
        True,
        False,
        True,
        True,
        True,
    ]
    assert net.head[0].out_channels == 64 * 2 and net.head[2].out_channels == 7
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules())
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 7)


@pytest.mark.parametrize(
    "kind,size",
    [("conv", 8), ("sconv", 8), ("conv", 28), ("ffc+conv", 8)],
    ids=["conv-8", "sconv-8", "conv-28", "ffc+conv-with-ffc-off-8"],
)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_strict_backbone_is_invariant_to_every_cyclic_shift(float64, kind, size, mode):
    config = LayerwiseBackboneConfig(
        kind, width=1, in_channels=2, num_classes=3, input_size=(size, size)
    )
    net = LayerwiseBackbone(config)
    if kind == "ffc+conv":  # switch the relaxation paths off: strictly equivariant again
        with torch.no_grad():
            for _, layer in net.named_layers():
                for p in layer.paths["ffc"].parameters():
                    p.zero_()
    net.train(mode == "train")
    x = torch.randn(2, 2, size, size)
    assert_invariant_to_all_shifts(net, x)


def test_strict_conv_backbone_is_not_invariant_outside_its_group(float64):
    config = LayerwiseBackboneConfig(
        "conv", width=1, in_channels=1, num_classes=3, input_size=(8, 8)
    )
    net = LayerwiseBackbone(config)
    d4 = d4_subgroup("D4")
    x = torch.randn(2, 1, 8, 8)
    assert_not_equivariant(net, range(1, 8), x, image_action(d4), trivial_action(), require="all")


def test_relaxed_backbone_is_measurably_not_invariant(float64):
    config = LayerwiseBackboneConfig(
        "ffc+conv", width=1, in_channels=1, num_classes=3, input_size=(8, 8)
    )
    net = LayerwiseBackbone(config)
    assert all(isinstance(layer, PathSum) for _, layer in net.named_layers())
    x = torch.randn(2, 1, 8, 8)
    shifts = translation_group(8, 8)
    act = translation_action(shifts)
    assert_not_equivariant(net, SOME_SHIFTS, x, act, trivial_action(), require="all")


def test_zero_padding_breaks_the_invariance(float64):
    config = LayerwiseBackboneConfig(
        "conv",
        width=1,
        in_channels=1,
        num_classes=3,
        input_size=(8, 8),
        layer_options={"padding_mode": "zeros"},
    )
    net = LayerwiseBackbone(config)
    x = torch.randn(2, 1, 8, 8)
    shifts = translation_group(8, 8)
    act = translation_action(shifts)
    assert_not_equivariant(net, SOME_SHIFTS, x, act, trivial_action(), require="all")


@pytest.mark.parametrize("kind", ["fc", "ffc", "sfc", "fc+conv", "sfc+sconv"])
def test_every_kind_builds_a_working_backbone(kind):
    config = LayerwiseBackboneConfig(kind, width=1, in_channels=1, num_classes=4, input_size=(4, 4))
    net = LayerwiseBackbone(config)
    out = net(torch.randn(3, 1, 4, 4))
    assert out.shape == (3, 4) and torch.isfinite(out).all()
    out.sum().backward()


def test_config_is_hashable_and_compares_by_value():
    a = LayerwiseBackboneConfig("sconv", width=2, layer_options={"num_anchors": 4})
    b = LayerwiseBackboneConfig("sconv", width=2, layer_options={"num_anchors": 4})
    assert a == b and hash(a) == hash(b)
    assert a != LayerwiseBackboneConfig("sconv", width=2, layer_options={"num_anchors": 5})


def test_config_and_input_errors():
    with pytest.raises(ValueError, match="unknown layer_kind 'cnn'"):
        LayerwiseBackboneConfig("cnn")
    with pytest.raises(ValueError, match="width must be a positive int"):
        LayerwiseBackboneConfig(width=0)
    net = LayerwiseBackbone(LayerwiseBackboneConfig(width=1, input_size=(8, 8)))
    with pytest.raises(
        ValueError, match=r"LayerwiseBackbone\(layer_kind='conv'.*\[N, 3, 8, 8\].*\[1, 3, 9, 9\]"
    ):
        net(torch.randn(1, 3, 9, 9))


def test_backbone_can_be_deep_copied_and_pickled(float64):
    """copy.deepcopy / torch.save of a whole model (EMA copies, laplace-torch, checkpoints)."""
    import copy
    import io

    config = LayerwiseBackboneConfig(
        layer_kind="ffc+conv+gconv", width=1, in_channels=1, num_classes=3, input_size=(8, 8),
        layer_options={"group": "C4"},
    )  # fmt: skip
    model = LayerwiseBackbone(config)
    x = torch.randn(2, 1, 8, 8)
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    for clone in (copy.deepcopy(model), torch.load(buffer, weights_only=False)):
        assert clone.config == config and clone.config.layer_options["group"] == "C4"
        with pytest.raises(TypeError):
            clone.config.layer_options["group"] = "D4"  # still read-only
        assert torch.equal(clone(x), model(x))
