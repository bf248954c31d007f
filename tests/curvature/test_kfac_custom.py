"""The extension point on test-only custom layers of each kind the method needs."""

import pytest
import torch
from custom_layers import AnchorLinear, PermutedSharedLinear, TinyFactoredLinear, registry
from oracles import block, exact_ggn, output_hessian, parameter_layout
from torch import nn

from curvature import KFACConfig, KroneckerBlock, UnsupportedModuleError, compute_kfac
from curvature.adapters import BlockDiagonalFactor
from curvature.plan import block_specs


def assert_exact(model, x, reg):
    kfac = compute_kfac(model, (x, torch.tensor([1])), registry=reg)
    dense, layout = exact_ggn(model, x), parameter_layout(model)
    for b in kfac:
        assert torch.allclose(b.to_dense(), block(dense, layout, b.params), atol=1e-10), b.name
    return kfac


def test_shared_linear_is_exact_without_sharing(float64):
    model = nn.Sequential(
        PermutedSharedLinear(4, 3, torch.tensor([[2, 0, 3, 1]])),
        nn.Tanh(),
        nn.Flatten(),
        nn.Linear(3, 3),
    )
    assert_exact(model, torch.randn(1, 4), registry())


@pytest.mark.parametrize("approx", ["expand", "reduce"])
def test_shared_linear_matches_the_sharing_definition(float64, approx):
    perms = torch.stack([torch.randperm(4) for _ in range(3)])
    layer = PermutedSharedLinear(4, 2, perms)
    model = nn.Sequential(layer, nn.Tanh(), nn.Flatten(), nn.Linear(6, 3))
    x = torch.randn(5, 4)
    kfac = compute_kfac(
        model, (x, torch.randint(0, 3, (5,))), config=KFACConfig(approx=approx), registry=registry()
    )
    # Definition: J_nᵀ = Σ_g a_{n,g} ⊗ g_{n,g} with a_{n,g} = x[n, π_g].
    from oracles import output_jacobian

    jac, f, _ = output_jacobian(model, layer, x)  # [N, C, G, d_out]
    lam = output_hessian(f, "classification")
    a = x[:, perms]  # [N, G, d_in]
    if approx == "expand":
        a_def = torch.einsum("ngi,ngj->ij", a, a) / (5 * 3)
        b_def = torch.einsum("ncgo,ncd,ndgp->op", jac, lam, jac)
    else:
        a_def = a.mean(1).T @ a.mean(1) / 5
        b_def = torch.einsum("nco,ncd,ndp->op", jac.sum(2), lam, jac.sum(2))
    b_kfac, a_kfac = kfac["0.weight"].factors
    assert torch.allclose(a_kfac.to_dense(), a_def, atol=1e-12)
    assert torch.allclose(b_kfac.to_dense(), b_def, atol=1e-12)


def test_factored_layer_is_exact_with_single_channels(float64):
    model = nn.Sequential(TinyFactoredLinear(1, 1, 5, 4), nn.Tanh(), nn.Flatten(), nn.Linear(4, 3))
    assert_exact(model, torch.randn(1, 1, 5), registry())


def test_factored_layer_keeps_block_diagonal_factors_and_matches_definition(float64):
    layer = TinyFactoredLinear(3, 2, 5, 4)
    model = nn.Sequential(layer, nn.Tanh(), nn.Flatten(), nn.Linear(8, 3))
    x = torch.randn(6, 3, 5)
    kfac = compute_kfac(model, (x, torch.randint(0, 3, (6,))), registry=registry())
    a1, b1 = kfac["0.theta1"].factors
    b2, a2 = kfac["0.theta2"].factors
    assert isinstance(a1, BlockDiagonalFactor) and a1.data.shape == (2, 3, 3)
    assert isinstance(a2, BlockDiagonalFactor) and a2.data.shape == (3, 5, 5)
    # Definitions (paper App. C.1) with autograd Jacobians w.r.t. the output and x1.
    from oracles import output_jacobian

    jac_out, f, _ = output_jacobian(model, layer, x)  # [N, C, c_out, p_out]
    lam = output_hessian(f, "classification")
    layer.probe = torch.zeros(6, 2, 3, requires_grad=True)
    out = model(x)
    jac_x1 = torch.stack(
        [
            torch.stack(
                [
                    torch.autograd.grad(out[n, k], layer.probe, retain_graph=True)[0][n]
                    for k in range(3)
                ]
            )
            for n in range(6)
        ]
    )  # [N, C, c_out, c_in]
    layer.probe = None
    x1 = layer.intermediate(x).detach()
    a2_def = torch.stack([x[:, c].T @ x[:, c] for c in range(3)]) / (6 * 3)
    b2_def = torch.einsum("nkoc,nkl,nlpc->op", jac_x1, lam, jac_x1)
    a1_def = torch.stack([x1[:, o].T @ x1[:, o] for o in range(2)]) / (6 * 2)
    b1_def = torch.einsum("nkoq,nkl,nlor->qr", jac_out, lam, jac_out)
    for got, want in [(a1.data, a1_def), (b1.data, b1_def), (a2.data, a2_def), (b2.data, b2_def)]:
        assert torch.allclose(got, want, atol=1e-12)
    # and the block's dense form is kron in the parameters' own (row-major) order
    dense = kfac["0.theta1"].to_dense()
    assert torch.allclose(
        dense, torch.kron(torch.block_diag(*a1_def.unbind(0)), b1_def.contiguous()), atol=1e-12
    )


