"""Number forms the answer checker misread: a change in percentage points, floats as Python
prints them, and alternatives in words."""

from __future__ import annotations

import pytest

from loopwright.healthcare.check import check_answer, find_numbers, number_fact

SHARE_CHANGE = number_fact("change in HUMIRA's share", 12.3, percent=True)
TOTAL = number_fact("total paid", 1_234_567.0)
COUNT = number_fact("prescribers", 3)


@pytest.mark.parametrize(
    "answer",
    [
        "HUMIRA's share rose 12.3 percentage points.",
        "HUMIRA's share rose by 12.3 percentage point over the year.",
        "HUMIRA's share rose 12.3 pp.",
    ],
)
def test_a_change_in_percentage_points_states_a_percentage(answer: str) -> None:
    verdict = check_answer(answer, [SHARE_CHANGE])
    assert verdict.passed, verdict.reasons
    assert [number.percent for number in find_numbers(answer)] == [True]


def test_twelve_point_three_points_of_something_else_is_not_a_percentage() -> None:
    assert not check_answer("The score rose 12.3 on the index.", [SHARE_CHANGE]).passed


@pytest.mark.parametrize(
    ("answer", "passes"),
    [
        ("The total paid was 1.234567e+06 dollars.", True),
        ("The total paid was 1.234567E6.", True),
        ("The total paid was about 1.2e6.", True),
        ("The total paid was 1.234567e+05 dollars.", False),
        ("The total paid was 1.234567 (in millions, e6 scale).", False),
    ],
)
def test_a_float_in_scientific_notation_is_read_whole(answer: str, passes: bool) -> None:
    verdict = check_answer(answer, [TOTAL])
    assert verdict.passed is passes, verdict.reasons


def test_scientific_notation_does_not_state_its_mantissa() -> None:
    """Before, "1.2e6" was read as 1.2: a fact of 1.2 passed on a value a million times it."""
    ratio = number_fact("ratio", 1.2)
    assert not check_answer("The ratio was 1.2e6.", [ratio]).passed
    assert [number.value for number in find_numbers("1.5e-3 and 2E+2")] == [0.0015, 200.0]


@pytest.mark.parametrize(
    "answer",
    [
        "Two or three prescribers wrote most of the claims.",
        "Either two, three or four prescribers, depending on the cut-off.",
        "Three and/or four prescribers.",
    ],
)
def test_numbers_in_words_offered_as_alternatives_are_not_stated(answer: str) -> None:
    verdict = check_answer(answer, [COUNT])
    assert not verdict.passed, verdict.reasons


@pytest.mark.parametrize(
    "answer",
    [
        "Three prescribers wrote most of the claims.",
        "Three prescribers, or one in ten of those in the state, wrote most of them.",
        "Three prescribers and two pharmacies.",
    ],
)
def test_a_number_in_words_beside_others_is_still_stated(answer: str) -> None:
    verdict = check_answer(answer, [COUNT])
    assert verdict.passed, verdict.reasons
