"""The public equivariance-testing utility: it must pass, fail and explain correctly."""

import pytest
import torch

from bayesym.groups import d4_index, d4_subgroup, translation_group
from bayesym.testing import (
    assert_equivariant,
    assert_not_equivariant,
    default_tolerances,
    equivariance_errors,
    image_action,
    regular_action,
    translation_action,
    trivial_action,
)

D4, C4, D1 = d4_subgroup("D4"), d4_subgroup("C4"), d4_subgroup("D1")


def _x(dtype=torch.float64):
    return torch.randn(2, 3, 5, 5, dtype=dtype)


def test_pointwise_map_is_d4_equivariant_and_sum_is_invariant():
    x = _x()
    assert_equivariant(torch.tanh, D4, x, image_action(D4), image_action(D4))
    total = lambda t: t.sum(dim=(-2, -1))  # noqa: E731
    assert_equivariant(total, D4, x, image_action(D4), trivial_action())


def test_failure_names_the_element_and_error():
    x = _x()
    flip_cols = lambda t: t.flip(-1)  # noqa: E731 - commutes with R^2 and F, not with R
    with pytest.raises(AssertionError, match=r"element 'R' of C4 \(index 1\): max error") as info:
        assert_equivariant(flip_cols, C4, x, image_action(C4), image_action(C4))
    assert "'R^3'" in str(info.value) and "'R^2'" not in str(info.value)


def test_not_equivariant_any_versus_all():
    x = _x()
    flip_cols = lambda t: t.flip(-1)  # noqa: E731
    assert_not_equivariant(flip_cols, C4, x, image_action(C4), image_action(C4))
    with pytest.raises(AssertionError, match=r"'e' of C4.*'R\^2' of C4"):
        assert_not_equivariant(flip_cols, C4, x, image_action(C4), image_action(C4), require="all")
    assert_not_equivariant(flip_cols, [1, 3], x, image_action(C4), image_action(C4), require="all")
    with pytest.raises(AssertionError, match="look equivariant"):
        assert_not_equivariant(torch.tanh, D4, x, image_action(D4), image_action(D4))


def test_subgroup_elements_are_mapped_into_the_action_group():
    x = _x()
    flip_cols = lambda t: t.flip(-1)  # noqa: E731
    # D1 = {e, F}; F (row flip) commutes with a column flip, so this passes only if the
    # D1 element F is mapped to D4 index 4 (and not read as D4 index 1 = R).
    assert_equivariant(flip_cols, D1, x, image_action(D4), image_action(D4))
    errors = equivariance_errors(flip_cols, [0, 1], x, image_action(D4), image_action(D4))
    assert errors[0] == 0.0 and errors[1] > 0.1
    with pytest.raises(ValueError, match="does not contain the tested group 'D4'"):
        assert_equivariant(flip_cols, D4, x, image_action(C4), image_action(C4))


def test_tolerances_depend_on_dtype():
    assert default_tolerances(torch.float64) == (1e-10, 1e-10)
    assert default_tolerances(torch.float32) == (1e-4, 1e-4)
    with pytest.raises(TypeError, match="floating"):
        default_tolerances(torch.int64)
    noisy = lambda t: t + 1e-7 * torch.randn_like(t)  # noqa: E731
    assert_equivariant(noisy, C4, _x(torch.float32), image_action(C4), image_action(C4))
    with pytest.raises(AssertionError, match="float64"):
        assert_equivariant(noisy, C4, _x(), image_action(C4), image_action(C4))
    assert_equivariant(noisy, C4, _x(), image_action(C4), image_action(C4), atol=1e-5)


def test_regular_and_translation_actions():
    y = torch.randn(2, 3, 4, 5, 5, dtype=torch.float64)
    assert_equivariant(torch.relu, C4, y, regular_action(C4), regular_action(C4))
    group_mean = lambda t: t.mean(dim=-3)  # noqa: E731
    assert_equivariant(group_mean, C4, y, regular_action(C4), image_action(C4))
    shifts = translation_group(5, 5)
    assert_equivariant(
        torch.relu, shifts, y, translation_action(shifts), translation_action(shifts)
    )
    corner = lambda t: t[..., :2, :2]  # noqa: E731
    with pytest.raises(ValueError, match=r"expected \[\.\.\., 5, 5\], got"):
        assert_equivariant(
            corner, shifts, y, translation_action(shifts), translation_action(shifts)
        )


def test_bad_outputs_raise_clear_errors():
    x = _x()
    with pytest.raises(ValueError, match="shape"):
        assert_equivariant(torch.relu, C4, x, image_action(C4), lambda t, g: t[..., :4])
    with pytest.raises(ValueError, match="NaN"):
        assert_equivariant(lambda t: t / 0 * 0, C4, x, image_action(C4), image_action(C4))
    with pytest.raises(ValueError, match="require"):
        assert_not_equivariant(
            torch.relu, C4, x, image_action(C4), image_action(C4), require="some"
        )
    with pytest.raises(ValueError, match="no group elements"):
        assert_equivariant(torch.relu, [], x, image_action(C4), image_action(C4))


def test_plain_callables_as_actions():
    x = _x()
    rot = lambda t, k: torch.rot90(t, k, (-2, -1))  # noqa: E731
    assert_equivariant(torch.relu, range(4), x, rot, rot)
    with pytest.raises(AssertionError, match="element 1"):
        assert_equivariant(lambda t: t.flip(-1), [d4_index(0, 1)], x, rot, rot)
