"""The deterministic SQL checker: names against the schema, identifiers, result size."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from loopwright.healthcare.data import (
    DIRECT_IDENTIFIERS,
    PROVIDER_IDENTIFIERS,
    QUASI_IDENTIFIERS,
    SCHEMA,
    connect_read_only,
    database_schema,
)
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


# --- regressions found by probing the checker with queries DuckDB runs -----------------------


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT x.d FROM RX_CLAIMS r, LATERAL (SELECT r.PAID_AMT * 2 AS d) x LIMIT 5",
        """SELECT r.NDC_DRUG_NM, x.n FROM RX_CLAIMS r JOIN LATERAL (
               SELECT COUNT(*) AS n FROM MED_CLAIMS m WHERE m.PATIENT_ID = r.PATIENT_ID
           ) x ON TRUE LIMIT 5""",
        "SELECT u.v FROM RX_CLAIMS r, UNNEST([r.PAID_AMT]) AS u(v) LIMIT 5",
        "SELECT v FROM RX_CLAIMS r, UNNEST([PAID_AMT, PATIENT_PAY_AMT]) AS u(v) LIMIT 5",
    ],
)
def test_lateral_joins_and_unnest_are_checked_without_recursing_forever(sql: str) -> None:
    result = check_sql(sql)
    assert result.ok, result.to_dict()
    assert "RX_CLAIMS" in result.tables


def test_an_identifier_returned_through_lateral_or_unnest_is_flagged() -> None:
    for sql in [
        "SELECT x.p FROM RX_CLAIMS r, LATERAL (SELECT r.PATIENT_ID AS p) x LIMIT 5",
        "SELECT u.v FROM RX_CLAIMS r CROSS JOIN UNNEST([r.PATIENT_ID]) AS u(v) LIMIT 5",
    ]:
        assert "direct_identifier" in codes(check_sql(sql)), sql


@pytest.mark.parametrize(
    "sql",
    [
        "",
        ";",
        "SELECT",
        "SELECT * FROM (SELECT * FROM (SELECT * FROM RX_CLAIMS)) LIMIT 1",
        "WITH RECURSIVE t AS (SELECT * FROM t) SELECT * FROM t",
        "WITH a AS (SELECT * FROM b), b AS (SELECT * FROM a) SELECT * FROM a",
        "SELECT * FROM RX_CLAIMS r, LATERAL (SELECT * FROM LATERAL (SELECT r.*) y) x LIMIT 1",
        "SELECT (SELECT (SELECT PATIENT_ID)) FROM RX_CLAIMS LIMIT 1",
        "SELECT a.b.c.d.e FROM RX_CLAIMS LIMIT 1",
        "SELECT COLUMNS(c -> c LIKE 'PAT%') FROM RX_CLAIMS LIMIT 1",
        "SELECT COLUMNS('[') FROM RX_CLAIMS LIMIT 1",
        "SELECT " + "(" * 300 + "1" + ")" * 300,
        "SELECT * FROM " + "(SELECT * FROM " * 60 + "RX_CLAIMS" + ")" * 60,
        "SELECT " + "(" * 3000 + "1" + ")" * 3000,
        "SELECT 1 " + "UNION ALL SELECT 1 " * 3000,
    ],
    ids=lambda sql: sql[:40],
)
def test_check_sql_never_raises(sql: str) -> None:
    assert isinstance(check_sql(sql), SQLCheck)


def test_an_internal_failure_degrades_to_fewer_findings(monkeypatch: pytest.MonkeyPatch) -> None:
    from loopwright.healthcare import sqlcheck

    def explode(*_args: object) -> None:
        raise RuntimeError("an unexpected sqlglot shape")

    monkeypatch.setattr(sqlcheck._Checker, "_check_output", explode)
    result = check_sql("SELECT PATIENT_ID, NDC_DRUG_NAME FROM RX_CLAIMS")
    assert codes(result) == ["unknown_column"]  # the name check still ran


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT (SELECT PATIENT_ID FROM MED_CLAIMS LIMIT 1) AS p",
        """SELECT NDC_DRUG_NM, (SELECT MAX(m.PATIENT_ID) FROM MED_CLAIMS m) AS p
           FROM RX_CLAIMS GROUP BY 1""",
        "SELECT (SELECT m.PATIENT_ID FROM MED_CLAIMS m LIMIT 1) FROM PROVIDERS_BIO LIMIT 5",
    ],
)
def test_an_identifier_returned_by_a_scalar_subquery_is_flagged(sql: str) -> None:
    result = check_sql(sql)
    issue = next(i for i in result.issues if i.code == "direct_identifier")
    assert issue.table == "MED_CLAIMS"  # resolved in the subquery, not against the outer FROM


def test_a_subquery_in_a_predicate_does_not_expose_its_column() -> None:
    sql = """SELECT NDC_DRUG_NM, EXISTS (SELECT PATIENT_ID FROM MED_CLAIMS) AS any_med
             FROM RX_CLAIMS GROUP BY 1"""
    assert check_sql(sql).issues == ()


def test_star_exclude_and_columns_select_the_columns_they_name() -> None:
    excluded = check_sql("SELECT * EXCLUDE (PATIENT_ID) FROM RX_CLAIMS LIMIT 5")
    assert "direct_identifier" not in codes(excluded)
    assert "quasi_identifier" in codes(excluded)  # the rest of the row still goes out
    lower = check_sql("SELECT r.* EXCLUDE (patient_id) FROM RX_CLAIMS r LIMIT 5")
    assert "direct_identifier" not in codes(lower)
    nested = check_sql(
        "SELECT * EXCLUDE (pid) FROM (SELECT PATIENT_ID AS pid, PAID_AMT FROM RX_CLAIMS) LIMIT 5"
    )
    assert "direct_identifier" not in codes(nested)
    for sql in [
        "SELECT COLUMNS('PATIENT.*') FROM RX_CLAIMS LIMIT 5",
        "SELECT COLUMNS(['PATIENT_ID']) FROM RX_CLAIMS LIMIT 5",
        "SELECT NDC_DRUG_NM, MAX(COLUMNS('_ID$')) FROM RX_CLAIMS GROUP BY 1",
    ]:
        assert "direct_identifier" in codes(check_sql(sql)), sql
    amounts = check_sql("SELECT COLUMNS('_AMT$') FROM RX_CLAIMS LIMIT 5")
    assert amounts.issues == ()
    masked = check_sql("SELECT * REPLACE (NULL AS PATIENT_ID) FROM RX_CLAIMS LIMIT 5")
    assert "direct_identifier" not in codes(masked)
    hashed = check_sql("SELECT * REPLACE (md5(PATIENT_ID) AS PATIENT_ID) FROM RX_CLAIMS LIMIT 5")
    assert "direct_identifier" in codes(hashed)
    renamed = check_sql("SELECT p FROM (SELECT * RENAME (PATIENT_ID AS p) FROM RX_CLAIMS) LIMIT 5")
    assert codes(renamed) == ["direct_identifier"]


def test_struct_field_access_is_not_an_unknown_alias() -> None:
    for sql in [
        "SELECT s.a FROM (SELECT {'a': NDC_DRUG_NM} AS s FROM RX_CLAIMS) LIMIT 5",
        "SELECT t.s.a FROM (SELECT {'a': NDC_DRUG_NM} AS s FROM RX_CLAIMS) t LIMIT 5",
    ]:
        result = check_sql(sql)
        assert result.issues == (), (sql, result.to_dict())
    leaked = check_sql("SELECT s.p FROM (SELECT {'p': PATIENT_ID} AS s FROM RX_CLAIMS) LIMIT 5")
    assert codes(leaked) == ["direct_identifier"]
    assert codes(check_sql("SELECT x.NDC_DRUG_NM FROM RX_CLAIMS r LIMIT 5")) == ["unknown_alias"]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT a FROM (SELECT NDC_DRUG_NM FROM RX_CLAIMS GROUP BY 1) t(a)",
        "SELECT t.a, n FROM (SELECT NDC_DRUG_NM, COUNT(*) AS n FROM RX_CLAIMS GROUP BY 1) t(a)",
        "WITH c(a) AS (SELECT NDC_DRUG_NM FROM RX_CLAIMS GROUP BY 1) SELECT a FROM c",
        "SELECT x FROM UNNEST([1, 2, 3]) AS t(x)",
        "SELECT t.x FROM UNNEST([1, 2, 3]) AS t(x)",
        "SELECT * FROM range(3) r WHERE r.range > 1",
        """WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t WHERE n < 5)
           SELECT n FROM t""",
    ],
)
def test_column_lists_after_an_alias_rename_the_columns(sql: str) -> None:
    result = check_sql(sql)
    assert result.issues == (), result.to_dict()


def test_renamed_columns_are_still_resolved_and_judged() -> None:
    leaked = check_sql("SELECT a FROM (SELECT PATIENT_ID FROM RX_CLAIMS) t(a) LIMIT 5")
    assert codes(leaked) == ["direct_identifier"]
    stale = check_sql("SELECT NDC_DRUG_NM FROM (SELECT NDC_DRUG_NM FROM RX_CLAIMS) t(a) LIMIT 5")
    assert codes(stale) == ["unknown_column"]


def test_unknown_columns_in_using_are_errors() -> None:
    result = check_sql("SELECT COUNT(*) FROM RX_CLAIMS JOIN MED_CLAIMS USING (FOO_ID)")
    assert codes(result) == ["unknown_column"]
    assert result.issues[0].column == "FOO_ID"
    left_only = check_sql("SELECT COUNT(*) FROM RX_CLAIMS JOIN PROVIDERS_BIO USING (npi_number)")
    assert codes(left_only) == ["unknown_column"]
    assert check_sql(
        "SELECT NDC_DRUG_NM, COUNT(*) FROM RX_CLAIMS JOIN MED_CLAIMS USING (PATIENT_ID) GROUP BY 1"
    ).ok


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT table_name FROM information_schema.tables",
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'RX_CLAIMS'",
        "SELECT tablename FROM pg_catalog.pg_tables",
        "SELECT COUNT(*) FROM main.RX_CLAIMS",
    ],
)
def test_system_schemas_are_not_judged_against_the_claims_schema(sql: str) -> None:
    result = check_sql(sql)
    assert result.issues == (), result.to_dict()


def test_tables_in_the_default_schema_are_still_judged() -> None:
    assert codes(check_sql("SELECT COUNT(*) FROM main.RX_CLAIM")) == ["unknown_table"]
    assert codes(check_sql("SELECT COUNT(*) FROM public.RX_CLAIM")) == ["unknown_table"]


def test_one_mistake_is_reported_once() -> None:
    wrong = check_sql(
        "SELECT COUNT(*) FROM PROVIDERS_BIO WHERE npi_number IN (SELECT npi FROM PROVIDER_PAYMENTS)"
    )
    assert codes(wrong) == ["unknown_column"]
    assert wrong.issues[0].table is None  # not blamed on PROVIDERS_BIO, the outer table
    using = check_sql("SELECT PATIENT_ID FROM RX_CLAIMS JOIN MED_CLAIMS USING (PATIENT_ID) LIMIT 5")
    assert codes(using) == ["direct_identifier"]


def test_distinct_and_limited_subqueries_need_no_limit() -> None:
    assert check_sql("SELECT DISTINCT NDC_DRUG_NM FROM RX_CLAIMS").issues == ()
    assert check_sql("SELECT DISTINCT PATIENT_BIRTH_YEAR FROM RX_CLAIMS").issues == ()
    assert (
        check_sql("SELECT NDC_DRUG_NM FROM (SELECT NDC_DRUG_NM FROM RX_CLAIMS LIMIT 10)").issues
        == ()
    )
    still = check_sql("WITH c AS (SELECT NDC_DRUG_NM FROM RX_CLAIMS) SELECT NDC_DRUG_NM FROM c")
    assert codes(still) == ["missing_limit"]
    ids = check_sql("SELECT DISTINCT PATIENT_ID FROM RX_CLAIMS")
    assert codes(ids) == ["direct_identifier"]


def test_an_aggregate_inside_a_scalar_subquery_does_not_aggregate_the_outer_rows() -> None:
    result = check_sql(
        "SELECT NDC_DRUG_NM, (SELECT COUNT(*) FROM PROVIDERS_BIO) AS doctors FROM RX_CLAIMS"
    )
    assert codes(result) == ["missing_limit"]


def test_a_union_column_is_traced_through_every_branch() -> None:
    sql = """SELECT n FROM (SELECT NDC_DRUG_NM AS n FROM RX_CLAIMS
                           UNION ALL SELECT PATIENT_ID FROM MED_CLAIMS) LIMIT 5"""
    assert "direct_identifier" in codes(check_sql(sql))


# --- schema-qualified tables, warehouse naming, DESCRIBE and SUMMARIZE ---------------------------

#: the generated tables as a profile or PostgreSQL/BigQuery backend keys them outside the
#: default schema
QUALIFIED = {f"claims.{table}": columns for table, columns in SCHEMA.items()}


def test_schema_qualified_tables_are_judged_like_plain_ones() -> None:
    star = check_sql("SELECT * FROM claims.RX_CLAIMS", QUALIFIED)
    assert {"direct_identifier", "select_star", "missing_limit"} <= set(codes(star))
    assert star.tables == ("claims.RX_CLAIMS",)
    leak = next(i for i in star.issues if i.code == "direct_identifier")
    assert leak.column == "PATIENT_ID"

    typo = check_sql("SELECT * FROM claims.RX_CLAIM LIMIT 5", QUALIFIED)
    assert codes(typo) == ["unknown_table"]
    assert typo.issues[0].table == "claims.RX_CLAIM"
    assert typo.issues[0].suggestion is not None
    assert "claims.RX_CLAIMS" in typo.issues[0].suggestion

    column = check_sql("SELECT npi FROM claims.PROVIDERS_BIO", QUALIFIED)
    assert codes(column) == ["unknown_column"]
    assert "in claims.PROVIDERS_BIO" in column.issues[0].message

    # names are case-insensitive, qualified or not, and aliases resolve as before
    assert (
        check_sql(
            "SELECT r.NDC_DRUG_NM, COUNT(*) FROM CLAIMS.rx_claims r GROUP BY 1", QUALIFIED
        ).issues
        == ()
    )
    quasi = check_sql("SELECT PATIENT_GENDER_CD FROM claims.MED_CLAIMS LIMIT 5", QUALIFIED)
    assert codes(quasi) == ["quasi_identifier"]
    # a bare name does not reach a table that lives only in another schema
    assert codes(check_sql("SELECT COUNT(*) FROM RX_CLAIMS", QUALIFIED)) == ["unknown_table"]
    # plain keys work as before, and other schemas are still not judged
    assert check_sql("SELECT COUNT(*) FROM RX_CLAIMS").issues == ()
    assert check_sql("SELECT COUNT(*) FROM other.RX_CLAIM", QUALIFIED).issues == ()
    mixed = {**SCHEMA, "claims.extra": [("x", "INTEGER")]}
    assert codes(check_sql("SELECT y FROM claims.extra", mixed)) == ["unknown_column"]
    assert check_sql("SELECT COUNT(*) FROM main.RX_CLAIMS", mixed).issues == ()


@pytest.mark.parametrize(
    ("table", "column", "kind"),
    [
        ("RX_CLAIMS", "PATIENT_NM", "direct"),
        ("RX_CLAIMS", "PATIENT_FIRST_NM", "direct"),
        ("RX_CLAIMS", "PATIENT_LAST_NM", "direct"),
        ("RX_CLAIMS", "PATIENT_BIRTH_DT", "direct"),
        ("ELIGIBILITY", "BIRTH_DT", "direct"),
        ("ELIGIBILITY", "MBR_ID", "direct"),
        ("CLAIMS", "BENE_ID", "direct"),
        ("ENCOUNTERS", "PAT_ID", "direct"),
        ("RX_CLAIMS", "PATIENT_ADDR_LINE_1", "direct"),
        ("ELIGIBILITY", "MBR_FIRST_NM", "direct"),
        ("MEMBERS", "FIRST_NM", "direct"),
        ("ELIGIBILITY", "MBR_ZIP5_CD", "quasi"),
        ("CLAIMS", "BENE_BIRTH_YR", "quasi"),
        ("ENCOUNTERS", "PAT_GNDR_CD", "quasi"),
        ("claims.RX_CLAIMS", "PATIENT_NM", "direct"),
    ],
)
def test_claims_warehouse_names_are_identifiers(table: str, column: str, kind: str) -> None:
    assert classify_identifier(table, column) == kind


def test_the_generated_schema_is_classified_as_its_identifier_sets_say() -> None:
    expected = {
        **dict.fromkeys(DIRECT_IDENTIFIERS, "direct"),
        **dict.fromkeys(QUASI_IDENTIFIERS, "quasi"),
        **dict.fromkeys(PROVIDER_IDENTIFIERS, "provider"),
    }
    for table, columns in SCHEMA.items():
        for column, _ in columns:
            want = expected.get((table, column))
            assert classify_identifier(table, column) == want, (table, column)
            assert classify_identifier(f"claims.{table}", column) == want, (table, column)
    # drug and provider names in the _NM style stay what they are
    assert classify_identifier("MEMBER_CLAIMS", "NDC_DRUG_NM") is None
    assert classify_identifier("RX_CLAIMS", "PRESCRIBER_NM") is None
    assert classify_identifier("CLAIMS", "BENEFIT_ID") is None
    assert classify_identifier("CLAIMS", "PATH_ID") is None


@pytest.mark.parametrize(
    "sql",
    [
        "DESCRIBE RX_CLAIMS",
        "DESC PROVIDERS_BIO",
        "DESCRIBE TABLE MED_CLAIMS",
        "DESCRIBE SELECT * FROM RX_CLAIMS",
        "SUMMARIZE PROVIDERS_BIO",
        "SUMMARIZE SELECT NDC_DRUG_NM, PAID_AMT FROM RX_CLAIMS",
        "SUMMARIZE (SELECT PATIENT_ID, COUNT(*) AS n FROM RX_CLAIMS GROUP BY 1 HAVING n > 0)",
    ],
)
def test_describe_and_summarize_are_queries(sql: str) -> None:
    result = check_sql(sql)
    assert result.ok, result.to_dict()
    assert [i for i in result.issues if i.code != "summarize_identifier"] == []
    assert result.tables


def test_describe_and_summarize_are_judged_against_the_schema() -> None:
    assert codes(check_sql("DESCRIBE RX_CLAIM")) == ["unknown_table"]
    assert codes(check_sql("SUMMARIZE SELECT npi FROM PROVIDERS_BIO")) == ["unknown_column"]
    assert codes(check_sql("SUMMARIZE claims.RX_CLAIM", QUALIFIED)) == ["unknown_table"]
    # the SQL tool runs them on DuckDB only
    assert codes(check_sql("DESCRIBE RX_CLAIMS", dialect="postgres")) == ["not_a_query"]


def test_show_is_checked_as_duckdb_reads_it() -> None:
    """The SQL tool runs DuckDB's SHOW statements; they were errors here ("not a query")."""
    for sql in ("SHOW TABLES", "SHOW ALL TABLES;", "DESCRIBE"):  # names from the catalogue
        assert check_sql(sql).issues == (), sql
    assert check_sql("SHOW RX_CLAIMS").tables == ("RX_CLAIMS",)  # SHOW x is DESCRIBE x
    assert check_sql("SHOW RX_CLAIMS").issues == ()
    assert codes(check_sql("SHOW RX_CLAIM")) == ["unknown_table"]
    assert codes(check_sql("SHOW SELECT npi FROM PROVIDERS_BIO")) == ["unknown_column"]
    assert codes(check_sql("SHOW TABLES; DROP TABLE RX_CLAIMS")) == ["multiple_statements"]
    assert codes(check_sql("SHOW TABLES", dialect="postgres")) == ["not_a_query"]


