"""The answer checker: numbers however written, entities however worded, wrong facts rejected."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from loopwright.healthcare.check import (
    Reference,
    check_answer,
    check_golden,
    compare_csv,
    entity_fact,
    find_numbers,
    number_fact,
)
from loopwright.healthcare.golden import get_question, specialty_spellings, state_spellings

# --- numbers -------------------------------------------------------------------------------


def test_numbers_are_found_in_their_usual_formats() -> None:
    text = (
        "1,543 prescriptions (1543), about 1.5k fills, $1.2 million paid, 12.5% share, "
        "down -5.3%, 3 M claims, in Q4 2024"
    )
    found = [(n.value, n.percent) for n in find_numbers(text)]
    assert (1543.0, False) in found
    assert (1500.0, False) in found
    assert (1_200_000.0, False) in found
    assert (12.5, True) in found
    assert (-5.3, True) in found
    assert (3_000_000.0, False) in found
    assert (4.0, False) not in found  # the 4 of Q4 is not a number
    assert find_numbers("12 percent")[0].percent


@pytest.mark.parametrize(
    ("written", "accepted"),
    [
        ("1,543", True),
        ("1543", True),
        ("1,543.0", True),
        ("1.5k", True),  # the writer rounded to hundreds: 1,543 is within 50
        ("1.54 thousand", True),
        ("about 1,500", True),  # hedged: trailing zeros are rounding
        ("1,500", False),  # stated as exact, and it is not
        ("1k", False),  # rounding beyond 5% is not stating the number
        ("1,544", False),
        ("15.43%", False),  # a percentage is not a count
    ],
)
def test_a_count_accepts_only_its_own_value_and_honest_rounding(
    written: str, accepted: bool
) -> None:
    fact = number_fact("total prescriptions", 1543)
    assert check_answer(f"The total is {written} prescriptions.", [fact]).passed is accepted


@pytest.mark.parametrize(
    ("written", "accepted"),
    [("45.2%", True), ("45.2 percent", True), ("45%", True), ("0.452", True), ("47%", False)],
)
def test_a_percentage_accepts_percent_or_fraction(written: str, accepted: bool) -> None:
    fact = number_fact("share", 45.2, percent=True)
    assert check_answer(f"Their share is {written}.", [fact]).passed is accepted


def test_money_and_decimals_use_a_small_relative_tolerance() -> None:
    fact = number_fact("total payments", 18_343_673.24)
    for written in ("$18,343,673.24", "$18.34 million", "$18.3M", "18343673"):
        assert check_answer(f"They received {written}.", [fact]).passed, written
    assert not check_answer("They received $19.3M.", [fact]).passed
    average = number_fact("average charge", 6857.68)
    assert check_answer("The average charge was $6,858.", [average]).passed
    assert not check_answer("The average charge was $6,958.", [average]).passed


def test_a_decline_matches_a_negative_change_and_zero_matches_none() -> None:
    change = number_fact("change", -37.6, percent=True)
    assert check_answer("Fills fell by 37.6% over the period.", [change]).passed
    zero = number_fact("payments", 0)
    assert check_answer("They received no HUMIRA-related payments.", [zero]).passed
    assert check_answer("Payments: $0.", [zero]).passed


# --- entities ------------------------------------------------------------------------------


def test_entities_match_across_case_plurals_and_punctuation() -> None:
    specialty = entity_fact("top specialty", *specialty_spellings("Rheumatology"))
    for text in ("Rheumatology leads", "most are written by rheumatologists", "RHEUMATOLOGY"):
        assert check_answer(text, [specialty]).passed, text
    assert not check_answer("Dermatology leads", [specialty]).passed
    crohns = entity_fact("condition", "Crohn's disease")
    assert check_answer("Crohn\u2019s Disease costs the most", [crohns]).passed
    assert check_answer("crohns disease costs the most", [crohns]).passed
    oncology = entity_fact("specialty", *specialty_spellings("Hematology/Oncology"))
    assert check_answer("Oncologists have the highest charges", [oncology]).passed


def test_state_codes_are_case_sensitive_but_names_are_not() -> None:
    indiana = entity_fact("state", *state_spellings("IN"))
    assert check_answer("The most providers are in IN.", [indiana]).passed
    assert check_answer("indiana has the most providers", [indiana]).passed
    assert not check_answer("most providers are in the state of Ohio", [indiana]).passed


# --- whole answers to golden questions -----------------------------------------------------


def _humira_reference(con: duckdb.DuckDBPyConnection) -> tuple[Reference, str, int, int]:
    question = get_question("humira_ca_top10")
    reference = question.reference(con)
    npi, count = reference.rows[0]
    total = sum(row[1] for row in reference.rows)
    return reference, str(npi), int(count), int(total)


def test_correct_answers_pass_in_several_wordings(claims_con: duckdb.DuckDBPyConnection) -> None:
    _, npi, count, total = _humira_reference(claims_con)
    question = get_question("humira_ca_top10")
    answers = [
        f"The top 10 HUMIRA prescribers in California account for {total:,} total "
        f"prescriptions. The leading prescriber (NPI {npi}) wrote {count} prescriptions.",
        f"NPI {npi} tops the list with {count} fills; together the ten wrote {total} "
        "HUMIRA prescriptions in CA.",
        f"| NPI | Rx |\n|---|---|\n| {npi} | {count} |\n\nTotal across the top ten: {total}.",
    ]
    for answer in answers:
        verdict = check_golden(question, answer, claims_con)
        assert verdict.passed, verdict.reasons
        assert verdict.score == 1.0


def test_wrong_numbers_and_entities_fail_with_reasons(
    claims_con: duckdb.DuckDBPyConnection,
) -> None:
    _, npi, count, total = _humira_reference(claims_con)
    question = get_question("humira_ca_top10")
    wrong_count = check_golden(
        question, f"NPI {npi} wrote {count + 2} prescriptions; top 10 total {total}.", claims_con
    )
    assert not wrong_count.passed
    assert any(f"closest number in the answer: {count + 2}" in r for r in wrong_count.reasons)
    assert 0 < wrong_count.score < 1

    other_npi = "1999999999" if npi != "1999999999" else "1888888888"
    wrong_npi = check_golden(
        question, f"NPI {other_npi} wrote {count} prescriptions; top 10 total {total}.", claims_con
    )
    assert not wrong_npi.passed
    assert [r.fact.label for r in wrong_npi.missing] == ["top prescriber NPI"]


def test_a_state_question_accepts_the_state_name(claims_con: duckdb.DuckDBPyConnection) -> None:
    question = get_question("providers_by_state")
    reference = question.reference(claims_con)
    state, providers = reference.rows[0]
    name = state_spellings(str(state))[1]
    verdict = check_golden(question, f"{name} has the most providers ({providers:,}).", claims_con)
    assert verdict.passed, verdict.reasons


def test_optional_facts_lower_the_score_but_not_the_verdict(
    claims_con: duckdb.DuckDBPyConnection,
) -> None:
    question = get_question("ozempic_growth")
    reference = question.reference(claims_con)
    growth = reference.value("growth_pct")
    verdict = check_golden(question, f"OZEMPIC fills grew by {growth}% year over year.", claims_con)
    assert verdict.passed
    assert verdict.score < 1
    assert any("optional" in reason for reason in verdict.reasons)


# --- the CSV -------------------------------------------------------------------------------


def test_the_csv_is_compared_with_the_reference_rows(
    claims_con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    reference, npi, count, total = _humira_reference(claims_con)
    question = get_question("humira_ca_top10")
    answer = f"NPI {npi} wrote {count}; the top 10 wrote {total}."
    # different column names and order, an extra column: still the same rows
    lines = ["rx_count,npi,state"] + [f"{n},{p},CA" for p, n in reference.rows]
    path = tmp_path / "humira_ca_top10.csv"
    path.write_text("\n".join(lines) + "\n")
    verdict = check_golden(question, answer, claims_con, csv=path)
    assert verdict.passed
    assert verdict.csv is not None
    assert verdict.csv.match == 1.0
    assert verdict.csv.rows == len(reference.rows)

    tampered = "npi,rx_count\n" + "\n".join(f"{p},{n + 1}" for p, n in reference.rows)
    verdict = check_golden(question, answer, claims_con, csv=tampered)
    assert not verdict.passed
    assert any("CSV reproduces 0 of" in reason for reason in verdict.reasons)


def test_csv_months_match_dates_and_rounded_values(claims_con: duckdb.DuckDBPyConnection) -> None:
    reference = get_question("ozempic_monthly").reference(claims_con)
    as_dates = "month_start,fills\n" + "\n".join(
        f"{month}-01,{fills}.0" for month, fills in reference.rows
    )
    result = compare_csv(as_dates, reference)
    assert result.match == 1.0
    assert compare_csv("month,fills\n", reference).match == 0.0


def test_the_verdict_serialises_and_bad_calls_are_refused(
    claims_con: duckdb.DuckDBPyConnection,
) -> None:
    _, npi, count, total = _humira_reference(claims_con)
    verdict = check_golden(get_question("humira_ca_top10"), f"{npi} {count} {total}", claims_con)
    assert json.loads(json.dumps(verdict.to_dict()))["passed"] is True
    with pytest.raises(ValueError, match="at least one fact"):
        check_answer("anything", [])
    with pytest.raises(ValueError, match="reference"):
        check_answer("x", [number_fact("n", 1)], csv="a,b\n1,2\n")


async def test_the_sql_tools_csv_passes_while_the_tool_holds_the_file(
    claims_db: Path, tmp_path: Path
) -> None:
    """End to end with the real SQL tool: its saved CSV reproduces the reference, and the
    reference can be computed while the tool has the database open in this process."""
    sql_tool = pytest.importorskip("loopwright.tools.sql")
    question = get_question("humira_ca_top10")
    tool = sql_tool.SQLTool(tmp_path, backend=f"duckdb://{claims_db}")
    try:
        result = await tool.execute(
            {"sql": question.sql, "dataset_name": "humira_ca_top10", "description": "golden"}
        )
        assert not result["is_error"], result["content"]
        reference = question.reference(claims_db)  # same file, same process, tool still open
        npi, count = reference.rows[0]
        total = sum(row[1] for row in reference.rows)
        answer = f"NPI {npi} wrote {count} HUMIRA prescriptions; the top 10 wrote {total}."
        verdict = check_golden(question, answer, claims_db, csv=tmp_path / "humira_ca_top10.csv")
        assert verdict.passed, verdict.reasons
        assert verdict.csv is not None
        assert verdict.csv.match == 1.0
    finally:
        await tool.aclose()
