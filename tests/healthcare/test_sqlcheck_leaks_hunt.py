"""Wrong verdicts of the SQL checker found by an adversarial hunt: identifier leaks it passed,
and aggregated queries it called leaks."""

from __future__ import annotations

import duckdb
import pytest

from loopwright.healthcare.sqlcheck import SQLCheck, check_sql


def codes(result: SQLCheck) -> list[str]:
    return [issue.code for issue in result.issues]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM query('SELECT PATIENT_ID FROM RX_CLAIMS') LIMIT 5",
        "SELECT q.p FROM query('SELECT PATIENT_ID AS p FROM RX_CLAIMS') q LIMIT 5",
        "SELECT x FROM query('SELECT PATIENT_ID FROM RX_CLAIMS') t(x) LIMIT 5",
        "SELECT * FROM query('SELECT * FROM query(''SELECT PATIENT_ID FROM MED_CLAIMS'')') LIMIT 5",
        "SELECT PATIENT_ID FROM query_table('RX_CLAIMS') LIMIT 5",
        "SELECT * FROM query_table(['PROVIDERS_BIO', 'MED_CLAIMS'], true) LIMIT 5",
        "SUMMARIZE query_table('RX_CLAIMS')",
    ],
)
def test_duckdbs_query_and_query_table_are_followed_into_what_they_read(sql: str) -> None:
    """query('SELECT ...') runs a query held in a string and query_table('t') reads a table by
    name: both returned patient ids with no finding at all."""
    found = set(codes(check_sql(sql)))
    assert found & {"direct_identifier", "summarize_identifier"}, found


def test_what_query_and_query_table_read_is_judged_like_any_query() -> None:
    assert check_sql("SELECT COUNT(DISTINCT PATIENT_ID) FROM query_table('RX_CLAIMS')").ok
    counted = check_sql("SELECT n FROM query('SELECT COUNT(*) AS n FROM RX_CLAIMS')")
    assert counted.issues == ()
    assert counted.tables == ("RX_CLAIMS",)
    assert codes(check_sql("SELECT COUNT(*) FROM query_table('RX_CLAIM')")) == ["unknown_table"]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM query(getvariable('q'))",
        "SELECT * FROM query('SELECT PATIENT_ID FROM ' || 'RX_CLAIMS')",
        "SELECT * FROM query_table(getvariable('t'))",
        "SELECT * FROM query('SELECT reduce(list(PATIENT_ID), (a, b) -> a || b) FROM RX_CLAIMS')",
    ],
)
def test_sql_run_from_text_the_checker_cannot_read_is_an_error(sql: str) -> None:
    result = check_sql(sql)
    assert not result.ok
    assert codes(result) == ["unreadable_source"]


def test_query_and_query_table_do_return_what_they_read() -> None:
    """The leaks above are real: DuckDB runs the text and reads the table by name."""
    con = duckdb.connect()
    con.execute("CREATE TABLE RX_CLAIMS AS SELECT 'P000001' AS PATIENT_ID")
    assert con.execute("SELECT * FROM query('SELECT PATIENT_ID FROM RX_CLAIMS')").fetchall() == [
        ("P000001",)
    ]
    assert con.execute("SELECT * FROM query_table('RX_CLAIMS')").fetchall() == [("P000001",)]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT MEDIAN(PATIENT_ID) FROM RX_CLAIMS",
        "SELECT NDC_DRUG_NM, MEDIAN(PATIENT_ID) FROM RX_CLAIMS GROUP BY 1",
        "SELECT QUANTILE_DISC(PATIENT_ID, 0.5) FROM RX_CLAIMS",
        "SELECT QUANTILE(PATIENT_ID, 0.9) FROM MED_CLAIMS",
        "SELECT QUANTILE_DISC(PATIENT_ID, [0.1, 0.9]) FROM MED_CLAIMS",
    ],
)
def test_a_median_or_quantile_of_a_direct_identifier_is_one_patients_id(sql: str) -> None:
    """Like MIN and MAX, an order statistic is one of the values: of text, a real patient id."""
    assert "direct_identifier" in codes(check_sql(sql))


def test_duckdbs_median_of_text_is_a_value_of_the_column() -> None:
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT 'P' || i AS pid FROM range(5) r(i)")
    assert con.execute("SELECT MEDIAN(pid), QUANTILE_DISC(pid, 0.9) FROM t").fetchone() == (
        "P2",
        "P4",
    )


