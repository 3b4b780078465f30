"""Wrong verdicts of the answer checker found by an adversarial hunt: wrong answers it passed
because the reference number stood in the text without being stated as the answer."""

from __future__ import annotations

import pytest

from loopwright.healthcare.check import check_answer, find_numbers, number_fact

COUNT = number_fact("top prescriber's prescriptions", 245)


@pytest.mark.parametrize(
    "answer",
    [
        "It is not 245; the top prescriber wrote 312 prescriptions.",
        "The top prescriber wrote 312 prescriptions (not 245, as an earlier run said).",
        "The count isn't **245**: it is 312.",
        "The top prescriber wrote 312 rather than 245 prescriptions.",
        "The top prescriber wrote 312 prescriptions instead of 245.",
    ],
)
def test_a_denied_number_is_not_stated(answer: str) -> None:
    verdict = check_answer(answer, [COUNT])
    assert not verdict.passed, verdict.reasons


@pytest.mark.parametrize(
    "answer",
    [
        "The top prescriber wrote 245, not 254, prescriptions.",
        "The top prescriber wrote not more than 245 prescriptions... in fact exactly 245.",
        "The count did not exceed 245.",
        "No prescriber wrote more: 245 is the top count.",
    ],
)
def test_a_number_beside_a_denial_is_still_stated(answer: str) -> None:
    verdict = check_answer(answer, [COUNT])
    assert verdict.passed, verdict.reasons


@pytest.mark.parametrize(
    "answer",
    [
        "The top prescriber wrote 245 or 312 prescriptions.",
        "Either 240, 245 or 250 prescriptions, depending on how refills are counted.",
        "Somewhere between 200 and 300, likely 245 or 250.",
        "The top prescriber wrote 245 and/or 250 prescriptions.",
    ],
)
def test_numbers_offered_as_alternatives_are_not_stated(answer: str) -> None:
    verdict = check_answer(answer, [COUNT])
    assert not verdict.passed, verdict.reasons


def test_alternatives_of_a_share_are_not_stated_either() -> None:
    share = number_fact("share", 12.3, percent=True)
    assert not check_answer("Their share is 12.3% or 13.1%.", [share]).passed


@pytest.mark.parametrize(
    "answer",
    [
        "The top prescriber wrote 245 fills, or 12.3% of all of them.",
        "Medicare paid for 245, or 12.3%, of the claims.",
        "245 or more: the top prescriber wrote 245 prescriptions.",
        "The top prescriber wrote 245 or so prescriptions.",
        "Counts: 245, 120, 80.",
        "245 vs 312 in the year before.",
    ],
)
def test_a_number_restated_or_listed_is_still_stated(answer: str) -> None:
    share = number_fact("share", 12.3, percent=True, required="12.3%" in answer)
    verdict = check_answer(answer, [COUNT, share])
    assert verdict.passed, verdict.reasons


@pytest.mark.parametrize(
    ("answer", "value"),
    [
        ("Call 555-245-1234 for details: the top prescriber wrote 312.", 245),
        ("Call (555) 245-1234 for details: the top prescriber wrote 312.", 245),
        ("HUMIRA (NDC 00074-4339-02) was filled 312 times.", 4339),
        ("Q4 2024 had the most claims: 312.", 2024),
        ("2024 Q4 had the most claims: 312.", 2024),
        ("March 2024 had the most claims: 312.", 2024),
        ("On March 5, 2024 the most claims were filed: 312.", 5),
        ("On 5 March 2024 the most claims were filed: 312.", 2024),
        ("The top 10 prescribers wrote 312 prescriptions; the leader wrote 57.", 10),
        ("Of the bottom 5 states, Alaska had 12 claims.", 5),
    ],
)
def test_the_digits_of_dates_phone_numbers_codes_and_rankings_are_no_values(
    answer: str, value: int
) -> None:
    """The reference number only inside an unrelated figure is not stated."""
    verdict = check_answer(answer, [number_fact("count", value)])
    assert not verdict.passed, verdict.reasons


def test_numbers_beside_dates_and_rankings_are_still_found() -> None:
    def values(text: str) -> list[float]:
        return [n.value for n in find_numbers(text)]

    assert values("Q4 2024 saw 2,663 claims (2663).") == [2663.0, 2663.0]
    assert values("March 2024: 53 fills; December 2024: 46") == [53.0, 46.0]
    assert values("The top 10 wrote 57; the top 10 000 prescribers wrote 9,000.") == [
        57.0,
        10_000.0,
        9_000.0,
    ]
    assert values("from 10-20 fills, in 2023-2024") == [10.0, 20.0, 2023.0, 2024.0]
    assert check_answer(
        "The top 10 prescribers wrote 57 prescriptions; the leader wrote 15.",
        [number_fact("total", 57), number_fact("top", 15)],
    ).passed
