"""The BigQuery backend (``google-cloud-bigquery``): dry run first, then the query job.

BigQuery has no read-only connection, so the locks are: the parser check; a dry run whose
statement type must be ``SELECT`` (BigQuery's own verdict on what the statement does), which
also reports the bytes the query would scan; a ``maximum_bytes_billed`` cap, checked against
the dry run's estimate before anything is billed and set on the job so BigQuery enforces it
too; and a job timeout (``job_timeout_ms``) next to the tool's own, which cancels the job.
Jobs carry labels (``labels``) so their cost can be traced. For production, use credentials
of a service account that only has the BigQuery Data Viewer and Job User roles.

The dry run and the schema's requests are retried on transient errors for
:data:`API_RETRY_S` seconds at most (the client's default is 10 minutes), so a server that
cannot be reached is reported as such, well inside the tool's timeout, not as a slow query.

Results come back as Arrow record batches, page by page, through the REST API; no BigQuery
Storage client is needed. The client types every column but ``INTERVAL`` (alone or inside a
``STRUCT``), which it parses into dateutil's ``relativedelta``: that folds hours past 24 into
days (BigQuery's ``0-0 0 36:0:0`` became ``1 day 12:00:00``, which BigQuery tells apart) and
leaves the Arrow type to each page's values. A result with intervals is read again from its
table with them as text, BigQuery's canonical ``Y-M D H:M:S.F``, parsed here into Arrow
``month_day_nano_interval`` values as they are, one type for every page. An array of
ranges (``ARRAY<RANGE<DATE>>``, as ``GENERATE_RANGE_ARRAY`` makes) is read again the same
way: the client loses its element type and cannot read it at all.

``RANGE<T>`` columns are the client's ``struct<start, end>`` of ``T`` (null for
``UNBOUNDED``; JSON ``{"start": ..., "end": ...}`` in the CSV), shown as ``RANGE<DATE>``.
``BIGNUMERIC`` is Arrow ``decimal256(76, 38)``, every digit kept; a value of 10^38 or more
(BigQuery's range reaches about 5.8 x 10^38) does not fit it, and is refused in words with
the cast to text that keeps it.

The client marks ``DATETIME``, ``JSON`` and ``GEOGRAPHY`` fields, at any depth, as Arrow
extension types (``ARROW:extension:name`` metadata), which Polars takes for types of its own:
its CSV writer refused them, and the Parquet file handed them on to its readers (Polars read
an ``ARRAY<DATETIME>`` column back as no list at all). Such results are cast to the same
schema without the metadata: plain timestamps and text, as the column types already say.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

import pyarrow as pa  # type: ignore[import-untyped]
from google.api_core import exceptions as api_exceptions
from google.cloud import bigquery

from loopwright.sql.base import (
    DEFAULT_TIMEOUT_S,
    ArrowStream,
    Bill,
    Interrupter,
    QueryRefused,
    QueryTimeout,
    SQLBackend,
    SQLError,
    UnknownTable,
    UnparsableQuery,
    accepted_elsewhere,
    run_in_worker,
)

if TYPE_CHECKING:
    from google.auth.credentials import Credentials

T = TypeVar("T")

# The client warns, page after page, that it cannot type INTERVAL columns: _open does.
warnings.filterwarnings(
    "ignore", "Unable to determine Arrow type", UserWarning, r"google\.cloud\.bigquery\."
)


def _credentials_help(exc: Exception) -> str:
    """How to give credentials, after what google-auth said (a key file that is missing is
    not the same as none at all)."""
    said = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if "was not found" in said or "File " in said:
        return f"The Google Cloud credentials could not be loaded: {said}"
    return _CREDENTIALS_HELP


#: How long one API request (a dry run, starting a job, reading the schema) is retried on
#: errors BigQuery's client deems transient, a server it cannot reach among them, before the
#: last error is reported: the client's own default is 10 minutes.
API_RETRY_S = 15.0


def _retry(budget: float = API_RETRY_S) -> Any:
    """The client's default retry policy, giving up after ``budget`` seconds (at most
    :data:`API_RETRY_S`)."""
    return bigquery.DEFAULT_RETRY.with_timeout(max(1.0, min(API_RETRY_S, budget)))


def _unreachable(exc: Exception) -> str | None:
    """The reason in a connection-level error (``Connection refused``, a name that does not
    resolve...), or ``None`` when ``exc`` is not one."""
    import requests

    if not isinstance(exc, requests.exceptions.ConnectionError | ConnectionError):
        return None
    text = str(exc)
    match = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
    return match.group(1).strip() if match else text.strip()[:200]


#: What BigQuery's on-demand pricing bills at least for each table a query reads (10 MB;
#: https://cloud.google.com/bigquery/pricing#on_demand_pricing): ``maximum_bytes_billed``
#: caps these billed bytes, not the bytes scanned.
MIN_BILLED_PER_TABLE = 10 * 1024 * 1024

#: The reasons (``errorResult.reason``) of a job that was stopped rather than failed: cancelled
#: (``jobs.cancel``) or past its ``job_timeout_ms``. BigQuery may bill such a job for what it
#: processed ("Cancelled jobs may still incur costs", jobs.cancel's reference); a query that
#: failed with an error is not billed.
STOPPED_REASONS = frozenset({"stopped", "jobTimeout"})

#: Seconds a job stopped before its result was read is waited for to end, for its bill: a
#: cancel request returns at once and the job ends soon after.
STOPPED_JOB_WAIT_S = 5.0

#: Tables whose columns :meth:`BigQueryBackend.schema` reads at once (a request each).
SCHEMA_REQUESTS = 8

#: Labels every job carries, so its cost can be traced back to the tool.
DEFAULT_LABELS = {"loopwright": "sql-tool"}
_CREDENTIALS_HELP = (
    "No Google Cloud credentials were found: run `gcloud auth application-default login` or "
    "set GOOGLE_APPLICATION_CREDENTIALS to a service-account key file, then try again."
)


class BigQueryBackend(SQLBackend):
    """BigQuery, queried with a dry run first and a ``maximum_bytes_billed`` cap.

    ``project`` runs (and pays for) the jobs; ``dataset`` is the default dataset for
    unqualified table names, ``DATASET`` in ``project`` or ``OTHER_PROJECT.DATASET`` in
    another one (a public dataset such as ``bigquery-public-data.cms_medicare``, queried and
    paid for from ``project``). ``location`` is the jobs' location (``US``, ``EU``...).
    ``maximum_bytes_billed`` refuses queries that would bill more. ``client`` is a ready
    ``bigquery.Client``; otherwise one is made from ``credentials`` (default: the
    application default credentials), or, with ``api_endpoint``, an emulator's address,
    used without credentials. ``page_rows`` rows are fetched per page.
    """

    dialect = "bigquery"
    name = "BigQuery"
    text_cast = "CAST(column AS STRING)"

    def __init__(
        self,
        project: str,
        dataset: str | None = None,
        *,
        location: str | None = None,
        maximum_bytes_billed: int | None = None,
        labels: Mapping[str, str] | None = None,
        client: bigquery.Client | None = None,
        credentials: Credentials | None = None,
        api_endpoint: str | None = None,
        page_rows: int = 10_000,
    ) -> None:
        if maximum_bytes_billed is not None and maximum_bytes_billed < 1:
            raise ValueError("maximum_bytes_billed must be a positive number of bytes")
        self.project = project
        self.dataset_project, self.dataset = _dataset_parts(project, dataset)
        self.location = location
        self.maximum_bytes_billed = maximum_bytes_billed
        self.labels = dict(DEFAULT_LABELS if labels is None else labels)
        self.credentials = credentials
        self.api_endpoint = api_endpoint
        self.page_rows = page_rows
        self._client = client
        self._owns_client = client is None
        self._lock = threading.Lock()
        #: the columns of tables read by the double-quote check (a request per table, not
        #: per query: BigQuery writes strings in double quotes all the time)
        self._quoted_check_columns: dict[str, list[tuple[str, str]]] = {}

    def __repr__(self) -> str:
        where = f"{self.dataset_project}.{self.dataset}" if self.dataset else self.project
        if self.dataset_project != self.project:  # billed to one project, data in another
            return f"BigQueryBackend({self.project!r}, {where!r})"
        return f"BigQueryBackend({where!r})"

    @property
    def client(self) -> bigquery.Client:
        """The BigQuery client (made on first use)."""
        with self._lock:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    def _make_client(self) -> bigquery.Client:
        import google.auth.exceptions
        from google.api_core.client_options import ClientOptions

        credentials = self.credentials
        options = None
        if self.api_endpoint:
            options = ClientOptions(api_endpoint=self.api_endpoint)
            if credentials is None:
                from google.auth.credentials import AnonymousCredentials

                credentials = AnonymousCredentials()  # type: ignore[no-untyped-call]
        try:
            return bigquery.Client(
                project=self.project,
                credentials=credentials,
                location=self.location,
                client_options=options,
            )
        except google.auth.exceptions.DefaultCredentialsError as exc:
            raise SQLError(_credentials_help(exc)) from exc

    def job_config(
        self,
        *,
        dry_run: bool,
        timeout: float | None = None,
        parameters: Mapping[str, Any] | None = None,
    ) -> bigquery.QueryJobConfig:
        """The job configuration of the dry run (``dry_run=True``) or of the real query.

        ``parameters`` are bound to the query's named parameters (``@name``), each typed
        from its Python value (:func:`query_parameters`).
        """
        config = bigquery.QueryJobConfig(
            dry_run=dry_run,
            use_legacy_sql=False,
            # the dry run reports what a run without the cache would scan: the worst case
            use_query_cache=not dry_run,
            labels=dict(self.labels),
        )
        if parameters:
            config.query_parameters = query_parameters(parameters)
        if self.maximum_bytes_billed is not None:
            config.maximum_bytes_billed = self.maximum_bytes_billed
        if self.dataset:
            config.default_dataset = f"{self.dataset_project}.{self.dataset}"
        if timeout is not None and not dry_run:
            config.job_timeout_ms = max(1, int(timeout * 1000))
        return config

    # --- queries --------------------------------------------------------------------------

    def dry_run(
        self,
        sql: str,
        timeout: float = DEFAULT_TIMEOUT_S,
        parameters: Mapping[str, Any] | None = None,
    ) -> bigquery.QueryJob:
        """BigQuery's verdict on ``sql`` (with ``parameters`` bound) without running it;
        refuses non-``SELECT`` statements and queries over the ``maximum_bytes_billed`` cap."""
        job = self.client.query(
            sql,
            job_config=self.job_config(dry_run=True, parameters=parameters),
            location=self.location,
            timeout=timeout,
            # given up well inside the tool's timeout: the error is the answer (a dry run
            # starts no job, so there is none to start again)
            retry=_retry(timeout / 2),
            job_retry=None,
        )
        if job.statement_type != "SELECT":
            raise QueryRefused(
                f"BigQuery reads this as a {job.statement_type or 'non-query'} statement; the "
                "SQL tool runs one read-only query (SELECT, WITH ... SELECT, UNION)."
            )
        scanned = job.total_bytes_processed
        cap = self.maximum_bytes_billed
        if cap is not None and scanned is not None and scanned > cap:
            raise QueryRefused(
                f"The query would scan {scanned:,} bytes, over the maximum_bytes_billed cap of "
                f"{cap:,} bytes. Scan less: select only the columns needed and filter on the "
                "tables' partitioning or clustering columns (such as a date range)."
            )
        tables = len(job.referenced_tables or ())
        least = tables * MIN_BILLED_PER_TABLE  # BigQuery enforces the cap on bytes billed
        if cap is not None and least > cap:
            read = f"{tables} table{'' if tables == 1 else 's'}"
            raise QueryRefused(
                f"BigQuery bills at least 10 MB per table a query reads: this one reads {read}, "
                f"so it would bill at least {least:,} bytes, over the maximum_bytes_billed cap "
                f"of {cap:,} bytes, and BigQuery would refuse it. Read fewer tables, or raise "
                f"maximum_bytes_billed to {least:,} or more."
            )
        return job

    def start(
        self,
        sql: str,
        stop: Interrupter,
        timeout: float,
        parameters: Mapping[str, Any] | None = None,
        *,
        job_id_prefix: str = "loopwright_",
    ) -> tuple[bigquery.QueryJob, bigquery.QueryJob]:
        """The dry run (:meth:`dry_run`'s checks), then the query job, which ``stop``
        cancels; runs in the worker thread. Returns ``(dry run, job)``. A job stopped as it
        started is cancelled, and what it billed told to ``stop`` (:func:`bill_ended_job`)."""
        client = self.client
        dry = self.dry_run(sql, timeout, parameters)
        stop.check()
        job = client.query(
            sql,
            job_config=self.job_config(dry_run=False, timeout=timeout, parameters=parameters),
            job_id_prefix=job_id_prefix,
            location=self.location,
            timeout=timeout,
        )

        def cancel() -> None:
            client.cancel_job(job.job_id, location=job.location, timeout=10, retry=_retry(10))

        try:
            stop.on_stop(cancel)
        except QueryTimeout:  # stopped while the job started: on_stop has cancelled it
            bill_ended_job(job, stop)
            raise
        return dry, job

    @contextlib.contextmanager
    def _open(self, sql: str, stop: Interrupter, timeout: float) -> Iterator[ArrowStream]:
        dry, job = self.start(sql, stop, timeout)
        # a page holds no more than the writer reads: a row cap of 5 fetched 10,000 rows
        wanted = stop.wanted_rows
        page = self.page_rows if wanted is None else max(1, min(self.page_rows, wanted))
        try:
            # our own timeout fires first; the client's is a backstop
            rows = job.result(page_size=page, timeout=timeout + 5)
        except Exception:  # stopped (billed for what it processed), or failed (not billed)
            bill_ended_job(job, stop)
            raise
        scanned = job.total_bytes_processed
        if scanned is None:
            scanned = dry.total_bytes_processed
        billed, cache_hit = _billing(job)
        if billed is not None:  # told now: reading or saving the result may still fail
            stop.billed(Bill(billed, scanned, cache_hit))
        fields = list(rows.schema or [])
        columns = [(f.name, _type_name(f)) for f in fields]
        schema, untyped = _arrow_schema(fields)
        if _holds_text_read(fields) and job.destination is not None:
            # intervals the client reads lose what they say, arrays of ranges it cannot read:
            # read them as BigQuery's text
            rows = self.client.list_rows(
                job.destination,
                selected_fields=_as_text(fields),
                page_size=page,
                retry=_retry(timeout),
            )
            batches: Iterator[pa.RecordBatch] = (
                _parsed_texts(batch, fields).cast(schema)
                for batch in rows.to_arrow_iterable(bqstorage_client=None)
            )
        else:
            batches = iter(rows.to_arrow_iterable(bqstorage_client=None))
            if untyped or _has_metadata(fields):
                # typed by each page's values, or marked as extension types: one plain schema
                batches = (batch.cast(schema) for batch in batches)
        if _holds(fields, _BIGNUMERIC):
            batches = _bignumerics_checked(batches, fields)
        first = next(batches, None)
        if first is not None:
            schema = first.schema
        yield ArrowStream(
            columns,
            schema,
            _chain(first, batches),
            bytes_scanned=scanned,
            bytes_billed=billed,
            cache_hit=cache_hit,
        )

    def check(self, sql: str) -> None:
        """The read-only check, then a refusal of a column name in double quotes, which in
        BigQuery SQL is a string: ``WHERE "NDC_DRUG_NM" = 'HUMIRA'`` compared the text
        ``NDC_DRUG_NM`` (no row, no error) and ``SELECT "PAID_AMT"`` returned that text on
        every row, a scan billed for a wrong answer. Only double-quoted strings spelled like
        a column of a table the query reads are refused; single quotes say text is meant."""
        super().check(sql)
        quoted = _double_quoted_words(sql)
        if not quoted:
            return
        from loopwright.sql.hints import sources

        names: dict[str, str] = {}
        for source in sources(sql, self.dialect) or []:
            known = self._quoted_check_columns.get(source.table)
            if known is None:
                try:
                    known = self._table_columns(source.table, _COLUMN_READ_S)
                except Exception:  # a table it cannot read: the query says
                    continue
                self._quoted_check_columns[source.table] = known
            for name, _ in known:
                names.setdefault(name.lower(), name)
        for word in quoted:
            column = names.get(word.lower())
            if column is not None:
                raise QueryRefused(
                    f'"{word}" is a string in BigQuery SQL, not the column {column}: double '
                    "quotes make text there, so the query would compare or return the text "
                    f"itself. Write column names bare or in backticks (`{column}`); if you "
                    f"meant the text, write it in single quotes ('{word}'). Nothing was run."
                )

    def _table_columns(self, table: str, budget: float) -> list[tuple[str, str]]:
        """The columns of ``table`` as a query names it (``t``, ``dataset.t`` or
        ``project.dataset.t``): one request, retried for ``budget`` seconds at most."""
        parts = table.split(".")
        project, dataset = self.dataset_project, self.dataset
        if len(parts) == 2:
            dataset = parts[0]
        elif len(parts) == 3:
            project, dataset = parts[0], parts[1]
        elif len(parts) != 1:
            raise LookupError(f"{table} is not a table name")
        if dataset is None:
            raise LookupError(f"{table} names no dataset")
        reference = bigquery.TableReference(bigquery.DatasetReference(project, dataset), parts[-1])
        found = self.client.get_table(reference, retry=_retry(budget), timeout=max(1.0, budget))
        return [(f.name, _type_name(f)) for f in found.schema]

    async def columns(
        self,
        tables: list[str],
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> dict[str, list[tuple[str, str]]]:
        """A request per table named (not one per table of the dataset, as :meth:`schema`)."""
        budget = timeout or DEFAULT_TIMEOUT_S

        def read() -> dict[str, list[tuple[str, str]]]:
            found: dict[str, list[tuple[str, str]]] = {}
            for table in tables:
                with contextlib.suppress(Exception):  # not found, not readable: no hint
                    found[table] = self._table_columns(table, budget)
            return found

        return await self._catalog(read, "the tables' columns", None, budget)

    def _syntax_error(self, sql: str, unparsable: UnparsableQuery) -> SQLError:
        """BigQuery's own verdict from a dry run (free: nothing runs, nothing is billed)."""
        try:
            self.dry_run(sql)
        except api_exceptions.GoogleAPICallError as exc:
            return self._error(exc)
        except Exception:
            return unparsable
        return accepted_elsewhere("BigQuery", sql, unparsable, self.dialect)

    def _error(self, exc: Exception) -> SQLError:
        if isinstance(exc, api_exceptions.RetryError) and isinstance(exc.cause, Exception):
            return self._gave_up(exc.cause)
        reason = _unreachable(exc)
        if reason is not None:
            return SQLError(self._unreachable_message(reason))
        if isinstance(exc, api_exceptions.GoogleAPICallError):
            details = [e for e in exc.errors if isinstance(e, dict)]
            said = list(dict.fromkeys(str(e["message"]) for e in details if e.get("message")))
            message = f"BigQuery: {'; '.join(said) if said else exc.message}".rstrip(".")
            reasons = {str(e.get("reason")) for e in details}
            if isinstance(exc, api_exceptions.NotFound) and "Not found: Table" in message:
                return UnknownTable(message)
            if "bytesBilledLimitExceeded" in reasons:
                return QueryRefused(
                    f"{message}. Scan less: select fewer columns and filter on the tables' "
                    "partitioning or clustering columns."
                )
            if reasons & STOPPED_REASONS:
                return QueryTimeout(message)
            return SQLError(message)
        if isinstance(exc, TimeoutError):
            return QueryTimeout(f"BigQuery did not finish the query in time ({exc}).")
        import google.auth.exceptions

        if isinstance(exc, google.auth.exceptions.DefaultCredentialsError):
            return SQLError(_credentials_help(exc))
        if isinstance(exc, google.auth.exceptions.RefreshError):
            # its args are Google's error and the whole response: the first one says it
            refusal = str(exc.args[0] if exc.args else exc).strip().rstrip(".")
            return SQLError(
                f"Google refused the Google Cloud credentials ({refusal}): log in again with "
                "`gcloud auth application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS "
                "to a valid service-account key file, then try again."
            )
        return SQLError(f"BigQuery: {str(exc).strip()}")

    def _gave_up(self, last: Exception) -> SQLError:
        """The error for requests retried until :data:`API_RETRY_S` ran out."""
        reason = _unreachable(last)
        if reason is not None:
            return SQLError(self._unreachable_message(reason, retried=True))
        error = self._error(last)
        return type(error)(f"{error} (after retrying)")

    def _unreachable_message(self, reason: str, *, retried: bool = False) -> str:
        where = self.api_endpoint or "https://bigquery.googleapis.com"
        again = ", still after retries" if retried else ""
        check = "the network connection" + (" and the api_endpoint" if self.api_endpoint else "")
        return f"Could not reach BigQuery at {where} ({reason}{again}): check {check}."

    def _listed(
        self, stop: Interrupter, budget: float = API_RETRY_S
    ) -> Iterator[tuple[str, bigquery.TableReference]]:
        """``(name, reference)`` of each table and view: those of the default dataset, named
        alone, or else those of every dataset in the project, named ``dataset.table``.
        Each request waits and is retried for ``budget`` seconds at most; ``stop`` ends
        the listing between requests."""
        client = self.client
        wait = max(1.0, budget)
        if self.dataset:
            datasets = [self.dataset]
        else:
            listed = client.list_datasets(self.project, retry=_retry(budget), timeout=wait)
            datasets = [d.dataset_id for d in listed]
        for dataset in datasets:
            stop.check()
            where = bigquery.DatasetReference(self.dataset_project, dataset)
            for item in client.list_tables(where, retry=_retry(budget), timeout=wait):
                name = item.table_id if self.dataset else f"{dataset}.{item.table_id}"
                yield name, item.reference

    async def tables(self, timeout: float | None = None) -> list[str]:  # noqa: ASYNC109
        """The names of the tables and views as SQL must write them (``claims.`order```,
        ```daily visits```: BigQuery's reserved words and names of other characters in
        backticks), from the listing alone: :meth:`schema` reads each table's columns, a
        request per table."""
        stop = Interrupter()
        budget = timeout or DEFAULT_TIMEOUT_S

        def read() -> list[str]:
            listed = sorted(self._listed(stop, budget), key=lambda item: item[0])
            return [".".join(map(quote_name, name.split("."))) for name, _ in listed]

        return await self._catalog(read, "the tables", stop, timeout)

    async def schema(self) -> dict[str, list[tuple[str, str]]]:
        stop = Interrupter()

        def read() -> dict[str, list[tuple[str, str]]]:
            client = self.client
            listed = list(self._listed(stop))

            def columns(reference: bigquery.TableReference) -> list[tuple[str, str]]:
                stop.check()  # timed out: the tables not read yet are left alone
                table = client.get_table(reference, retry=_retry())
                return [(f.name, _type_name(f)) for f in table.schema]

            # a request per table: a few at a time, or a dataset of a few hundred tables
            # (a year of date-sharded ones) would outlast the timeout
            with ThreadPoolExecutor(SCHEMA_REQUESTS, "loopwright-bigquery-schema") as pool:
                found = pool.map(columns, [reference for _, reference in listed])
                return dict(zip([name for name, _ in listed], found, strict=True))

        return await self._catalog(read, "the tables and their columns", stop)

    async def _catalog(
        self,
        read: Callable[[], T],
        what: str,
        stop: Interrupter | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - stops the reading itself
    ) -> T:
        """``read`` (``what`` it lists, for the message) run in a worker, within
        ``timeout`` seconds (default :data:`DEFAULT_TIMEOUT_S`)."""
        timeout = timeout or DEFAULT_TIMEOUT_S
        try:
            return await run_in_worker(read, stop or Interrupter(), timeout)
        except TimeoutError:
            advice = (
                "check the network connection and try again"
                if self.dataset
                else "name a default dataset (bigquery://PROJECT/DATASET) to read only its tables"
            )
            raise QueryTimeout(
                f"BigQuery did not list {what} within {timeout:g} s: {advice}."
            ) from None
        except SQLError:
            raise
        except Exception as exc:
            raise self._error(exc) from exc

    async def aclose(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None and self._owns_client:
            client.close()  # type: ignore[no-untyped-call]


#: GoogleSQL's reserved keywords: a name spelt as one must be quoted.
RESERVED = frozenset(
    """ALL AND ANY ARRAY AS ASC ASSERT_ROWS_MODIFIED AT BETWEEN BY CASE CAST COLLATE CONTAINS
    CREATE CROSS CUBE CURRENT DEFAULT DEFINE DESC DISTINCT ELSE END ENUM ESCAPE EXCEPT EXCLUDE
    EXISTS EXTRACT FALSE FETCH FOLLOWING FOR FROM FULL GROUP GROUPING GROUPS HASH HAVING IF
    IGNORE IN INNER INTERSECT INTERVAL INTO IS JOIN LATERAL LEFT LIKE LIMIT LOOKUP MERGE
    NATURAL NEW NO NOT NULL NULLS OF ON OR ORDER OUTER OVER PARTITION PRECEDING PROTO QUALIFY
    RANGE RECURSIVE RESPECT RIGHT ROLLUP ROWS SELECT SET SOME STRUCT TABLESAMPLE THEN TO TREAT
    TRUE UNBOUNDED UNION UNNEST USING WHEN WHERE WINDOW WITH WITHIN""".split()  # noqa: SIM905
)
_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


#: Seconds a table's columns may take to read for the check of double-quoted names.
_COLUMN_READ_S = 10.0
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _double_quoted_words(sql: str) -> list[str]:
    """The strings ``sql`` writes in double quotes (not ``\"\"\"...\"\"\"``, raw or bytes)
    that are spelled like a column name."""
    import sqlglot
    from sqlglot import TokenType

    if '"' not in sql:
        return []
    try:
        tokens = sqlglot.tokenize(sql, read="bigquery")
    except Exception:  # the check proper reports it
        return []
    found = []
    for token in tokens:
        if token.token_type != TokenType.STRING or sql[token.start : token.start + 1] != '"':
            continue
        if sql.startswith('"""', token.start) or not _WORD.fullmatch(token.text):
            continue
        if token.text not in found:
            found.append(token.text)
    return found


def quote_name(name: str) -> str:
    """One part of a BigQuery path as SQL must write it: as it is where it can go unquoted,
    else in backticks (a backslash escapes a backtick or a backslash inside)."""
    if _PLAIN_NAME.fullmatch(name) and name.upper() not in RESERVED:
        return name
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def query_parameters(values: Mapping[str, Any]) -> list[bigquery.ScalarQueryParameter]:
    """Named query parameters, typed from their Python values (``str`` as ``STRING``,
    ``int`` as ``INT64``, ``datetime.date`` as ``DATE``...)."""
    import datetime as dt
    from decimal import Decimal

    parameters = []
    for name, value in values.items():
        kind: str
        if isinstance(value, bool):  # before int: a bool is an int in Python
            kind = "BOOL"
        elif isinstance(value, int):
            kind = "INT64"
        elif isinstance(value, float):
            kind = "FLOAT64"
        elif isinstance(value, Decimal):
            kind = "BIGNUMERIC"
        elif isinstance(value, dt.datetime):  # before date: a datetime is a date
            kind = "TIMESTAMP" if value.tzinfo is not None else "DATETIME"
        elif isinstance(value, dt.date):
            kind = "DATE"
        elif isinstance(value, str):
            kind = "STRING"
        elif isinstance(value, bytes):
            kind = "BYTES"
        else:
            raise TypeError(
                f"query parameter {name!r}: BigQuery has no parameter type for "
                f"{type(value).__name__} values; pass str, int, float, Decimal, bool, bytes, "
                "date or datetime"
            )
        parameters.append(bigquery.ScalarQueryParameter(name, kind, value))
    return parameters


def _billing(job: bigquery.QueryJob) -> tuple[int | None, bool | None]:
    """What BigQuery billed for the finished ``job`` (``statistics.query.totalBytesBilled``:
    at least 10 MB per table read on on-demand pricing, 0 for a cached result) and whether
    its result came from the cache. Where the job's statistics lack the bytes (a job
    resource read before it finished), it is read once more; still missing, ``None``."""
    billed, cache_hit = job.total_bytes_billed, job.cache_hit
    if billed is None and not cache_hit:
        with contextlib.suppress(Exception):  # what it cost is worth one request, not a failure
            job.reload(retry=_retry(10), timeout=10)
            billed, cache_hit = job.total_bytes_billed, job.cache_hit
    if billed is None and cache_hit:
        billed = 0  # a result served from the cache bills nothing
    return (
        int(billed) if billed is not None else None,
        bool(cache_hit) if cache_hit is not None else None,
    )


def job_bill(job: bigquery.QueryJob) -> Bill | None:
    """The :class:`Bill` of the ended ``job`` (:func:`_billing`), or ``None`` when BigQuery
    did not say what it billed."""
    billed, cache_hit = _billing(job)
    if billed is None:
        return None
    return Bill(billed, job.total_bytes_processed, cache_hit)


def bill_ended_job(job: bigquery.QueryJob, stop: Interrupter) -> None:
    """Tell ``stop`` what BigQuery billed for ``job``, whose result was not read: a job
    stopped (by ``stop``'s cancel, or past its ``job_timeout_ms``) may be billed for what it
    processed, and one that finished before its result could be read was billed in full; a
    query that failed with an error is not billed, and nothing is told. A job still running
    and not stopped by ``stop`` (its result's request failed) is cancelled first, so it
    spends no more; either way it is waited for to end, :data:`STOPPED_JOB_WAIT_S` at most."""
    with contextlib.suppress(Exception):  # what it cost is worth a few requests, not a failure
        if not stop.stopped and not job.done(retry=_retry(10), timeout=10):
            job.cancel(retry=_retry(10), timeout=10)
        deadline = time.monotonic() + STOPPED_JOB_WAIT_S
        while not job.done(retry=_retry(10), timeout=10) and time.monotonic() < deadline:
            time.sleep(0.1)
        error = job.error_result
        if job.state != "DONE" or (
            error is not None and error.get("reason") not in STOPPED_REASONS
        ):
            return
        bill = job_bill(job)
        if bill is not None:
            stop.billed(bill)


def _chain(first: pa.RecordBatch | None, rest: Iterator[pa.RecordBatch]) -> Iterator[Any]:
    if first is not None:
        yield first
    yield from rest


def _type_name(field: bigquery.SchemaField) -> str:
    """A column's type as BigQuery SQL writes it: ``INT64``, ``ARRAY<STRING>``, ``STRUCT<...>``,
    ``RANGE<DATE>``."""
    kind = field.field_type or "STRING"
    if kind in ("RECORD", "STRUCT"):
        inner = ", ".join(f"{f.name} {_type_name(f)}" for f in field.fields)
        kind = f"STRUCT<{inner}>"
    elif kind == "RANGE" and field.range_element_type is not None:
        kind = f"RANGE<{field.range_element_type.element_type}>"
    if field.mode == "REPEATED":
        return f"ARRAY<{kind}>"
    return kind


def _dataset_parts(project: str, dataset: str | None) -> tuple[str, str | None]:
    """The project holding ``dataset`` and its id: ``DATASET`` is in ``project``;
    ``OTHER.DATASET`` (or ``OTHER/DATASET``) in ``OTHER``. Dataset ids have no dots; project
    ids can (``example.com:project``), so the last dot splits them."""
    if not dataset:
        return project, None
    where, _, name = dataset.replace("/", ".").rpartition(".")
    if not name or (_ and not where) or not re.fullmatch(r"[A-Za-z0-9_]+", name):
        raise ValueError(
            f"{dataset!r} is not a BigQuery dataset: give DATASET (letters, digits and _), or "
            "PROJECT.DATASET for one in another project."
        )
    return where or project, name


def _holds(fields: list[bigquery.SchemaField], kinds: frozenset[str]) -> bool:
    """Whether any of ``fields``, or a field nested in one, is of one of ``kinds``."""
    return any(
        (f.field_type or "").upper() in kinds or _holds(list(f.fields), kinds) for f in fields
    )


_BIGNUMERIC = frozenset({"BIGNUMERIC"})


def _read_as_text(field: bigquery.SchemaField) -> bool:
    """Whether ``field``'s values are read as BigQuery's text and parsed here: an
    ``INTERVAL`` (see the module's doc), and an ``ARRAY<RANGE<...>>``, which the client
    cannot read (it drops the ranges' element type: "Range element type cannot be None")."""
    kind = (field.field_type or "").upper()
    return kind == "INTERVAL" or (kind == "RANGE" and field.mode == "REPEATED")


def _holds_text_read(fields: list[bigquery.SchemaField]) -> bool:
    """Whether any of ``fields``, or a field nested in one, is :func:`_read_as_text`."""
    return any(_read_as_text(f) or _holds_text_read(list(f.fields)) for f in fields)


def _as_text(fields: list[bigquery.SchemaField]) -> list[bigquery.SchemaField]:
    """``fields`` with each one :func:`_read_as_text` in them, at any depth, as ``STRING``."""
    return [
        bigquery.SchemaField(f.name, "STRING", mode=f.mode)
        if _read_as_text(f)
        else bigquery.SchemaField(
            f.name, f.field_type, mode=f.mode, fields=_as_text(list(f.fields))
        )
        if f.fields
        else f
        for f in fields
    ]


def _parsed_texts(batch: pa.RecordBatch, fields: list[bigquery.SchemaField]) -> Any:
    """``batch``, read with :func:`_as_text`, with the texts in it parsed."""
    columns = [_parsed(batch.column(i), f) for i, f in enumerate(fields)]
    return pa.RecordBatch.from_arrays(columns, names=[f.name for f in fields])


def _parsed(array: pa.Array, field: bigquery.SchemaField) -> pa.Array:
    """``array``, of ``field`` read with :func:`_as_text`, with the texts in it parsed."""
    if not _holds_text_read([field]):
        return array
    mask = array.is_null() if array.null_count else None
    if field.mode == "REPEATED":  # a list: its values, all of them, are of the element
        # no null lists (BigQuery's NULL array is an empty one): those of a null struct's
        # slots would break the cast to the schema, whose arrays are not nullable
        element = bigquery.SchemaField(
            field.name,
            field.field_type,
            fields=field.fields,
            range_element_type=field.range_element_type,
        )
        is_range = field.field_type == "RANGE"
        values = (
            _parsed_ranges(array.values, element) if is_range else _parsed(array.values, element)
        )
        return pa.ListArray.from_arrays(array.offsets, values)
    if field.field_type in ("RECORD", "STRUCT"):
        # flatten(): a null struct's fields are null too, whatever its slots hold
        children = [_parsed(c, f) for c, f in zip(array.flatten(), field.fields, strict=True)]
        names = [f.name for f in field.fields]
        return pa.StructArray.from_arrays(children, names=names, mask=mask)
    texts = array.to_pylist()
    return pa.array([_interval(t) for t in texts], pa.month_day_nano_interval())


def _range_type(field: bigquery.SchemaField) -> pa.DataType:
    """The Arrow type of a ``RANGE`` value, the client's: ``struct<start, end>`` of its
    element type (``UNBOUNDED`` is null)."""
    from google.cloud.bigquery import _pandas_helpers

    element = field.range_element_type
    return _pandas_helpers.bq_to_arrow_range_data_type(element)  # type: ignore[no-untyped-call]


def _parsed_ranges(array: pa.Array, field: bigquery.SchemaField) -> pa.Array:
    """Ranges of ``field`` from BigQuery's text (``[2024-01-01, UNBOUNDED)``), parsed by the
    client as it parses a ``RANGE`` column."""
    parse: Callable[[Any, bigquery.SchemaField], Any]
    try:
        from google.cloud.bigquery._helpers import CELL_DATA_PARSER

        parse = CELL_DATA_PARSER.to_py
    except ImportError:  # google-cloud-bigquery before 3.31: the same parser, by its old name
        from google.cloud.bigquery import _helpers

        parse = _helpers._range_from_json  # type: ignore[attr-defined]
    ranges = [parse(text, field) for text in array.to_pylist()]
    return pa.array(ranges, _range_type(field))


def _bignumerics_checked(
    batches: Iterator[pa.RecordBatch], fields: list[bigquery.SchemaField]
) -> Iterator[pa.RecordBatch]:
    """``batches``, with the client's failure on a ``BIGNUMERIC`` of 10^38 or more (39
    digits before the point: BigQuery's range goes to about 5.8 x 10^38) said in words."""
    try:
        yield from batches
    except pa.ArrowInvalid as exc:
        if "does not fit into precision" not in str(exc):
            raise
        columns = _paths(fields, _BIGNUMERIC)
        raise SQLError(
            "A BIGNUMERIC value of 10^38 or more (39 digits before the decimal point) is in "
            f"the result (BIGNUMERIC columns: {', '.join(columns)}): the result files hold "
            "BIGNUMERIC exactly up to 38 digits before and 38 after the point (Arrow and "
            "Parquet's decimal256(76, 38)), so it cannot be saved exactly. Cast the column to "
            f"text in the query (CAST({columns[0]} AS STRING)) to keep every digit, or to "
            "FLOAT64 where an approximate number will do. No file was written."
        ) from exc


def _paths(fields: list[bigquery.SchemaField], kinds: frozenset[str], under: str = "") -> list[str]:
    """The names (``a``, ``s.a`` inside a struct) of the fields of one of ``kinds``."""
    found = []
    for f in fields:
        name = under + f.name
        if (f.field_type or "").upper() in kinds:
            found.append(name)
        found += _paths(list(f.fields), kinds, name + ".")
    return found


#: BigQuery's canonical interval text: ``[-]Y-M [-]D [-]H:M:S[.F]``, each sign applying to
#: its part (years and months, days, the time).
_INTERVAL = re.compile(r"(-?)(\d+)-(\d+) (-?\d+) (-?)(\d+):(\d+):(\d+)(?:\.(\d{1,9}))?")


def _interval(text: str | None) -> tuple[int, int, int] | None:
    """An interval's ``(months, days, nanoseconds)`` from BigQuery's canonical text."""
    if text is None:
        return None
    match = _INTERVAL.fullmatch(text.strip())
    if match is None:
        raise ValueError(
            f"an interval came in a format not known here ({text!r}): cast the column to text "
            "in the query (CAST(column AS STRING)) and run it again"
        )
    month_sign, years, months, days, time_sign, hours, minutes, seconds, fraction = match.groups()
    total_months = int(years) * 12 + int(months)
    whole = (int(hours) * 60 + int(minutes)) * 60 + int(seconds)
    nanoseconds = whole * 1_000_000_000 + int((fraction or "").ljust(9, "0"))
    return (
        -total_months if month_sign else total_months,
        int(days),
        -nanoseconds if time_sign else nanoseconds,
    )


#: The types the client marks as Arrow extension types (field metadata), see the module's doc.
_EXTENSION_TYPES = frozenset({"DATETIME", "JSON", "GEOGRAPHY"})


def _has_metadata(fields: list[bigquery.SchemaField]) -> bool:
    """Whether the client's Arrow fields for ``fields`` carry metadata, at any depth."""
    return _holds(fields, _EXTENSION_TYPES)


def _plain(field: pa.Field) -> pa.Field:
    """``field`` without metadata, nor any in the fields nested in it."""
    kind = field.type
    if pa.types.is_struct(kind):
        kind = pa.struct([_plain(kind.field(i)) for i in range(kind.num_fields)])
    elif pa.types.is_list(kind):
        kind = pa.list_(_plain(kind.value_field))
    return pa.field(field.name, kind, nullable=field.nullable)


def _arrow_schema(fields: list[bigquery.SchemaField]) -> tuple[pa.Schema, bool]:
    """The Arrow schema of a result, and whether the client leaves some column untyped."""
    converted = [_arrow_field(f) for f in fields]
    return pa.schema([f for f, _ in converted]), any(untyped for _, untyped in converted)


def _holds_ranges_in_arrays(fields: list[bigquery.SchemaField]) -> bool:
    return any(
        (f.field_type == "RANGE" and f.mode == "REPEATED")
        or _holds_ranges_in_arrays(list(f.fields))
        for f in fields
    )


def _arrow_field(field: bigquery.SchemaField) -> tuple[pa.Field, bool]:
    """The client's Arrow field for ``field`` where it has one (``False``), else ours
    (``True``): intervals as ``month_day_nano_interval``, arrays of ranges as lists of the
    client's range structs, other unknown types as text."""
    from google.cloud.bigquery import _pandas_helpers

    if not _holds_ranges_in_arrays([field]):  # the client raises on those
        known = _pandas_helpers.bq_to_arrow_field(field)  # type: ignore[no-untyped-call]
        if known is not None:
            return _plain(known), False
    kind: pa.DataType
    if field.field_type in ("RECORD", "STRUCT"):
        kind = pa.struct([_arrow_field(f)[0] for f in field.fields])
    elif field.field_type == "INTERVAL":
        kind = pa.month_day_nano_interval()
    elif field.field_type == "RANGE":
        kind = _range_type(field)
    else:  # the client hands unknown types over as the API's text
        kind = pa.string()
    if field.mode == "REPEATED":
        return pa.field(field.name, pa.list_(pa.field("element", kind)), nullable=False), True
    return pa.field(field.name, kind), True
