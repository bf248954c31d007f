"""The marglik selector on a D4-subgroup space: one GCONV path per subgroup in every block.

The real ``d4`` space (a norm-free EquiNAS network) lives in its own module; this test builds
a small stand-in with the same structure — every block a :class:`PathSum` whose paths are
group convolutions over C1, C2, C4 and D4, each acting on D4 feature maps through the
re-reading of :mod:`bayesym.groups.restriction` — and checks what the selector promises for
such a network: the curvature covers every subgroup path (no module refused, none skipped)
and the effective-parameter table names the subgroup of every path.
"""

from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch
from selector_toys import digits
from torch import nn

from bayesym.groups import d4_subgroup
from bayesym.groups.restriction import expand_feature_map, restrict_feature_map
from bayesym.layers import GroupConv2d, GroupPool, LiftingConv2d, PathSum
from bayesym.layers.symmetry import LayerSymmetry
from bayesym.marglik import MarglikConfig
from bayesym.priors import GaussianPrior
from bayesym.selectors import Budget, DataShape, LayerChoice, MarglikSelector, SearchSpace
from bayesym.selectors.marglik import MarglikSelectorConfig
from bayesym.testing import assert_equivariant, assert_not_equivariant, image_action
from curvature import compute_kfac

SUBGROUPS = ("C1", "C2", "C4", "D4")
D4 = d4_subgroup("D4")


class SubgroupPath(nn.Module):
    """A K-group convolution on D4 feature maps: restrict to K, convolve, expand back to D4.

    ``[N, C_in, 8, H, W] -> [N, C_out, 8, H, W]`` (``lifting``: ``[N, C_in, H, W]`` in), exactly
    equivariant to K acting on D4 feature maps, and to nothing more in general.
    """

    def __init__(self, subgroup: str, in_channels: int, out_channels: int, lifting: bool):
        super().__init__()
        self.subgroup = d4_subgroup(subgroup)
        cosets = D4.order // self.subgroup.order
        if lifting:
            self.conv = LiftingConv2d(in_channels, out_channels * cosets, 3, self.subgroup)
        else:
            self.conv = GroupConv2d(in_channels * cosets, out_channels * cosets, 3, self.subgroup)
        self.lifting = lifting
        self.symmetry = LayerSymmetry(translations=True, point_group=subgroup)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.lifting:
            x = restrict_feature_map(x, D4, self.subgroup)
        return expand_feature_map(self.conv(x), D4, self.subgroup)


def subgroup_path_sum(in_channels: int, out_channels: int, lifting: bool) -> PathSum:
    paths = {k: SubgroupPath(k, in_channels, out_channels, lifting) for k in SUBGROUPS}
    return PathSum(
        paths,
        group_paths=SUBGROUPS,
        in_group_size=None if lifting else D4.order,
        out_group_size=D4.order,
    )


class Block(nn.Module):
    def __init__(self, layer: PathSum):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        return torch.relu(self.layer(x))


class StandInD4Net(nn.Module):
    """Norm-free: 3 path-sum blocks, group pooling, global average pooling, a linear head."""

    def __init__(self, shape: DataShape, width: int = 1):
        super().__init__()
        self.blocks = nn.ModuleList(
            [
                Block(subgroup_path_sum(shape.channels, width, lifting=True)),
                Block(subgroup_path_sum(width, width, lifting=False)),
                Block(subgroup_path_sum(width, width, lifting=False)),
            ]
        )
        self.pool = GroupPool("mean")
        self.head = nn.Linear(width, shape.num_classes)

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return self.head(self.pool(x).mean(dim=(-2, -1)))


@dataclass(frozen=True)
class StandInD4Space(SearchSpace):
    name: ClassVar[str] = "d4"

    def baselines(self):
        return SUBGROUPS

    def build_baseline(self, name, shape):
        raise NotImplementedError

    def relaxed_network(self, shape):
        return StandInD4Net(shape)

    def describe(self, model):
        return tuple(
            LayerChoice(f"blocks.{k}.layer", "+".join(SUBGROUPS), "translations") for k in range(3)
        )


def test_the_stand_in_paths_have_exactly_their_subgroups_symmetry(float64):
    x = torch.randn(2, 1, 8, 6, 6)
    d4_action = image_action(D4)
    from bayesym.testing import regular_action

    for name in SUBGROUPS:
        path = SubgroupPath(name, 1, 1, lifting=False)
        k = d4_subgroup(name)
        assert_equivariant(path, k, x, regular_action(D4), regular_action(D4))
        outside = [g for g in range(8) if g not in k.root_embedding]
        if outside:
            assert_not_equivariant(path, outside, x, regular_action(D4), regular_action(D4))
    lifting = SubgroupPath("C4", 1, 1, lifting=True)
    assert_equivariant(lifting, d4_subgroup("C4"), x[:, :, 0], d4_action, regular_action(D4))


def test_the_curvature_covers_every_subgroup_path():
    shape = DataShape(1, 8, 8, 10)
    model = StandInD4Net(shape)
    prior = GaussianPrior(model)
    paths = {g.name for g in prior.groups if g.layer.startswith("blocks.")}
    assert paths == {f"blocks.{b}.layer.{k}" for b in range(3) for k in SUBGROUPS}
    x, y = torch.randn(12, 1, 8, 8), torch.randint(0, 10, (12,))
    model.eval()
    kfac = compute_kfac(model, [(x, y)], "classification")  # raises for any unsupported module
    covered = {piece.name for block in kfac.blocks for piece in block.params}
    assert covered == {n for n, p in model.named_parameters() if p.requires_grad}
    prior.block_groups(kfac)  # every block lies inside one subgroup path's prior group


def test_marglik_on_the_d4_stand_in_names_the_subgroup_of_every_path():
    split = digits(train_size=32, val_size=16)
    training = MarglikConfig(epochs=1, batch_size=32, burn_in=1, hyper_every=1)
    selector = MarglikSelector(MarglikSelectorConfig(training=training))
    result = selector.fit(
        split.train, split.valid, space=StandInD4Space(), budget=Budget(), progress=False
    )
    assert [c.layer for c in result.choices] == [f"blocks.{b}.layer" for b in range(3)]
    for choice in result.choices:
        assert set(choice.scores) == set(SUBGROUPS)
        assert sum(choice.scores.values()) == pytest.approx(1.0)
        assert choice.choice in SUBGROUPS
        assert choice.symmetry == f"translations x {choice.choice}"
    expected = {f"blocks.{b}.layer.{k}" for b in range(3) for k in SUBGROUPS} | {"head"}
    assert set(result.effective_parameters) == expected
    assert all(g > 0 for g in result.effective_parameters.values())
