"""The SQL tool as an agent uses it: the schema, the registry, the Toolset, the URLs."""

from __future__ import annotations

import csv as csvlib
import io
import os
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from loopwright import Agent, MemoryStore, ScriptedModel, call
from loopwright.sql import DuckDBBackend, PostgresBackend, ResultFileError, SQLBackend, connect
from loopwright.sql.base import Interrupter
from loopwright.sql.output import write_result
from loopwright.sql.readonly import placeholder_hint
from loopwright.tools import ToolRegistry
from loopwright.tools.sql import SQL, SQLTool, dataset_name_problem

from .conftest import unholdable_intervals

HUMIRA_CA = (
    "SELECT prescriber_npi_nbr, COUNT(*) AS rx_count FROM rx_claims "
    "WHERE ndc_drug_nm = 'HUMIRA' AND prescriber_npi_state_cd = 'CA' "
    "GROUP BY prescriber_npi_nbr ORDER BY rx_count DESC, prescriber_npi_nbr LIMIT 10"
)


def test_the_schema_is_the_guides(claims_db: Path, workspace: Path) -> None:
    tool = SQLTool(workspace, backend=f"duckdb://{claims_db}")
    schema = tool.schema
    assert tool.name == schema["name"] == "SQL"
    assert schema["input_schema"]["required"] == ["sql", "dataset_name", "description"]
    assert set(schema["input_schema"]["properties"]) == {"sql", "dataset_name", "description"}
    assert "DuckDB dialect" in schema["description"]


async def test_through_the_registry_missing_inputs_are_refused(
    claims_db: Path, workspace: Path
) -> None:
    registry = ToolRegistry(workspace)
    registry.register(SQLTool(workspace, backend=f"duckdb://{claims_db}"))
    try:
        missing = await registry.execute("SQL", {"sql": "SELECT 1", "dataset_name": "x"})
        done = await registry.execute(
            "SQL", {"sql": HUMIRA_CA, "dataset_name": "top", "description": "top prescribers"}
        )
    finally:
        await registry.aclose()
    assert missing["is_error"] is True
    assert "description" in str(missing["content"])
    assert done["is_error"] is False
    assert (workspace / "top.csv").exists()


async def test_an_agent_queries_then_answers_from_the_file(claims_db: Path, tmp_path: Path) -> None:
    """The guide's interaction, played by the scripted model: query, then answer."""

    def answer(request: object) -> object:
        results = [
            block
            for message in request.messages  # type: ignore[attr-defined]
            for block in getattr(message, "content", [])
            if getattr(block, "type", None) == "tool_result"
        ]
        if not results:
            return call(
                "SQL",
                sql=HUMIRA_CA,
                dataset_name="humira_ca_top10",
                description="Top HUMIRA prescribers in California",
            )
        return "The top prescribers are listed in humira_ca_top10.csv."

    sql = SQL(f"duckdb://{claims_db}", max_rows=1000)
    agent = Agent(
        ScriptedModel(answer),
        tools=[sql],
        store=MemoryStore(),
        workspace_root=str(tmp_path / "sessions"),
    )
    try:
        first, second = agent.new_session("one"), agent.new_session("two")
        events_one = [e async for e in agent.run("Top 10 HUMIRA prescribers in CA?", first)]
        events_two = [e async for e in agent.run("Top 10 HUMIRA prescribers in CA?", second)]
    finally:
        await agent.aclose()
        await sql.aclose()
    for session, events in ((first, events_one), (second, events_two)):
        results = [e for e in events if e.type == "tool_result"]
        assert [r.is_error for r in results] == [False]
        assert "Saved" in str(results[0].content)
        frame = pl.read_csv(session.workspace_dir / "humira_ca_top10.csv")
        assert frame.columns == ["prescriber_npi_nbr", "rx_count"]


async def test_the_toolset_binds_every_session_to_one_backend(
    claims_db: Path, tmp_path: Path
) -> None:
    async with SQL(f"duckdb://{claims_db}", max_rows=5, timeout=9) as sql:
        (one,) = sql.bind(str(tmp_path / "one"), "one")
        (two,) = sql.bind(str(tmp_path / "two"), "two")
        assert isinstance(one, SQLTool)
        assert isinstance(two, SQLTool)
        assert one.backend is two.backend is sql.backend
        assert (one.max_rows, one.query_timeout) == (5, 9)
        await one.aclose()  # a session closing does not close the shared backend
        result = await two.execute(
            {"sql": "SELECT count(*) AS n FROM rx_claims", "dataset_name": "n", "description": ""}
        )
        assert result["is_error"] is False
    assert pl.read_csv(tmp_path / "two" / "n.csv")["n"].to_list() == [2000]


