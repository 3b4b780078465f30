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
            # every number wrong, optional ones too: with one claim of a condition its total
            # charge (optional) is its average charge (required)
            wrong = " ".join(
                f"The {fact.label} is {float(fact.values[0]) * 3 + 7:,.1f}."
                if fact.kind == "number"
                else f"The {fact.label} is {fact.expected}."
                for fact in facts
            )
            assert not check_golden(question, wrong, con).passed, question.id
    finally:
        con.close()


def test_an_unknown_question_id_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match="humira_ca_top10"):
        get_question("no_such_question")


# --- exact reference values: the answer's own rounding is the checker's to judge -----------


def _csv(con: duckdb.DuckDBPyConnection, sql: str) -> str:
    """An agent's CSV of ``sql``: every digit, as a query without ROUND saves it."""
    cursor = con.execute(sql)
    rows = [[str(v) for v in row] for row in cursor.fetchall()]
    header = [str(d[0]) for d in cursor.description or ()]
    return "\n".join(",".join(line) for line in [header, *rows])


def test_exact_average_fills_with_and_without_payments_pass(
    claims_con: duckdb.DuckDBPyConnection,
) -> None:
    """The reference rounded the averages to 4.7 and 7.5 fills: 4.74, the average to two
    places, was 0.04 off, over its 0.5% tolerance, and a CSV of the exact averages matched no
    row."""
    fills = Counter(
        npi
        for (npi,) in claims_con.execute(
            "SELECT PRESCRIBER_NPI_NBR FROM RX_CLAIMS WHERE NDC_DRUG_NM = 'OZEMPIC'"
        ).fetchall()
    )
    paid = {
        npi
        for (npi,) in claims_con.execute(
            "SELECT npi_number FROM PROVIDER_PAYMENTS WHERE associated_product = 'OZEMPIC'"
        ).fetchall()
    }
    with_paid = [n for npi, n in fills.items() if npi in paid]
    without = [n for npi, n in fills.items() if npi not in paid]
    average_with, average_without = (sum(g) / len(g) for g in (with_paid, without))
    question = get_question("ozempic_payments_effect")
    answer = (
        f"Prescribers with OZEMPIC payments averaged {average_with:.2f} fills, those without "
        f"{average_without:.2f}."
    )
    csv = (
        f"received_payments,prescribers,avg_fills\nTrue,{len(with_paid)},{average_with!r}\n"
        f"False,{len(without)},{average_without!r}"
    )
    verdict = check_golden(question, answer, claims_con, csv=csv)
    assert verdict.passed, verdict.reasons
    assert verdict.csv is not None
    assert verdict.csv.match == 1.0
    off = f"Prescribers with payments averaged {average_with:.2f} fills, those without " + (
        f"{average_without + 0.2:.2f}."
    )
    assert not check_golden(question, off, claims_con).passed


@pytest.mark.parametrize(
    ("question_id", "sql"),
    [
        ("experience_by_specialty",
         "SELECT specialty, AVG(years_in_practice) AS avg_years, COUNT(*) AS providers "
         "FROM PROVIDERS_BIO GROUP BY specialty ORDER BY avg_years DESC"),
        ("eliquis_days_supply",
         "SELECT AVG(DAYS_SUPPLY_CNT) AS avg_days_supply, "
         "100.0 * AVG(CASE WHEN DAYS_SUPPLY_CNT >= 90 THEN 1 ELSE 0 END) AS pct_90_day "
         "FROM RX_CLAIMS WHERE NDC_DRUG_NM = 'ELIQUIS'"),
        ("dermatology_humira_share",
         "SELECT 100.0 * AVG(CASE WHEN r.NDC_DRUG_NM = 'HUMIRA' THEN 1 ELSE 0 END) AS pct, "
         "SUM(CASE WHEN r.NDC_DRUG_NM = 'HUMIRA' THEN 1 ELSE 0 END) AS humira_rx, "
         "COUNT(*) AS all_rx FROM RX_CLAIMS r, PROVIDERS_BIO b "
         "WHERE b.npi_number = r.PRESCRIBER_NPI_NBR AND b.specialty = 'Dermatology'"),
    ],
)  # fmt: skip
def test_a_csv_of_exact_averages_and_shares_matches_the_reference(
    claims_con: duckdb.DuckDBPyConnection, question_id: str, sql: str
) -> None:
    """A CSV cell is matched within 0.1%; a reference rounded to one decimal (19.4 years for
    19.44, 29.4% for 29.44%) matched no CSV that kept every digit."""
    question = get_question(question_id)
    facts = question.key_facts(question.reference(claims_con))
    answer = _answer_stating(facts)
    verdict = check_golden(question, answer, claims_con, csv=_csv(claims_con, sql))
    assert verdict.passed, verdict.reasons
    assert verdict.csv is not None
    assert verdict.csv.match == 1.0
    wrong = _csv(claims_con, sql.replace("AVG(", "1.05 * AVG(", 1))
    assert not check_golden(question, answer, claims_con, csv=wrong).passed


