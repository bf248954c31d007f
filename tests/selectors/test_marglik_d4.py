"""The marglik and RPP selectors on the 'd4' space: one prior per subgroup path of every block.

The space's relaxed network (:class:`~bayesym.backbones.equinas_paths.EquiNASPathNet`, norm-free)
has in every block one group-convolution path per subgroup C1, D1, C2, D2, C4, D4, each acting
on D4 feature maps. What the selectors promise for it: the curvature covers every subgroup path
(no module refused, none skipped), the effective-parameter table names the subgroup of every
path, and the selected layers are read out per block. (That the path-sum network is exactly
D4-invariant when every path but D4's is off is tested in ``test_d4_space.py``.)
"""

import pytest
import torch
from selector_toys import digits

from bayesym.marglik import MarglikConfig
from bayesym.priors import GaussianPrior
from bayesym.selectors import (
    Budget,
    D4SubgroupSpace,
    DataShape,
    MarglikSelector,
    RPPConfig,
    RPPSelector,
)
from bayesym.selectors.marglik import MarglikSelectorConfig
from bayesym.selectors.spaces.d4 import SUBGROUP_ORDER
from curvature import compute_kfac

SPACE = D4SubgroupSpace(width=1, depth=3)


def test_the_curvature_covers_every_subgroup_path():
    model = SPACE.relaxed_network(DataShape(1, 8, 8, 10))
    prior = GaussianPrior(model)
    paths = {g.name for g in prior.groups if g.layer.startswith("blocks.")}
    assert paths == {f"blocks.{b}.layer.{k}" for b in range(3) for k in SUBGROUP_ORDER}
    x, y = torch.randn(12, 1, 8, 8), torch.randint(0, 10, (12,))
    model.eval()
    kfac = compute_kfac(model, [(x, y)], "classification")  # raises for any unsupported module
    covered = {piece.name for block in kfac.blocks for piece in block.params}
    assert covered == {n for n, p in model.named_parameters() if p.requires_grad}
    prior.block_groups(kfac)  # every block lies inside one subgroup path's prior group


def test_marglik_on_the_d4_space_names_the_subgroup_of_every_path():
    split = digits(train_size=32, val_size=16)
    training = MarglikConfig(epochs=1, batch_size=32, burn_in=1, hyper_every=1)
    selector = MarglikSelector(MarglikSelectorConfig(training=training))
    result = selector.fit(split.train, split.valid, space=SPACE, budget=Budget(), progress=False)
    assert result.space == "d4"
    assert [c.layer for c in result.choices] == [f"blocks.{b}.layer" for b in range(3)]
    for choice in result.choices:
        assert set(choice.scores) == set(SUBGROUP_ORDER)
        assert sum(choice.scores.values()) == pytest.approx(1.0)
        assert choice.choice in SUBGROUP_ORDER
        assert choice.symmetry == f"translations x {choice.choice}"
    expected = {f"blocks.{b}.layer.{k}" for b in range(3) for k in SUBGROUP_ORDER}
    expected |= {"head.0", "head.2"}
    assert set(result.effective_parameters) == expected
    assert all(g > 0 for g in result.effective_parameters.values())


def test_rpp_on_the_d4_space_reads_out_the_d4_and_c1_paths():
    split = digits(train_size=32, val_size=16)
    training = MarglikConfig(epochs=1, batch_size=32, learn_prior=False)
    result = RPPSelector(RPPConfig(training=training)).fit(
        split.train, split.valid, space=SPACE, budget=Budget(epochs=1), progress=False
    )
    assert [c.layer for c in result.choices] == [f"blocks.{b}.layer" for b in range(3)]
    for choice in result.choices:
        assert set(choice.scores) == {"D4", "C1"}
        assert choice.choice in ("D4", "C1")
    assert result.cost.image_passes == 32