async def test_a_tool_closes_only_a_backend_it_opened(claims_db: Path, workspace: Path) -> None:
    backend = DuckDBBackend(claims_db)
    borrowed = SQLTool(workspace, backend=backend)
    await borrowed.execute({"sql": "SELECT 1 AS x", "dataset_name": "a", "description": ""})
    await borrowed.aclose()
    result = await backend.query("SELECT 2 AS x", str(workspace / "b.csv"))  # still open
    assert result.row_count == 1
    await backend.aclose()
    owned = SQLTool(workspace, backend=f"duckdb://{claims_db}")
    await owned.execute({"sql": "SELECT 1 AS x", "dataset_name": "c", "description": ""})
    await owned.aclose()
    after = await owned.execute({"sql": "SELECT 1", "dataset_name": "d", "description": ""})
    assert after["is_error"] is True
    assert "closed" in str(after["content"])


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("humira_ca_top10", None),
        ("Q3-2024_summary", None),
        ("9lives", None),
        ("", "empty"),
        ("../x", "not a plain file name"),
        ("a.b", "not a plain file name"),
        ("-x", "not a plain file name"),
        ("x" * 101, "101 characters"),
        (42, "empty"),
    ],
)
def test_dataset_names(name: object, problem: str | None) -> None:
    found = dataset_name_problem(name)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found