def test_a_parse_error_names_what_was_written() -> None:
    message = check_sql("SELECT * FROM RX_CLAIMS WHERE").issues[0].message
    assert "incomplete WHERE at line 1" in message
    assert "<" not in message  # was: "missing for <class 'sqlglot.expressions.query.Where'>"


def test_summarize_warns_about_the_min_and_max_of_direct_identifiers() -> None:
    result = check_sql("SUMMARIZE RX_CLAIMS")
    assert codes(result) == ["summarize_identifier"]
    assert result.ok  # a warning: two values per column, no patient rows
    assert "RX_CLAIMS.PATIENT_ID" in result.issues[0].message
    assert "EXCLUDE" in (result.issues[0].suggestion or "")
    assert check_sql("SUMMARIZE SELECT * EXCLUDE (PATIENT_ID) FROM RX_CLAIMS").issues == ()
    assert check_sql("DESCRIBE RX_CLAIMS").issues == ()  # names and types only


# --- whole rows, struct stars, per-patient groups, DuckDB's star filters and PIVOT -------------


@pytest.mark.parametrize(
    ("sql", "dialect"),
    [
        ("SELECT r FROM RX_CLAIMS r LIMIT 5", "duckdb"),
        ("SELECT RX_CLAIMS FROM RX_CLAIMS LIMIT 5", "duckdb"),
        ("SELECT main.RX_CLAIMS FROM RX_CLAIMS LIMIT 5", "duckdb"),
        ("SELECT to_json(r) AS j FROM RX_CLAIMS r LIMIT 5", "duckdb"),
        ("SELECT {'x': r} AS s FROM RX_CLAIMS r LIMIT 5", "duckdb"),
        ("SELECT t FROM (SELECT PATIENT_ID, PAID_AMT FROM RX_CLAIMS) t LIMIT 5", "duckdb"),
        ("SELECT row_to_json(r) FROM RX_CLAIMS r LIMIT 5", "postgres"),
        ("SELECT row_to_json(r.*) FROM RX_CLAIMS r LIMIT 5", "postgres"),
        ("SELECT TO_JSON_STRING(r) FROM RX_CLAIMS r LIMIT 5", "bigquery"),
    ],
)
def test_a_whole_row_returned_is_a_direct_identifier_leak(sql: str, dialect: str) -> None:
    """A FROM item's name as a value is its whole row (a struct in DuckDB and BigQuery, a
    composite in PostgreSQL), PATIENT_ID included; it was "column r does not exist"."""
    result = check_sql(sql, dialect=dialect)
    assert "unknown_column" not in codes(result), result.to_dict()
    assert "unknown_alias" not in codes(result), result.to_dict()
    issue = next(i for i in result.issues if i.code == "direct_identifier")
    assert (issue.severity, issue.column) == ("error", "PATIENT_ID")


