"""Answers that state each number with its own row's entity, in the words an LLM uses, pass:
"$445.21 per office visit", "for an office visit", "$7,278.02 paid to NPI A", and a table laid
out sideways (entities across the header, their values across the next row)."""

from __future__ import annotations

import duckdb
import pytest

from loopwright.healthcare.check import Reference, check_answer, check_golden
from loopwright.healthcare.golden import get_question

A, B, C = "1111111112", "2222222228", "1333333331"
TOP3 = get_question("humira_ca_top10").key_facts(
    Reference(("PRESCRIBER_NPI_NBR", "rx_count"), ((A, 245), (B, 230), (C, 100)))
)  # A wrote 245, B 230, C 100: 575 in all


@pytest.mark.parametrize(
    "template",
    [
        "The average inpatient hospital charge is {inpatient} per claim, compared with {office} "
        "per office visit.",
        "Inpatient hospital claims average {inpatient}, versus {office} for an office visit.",
        "The average charge is {inpatient} for inpatient hospital claims and {office} in an "
        "office setting.",
        "An inpatient hospital claim averages {inpatient}; that is about 18 times the {office} "
        "paid per office visit.",
    ],
    ids=["per", "for-an", "in-an", "paid-per"],
)
def test_a_charge_stated_before_its_place_of_service_is_that_places(
    claims_con: duckdb.DuckDBPyConnection, template: str
) -> None:
    question = get_question("place_of_service_costs")
    charges = {place: avg for place, _, avg in question.reference(claims_con).rows}
    inpatient, office = charges["Inpatient hospital"], charges["Office"]
    right = template.format(inpatient=f"${inpatient:,.2f}", office=f"${office:,.2f}")
    verdict = check_golden(question, right, claims_con)
    assert verdict.passed, verdict.reasons
    swapped = template.format(inpatient=f"${office:,.2f}", office=f"${inpatient:,.2f}")
    assert not check_golden(question, swapped, claims_con).passed


def test_a_payment_stated_before_the_npi_it_was_paid_to_is_that_npis(
    claims_con: duckdb.DuckDBPyConnection,
) -> None:
    question = get_question("jardiance_prescriber_payments")
    reference = question.reference(claims_con)
    (top, most), (second, less) = reference.rows[:2]
    total = sum(paid for _, paid in reference.rows)
    right = (
        f"In total they received ${total:,.2f}. NPI {second} received ${less:,.2f}, less than "
        f"the ${most:,.2f} paid to NPI {top}, the top recipient."
    )
    verdict = check_golden(question, right, claims_con)
    assert verdict.passed, verdict.reasons
    swapped = (
        f"In total they received ${total:,.2f}. NPI {top} received ${most:,.2f}, more than "
        f"the ${less:,.2f} paid to NPI {second}."
    )
    assert check_golden(question, swapped, claims_con).passed  # A's value, stated with A
    wrong = (
        f"In total ${total:,.2f}. NPI {top} got ${less:,.2f}; ${most:,.2f} went to NPI {second}."
    )
    assert not check_golden(question, wrong, claims_con).passed


def test_a_sideways_table_pairs_its_header_of_entities_with_the_row_of_values() -> None:
    sideways = f"| NPI | {A} | {B} | {C} |\n|---|---|---|---|\n| Rx | 245 | 230 | 100 |\n\n575."
    verdict = check_answer(sideways, TOP3)
    assert verdict.passed, verdict.reasons
    swapped = f"| NPI | {A} | {B} | {C} |\n|---|---|---|---|\n| Rx | 230 | 245 | 100 |\n\n575."
    verdict = check_answer(swapped, TOP3)
    assert not verdict.passed
    assert [r.fact.label for r in verdict.missing] == ["top prescriber's prescriptions"]


@pytest.mark.parametrize(
    "answer",
    [
        f"The top prescriber is NPI {A}, followed by NPI {B} and NPI {C}. The top prescriber "
        "wrote 245 claims; together they wrote 575.",
        f"NPI {A} wrote more than NPI {B}. It wrote 245 claims; 575 in all.",
        f"NPI {A} leads, ahead of NPI {B}. Their count: 245 claims. Total 575.",
        f"NPI {A} and NPI {C} lead, ahead of NPI {B}. They wrote 245 and 100; 575 in all.",
        f"NPI {B} wrote 230 claims, while NPI {A} wrote more. It wrote 245; total 575.",
    ],
    ids=["followed-by", "wrote-more-than", "ahead-of", "list-ahead-of", "while"],
)
def test_a_sentence_naming_no_one_may_speak_of_any_entity_the_sentence_before_names(
    answer: str,
) -> None:
    """Which of the entities of the sentence before "it" or "the top prescriber" means is
    not for the checker to guess: any of them may be the one (or, for a list, in order)."""
    verdict = check_answer(answer, TOP3)
    assert verdict.passed, verdict.reasons


def test_a_sentence_naming_no_one_after_one_naming_only_another_row_still_fails() -> None:
    answer = f"NPI {A} is first.\nNPI {B} is second. It wrote 245 claims; 575 in all."
    verdict = check_answer(answer, TOP3)
    assert not verdict.passed
    [missing] = verdict.missing
    assert missing.fact.label == "top prescriber's prescriptions"
