"""compute_kfac batches: (x, y) pairs, mapping inputs and mapping batches; bad ones refused."""

from collections import UserDict

import pytest
import torch
from oracles import block, exact_ggn, parameter_layout
from torch import nn

from curvature import CurvatureError, NonFiniteError, compute_kfac


class MappingModel(nn.Module):
    """An MLP that takes a Huggingface-style mapping (``batch["features"]``) or a tensor."""

    def __init__(self, outputs=3):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, outputs))

    def forward(self, data):
        return self.net(data if isinstance(data, torch.Tensor) else data["features"])


def mapping_batches(x, y, size, mapping=UserDict, target="labels"):
    return [
        mapping(
            {"features": x[i : i + size], target: y[i : i + size], "ids": list(range(i, i + 3))}
        )
        for i in range(0, len(x), size)
    ]


def assert_same_kfac(a, b):
    assert a.names == b.names
    assert a.num_data == b.num_data
    assert torch.equal(a.log_likelihood, b.log_likelihood)
    for name in a.names:
        for fa, fb in zip(a[name].factors, b[name].factors, strict=True):
            assert torch.equal(fa.to_dense(), fb.to_dense()), name


@pytest.mark.parametrize("likelihood", ["classification", "regression"])
@pytest.mark.parametrize("mapping", [dict, UserDict], ids=["dict", "UserDict"])
def test_mapping_batches_give_the_kfac_of_tensor_batches(float64, likelihood, mapping):
    model = MappingModel()
    x = torch.randn(11, 4)
    y = torch.randint(0, 3, (11,)) if likelihood == "classification" else torch.randn(11, 3)
    tensors = compute_kfac(
        model, [(x[i : i + 4], y[i : i + 4]) for i in range(0, 11, 4)], likelihood
    )
    batches = mapping_batches(x, y, 4, mapping, target="target")
    as_mappings = compute_kfac(model, batches, likelihood, target_key="target")
    as_pairs = compute_kfac(model, [(b, b["target"]) for b in batches], likelihood)
    assert_same_kfac(as_mappings, tensors)
    assert_same_kfac(as_pairs, tensors)


def test_one_mapping_is_one_batch_and_exact_for_one_datum(float64):
    """A single mapping is not iterated over its keys; one datum: KFAC equals the dense GGN."""
    model = MappingModel()
    x, y = torch.randn(1, 4), torch.tensor([2])
    one = compute_kfac(model, {"features": x, "labels": y})
    pair = compute_kfac(model, ({"features": x}, y))
    assert_same_kfac(one, pair)
    ggn, layout = exact_ggn(model, x), parameter_layout(model)
    for b in one.blocks:
        assert torch.allclose(b.to_dense(), block(ggn, layout, b.params), atol=1e-12), b.name


def test_mapping_batch_without_the_target_key_names_the_keys_and_the_fix():
    batch = {"features": torch.randn(3, 4), "y": torch.randint(0, 3, (3,))}
    with pytest.raises(
        CurvatureError, match=r"batch 0 .*'labels' \(keys: \['features', 'y'\]\).*target_key="
    ):
        compute_kfac(MappingModel(), [batch])
    compute_kfac(MappingModel(), [batch], target_key="y")


@pytest.mark.parametrize(
    "data, culprit",
    [
        ([(torch.randn(3, 4), torch.zeros(3, dtype=torch.long), torch.ones(3))], "tuple"),
        ([torch.randn(3, 4)], "Tensor"),
        ([[torch.randn(3, 4), [0, 1, 2]]], "list"),
        ([("text", torch.zeros(3, dtype=torch.long))], "tuple"),
        (["not a batch"], "str"),
    ],
    ids=["triple", "bare-tensor", "list-targets", "string-inputs", "string"],
)
def test_unusable_batch_structures_are_refused_by_type(data, culprit):
    with pytest.raises(
        CurvatureError, match=rf"batch 0 is a {culprit}; compute_kfac needs \(x, y\)"
    ):
        compute_kfac(MappingModel(), data)


def test_non_finite_mapping_inputs_are_rejected():
    x = torch.randn(3, 4)
    x[1, 2] = float("nan")
    batch = {"features": x, "labels": torch.zeros(3, dtype=torch.long)}
    with pytest.raises(NonFiniteError, match="batch 0: the inputs contain NaN"):
        compute_kfac(MappingModel(), batch)
