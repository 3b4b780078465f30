"""A number that belongs to a reference row must be stated with that row's entity: "NPI A wrote
230 and NPI B 245" does not state A's 245. And number forms that were misread: cents stated
for dollars, the ends of a range, thousands written with dots."""

from __future__ import annotations

import duckdb
import pytest

from loopwright.healthcare.check import (
    Reference,
    check_answer,
    check_golden,
    entity_fact,
    find_numbers,
    number_fact,
)
from loopwright.healthcare.golden import GOLDEN_QUESTIONS, get_question

A, B, C = "1111111112", "2222222228", "1333333331"
TOP3 = get_question("humira_ca_top10").key_facts(
    Reference(("PRESCRIBER_NPI_NBR", "rx_count"), ((A, 245), (B, 230), (C, 100)))
)  # A wrote 245, B 230, C 100: 575 in all


@pytest.mark.parametrize(
    "answer",
    [
        f"NPI {A} wrote 230 claims and NPI {B} wrote 245. Total 575.",
        f"NPI {B} wrote 245 claims and NPI {A} 230. Total 575.",
        f"| NPI | Rx |\n|---|---|\n| {A} | 230 |\n| {B} | 245 |\n| {C} | 100 |\n\nTotal: 575.",
        f"1. NPI {A}: 230 prescriptions\n2. NPI {B}: 245 prescriptions\n3. NPI {C}: 100\n\n575.",
        f"NPI {A} (230 claims) leads, followed by NPI {B} (245). The top 3 wrote 575.",
        f"NPI {A} and NPI {B} wrote 230 and 245 claims respectively; 575 in all.",
        f"NPI {A} and NPI {B} wrote 230 and 245 claims; 575 in all.",  # in order, as read
        f"230 claims by NPI {A} and 245 by NPI {B}; 575 in total.",
        f"NPI {A} is the top prescriber. NPI {B} wrote 245 claims, of 575 in the top 10.",
        f"NPI {A} and NPI {B} lead. They wrote 230 and 245 claims; 575 in all.",
        f"**NPI {A}** tops the list\n- Claims: 230\n\n**NPI {B}**\n- Claims: 245\n\nTotal 575.",
    ],
    ids=["sentence", "sentence-reversed", "table", "numbered", "parentheses", "respectively",
         "parallel-lists", "numbers-first", "next-sentence", "they-wrote", "sub-bullets"],
)  # fmt: skip
def test_a_number_stated_with_another_rows_entity_is_not_its_value(answer: str) -> None:
    verdict = check_answer(answer, TOP3)
    assert not verdict.passed
    [missing] = verdict.missing
    assert missing.fact.label == "top prescriber's prescriptions"
    assert missing.hint == f"the answer states 245 only with another entity than {A}"


@pytest.mark.parametrize(
    "answer",
    [
        f"NPI {A} wrote 245 claims and NPI {B} wrote 230. Total 575.",
        f"| NPI | Rx |\n|---|---|\n| {A} | 245 |\n| {B} | 230 |\n| {C} | 100 |\n\nTotal: 575.",
        f"| Rx | NPI |\n|---|---|\n| 245 | {A} |\n| 230 | {B} |\n\nThe top 10 wrote 575.",
        f"1. NPI {A}: 245 prescriptions\n2. NPI {B}: 230 prescriptions\n3. NPI {C}: 100\n\n575.",
        f"NPI {A} (245 claims) leads, followed by NPI {B} (230). The top 3 wrote 575.",
        f"NPI {A} and NPI {B} wrote 245 and 230 claims respectively; 575 in all.",
        f"NPI {A} and NPI {B} wrote 245 and 230 claims, out of 575.",
        f"245 claims by NPI {A} and 230 by NPI {B}; 575 in total.",
        f"245 and 230 claims were written by NPI {A} and NPI {B}; 575 in total.",
        f"With 245 claims, NPI {A} leads; NPI {B} has 230. Total 575.",
        f"NPI {A} is the top prescriber. It wrote 245 claims, of 575 in the top 10.",
        f"Top prescribers: NPI {A}, NPI {B} and NPI {C}. The top one wrote 245; together 575.",
        f"**NPI {A}** tops the list\n- Claims: 245\n\n**NPI {B}**\n- Claims: 230\n\nTotal 575.",
        f"NPI {A} leads.\n\nThe leader wrote 245 of the 575 prescriptions.",  # no one else named
        f"The top prescriber wrote 245 of the 575 prescriptions: NPI {A}.",
    ],
    ids=["sentence", "table", "number-column-first", "numbered", "parentheses", "respectively",
         "parallel-lists-and-total", "numbers-first", "number-list-first", "number-opens",
         "next-sentence", "list-then-top", "sub-bullets", "next-paragraph", "named-after"],
)  # fmt: skip
def test_a_number_stated_with_its_entity_passes_however_laid_out(answer: str) -> None:
    verdict = check_answer(answer, TOP3)
    assert verdict.passed, verdict.reasons


