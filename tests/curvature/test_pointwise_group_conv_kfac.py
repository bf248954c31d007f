"""KFAC of the paper's GCONV (PointwiseGroupConv2d) vs the dense GGN and the KFAC definitions."""

import pytest
import torch
from oracles import block, exact_ggn, output_hessian, output_jacobian, parameter_layout
from torch import nn
from torch.func import functional_call, jacrev

import bayesym  # noqa: F401  (registers the adapters)
from bayesym.backbones.layerwise import LayerwiseBackbone, LayerwiseBackboneConfig
from bayesym.groups.d4 import d4_subgroup
from bayesym.layers import LiftingConv2d, PointwiseGroupConv2d, make_layer
from curvature import KFACConfig, compute_kfac


class Head(nn.Module):
    """Global mean over every axis but the channels, then a linear classifier."""

    def __init__(self, channels, classes=3):
        super().__init__()
        self.linear = nn.Linear(channels, classes)

    def forward(self, x):
        return self.linear(x.flatten(2).mean(-1))


def _assert_blocks_equal_dense(model, x, y, approx):
    kfac = compute_kfac(model, (x, y), config=KFACConfig(approx=approx))
    dense, layout = exact_ggn(model, x), parameter_layout(model)
    assert sum(b.numel for b in kfac) == sum(n for _, n in layout)
    for b in kfac:
        want = block(dense, layout, b.params)
        assert torch.allclose(b.to_dense(), want, atol=1e-10, rtol=1e-9), b.name
    return kfac


@pytest.mark.parametrize("group", ["C2", "C4", "D4"])
def test_exact_on_a_constant_image(float64, group):
    # a constant image makes every copy and position of every layer's input equal: reduce is
    # exact for weight sharing over (copy, position)
    g = d4_subgroup(group)
    model = nn.Sequential(
        LiftingConv2d(2, 3, 3, g), nn.Tanh(), PointwiseGroupConv2d(3, 2, 3, g), nn.Tanh(), Head(2)
    )
    x = torch.randn(1, 2, 1, 1).expand(1, 2, 4, 4).contiguous()
    kfac = _assert_blocks_equal_dense(model, x, torch.tensor([1]), "reduce")
    assert {"2.weight", "2.bias"} <= set(kfac.names)


def test_relaxed_layer_with_the_papers_gconv_is_exact_on_a_constant_map(float64):
    layer = make_layer("conv+pgconv", 2, 2, spatial=(4, 4), group="C4")
    model = nn.Sequential(layer, nn.Tanh(), Head(2))
    x = torch.randn(1, 2, 1, 1, 1).expand(1, 2, 4, 4, 4).contiguous()
    kfac = _assert_blocks_equal_dense(model, x, torch.tensor([2]), "reduce")
    assert "0.paths.pgconv.weight" in kfac.names and "0.paths.conv.weight" in kfac.names


@pytest.mark.parametrize("group", ["C4", "D4"])
def test_expand_factors_match_their_definition(float64, group):
    g = d4_subgroup(group)
    layer = PointwiseGroupConv2d(2, 3, 3, g)
    x = torch.randn(3, 2, g.order, 4, 4)
    model = nn.Sequential(layer, nn.Tanh(), nn.Flatten(), nn.Linear(3 * g.order * 16, 3))
    y = torch.randint(0, 3, (3,))
    kfac = compute_kfac(model, (x, y))
    b, a = kfac["0.weight"].factors
    # a_{n,g,t}: the gradient of output (d=0, g, t) w.r.t. weight row 0, by autograd
    params = {k: v.detach() for k, v in layer.named_parameters()}
    wjac = jacrev(lambda w: functional_call(layer, {**params, "weight": w}, (x,)))(params["weight"])
    n, m, t = x.shape[0], g.order, 16
    rows = wjac.reshape(n, 3, m, t, 3, -1)[:, 0, :, :, 0]  # [N, |G|, T, C_in k²]
    a_def = torch.einsum("ngtd,ngte->de", rows, rows) / (n * m * t)
    jac, f, _ = output_jacobian(model, layer, x)  # [N, C, C_out, |G|, H, W]
    jac = jac.reshape(n, 3, 3, m * t)
    b_def = torch.einsum("ncou,ncd,ndpu->op", jac, output_hessian(f, "classification"), jac)
    assert torch.allclose(a.to_dense(), a_def, atol=1e-12)
    assert torch.allclose(b.to_dense(), b_def, atol=1e-12)
    # with reduce, the bias block (shared over copies and positions) is exact for any data
    reduced = compute_kfac(model, (x, y), config=KFACConfig(approx="reduce"))
    dense, layout = exact_ggn(model, x), parameter_layout(model)
    want = block(dense, layout, reduced["0.bias"].params)
    assert torch.allclose(reduced["0.bias"].to_dense(), want, atol=1e-10)


def test_backbone_of_the_papers_kind_gets_one_kronecker_block_per_path(float64):
    config = LayerwiseBackboneConfig(
        "ffc+conv+pgconv", width=1, in_channels=1, num_classes=3, input_size=(8, 8)
    )
    net = LayerwiseBackbone(config).double()
    kfac = compute_kfac(net, (torch.randn(4, 1, 8, 8), torch.randint(0, 3, (4,))))
    names = set(kfac.names)
    assert "blocks.0.layer.paths.pgconv.weight" in names  # the lifting block
    assert "blocks.3.layer.paths.pgconv.weight" in names
    assert sum(b.numel for b in kfac) == sum(p.numel() for p in net.parameters())
