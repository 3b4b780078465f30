"""The parser check: one read-only query passes, anything else is refused with a reason."""

from __future__ import annotations

import pytest

from loopwright.sql import QueryRefused, UnparsableQuery, check_read_only

ALLOWED = [
    ("duckdb", "SELECT 1"),
    ("duckdb", "SELECT 1;"),
    ("duckdb", "WITH t AS (SELECT 1 AS x) SELECT * FROM t"),
    ("duckdb", "SELECT 1 UNION ALL SELECT 2"),
    ("duckdb", "SELECT 1 EXCEPT SELECT 2"),
    ("duckdb", "VALUES (1, 'a'), (2, 'b')"),
    ("duckdb", "(SELECT 1)"),
    ("duckdb", "FROM rx_claims LIMIT 3"),
    ("duckdb", "SELECT * FROM range(10) t(x)"),
    ("duckdb", "DESCRIBE rx_claims"),
    ("duckdb", "SELECT * FROM main.rx_claims"),
    ("postgres", "SELECT now(), pg_sleep(0)"),
    ("postgres", "WITH RECURSIVE t(n) AS (SELECT 1 UNION SELECT n + 1 FROM t) SELECT 1"),
    ("bigquery", "SELECT * FROM `project.claims.rx_claims` LIMIT 5"),
]

REFUSED = [
    # data and schema changes
    ("duckdb", "INSERT INTO rx_claims VALUES (1)", "INSERT"),
    ("duckdb", "UPDATE rx_claims SET paid_amt = 0", "UPDATE"),
    ("duckdb", "DELETE FROM rx_claims", "DELETE"),
    ("duckdb", "CREATE TABLE x AS SELECT 1", "CREATE"),
    ("duckdb", "CREATE TEMP TABLE x AS SELECT 1", "CREATE"),
    ("duckdb", "DROP TABLE rx_claims", "DROP"),
    ("duckdb", "ALTER TABLE rx_claims ADD COLUMN x INT", "ALTER"),
    ("postgres", "TRUNCATE rx_claims", "TRUNCATE"),
    ("postgres", "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE", "MERGE"),
    # settings, files, extensions, transactions
    ("duckdb", "PRAGMA version", "PRAGMA"),
    ("duckdb", "SET threads = 1", "SET"),
    ("duckdb", "COPY rx_claims TO 'out.csv'", "COPY"),
    ("duckdb", "COPY (SELECT 1) TO 'out.parquet' (FORMAT parquet)", "COPY"),
    ("duckdb", "ATTACH 'other.duckdb' AS other", "ATTACH"),
    ("duckdb", "DETACH other", "DETACH"),
    ("duckdb", "INSTALL httpfs", "INSTALL"),
    ("duckdb", "LOAD httpfs", "LOAD"),
    ("duckdb", "EXPORT DATABASE 'dump'", "EXPORT"),
    ("duckdb", "CALL pragma_version()", "CALL"),
    ("duckdb", "CHECKPOINT", "CHECKPOINT"),
    ("duckdb", "BEGIN TRANSACTION", "BEGIN"),
    ("duckdb", "USE main", "USE"),
    ("postgres", "COPY (SELECT 1) TO STDOUT", "COPY"),
    ("postgres", "SET default_transaction_read_only = off", "SET"),
    # more than one statement
    ("duckdb", "SELECT 1; SELECT 2", "2 statements"),
    ("duckdb", "SELECT 1; DROP TABLE rx_claims", "2 statements"),
    ("bigquery", "DECLARE x INT64; SELECT x", "DECLARE"),
    ("duckdb", "SELECT 1; LOAD httpfs", "2 statements"),
    # writes hidden inside a query
    ("postgres", "WITH d AS (DELETE FROM rx_claims RETURNING *) SELECT * FROM d", "DELETE"),
    ("postgres", "SELECT * INTO copy_of_claims FROM rx_claims", "INTO"),
    ("duckdb", "SELECT 1 AS x INTO y", "INTO"),
    ("postgres", "SELECT * FROM rx_claims FOR UPDATE", "FOR UPDATE"),
    # files and other servers, read through functions or file-name tables
    ("duckdb", "SELECT * FROM read_csv('/etc/passwd')", "read_csv"),
    ("duckdb", "SELECT * FROM read_csv_auto('claims.csv')", "read_csv_auto"),
    ("duckdb", "SELECT * FROM read_parquet('s3://bucket/x.parquet')", "read_parquet"),
    ("duckdb", "SELECT * FROM read_json_auto('x.json')", "read_json_auto"),
    ("duckdb", "SELECT * FROM read_text('/etc/passwd')", "read_text"),
    ("duckdb", "SELECT * FROM parquet_scan('x.parquet')", "parquet_scan"),
    ("duckdb", "SELECT * FROM glob('/etc/*')", "glob"),
    ("duckdb", "SELECT * FROM sniff_csv('x.csv')", "sniff_csv"),
    ("duckdb", "SELECT * FROM parquet_metadata('x.parquet')", "parquet_metadata"),
    ("duckdb", "SELECT * FROM query('SELECT 1')", "query"),
    ("duckdb", "SELECT * FROM 'claims.csv'", "looks like a file"),
    ("duckdb", 'SELECT * FROM "/etc/passwd"', "looks like a file"),
    ("duckdb", "SELECT * FROM 'https://example.com/x.parquet'", "looks like a file"),
    ("duckdb", "SELECT count(*) FROM rx_claims WHERE claim_id IN (FROM read_csv('x'))", "read_csv"),
    ("postgres", "SELECT pg_read_file('/etc/passwd')", "pg_read_file"),
    ("postgres", "SELECT lo_import('/etc/passwd')", "lo_import"),
    ("postgres", "SELECT * FROM pg_ls_dir('.')", "pg_ls_dir"),
    ("postgres", "SELECT set_config('default_transaction_read_only', 'off', false)", "set_config"),
    ("postgres", "SELECT query_to_xml('DELETE FROM rx_claims', true, true, '')", "query_to_xml"),
    ("postgres", "SELECT dblink_exec('host=x', 'DROP TABLE t')", "dblink_exec"),
    ("postgres", "SELECT pg_terminate_backend(1)", "pg_terminate_backend"),
    ("bigquery", "SELECT * FROM EXTERNAL_QUERY('conn', 'SELECT 1')", "external_query"),
    # names PostgreSQL reads through U& escapes, which sqlglot keeps as written
    ("postgres", "SELECT U&\"pg_read_fil\\0065\"('/etc/passwd')", "pg_read_file()"),
    ("postgres", "SELECT u&\"set_confi\\+000067\"('a.b', 'c', false)", "set_config()"),
    ("postgres", "SELECT U&\"pg_notif\\0079\"('channel', 'x')", "pg_notify()"),
    # SQL run from a string, which the check never sees
    ("postgres", "SELECT * FROM ts_stat('SELECT pg_read_file(''x'')::tsvector')", "ts_stat"),
    (
        "duckdb",
        "FROM json_execute_serialized_sql(json_serialize_sql('FROM query_table(''t'')'))",
        "json_execute_serialized_sql",
    ),
    # what a rollback does not undo: session locks, replication slots, statistics
    ("postgres", "SELECT pg_try_advisory_lock(1)", "pg_try_advisory_lock"),
    ("postgres", "SELECT pg_try_advisory_lock_shared(1)", "pg_try_advisory_lock_shared"),
    ("postgres", "SELECT pg_create_physical_replication_slot('s')", "replication_slot"),
    ("postgres", "SELECT pg_stat_reset()", "pg_stat_reset"),
    ("postgres", "SELECT pg_log_backend_memory_contexts(1)", "pg_log_backend_memory"),
    # DuckDB's instance-changing and file-reading table functions
    ("duckdb", "SELECT * FROM checkpoint()", "checkpoint"),
    ("duckdb", "SELECT * FROM truncate_duckdb_logs()", "truncate_duckdb_logs"),
    ("duckdb", "SELECT * FROM enable_logging()", "enable_logging"),
    ("duckdb", "SELECT * FROM parquet_full_metadata('x.parquet')", "parquet_full_metadata"),
    ("duckdb", "SUMMARIZE '/etc/passwd'", "looks like a file"),
    ("duckdb", "SUMMARIZE 'claims'", "looks like a file"),
]


