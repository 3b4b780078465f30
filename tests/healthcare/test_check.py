"""The answer checker: numbers however written, entities however worded, wrong facts rejected."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

from loopwright.healthcare.check import (
    Fact,
    Reference,
    check_answer,
    check_golden,
    compare_csv,
    entity_fact,
    find_numbers,
    normalize,
    number_fact,
)
from loopwright.healthcare.data import CONDITION_LABELS, DRUGS, SCHOOLS, SPECIALTIES
from loopwright.healthcare.golden import (
    GOLDEN_QUESTIONS,
    GoldenQuestion,
    condition_spellings,
    drug_spellings,
    get_question,
    manufacturer_spellings,
    nature_spellings,
    school_spellings,
    specialty_spellings,
    state_spellings,
)

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


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan"), [3, float("inf")]])
def test_a_number_fact_refuses_a_value_that_is_not_finite(value: float | list[float]) -> None:
    """A reference that divided by zero gives inf or NaN: no answer can state it, so say so
    (not an OverflowError from deep inside, nor a fact no answer can match)."""
    with pytest.raises(ValueError, match=r"needs finite numbers.*NULLIF"):
        number_fact("growth", value, percent=True)


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


# --- an answer must state its numbers, not list every candidate ----------------------------


def test_a_shotgun_list_of_numbers_does_not_pass() -> None:
    count = number_fact("prescriptions", 245)
    verdict = check_answer(" ".join(str(i) for i in range(1, 501)), [count])
    assert not verdict.passed
    assert any("numbers" in reason for reason in verdict.reasons), verdict.reasons
    share = number_fact("share", 29.4, percent=True)
    assert not check_answer(" ".join(f"{i}%" for i in range(101)), [share]).passed
    # a short run of consecutive candidates is a guess too
    between = "It is one of " + ", ".join(str(i) for i in range(236, 256)) + "."
    assert not check_answer(between, [count]).passed
    # no progression, but far more distinct numbers than any answer needs
    squares = number_fact("prescriptions", 225)
    assert not check_answer(", ".join(str(i * i) for i in range(1, 90)), [squares]).passed


def test_a_shotgun_answer_to_a_golden_question_fails(
    claims_con: duckdb.DuckDBPyConnection,
) -> None:
    _, npi, _, _ = _humira_reference(claims_con)
    listing = ", ".join(str(i) for i in range(1, 101))
    answer = f"Ranked list for 2023-01-15 onward: {listing}. Top NPI {npi}."
    verdict = check_golden(get_question("humira_ca_top10"), answer, claims_con)
    assert not verdict.passed
    assert verdict.score < 0.5
    assert [r.fact.label for r in verdict.found] == ["top prescriber NPI"]


_NPIS = [f"18{i:02d}54{i:02d}07" for i in range(10)]
_COUNTS = [40, 35, 31, 28, 22, 19, 17, 14, 12, 11]
_RANKED = list(zip(_NPIS, _COUNTS, strict=True))


@pytest.mark.parametrize(
    "listing",
    [
        "\n".join(f"{r}. NPI {npi}: {n} prescriptions" for r, (npi, n) in enumerate(_RANKED, 1)),
        "\n".join(f"- {r}) NPI {npi} ({n})" for r, (npi, n) in enumerate(_RANKED, 1)),
        "| Rank | NPI | Prescriptions |\n|---:|---|---:|\n"
        + "\n".join(f"| {r} | {npi} | {n} |" for r, (npi, n) in enumerate(_RANKED, 1)),
        "| # | NPI | Rx |\n|---|---|---|\n"
        + "\n".join(f"| {r} | {npi} | {n} |" for r, (npi, n) in enumerate(_RANKED, 1)),
        "|    | npi | rx |\n|---:|---|---:|\n"
        + "\n".join(f"| {r} | {npi} | {n} |" for r, (npi, n) in enumerate(_RANKED)),
        "    npi          rx\n"
        + "\n".join(f"{r}   {npi}  {n}" for r, (npi, n) in enumerate(_RANKED)),
        "rank,npi,rx\n" + "\n".join(f"{r},{npi},{n}" for r, (npi, n) in enumerate(_RANKED, 1)),
        "; ".join(f"#{r} NPI {npi} ({n})" for r, (npi, n) in enumerate(_RANKED, 1)),
        ", ".join(f"the {r}{'st' if r == 1 else 'th'} NPI {npi} ({n})" for r, (npi, n) in
                  enumerate(_RANKED, 1) if r in (1, 4)),
    ],
    ids=["numbered", "bullets", "rank-table", "hash-table", "index-table", "printed-frame",
         "csv", "hashes", "ordinals"],
)  # fmt: skip
def test_list_and_rank_numbers_are_not_stated_values(listing: str) -> None:
    """The ranks 1..10 of an honest list do not state a count of 4 (or any other value)."""
    facts = [
        entity_fact("top NPI", _NPIS[0]),
        number_fact("top count", 40),
        number_fact("prescribers with more than 25 prescriptions", 4),
    ]
    verdict = check_answer(f"Top HUMIRA prescribers:\n\n{listing}\n", facts)
    assert not verdict.passed
    assert [r.fact.label for r in verdict.missing] == [facts[2].label]
    stated = f"Top HUMIRA prescribers:\n\n{listing}\n\nOf these, 4 wrote more than 25."
    assert check_answer(stated, facts).passed


def _cell(value: object) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.2f}"
    return str(value)


def _stated(fact: Fact, style: int) -> str:
    value = fact.values[0]
    if fact.kind == "entity":
        return str(value) if style != 2 else str(fact.values[-1]).lower()
    assert isinstance(value, float)
    if fact.percent:
        return [f"{value}%", f"{value} percent", f"{value / 100:.3f}"][style]
    if value == int(value):
        return [f"{int(value):,}", f"{int(value)}", f"{value:.1f}"][style]
    rounded = (
        f"${value / 1e6:.2f} million" if value > 1e6
        else f"${value / 1e3:.1f}k" if value > 1e4
        else f"{value:,.1f}"
    )  # fmt: skip
    return [f"${value:,.2f}", f"{value:.2f}", rounded][style]


@pytest.mark.parametrize("question", GOLDEN_QUESTIONS, ids=lambda q: q.id)
def test_honest_answers_to_every_golden_question_pass_in_several_styles(
    question: GoldenQuestion, claims_con: duckdb.DuckDBPyConnection
) -> None:
    """Prose in three number styles, and the same facts after the result as a numbered list
    or a markdown table with a rank column: none of them looks like a shotgun list."""
    reference = question.reference(claims_con)
    facts = question.key_facts(reference)
    rows = reference.rows[:10]
    numbered = "\n".join(
        f"{rank}. " + " | ".join(_cell(v) for v in row) for rank, row in enumerate(rows, 1)
    )
    table = "\n".join(
        [
            "| Rank | " + " | ".join(reference.columns) + " |",
            "|---" * (len(reference.columns) + 1) + "|",
            *(
                f"| {rank} | " + " | ".join(_cell(v) for v in row) + " |"
                for rank, row in enumerate(rows, 1)
            ),
        ]
    )
    for style in range(3):
        prose = "; ".join(f"{fact.label} is {_stated(fact, style)}" for fact in facts) + "."
        for answer in (
            f"Answer: {prose}",
            f"Results:\n\n{numbered}\n\nIn short: {prose}",
            f"{table}\n\nIn short: {prose}",
        ):
            verdict = check_golden(question, answer, claims_con)
            assert verdict.passed, (verdict.reasons, answer)
            assert verdict.score == 1.0, (verdict.reasons, answer)


# --- what is not a number ------------------------------------------------------------------


def test_dates_and_hyphenated_words_contribute_no_numbers() -> None:
    for text in ("2024-03-01", "03/01/2024", "3/1/24", "2024-03-01T00:00:00", "11/2024",
                 "2024-11", "COVID-19", "ICD-10", "top-10", "A-1"):  # fmt: skip
        assert find_numbers(text) == [], text
    assert not check_answer("As of 2024-03-01 there were 5 claims.", [number_fact("n", 3)]).passed
    assert not check_answer("On 03/01/2024 there were 5 claims.", [number_fact("n", 1)]).passed
    assert not check_answer("The top-10 list has 5 names.", [number_fact("n", 10)]).passed
    assert check_answer("As of 2024-03-01 there were 5 claims.", [number_fact("n", 5)]).passed
    ranges = [n.value for n in find_numbers("from 10-20 fills, in 2023-2024")]
    assert ranges == [10.0, 20.0, 2023.0, 2024.0]


def test_numbers_in_csv_rows_lists_and_emphasis_are_found() -> None:
    def values(text: str) -> list[float]:
        return [n.value for n in find_numbers(text)]

    assert values("```npi,count\n1806542407,245```") == [1806542407.0, 245.0]
    assert values("Counts: 15,13,10") == [15.0, 13.0, 10.0]
    assert values("1,234,56") == [1.0, 234.0, 56.0]  # not a thousands number: a list
    assert values("They wrote _245_ and __246__ and *247*.") == [245.0, 246.0, 247.0]
    assert values("$18,343,673.24 and 1,543 and 12,345.6") == [18_343_673.24, 1543.0, 12_345.6]
    assert values("fills_2023 was 269") == [269.0]  # an identifier's digits are not a number
    facts = [number_fact("count", 245), entity_fact("npi", "1806542407")]
    assert check_answer("```npi,count\n1806542407,245```", facts).passed


@pytest.mark.parametrize(
    ("written", "value"),
    [
        ("$5.02MM", 5_020_000.0),
        ("$5.02 MM", 5_020_000.0),
        ("$5.02mm", 5_020_000.0),
        ("5.02 MM USD", 5_020_000.0),
        ("5.02mm", 5.02),  # no money: millimetres, not millions
        ("a 5 mm nodule", 5.0),
        ("11 MM patients", 11.0),  # multiple myeloma
    ],
)
def test_mm_is_millions_only_for_money(written: str, value: float) -> None:
    assert [n.value for n in find_numbers(written)] == [value]


def test_a_total_in_mm_shorthand_passes_and_millimetres_do_not() -> None:
    fact = number_fact("total payments", 5_020_000)
    assert check_answer("Payments totaled $5.02MM.", [fact]).passed
    assert check_answer("Payments totaled $5.02 MM.", [fact]).passed
    assert not check_answer("The largest lesion was 5.02mm.", [fact]).passed


@pytest.mark.parametrize(
    ("written", "values"),
    [
        ("20\u00a0000 claims", [20_000.0]),
        ("20\u202f000 claims", [20_000.0]),
        ("20\u2009000 claims", [20_000.0]),
        ("1\u202f250\u202f000 claims", [1_250_000.0]),
        ("in 2023 1\u00a0200 claims", [2023.0, 1200.0]),  # a 4-digit group starts no number
        ("20 000 claims", [20_000.0]),  # a plain space: "000" is no number of its own
        ("the top 10 000 prescribers", [10_000.0]),
        ("20 500 claims", [20.0, 500.0]),  # a plain space between two numbers
        ("in 2023 1 200 claims", [2023.0, 1.0, 200.0]),
        ("1\u00a0234\u00a05678", [1.0, 234.0, 5678.0]),  # a group of four: not thousands
    ],
)
def test_thousands_separated_by_spaces(written: str, values: list[float]) -> None:
    assert [n.value for n in find_numbers(written)] == values


def test_spaced_thousands_are_one_number_not_a_zero() -> None:
    """ "20 000" read as 20 and 000 stated a zero: a wrong total passed a zero fact."""
    count = number_fact("claims", 20_000)
    for space in ("\u00a0", "\u202f", "\u2009", " "):
        assert check_answer(f"There were 20{space}000 claims.", [count]).passed, repr(space)
    zero = number_fact("total JARDIANCE payments to its prescribers", 0)
    assert not check_answer("The total was 20\u00a0000.", [zero]).passed
    assert not check_answer("The total was 20 000.", [zero]).passed


@pytest.mark.parametrize(
    ("answer", "value", "accepted"),
    [
        ("Nineteen prescribers wrote HUMIRA.", 19, True),
        ("They wrote forty-two prescriptions.", 42, True),
        ("They wrote forty two prescriptions.", 42, True),
        ("One hundred claims were filed.", 100, True),
        ("a hundred and five claims", 105, True),
        ("Only one prescriber was paid.", 1, True),
        ("about twenty prescribers", 21, True),  # hedged: rounded to tens, within 5%
        ("twenty prescribers", 21, False),
        ("the one with the most payments is Dr. Walker", 1, False),  # a pronoun
        ("No one was paid.", 1, False),
        ("One of the top ten prescribers was paid.", 1, False),
        ("One of the top ten prescribers was paid.", 10, False),  # the question's framing
        ("Most are ninety-day fills.", 90, False),  # a kind of fill, not a count
        ("Nineteen prescribers wrote HUMIRA.", 18, False),
    ],
)
def test_numbers_in_words(answer: str, value: int, accepted: bool) -> None:
    assert check_answer(answer, [number_fact("count", value)]).passed is accepted


def test_numbers_in_words_listed_wholesale_do_not_pass() -> None:
    words = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
             "eleven", "twelve")  # fmt: skip
    listing = "It is " + ", ".join(f"{word} prescribers" for word in words) + "."
    verdict = check_answer(listing, [number_fact("prescribers", 7)])
    assert not verdict.passed
    assert any("wholesale" in reason for reason in verdict.reasons), verdict.reasons


@pytest.mark.parametrize(
    ("answer", "values"),
    [
        ("Sex: 11 M, 9 F", [11.0, 9.0]),
        ("| sex | 11 M | 9 F |", [11.0, 9.0]),
        ("11M, 9F", [11.0, 9.0]),
        ("$11M", [11_000_000.0]),
        ("$11 M", [11_000_000.0]),
        ("11M claims", [11_000_000.0]),
        ("3 M claims", [3_000_000.0]),
        ("Sex: 11 M, 9 F; paid $11M", [11.0, 9.0, 11_000_000.0]),  # money is money
    ],
)
def test_an_m_counting_by_sex_is_a_letter_not_millions(answer: str, values: list[float]) -> None:
    assert [n.value for n in find_numbers(answer)] == values


def test_a_count_by_sex_states_its_numbers() -> None:
    facts = [number_fact("male patients", 11), number_fact("female patients", 9)]
    assert check_answer("Sex: 11 M, 9 F.", facts).passed


def test_a_count_out_of_a_total_states_both() -> None:
    assert [n.value for n in find_numbers("62/94 prescribers")] == [62.0, 94.0]
    facts = [number_fact("paid prescribers", 62), number_fact("prescribers", 94)]
    assert check_answer("62/94 prescribers received payments.", facts).passed
    assert find_numbers("11/2024 and 03/01/2024") == []  # dates still are not numbers


# --- zeros and hedges ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "accepted"),
    [
        ("They received no HUMIRA-related payments.", True),
        ("Payments: none.", True),
        ("They did not receive any ELIQUIS-related payments.", True),
        ("As for payments, she didn't get any.", True),
        ("Zero payments were recorded for this prescriber.", True),
        ("None of the payments went to this prescriber.", True),
        ("They were paid nothing.", True),
        ("They received $12,345 in payments; there is no doubt.", False),
        ("None of the data was missing; payments were $5,000.", False),
        ("No doubt the payments were $5,000.", False),
        ("There is nothing unusual: payments totaled $5,000.", False),
        ("Payments totaled $5,000, none of it from AbbVie.", False),
        ("The prescriber has no HUMIRA patients, and payments were $5,000.", False),
    ],
)
def test_a_zero_needs_a_phrase_stating_that_quantity(answer: str, accepted: bool) -> None:
    zero = number_fact("their HUMIRA-related payments", 0)
    assert check_answer(answer, [zero]).passed is accepted


@pytest.mark.parametrize(
    ("label", "answer", "accepted"),
    [
        # a zero word next to another word of the label is not a zero of the quantity
        ("total JARDIANCE payments to its prescribers",
         "No prescriber was left out: the total was $27,388.", False),
        ("HUMIRA prescriptions in California",
         "Nothing unusual in California: 245 HUMIRA prescriptions.", False),
        ("OZEMPIC prescribers with OZEMPIC payments", "No prescriber was left out.", False),
        ("oncologists prescribing KEYTRUDA", "No oncologists were found, KEYTRUDA aside.", False),
        # "no prescriber received payments" says all of them are without payments
        ("ELIQUIS prescribers without ELIQUIS payments",
         "No prescriber received ELIQUIS payments.", False),
        # a partitive with a number, and "not a single", do state a zero
        ("total JARDIANCE payments to its prescribers",
         "None of the 45 JARDIANCE prescribers received JARDIANCE payments.", True),
        ("total JARDIANCE payments to its prescribers",
         "Not a single JARDIANCE payment was made.", True),
        ("total JARDIANCE payments to its prescribers", "None of its prescribers were paid.", True),
        ("ELIQUIS prescribers without ELIQUIS payments",
         "No ELIQUIS prescriber went without ELIQUIS payments.", True),
        ("OZEMPIC prescribers with OZEMPIC payments",
         "No OZEMPIC prescriber received OZEMPIC payments.", True),
        ("oncologists prescribing KEYTRUDA", "No oncologist prescribed KEYTRUDA.", True),
    ],
)  # fmt: skip
def test_a_zero_in_words_is_about_what_the_label_counts(
    label: str, answer: str, accepted: bool
) -> None:
    assert check_answer(answer, [number_fact(label, 0)]).passed is accepted


@pytest.mark.parametrize(
    ("written", "accepted"),
    [
        ("over 1,500", True),  # the true 1,543 is over 1,500
        ("more than 1,500", True),
        ("at least 1,500", True),
        ("under 1,600", True),
        ("less than 1,550", True),
        ("nearly 1,600", True),
        ("under 1,500", False),  # the wrong direction
        ("less than 1,500", False),
        ("fewer than 1,500", False),
        ("nearly 1,500", False),
        ("no more than 1,500", False),
        ("over 1,600", False),
        ("an awesome 1,500", False),  # "some" inside a word is no hedge
        ("Moreover 1,500", False),  # nor is "over"
        ("some 1,500", True),
        ("an awesome 1,543", True),
        ("nearly 1.55k", True),
        ("over 1.54k", True),
        ("over 1.55k", False),
    ],
)
def test_hedges_are_whole_words_and_directional(written: str, accepted: bool) -> None:
    fact = number_fact("total prescriptions", 1543)
    assert check_answer(f"{written} prescriptions.", [fact]).passed is accepted


@pytest.mark.parametrize(
    ("written", "accepted"),
    [
        ("nearly 30%", True),
        ("under 30%", True),
        ("more than 29%", True),
        ("about 29%", True),
        ("under 29%", False),  # 29.4% is not under 29%, however 29% was rounded
        ("almost 29%", False),
        ("more than 30%", False),
    ],
)
def test_a_hedged_share_is_directional_too(written: str, accepted: bool) -> None:
    share = number_fact("share of 90-day fills", 29.4, percent=True)
    assert check_answer(f"{written} of fills are 90-day supplies.", [share]).passed is accepted


# --- the CSV's identifiers -----------------------------------------------------------------


def test_csv_identifiers_match_as_text_not_as_nearby_numbers(
    claims_con: duckdb.DuckDBPyConnection,
) -> None:
    reference, npi, count, total = _humira_reference(claims_con)
    providers = sorted(
        n for (n,) in claims_con.execute("SELECT npi_number FROM PROVIDERS_BIO").fetchall()
    )

    def neighbour(npi: str) -> str:
        return min((p for p in providers if p != npi), key=lambda p: abs(int(p) - int(npi)))

    wrong = "npi,rx_count\n" + "\n".join(f"{neighbour(p)},{n}" for p, n in reference.rows)
    answer = f"NPI {npi} wrote {count}; the top 10 wrote {total}."
    verdict = check_golden(get_question("humira_ca_top10"), answer, claims_con, csv=wrong)
    assert not verdict.passed
    assert verdict.csv is not None
    assert verdict.csv.matched_rows == 0
    # numbers keep their tolerance
    rounded = "npi,rx_count\n" + "\n".join(f"{p},{n}.0" for p, n in reference.rows)
    assert compare_csv(rounded, reference).match == 1.0


# --- entities ------------------------------------------------------------------------------


def test_a_name_inside_a_longer_name_of_the_same_kind_does_not_match() -> None:
    states = get_question("providers_by_state")
    for rows in ((("VA", 90), ("WV", 80)), (("VA", 90), ("CA", 80))):
        facts = states.key_facts(Reference(("state", "providers"), rows))
        assert not check_answer("West Virginia has the most providers (90).", facts).passed
        assert check_answer("Virginia has the most (90), then West Virginia.", facts).passed
        assert check_answer("VA has the most providers (90).", facts).passed

    consulting = entity_fact("category", *nature_spellings("Consulting Fee"))
    assert not check_answer(
        "The most frequent is Compensation for services other than consulting.", [consulting]
    ).passed
    assert check_answer("Consulting fees are the most frequent.", [consulting]).passed

    schools = get_question("humira_schools")
    facts = schools.key_facts(
        Reference(("education", "prescribers"), (("Duke University", 6), ("Rush University", 4)))
    )
    assert not check_answer("Duke University School of Nursing trained 6.", facts).passed
    assert check_answer("Duke University trained 6.", facts).passed
    nested = entity_fact("school", "Duke University", others=("Duke University School of Nursing",))
    assert not check_answer("Duke University School of Nursing", [nested]).passed


@pytest.mark.parametrize(
    ("question_id", "name", "short"),
    [
        ("top_manufacturer_payments", "GlaxoSmithKline", "GSK"),
        ("top_manufacturer_payments", "Eli Lilly", "Lilly"),
        ("top_manufacturer_payments", "Gilead Sciences", "Gilead"),
        ("top_manufacturer_payments", "Bristol-Myers Squibb", "BMS"),
        ("top_manufacturer_payments", "Boehringer Ingelheim", "Boehringer"),
        ("humira_schools", "Johns Hopkins University", "Johns Hopkins"),
        ("humira_schools", "University of California, San Francisco", "UCSF"),
    ],
)
def test_common_short_names_of_manufacturers_and_schools(
    question_id: str, name: str, short: str
) -> None:
    question = get_question(question_id)
    columns = ("manufacturer_name", "total_paid", "payments")
    if question_id == "humira_schools":
        columns = ("education", "prescribers")
    rows = ((name, 7, 3), ("Merck", 5, 2)) if len(columns) == 3 else ((name, 7), ("Merck", 5))
    facts = question.key_facts(Reference(columns, rows))
    assert check_answer(f"{short} leads with 7.", facts).passed


def test_janssen_alone_names_neither_janssen_company() -> None:
    question = get_question("top_manufacturer_payments")
    for top, other in (("Janssen Biotech", "Janssen Pharmaceuticals"),
                       ("Janssen Pharmaceuticals", "Janssen Biotech")):  # fmt: skip
        rows = ((top, 7.0, 3), (other, 5.0, 2))
        facts = question.key_facts(Reference(("manufacturer_name", "total_paid", "payments"), rows))
        assert not check_answer("Janssen leads with $7.", facts).passed
        assert check_answer(f"{top} leads with $7.", facts).passed
        assert not check_answer(f"{other} leads with $7.", facts).passed


@pytest.mark.parametrize(
    ("names", "spell"),
    [
        (tuple(sorted({d.manufacturer for d in DRUGS})), manufacturer_spellings),
        (SCHOOLS, school_spellings),
        (tuple(s.name for s in SPECIALTIES), specialty_spellings),
        (CONDITION_LABELS, condition_spellings),
        (tuple(d.name for d in DRUGS), drug_spellings),
        (("Compensation for services other than consulting", "Consulting Fee", "Education",
          "Food and Beverage", "Grant", "Honoraria", "Royalty or License", "Travel and Lodging"),
         nature_spellings),
    ],
    ids=["manufacturers", "schools", "specialties", "conditions", "drugs", "natures"],
)  # fmt: skip
def test_aliases_are_unambiguous(
    names: tuple[str, ...], spell: Callable[[str], tuple[str, ...]]
) -> None:
    """No alias of one entity is also a spelling of, or a part of a name of, another."""
    names = tuple(dict.fromkeys(names))
    for name in names:
        for alias in spell(name)[1:]:
            for other in names:
                if other == name:
                    continue
                for spelling in spell(other):
                    assert normalize(alias) not in normalize(spelling), (alias, name, other)


# --- possessives ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("question_id", "columns", "rows", "answer"),
    [
        ("top_manufacturer_payments", ("manufacturer_name", "total_paid", "payments"),
         (("Pfizer", 305_411.06, 9), ("Merck", 5.0, 2)),
         "Pfizer's payments to providers were the largest, totaling $305,411.06."),
        ("top_manufacturer_payments", ("manufacturer_name", "total_paid", "payments"),
         (("Pfizer", 305_411.06, 9), ("Merck", 5.0, 2)),
         "Pfizer\u2019s payments to providers were the largest, totaling $305,411.06."),
        ("top_drug_spend", ("NDC_DRUG_NM", "total_paid", "claims"),
         (("SKYRIZI", 8_526_883.56, 406), ("HUMIRA", 10.0, 1)),
         "SKYRIZI's total paid amount is the highest, at $8,526,883.56."),
        ("providers_by_state", ("state", "providers"), (("CA", 123), ("TX", 78)),
         "California's 123 providers are the most of any state."),
        ("humira_schools", ("education", "prescribers"),
         (("Tufts University", 4), ("Rush University", 3)),
         "Tufts University's graduates include the most HUMIRA prescribers (4)."),
        ("top_humira_prescriber",
         ("npi_number", "first_name", "last_name", "specialty", "state", "humira_rx",
          "humira_payments"),
         (("9535334475", "Matthew", "Walker", "Rheumatology", "MI", 733, 97_924.46),
          ("9634016841", "Brian", "Cooper", "Dermatology", "KS", 115, 10_485.59)),
         "Dr. Walker's 733 HUMIRA prescriptions lead (NPI 9535334475, a rheumatologist); "
         "Dr. Walker's HUMIRA-related payments: $97,924.46."),
    ],
    ids=["manufacturer", "curly-apostrophe", "drug", "state", "school", "last-name"],
)  # fmt: skip
def test_a_possessive_names_its_entity(
    question_id: str, columns: tuple[str, ...], rows: tuple[tuple[object, ...], ...], answer: str
) -> None:
    facts = get_question(question_id).key_facts(Reference(columns, rows))
    verdict = check_answer(answer, facts)
    assert verdict.passed, verdict.reasons


@pytest.mark.parametrize("apostrophe", ["'", "\u2019"])
def test_a_possessive_answer_to_a_golden_question_passes(
    claims_con: duckdb.DuckDBPyConnection, apostrophe: str
) -> None:
    question = get_question("top_manufacturer_payments")
    name, total, _ = question.reference(claims_con).rows[0]
    answer = f"{name}{apostrophe}s payments to providers were the largest, totaling ${total:,.2f}."
    verdict = check_golden(question, answer, claims_con)
    assert verdict.passed, verdict.reasons


def test_names_with_apostrophes_and_longer_names_survive_possessives() -> None:
    crohns = entity_fact("condition", *condition_spellings("Crohn's disease"))
    for text in ("Crohn's disease costs the most", "crohns disease costs the most",
                 "Crohn\u2019s disease's charges are the highest"):  # fmt: skip
        assert check_answer(text, [crohns]).passed, text
    reddy = entity_fact("manufacturer", *manufacturer_spellings("Dr. Reddy's"))
    for text in ("Dr. Reddy's pays the most", "Dr Reddys pays the most", "Reddy's leads"):
        assert check_answer(text, [reddy]).passed, text
    obrien = entity_fact("last name", "O'Brien", others=("Brien",))
    for text in ("Dr. O'Brien wrote the most", "Dr. O'Brien's patients", "Dr. O\u2019Brien's"):
        assert check_answer(text, [obrien]).passed, text
    assert not check_answer("Dr. Brien's patients", [obrien]).passed
    virginia = entity_fact("state", *state_spellings("VA"), others=state_spellings("WV"))
    assert not check_answer("West Virginia's providers are the most.", [virginia]).passed
    assert check_answer("Virginia's providers are the most.", [virginia]).passed
    texas = entity_fact("state", *state_spellings("TX"))
    assert check_answer("Texas' providers are the most.", [texas]).passed


# --- ranked CSVs: ties at the cut-off and the leading rows ---------------------------------


def _honest_answer(question: GoldenQuestion, con: duckdb.DuckDBPyConnection) -> str:
    facts = question.key_facts(question.reference(con))
    return "; ".join(f"{fact.label} is {_stated(fact, 0)}" for fact in facts) + "."


def _csv_text(columns: tuple[str, ...], rows: object) -> str:
    assert isinstance(rows, (list, tuple))
    return "\n".join([",".join(columns), *(",".join(str(v) for v in row) for row in rows)])


def test_csv_rows_tying_at_the_cut_off_may_be_other_entities(
    claims_con: duckdb.DuckDBPyConnection,
) -> None:
    """The reference breaks the tie at its LIMIT by NPI; breaking it the other way is as
    correct, and the CSV's tied rows then name cardiologists the reference left out."""
    question = get_question("afib_cardiologists")
    reference = question.reference(claims_con)
    other_order = question.sql.replace("b.npi_number\n        LIMIT", "b.npi_number DESC\n LIMIT")
    assert other_order != question.sql
    rows = Reference.from_query(claims_con, other_order).rows
    last = reference.value("afib_patients", len(reference) - 1)
    assert set(rows) != set(reference.rows)  # the data has a tie at the cut-off
    assert all(row[4] == last for row in rows if row not in reference.rows)
    answer = _honest_answer(question, claims_con)
    verdict = check_golden(question, answer, claims_con, csv=_csv_text(reference.columns, rows))
    assert verdict.passed, verdict.reasons
    assert verdict.csv is not None
    assert verdict.csv.match == 1.0

    # a row beyond the cut-off must hold the tied value, and a reference entity its own values
    outside = [i for i, row in enumerate(rows) if row not in reference.rows]
    higher = [(*row[:4], last + 1, *row[5:]) if i in outside else row for i, row in enumerate(rows)]
    verdict = check_golden(question, answer, claims_con, csv=_csv_text(reference.columns, higher))
    assert not verdict.passed
    left_out = iter(row for row in reference.rows if row not in rows)
    wrong = [
        (*next(left_out)[:5], 100 + row[5], row[6]) if i in outside else row
        for i, row in enumerate(rows)
    ]
    verdict = check_golden(question, answer, claims_con, csv=_csv_text(reference.columns, wrong))
    assert not verdict.passed


