"""Golden questions: every reference query runs, its facts come from the data, ties are fair."""

from __future__ import annotations

from collections import Counter

import duckdb
import pytest

from loopwright.healthcare.check import Fact, check_answer
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
    con.execute(
        "CREATE TABLE RX_CLAIMS (PRESCRIBER_NPI_NBR VARCHAR, NDC_DRUG_NM VARCHAR, "
        "PRESCRIBER_NPI_STATE_CD VARCHAR)"
    )
    question = get_question("humira_ca_top10")
    with pytest.raises(ValueError, match="ensure_database"):
        question.key_facts(question.reference(con))
    con.close()


def test_an_unknown_question_id_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match="humira_ca_top10"):
        get_question("no_such_question")