def test_whole_rows_the_checker_calls_leaks_do_return_patient_ids(
    claims_con: duckdb.DuckDBPyConnection,
) -> None:
    patient = claims_con.execute("SELECT PATIENT_ID FROM RX_CLAIMS LIMIT 1").fetchone()
    assert patient is not None
    for sql in [
        f"SELECT r FROM RX_CLAIMS r WHERE PATIENT_ID = '{patient[0]}' LIMIT 1",
        f"SELECT RX_CLAIMS FROM RX_CLAIMS WHERE PATIENT_ID = '{patient[0]}' LIMIT 1",
        f"SELECT to_json(r) FROM RX_CLAIMS r WHERE PATIENT_ID = '{patient[0]}' LIMIT 1",
    ]:
        assert patient[0] in str(claims_con.execute(sql).fetchall()), sql
        assert "direct_identifier" in codes(check_sql(sql)), sql


def test_an_aggregated_or_identifier_free_whole_row_is_fine() -> None:
    assert check_sql("SELECT COUNT(r) AS n FROM RX_CLAIMS r").issues == ()
    assert check_sql("SELECT count(r.*) FROM RX_CLAIMS r", dialect="postgres").issues == ()
    free = check_sql("SELECT t FROM (SELECT NDC_DRUG_NM, PAID_AMT FROM RX_CLAIMS) t LIMIT 5")
    assert free.issues == ()
    # a column wins over a FROM item of the same name, as in DuckDB
    assert check_sql("SELECT state FROM PROVIDERS_BIO AS state").issues == ()
    assert codes(check_sql("SELECT q FROM RX_CLAIMS r LIMIT 5")) == ["unknown_column"]