@pytest.mark.parametrize(
    ("question_id", "leading"),
    [("eliquis_top_state", 1), ("busiest_quarter_2024", 1), ("top_drug_spend", 5),
     ("afib_cardiologists", 1), ("providers_by_state", 3)],
)  # fmt: skip
def test_a_top_question_accepts_a_csv_of_the_leading_rows(
    claims_con: duckdb.DuckDBPyConnection, question_id: str, leading: int
) -> None:
    """ "Which state has the most?" is answered by ``ORDER BY n DESC LIMIT 1``; rows that are
    not the leading ones still fail."""
    question = get_question(question_id)
    reference = question.reference(claims_con)
    assert question.csv_columns is not None
    value = reference._index(question.csv_columns[1])
    ranked = sorted(reference.rows, key=lambda row: -row[value])
    answer = _honest_answer(question, claims_con)
    verdict = check_golden(
        question, answer, claims_con, csv=_csv_text(reference.columns, ranked[:leading])
    )
    assert verdict.passed, verdict.reasons
    assert verdict.csv is not None
    assert (verdict.csv.matched_rows, verdict.csv.checked_rows) == (leading, leading)

    below = ranked[: leading - 1] + ranked[-1:]  # the last row in place of a leading one
    verdict = check_golden(question, answer, claims_con, csv=_csv_text(reference.columns, below))
    assert not verdict.passed
    if question_id == "busiest_quarter_2024":  # calendar order is not rank order
        assert ranked[0] != reference.rows[0]
        first = _csv_text(reference.columns, reference.rows[:1])
        assert not check_golden(question, answer, claims_con, csv=first).passed


