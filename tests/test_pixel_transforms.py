"""The pixel-permutation table: bijections, orders, exact semantics, presets, D4 action."""

import itertools

import pytest
import torch

from bayesym.groups.pixel_transforms import (
    AUGMENTATION_PRESETS,
    PIXEL_TRANSFORMS,
    TRANSFORM_NAMES,
    apply_permutation,
    apply_transform,
    compose_permutations,
    d4_image_action,
    d4_permutation,
    get_transform,
    invert_permutation,
    permutation_order,
    pixel_permutation,
    resolve_transforms,
    transform_order,
)

GRIDS = [(1, 1), (2, 2), (3, 3), (4, 4), (6, 6), (8, 8), (4, 6), (6, 4), (5, 4), (3, 8), (28, 28)]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _defined(name, height, width):
    try:
        get_transform(name).check_grid(height, width)
    except ValueError:
        return False
    return True


def _expected_order(name, height, width):
    """The order each transformation must have, derived by hand from its definition."""
    if height * width == 1:
        return 1
    return {
        "rot90": 4,
        "hflip": 2 if width > 1 else 1,
        "vflip": 2 if height > 1 else 1,
        "htranslate": width,
        "vtranslate": height,
        "scramble_rotate": 4,
    }.get(name, 2)


def _brute_force_order(name, height, width):
    image = torch.randperm(height * width).reshape(height, width)
    moved, k = apply_transform(name, image), 1
    while not torch.equal(moved, image):
        moved, k = apply_transform(name, moved), k + 1
    return k