def test_a_struct_expanded_with_star_is_judged_like_its_fields() -> None:
    """``s.*`` of a struct column returns its fields: PATIENT_ID in it is the same error as
    selecting PATIENT_ID (it was a select_star warning)."""
    for sql in [
        """WITH t AS (SELECT {'id': PATIENT_ID, 'd': NDC_DRUG_NM} AS s FROM RX_CLAIMS)
           SELECT s.* FROM t LIMIT 5""",
        """WITH t AS (SELECT {'id': PATIENT_ID, 'd': NDC_DRUG_NM} AS s FROM RX_CLAIMS)
           SELECT t.s.* FROM t LIMIT 5""",
    ]:
        result = check_sql(sql)
        assert codes(result) == ["direct_identifier"], (sql, result.to_dict())
        assert result.issues[0].severity == "error"
    clean = check_sql(
        "WITH t AS (SELECT {'d': NDC_DRUG_NM} AS s FROM RX_CLAIMS) SELECT s.* FROM t LIMIT 5"
    )
    assert clean.issues == ()


def test_grouping_by_a_patient_identifier_returns_per_patient_rows() -> None:
    """GROUP BY PATIENT_ID aggregates, but one row per patient: returning the id is a leak
    (as it was), and quasi-identifiers returned with it are per-patient output, warned like
    row-level output (they were not)."""
    leak = check_sql("SELECT PATIENT_ID, COUNT(*) AS fills FROM RX_CLAIMS GROUP BY PATIENT_ID")
    assert codes(leak) == ["direct_identifier"]
    for sql in [
        """SELECT PATIENT_BIRTH_YEAR, PATIENT_GENDER_CD, COUNT(*) AS fills FROM RX_CLAIMS
           GROUP BY PATIENT_ID, PATIENT_BIRTH_YEAR, PATIENT_GENDER_CD""",
        "SELECT PATIENT_BIRTH_YEAR, COUNT(*) FROM RX_CLAIMS GROUP BY PATIENT_ID, 1",
        """SELECT MAX(PATIENT_BIRTH_YEAR) AS born, MAX(PATIENT_GENDER_CD) AS sex FROM MED_CLAIMS
           GROUP BY PATIENT_ID""",
        """SELECT b, COUNT(*) FROM (SELECT PATIENT_ID AS p, PATIENT_BIRTH_YEAR AS b
           FROM RX_CLAIMS) GROUP BY p, b""",
        "SELECT DISTINCT ON (PATIENT_ID) PATIENT_BIRTH_YEAR FROM RX_CLAIMS",
        "SELECT PATIENT_GENDER_CD, COUNT(*) FROM MED_CLAIMS GROUP BY ROLLUP (PATIENT_ID, 1)",
    ]:
        result = check_sql(sql)
        assert codes(result) == ["quasi_identifier"], (sql, result.to_dict())
        issue = result.issues[0]
        assert issue.severity == "warning"
        assert "one row per patient" in issue.message
        assert "PATIENT_ID" in issue.message
        assert issue.suggestion is not None
        assert "COUNT(DISTINCT PATIENT_ID)" in issue.suggestion
    for sql in [
        "SELECT COUNT(DISTINCT PATIENT_ID) AS patients FROM RX_CLAIMS",
        "SELECT COUNT(*) AS fills FROM RX_CLAIMS GROUP BY PATIENT_ID",
        """SELECT PATIENT_BIRTH_YEAR, COUNT(DISTINCT PATIENT_ID) AS patients FROM RX_CLAIMS
           GROUP BY PATIENT_BIRTH_YEAR""",
        "SELECT PATIENT_GENDER_CD, COUNT(*) FROM MED_CLAIMS GROUP BY ALL",
    ]:
        assert check_sql(sql).issues == (), sql


