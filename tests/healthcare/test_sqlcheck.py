"""The deterministic SQL checker: names against the schema, identifiers, result size."""

from __future__ import annotations

from pathlib import Path

import pytest

from loopwright.healthcare.data import SCHEMA, connect_read_only, database_schema
from loopwright.healthcare.sqlcheck import SQLCheck, check_sql, classify_identifier


def codes(result: SQLCheck) -> list[str]:
    return [issue.code for issue in result.issues]


def test_the_guide_query_is_clean() -> None:
    result = check_sql(
        """SELECT PRESCRIBER_NPI_NBR, COUNT(*) AS rx_count
           FROM RX_CLAIMS
           WHERE NDC_DRUG_NM = 'HUMIRA' AND PRESCRIBER_NPI_STATE_CD = 'CA'
           GROUP BY PRESCRIBER_NPI_NBR
           ORDER BY rx_count DESC
           LIMIT 10"""
    )
    assert result.ok
    assert result.issues == ()
    assert result.score == 100
    assert result.tables == ("RX_CLAIMS",)


def test_an_unknown_table_is_an_error_with_suggestions() -> None:
    result = check_sql("SELECT COUNT(*) FROM RX_CLAIM")
    assert not result.ok
    issue = result.errors()[0]
    assert issue.code == "unknown_table"
    assert issue.table == "RX_CLAIM"
    assert issue.suggestion is not None
    assert "RX_CLAIMS" in issue.suggestion
    assert "PROVIDERS_BIO" in issue.message  # lists what exists


def test_an_unknown_column_suggests_the_right_spelling_and_table() -> None:
    typo = check_sql("SELECT NDC_DRUG_NAME, COUNT(*) FROM RX_CLAIMS GROUP BY 1")
    assert codes(typo) == ["unknown_column"]
    assert typo.issues[0].suggestion is not None
    assert "NDC_DRUG_NM" in typo.issues[0].suggestion

    wrong_table = check_sql("SELECT r.specialty FROM RX_CLAIMS r LIMIT 5")
    issue = wrong_table.errors()[0]
    assert issue.code == "unknown_column"
    assert issue.column == "specialty"
    assert issue.suggestion is not None
    assert "PROVIDERS_BIO" in issue.suggestion

    unknown_alias = check_sql("SELECT x.NDC_DRUG_NM FROM RX_CLAIMS r LIMIT 5")
    assert codes(unknown_alias) == ["unknown_alias"]


def test_names_are_resolved_through_ctes_subqueries_and_aliases() -> None:
    clean = [
        """WITH t AS (SELECT NDC_DRUG_NM AS drug, COUNT(*) AS n FROM RX_CLAIMS GROUP BY 1)
           SELECT drug, n FROM t ORDER BY n DESC LIMIT 5""",
        """SELECT b.specialty, AVG(x.paid) AS avg_paid
           FROM (SELECT PRESCRIBER_NPI_NBR AS npi, PAID_AMT AS paid FROM RX_CLAIMS) x
           JOIN PROVIDERS_BIO b ON b.npi_number = x.npi GROUP BY b.specialty""",
        """SELECT condition_label, COUNT(*) AS claims FROM med_claims
           GROUP BY condition_label HAVING claims > 10 ORDER BY claims DESC""",
        """SELECT COUNT(*) FROM RX_CLAIMS r WHERE EXISTS (
               SELECT 1 FROM MED_CLAIMS m WHERE m.PATIENT_ID = r.PATIENT_ID)""",
    ]
    for sql in clean:
        result = check_sql(sql)
        assert result.ok, (sql, result.to_dict())
    broken = check_sql(
        "WITH t AS (SELECT NDC_DRUG_NM AS drug FROM RX_CLAIMS) SELECT t.drug_name FROM t LIMIT 5"
    )
    assert codes(broken) == ["unknown_column"]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT PATIENT_ID, NDC_DRUG_NM FROM RX_CLAIMS LIMIT 10",
        "SELECT MAX(PATIENT_ID) FROM MED_CLAIMS",
        "SELECT upper(m.PATIENT_ID) AS who FROM MED_CLAIMS m LIMIT 5",
        """WITH c AS (SELECT PATIENT_ID AS pid, COUNT(*) AS n FROM RX_CLAIMS GROUP BY 1)
           SELECT pid, n FROM c ORDER BY n DESC LIMIT 5""",
        "SELECT NDC_DRUG_NM FROM RX_CLAIMS UNION ALL SELECT PATIENT_ID FROM MED_CLAIMS",
        "SELECT * FROM MED_CLAIMS LIMIT 5",
    ],
)
def test_returning_a_direct_identifier_is_an_error(sql: str) -> None:
    result = check_sql(sql)
    assert "direct_identifier" in codes(result)
    assert not result.ok
    issue = next(i for i in result.issues if i.code == "direct_identifier")
    assert issue.column == "PATIENT_ID"
    assert "COUNT(DISTINCT PATIENT_ID)" in issue.message


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT COUNT(DISTINCT PATIENT_ID) AS patients FROM RX_CLAIMS",
        """WITH c AS (SELECT PATIENT_ID, COUNT(*) AS n FROM RX_CLAIMS GROUP BY 1)
           SELECT AVG(n) AS fills_per_patient FROM c""",
        """SELECT NDC_DRUG_NM, COUNT(*) AS fills FROM RX_CLAIMS
           WHERE PATIENT_ID IN (SELECT PATIENT_ID FROM MED_CLAIMS) GROUP BY 1""",
        """SELECT CASE WHEN PATIENT_BIRTH_YEAR < 1960 THEN 'older' ELSE 'younger' END AS band,
                  COUNT(*) AS n FROM RX_CLAIMS GROUP BY 1""",
    ],
)
def test_aggregates_over_identifiers_are_fine(sql: str) -> None:
    result = check_sql(sql)
    assert result.ok, result.to_dict()
    assert "direct_identifier" not in codes(result)


