"""The BigQuery backend: the real ``google.cloud.bigquery.Client`` against a loopback
stand-in that speaks the REST API (jobs.insert, getQueryResults, jobs.cancel, tables)."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from google.api_core.client_options import ClientOptions
from google.api_core.exceptions import BadRequest
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery
from polars.testing import assert_frame_equal

from loopwright.sql import (
    BigQueryBackend,
    QueryRefused,
    QueryTimeout,
    SQLError,
    UnparsableQuery,
    connect,
)
from loopwright.sql.bigquery import query_parameters
from loopwright.tools.sql import SQLTool

from .bigquery_server import BigQueryServer
from .conftest import CLAIMS_SQL, unholdable_intervals

HUMIRA_CA = """
SELECT prescriber_npi_nbr, COUNT(*) AS rx_count
FROM `test-project.claims.rx_claims`
WHERE ndc_drug_nm = 'HUMIRA' AND prescriber_npi_state_cd = 'CA'
GROUP BY prescriber_npi_nbr
ORDER BY rx_count DESC, prescriber_npi_nbr
LIMIT 10
"""


def expected(sql: str) -> pl.DataFrame:
    """The answer computed from the same rows, by DuckDB directly."""
    with duckdb.connect() as connection:
        connection.execute(CLAIMS_SQL)
        return connection.sql(sql.replace("`test-project.claims.rx_claims`", "rx_claims")).pl()


@pytest.fixture
async def backend(bigquery_server: BigQueryServer) -> AsyncIterator[BigQueryBackend]:
    client = bigquery.Client(
        project="test-project",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options=ClientOptions(api_endpoint=bigquery_server.base_url),
    )
    backend = BigQueryBackend(
        "test-project", "claims", maximum_bytes_billed=50_000_000, client=client, page_rows=500
    )
    yield backend
    await backend.aclose()
    client.close()  # type: ignore[no-untyped-call]


async def run(tool: SQLTool, sql: str, name: str = "result") -> dict[str, object]:
    return dict(await tool.execute({"sql": sql, "dataset_name": name, "description": "test"}))


def test_the_job_configurations() -> None:
    backend = BigQueryBackend(
        "proj", "claims", location="EU", maximum_bytes_billed=10**9, labels={"team": "rx"}
    )
    dry = backend.job_config(dry_run=True)
    assert dry.dry_run is True
    assert dry.use_legacy_sql is False
    assert dry.use_query_cache is False  # the estimate is the worst case
    assert dry.maximum_bytes_billed == 10**9
    assert dry.labels == {"team": "rx"}
    assert str(dry.default_dataset) == "proj.claims"
    real = backend.job_config(dry_run=False, timeout=30)
    assert real.dry_run is None or real.dry_run is False
    assert int(real.job_timeout_ms) == 30_000
    assert real.use_legacy_sql is False
    assert real.to_api_repr()["query"]["maximumBytesBilled"] == str(10**9)
    assert BigQueryBackend("proj").job_config(dry_run=False).labels == {"loopwright": "sql-tool"}


async def test_a_dataset_in_another_project(
    bigquery_server: BigQueryServer, workspace: Path
) -> None:
    """``bigquery://my-billing/bigquery-public-data.cms_medicare``: the jobs run in (and are
    billed to) one project, the default dataset and its tables are another's. The dataset
    id was sent as "bigquery-public-data.cms_medicare" under the billing project."""
    client = bigquery.Client(
        project="billing-project",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options=ClientOptions(api_endpoint=bigquery_server.base_url),
    )
    backend = BigQueryBackend("billing-project", "public-data.claims", client=client)
    try:
        assert repr(backend) == "BigQueryBackend('billing-project', 'public-data.claims')"
        dry = backend.job_config(dry_run=True).to_api_repr()["query"]["defaultDataset"]
        assert dry == {"projectId": "public-data", "datasetId": "claims"}
        assert await backend.tables() == ["providers_bio", "rx_claims"]
        result = await backend.query("SELECT COUNT(*) AS n FROM rx_claims", workspace / "n.csv")
    finally:
        await backend.aclose()
        client.close()  # type: ignore[no-untyped-call]
    assert result.preview == [(2000,)]
    assert "/projects/public-data/datasets/claims/tables" in bigquery_server.paths("GET")[0]
    jobs = [p for p in bigquery_server.paths("POST") if p.endswith("/jobs")]
    assert jobs
    assert all("/projects/billing-project/" in p for p in jobs)
    same = BigQueryBackend("proj", "proj/claims")  # PROJECT/DATASET, as a URL's path has it
    assert (same.dataset_project, same.dataset, repr(same)) == (
        "proj",
        "claims",
        "BigQueryBackend('proj.claims')",
    )
    assert BigQueryBackend("p", "example.com:other.claims").dataset_project == "example.com:other"
    for url in ("bigquery://billing/public-data.claims", "bigquery://billing/public-data/claims"):
        backend = connect(url)
        assert isinstance(backend, BigQueryBackend)
        assert (backend.project, backend.dataset_project, backend.dataset) == (
            "billing",
            "public-data",
            "claims",
        )
    for bad in ("claims.", ".claims", "my-dataset", "a.b c"):
        with pytest.raises(ValueError, match="is not a BigQuery dataset"):
            BigQueryBackend("proj", bad)


def test_query_parameters_are_typed_from_their_values() -> None:
    values = {
        "drug": "humira",
        "age": 40,
        "flag": True,
        "ratio": 0.5,
        "amount": Decimal("12.50"),
        "day": dt.date(2024, 1, 31),
        "at": dt.datetime(2024, 1, 31, 9, 30),
        "at_utc": dt.datetime(2024, 1, 31, 9, 30, tzinfo=dt.UTC),
        "raw": b"x",
    }
    typed = {p.name: (p.type_, p.value) for p in query_parameters(values)}
    assert typed == {
        "drug": ("STRING", "humira"),
        "age": ("INT64", 40),
        "flag": ("BOOL", True),
        "ratio": ("FLOAT64", 0.5),
        "amount": ("BIGNUMERIC", Decimal("12.50")),
        "day": ("DATE", dt.date(2024, 1, 31)),
        "at": ("DATETIME", dt.datetime(2024, 1, 31, 9, 30)),
        "at_utc": ("TIMESTAMP", dt.datetime(2024, 1, 31, 9, 30, tzinfo=dt.UTC)),
        "raw": ("BYTES", b"x"),
    }
    config = BigQueryBackend("proj").job_config(dry_run=False, parameters={"drug": "humira"})
    (sent,) = config.to_api_repr()["query"]["queryParameters"]
    assert sent == {
        "name": "drug",
        "parameterType": {"type": "STRING"},
        "parameterValue": {"value": "humira"},
    }
    with pytest.raises(TypeError, match="no parameter type for list values"):
        query_parameters({"drugs": ["a", "b"]})


def test_named_parameters_through_the_real_client(backend: BigQueryBackend) -> None:
    sql = (
        "SELECT COUNT(*) AS n FROM rx_claims "
        "WHERE ndc_drug_nm = @drug AND service_date_dd >= @since AND dispensed_quantity_val > @q"
    )
    values = {"drug": "HUMIRA", "since": dt.date(2024, 7, 1), "q": 30}
    assert backend.dry_run(sql, parameters=values).statement_type == "SELECT"
    job = backend.client.query(sql, job_config=backend.job_config(dry_run=False, parameters=values))
    ((n,),) = [tuple(row.values()) for row in job.result()]
    direct = expected(
        "SELECT COUNT(*) AS n FROM `test-project.claims.rx_claims` WHERE ndc_drug_nm = 'HUMIRA' "
        "AND service_date_dd >= DATE '2024-07-01' AND dispensed_quantity_val > 30"
    )
    assert n == direct["n"][0] > 0
    with pytest.raises(BadRequest, match="Query parameter 'since' not found"):
        backend.dry_run(sql, parameters={"drug": "HUMIRA", "q": 30})


async def test_the_guides_example_through_the_real_client(
    backend: BigQueryBackend, bigquery_server: BigQueryServer, workspace: Path
) -> None:
    tool = SQLTool(workspace, backend=backend, timeout=30)
    result = await run(tool, HUMIRA_CA, "humira_ca_top10")
    assert result["is_error"] is False
    reference = expected(HUMIRA_CA)
    parquet = pl.read_parquet(workspace / "humira_ca_top10.parquet")
    assert_frame_equal(parquet, reference)
    assert_frame_equal(pl.read_csv(workspace / "humira_ca_top10.csv"), reference)
    content = str(result["content"])
    assert "prescriber_npi_nbr (INTEGER), rx_count (INTEGER)" in content
    assert "Scanned 125.0 KB." in content  # 2,000 rows x 8 columns x 8 bytes, the dry run's
    # the requests: a dry run, then the job, both standard SQL with the cap and labels
    dry, real = bigquery_server.job_bodies()
    assert dry["configuration"]["dryRun"] is True
    assert "dryRun" not in real["configuration"] or real["configuration"]["dryRun"] is False
    for body in (dry, real):
        query = body["configuration"]["query"]
        assert query["useLegacySql"] is False
        assert query["maximumBytesBilled"] == "50000000"
        assert query["defaultDataset"] == {"projectId": "test-project", "datasetId": "claims"}
        assert body["configuration"]["labels"] == {"loopwright": "sql-tool"}
    assert real["configuration"]["jobTimeoutMs"] == "30000"
    assert real["jobReference"]["jobId"].startswith("loopwright_")


async def test_a_result_of_many_pages_lands_whole_in_both_files(
    backend: BigQueryBackend, bigquery_server: BigQueryServer, workspace: Path
) -> None:
    sql = """
    SELECT claim_id, ndc_drug_nm, service_date_dd, paid_amt, is_specialty
    FROM rx_claims ORDER BY claim_id
    """
    result = await backend.query(sql, str(workspace / "all.csv"), str(workspace / "all.parquet"))
    assert (result.row_count, result.truncated) == (2000, False)
    pages = [p for p in bigquery_server.paths("GET") if "/queries/" in p]
    assert len(pages) >= 4  # 500 rows a page
    parquet = pl.read_parquet(workspace / "all.parquet")
    assert_frame_equal(parquet, expected(sql), check_dtypes=False)
    assert parquet.schema["service_date_dd"] == pl.Date
    csv = pl.read_csv(workspace / "all.csv", try_parse_dates=True, schema=parquet.schema)
    assert_frame_equal(csv, parquet)
    assert result.columns[:3] == [
        ("claim_id", "INTEGER"),
        ("ndc_drug_nm", "STRING"),
        ("service_date_dd", "DATE"),
    ]


async def test_bignumeric_lands_in_both_files(backend: BigQueryBackend, workspace: Path) -> None:
    """BIGNUMERIC comes from the client as Arrow decimal256, which Polars' CSV writer
    panicked on; the CSV now has every digit and the Parquet file keeps the type."""
    sql = "SELECT 12345678901234567.123456789012::DECIMAL(38, 12) AS big, 2.5 AS small"
    result = await backend.query(sql, str(workspace / "n.csv"), str(workspace / "n.parquet"))
    assert result.columns == [("big", "BIGNUMERIC"), ("small", "NUMERIC")]
    big = Decimal("12345678901234567.123456789012")
    assert (workspace / "n.csv").read_text().splitlines() == [
        "big,small",
        f"{big:.38f},2.500000000",
    ]
    parquet = pq.read_table(workspace / "n.parquet")
    assert parquet.schema.field("big").type == pa.decimal256(76, 38)
    assert parquet.to_pylist() == [{"big": big, "small": Decimal("2.5")}]
    assert result.preview == [(big, Decimal("2.5"))]


async def test_arrays_structs_json_and_intervals_land_in_both_files(
    backend: BigQueryBackend, workspace: Path
) -> None:
    """REPEATED and RECORD fields, JSON and INTERVAL, as the REST API sends them: arrays and
    structs keep their shape in Parquet and are JSON in the CSV; intervals are ISO 8601 text,
    as from DuckDB and PostgreSQL."""
    sql = """
    SELECT [1, 2] AS ids, ARRAY<STRING>[] AS none, STRUCT(1 AS a, [DATE '2024-01-02'] AS d) AS s,
           [STRUCT('x' AS k, NULL AS v)] AS pairs, JSON '{"a": [1, null]}' AS j,
           MAKE_INTERVAL(1, 2, -3, 4, 5, 6) AS i, CAST(NULL AS INTERVAL) AS gap
    """
    result = await backend.query(sql, str(workspace / "t.csv"), str(workspace / "t.parquet"))
    assert result.columns == [
        ("ids", "ARRAY<INTEGER>"),
        ("none", "ARRAY<STRING>"),
        ("s", "STRUCT<a INTEGER, d ARRAY<DATE>>"),
        ("pairs", "ARRAY<STRUCT<k STRING, v STRING>>"),
        ("j", "JSON"),
        ("i", "INTERVAL"),
        ("gap", "INTERVAL"),
    ]
    assert (workspace / "t.csv").read_text().splitlines() == [
        "ids,none,s,pairs,j,i,gap",
        '"[1, 2]",[],"{""a"": 1, ""d"": [""2024-01-02""]}","[{""k"": ""x"", ""v"": null}]",'
        '"{""a"":[1,null]}",P14M-3DT14706S,',
    ]
    parquet = pq.read_table(workspace / "t.parquet")
    assert parquet.to_pylist() == [
        {
            "ids": [1, 2],
            "none": [],
            "s": {"a": 1, "d": [dt.date(2024, 1, 2)]},
            "pairs": [{"k": "x", "v": None}],
            "j": '{"a":[1,null]}',
            "i": "P14M-3DT14706S",
            "gap": None,
        }
    ]
    assert parquet.schema.field("gap").type == pa.string()  # an interval column, never null


async def test_an_interval_column_null_on_the_first_page_keeps_its_type(
    backend: BigQueryBackend, workspace: Path
) -> None:
    """The client cannot type INTERVAL, so each page's column is typed by its values: a first
    page of NULLs (500 rows a page here) must not decide the column's type."""
    sql = """
    SELECT claim_id, IF(claim_id > 1500, INTERVAL claim_id DAY, NULL) AS gap,
           IF(claim_id > 1500, STRUCT(MAKE_INTERVAL(0, 1, 0) AS i), NULL) AS s
    FROM rx_claims ORDER BY claim_id
    """
    result = await backend.query(sql, str(workspace / "g.csv"), str(workspace / "g.parquet"))
    assert result.row_count == 2000
    frame = pl.read_parquet(workspace / "g.parquet")
    assert frame["gap"].null_count() == 1501  # claim ids 0 to 1500
    last = frame.filter(pl.col("claim_id") == 1999)
    assert (last["gap"].item(), last["s"].item()) == ("P1999D", {"i": "P1M"})
    lines = (workspace / "g.csv").read_text().splitlines()
    assert lines[1501:1503] == ["1500,,", '1501,P1501D,"{""i"": ""P1M""}"']