def test_an_average_over_one_patients_rows_is_that_patients_value() -> None:
    """Grouped by PATIENT_ID, AVG, MEDIAN or a quantile of the birth year returns each
    patient's birth year, as MAX does: per-patient output (they were taken for aggregates that
    hide the value). Grouped otherwise, they still hide it."""
    for sql in [
        "SELECT AVG(PATIENT_BIRTH_YEAR) AS born FROM RX_CLAIMS GROUP BY PATIENT_ID",
        "SELECT MEDIAN(PATIENT_BIRTH_YEAR) FROM MED_CLAIMS GROUP BY PATIENT_ID",
        "SELECT quantile_disc(PATIENT_BIRTH_YEAR, 0.5) FROM RX_CLAIMS GROUP BY PATIENT_ID",
        "SELECT quantile_cont(PATIENT_BIRTH_YEAR, 0.5) FROM RX_CLAIMS GROUP BY PATIENT_ID",
        "SELECT approx_quantile(PATIENT_BIRTH_YEAR, 0.5) FROM RX_CLAIMS GROUP BY PATIENT_ID",
        """SELECT NDC_DRUG_NM, CAST(AVG(PATIENT_BIRTH_YEAR) AS INT) AS born, COUNT(*) AS fills
           FROM RX_CLAIMS GROUP BY 1, PATIENT_ID""",
        """SELECT born FROM (SELECT PATIENT_ID, AVG(PATIENT_BIRTH_YEAR) AS born FROM RX_CLAIMS
           GROUP BY PATIENT_ID) LIMIT 5""",
    ]:
        result = check_sql(sql)
        assert codes(result) == ["quasi_identifier"], (sql, result.to_dict())
    for sql in [
        "SELECT AVG(PATIENT_BIRTH_YEAR) AS born FROM RX_CLAIMS",
        "SELECT NDC_DRUG_NM, MEDIAN(PATIENT_BIRTH_YEAR) FROM RX_CLAIMS GROUP BY NDC_DRUG_NM",
        "SELECT COUNT(DISTINCT PATIENT_BIRTH_YEAR) FROM RX_CLAIMS GROUP BY PATIENT_ID",
        "SELECT AVG(PAID_AMT) AS paid FROM RX_CLAIMS GROUP BY PATIENT_ID",
        """SELECT AVG(born) FROM (SELECT AVG(PATIENT_BIRTH_YEAR) AS born FROM RX_CLAIMS
           GROUP BY PATIENT_ID)""",
        """SELECT born, COUNT(*) AS patients FROM (SELECT AVG(PATIENT_BIRTH_YEAR) AS born
           FROM RX_CLAIMS GROUP BY PATIENT_ID) GROUP BY born""",
    ]:
        assert check_sql(sql).issues == (), (sql, check_sql(sql).to_dict())


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * LIKE 'PAT%' FROM RX_CLAIMS LIMIT 5",
        "SELECT r.* LIKE 'PATIENT%' FROM RX_CLAIMS r LIMIT 5",
        "SELECT * ILIKE 'patient_id' FROM RX_CLAIMS LIMIT 5",
        "SELECT * GLOB 'PAT*' FROM RX_CLAIMS LIMIT 5",
        "SELECT * SIMILAR TO 'PATIENT' FROM RX_CLAIMS LIMIT 5",
        "SELECT * LIKE 'PATIENT!_ID' ESCAPE '!' FROM RX_CLAIMS LIMIT 5",
        "SELECT * NOT LIKE '%AMT' FROM RX_CLAIMS LIMIT 5",
        "SELECT COLUMNS(*) FROM RX_CLAIMS LIMIT 5",
        "SELECT COLUMNS('PATIENT.*') FROM RX_CLAIMS LIMIT 5",
        "SELECT * EXCLUDE (CLAIM_ID) FROM RX_CLAIMS LIMIT 5",
        "SELECT * REPLACE (PAID_AMT * 2 AS PAID_AMT) FROM RX_CLAIMS LIMIT 5",
        """SELECT * EXCLUDE (r.PATIENT_ID) FROM RX_CLAIMS r JOIN MED_CLAIMS m USING (CLAIM_ID)
           LIMIT 5""",
    ],
)
def test_duckdb_star_expressions_that_pick_an_identifier_are_leaks(sql: str) -> None:
    """``* LIKE``/``GLOB``/``SIMILAR TO`` returned nothing to check (no findings at all);
    ``EXCLUDE (r.PATIENT_ID)`` drops r's column only, and a join's other PATIENT_ID still goes
    out."""
    result = check_sql(sql)
    assert "direct_identifier" in codes(result), result.to_dict()


