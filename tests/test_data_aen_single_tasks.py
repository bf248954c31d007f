"""The single-transformation G-Fashion-MNIST tasks of the AEN paper (IAug1 .. IAug12)."""

import pytest
import torch

from bayesym.data import get_task_spec, make_task, task_names
from bayesym.groups.pixel_transforms import PIXEL_TRANSFORMS, apply_transform


@pytest.mark.parametrize("base", ["digits", "fmnist"])
def test_one_task_per_transformation_beside_the_presets(base):
    for transform in PIXEL_TRANSFORMS.values():
        spec = get_task_spec(f"aen-{base}-IAug{transform.paper_index}")
        assert spec.symmetry == "aen" and spec.augmentation == transform.name
        assert transform.name in spec.description
    names = task_names()
    assert names.index(f"aen-{base}-Aug5") < names.index(f"aen-{base}-IAug1")


@pytest.mark.parametrize("name", ["rot90", "htranslate", "scramble_left_vertical"])
def test_each_image_is_a_power_of_its_one_transformation_of_the_base_image(name):
    index = PIXEL_TRANSFORMS[name].paper_index
    task = make_task(f"aen-digits-IAug{index}", split="val", seed=2)
    base = make_task("digits", split="val", seed=2)
    powers = task.metadata["powers"]
    assert powers.shape == (len(task), 1) and task.info["transforms"] == (name,)
    assert len(set(powers[:, 0].tolist())) > 1  # the draws vary
    for k in set(powers[:, 0].tolist()):
        rows = powers[:, 0] == k
        expected = apply_transform(name, base.images[rows], k)
        assert torch.equal(task.images[rows], expected)
    assert torch.equal(task.labels, base.labels)