def test_quasi_and_provider_identifiers_are_flagged_only_row_by_row() -> None:
    row_level = check_sql(
        "SELECT PATIENT_BIRTH_YEAR, PATIENT_GENDER_CD, condition_label FROM MED_CLAIMS LIMIT 100"
    )
    assert codes(row_level) == ["quasi_identifier"]
    assert row_level.ok  # a warning, not an error
    assert check_sql("SELECT PATIENT_GENDER_CD, COUNT(*) FROM MED_CLAIMS GROUP BY 1").issues == ()

    providers = check_sql("SELECT npi_number, first_name, last_name FROM PROVIDERS_BIO")
    assert codes(providers) == ["provider_identifier"]
    assert providers.issues[0].severity == "info"
    assert "not patient data" in providers.issues[0].message


def test_select_star_and_unlimited_rows_from_big_tables_are_warned() -> None:
    star = check_sql("SELECT * FROM PROVIDER_PAYMENTS")
    assert {"select_star", "missing_limit"} <= set(codes(star))
    assert star.ok
    limited = check_sql("SELECT NDC_DRUG_NM, PAID_AMT FROM RX_CLAIMS LIMIT 100")
    assert limited.issues == ()
    unlimited = check_sql("SELECT NDC_DRUG_NM, PAID_AMT FROM RX_CLAIMS WHERE PAID_AMT > 1000")
    assert codes(unlimited) == ["missing_limit"]
    assert unlimited.issues[0].severity == "warning"
    small = check_sql("SELECT specialty, state FROM PROVIDERS_BIO")
    assert small.issues == ()  # the directory is small: no LIMIT needed


@pytest.mark.parametrize(
    ("sql", "code"),
    [
        ("DELETE FROM RX_CLAIMS", "not_a_query"),
        ("DROP TABLE RX_CLAIMS", "not_a_query"),
        ("SELECT 1; SELECT 2", "multiple_statements"),
        ("SELEC NDC_DRUG_NM FROM RX_CLAIMS", "parse_error"),
        ("  ", "empty"),
    ],
)
def test_statements_that_are_not_one_query_are_errors(sql: str, code: str) -> None:
    result = check_sql(sql)
    assert codes(result) == [code]
    assert result.score == 60
    assert result.issues[0].message.endswith(".")


def test_a_custom_schema_and_name_patterns(tmp_path: Path) -> None:
    schema = {"patients": [("patient_key", "INTEGER"), ("ssn", "VARCHAR"), ("zip", "VARCHAR")]}
    result = check_sql("SELECT ssn, zip FROM patients LIMIT 3", schema, big_tables=["patients"])
    assert codes(result) == ["direct_identifier", "quasi_identifier"]
    assert classify_identifier("patients", "first_name") == "direct"
    assert classify_identifier("PROVIDERS_BIO", "first_name") == "provider"
    assert classify_identifier("PROVIDERS_BIO", "gender") is None
    assert classify_identifier("x", "anything", {("X", "ANYTHING"): "direct"}) == "direct"


def test_the_schema_read_from_a_database_works_as_well(claims_db: Path) -> None:
    schema = database_schema(claims_db)
    assert schema == SCHEMA
    assert check_sql("SELECT NDC_DRUG_NM, COUNT(*) FROM RX_CLAIMS GROUP BY 1", schema).ok
    con = connect_read_only(claims_db)
    try:  # what the checker calls clean really runs
        con.execute("SELECT NDC_DRUG_NM, COUNT(*) FROM RX_CLAIMS GROUP BY 1").fetchall()
    finally:
        con.close()