async def test_an_empty_result_keeps_each_columns_type(
    backend: BigQueryBackend, workspace: Path
) -> None:
    sql = "SELECT claim_id, MAKE_INTERVAL(0, 0, 1) AS i FROM rx_claims WHERE claim_id < 0"
    result = await backend.query(sql, str(workspace / "e.csv"), str(workspace / "e.parquet"))
    assert result.row_count == 0
    assert (workspace / "e.csv").read_text() == "claim_id,i\n"
    schema = pq.read_schema(workspace / "e.parquet")
    assert (schema.field("claim_id").type, schema.field("i").type) == (pa.int64(), pa.string())


async def test_the_row_cap_stops_reading_pages(
    backend: BigQueryBackend, bigquery_server: BigQueryServer, workspace: Path
) -> None:
    result = await backend.query(
        "SELECT claim_id FROM rx_claims ORDER BY claim_id",
        str(workspace / "capped.csv"),
        None,
        max_rows=700,
    )
    assert (result.row_count, result.truncated) == (700, True)
    assert pl.read_csv(workspace / "capped.csv")["claim_id"].to_list() == list(range(700))
    pages = [p for p in bigquery_server.paths("GET") if "/queries/" in p]
    assert len(pages) == 2  # 1,400 rows read of 2,000, not all four pages