def test_anchor_layer_is_exact_and_is_the_projected_linear_kfac(float64):
    layer = AnchorLinear(6, 3, anchors=4)
    model = nn.Sequential(layer, nn.Tanh(), nn.Linear(3, 3))
    assert_exact(model, torch.randn(1, 6), registry())
    # A_u = Ψ A Ψᵀ with A the input factor of the equivalent plain Linear
    x = torch.randn(7, 6)
    twin = nn.Sequential(nn.Linear(6, 3, bias=False), nn.Tanh(), nn.Linear(3, 3))
    twin[0].weight.data = (layer.anchor_values @ layer.basis).detach()
    twin[2].load_state_dict(model[2].state_dict())
    y = torch.randint(0, 3, (7,))
    ours = compute_kfac(model, (x, y), registry=registry())["0.anchor_values"].factors
    plain = compute_kfac(twin, (x, y))["0.weight"].factors
    psi = layer.basis
    assert torch.allclose(ours[1].data, psi @ plain[1].data @ psi.T, atol=1e-12)
    assert torch.allclose(ours[0].data, plain[0].data, atol=1e-12)


def test_uncovered_parameter_is_an_error_unless_excluded(float64):
    layer = AnchorLinear(6, 3, anchors=4)
    layer.basis = nn.Parameter(layer.basis.clone())  # learnable anchors: not covered
    model = nn.Sequential(layer, nn.Tanh(), nn.Linear(3, 2))
    x, y = torch.randn(4, 6), torch.randint(0, 2, (4,))
    with pytest.raises(
        UnsupportedModuleError, match=r"module '0' \(AnchorLinear\).*\['0\.basis'\]"
    ):
        compute_kfac(model, (x, y), registry=registry())
    kfac = compute_kfac(model, (x, y), registry=registry(), exclude=["0.basis"])
    assert "0.anchor_values" in kfac.names


def test_small_parameters_get_exact_dense_blocks_via_jvp(float64):
    from custom_layers import ScaledLinear, registry_with_scaled

    model = nn.Sequential(ScaledLinear(3, 4), nn.Tanh(), nn.Linear(4, 3))
    x = torch.randn(1, 3)
    kfac = assert_exact(model, x, registry_with_scaled())
    assert kfac.names == [
        "0.weight",
        "0.log_scale",
        "0.inner.weight",
        "0.inner.bias",
        "2.weight",
        "2.bias",
    ]
    # A dense block is the exact GGN block for any amount of data.
    x = torch.randn(9, 3)
    kfac = compute_kfac(model, (x, torch.randint(0, 3, (9,))), registry=registry_with_scaled())
    dense, layout = exact_ggn(model, x), parameter_layout(model)
    got = kfac["0.log_scale"].to_dense()
    assert torch.allclose(got, block(dense, layout, kfac["0.log_scale"].params), atol=1e-12)


def test_block_specs_describe_the_blocks_of_the_fit(float64):
    """Names, structures and sizes of the adapters' specs are those of compute_kfac's blocks."""
    model = nn.Sequential(
        TinyFactoredLinear(2, 3, 4, 2), nn.Flatten(), nn.Linear(6, 3), nn.Tanh(), nn.Linear(3, 2)
    )
    model[4].bias.requires_grad_(False)
    kfac = compute_kfac(
        model, (torch.randn(5, 2, 4), torch.randint(0, 2, (5,))), registry=registry(),
        exclude=["2.bias"],
    )  # fmt: skip
    specs = block_specs(model, exclude=["2.bias"], registry=registry())
    assert list(specs) == kfac.names == ["0.theta1", "0.theta2", "2.weight", "4.weight"]
    assert specs["0.theta1"].order == "input_output" and specs["0.theta2"].input_blocks == 2
    for name, spec in specs.items():
        b = kfac[name]
        assert spec.structure == ("kronecker" if isinstance(b, KroneckerBlock) else "dense")
        output = b.factors[0 if spec.order == "output_input" else 1]  # B ⊗ A or A ⊗ B
        assert output.dim == spec.output_dim, name
    with pytest.raises(UnsupportedModuleError, match="TinyFactoredLinear"):
        block_specs(model)  # the default table has no adapter for the test layer