def _reference_transform(name, img):
    """Independent implementations by slicing, for every table entry (img: [H, W])."""
    h, w = img.shape
    top, bottom = img[: h // 2], img[h // 2 :]
    left, right = img[:, : w // 2], img[:, w // 2 :]
    if name == "rot90":
        return torch.rot90(img, 1, dims=(-2, -1))
    if name == "hflip":
        return img.flip(-1)
    if name == "vflip":
        return img.flip(-2)
    if name == "htranslate":
        return torch.cat([img[:, -1:], img[:, :-1]], dim=1)
    if name == "vtranslate":
        return torch.cat([img[-1:], img[:-1]], dim=0)
    if name == "scramble_rotate":
        tl, tr = img[: h // 2, : w // 2], img[: h // 2, w // 2 :]
        bl, br = img[h // 2 :, : w // 2], img[h // 2 :, w // 2 :]
        # top-left receives top-right, top-right receives bottom-right, and so on.
        return torch.cat([torch.cat([tr, br], 1), torch.cat([tl, bl], 1)], 0)
    if name == "scramble_horizontal":
        return torch.cat([right, left], dim=1)
    if name == "scramble_vertical":
        return torch.cat([bottom, top], dim=0)
    out = img.clone()
    if name == "scramble_left_vertical":
        out[:, : w // 2] = torch.cat([left[h // 2 :], left[: h // 2]], 0)
    elif name == "scramble_right_vertical":
        out[:, w // 2 :] = torch.cat([right[h // 2 :], right[: h // 2]], 0)
    elif name == "scramble_top_horizontal":
        out[: h // 2] = torch.cat([top[:, w // 2 :], top[:, : w // 2]], 1)
    elif name == "scramble_bottom_horizontal":
        out[h // 2 :] = torch.cat([bottom[:, w // 2 :], bottom[:, : w // 2]], 1)
    else:
        raise AssertionError(name)
    return out


def test_table_has_the_twelve_aen_transformations_in_paper_order():
    assert TRANSFORM_NAMES == (
        "rot90",
        "hflip",
        "vflip",
        "htranslate",
        "vtranslate",
        "scramble_rotate",
        "scramble_horizontal",
        "scramble_vertical",
        "scramble_left_vertical",
        "scramble_right_vertical",
        "scramble_top_horizontal",
        "scramble_bottom_horizontal",
    )
    assert [t.paper_index for t in PIXEL_TRANSFORMS.values()] == list(range(1, 13))


@pytest.mark.parametrize("name", TRANSFORM_NAMES)
def test_each_transform_is_a_bijection_with_the_right_order(name):
    checked = 0
    for height, width in GRIDS:
        if not _defined(name, height, width):
            continue
        perm = pixel_permutation(name, height, width)
        assert perm.dtype == torch.int64 and perm.shape == (height * width,)
        assert torch.equal(perm.sort().values, torch.arange(height * width))
        order = transform_order(name, height, width)
        assert order == _expected_order(name, height, width), (height, width)
        assert order == _brute_force_order(name, height, width), (height, width)
        assert order == permutation_order(perm)
        assert torch.equal(
            pixel_permutation(name, height, width, order), torch.arange(height * width)
        )
        checked += 1
    assert checked >= 5


@pytest.mark.parametrize(
    ("name", "size"),
    [
        pytest.param(name, size, id=f"{name}-{size[0]}x{size[1]}")
        for name in TRANSFORM_NAMES
        for size in [(2, 2), (4, 4), (6, 8), (8, 6), (28, 28)]
        if _defined(name, *size)
    ],
)
def test_transform_matches_slicing_reference(name, size):
    img = torch.randn(size)
    assert torch.equal(apply_transform(name, img), _reference_transform(name, img))


def test_quadrant_cycle_equals_rot90_on_a_2x2_grid():
    assert torch.equal(pixel_permutation("scramble_rotate", 2, 2), pixel_permutation("rot90", 2, 2))


@pytest.mark.parametrize(
    ("name", "size", "needs"),
    [
        ("rot90", (4, 6), "square"),
        ("scramble_rotate", (5, 4), "even height and an even width"),
        ("scramble_horizontal", (4, 5), "even width"),
        ("scramble_vertical", (5, 4), "even height"),
        ("scramble_left_vertical", (4, 7), "even height and an even width"),
        ("scramble_bottom_horizontal", (3, 4), "even height and an even width"),
    ],
    ids=lambda v: str(v) if not isinstance(v, str) else v.split()[0],
)
def test_undefined_grids_raise_with_the_sizes(name, size, needs):
    height, width = size
    with pytest.raises(ValueError, match=rf"{name}.*{needs}.*{height}x{width}"):
        pixel_permutation(name, height, width)
    with pytest.raises(ValueError, match=f"{height}x{width}"):
        apply_transform(name, torch.zeros(2, height, width))


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(KeyError, match=r"rot45.*valid names: rot90, hflip"):
        get_transform("rot45")
    with pytest.raises(KeyError, match=r"Aug9.*Aug0, Aug1"):
        resolve_transforms("Aug9")
    with pytest.raises(ValueError, match="height must be a positive int"):
        pixel_permutation("hflip", 0, 3)


def test_presets_match_table_2_of_the_paper():
    table_2 = {
        "Aug0": "0 0 0 0 0 0 0 0 0 0 0 0",
        "Aug1": "0 1 1 0 0 0 1 0 0 0 0 1",
        "Aug2": "1 1 0 0 0 0 0 0 1 1 0 0",
        "Aug3": "1 0 0 1 0 0 0 1 0 0 1 0",
        "Aug4": "1 1 1 1 1 1 0 0 0 0 0 0",
        "Aug5": "1 1 1 1 1 1 1 1 1 1 1 1",
    }
    assert list(AUGMENTATION_PRESETS) == list(table_2)
    for preset, bits in table_2.items():
        chosen = [get_transform(n).paper_index for n in AUGMENTATION_PRESETS[preset]]
        assert chosen == [j + 1 for j, b in enumerate(bits.split()) if b == "1"]
    assert resolve_transforms("Aug3") == AUGMENTATION_PRESETS["Aug3"]
    assert resolve_transforms(["vflip", "rot90", "vflip"]) == ("rot90", "vflip")
    assert resolve_transforms("hflip") == ("hflip",)


def test_powers_inverses_and_composition():
    height = width = 6
    for name in TRANSFORM_NAMES:
        p1 = pixel_permutation(name, height, width)
        p2 = pixel_permutation(name, height, width, 2)
        inv = pixel_permutation(name, height, width, -1)
        assert torch.equal(compose_permutations(p1, p1), p2)
        assert torch.equal(invert_permutation(p1), inv)
        assert torch.equal(compose_permutations(inv, p1), torch.arange(36))
    x = torch.randn(3, height, width)
    a, b = pixel_permutation("rot90", 6, 6), pixel_permutation("scramble_left_vertical", 6, 6)
    both = apply_permutation(compose_permutations(a, b), x)
    assert torch.equal(both, apply_permutation(a, apply_permutation(b, x)))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.uint8], ids=str)
def test_apply_keeps_dtype_device_and_batches(device, dtype):
    x = (torch.rand(2, 3, 4, 4) * 100).to(dtype=dtype, device=device)
    out = apply_transform("scramble_rotate", x)
    assert out.dtype == dtype and out.device == x.device and out.shape == x.shape
    for n, c in itertools.product(range(2), range(3)):
        assert torch.equal(out[n, c], apply_transform("scramble_rotate", x[n, c]))
    # per-sample permutations broadcast over channels
    perms = torch.stack([pixel_permutation("rot90", 4, 4, k) for k in (1, 3)])[:, None]
    per_sample = apply_permutation(perms, x)
    assert torch.equal(per_sample[0], apply_transform("rot90", x[0]))
    assert torch.equal(per_sample[1], apply_transform("rot90", x[1], 3))
    with pytest.raises(ValueError, match="does not fit images"):
        apply_permutation(torch.arange(9), x)


# --- D4 -------------------------------------------------------------------------------------

D4 = [(f, r) for f in (0, 1) for r in range(4)]


def _d4_product(g1, g2):
    (f1, r1), (f2, r2) = g1, g2
    return (f1 ^ f2, (r1 + (-1) ** f1 * r2) % 4)


@pytest.mark.parametrize("size", [1, 2, 5, 6], ids=lambda s: f"{s}x{s}")
def test_d4_elements_are_distinct_and_follow_the_product_rule(size):
    x = torch.randn(2, size, size)
    images = {g: d4_image_action(*g, x) for g in D4}
    if size > 1:
        for g1, g2 in itertools.combinations(D4, 2):
            assert not torch.equal(images[g1], images[g2]), (g1, g2)
    for g1, g2 in itertools.product(D4, D4):
        lhs = d4_image_action(*g1, d4_image_action(*g2, x))
        assert torch.equal(lhs, images[_d4_product(g1, g2)]), (g1, g2)


def test_d4_generators_match_torch_rot90_and_flip():
    x = torch.randn(3, 7, 7)
    assert torch.equal(d4_image_action(0, 1, x), torch.rot90(x, 1, dims=(-2, -1)))
    assert torch.equal(d4_image_action(1, 0, x), torch.flip(x, dims=[-2]))
    assert torch.equal(d4_image_action(0, 0, x), x)
    for f, r in D4:
        expected = torch.rot90(x.flip(-2) if f else x, r, dims=(-2, -1))
        assert torch.equal(d4_image_action(f, r, x), expected)
        assert torch.equal(d4_image_action(f, r + 4, x), expected)
        assert torch.equal(apply_permutation(d4_permutation(f, r, 7, 7), x), expected)


def test_d4_rejects_bad_elements_and_non_square_images():
    with pytest.raises(ValueError, match=r"f must be 0 or 1 and r an int, got \(2, 0\)"):
        d4_image_action(2, 0, torch.zeros(3, 3))
    with pytest.raises(ValueError, match=r"must be integers, got \(0, 1\.5\)"):
        d4_image_action(0, 1.5, torch.zeros(3, 3))
    with pytest.raises(ValueError, match="f must be 0 or 1"):
        d4_image_action(True, 0, torch.zeros(3, 3))
    x = torch.randn(3, 3)
    assert torch.equal(
        d4_image_action(torch.tensor(1), torch.tensor(-1), x), d4_image_action(1, 3, x)
    )
    with pytest.raises(ValueError, match=r"rot90.*square.*4x5"):
        d4_image_action(0, 1, torch.zeros(4, 5))