async def test_writes_are_refused_before_any_job_is_sent(
    backend: BigQueryBackend, bigquery_server: BigQueryServer, workspace: Path
) -> None:
    tool = SQLTool(workspace, backend=backend)
    for sql in ("DELETE FROM rx_claims WHERE true", "DROP TABLE rx_claims", "SELECT 1; SELECT 2"):
        result = await run(tool, sql)
        assert result["is_error"] is True
    assert bigquery_server.job_bodies() == []
    assert os.listdir(workspace) == []


class Unchecked(BigQueryBackend):
    """The backend without its parser check: what BigQuery's own verdict allows."""

    def check(self, sql: str) -> None:
        pass


async def test_the_dry_run_refuses_what_is_not_a_select(
    bigquery_server: BigQueryServer, workspace: Path
) -> None:
    backend = Unchecked("test-project", "claims", api_endpoint=bigquery_server.base_url)
    try:
        with pytest.raises(QueryRefused, match="BigQuery reads this as a DELETE statement"):
            await backend.query("DELETE FROM rx_claims WHERE true", str(workspace / "x.csv"))
    finally:
        await backend.aclose()
    (dry,) = bigquery_server.job_bodies()  # only the dry run: no job ever ran
    assert dry["configuration"]["dryRun"] is True


async def test_the_bytes_cap_refuses_before_anything_is_billed(
    bigquery_server: BigQueryServer, workspace: Path
) -> None:
    url = f"bigquery://test-project/claims?maximum_bytes_billed=1000&api_endpoint={bigquery_server.base_url}"
    tool = SQLTool(workspace, backend=url)
    try:
        result = await run(tool, "SELECT * FROM rx_claims")
    finally:
        await tool.aclose()
    assert result["is_error"] is True
    assert "would scan 128,000 bytes, over the maximum_bytes_billed cap of 1,000" in str(
        result["content"]
    )
    assert len(bigquery_server.job_bodies()) == 1
    assert os.listdir(workspace) == []