def test_duckdb_star_expressions_that_leave_identifiers_out_are_fine() -> None:
    for sql in [
        "SELECT * LIKE '%AMT' FROM RX_CLAIMS LIMIT 5",
        "SELECT * ILIKE '%amt' FROM RX_CLAIMS LIMIT 5",
        "SELECT * GLOB '*_AMT' FROM RX_CLAIMS LIMIT 5",
        "SELECT * NOT SIMILAR TO 'PATIENT|PRESCRIBER' FROM RX_CLAIMS LIMIT 5",
        "SELECT * LIKE 'PATIENT!_IDX' ESCAPE '!' FROM RX_CLAIMS LIMIT 5",
        "SELECT MAX(COLUMNS(* EXCLUDE (PATIENT_ID))) FROM RX_CLAIMS",  # was a false alarm
        "SELECT COLUMNS(* EXCLUDE (PATIENT_ID)) FROM PROVIDERS_BIO LIMIT 5",
    ]:
        result = check_sql(sql)
        assert "direct_identifier" not in codes(result), (sql, result.to_dict())
        assert result.ok, (sql, result.to_dict())
    both = check_sql(
        "SELECT * EXCLUDE (PATIENT_ID) FROM RX_CLAIMS r JOIN MED_CLAIMS m USING (CLAIM_ID) LIMIT 5"
    )
    assert "direct_identifier" not in codes(both)  # unqualified: dropped from both sides
    # COLUMNS(*) is every column, as SELECT * is
    assert "select_star" in codes(check_sql("SELECT COLUMNS(*) FROM PROVIDER_PAYMENTS LIMIT 5"))


