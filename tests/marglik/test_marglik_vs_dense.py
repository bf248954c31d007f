"""The KFAC Laplace marglik of layer-zoo models is close to the one with the exact dense GGN.

Relative difference of log p(D|η) on these seeded problems (float64, N=8 and 32, seed 0):
ffc+conv expand 20-28 %, reduce 0.2-2 %; sfc+sconv expand 13 %, reduce 3-4 %;
C4 G-CNN expand 3-5 %, reduce 8-9 %. Asserted with margin below.
"""

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from bayesym.groups.d4 import d4_subgroup
from bayesym.layers import GroupConv2d, LiftingConv2d, ffc_plus_conv, sfc_plus_sconv
from bayesym.marglik import log_marginal_likelihood
from bayesym.priors import GaussianPrior
from curvature import KFACConfig, compute_kfac

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "curvature"))
from oracles import exact_ggn


class Head(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.linear = nn.Linear(c, 3)

    def forward(self, x):
        return self.linear(x.flatten(2).mean(-1))


MODELS = {
    "ffc+conv": lambda: nn.Sequential(
        ffc_plus_conv(1, 3, spatial=(4, 4)), nn.Tanh(), ffc_plus_conv(3, 2, spatial=(4, 4)),
        nn.Tanh(), nn.Flatten(), nn.Linear(32, 3),
    ),
    "sfc+sconv": lambda: nn.Sequential(
        sfc_plus_sconv(1, 3, spatial=(4, 4)), nn.Tanh(), nn.Flatten(), nn.Linear(48, 3)
    ),
    "gcnn-C4": lambda: nn.Sequential(
        LiftingConv2d(1, 3, 3, d4_subgroup("C4")), nn.Tanh(),
        GroupConv2d(3, 3, 3, d4_subgroup("C4")), nn.Tanh(), Head(3),
    ),
}  # fmt: skip
BOUND = {"expand": 0.35, "reduce": 0.12}


def dense_marglik(model, prior, x, log_lik):
    h = exact_ggn(model, x)
    theta = torch.cat([p.detach().flatten() for p in model.parameters()])
    delta = torch.cat(
        [
            prior.precisions[prior.group_index[n]].expand(p.numel())
            for n, p in model.named_parameters()
        ]
    ).detach()
    return (
        log_lik
        - 0.5 * (delta * theta**2).sum()
        + 0.5 * delta.log().sum()
        - 0.5 * torch.linalg.slogdet(h + torch.diag(delta))[1]
    )


@pytest.mark.parametrize("approx", ["expand", "reduce"])
@pytest.mark.parametrize("name", list(MODELS))
def test_kfac_marglik_is_close_to_the_dense_one(float64, name, approx):
    model = MODELS[name]()
    x, y = torch.randn(8, 1, 4, 4), torch.randint(0, 3, (8,))
    prior = GaussianPrior(model)
    kfac = compute_kfac(model, (x, y), config=KFACConfig(approx=approx))
    ours = float(log_marginal_likelihood(kfac, prior, model).detach())
    dense = float(dense_marglik(model, prior, x, kfac.log_likelihood))
    assert abs(ours - dense) / abs(dense) < BOUND[approx], (ours, dense)