async def test_errors_come_back_with_bigquerys_message(
    backend: BigQueryBackend, workspace: Path
) -> None:
    tool = SQLTool(workspace, backend=backend)
    unknown = await run(tool, "SELECT * FROM rx_claimz")
    assert unknown["is_error"] is True
    content = str(unknown["content"])
    assert "Not found: Table test-project:claims.rx_claimz was not found in location US" in content
    assert "Tables in the database: providers_bio, rx_claims." in content
    assert "POST http" not in content  # the message, not the client's request line
    syntax = await run(tool, "SELECT * FROM rx_claims WHERE")
    assert syntax["is_error"] is True
    assert "BigQuery: Syntax error" in str(syntax["content"])


async def test_placeholders_are_explained_but_system_variables_are_not(
    backend: BigQueryBackend, workspace: Path
) -> None:
    tool = SQLTool(workspace, backend=backend)
    named = await run(tool, "SELECT * FROM rx_claims WHERE ndc_drug_nm = @drug_0")
    assert named["is_error"] is True
    assert "Query parameter 'drug_0' not found" in str(named["content"])
    assert "placeholders (@drug_0), and this tool binds no values" in str(named["content"])
    # @@dataset_id is BigQuery's own variable: no hint about it beside another error
    other = await run(tool, "SELECT @@dataset_id, nope FROM rx_claimz")
    assert other["is_error"] is True
    assert "placeholders" not in str(other["content"])


