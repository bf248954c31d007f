"""Symmetry tasks: each recorded transformation is checked against the actual images."""

import pytest
import torch

from bayesym.data import (
    ImageDataset,
    aen_transformed,
    d4_transformed,
    load_digits,
    quadrant_placed,
    rotate_images,
    rotated,
    translated,
)
from bayesym.groups.pixel_transforms import (
    AUGMENTATION_PRESETS,
    apply_transform,
    d4_image_action,
    transform_order,
)


def positive_images(n=40, channels=2, height=6, width=6, num_classes=5):
    """Strictly positive images: the object's bounding box is the whole image."""
    images = torch.rand(n, channels, height, width) + 0.1
    return ImageDataset(images, torch.arange(n) % num_classes, num_classes=num_classes)


def bounding_box(image):
    rows = image.abs().sum(dim=(0, 2)).nonzero().squeeze(1)
    cols = image.abs().sum(dim=(0, 1)).nonzero().squeeze(1)
    return int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1


@pytest.mark.parametrize("angle_turns", [1, 2, 3])
def test_rotation_by_multiples_of_90_matches_rot90(angle_turns):
    images = torch.rand(3, 2, 7, 7)
    angles = torch.full((3,), 90.0 * angle_turns)
    expected = torch.rot90(images, angle_turns, dims=(-2, -1))
    torch.testing.assert_close(rotate_images(images, angles), expected, atol=1e-5, rtol=0)


def test_rotation_is_rigid_on_non_square_images():
    image = torch.zeros(1, 1, 9, 15)
    image[0, 0, 4, 10] = 1.0  # 3 pixels right of the centre (4, 7)
    out = rotate_images(image, torch.tensor([90.0]))
    # a counter-clockwise quarter turn moves it 3 pixels above the centre
    assert int(out[0, 0].argmax()) == 1 * 15 + 7
    torch.testing.assert_close(out.sum(), torch.tensor(1.0), atol=1e-5, rtol=0)
    flipped = rotate_images(torch.rand(2, 1, 4, 6), torch.tensor([180.0, 180.0]))
    assert flipped.shape == (2, 1, 4, 6)