def test_a_total_is_nobodys_and_a_tie_is_any_tied_entitys() -> None:
    """The top 10's total is not a row's value: it may stand with any prescriber."""
    assert check_answer(f"NPI {A} wrote 245; NPI {C} brings the top 3 to 575.", TOP3).passed
    facts = get_question("eliquis_top_state").key_facts(
        Reference(("PRESCRIBER_NPI_STATE_CD", "rx_count"), (("CA", 2), ("TX", 2), ("NY", 1)))
    )
    assert check_answer("Texas and California tie, with 2 each; New York has 1.", facts).passed
    assert check_answer("New York has 1; TX has 2.", facts).passed
    assert not check_answer("Texas has the most; New York has 2.", facts).passed


def test_a_longer_name_is_its_own_entity() -> None:
    """ "Virginia" inside "West Virginia" is West Virginia's: 90 there is not Virginia's."""
    facts = get_question("providers_by_state").key_facts(
        Reference(("state", "providers"), (("VA", 90), ("WV", 80)))
    )
    assert not check_answer("West Virginia has 90 providers and Virginia 80.", facts).passed
    assert check_answer("Virginia has 90 providers and West Virginia 80.", facts).passed
    assert check_answer("Virginia's 90 providers lead West Virginia's 80.", facts).passed


def test_months_and_quarters_pair_with_their_counts() -> None:
    months = get_question("ozempic_monthly").key_facts(
        Reference(("month", "fills"), (("2024-03", 245), ("2024-04", 200), ("2024-05", 230)))
    )
    assert check_answer("March 2024 had the most fills, 245; April 2024 had 200.", months).passed
    assert not check_answer("March 2024 had the most; April 2024 had 245.", months).passed
    table = (
        "| month | fills |\n|---|---|\n| 2024-03 | 200 |\n| 2024-04 | 245 |\n\nPeak: March 2024."
    )
    assert not check_answer(table, months).passed
    quarters = get_question("busiest_quarter_2024").key_facts(
        Reference(("quarter", "claims"), ((1, 2500), (2, 2663), (3, 2600)))
    )
    assert check_answer("Q2 2024 was the busiest, with 2,663 claims (Q3: 2,600).", quarters).passed
    assert not check_answer("Q2 2024 was the busiest; Q3 2024 had 2,663.", quarters).passed


def test_a_zero_in_words_pairs_too() -> None:
    columns = ("npi_number", "first_name", "last_name", "specialty", "state", "humira_rx",
               "humira_payments")  # fmt: skip
    rows = ((A, "Ann", "Lee", "Rheumatology", "CA", 40, 0.0),
            (B, "Bob", "Ray", "Dermatology", "TX", 30, 5000.0))  # fmt: skip
    facts = get_question("top_humira_prescriber").key_facts(Reference(columns, rows))
    honest = f"Dr. Ann Lee (NPI {A}, rheumatologist) received no HUMIRA-related payments."
    assert check_answer(honest, facts).passed
    wrong = (
        f"Dr. Ann Lee (NPI {A}, rheumatologist) received $5,000 in HUMIRA-related payments; "
        f"NPI {B} received no HUMIRA-related payments."
    )
    assert not check_answer(wrong, facts).passed


#: the golden questions with facts of a row, paired with that row's entity
PAIRED = {
    "humira_ca_top10", "humira_specialties", "payments_by_specialty", "ozempic_monthly",
    "condition_costs", "eliquis_top_state", "top_drug_spend", "top_manufacturer_payments",
    "payment_natures", "jardiance_prescriber_payments", "afib_cardiologists",
    "providers_by_state", "experience_by_specialty", "busiest_quarter_2024",
    "place_of_service_costs", "texas_conditions", "top_humira_prescriber", "jardiance_by_payer",
    "t2d_peak_month", "humira_schools", "charge_by_specialty",
}  # fmt: skip


def test_which_golden_facts_are_paired(claims_con: duckdb.DuckDBPyConnection) -> None:
    """Facts of a row (the top entity's value, its share) pair with that row's entity; totals
    and questions whose facts are not about rows of entities do not."""
    paired: set[str] = set()
    for question in GOLDEN_QUESTIONS:
        facts = question.key_facts(question.reference(claims_con))
        entities = {fact.label for fact in facts if fact.kind == "entity"}
        for fact in facts:
            if fact.of_entity is not None:
                assert fact.kind == "number", fact
                assert fact.of_entity in entities, fact
                paired.add(question.id)
    assert paired == PAIRED
    top10 = get_question("humira_ca_top10")
    facts = {f.label: f for f in top10.key_facts(top10.reference(claims_con))}
    assert facts["top prescriber's prescriptions"].of_entity == "top prescriber NPI"
    assert facts["total prescriptions of the top 10"].of_entity is None