async def test_a_timeout_cancels_the_job(
    backend: BigQueryBackend, bigquery_server: BigQueryServer, workspace: Path
) -> None:
    bigquery_server.hold_jobs = True  # jobs run until cancelled
    tool = SQLTool(workspace, backend=backend, timeout=0.5)
    result = await run(tool, "SELECT count(*) AS n FROM rx_claims")
    assert result["is_error"] is True
    assert "stopped after 0.5 s" in str(result["content"])
    cancels = [p for p in bigquery_server.paths("POST") if p.endswith("/cancel")]
    (job_id,) = bigquery_server.jobs
    assert cancels == [f"/bigquery/v2/projects/test-project/jobs/{job_id}/cancel"]
    assert bigquery_server.jobs[job_id].error is not None
    assert os.listdir(workspace) == []


async def test_schema_lists_the_datasets_tables(
    backend: BigQueryBackend, bigquery_server: BigQueryServer
) -> None:
    schema = await backend.schema()
    assert list(schema) == ["providers_bio", "rx_claims"]
    assert schema["providers_bio"] == [("npi_number", "INTEGER"), ("specialty", "STRING")]
    whole_project = BigQueryBackend("test-project", api_endpoint=bigquery_server.base_url)
    try:
        assert list(await whole_project.schema()) == ["claims.providers_bio", "claims.rx_claims"]
    finally:
        await whole_project.aclose()


def test_urls_configure_the_backend() -> None:
    backend = connect(
        "bigquery://my-project/claims?maximum_bytes_billed=1000000000&location=EU"
        "&api_endpoint=http://127.0.0.1:9050"
    )
    assert isinstance(backend, BigQueryBackend)
    assert (backend.project, backend.dataset, backend.location) == ("my-project", "claims", "EU")
    assert backend.maximum_bytes_billed == 10**9
    assert backend.api_endpoint == "http://127.0.0.1:9050"
    assert backend.dialect == "bigquery"
    with pytest.raises(ValueError, match="names no project"):
        connect("bigquery:///claims")
    with pytest.raises(ValueError, match="Unknown BigQuery URL parameter"):
        connect("bigquery://p/d?max_bytes=5")
    with pytest.raises(ValueError, match="whole number of bytes"):
        connect("bigquery://p/d?maximum_bytes_billed=1GB")


