"""The selectors' configuration checks: one wording per kind, naming the class and the field."""

import dataclasses
from dataclasses import dataclass

import pytest

from bayesym.marglik import MarglikConfig
from bayesym.selectors.config_checks import (
    check_fields,
    check_non_negative,
    check_one_of,
    check_optional_positive_int,
    check_positive,
    check_positive_int,
    check_training,
)


@dataclass(frozen=True)
class _Toy:
    rate: float = 1.0
    count: int = 1
    kind: str = "a"
    training: object = MarglikConfig(learn_prior=False)


class _SubToy(_Toy):
    pass


def positive_rate(c):
    check_positive(c, "rate")


def non_negative_rate(c):
    check_non_negative(c, "rate")


def positive_int_count(c):
    check_positive_int(c, "count")


def optional_positive_int_count(c):
    check_optional_positive_int(c, "count")
    check_optional_positive_int(dataclasses.replace(c, count=None), "count")  # None passes


def kind_a_or_b(c):
    check_one_of(c, "kind", ("a", "b"))


def count_below_two(c):
    check_fields(c, ("count",), lambda v: v < 2, "must be < 2")


@pytest.mark.parametrize(
    "check, changes, message",
    [
        (positive_rate, {"rate": 0.0}, "_Toy.rate must be positive and finite, got 0.0"),
        (positive_rate, {"rate": float("nan")}, "_Toy.rate must be positive and finite, got nan"),
        (positive_rate, {"rate": True}, "_Toy.rate must be positive and finite, got True"),
        (non_negative_rate, {"rate": -1.0}, "_Toy.rate must be >= 0 and finite, got -1.0"),
        (positive_int_count, {"count": 0}, "_Toy.count must be a positive int, got 0"),
        (positive_int_count, {"count": 2.0}, "_Toy.count must be a positive int, got 2.0"),
        (
            optional_positive_int_count,
            {"count": 0},
            "_Toy.count must be a positive int or None, got 0",
        ),
        (
            optional_positive_int_count,
            {"count": True},
            "_Toy.count must be a positive int or None, got True",
        ),
        (kind_a_or_b, {"kind": "c"}, "_Toy.kind must be one of ('a', 'b'), got 'c'"),
        (count_below_two, {"count": 2}, "_Toy.count must be < 2, got 2"),
    ],
)
def test_each_check_names_class_field_requirement_and_value(check, changes, message):
    check(_Toy())  # the defaults pass
    with pytest.raises(ValueError) as error:
        check(_Toy(**changes))
    assert str(error.value) == message


def test_the_message_names_the_subclass():
    with pytest.raises(ValueError, match=r"^_SubToy\.rate must be positive"):
        check_positive(_SubToy(rate=-1.0), "rate")


def test_training_must_be_a_marglik_config_with_the_given_learn_prior():
    check_training(_Toy(), learn_prior=False, why="fixed")
    for training in (MarglikConfig(), "map"):
        with pytest.raises(ValueError) as error:
            check_training(_Toy(training=training), learn_prior=False, why="fixed")
        assert str(error.value) == (
            "_Toy.training must be a MarglikConfig with learn_prior=False (fixed)"
        )
    with pytest.raises(ValueError, match=r"with learn_prior=True \(learned\)"):
        check_training(_Toy(), learn_prior=True, why="learned")