@pytest.mark.parametrize(
    "question_id",
    ["humira_specialties", "ozempic_monthly", "humira_ca_top10", "jardiance_prescriber_payments"],
)
def test_a_question_wanting_every_row_refuses_a_csv_of_the_top_only(
    claims_con: duckdb.DuckDBPyConnection, question_id: str
) -> None:
    """ "Each specialty's share", "each month", "the top 10", a total over all prescribers."""
    question = get_question(question_id)
    reference = question.reference(claims_con)
    assert question.csv_columns is not None
    value = reference._index(question.csv_columns[1])
    top = max(reference.rows, key=lambda row: row[value])
    answer = _honest_answer(question, claims_con)
    verdict = check_golden(question, answer, claims_con, csv=_csv_text(reference.columns, [top]))
    assert not verdict.passed
    assert any("CSV reproduces 1 of" in reason for reason in verdict.reasons), verdict.reasons


def test_a_csv_of_the_top_may_hold_any_of_the_tied_rows() -> None:
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE RX_CLAIMS AS SELECT * FROM (VALUES ('ELIQUIS', 'CA'), ('ELIQUIS', 'CA'), "
        "('ELIQUIS', 'TX'), ('ELIQUIS', 'TX'), ('ELIQUIS', 'NY'), ('HUMIRA', 'NY'))"
        " AS t(NDC_DRUG_NM, PRESCRIBER_NPI_STATE_CD)"
    )
    question = get_question("eliquis_top_state")
    answer = "Texas has the most ELIQUIS prescriptions (2), tied with California."
    for csv, accepted in (("state,n\nTX,2", True), ("state,n\nCA,2", True),
                          ("state,n\nTX,2\nCA,2", True), ("state,n\nNY,1", False),
                          ("state,n\nTX,2\nNY,1", False), ("state,n\nTX,1", False)):  # fmt: skip
        verdict = check_golden(question, answer, con, csv=csv)
        assert verdict.passed is accepted, (csv, verdict.reasons)


