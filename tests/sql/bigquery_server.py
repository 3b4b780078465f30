"""A loopback stand-in for the BigQuery REST API (v2), for tests; queries run in DuckDB.

It listens on 127.0.0.1 (an ephemeral port) and answers the calls the real
``google.cloud.bigquery.Client`` makes for a query and for reading a schema, in the shapes
bigquery.googleapis.com uses:

* ``POST /bigquery/v2/projects/{p}/jobs`` (jobs.insert): a query job. A dry run answers
  with the statement type and an estimate of the bytes processed; a real run executes the
  query and keeps its result. ``maximumBytesBilled`` is enforced on real runs
  (``bytesBilledLimitExceeded``), unknown tables are 404 ``Not found: Table ...`` and
  other errors 400 ``invalidQuery``;
* ``GET .../queries/{jobId}`` (jobs.getQueryResults), ``GET .../jobs/{jobId}`` (jobs.get),
  ``GET .../datasets/{d}/tables/{t}/data`` (tabledata.list), each paged with
  ``maxResults``/``pageToken``; ``POST .../jobs/{jobId}/cancel`` (jobs.cancel);
* ``GET .../datasets``, ``GET .../datasets/{d}/tables`` and ``GET .../datasets/{d}/tables/{t}``.

Named query parameters (``queryParameters``, ``@name`` in the SQL) are bound on dry and real
runs alike; a parameter the SQL names but the job lacks is 400 ``Query parameter ... not
found``, as on BigQuery.

BigQuery's types DuckDB lacks stand as DuckDB structs (:func:`_bigquery_values`):
``BIGNUMERIC '...'`` (and ``CAST('...' AS BIGNUMERIC)``) of any of its 76 digits is
``{'__bignumeric__': text}``, and ``RANGE(start, end)``, ``RANGE<T> '[start, end)'`` is
``{'__range_start__': start, '__range_end__': end}`` (a table column of that type is a
``RANGE<T>``); they are served as BigQuery serves them (``"[2024-01-01, UNBOUNDED)"``). A
wildcard table (``events_*``) is the union of its dataset's tables of that prefix, each with
its ``_TABLE_SUFFIX``, less those the ``WHERE`` conditions on ``_TABLE_SUFFIX`` alone rule
out (neither read nor billed); ``SELECT *`` of it alone leaves the pseudo-column out.
``CREATE TEMP FUNCTION`` statements before one ``SELECT`` make a ``SELECT``, as on BigQuery;
other statements with more make a ``SCRIPT``.

Datasets are DuckDB schemas: set the data up with :meth:`BigQueryServer.setup` (DuckDB SQL).
Queries arrive in BigQuery SQL and are translated to DuckDB with sqlglot after the project
is stripped from table names and the default dataset applied. A table's size, for the dry
run's estimate, is ``rows x columns x 8`` bytes.

Billing is BigQuery's on-demand billing: a finished job's ``statistics.query.totalBytesBilled``
is at least :data:`MIN_BILLED_PER_TABLE` (10 MB) per table the query reads, rounded up to a
whole MB (a query reading no table bills nothing), and ``maximumBytesBilled`` is enforced on
those billed bytes, as BigQuery does. With :attr:`BigQueryServer.query_cache` on, a query run
again unchanged (same SQL, default dataset and parameters, tables unchanged, ``useQueryCache``
not false) is answered from the cache: ``cacheHit`` true, 0 bytes processed and billed. It is
off by default, so tests sharing a server each see their query's scan.

``hold_jobs = True`` keeps real jobs ``RUNNING`` until they are cancelled (to test
timeouts): a slow query. DuckDB ran the whole query when the job was inserted, so a job
cancelled through jobs.cancel reports the bytes it processed, and is billed for them as a
finished job is (jobs.cancel's reference: "Cancelled jobs may still incur costs"); the ids
of the jobs cancelled are in :attr:`BigQueryServer.cancelled`, in order. A failed query
bills nothing: it never becomes a job here. Clearing :attr:`BigQueryServer.insert_gate`
holds the answer to jobs.insert of each real job, which runs meanwhile, until it is set
again (a slow start). ``page_delay`` (seconds) slows each page of rows read from a
finished job (a large result over a slow network), and ``failing_row`` (a row index) makes
the page of rows holding that row fail with 403 ``responseTooLarge``, as reading a finished
job's result can; either way the job was billed. Clearing
:attr:`BigQueryServer.table_gate` holds each tables.get request until it is set again, and
:attr:`BigQueryServer.most_table_reads` says how many were ever in flight at once. Every
request is recorded in :attr:`BigQueryServer.requests`.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import itertools
import json
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import duckdb
import sqlglot
from duckdb.sqltypes import DuckDBPyType
from sqlglot import exp

_PREFIX = "/bigquery/v2/projects/"
#: BigQuery's on-demand billing unit, and its minimum per table a query reads (10 MB).
BILLING_UNIT = 1024 * 1024
MIN_BILLED_PER_TABLE = 10 * BILLING_UNIT
#: The ``status`` of an error response, by HTTP status (400 otherwise).
_STATUSES = {403: "PERMISSION_DENIED", 404: "NOT_FOUND", 409: "ALREADY_EXISTS"}


@dataclass
class Recorded:
    """One request the server received."""

    method: str
    path: str
    params: dict[str, str]
    body: Any


@dataclass
class _Job:
    job_id: str
    project: str
    location: str
    configuration: dict[str, Any]
    statement_type: str
    bytes_processed: int
    bytes_billed: int = 0
    cache_hit: bool = False
    tables: list[tuple[str, str]] = field(default_factory=list)
    schema: list[dict[str, Any]] = field(default_factory=list)
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    state: str = "DONE"
    error: dict[str, Any] | None = None
    created: float = field(default_factory=time.time)


class BigQueryError(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


class BigQueryServer:
    """The stand-in server: ``with BigQueryServer() as server: server.base_url``."""

    def __init__(self, project: str = "test-project", location: str = "US") -> None:
        self.project = project
        self.location = location
        self.db = duckdb.connect()
        # BigQuery's sessions are UTC, whatever the test process's TZ
        self.db.execute("SET TimeZone = 'UTC'")
        self.requests: list[Recorded] = []
        self.jobs: dict[str, _Job] = {}
        self.hold_jobs = False
        #: the jobs cancelled through jobs.cancel while they ran, in order
        self.cancelled: list[str] = []
        #: jobs.insert of a real job answers only while this is set (see the module's doc)
        self.insert_gate = threading.Event()
        self.insert_gate.set()
        #: seconds each page of rows takes to serve (see the module's doc)
        self.page_delay = 0.0
        #: a row whose page fails with 403 responseTooLarge (see the module's doc)
        self.failing_row: int | None = None
        #: answer a query run again unchanged from the result cache (see the module's doc)
        self.query_cache = False
        self._cached: set[str] = set()
        self.table_gate = threading.Event()
        self.table_gate.set()
        self.most_table_reads = 0
        self._table_reads = 0
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- set-up --------------------------------------------------------------------------

    def setup(self, sql: str) -> None:
        """Run DuckDB SQL to create datasets (schemas) and tables."""
        with self._lock:
            self.db.execute(sql)
            self._cached.clear()  # the tables may have changed: cached results are stale

    def load(self, dataset: str, table: str, data: Any) -> None:
        """Create ``dataset.table`` from ``data`` (an Arrow table or anything DuckDB scans)."""
        with self._lock:
            self._cached.clear()
            self.db.register("_load", data)
            try:
                self.db.execute(f'CREATE SCHEMA IF NOT EXISTS "{dataset}"')
                self.db.execute(f'CREATE TABLE "{dataset}"."{table}" AS SELECT * FROM _load')
            finally:
                self.db.unregister("_load")

    def load_from(
        self, dataset: str, source: str | os.PathLike[str] | duckdb.DuckDBPyConnection,
        tables: Iterable[str] = ("RX_CLAIMS", "MED_CLAIMS", "PROVIDERS_BIO"),
    ) -> None:  # fmt: skip
        """Load ``tables`` (by default the claims tables DefineCohort reads) from a DuckDB
        database, a file or an open connection, as ``dataset``'s tables."""
        if isinstance(source, duckdb.DuckDBPyConnection):
            # a cursor of its own: a shared connection (a session-wide fixture) may hold
            # another test's unfinished result, which blocks work on the connection itself
            with source.cursor() as cursor:
                for table in tables:
                    arrow = cursor.sql(f"SELECT * FROM {table}").to_arrow_table()
                    self.load(dataset, table, arrow)
            return
        with duckdb.connect(os.fspath(source), read_only=True) as connection:
            self.load_from(dataset, connection, tables)

    @property
    def base_url(self) -> str:
        assert self._httpd is not None
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> BigQueryServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                server._handle(self, "GET")

            def do_POST(self) -> None:
                server._handle(self, "POST")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.table_gate.set()  # no request is left held
        self.insert_gate.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        with self._lock:
            self.db.close()
            # handler threads of kept-alive connections may outlive us: drop the database
            del self.db

    def paths(self, method: str | None = None) -> list[str]:
        """The paths requested (optionally only with ``method``), in order."""
        return [r.path for r in self.requests if method is None or r.method == method]

    def job_bodies(self) -> list[dict[str, Any]]:
        """The bodies of every jobs.insert request."""
        return [
            r.body
            for r in self.requests
            if r.method == "POST" and r.path.endswith("/jobs") and isinstance(r.body, dict)
        ]

    # --- HTTP ----------------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(handler.path)
        params = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        self.requests.append(Recorded(method, parts.path, params, body))
        try:
            status, payload = 200, self._route(method, parts.path, params, body)
        except BigQueryError as exc:
            status = exc.status
            payload = {
                "error": {
                    "code": exc.status,
                    "message": exc.message,
                    "errors": [{"message": exc.message, "domain": "global", "reason": exc.reason}],
                    "status": _STATUSES.get(exc.status, "INVALID_ARGUMENT"),
                }
            }
        data = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json; charset=UTF-8")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _route(self, method: str, path: str, params: dict[str, str], body: Any) -> dict[str, Any]:
        if not path.startswith(_PREFIX):
            raise BigQueryError(404, "notFound", f"Not found: URL {path}")
        # the client percent-encodes each part (a table ``daily visits``), as BigQuery reads it
        segments = [unquote(segment) for segment in path[len(_PREFIX) :].split("/")]
        project, rest = segments[0], segments[1:]
        match method, rest:
            case "POST", ["jobs"]:
                return self._insert(project, body)
            case "POST", ["jobs", job_id, "cancel"]:
                return {"kind": "bigquery#jobCancelResponse", "job": self._cancel(job_id)}
            case "GET", ["jobs", job_id]:
                return self._job_resource(self._job(job_id))
            case "GET", ["queries", job_id]:
                return self._query_results(self._job(job_id), params)
            case "GET", ["datasets"]:
                return self._datasets(project)
            case "GET", ["datasets", dataset, "tables"]:
                return self._tables(project, dataset)
            case "GET", ["datasets", dataset, "tables", table]:
                return self._gated_table(project, dataset, table)
            case "GET", ["datasets", _, "tables", table, "data"]:
                job = self._job(table.removeprefix("anon_"))
                return self._page(job, params, "bigquery#tableDataList")
        raise BigQueryError(404, "notFound", f"Not found: {method} {path}")

    # --- jobs ----------------------------------------------------------------------------

    def _insert(self, project: str, body: dict[str, Any]) -> dict[str, Any]:
        configuration = body.get("configuration", {})
        query = configuration.get("query", {})
        sql = query.get("query", "")
        if query.get("useLegacySql", True):
            raise BigQueryError(400, "invalid", "Legacy SQL is not supported by this stand-in")
        default = query.get("defaultDataset", {}).get("datasetId")
        reference = body.get("jobReference", {})
        job_id = reference.get("jobId") or f"job_{next(self._ids)}"
        if job_id in self.jobs:  # a retried insert: the client then reads the job
            raise BigQueryError(
                409, "duplicate", f"Already Exists: Job {project}:{self.location}.{job_id}"
            )
        try:
            statements = [s for s in sqlglot.parse(sql, read="bigquery") if s is not None]
        except sqlglot.errors.SqlglotError as exc:
            message = str(exc).splitlines()[0]
            raise BigQueryError(400, "invalidQuery", f"Syntax error: {message}") from None
        statement_type = _statement_type(statements)
        values = _parameters(query, statements)
        duck_statements, tables = self._translate(statements, project, default)
        processed = sum(self._table_bytes(d, t) for d, t in tables)
        billed = billed_bytes([self._table_bytes(d, t) for d, t in tables])
        dry_run = bool(configuration.get("dryRun"))
        cache_key = json.dumps(
            [project, default, sql, query.get("queryParameters", [])], sort_keys=True
        )
        cache_hit = (
            not dry_run
            and self.query_cache
            and query.get("useQueryCache", True) is not False
            and cache_key in self._cached
        )
        if cache_hit:
            processed = billed = 0
        cap = query.get("maximumBytesBilled")
        if cap is not None and billed > int(cap) and not dry_run:
            raise BigQueryError(
                400,
                "bytesBilledLimitExceeded",
                f"Query exceeded limit for bytes billed: {cap}. {billed} or higher required.",
            )
        job = _Job(job_id, project, self.location, configuration, statement_type, processed)
        job.bytes_billed, job.cache_hit, job.tables = billed, cache_hit, sorted(tables)
        if not dry_run:
            job.schema, job.rows = self._execute(";\n".join(duck_statements), values)
            if self.query_cache and statement_type == "SELECT":
                self._cached.add(cache_key)
            job.state = "RUNNING" if self.hold_jobs else "DONE"
            self.jobs[job_id] = job
            self.insert_gate.wait()
        elif statement_type == "SELECT":  # errors (unknown table, bad column) show on dry runs
            self._describe(duck_statements, values)
        return self._job_resource(job)

    def _translate(
        self, statements: list[exp.Expression], project: str, default: str | None
    ) -> tuple[list[str], set[tuple[str, str]]]:
        tables: set[tuple[str, str]] = set()
        translated = []
        for statement in statements:
            ctes = {c.alias_or_name for c in statement.find_all(exp.CTE)}
            statement = statement.transform(_bigquery_values)
            for select in statement.find_all(exp.Select):
                _hide_table_suffix(select)

            def qualify(node: exp.Expression, ctes: set[str] = ctes) -> exp.Expression:
                if not isinstance(node, exp.Table) or not node.name or node.name in ctes:
                    return node
                if isinstance(node.parent, exp.UserDefinedFunction):  # a function's name
                    return node
                dataset = node.db or default
                if node.catalog and node.catalog != project:
                    raise BigQueryError(403, "accessDenied", f"Access Denied: {node.catalog}")
                if not dataset:
                    raise BigQueryError(
                        400, "invalid", f'Table "{node.name}" must be qualified with a dataset'
                    )
                if node.name.endswith("*"):
                    shards, first = self._shards(project, dataset, node)
                    tables.update((dataset, name) for name, _ in shards)
                    return _union_of_shards(dataset, shards, first, node.alias)
                if not self._exists(dataset, node.name):
                    raise BigQueryError(
                        404,
                        "notFound",
                        f"Not found: Table {project}:{dataset}.{node.name} was not found in "
                        f"location {self.location}",
                    )
                tables.add((dataset, node.name))
                node.set("catalog", None)
                node.set("db", exp.to_identifier(dataset))
                return node

            translated.append(statement.transform(qualify).sql(dialect="duckdb"))
        return translated, tables

    def _shards(
        self, project: str, dataset: str, node: exp.Table
    ) -> tuple[list[tuple[str, str]], str]:
        """The tables a wildcard table (``events_*``) reads, with their ``_TABLE_SUFFIX``:
        those whose suffix passes the conditions on ``_TABLE_SUFFIX`` alone in the ``WHERE``
        of the query reading it (BigQuery's pruning; the others are neither read nor
        billed); and the first table matched, whose columns the wildcard table has."""
        prefix = node.name[:-1]
        with self._lock:
            names = [
                r[0]
                for r in self.db.execute(
                    "SELECT table_name FROM information_schema.tables "
                    "WHERE table_schema = ? AND starts_with(table_name, ?) ORDER BY 1",
                    [dataset, prefix],
                ).fetchall()
            ]
        if not names:
            raise BigQueryError(
                404,
                "notFound",
                f"Not found: Table {project}:{dataset}.{node.name} was not found in location "
                f"{self.location}",
            )
        suffixes = [name[len(prefix) :] for name in names]
        select = node.find_ancestor(exp.Select)
        where = select.args.get("where") if select is not None else None
        conditions = [
            condition.transform(
                lambda n: exp.column("_TABLE_SUFFIX") if isinstance(n, exp.Column) else n
            ).sql(dialect="duckdb")
            for condition in _conjuncts(where.this if where is not None else None)
            if _on_table_suffix_alone(condition)
        ]
        if conditions:
            with self._lock:
                kept = {
                    r[0]
                    for r in self.db.execute(
                        "SELECT _TABLE_SUFFIX FROM (SELECT unnest(?::VARCHAR[]) AS _TABLE_SUFFIX) "
                        f"WHERE {' AND '.join(conditions)}",
                        [suffixes],
                    ).fetchall()
                }
            suffixes = [s for s in suffixes if s in kept]
        return [(prefix + suffix, suffix) for suffix in suffixes], names[0]

    def _exists(self, dataset: str, table: str) -> bool:
        with self._lock:
            row = self.db.execute(
                "SELECT count(*) FROM information_schema.tables "
                "WHERE table_schema = ? AND table_name = ?",
                [dataset, table],
            ).fetchone()
        return bool(row and row[0])

    def _table_bytes(self, dataset: str, table: str) -> int:
        with self._lock:
            rows = self.db.execute(f'SELECT count(*) FROM "{dataset}"."{table}"').fetchone()
            columns = self.db.execute(
                "SELECT count(*) FROM information_schema.columns "
                "WHERE table_schema = ? AND table_name = ?",
                [dataset, table],
            ).fetchone()
        assert rows is not None
        assert columns is not None
        return int(rows[0]) * int(columns[0]) * 8

    def _describe(self, statements: list[str], values: dict[str, Any]) -> None:
        """Check the query as a dry run does; the temporary functions before it, if any,
        are made first (in a cursor of its own, gone with it)."""
        *functions, query = statements
        with self._lock:
            try:
                with self.db.cursor() as cursor:
                    for function in functions:
                        cursor.execute(function)
                    cursor.execute(f"DESCRIBE {query}", values or None)
            except duckdb.Error as exc:
                raise BigQueryError(400, "invalidQuery", str(exc).splitlines()[0]) from None

    def _execute(
        self, sql: str, values: dict[str, Any]
    ) -> tuple[list[dict[str, Any]], list[tuple[Any, ...]]]:
        with self._lock:
            try:
                with self.db.cursor() as cursor:  # its own: others leave results unread
                    relation = cursor.sql(sql, params=values or None)
                    if relation is None:  # not a query: nothing to return
                        return [], []
                    fields = zip(relation.columns, relation.types, strict=True)
                    schema = [_bq_field(n, t) for n, t in fields]
                    # through Arrow: intervals keep their months (a timedelta has none)
                    table = relation.to_arrow_table()
                rows = zip(*(c.to_pylist() for c in table.columns), strict=True)
                return schema, list(rows)
            except duckdb.Error as exc:
                raise BigQueryError(400, "invalidQuery", str(exc).splitlines()[0]) from None

    def _job(self, job_id: str) -> _Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise BigQueryError(404, "notFound", f"Not found: Job {self.project}:{job_id}")
        return job

    def _cancel(self, job_id: str) -> dict[str, Any]:
        job = self._job(job_id)
        if job.state != "DONE":  # it keeps (and is billed for) the bytes it processed
            job.state = "DONE"
            job.error = {
                "reason": "stopped",
                "message": "Job execution was cancelled: User requested cancellation",
            }
            self.cancelled.append(job_id)
        return self._job_resource(job)

    def _job_resource(self, job: _Job) -> dict[str, Any]:
        created = str(int(job.created * 1000))
        configuration = json.loads(json.dumps(job.configuration))
        configuration.setdefault("jobType", "QUERY")
        if not configuration.get("dryRun"):
            configuration.setdefault("query", {})["destinationTable"] = {
                "projectId": job.project,
                "datasetId": "_anonymous",
                "tableId": f"anon_{job.job_id}",
            }
        status: dict[str, Any] = {"state": job.state}
        if job.error is not None:
            status["errorResult"] = job.error
            status["errors"] = [job.error]
        statistics: dict[str, Any] = {
            "creationTime": created,
            "startTime": created,
            "totalBytesProcessed": str(job.bytes_processed),
            "query": {
                "totalBytesProcessed": str(job.bytes_processed),
                "statementType": job.statement_type,
                "referencedTables": [
                    {"projectId": job.project, "datasetId": d, "tableId": t} for d, t in job.tables
                ],
            },
        }
        if job.state == "DONE":
            statistics["endTime"] = created
            if not configuration.get("dryRun"):  # what a finished job billed; a dry run bills none
                statistics["query"]["totalBytesBilled"] = str(job.bytes_billed)
                statistics["query"]["cacheHit"] = job.cache_hit
        if job.schema:
            statistics["query"]["schema"] = {"fields": job.schema}
        return {
            "kind": "bigquery#job",
            "id": f"{job.project}:{job.location}.{job.job_id}",
            "jobReference": {
                "projectId": job.project,
                "jobId": job.job_id,
                "location": job.location,
            },
            "configuration": configuration,
            "status": status,
            "statistics": statistics,
            "user_email": "anonymous@example.com",
        }

    def _query_results(self, job: _Job, params: dict[str, str]) -> dict[str, Any]:
        if job.state != "DONE":
            time.sleep(min(float(params.get("timeoutMs", "0")) / 1000, 0.2))
        reference = {"projectId": job.project, "jobId": job.job_id, "location": job.location}
        if job.state != "DONE":
            return {
                "kind": "bigquery#getQueryResultsResponse",
                "jobReference": reference,
                "jobComplete": False,
            }
        if job.error is not None:
            raise BigQueryError(400, job.error["reason"], job.error["message"])
        page = self._page(job, params, "bigquery#getQueryResultsResponse")
        page.update(
            jobReference=reference,
            jobComplete=True,
            schema={"fields": job.schema},
            totalBytesProcessed=str(job.bytes_processed),
            cacheHit=job.cache_hit,
        )
        return page

    def _page(self, job: _Job, params: dict[str, str], kind: str) -> dict[str, Any]:
        start = int(params.get("pageToken") or params.get("startIndex") or 0)
        size = int(params.get("maxResults", 100_000))
        rows = job.rows[start : start + size]
        if rows and self.page_delay:
            time.sleep(self.page_delay)
        failing = self.failing_row
        if failing is not None and start <= failing < start + len(rows):
            raise BigQueryError(
                403, "responseTooLarge", "Response too large to return. Consider paging."
            )
        int64_timestamps = params.get("formatOptions.useInt64Timestamp", "").lower() == "true"
        encoded = [
            {
                "f": [
                    {"v": _cell(v, f, int64_timestamps)}
                    for v, f in zip(row, job.schema, strict=True)
                ]
            }
            for row in rows
        ]
        page: dict[str, Any] = {"kind": kind, "totalRows": str(len(job.rows))}
        if encoded:
            page["rows"] = encoded
        if start + size < len(job.rows):
            page["pageToken"] = str(start + size)
        return page

    # --- catalog -------------------------------------------------------------------------

    def _datasets(self, project: str) -> dict[str, Any]:
        with self._lock:
            names = [
                r[0]
                for r in self.db.execute(
                    "SELECT DISTINCT table_schema FROM information_schema.tables "
                    "WHERE table_schema NOT IN ('main', 'information_schema', 'pg_catalog') "
                    "ORDER BY 1"
                ).fetchall()
            ]
        return {
            "kind": "bigquery#datasetList",
            "datasets": [
                {
                    "kind": "bigquery#dataset",
                    "id": f"{project}:{name}",
                    "datasetReference": {"projectId": project, "datasetId": name},
                    "location": self.location,
                }
                for name in names
            ],
        }

    def _tables(self, project: str, dataset: str) -> dict[str, Any]:
        with self._lock:
            names = [
                r[0]
                for r in self.db.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = ? "
                    "ORDER BY 1",
                    [dataset],
                ).fetchall()
            ]
        return {
            "kind": "bigquery#tableList",
            "totalItems": len(names),
            "tables": [
                {
                    "kind": "bigquery#table",
                    "id": f"{project}:{dataset}.{name}",
                    "tableReference": {
                        "projectId": project,
                        "datasetId": dataset,
                        "tableId": name,
                    },
                    "type": "TABLE",
                }
                for name in names
            ],
        }

    def _gated_table(self, project: str, dataset: str, table: str) -> dict[str, Any]:
        with self._lock:
            self._table_reads += 1
            self.most_table_reads = max(self.most_table_reads, self._table_reads)
        try:
            self.table_gate.wait()
            return self._table(project, dataset, table)
        finally:
            with self._lock:
                self._table_reads -= 1

    def _table(self, project: str, dataset: str, table: str) -> dict[str, Any]:
        if not self._exists(dataset, table):
            raise BigQueryError(404, "notFound", f"Not found: Table {project}:{dataset}.{table}")
        with self._lock, self.db.cursor() as cursor:
            relation = cursor.sql(f'SELECT * FROM "{dataset}"."{table}" LIMIT 0')
            columns = list(zip(relation.columns, relation.types, strict=True))
        return {
            "kind": "bigquery#table",
            "id": f"{project}:{dataset}.{table}",
            "tableReference": {"projectId": project, "datasetId": dataset, "tableId": table},
            "schema": {"fields": [_table_field(n, t) for n, t in columns]},
            "type": "TABLE",
            "location": self.location,
        }