def test_an_entity_missing_from_the_facts_is_a_clear_error() -> None:
    count = number_fact("their prescriptions", 245, of_entity="top prescriber")
    with pytest.raises(ValueError, match=r"'top prescriber'.*not among the facts.*of_entity"):
        check_answer("NPI 1 wrote 245.", [count])
    assert check_answer("NPI 1 wrote 245.", [count, entity_fact("top prescriber", "1")]).passed


# --- on the generated data ------------------------------------------------------------------


def test_golden_answers_swapping_the_top_two_rows_fail(
    claims_con: duckdb.DuckDBPyConnection,
) -> None:
    question = get_question("humira_ca_top10")
    reference = question.reference(claims_con)
    (first, top), (second, runner_up) = reference.rows[:2]
    assert top != runner_up, "the test needs a single top prescriber"
    total = sum(n for _, n in reference.rows)
    right = f"NPI {first} wrote {top} claims and NPI {second} wrote {runner_up}; total {total}."
    swapped = f"NPI {first} wrote {runner_up} claims and NPI {second} wrote {top}; total {total}."
    assert check_golden(question, right, claims_con).passed
    verdict = check_golden(question, swapped, claims_con)
    assert not verdict.passed
    assert [r.fact.label for r in verdict.missing] == ["top prescriber's prescriptions"]

    states = get_question("eliquis_top_state")
    (state, count), (other, fewer) = states.reference(claims_con).rows[:2]
    assert check_golden(states, f"{state} has {count}; {other} has {fewer}.", claims_con).passed
    swapped = f"{state} has the most; {other} has {count}."
    assert not check_golden(states, swapped, claims_con).passed


def test_inpatient_and_office_charges_must_not_be_swapped(
    claims_con: duckdb.DuckDBPyConnection,
) -> None:
    question = get_question("place_of_service_costs")
    charges = dict(
        (place, avg) for place, _, avg in question.reference(claims_con).rows
    )  # fmt: skip
    inpatient, office = charges["Inpatient hospital"], charges["Office"]
    right = f"Inpatient hospital claims average ${inpatient:,.2f}, office visits ${office:,.2f}."
    swapped = f"Inpatient hospital claims average ${office:,.2f}, office visits ${inpatient:,.2f}."
    assert check_golden(question, right, claims_con).passed
    assert not check_golden(question, swapped, claims_con).passed
    unnamed = f"The averages are ${inpatient:,.2f} and ${office:,.2f}."  # which is which?
    assert not check_golden(question, unnamed, claims_con).passed


# --- number forms ---------------------------------------------------------------------------


def test_cents_are_hundredths_of_a_dollar() -> None:
    dollars = number_fact("their payments", 245.0)
    assert not check_answer("They received 245 cents.", [dollars]).passed
    assert not check_answer("They received 245\u00a2.", [dollars]).passed
    assert check_answer("They received $245.", [dollars]).passed
    small = number_fact("average copay", 2.45)
    assert check_answer("The average copay was 245 cents.", [small]).passed
    assert [n.value for n in find_numbers("12 percent, 245 cents")] == [12.0, 2.45]


@pytest.mark.parametrize(
    ("answer", "accepted"),
    [
        ("The top prescriber wrote between 200 and 250 prescriptions.", False),
        ("The top prescriber wrote between 200 and 245 prescriptions.", False),
        ("The top prescriber wrote between 245 and 300 prescriptions.", False),
        ("It is between **230** and **245**.", False),
        ("The difference between 245 and 230 is 15.", True),  # two values compared
        ("Fills rose from 230 to 245.", True),  # a change states both
    ],
)
def test_the_ends_of_a_range_are_not_stated_values(answer: str, accepted: bool) -> None:
    verdict = check_answer(answer, [number_fact("top prescriber's prescriptions", 245)])
    assert verdict.passed is accepted, verdict.reasons


@pytest.mark.parametrize(
    ("written", "values"),
    [
        ("1.203.456 claims", [1_203_456.0]),
        ("12.000.000 dollars", [12_000_000.0]),
        ("1.203 claims", [1.203]),  # one dot group: a decimal
        ("1.234.5678", [1.234]),  # a group of four: not thousands
    ],
)
def test_thousands_written_with_dots(written: str, values: list[float]) -> None:
    assert [n.value for n in find_numbers(written)] == values


def test_a_count_with_thousands_dots_passes() -> None:
    assert check_answer("There were 1.203.456 claims.", [number_fact("claims", 1_203_456)]).passed
    assert not check_answer("There were 1.203 claims.", [number_fact("claims", 1_203)]).passed