def test_order_statistics_of_other_columns_are_still_fine() -> None:
    assert check_sql("SELECT NDC_DRUG_NM, MEDIAN(PAID_AMT) FROM RX_CLAIMS GROUP BY 1").issues == ()
    assert check_sql("SELECT MEDIAN(PATIENT_BIRTH_YEAR) FROM RX_CLAIMS").issues == ()
    per_patient = check_sql("SELECT MEDIAN(PATIENT_BIRTH_YEAR) FROM RX_CLAIMS GROUP BY PATIENT_ID")
    assert codes(per_patient) == ["quasi_identifier"]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT b FROM RX_CLAIMS AS r(a, b) LIMIT 5",
        "SELECT r.b FROM RX_CLAIMS r(a, b) LIMIT 5",
        "SELECT b, COUNT(*) FROM MED_CLAIMS m(a, b) GROUP BY b",
    ],
)
def test_a_column_list_on_a_table_alias_renames_the_tables_columns(sql: str) -> None:
    """``FROM RX_CLAIMS r(a, b)`` calls CLAIM_ID a and PATIENT_ID b: b was an unknown column,
    and the patient ids it returns went unflagged."""
    assert codes(check_sql(sql)) == ["direct_identifier"]


def test_renamed_table_columns_are_known_by_their_new_names_only() -> None:
    assert check_sql("SELECT a FROM RX_CLAIMS r(a) LIMIT 5").issues == ()
    assert check_sql("SELECT r.NDC_DRUG_NM, COUNT(*) FROM RX_CLAIMS r(a) GROUP BY 1").issues == ()
    assert codes(check_sql("SELECT PATIENT_ID FROM RX_CLAIMS r(a, b) LIMIT 5")) == [
        "unknown_column"
    ]
    con = duckdb.connect()
    con.execute("CREATE TABLE RX_CLAIMS AS SELECT 'C1' AS CLAIM_ID, 'P1' AS PATIENT_ID")
    assert con.execute("SELECT b FROM RX_CLAIMS AS r(a, b)").fetchall() == [("P1",)]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT LEN(LIST(DISTINCT PATIENT_ID)) FROM RX_CLAIMS",
        "SELECT NDC_DRUG_NM, ARRAY_LENGTH(ARRAY_AGG(PATIENT_ID)) AS n FROM RX_CLAIMS GROUP BY 1",
        "SELECT LENGTH(PATIENT_ID) AS id_length, COUNT(*) FROM RX_CLAIMS GROUP BY 1",
    ],
)
def test_the_size_of_identifiers_is_no_identifier(sql: str) -> None:
    """LEN(LIST(DISTINCT PATIENT_ID)) counts patients: it was called a direct identifier leak."""
    result = check_sql(sql)
    assert result.issues == (), result.to_dict()


def test_the_values_inside_a_sized_list_still_count() -> None:
    assert "direct_identifier" in codes(check_sql("SELECT LIST(PATIENT_ID)[1] FROM RX_CLAIMS"))
    assert "direct_identifier" in codes(
        check_sql("SELECT LIST_SORT(LIST(PATIENT_ID)), LEN(LIST(PATIENT_ID)) FROM RX_CLAIMS")
    )


@pytest.mark.parametrize(
    ("column", "kind"),
    [
        ('"Patient Name"', "direct_identifier"),
        ('"Date of Birth"', "direct_identifier"),
        ("DateOfBirth", "direct_identifier"),
        ('"Member-ID"', "direct_identifier"),
    ],
)
def test_identifiers_spelt_with_spaces_or_in_camel_case_are_found(column: str, kind: str) -> None:
    """The prompt kept the values of "Patient Name" or DateOfBirth out of the model's sight,
    but the SQL checker, matching snake_case names only, passed a query returning them row by
    row from a warehouse that spells them so."""
    schema = {
        "patients": [
            ("Patient Name", "VARCHAR"),
            ("Date of Birth", "DATE"),
            ("DateOfBirth", "DATE"),
            ("Member-ID", "VARCHAR"),
            ("State", "VARCHAR"),
        ]
    }
    found = codes(check_sql(f"SELECT {column} FROM patients LIMIT 5", schema))
    assert kind in found
    assert "direct_identifier" not in codes(
        check_sql("SELECT State, COUNT(*) FROM patients GROUP BY 1", schema)
    )
