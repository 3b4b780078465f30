"""SQL backends for the ``SQL`` tool: one read-only interface over DuckDB, PostgreSQL and
BigQuery.

``connect(url)`` picks the backend from a URL; each backend reads its schema from the
database, runs one read-only query at a time per call (several calls may run at once),
streams the result to CSV and Parquet files with a row cap and a timeout, and closes with
``aclose()``::

    backend = connect("duckdb:///data/claims.duckdb")
    result = await backend.query("SELECT 42 AS answer", "answer.csv", "answer.parquet")
    await backend.aclose()

The backends' drivers (``duckdb``, ``psycopg``, ``google-cloud-bigquery``) and the file
writers (``pyarrow``, ``polars``) come with ``loopwright[sql]`` and are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from loopwright.lazy import lazy_getattr
from loopwright.sql.base import (
    DEFAULT_MAX_ROWS,
    DEFAULT_PREVIEW_ROWS,
    DEFAULT_TIMEOUT_S,
    ArrowStream,
    Interrupter,
    QueryRefused,
    QueryResult,
    QueryTimeout,
    ResultFileError,
    SQLBackend,
    SQLError,
    UnknownTable,
    UnparsableQuery,
)
from loopwright.sql.urls import connect

_LAZY = {
    "check_read_only": "loopwright.sql.readonly",
    "DuckDBBackend": "loopwright.sql.duckdb",
    "PostgresBackend": "loopwright.sql.postgres",
    "BigQueryBackend": "loopwright.sql.bigquery",
}

__all__ = [
    "DEFAULT_MAX_ROWS",
    "DEFAULT_PREVIEW_ROWS",
    "DEFAULT_TIMEOUT_S",
    "ArrowStream",
    "BigQueryBackend",
    "DuckDBBackend",
    "Interrupter",
    "PostgresBackend",
    "QueryRefused",
    "QueryResult",
    "QueryTimeout",
    "ResultFileError",
    "SQLBackend",
    "SQLError",
    "UnknownTable",
    "UnparsableQuery",
    "check_read_only",
    "connect",
]

if TYPE_CHECKING:
    from loopwright.sql.bigquery import BigQueryBackend
    from loopwright.sql.duckdb import DuckDBBackend
    from loopwright.sql.postgres import PostgresBackend
    from loopwright.sql.readonly import check_read_only


__getattr__ = lazy_getattr(__name__, _LAZY, globals())