@pytest.mark.parametrize(
    "sql",
    [
        """PIVOT RX_CLAIMS ON PAYER_TYPE IN ('Commercial', 'Medicare') USING SUM(PAID_AMT)
           GROUP BY NDC_DRUG_NM""",
        """PIVOT RX_CLAIMS ON PAYER_TYPE IN ('Commercial', 'Medicare')
           USING COUNT(DISTINCT PATIENT_ID) AS patients, SUM(PAID_AMT) AS paid
           GROUP BY NDC_DRUG_NM""",
        """SELECT NDC_DRUG_NM, Commercial, Medicare FROM (
               PIVOT RX_CLAIMS ON PAYER_TYPE IN ('Commercial', 'Medicare') USING SUM(PAID_AMT)
               GROUP BY NDC_DRUG_NM) ORDER BY Commercial DESC LIMIT 5""",
        """WITH p AS (PIVOT RX_CLAIMS ON PAYER_TYPE IN ('Commercial', 'Medicare')
                      USING SUM(PAID_AMT) AS paid GROUP BY NDC_DRUG_NM)
           SELECT NDC_DRUG_NM, Commercial_paid FROM p LIMIT 5""",
        """UNPIVOT (SELECT NDC_DRUG_NM, SUM(PAID_AMT) AS paid, SUM(PATIENT_PAY_AMT) AS copay
                    FROM RX_CLAIMS GROUP BY 1) ON paid, copay INTO NAME k VALUE v""",
        """SELECT Commercial FROM (SELECT NDC_DRUG_NM, PAYER_TYPE, PAID_AMT FROM RX_CLAIMS)
           PIVOT (SUM(PAID_AMT) FOR PAYER_TYPE IN ('Commercial', 'Medicare')) LIMIT 5""",
    ],
)
def test_pivot_statements_are_checked_as_the_queries_they_are(
    sql: str, claims_con: duckdb.DuckDBPyConnection
) -> None:
    """DuckDB's PIVOT/UNPIVOT, which the SQL tool runs, were "not a query" at the top and
    unchecked in a subquery."""
    result = check_sql(sql)
    assert result.issues == (), result.to_dict()
    assert result.tables == ("RX_CLAIMS",)
    claims_con.execute(sql).fetchall()  # and they really run


