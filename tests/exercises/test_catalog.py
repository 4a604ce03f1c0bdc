"""Checks every exercise must pass (like scikit-learn's common tests), and the catalog's helpers."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from lossbench.exercises import EXERCISES, check, get_exercise
from lossbench.exercises import catalog
from lossbench.exercises import references as ref
from lossbench.exercises.catalog import close, reproduces
from lossbench.exercises.cases import Case
from lossbench.exercises.forbidden import Forbidden

NAMES = list(EXERCISES)


@pytest.mark.parametrize("name", NAMES)
def test_the_reference_passes_its_own_exercise(name, monkeypatch):
    # the references call the library themselves, so they are checked with the guard off
    monkeypatch.setitem(catalog.EXERCISES, name, replace(EXERCISES[name], forbidden=Forbidden()))
    assert check(name, getattr(ref, name)) is None


@pytest.mark.parametrize("name", NAMES)
def test_every_exercise_is_described_for_the_student(name):
    ex = get_exercise(name)
    assert ex.name == name and ex.signature.startswith(f"{name}(")
    assert "\n" not in ex.title and ex.allowed
    assert ex.topic in ("losses", "thresholds") and ex.points > 0
    assert ex.mistakes, "every exercise recognises at least one known mistake"
    if ex.output != "number":
        assert ex.nan_hint and ex.forbidden.functions and ex.forbidden.aten_ops


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ValueError) as info:
        get_exercise("softmax")
    assert str(info.value) == ("Expected `name` to be one of 'softmax_ce', 'bce', 'bce_probs', 'mse', 'dlogits', "
                               "'accuracy_multi', 'best_threshold', but got 'softmax'. List them with "
                               "`lossbench exercises list`.")


def test_close_compares_shapes_and_refuses_non_finite_values():
    assert close(torch.tensor([1.0, 2.0]), [1.0, 2.0])
    assert not close(torch.tensor([1.0, 2.0]), torch.tensor([[1.0, 2.0]]))
    assert not close(float("nan"), float("nan"))
    assert not close(1.0 + 1e-5, 1.0)


def test_a_mistake_that_gives_the_right_answer_on_a_case_explains_nothing():
    case = Case("basic", (torch.tensor([0.0, 0.0]), torch.tensor([1.0, 0.0])), torch.tensor(0.6931471805599453),
                "two zeros")
    swapped = reproduces(lambda z, y: ref.bce(z, 1 - y))  # at z = 0 swapping the labels changes nothing
    assert not swapped(case, torch.tensor(0.6931471805599453))
    doubled = reproduces(lambda z, y: 2 * ref.bce(z, y))
    assert doubled(case, torch.tensor(2 * 0.6931471805599453))
    assert not reproduces(lambda z, y: 1 / 0)(case, torch.tensor(1.0))  # a mistake that raises explains nothing


def test_close_measures_the_tolerance_against_the_expected_value():
    """`atol + rtol * |expected|`: 999999 is within 1e-6 of 1e6 (1.000000001 allowed), not 1e6 of 999999 (0.999999...)."""
    assert close(999_999.0, 1_000_000.0)
    assert not close(1_000_000.0, 999_999.0)


@pytest.mark.parametrize("actual, near", [
    pytest.param(1.005, True, id="half-a-percent-off"),
    pytest.param(0.995, True, id="half-a-percent-under"),
    pytest.param(1.05, False, id="five-percent-off"),
    pytest.param(1.0, False, id="exact"),
])
def test_near_but_not_exact_means_within_one_percent_and_outside_the_tolerance(actual, near):
    """The "close but not exact near p = 0 or 1" hint is for answers within 1% of the expected value, not 5%."""
    case = Case("near 0 and 1", (), torch.tensor(1.0, dtype=torch.float64), "p near 0 and 1")
    assert catalog._near_but_not_exact(case, torch.tensor(actual, dtype=torch.float64)) is near