def billed_bytes(table_bytes: list[int]) -> int:
    """What BigQuery's on-demand pricing bills for a query reading tables of ``table_bytes``:
    at least 10 MB per table, the sum rounded up to a whole MB; nothing without a table."""
    if not table_bytes:
        return 0
    total = sum(max(size, MIN_BILLED_PER_TABLE) for size in table_bytes)
    return -(-total // BILLING_UNIT) * BILLING_UNIT


def _parameters(query: dict[str, Any], statements: list[exp.Expression]) -> dict[str, Any]:
    """The job's named query parameters (``queryParameters``), decoded, checked against the
    ``@name`` references in the statements as BigQuery does."""
    if query.get("parameterMode", "NAMED") != "NAMED" and query.get("queryParameters"):
        raise BigQueryError(400, "invalid", "This stand-in takes named parameters only")
    values: dict[str, Any] = {}
    for parameter in query.get("queryParameters", []):
        kind = parameter["parameterType"]["type"]
        raw = parameter.get("parameterValue", {}).get("value")
        values[parameter["name"]] = _decode(raw, kind)
    wanted = {node.name for statement in statements for node in statement.find_all(exp.Parameter)}
    missing = sorted(wanted - set(values))
    if missing:
        raise BigQueryError(400, "invalidQuery", f"Query parameter '{missing[0]}' not found")
    return {name: value for name, value in values.items() if name in wanted}


def _decode(raw: str | None, kind: str) -> Any:
    """A query parameter's value from the REST API's text."""
    if raw is None:
        return None
    decoders: dict[str, Any] = {
        "STRING": str,
        "INT64": int,
        "FLOAT64": float,
        "NUMERIC": decimal.Decimal,
        "BIGNUMERIC": decimal.Decimal,
        "BOOL": lambda v: v.lower() == "true",
        "DATE": dt.date.fromisoformat,
        "DATETIME": dt.datetime.fromisoformat,
    }
    if kind not in decoders:
        raise BigQueryError(400, "invalid", f"This stand-in has no {kind} query parameters")
    return decoders[kind](raw)


#: The DuckDB struct fields that stand for BigQuery types DuckDB lacks: a ``BIGNUMERIC`` of
#: more digits than DuckDB's decimals hold (its text), and a ``RANGE`` (its bounds, null for
#: ``UNBOUNDED``). See :func:`_bigquery_values`.
_BIGNUMERIC = "__bignumeric__"
_RANGE = ("__range_start__", "__range_end__")


def _bigquery_values(node: exp.Expression) -> exp.Expression:
    """BigQuery's values of types DuckDB lacks, as the structs standing for them:
    ``BIGNUMERIC '...'`` (and ``CAST('...' AS BIGNUMERIC)``), ``RANGE(start, end)`` and
    ``RANGE<T> '[start, end)'``."""
    inner = node.this if isinstance(node, exp.Cast) else None
    if (  # CAST(BIGNUMERIC '...' AS STRING): the text itself
        isinstance(inner, exp.Cast)
        and inner.to.is_type(exp.DataType.Type.BIGDECIMAL)
        and node.to.is_type(*exp.DataType.TEXT_TYPES)
    ):
        return exp.cast(inner.this, node.to)
    if isinstance(node, exp.Cast) and isinstance(node.this, exp.Literal) and node.this.is_string:
        target = node.to
        if target.is_type(exp.DataType.Type.BIGDECIMAL):
            text = format(decimal.Decimal(node.this.name), "f")
            return exp.Struct(
                expressions=[
                    exp.PropertyEQ(
                        this=exp.to_identifier(_BIGNUMERIC), expression=exp.Literal.string(text)
                    )
                ]
            )
        if target.is_type(exp.DataType.Type.RANGE):
            element = target.expressions[0]
            text = node.this.name.strip()
            if not (text.startswith("[") and text.endswith(")") and ", " in text):
                raise BigQueryError(400, "invalidQuery", f"Invalid RANGE literal: {text}")
            bounds = [
                exp.cast(exp.null() if b == "UNBOUNDED" else exp.Literal.string(b), element)
                for b in text[1:-1].split(", ", 1)
            ]
            return _range_struct(*bounds)
    if isinstance(node, exp.Cast) and node.to.is_type(exp.DataType.Type.RANGE):  # a NULL
        element = node.to.expressions[0].sql(dialect="duckdb")
        fields = ", ".join(f"{name} {element}" for name in _RANGE)
        return exp.cast(node.this, exp.DataType.build(f"STRUCT({fields})", dialect="duckdb"))
    if isinstance(node, exp.Anonymous) and node.name.upper() == "RANGE":
        start, end = node.expressions
        # an array of both gives them one type, as BigQuery infers it (RANGE(d, NULL));
        # indexed from 0, as BigQuery's arrays are: the tree is translated from BigQuery SQL
        both = exp.Array(expressions=[start, end])
        return _range_struct(
            exp.Bracket(this=both, expressions=[exp.Literal.number(0)]),
            exp.Bracket(this=both.copy(), expressions=[exp.Literal.number(1)]),
        )
    return node


def _range_struct(start: exp.Expression, end: exp.Expression) -> exp.Expression:
    return exp.Struct(
        expressions=[
            exp.PropertyEQ(this=exp.to_identifier(name), expression=bound)
            for name, bound in zip(_RANGE, (start, end), strict=True)
        ]
    )


def _is_table_suffix(node: exp.Expression) -> bool:
    return isinstance(node, exp.Column) and node.name.upper() == "_TABLE_SUFFIX"


def _conjuncts(condition: exp.Expression | None) -> list[exp.Expression]:
    """The conditions ``condition`` ANDs together (itself if it is no ``AND``)."""
    if condition is None:
        return []
    return list(condition.flatten()) if isinstance(condition, exp.And) else [condition]


def _on_table_suffix_alone(condition: exp.Expression) -> bool:
    """Whether ``condition`` reads ``_TABLE_SUFFIX`` and no other column nor any table."""
    columns = list(condition.find_all(exp.Column))
    return (
        bool(columns)
        and all(_is_table_suffix(c) for c in columns)
        and condition.find(exp.Select, exp.Table) is None
    )


def _hide_table_suffix(select: exp.Select) -> None:
    """``SELECT *`` of a wildcard table alone leaves out ``_TABLE_SUFFIX``, as BigQuery
    does (its pseudo-column is a column of the stand-in's union of the tables)."""
    source = select.args.get("from_")
    table = source.this if source is not None else None
    if not isinstance(table, exp.Table) or not table.name.endswith("*") or select.args.get("joins"):
        return
    for star in select.expressions:
        if isinstance(star, exp.Star) and not star.args.get("except_"):
            star.set("except_", [exp.column("_TABLE_SUFFIX")])


def _union_of_shards(
    dataset: str, shards: list[tuple[str, str]], first: str, alias: str
) -> exp.Expression:
    """The wildcard table read as DuckDB SQL: the union of its ``shards`` (``(table,
    suffix)``), each with its ``_TABLE_SUFFIX``; with none, no row of ``first``'s columns."""
    parts = [
        f'SELECT *, \'{suffix}\' AS _TABLE_SUFFIX FROM "{dataset}"."{table}"'
        for table, suffix in shards
    ] or [f'SELECT *, \'\' AS _TABLE_SUFFIX FROM "{dataset}"."{first}" WHERE false']
    union = sqlglot.parse_one(" UNION ALL BY NAME ".join(parts), read="duckdb")
    return union.subquery(alias or None)


def _temporary_function(statement: exp.Expression) -> bool:
    properties = statement.args.get("properties")
    return (
        isinstance(statement, exp.Create)
        and statement.kind == "FUNCTION"
        and properties is not None
        and any(isinstance(p, exp.TemporaryProperty) for p in properties.expressions)
    )


def _statement_type(statements: list[exp.Expression]) -> str:
    # temporary functions before one SELECT are no script: "BigQuery interprets any request
    # with multiple statements as a multi-statement query, unless the statements consist
    # entirely of CREATE TEMP FUNCTION statements followed by a single SELECT statement"
    while len(statements) > 1 and _temporary_function(statements[0]):
        statements = statements[1:]
    if len(statements) != 1:
        return "SCRIPT"
    statement = statements[0]
    if isinstance(statement, exp.Select | exp.SetOperation | exp.Subquery):
        return "SELECT"
    if isinstance(statement, exp.Create):
        return f"CREATE_{statement.args.get('kind', 'TABLE')}".upper()
    if isinstance(statement, exp.Drop):
        return f"DROP_{statement.args.get('kind', 'TABLE')}".upper()
    return type(statement).__name__.upper()


def _bq_type(duck_type: str) -> str:
    duck_type = duck_type.upper()
    if duck_type in {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UBIGINT"}:
        return "INTEGER"
    if duck_type in {"FLOAT", "DOUBLE", "REAL"}:
        return "FLOAT"
    if duck_type.startswith("DECIMAL"):  # NUMERIC is (38, 9); a larger scale needs BIGNUMERIC
        scale = int(duck_type.rstrip(")").rpartition(",")[2] or 0)
        return "NUMERIC" if scale <= 9 else "BIGNUMERIC"
    if duck_type == "BOOLEAN":
        return "BOOLEAN"
    if duck_type == "DATE":
        return "DATE"
    if duck_type == "TIMESTAMP WITH TIME ZONE":
        return "TIMESTAMP"
    if duck_type.startswith("TIMESTAMP"):
        return "DATETIME"
    if duck_type == "BLOB":
        return "BYTES"
    if duck_type in {"INTERVAL", "JSON"}:
        return duck_type
    return "STRING"


def _bq_field(name: str, duck_type: DuckDBPyType) -> dict[str, Any]:
    """A result column's schema field, as BigQuery would type the column: lists are
    ``REPEATED`` fields, structs ``RECORD``s with their own fields."""
    if duck_type.id == "list":
        element = duck_type.child
        if element.id == "list":  # BigQuery has no arrays of arrays
            raise BigQueryError(400, "invalidQuery", f"Column {name} is an array of arrays")
        return {**_bq_field(name, element), "mode": "REPEATED"}
    if duck_type.id == "struct":
        names = tuple(n for n, _ in duck_type.children)
        if names == (_BIGNUMERIC,):
            return {"name": name, "type": "BIGNUMERIC", "mode": "NULLABLE"}
        if names == _RANGE:
            element = {"type": _bq_type(str(duck_type.children[0][1]))}
            return {"name": name, "type": "RANGE", "mode": "NULLABLE", "rangeElementType": element}
        fields = [_bq_field(n, t) for n, t in duck_type.children]
        return {"name": name, "type": "RECORD", "mode": "NULLABLE", "fields": fields}
    return {"name": name, "type": _bq_type(str(duck_type)), "mode": "NULLABLE"}


def _table_field(name: str, duck_type: DuckDBPyType) -> dict[str, Any]:
    """A table column's schema field: a ``BIGNUMERIC`` or ``RANGE`` as such (see
    :func:`_bigquery_values`), other columns by their type's name alone."""
    if duck_type.id == "struct" and tuple(n for n, _ in duck_type.children) in (
        (_BIGNUMERIC,),
        _RANGE,
    ):
        return _bq_field(name, duck_type)
    return {"name": name, "type": _bq_type(str(duck_type)), "mode": "NULLABLE"}


def _cell(value: Any, field: dict[str, Any], int64_timestamps: bool) -> Any:
    """A value of ``field`` as the REST API's JSON rows carry it: arrays as lists of
    ``{"v": ...}`` (never null), records as ``{"f": [{"v": ...}, ...]}``."""
    if field.get("mode") == "REPEATED":
        element = {**field, "mode": "NULLABLE"}
        return [{"v": _cell(v, element, int64_timestamps)} for v in value or []]
    if field["type"] == "RECORD":
        if value is None:
            return None
        return {"f": [{"v": _cell(value[f["name"]], f, int64_timestamps)} for f in field["fields"]]}
    if field["type"] == "RANGE" and value is not None:  # "[start, end)", UNBOUNDED for null
        element = field["rangeElementType"]["type"]
        start, end = (
            "UNBOUNDED" if value[n] is None else _encode(value[n], element, int64_timestamps)
            for n in _RANGE
        )
        return f"[{start}, {end})"
    if isinstance(value, dict):  # a BIGNUMERIC as its text
        return value[_BIGNUMERIC]
    return _encode(value, field["type"], int64_timestamps)


def _interval(value: Any) -> str:
    """An interval in BigQuery's canonical format, ``[-]Y-M [-]D [-]H:M:S[.F]``."""
    months, days, nanoseconds = value.months, value.days, value.nanoseconds
    year_month = f"{'-' if months < 0 else ''}{abs(months) // 12}-{abs(months) % 12}"
    micros = abs(nanoseconds) // 1_000
    seconds, fraction = divmod(micros, 1_000_000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    time = f"{'-' if nanoseconds < 0 else ''}{hours}:{minutes}:{seconds}"
    return f"{year_month} {days} {time}" + (f".{fraction:06d}".rstrip("0") if fraction else "")


def _encode(value: Any, kind: str, int64_timestamps: bool) -> Any:
    """A value as the REST API's JSON rows carry it (strings, or null)."""
    if value is None:
        return None
    if kind == "BOOLEAN":
        return "true" if value else "false"
    if kind == "FLOAT":
        return repr(float(value))
    if kind == "TIMESTAMP":
        assert isinstance(value, dt.datetime)
        micros = int(value.timestamp() * 1_000_000)
        return str(micros) if int64_timestamps else f"{micros / 1_000_000:.6f}"
    if kind == "DATETIME":
        return value.isoformat()
    if kind == "DATE":
        return value.isoformat()
    if kind == "BYTES":
        return base64.b64encode(value).decode()
    if kind == "INTERVAL":
        return _interval(value)
    if isinstance(value, decimal.Decimal):
        return format(value, "f")
    return str(value)