@pytest.mark.parametrize(
    "sql",
    [
        """PIVOT RX_CLAIMS ON PAYER_TYPE IN ('Commercial', 'Medicare') USING SUM(PAID_AMT)
           GROUP BY PATIENT_ID""",
        # without GROUP BY, DuckDB groups by every other column: PATIENT_ID is returned
        "PIVOT RX_CLAIMS ON PAYER_TYPE IN ('Commercial', 'Medicare') USING SUM(PAID_AMT)",
        """PIVOT RX_CLAIMS ON PAYER_TYPE IN ('Commercial', 'Medicare') USING MAX(PATIENT_ID)
           GROUP BY NDC_DRUG_NM""",
        # without IN, the patient ids become the column names
        "PIVOT MED_CLAIMS ON PATIENT_ID USING COUNT(*) GROUP BY condition_label",
        "UNPIVOT RX_CLAIMS ON PAID_AMT, PATIENT_PAY_AMT INTO NAME k VALUE v",
        """SELECT * FROM (PIVOT RX_CLAIMS ON PAYER_TYPE IN ('Commercial', 'Medicare')
           USING SUM(PAID_AMT) GROUP BY PATIENT_ID) LIMIT 5""",
        """WITH p AS (UNPIVOT (SELECT PATIENT_ID, PAID_AMT FROM RX_CLAIMS) ON PAID_AMT)
           SELECT * FROM p LIMIT 5""",
    ],
)
def test_a_pivot_returning_patient_identifiers_is_an_error(sql: str) -> None:
    result = check_sql(sql)
    issue = next(i for i in result.issues if i.code == "direct_identifier")
    assert issue.column == "PATIENT_ID"
    assert not result.ok


def test_pivot_names_are_judged_against_the_schema() -> None:
    typo = check_sql(
        "PIVOT RX_CLAIMS ON PAYER_TYP IN ('Cash') USING SUM(PAID_AMT) GROUP BY NDC_DRUG_NM"
    )
    assert codes(typo) == ["unknown_column"]
    assert codes(check_sql("PIVOT RX_CLAIM ON PAYER_TYPE IN ('Cash') USING COUNT(*)")) == [
        "unknown_table"
    ]
    missing = check_sql(
        """SELECT Medicaid FROM (PIVOT RX_CLAIMS ON PAYER_TYPE IN ('Cash') USING SUM(PAID_AMT)
           GROUP BY NDC_DRUG_NM)"""
    )
    assert codes(missing) == ["unknown_column"]
    rows = check_sql("UNPIVOT RX_CLAIMS ON PAID_AMT, PATIENT_PAY_AMT")
    assert "missing_limit" in codes(rows)  # row by row, from a big table
    assert "select_star" not in codes(rows)  # the star is the statement's, not written