async def test_a_missing_key_file_is_named_not_taken_for_no_credentials(
    workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GOOGLE_APPLICATION_CREDENTIALS naming a missing file was reported as 'No Google Cloud
    credentials were found ... set GOOGLE_APPLICATION_CREDENTIALS', which it was."""
    missing = tmp_path / "key.json"
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(missing))
    backend = BigQueryBackend("test-project", "claims")
    try:
        with pytest.raises(SQLError) as failed:
            await backend.query("SELECT 1", str(workspace / "x.csv"))
    finally:
        await backend.aclose()
    assert str(failed.value).startswith("The Google Cloud credentials could not be loaded")
    assert str(missing) in str(failed.value)


async def test_an_unreachable_endpoint_is_named_not_taken_for_a_slow_query(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client retried the connection for the whole timeout (10 minutes by default):
    the schema failed after 70 s with "did not finish the query in time ()", a query with
    "Make it cheaper"."""
    import loopwright.sql.bigquery as bigquery_module
    from local_servers import free_port

    monkeypatch.setattr(bigquery_module, "API_RETRY_S", 1.0)
    endpoint = f"http://127.0.0.1:{free_port()}"
    backend = BigQueryBackend("test-project", "claims", api_endpoint=endpoint)
    expected = f"Could not reach BigQuery at {endpoint} (Connection refused, still after retries)"
    with pytest.raises(SQLError) as raised:
        await backend.schema()
    assert str(raised.value).startswith(expected)
    assert "api_endpoint" in str(raised.value)
    tool = SQLTool(tmp_path, backend, timeout=30)
    result = await tool.execute({"sql": "SELECT 1 AS x", "dataset_name": "x", "description": ""})
    assert result["is_error"]
    assert f"The query failed. {expected}" in str(result["content"])
    assert "cheaper" not in str(result["content"])
    await backend.aclose()


def test_errors_retried_to_the_end_keep_their_meaning() -> None:
    from google.api_core import exceptions as api_exceptions

    backend = BigQueryBackend("p", "d")
    busy = api_exceptions.ServiceUnavailable("backend overloaded")
    error = backend._error(api_exceptions.RetryError("Timeout of 15.0s exceeded", busy))
    assert type(error) is SQLError
    assert str(error) == "BigQuery: backend overloaded (after retrying)"
    refused = ConnectionRefusedError(111, "Connection refused")
    assert "Could not reach BigQuery at https://bigquery.googleapis.com" in str(
        backend._error(refused)
    )


async def test_sql_bigquery_accepts_but_sqlglot_cannot_parse_is_not_a_syntax_error(
    backend: BigQueryBackend,
) -> None:
    """What the backend answers when sqlglot could not parse the SQL: BigQuery's dry run is
    asked. Where it accepts the SQL, the refusal says so instead of "fix the syntax"."""
    unparsable = UnparsableQuery("The SQL could not be parsed", detail="Unexpected token")
    accepted = backend._syntax_error("SELECT count(*) AS n FROM rx_claims", unparsable)
    assert isinstance(accepted, UnparsableQuery)
    assert str(accepted).startswith(
        "BigQuery accepts this SQL, but the read-only check cannot parse it (Unexpected token)"
    )
    wrong = backend._syntax_error("SELECT * FROM rx_claims WHERE", unparsable)
    assert "BigQuery: Syntax error" in str(wrong)


async def test_datetime_json_and_geography_columns_are_plain_in_both_files(
    backend: BigQueryBackend, workspace: Path
) -> None:
    """The client marks DATETIME, JSON and GEOGRAPHY fields (at any depth) as Arrow extension
    types: Polars' CSV writer refused a result of more than a few rows ("datatype
    ext[google:sqlType:datetime] cannot be written to CSV"), and Polars read the Parquet
    file's ARRAY<DATETIME> column back as an extension type, not a list."""
    sql = """
    SELECT claim_id, DATETIME '2024-01-02 03:04:05' AS at, JSON '{"a": 1}' AS j,
           [DATETIME '2024-01-02 03:04:05'] AS ats,
           STRUCT(DATETIME '2024-01-02 03:04:05' AS at, [STRUCT(JSON '[1]' AS j)] AS js) AS s,
           IF(claim_id > 1500, INTERVAL 1 DAY, NULL) AS gap
    FROM rx_claims ORDER BY claim_id
    """
    result = await backend.query(sql, str(workspace / "d.csv"), str(workspace / "d.parquet"))
    assert result.row_count == 2000
    at = dt.datetime(2024, 1, 2, 3, 4, 5)
    assert result.preview[0] == (0, at, '{"a":1}', [at], {"at": at, "js": [{"j": "[1]"}]}, None)
    lines = (workspace / "d.csv").read_text().splitlines()
    assert lines[0] == "claim_id,at,j,ats,s,gap"
    assert lines[2000] == (
        '1999,2024-01-02T03:04:05.000000,"{""a"":1}","[""2024-01-02T03:04:05""]",'
        '"{""at"": ""2024-01-02T03:04:05"", ""js"": [{""j"": ""[1]""}]}",P1D'
    )
    parquet = pq.read_table(workspace / "d.parquet")
    assert parquet.schema.field("at").metadata is None
    assert parquet.schema.field("ats").metadata is None
    assert parquet.schema.field("s").type.field("at").metadata is None
    frame = pl.read_parquet(workspace / "d.parquet")
    assert frame.schema["at"] == pl.Datetime("us")
    assert frame.schema["j"] == pl.String
    assert frame.schema["ats"] == pl.List(pl.Datetime("us"))
    assert frame.schema["s"] == pl.Struct(
        {"at": pl.Datetime("us"), "js": pl.List(pl.Struct({"j": pl.String}))}
    )
    assert frame["at"].dt.year().unique().to_list() == [2024]
    # GEOGRAPHY, which the stand-in has no type for: WKT text, marked the same way
    from loopwright.sql.bigquery import _arrow_schema

    schema, _ = _arrow_schema([bigquery.SchemaField("g", "GEOGRAPHY")])
    assert schema.field("g").type == pa.string()
    assert schema.field("g").metadata is None


async def test_an_unknown_table_lists_the_tables_without_reading_each_one(
    backend: BigQueryBackend, bigquery_server: BigQueryServer, workspace: Path
) -> None:
    """The list of tables after an unknown table came from schema(), which reads every
    table's columns (a request per table) only to keep the names: in a dataset of hundreds
    of tables the answer to a typo waited for all of them."""
    tool = SQLTool(workspace, backend=backend)
    result = await run(tool, "SELECT * FROM rx_claimz")
    assert "Tables in the database: providers_bio, rx_claims." in str(result["content"])
    reads = [p for p in bigquery_server.paths("GET") if "/tables/" in p]
    assert reads == []  # the listing (.../tables) alone
    assert await backend.tables() == ["providers_bio", "rx_claims"]


async def test_schema_reads_the_tables_a_few_at_a_time(
    backend: BigQueryBackend, bigquery_server: BigQueryServer
) -> None:
    """schema() read the tables one after the other, a request each: a dataset of a few
    hundred tables (a year of date-sharded ones) outlasted its timeout."""
    import asyncio

    bigquery_server.setup(
        "".join(f"CREATE TABLE claims.events_2024010{i} AS SELECT 1 AS id;" for i in range(1, 7))
    )
    bigquery_server.table_gate.clear()  # every table read waits...
    reading = asyncio.ensure_future(backend.schema())
    for _ in range(500):  # ...until several are in flight at once (or 5 s have passed)
        if bigquery_server.most_table_reads >= 4:
            break
        await asyncio.sleep(0.01)
    bigquery_server.table_gate.set()
    schema = await reading
    assert bigquery_server.most_table_reads >= 4
    assert list(schema)[:2] == ["events_20240101", "events_20240102"]
    assert len(schema) == 8
    assert schema["rx_claims"][0] == ("claim_id", "INTEGER")


async def test_a_schema_that_takes_too_long_says_so(
    backend: BigQueryBackend, bigquery_server: BigQueryServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past its timeout, schema() said "BigQuery did not finish the query in time ()."."""
    import loopwright.sql.base as base_module
    import loopwright.sql.bigquery as bigquery_module

    monkeypatch.setattr(bigquery_module, "DEFAULT_TIMEOUT_S", 0.5)
    monkeypatch.setattr(base_module, "STOP_GRACE_S", 0.1)
    bigquery_server.table_gate.clear()  # the tables' reads never answer
    try:
        with pytest.raises(QueryTimeout) as raised:
            await backend.schema()
    finally:
        bigquery_server.table_gate.set()
    assert str(raised.value) == (
        "BigQuery did not list the tables and their columns within 0.5 s: check the network "
        "connection and try again."
    )


async def test_credentials_google_refuses_are_named_with_what_to_do(
    bigquery_server: BigQueryServer, workspace: Path
) -> None:
    """Expired application-default credentials were reported as the tuple google-auth
    raises: "BigQuery: ('invalid_grant: ...', {'error': 'invalid_grant', ...})"."""
    from google.auth.credentials import Credentials
    from google.auth.exceptions import RefreshError

    class Expired(Credentials):  # type: ignore[misc]
        def refresh(self, request: object) -> None:
            raise RefreshError(
                "invalid_grant: reauth related error (invalid_rapt)",
                {"error": "invalid_grant", "error_description": "reauth related error"},
                retryable=False,
            )

    backend = BigQueryBackend(
        "test-project",
        "claims",
        api_endpoint=bigquery_server.base_url,
        credentials=Expired(),
    )
    tool = SQLTool(workspace, backend=backend)
    try:
        result = await run(tool, "SELECT 1 AS x")
    finally:
        await backend.aclose()
    assert result["is_error"] is True
    assert str(result["content"]) == (
        "The query failed. Google refused the Google Cloud credentials (invalid_grant: reauth "
        "related error (invalid_rapt)): log in again with `gcloud auth application-default "
        "login`, or set GOOGLE_APPLICATION_CREDENTIALS to a valid service-account key file, "
        "then try again."
    )
    assert bigquery_server.requests == []


async def test_intervals_keep_hours_past_a_day(backend: BigQueryBackend, workspace: Path) -> None:
    """BigQuery keeps an interval's hours apart from its days ('0-0 0 36:0:0' is not
    '0-0 1 12:0:0': JUSTIFY_HOURS turns one into the other). The client parses intervals into
    dateutil's relativedelta, which folds hours past 24 into days: INTERVAL 36 HOUR was saved
    as P1DT43200S. Intervals are read as BigQuery's text and parsed as they are."""
    sql = """
    SELECT INTERVAL 36 HOUR AS h, INTERVAL -36 HOUR AS neg, INTERVAL 129600500 MILLISECOND AS f,
           MAKE_INTERVAL(1, 2, -3, 4, 5, 6) AS i, [INTERVAL 25 HOUR, INTERVAL 1 DAY] AS a,
           STRUCT(INTERVAL 48 HOUR AS i, [STRUCT(INTERVAL 30 HOUR AS j)] AS js) AS s,
           CAST(NULL AS INTERVAL) AS gap, DATETIME '2024-01-02 03:04:05' AS at
    """
    result = await backend.query(sql, str(workspace / "i.csv"), str(workspace / "i.parquet"))
    assert [kind for _, kind in result.columns[:4]] == ["INTERVAL"] * 4
    expected_row = (
        "PT129600S",
        "PT-129600S",
        "PT129600.5S",
        "P14M-3DT14706S",
        ["PT90000S", "P1D"],
        {"i": "PT172800S", "js": [{"j": "PT108000S"}]},
        None,
        dt.datetime(2024, 1, 2, 3, 4, 5),
    )
    assert result.preview == [expected_row]
    assert (workspace / "i.csv").read_text().splitlines()[1] == (
        'PT129600S,PT-129600S,PT129600.5S,P14M-3DT14706S,"[""PT90000S"", ""P1D""]",'
        '"{""i"": ""PT172800S"", ""js"": [{""j"": ""PT108000S""}]}",,2024-01-02T03:04:05.000000'
    )
    assert tuple(pq.read_table(workspace / "i.parquet").to_pylist()[0].values()) == expected_row


async def test_the_advice_to_cast_to_text_is_bigquery_sql(
    backend: BigQueryBackend, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A value the writers refuse came with DuckDB's cast, column::VARCHAR, which BigQuery
    cannot parse."""
    unholdable_intervals(monkeypatch)
    tool = SQLTool(workspace, backend=backend)
    refused = await run(tool, "SELECT INTERVAL 2 DAY AS gaps")
    assert refused["is_error"] is True
    content = str(refused["content"])
    assert content.startswith("The query ran, but its result could not be saved")
    assert "(e.g. CAST(column AS STRING))" in content
    assert "VARCHAR" not in content