def test_rotated_dataset_records_angles_and_is_seeded():
    base = load_digits("test", pad=2)
    ds = rotated(base, seed=5)
    angles = ds.metadata["angle"]
    assert angles.shape == (len(base),) and float(angles.min()) >= 0 and float(angles.max()) < 360
    torch.testing.assert_close(ds.images[:10], rotate_images(base.images[:10], angles[:10]))
    assert torch.equal(rotated(base, seed=5).images, ds.images)
    assert not torch.equal(rotated(base, seed=6).images, ds.images)
    # uniform angles: every quarter of the circle is hit about equally often
    counts = torch.bincount((angles // 90).long(), minlength=4)
    assert int(counts.min()) > len(base) / 4 * 0.7


def test_d4_dataset_is_the_exact_recorded_group_element():
    base = positive_images(n=64)
    ds = d4_transformed(base, seed=0)
    elements = ds.metadata["d4_element"]
    assert set(elements.tolist()) == set(range(8))
    for i in range(len(base)):
        e = int(elements[i])
        assert torch.equal(ds.images[i], d4_image_action(e // 4, e % 4, base.images[i]))
    assert torch.equal(ds.labels, base.labels)
    with pytest.raises(ValueError, match="D4 needs square images, got 6x8"):
        d4_transformed(positive_images(width=8, height=6), seed=0)


@pytest.mark.parametrize(("group", "members"), [("C4", {0, 1, 2, 3}), ("D1", {0, 4})])
def test_subgroup_transformed_draws_only_that_subgroups_elements(group, members):
    base = positive_images(n=64)
    ds = d4_transformed(base, seed=3, group=group)
    elements = ds.metadata["d4_element"]
    assert set(elements.tolist()) == members
    for i in range(len(base)):
        e = int(elements[i])
        assert torch.equal(ds.images[i], d4_image_action(e // 4, e % 4, base.images[i]))
    assert ds.name.endswith(f"+{group.lower()}")
    with pytest.raises(KeyError, match="unknown D4 subgroup 'C3'"):
        d4_transformed(base, seed=0, group="C3")


def test_d4_transformed_draws_the_elements_it_drew_before_the_group_argument():
    # D4's root embedding is 0..7, so the default draw is the plain randint(8) it always was
    base = positive_images(n=32)
    assert torch.equal(
        d4_transformed(base, 4).metadata["d4_element"],
        torch.randint(8, (32,), generator=torch.Generator().manual_seed(4)),
    )


@pytest.mark.parametrize("max_shift", [0, 2, 4])
def test_translated_images_contain_the_unshifted_object(max_shift):
    base = load_digits("test")
    ds = translated(base, seed=1, max_shift=max_shift)
    s, size = max_shift, 8
    assert ds.image_shape == (1, size + 2 * s, size + 2 * s)
    shifts = ds.metadata["shift"]
    assert int(shifts.abs().max()) <= s
    if s:
        assert set(shifts[:, 0].tolist()) == set(range(-s, s + 1))
    for i in range(len(base)):
        dy, dx = shifts[i].tolist()
        window = ds.images[i, :, s + dy : s + dy + size, s + dx : s + dx + size]
        assert torch.equal(window, base.images[i])
        assert float(ds.images[i].sum()) == pytest.approx(float(base.images[i].sum()))  # rest is 0
        r0, r1, c0, c1 = bounding_box(ds.images[i])
        b0, b1, d0, d1 = bounding_box(base.images[i])
        assert (r0, r1, c0, c1) == (b0 + s + dy, b1 + s + dy, d0 + s + dx, d1 + s + dx)


@pytest.mark.parametrize("position_labels", [False, True], ids=["invariant", "position"])
def test_quadrant_labels_match_the_actual_placement(position_labels):
    base = positive_images(n=60, num_classes=5, height=5, width=7)
    ds = quadrant_placed(base, seed=2, position_labels=position_labels)
    assert ds.image_shape == (2, 10, 14)
    assert ds.num_classes == (20 if position_labels else 5)
    for i in range(len(base)):
        r0, r1, c0, c1 = bounding_box(ds.images[i])
        found = (r0 // 5) * 2 + c0 // 7  # which quadrant the object actually occupies
        assert (r1 - r0, c1 - c0) == (5, 7)
        assert int(ds.metadata["quadrant"][i]) == found
        assert torch.equal(ds.images[i, :, r0:r1, c0:c1], base.images[i])
        expected = int(base.labels[i]) * 4 + found if position_labels else int(base.labels[i])
        assert int(ds.labels[i]) == expected
    assert set(ds.metadata["quadrant"].tolist()) == {0, 1, 2, 3}
    if position_labels:
        assert ds.class_names[4 * 3 + 2] == "3 bottom-left"


def test_quadrant_on_digits_keeps_the_digit_in_its_quadrant():
    base = load_digits("val")
    ds = quadrant_placed(base, seed=0, position_labels=True)
    for i in range(len(base)):
        r0, r1, c0, c1 = bounding_box(ds.images[i])
        q = int(ds.labels[i]) % 4
        assert int(ds.labels[i]) // 4 == int(base.labels[i])
        rows, cols = (0, 8) if q < 2 else (8, 16), (0, 8) if q % 2 == 0 else (8, 16)
        assert rows[0] <= r0 and r1 <= rows[1] and cols[0] <= c0 and c1 <= cols[1]


@pytest.mark.parametrize("preset", list(AUGMENTATION_PRESETS))
def test_aen_dataset_applies_recorded_powers_in_table_order(preset):
    base = positive_images(n=30, height=8, width=8)
    ds = aen_transformed(base, seed=3, transforms=preset)
    names = AUGMENTATION_PRESETS[preset]
    powers = ds.metadata["powers"]
    assert ds.info["transforms"] == names and powers.shape == (30, len(names))
    for j, name in enumerate(names):
        assert int(powers[:, j].min()) >= 0 and int(powers[:, j].max()) < transform_order(
            name, 8, 8
        )
    for i in range(len(base)):
        expected = base.images[i]
        for name, k in zip(names, powers[i].tolist(), strict=True):
            expected = apply_transform(name, expected, k)  # first generator applied first
        assert torch.equal(ds.images[i], expected)
    if not names:
        assert torch.equal(ds.images, base.images)


def test_aen_dataset_from_a_list_of_names_and_its_errors():
    base = positive_images(n=50, height=8, width=8)
    ds = aen_transformed(base, seed=0, transforms=["htranslate", "rot90"])
    assert ds.info["transforms"] == ("rot90", "htranslate")  # table order
    assert set(ds.metadata["powers"][:, 1].tolist()) > {0, 1, 2, 3}  # powers up to 7 drawn
    with pytest.raises(KeyError, match="unknown pixel transform 'shear'"):
        aen_transformed(base, seed=0, transforms=["shear"])
    with pytest.raises(ValueError, match=r"'rot90' .*square.*8x6"):
        aen_transformed(positive_images(height=8, width=6), seed=0, transforms="Aug2")


@pytest.mark.parametrize(
    "build",
    [
        lambda b, s: rotated(b, s),
        lambda b, s: d4_transformed(b, s),
        lambda b, s: translated(b, s, 3),
        lambda b, s: quadrant_placed(b, s, position_labels=True),
        lambda b, s: aen_transformed(b, s, "Aug5"),
    ],
    ids=["rotated", "d4", "translated", "quadrant", "aen"],
)
def test_same_seed_same_tensors_different_seed_different(build):
    base = load_digits("val")
    first, again, other = build(base, 11), build(base, 11), build(base, 12)
    assert torch.equal(first.images, again.images) and torch.equal(first.labels, again.labels)
    for key in first.metadata:
        assert torch.equal(first.metadata[key], again.metadata[key])
    assert not torch.equal(first.images, other.images)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_tasks_run_on_cuda():
    base = load_digits("val").to("cuda")
    for ds in (
        rotated(base, 0),
        d4_transformed(base, 0),
        translated(base, 0, 2),
        quadrant_placed(base, 0, position_labels=True),
        aen_transformed(base, 0, "Aug5"),
    ):
        assert ds.images.is_cuda and ds.labels.is_cuda
    cpu = aen_transformed(load_digits("val"), 0, "Aug5")
    assert torch.equal(aen_transformed(base, 0, "Aug5").images.cpu(), cpu.images)
