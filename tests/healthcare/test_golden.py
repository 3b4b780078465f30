"""Golden questions: every reference query runs, its facts come from the data, ties are fair."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import duckdb
import pytest

from loopwright.healthcare.check import Fact, check_answer, check_golden
from loopwright.healthcare.data import build_database, connect_read_only
from loopwright.healthcare.golden import GOLDEN_QUESTIONS, GoldenQuestion, get_question
from loopwright.healthcare.sqlcheck import check_sql


def _answer_stating(facts: list[Fact]) -> str:
    """A plain answer that states every fact in its canonical form."""
    return " ".join(f"The {fact.label} is {fact.expected}." for fact in facts)


def test_there_are_at_least_25_distinct_questions_covering_all_four_tables() -> None:
    ids = [question.id for question in GOLDEN_QUESTIONS]
    assert len(ids) >= 25
    assert len(set(ids)) == len(ids)
    assert all(question.question.strip().endswith("?") or question.question.endswith(".")
               for question in GOLDEN_QUESTIONS)  # fmt: skip
    four_table = [q for q in GOLDEN_QUESTIONS if len(q.tables) == 4]
    assert four_table, "at least one question joins all four tables"
    tags = Counter(tag for question in GOLDEN_QUESTIONS for tag in question.tags)
    assert tags["trend"] >= 3
    assert tags["join"] >= 8
    assert tags["payments"] >= 3


@pytest.mark.parametrize("question", GOLDEN_QUESTIONS, ids=lambda q: q.id)
def test_each_reference_runs_and_yields_facts(
    question: GoldenQuestion, claims_con: duckdb.DuckDBPyConnection
) -> None:
    reference = question.reference(claims_con)
    assert len(reference) > 0
    facts = question.key_facts(reference)
    assert facts
    assert all(fact.values for fact in facts)
    assert any(fact.required for fact in facts)
    # an answer stating the canonical facts passes; an empty answer does not
    assert check_answer(_answer_stating(facts), facts).passed
    assert not check_answer("I could not find anything.", facts).passed


@pytest.mark.parametrize("question", GOLDEN_QUESTIONS, ids=lambda q: q.id)
def test_each_reference_query_passes_the_sql_checker(question: GoldenQuestion) -> None:
    result = check_sql(question.sql)
    assert result.ok, result.to_dict()
    assert set(result.tables) == set(question.tables)


def test_the_guide_question_facts_match_an_independent_count(
    claims_con: duckdb.DuckDBPyConnection,
) -> None:
    rows = claims_con.execute(
        "SELECT PRESCRIBER_NPI_NBR, NDC_DRUG_NM, PRESCRIBER_NPI_STATE_CD FROM RX_CLAIMS"
    ).fetchall()
    counts = Counter(npi for npi, drug, state in rows if drug == "HUMIRA" and state == "CA")
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:10]

    question = get_question("humira_ca_top10")
    facts = {fact.label: fact for fact in question.key_facts(question.reference(claims_con))}
    top_count = ranked[0][1]
    assert facts["top prescriber's prescriptions"].values == (float(top_count),)
    tied = {npi for npi, n in counts.items() if n == top_count}
    assert set(facts["top prescriber NPI"].values) == tied
    assert facts["total prescriptions of the top 10"].values == (float(sum(n for _, n in ranked)),)


def test_a_tie_at_the_top_accepts_either_entity() -> None:
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE RX_CLAIMS (PRESCRIBER_NPI_NBR VARCHAR, NDC_DRUG_NM VARCHAR, "
        "PRESCRIBER_NPI_STATE_CD VARCHAR)"
    )
    rows = [("1111111112", "HUMIRA", "CA")] * 3 + [("2222222228", "HUMIRA", "CA")] * 3
    rows += [("1333333331", "HUMIRA", "CA"), ("1444444449", "HUMIRA", "TX")]
    con.executemany("INSERT INTO RX_CLAIMS VALUES (?, ?, ?)", rows)
    question = get_question("humira_ca_top10")
    facts = question.key_facts(question.reference(con))
    for npi in ("1111111112", "2222222228"):
        answer = f"NPI {npi} leads with 3 prescriptions; the top 10 wrote 7 in total."
        assert check_answer(answer, facts).passed, npi
    wrong = "NPI 1333333331 leads with 3 prescriptions; the top 10 wrote 7 in total."
    assert not check_answer(wrong, facts).passed
    con.close()


def test_an_empty_reference_is_reported_clearly() -> None:
    con = duckdb.connect()
    con.execute("CREATE TABLE PROVIDERS_BIO (npi_number VARCHAR, state VARCHAR)")
    question = get_question("providers_by_state")  # the generated data always has providers
    with pytest.raises(ValueError, match="ensure_database"):
        question.key_facts(question.reference(con))
    con.close()


# --- small generated data: none, zero and ties past the limit ------------------------------


def _rx_table(con: duckdb.DuckDBPyConnection, rows: list[tuple[str, str, str, str, str]]) -> None:
    """RX_CLAIMS rows of (prescriber NPI, drug, state, fill date, patient id)."""
    con.execute(
        "CREATE TABLE RX_CLAIMS (PRESCRIBER_NPI_NBR VARCHAR, NDC_DRUG_NM VARCHAR, "
        "PRESCRIBER_NPI_STATE_CD VARCHAR, SERVICE_DATE_DD DATE, PATIENT_ID VARCHAR)"
    )
    con.executemany("INSERT INTO RX_CLAIMS VALUES (?, ?, ?, ?, ?)", rows)


@pytest.mark.parametrize("question_id", ["humira_change", "ozempic_growth"])
def test_a_change_from_zero_fills_states_the_counts_not_an_infinite_percentage(
    question_id: str,
) -> None:
    con = duckdb.connect()
    drug = "HUMIRA" if question_id == "humira_change" else "OZEMPIC"
    _rx_table(con, [("1111111112", drug, "CA", f"2024-12-0{day}", "PT1") for day in (2, 3, 4)])
    question = get_question(question_id)
    facts = question.key_facts(question.reference(con))
    assert all(fact.kind == "number" and not fact.percent for fact in facts)
    year = "January 2023" if question_id == "humira_change" else "2023"
    month = "December 2024" if question_id == "humira_change" else "2024"
    honest = f"There were no {drug} fills in {year} and 3 fills in {month}."
    assert check_golden(question, honest, con).passed
    assert not check_golden(question, f"{drug} had 1 fill in {year} and 3 in {month}.", con).passed
    con.close()


def test_no_paid_ozempic_prescribers_is_an_answer_not_a_crash() -> None:
    con = duckdb.connect()
    _rx_table(con, [(npi, "OZEMPIC", "CA", "2024-01-02", "PT1") for npi in ("1", "1", "2")])
    con.execute("CREATE TABLE PROVIDER_PAYMENTS (npi_number VARCHAR, associated_product VARCHAR)")
    con.execute("INSERT INTO PROVIDER_PAYMENTS VALUES ('1', 'HUMIRA')")
    question = get_question("ozempic_payments_effect")
    honest = (
        "None of the OZEMPIC prescribers received OZEMPIC payments, so there is no comparison: "
        "prescribers without payments averaged 1.5 fills."
    )
    assert check_golden(question, honest, con).passed
    wrong = "Prescribers with payments averaged 2 fills; those without averaged 1.5 fills."
    assert not check_golden(question, wrong, con).passed
    con.close()


def test_no_humira_in_california_is_an_answer_not_a_crash() -> None:
    con = duckdb.connect()
    _rx_table(con, [("1111111112", "HUMIRA", "TX", "2024-01-02", "PT1")])
    question = get_question("humira_ca_top10")
    honest = "No HUMIRA prescriptions were filled in California, so there are no top prescribers."
    assert check_golden(question, honest, con).passed
    assert not check_golden(question, "NPI 1111111112 wrote 1 HUMIRA prescription.", con).passed
    con.close()


def test_no_jardiance_payments_is_an_answer_not_a_crash() -> None:
    con = duckdb.connect()
    _rx_table(con, [("1111111112", "JARDIANCE", "CA", "2024-01-02", "PT1")])
    con.execute(
        "CREATE TABLE PROVIDER_PAYMENTS (npi_number VARCHAR, associated_product VARCHAR, "
        "total_payment_amount DECIMAL(12, 2))"
    )
    con.execute("INSERT INTO PROVIDER_PAYMENTS VALUES ('1111111112', 'OZEMPIC', 25.00)")
    question = get_question("jardiance_prescriber_payments")
    honest = "JARDIANCE prescribers received no JARDIANCE-related payments ($0 in total)."
    assert check_golden(question, honest, con).passed
    assert not check_golden(question, "They received $25 in JARDIANCE payments.", con).passed
    con.close()


def test_a_tie_at_the_top_that_goes_past_the_limit_accepts_any_tied_entity() -> None:
    """Twelve prescribers with one HUMIRA fill each: the top-10 result shows ten of them, but
    the eleventh and twelfth are as much "the top prescriber" as the first."""
    con = duckdb.connect()
    npis = [f"1{n:09d}" for n in range(12)]
    _rx_table(con, [(npi, "HUMIRA", "CA", "2024-01-02", "PT1") for npi in npis])
    question = get_question("humira_ca_top10")
    for npi in (npis[0], npis[-1]):
        answer = f"NPI {npi} leads with 1 prescription; the top 10 wrote 10 in total."
        assert check_golden(question, answer, con).passed, npi
    wrong = f"NPI {npis[-1]} leads with 2 prescriptions; the top 10 wrote 10 in total."
    assert not check_golden(question, wrong, con).passed
    con.close()


@pytest.mark.parametrize(("rx_claims", "seed"), [(1_000, 1), (1_000, 4), (2_000, 1), (2_000, 4)])
def test_every_question_holds_on_the_smallest_generated_data(
    rx_claims: int, seed: int, tmp_path: Path
) -> None:
    """The questions hold for any size and seed: at the smallest sizes some results are
    empty, zero or tied (these seeds hit each case), and the facts still say what is true."""
    database = build_database(tmp_path / "small.duckdb", rx_claims=rx_claims, seed=seed)
    con = connect_read_only(database)
    try:
        for question in GOLDEN_QUESTIONS:
            facts = question.key_facts(question.reference(con))
            assert check_golden(question, _answer_stating(facts), con).passed, question.id
            wrong = " ".join(
                f"The {fact.label} is {float(fact.values[0]) * 3 + 7:,.1f}."
                if fact.kind == "number" and fact.required
                else f"The {fact.label} is {fact.expected}."
                for fact in facts
            )
            assert not check_golden(question, wrong, con).passed, question.id
    finally:
        con.close()


def test_an_unknown_question_id_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match="humira_ca_top10"):
        get_question("no_such_question")