def test_an_average_near_a_whole_number_keeps_its_tolerance() -> None:
    """An average of 19.96 years rounded to 20.0 became a count that only "20" stated."""
    con = duckdb.connect()
    con.execute("CREATE TABLE PROVIDERS_BIO (specialty VARCHAR, years_in_practice INTEGER)")
    years = [("Cardiology", 20)] * 49 + [("Cardiology", 18), ("Neurology", 12)]
    con.executemany("INSERT INTO PROVIDERS_BIO VALUES (?, ?)", years)
    question = get_question("experience_by_specialty")
    for average in ("19.96", "20.0", "about 20"):
        answer = f"Cardiology has the highest average, {average} years in practice."
        assert check_golden(question, answer, con).passed, average
    assert not check_golden(question, "Cardiology: 19.5 years on average.", con).passed
    assert not check_golden(question, "Neurology: 19.96 years on average.", con).passed
    con.close()


# --- facts the question asks for ------------------------------------------------------------


def test_the_top_humira_prescriber_is_answered_by_what_the_question_asks_for(
    claims_con: duckdb.DuckDBPyConnection,
) -> None:
    """NPI, name, specialty and payments: the question asks for no prescription count."""
    question = get_question("top_humira_prescriber")
    npi, first, last, specialty, _, _, paid = question.reference(claims_con).rows[0]
    answer = (
        f"The top HUMIRA prescriber is {first} {last} (NPI {npi}, {specialty}), who received "
        f"${paid:,.2f} in HUMIRA-related payments."
    )
    assert check_golden(question, answer, claims_con).passed
    wrong = answer.replace(f"{paid:,.2f}", f"{paid + 1000:,.2f}")
    assert not check_golden(question, wrong, claims_con).passed


def test_a_tie_past_the_limit_still_asks_the_top_humira_prescriber_count() -> None:
    """Twelve prescribers with one fill each: which is the top one is not known, so the count
    is the fact left to state."""
    con = duckdb.connect()
    npis = [f"1{n:09d}" for n in range(12)]
    _rx_table(con, [(npi, "HUMIRA", "CA", "2024-01-02", "PT1") for npi in npis])
    con.execute(
        "CREATE TABLE PROVIDERS_BIO AS SELECT DISTINCT PRESCRIBER_NPI_NBR AS npi_number, "
        "'Ann' AS first_name, 'Lee' AS last_name, 'Rheumatology' AS specialty, 'CA' AS state "
        "FROM RX_CLAIMS"
    )
    con.execute(
        "CREATE TABLE PROVIDER_PAYMENTS (npi_number VARCHAR, associated_product VARCHAR, "
        "total_payment_amount DECIMAL(12, 2))"
    )
    question = get_question("top_humira_prescriber")
    assert check_golden(question, f"NPI {npis[-1]} wrote 1 HUMIRA prescription.", con).passed
    assert not check_golden(question, f"NPI {npis[-1]} tops the list.", con).passed
    con.close()


def test_the_costliest_condition_is_answered_by_its_average_charge(
    claims_con: duckdb.DuckDBPyConnection,
) -> None:
    """The question asks which condition and its average charge per claim, not its total."""
    charges: dict[str, list[float]] = {}
    for label, charge in claims_con.execute(
        "SELECT condition_label, CLAIM_CHARGE_AMT FROM MED_CLAIMS"
    ).fetchall():
        charges.setdefault(label, []).append(float(charge))
    top = max(charges, key=lambda label: sum(charges[label]))
    average = sum(charges[top]) / len(charges[top])
    question = get_question("condition_costs")
    answer = (
        f"{top} has the highest total charges; its average charge per claim is ${average:,.2f}."
    )
    assert check_golden(question, answer, claims_con).passed
    wrong = f"{top} has the highest total charges; its average charge is ${average * 1.1:,.2f}."
    assert not check_golden(question, wrong, claims_con).passed


def test_the_most_frequent_payment_category_may_count_the_payments_in_its_records(
    claims_con: duckdb.DuckDBPyConnection,
) -> None:
    """A record of Open Payments may hold several payments (number_of_payments): the most
    frequent category's count is its records or the payments they hold."""
    rows = claims_con.execute(
        "SELECT nature_of_payment, number_of_payments, total_payment_amount FROM PROVIDER_PAYMENTS"
    ).fetchall()
    records: Counter[str] = Counter()
    payments: Counter[str] = Counter()
    amounts: Counter[str] = Counter()
    for nature, count, amount in rows:
        records[nature] += 1
        payments[nature] += count
        amounts[nature] += amount
    (frequent, n_records), (largest, amount) = records.most_common(1)[0], amounts.most_common(1)[0]
    n_payments = payments[frequent]
    assert n_payments > n_records  # the two readings differ on this data
    question = get_question("payment_natures")
    for count in (n_records, n_payments):
        answer = (
            f"{largest} is the largest by amount (${amount:,.2f}); {frequent} is the most "
            f"frequent, with {count:,} payments."
        )
        csv = "nature,payments,amount\n" + "\n".join(
            f"{nature},{(records if count == n_records else payments)[nature]},{amounts[nature]}"
            for nature in records
        )
        verdict = check_golden(question, answer, claims_con, csv=csv)
        assert verdict.passed, (count, verdict.reasons)
    wrong = answer.replace(f"{n_payments:,}", f"{n_payments + n_records:,}")
    assert not check_golden(question, wrong, claims_con).passed