@pytest.mark.parametrize(("dialect", "sql"), ALLOWED)
def test_single_queries_pass(dialect: str, sql: str) -> None:
    assert check_read_only(sql, dialect) is not None


@pytest.mark.parametrize(("dialect", "sql", "reason"), REFUSED)
def test_anything_else_is_refused_with_a_reason(dialect: str, sql: str, reason: str) -> None:
    with pytest.raises(QueryRefused) as refused:
        check_read_only(sql, dialect)
    message = str(refused.value)
    assert reason.lower() in message.lower()
    assert message.endswith(".")  # a sentence saying what to do, not a bare code
    assert len(message) > len(reason) + 20


@pytest.mark.parametrize("sql", ["", "   ", ";", "-- only a comment"])
def test_empty_sql_is_refused(sql: str) -> None:
    with pytest.raises(QueryRefused, match="give one SELECT query"):
        check_read_only(sql, "duckdb")


def test_unparsable_sql_is_refused_as_such() -> None:
    with pytest.raises(UnparsableQuery, match="could not be parsed as duckdb SQL"):
        check_read_only("SELECT * FROM (", "duckdb")


@pytest.mark.parametrize("dialect", ["duckdb", "postgres"])
@pytest.mark.parametrize(
    "sql",
    [
        "SELECT " + "(" * 900 + "1" + ")" * 900,
        "SELECT " + "CASE WHEN true THEN " * 900 + "1" + " END" * 900,
    ],
)
def test_sql_nested_too_deeply_for_the_parser_is_refused_as_such(dialect: str, sql: str) -> None:
    """sqlglot recurses per level: a RecursionError used to escape, reported as the
    database's error ("DuckDB: maximum recursion depth exceeded")."""
    with pytest.raises(UnparsableQuery, match="nested too deeply"):
        check_read_only(sql, dialect)


def test_sql_the_parser_trips_over_is_unparsable_not_a_crash() -> None:
    """sqlglot raises TypeError on some truncated operators; it used to escape as is."""
    with pytest.raises(UnparsableQuery, match="could not be parsed as postgres SQL"):
        check_read_only("SELECT jsonb_path_query(j, '$.a') -> 'x' ->> 0, j #>", "postgres")


@pytest.mark.parametrize(
    ("sql", "said"),
    [
        ("SELECT * FROM", "Expected table name but got the end of the SQL at line 1"),
        ("SELECT * FROM WHERE x = 1", "Expected table name but got 'WHERE' at line 1"),
        ("SELECT a FROM t WHERE", "incomplete WHERE at line 1, column 21"),
        ("SELECT a FROM t LIMIT", "incomplete LIMIT at line 1, column 21"),
    ],
)
def test_parse_errors_name_what_the_user_wrote(sql: str, said: str) -> None:
    """They showed sqlglot's objects: "got <Token token_type: TokenType.SENTINEL, text:
    SENTINEL, line: 1, ...>", "missing for <class 'sqlglot.expressions.query.Where'>"."""
    with pytest.raises(UnparsableQuery) as caught:
        check_read_only(sql, "postgres")
    assert said in str(caught.value)
    assert "<" not in str(caught.value)