def test_urls_pick_the_backend(tmp_path: Path) -> None:
    assert isinstance(connect("duckdb://:memory:"), DuckDBBackend)
    duck = connect(f"duckdb://{tmp_path}/claims.duckdb?threads=2")
    assert isinstance(duck, DuckDBBackend)
    assert duck.database == f"{tmp_path}/claims.duckdb"
    assert duck.config == {"threads": "2"}
    bare = connect(str(tmp_path / "claims.duckdb"))
    assert isinstance(bare, DuckDBBackend)
    for url in ("postgresql://me@127.0.0.1/db", "postgres://me@127.0.0.1/db"):
        backend = connect(url)
        assert isinstance(backend, PostgresBackend)
        assert isinstance(backend, SQLBackend)
    with pytest.raises(ValueError, match="Unknown database URL 'mysql://me:\\*\\*\\*@host/db'"):
        connect("mysql://me:secret@host/db")
    with pytest.raises(ValueError, match="A database URL is needed"):
        connect("")
    with pytest.raises(TypeError, match="database URL"):
        SQLTool(tmp_path, backend=42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_rows"):
        SQLTool(tmp_path, backend="duckdb://:memory:", max_rows=0)


async def test_a_result_the_files_cannot_hold_says_how_to_fix_it(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writers' refusal comes back as the tool's error, with the cast that fixes it, and
    the corrected query then succeeds. (Every type DuckDB makes is written now; without
    its converter, an interval is one Parquet cannot hold.)"""
    unholdable_intervals(monkeypatch)
    tool = SQLTool(workspace, backend="duckdb://:memory:")
    request = {"sql": "SELECT INTERVAL 2 DAY AS gaps", "dataset_name": "gaps", "description": ""}
    try:
        refused = await tool.execute(request)
        fixed = await tool.execute({**request, "sql": "SELECT (INTERVAL 2 DAY)::VARCHAR AS gaps"})
    finally:
        await tool.aclose()
    assert refused["is_error"] is True
    content = str(refused["content"])
    assert content.startswith("The query ran, but its result could not be saved")
    assert "month_day_nano_interval" in content
    assert "column::VARCHAR" in content
    assert "DuckDB" not in content  # the database did nothing wrong
    assert fixed["is_error"] is False
    assert pl.read_parquet(workspace / "gaps.parquet")["gaps"].to_list() == ["2 days"]
    assert sorted(os.listdir(workspace)) == ["gaps.csv", "gaps.parquet"]


# --- odd values: the files and the preview say what the query returned ---------------------


async def query(workspace: Path, sql: str, **options: int) -> tuple[dict[str, object], str]:
    """The tool's answer to ``sql`` on an in-memory DuckDB, and the CSV it saved."""
    tool = SQLTool(workspace, backend="duckdb://:memory:", **options)  # type: ignore[arg-type]
    try:
        result = dict(await tool.execute({"sql": sql, "dataset_name": "r", "description": ""}))
    finally:
        await tool.aclose()
    csv = workspace / "r.csv"
    return result, csv.read_text() if csv.exists() else ""


async def test_a_time_of_24_00_is_written_not_lost(workspace: Path) -> None:
    """Polars wrote DuckDB's TIME '24:00:00' as an empty field (a null) and the preview said
    00:00:00: the value was lost; then it was refused. It is written as DuckDB writes it now,
    in the CSV and the preview, and kept as it is in the Parquet file."""
    result, csv = await query(
        workspace, "SELECT CASE WHEN range = 3 THEN TIME '24:00:00' END AS closes FROM range(5)"
    )
    assert result["is_error"] is False, result["content"]
    assert csv == "closes\n\n\n\n24:00:00\n\n"
    table = str(result["content"]).split("All rows:\n")[1].splitlines()
    assert table[2:] == ["| NULL |", "| NULL |", "| NULL |", "| 24:00:00 |", "| NULL |"]
    closes = pq.read_table(workspace / "r.parquet")["closes"]
    assert closes.cast(pa.int64()).to_pylist() == [None, None, None, 86_400_000_000, None]
    result, csv = await query(workspace, "SELECT TIME '23:59:59.999999' AS t, TIME_NS '0:0' AS n")
    assert result["is_error"] is False
    assert csv.splitlines()[1] == "23:59:59.999999000,00:00:00.000000000"


async def test_nanoseconds_inside_lists_structs_and_maps_are_saved(workspace: Path) -> None:
    """Nested nanosecond timestamps and times made pyarrow refuse to give Python values, so
    the whole result failed; they are text in the CSV's JSON and the preview now, and keep
    their nanoseconds in the Parquet file."""
    stamp = "2024-01-01 00:00:00.123456789"
    sql = (
        f"SELECT [TIMESTAMP_NS '{stamp}', NULL] AS l, {{'t': TIMESTAMP_NS '{stamp}'}} AS s, "
        "MAP {'a': TIME_NS '12:00:00.000000001'} AS m"
    )
    result, csv = await query(workspace, sql)
    assert result["is_error"] is False, result["content"]
    assert csv.splitlines()[1] == (
        f'"[""{stamp}"", null]","{{""t"": ""{stamp}""}}","[[""a"", ""12:00:00.000000001""]]"'
    )
    assert f"| ['{stamp}', None] |" not in str(result["content"])  # JSON, as any nested value
    assert f'["{stamp}", null]' in str(result["content"])
    parquet = pq.read_table(workspace / "r.parquet")
    assert parquet.schema.field("l").type == pa.list_(pa.timestamp("ns"))
    nanoseconds = parquet["l"].combine_chunks().flatten().cast(pa.int64()).to_pylist()
    assert nanoseconds == [1_704_067_200_123_456_789, None]


def test_a_local_time_past_year_9999_does_not_break_the_preview(tmp_path: Path) -> None:
    """9999-12-31 23:00 UTC is 10000-01-01 in Tokyo: the files hold it, but Python's
    datetime cannot, and the preview raised OverflowError; it shows pyarrow's text now."""
    kind = pa.timestamp("us", tz="Asia/Tokyo")
    last = pa.array([253_402_297_200_000_000, None], kind)  # 9999-12-31 23:00 UTC
    table = pa.table(
        {"at": last, "list": pa.array([[253_402_297_200_000_000], None], pa.list_(kind))}
    )
    written = write_result(
        table.schema,
        iter(table.to_batches()),
        str(tmp_path / "r.csv"),
        str(tmp_path / "r.parquet"),
        max_rows=10,
        preview_rows=2,
        stop=Interrupter(),
    )
    assert written.preview == [
        ("10000-01-01 08:00:00.000000+0900", ["10000-01-01 08:00:00.000000+0900"]),
        (None, None),
    ]
    assert (
        (tmp_path / "r.csv")
        .read_text()
        .splitlines()[1]
        .startswith("+10000-01-01T08:00:00.000000+0900,")
    )
    assert pq.read_table(tmp_path / "r.parquet")["at"].cast(pa.int64()).to_pylist() == [
        253_402_297_200_000_000,
        None,
    ]


def test_a_result_without_columns_is_a_clear_error(tmp_path: Path) -> None:
    """PostgreSQL's SELECT FROM t returns rows of no columns: the files would say no rows."""
    with pytest.raises(ResultFileError, match="returned no columns"):
        write_result(
            pa.schema([]),
            iter([]),
            str(tmp_path / "r.csv"),
            str(tmp_path / "r.parquet"),
            max_rows=10,
            preview_rows=2,
            stop=Interrupter(),
        )
    assert os.listdir(tmp_path) == []


async def test_the_preview_says_what_the_files_hold(workspace: Path) -> None:
    """The text NULL is not a missing value; a FLOAT shows the digits the CSV has; a result
    cut at the cap never shows as all rows."""
    sql = "SELECT * FROM (VALUES ('NULL', 0.1::FLOAT), (NULL, NULL)) t(s, f)"
    result, csv = await query(workspace, sql)
    assert csv == "s,f\nNULL,0.1\n,\n"
    table = str(result["content"]).split("All rows:\n")[1]
    assert table.splitlines()[2:] == ['| "NULL" | 0.1 |', "| NULL | NULL |"]
    result, _ = await query(workspace, "SELECT NULL AS nothing")
    assert "Columns: nothing (NULL)" in str(result["content"])  # was ("NULL"), DuckDB's quoting
    result, _ = await query(workspace, "SELECT range AS i FROM range(4)", max_rows=3)
    content = str(result["content"])
    assert "cut at the row cap" in content
    assert "First 3 rows:" in content
    assert "All rows" not in content


async def test_the_preview_shows_floats_with_the_digits_the_csv_has(workspace: Path) -> None:
    """Floats were shown to 12 significant digits: a sum of money of 4,458,378,870,000 read
    4.45837887e+12 in the preview (the CSV: 4458378870000.0), and 12345678901234.56 lost
    its cents."""
    sql = (
        "SELECT * FROM (VALUES (1, 4458378870000.0::DOUBLE), (2, 12345678901234.56::DOUBLE), "
        "(3, (0.1 + 0.2)::DOUBLE), (4, 0.00001::DOUBLE), (5, 1e20::DOUBLE)) t(i, f)"
    )
    result, csv = await query(workspace, sql)
    table = str(result["content"]).split("All rows:\n")[1].splitlines()[2:]
    assert [row.split(" | ")[1].rstrip(" |") for row in table] == [
        "4458378870000.0",
        "12345678901234.56",
        "0.3",  # float noise past 16 digits is not shown
        "0.00001",
        "1e+20",
    ]
    assert csv.splitlines()[1:3] == ["1,4458378870000.0", "2,12345678901234.56"]


async def test_the_preview_keeps_sixteen_digits_and_writes_nan_as_the_csv_does(
    workspace: Path,
) -> None:
    """Floats needing 17 digits were cut to 15 (123456789012345.67 showed as
    123456789012346), not the 16 the preview promises; NaN showed as nan, the CSV NaN."""
    sql = "SELECT * FROM (VALUES (123456789012345.67::DOUBLE), ('nan'::DOUBLE)) t(f)"
    result, csv = await query(workspace, sql)
    table = str(result["content"]).split("All rows:\n")[1].splitlines()[2:]
    assert table == ["| 123456789012345.7 |", "| NaN |"]
    assert csv == "f\n123456789012345.67\nNaN\n"


async def test_a_cap_of_one_row_is_reported_in_the_singular(workspace: Path) -> None:
    result, _ = await query(workspace, "SELECT range AS i FROM range(4)", max_rows=1)
    content = str(result["content"])
    assert content.startswith("Saved 1 row × 1 column to r.csv")
    assert "returned more than 1 row and only the first row was saved" in content
    assert "First row:" in content


async def test_nested_decimals_are_json_numbers_and_the_preview_shows_the_csvs_text(
    workspace: Path,
) -> None:
    """Decimals inside lists and structs (quantile_cont of a money column) were JSON
    strings, ["2.33", "2.52"]; the preview showed nested binary as b'\\xaa' and top-level
    binary without the CSV's \\x; non-ASCII text in nested values was \\u-escaped."""
    sql = (
        "SELECT [1.25::DECIMAL(5, 2), 2.5] AS d, {'a': 1.5::DECIMAL(4, 2), "
        "'big': 12345678901234567890.12::DECIMAL(38, 2)} AS s, "
        "[blob '\\xAA'] AS lb, blob '\\xAA' AS b, ['café'] AS t"
    )
    result, csv = await query(workspace, sql)
    row = next(csvlib.reader(io.StringIO(csv.splitlines()[1])))
    assert row == [
        "[1.25, 2.5]",
        '{"a": 1.5, "big": "12345678901234567890.12"}',  # more digits than a float holds
        '["aa"]',
        "\\xaa",
        '["café"]',
    ]
    table = str(result["content"]).split("All rows:\n")[1].splitlines()[2]
    assert [cell.strip() for cell in table[1:-1].split(" | ")] == row


async def test_nested_floats_have_the_digits_of_a_float_column(workspace: Path) -> None:
    """A FLOAT column is written 1.1, but FLOATs inside lists, structs, maps and DuckDB's
    fixed-size arrays were written as doubles, 1.100000023841858, in the CSV and the
    preview. The Parquet file keeps them as they are (float32)."""
    sql = (
        "SELECT [1.1::FLOAT, 'nan'::FLOAT, NULL] AS l, {'a': 0.1::FLOAT, 'b': [0.7::FLOAT]} "
        "AS s, MAP {'k': 3.3::FLOAT} AS m, [1.1, 2.2]::FLOAT[2] AS arr, [1e-40::FLOAT] AS tiny, "
        "[0.1::DOUBLE, 1.100000023841858] AS d FROM range(3) WHERE range > 0"  # a slice
    )
    result, csv = await query(workspace, sql)
    row = next(csvlib.reader(io.StringIO(csv.splitlines()[1])))
    assert row == [
        "[1.1, NaN, null]",
        '{"a": 0.1, "b": [0.7]}',
        '[["k", 3.3]]',
        "[1.1, 2.2]",
        "[1e-40]",
        "[0.1, 1.100000023841858]",  # a double that is this number keeps its digits
    ]
    assert len(csv.splitlines()) == 3
    table = str(result["content"]).split("All rows:\n")[1].splitlines()[2]
    assert [cell.strip() for cell in table[1:-1].split(" | ")] == row
    stored = pq.read_table(workspace / "r.parquet")
    assert stored.schema.field("arr").type.value_type == pa.float32()
    assert stored.column("l").to_pylist()[0][0] == pytest.approx(1.1, rel=1e-7)


def test_nested_floats_of_a_sliced_batch_keep_their_rows(tmp_path: Path) -> None:
    """A slice's lists start part-way into their values: each row keeps its own."""
    arrays = pa.array([[1.1, 2.2], [3.3, None], None, [4.4, 5.5]], pa.list_(pa.float32(), 2))
    batch = pa.RecordBatch.from_arrays([arrays], names=["arr"]).slice(1)
    written = write_result(
        batch.schema,
        iter([batch]),
        str(tmp_path / "r.csv"),
        None,
        max_rows=10,
        preview_rows=10,
        stop=Interrupter(),
    )
    lines = (tmp_path / "r.csv").read_text().splitlines()
    assert lines == ["arr", '"[3.3, null]"', "", '"[4.4, 5.5]"']
    assert written.preview == [([3.3, None],), (None,), ([4.4, 5.5],)]


async def test_sql_with_placeholders_says_the_tool_binds_no_values(
    claims_db: Path, workspace: Path
) -> None:
    """A cohort's saved SQL, or a snippet from application code, pasted into the tool: the
    database's "Values were not provided" is explained, with what to write instead."""
    tool = SQLTool(workspace, backend=f"duckdb://{claims_db}")
    try:
        for sql, shown in [
            ("SELECT count(*) FROM rx_claims WHERE ndc_drug_nm = $drug_0", "($drug_0)"),
            ("SELECT count(*) FROM rx_claims WHERE ndc_drug_nm = ? AND 1 = $2", "(?, $2)"),
            ("SELECT count(*) FROM rx_claims WHERE ndc_drug_nm = :drug", "(:drug)"),
        ]:
            failed = await tool.execute({"sql": sql, "dataset_name": "n", "description": ""})
            assert failed["is_error"] is True
            content = str(failed["content"])
            assert f"parameter placeholders {shown}" in content, content
            assert "binds no values" in content
            assert "NDC_DRUG_NM = 'HUMIRA'" in content
        # the database's own message stays; a failure without placeholders gets no such hint
        other = await tool.execute(
            {"sql": "SELECT '$1', nope FROM rx_claims", "dataset_name": "n", "description": ""}
        )
        assert "nope" in str(other["content"])
        assert "placeholders" not in str(other["content"])
    finally:
        await tool.aclose()
    assert not (workspace / "n.csv").exists()


async def test_a_duckdb_slice_to_a_column_is_no_placeholder(workspace: Path) -> None:
    """``list[:n]`` slices up to column ``n`` in DuckDB; sqlglot reads ``:n`` as a named
    placeholder, so a query with one that failed for another reason (here a missing table)
    was told it holds parameter placeholders, and to write literals instead."""
    for sql in ("SELECT [1, 2, 3][:n] FROM nosuch", "SELECT s[:n] FROM nosuch"):
        assert placeholder_hint(sql, "duckdb") == "", sql
    assert ":n" in placeholder_hint("SELECT * FROM t WHERE a = :n", "duckdb")
    tool = SQLTool(workspace, backend="duckdb://:memory:")
    try:
        failed = await tool.execute(
            {"sql": "SELECT s[:n] FROM nosuch", "dataset_name": "x", "description": ""}
        )
    finally:
        await tool.aclose()
    assert failed["is_error"] is True
    assert "nosuch" in str(failed["content"])
    assert "placeholders" not in str(failed["content"])