def _eliquis_states(*states: str) -> duckdb.DuckDBPyConnection:
    """A claims table whose ELIQUIS prescriptions come from ``states``, one row each."""
    con = duckdb.connect()
    values = ", ".join(f"('ELIQUIS', '{state}')" for state in states)
    con.execute(
        f"CREATE TABLE RX_CLAIMS AS SELECT * FROM (VALUES {values}, ('HUMIRA', 'NY'))"
        " AS t(NDC_DRUG_NM, PRESCRIBER_NPI_STATE_CD)"
    )
    return con


@pytest.mark.parametrize(
    ("answer", "accepted"),
    [
        ("They all tie, with 2 ELIQUIS prescriptions each.", True),
        ("They are all tied at 2.", True),
        ("All three states are tied at 2 prescriptions.", True),
        ("Texas has the most (2).", True),  # one of the tied, named
        ("Both are tied at 2.", False),  # there are three
        ("All four states tie at 2.", False),
        ("They don't all tie: the most is 2.", False),
        ("Not all tie; the most is 2.", False),
        ("Ohio leads with 3; the rest all tie at 2.", False),
        ("Ohio leads with 3. They all tie at 2.", False),
        ("All ties were broken by state: 2.", False),
    ],
)
def test_they_all_tie_names_the_top_when_every_row_ties(answer: str, accepted: bool) -> None:
    question = get_question("eliquis_top_state")
    con = _eliquis_states("CA", "CA", "TX", "TX", "NY", "NY")
    verdict = check_golden(question, answer, con)
    assert verdict.passed is accepted, verdict.reasons


def test_they_all_tie_is_wrong_when_only_the_top_rows_tie() -> None:
    question = get_question("eliquis_top_state")
    con = _eliquis_states("CA", "CA", "TX", "TX", "NY")
    assert not check_golden(question, "They all tie, with 2 each.", con).passed
    assert check_golden(question, "Texas and California tie, with 2 each.", con).passed


# --- a "#" column of counts ----------------------------------------------------------------


@pytest.mark.parametrize("header", ["#", "No."])
def test_a_count_column_headed_like_a_rank_column_states_its_numbers(
    claims_con: duckdb.DuckDBPyConnection, header: str
) -> None:
    question = get_question("humira_specialties")
    reference = question.reference(claims_con)
    table = f"| Specialty | {header} | Share |\n|---|---|---|\n" + "\n".join(
        f"| {specialty} | {count} | {pct}% |" for specialty, count, pct in reference.rows[:2]
    )
    verdict = check_golden(question, table, claims_con)
    assert verdict.passed, verdict.reasons

    # ranks, ties included, are still ranks: they do not state a count of 4
    ranks = "| # | NPI | Rx |\n|---|---|---|\n" + "\n".join(
        f"| {r} | {npi} | {n} |" for r, (npi, n) in zip((1, 2, 2, 4), _RANKED, strict=False)
    )
    four = [entity_fact("top NPI", _NPIS[0]), number_fact("count", 4)]
    assert not check_answer(ranks, four).passed
    assert check_answer(ranks + "\n\n4 of them wrote more than 20.", four).passed
