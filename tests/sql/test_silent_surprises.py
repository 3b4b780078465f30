"""Mistakes DuckDB runs without an error, and the note the SQL tool adds to the result.

Checked against DuckDB itself (the embedded default backend):

- ``SELECT [ndc_drug_nm]`` (SQL Server's quotes) makes a one-element list per row, in a
  ``VARCHAR[]`` column named ``list_value(ndc_drug_nm)``: noted, with the quotes to use;
- ``x / 0`` gives ``inf`` (``0 / 0`` ``NaN``), not an error nor NULL (``//`` and ``%`` by zero
  are errors, which already have their hint): noted when the preview rows hold one;
- ``/`` on integers is float division (``7 / 2`` is 3.5; ``//`` divides whole numbers): as
  arithmetic says, so nothing is noted;
- a text comparison is case-sensitive (``ndc_drug_nm = 'Humira'`` matches none of the
  ``HUMIRA`` rows): noted when the result has no rows;
- a text column compared with a number (``prescriber_npi_state_cd = 1``) is an error, not a
  silent mismatch (DuckDB casts the column to a number and fails on the first value that is
  not one; ``<`` is refused), but one whose message sends the model to the data: the hint says
  to write the number as text, or to cast the column to compare numbers.

And on BigQuery, a failed query whose job was billed says so in the text the model reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from loopwright.sql import BigQueryBackend
from loopwright.tools.sql import SQLTool

from .bigquery_server import BigQueryServer


@pytest.fixture
async def tool(claims_db: Path, workspace: Path) -> Any:
    sql = SQLTool(workspace, backend=f"duckdb://{claims_db}", preview_rows=5)
    yield sql
    await sql.aclose()


async def run(tool: SQLTool, sql: str, name: str = "result") -> dict[str, Any]:
    return dict(await tool.execute({"sql": sql, "dataset_name": name, "description": "test"}))


def warnings(result: dict[str, Any]) -> list[str]:
    assert result["is_error"] is False, result["content"]
    found = result["metadata"].get("warnings", [])
    for warning in found:  # the model reads each one too
        assert f"Note: {warning}" in str(result["content"])
    return list(found)


# --- [brackets] -------------------------------------------------------------------------------


async def test_brackets_that_made_a_list_are_noted(tool: SQLTool) -> None:
    result = await run(
        tool,
        "SELECT [ndc_drug_nm], COUNT(*) AS n FROM rx_claims GROUP BY 1 ORDER BY n DESC LIMIT 3",
    )
    assert result["metadata"]["columns"][0] == ["list_value(ndc_drug_nm)", "VARCHAR[]"]
    (note,) = warnings(result)
    assert note.startswith("[ndc_drug_nm] makes a list holding the column's value")
    assert "SQL Server's quotes" in note
    assert 'double quotes ("ndc_drug_nm")' in note
    fixed = await run(tool, 'SELECT "ndc_drug_nm", COUNT(*) AS n FROM rx_claims GROUP BY 1')
    assert fixed["metadata"]["columns"][0] == ["ndc_drug_nm", "VARCHAR"]
    assert warnings(fixed) == []


async def test_an_aliased_bracketed_name_is_noted(tool: SQLTool) -> None:
    result = await run(tool, "SELECT [ndc_drug_nm] AS drug, [paid_amt] FROM rx_claims LIMIT 2")
    (note,) = warnings(result)
    assert note.startswith("[ndc_drug_nm], [paid_amt] make a list")


async def test_a_bracketed_name_that_fails_says_what_to_write(tool: SQLTool) -> None:
    """In WHERE the list is compared with text, which fails with a cast to ``VARCHAR[]``."""
    result = await run(tool, "SELECT COUNT(*) AS n FROM rx_claims WHERE [ndc_drug_nm] = 'HUMIRA'")
    assert result["is_error"] is True
    assert "VARCHAR[]" in str(result["content"])
    assert "[Brackets] are SQL Server's quotes" in str(result["content"])


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT ARRAY[ndc_drug_nm] AS drugs FROM rx_claims LIMIT 2",  # a list, meant
        "SELECT [1, 2] AS pair, list_value(ndc_drug_nm)[1] AS d FROM rx_claims LIMIT 2",
        "SELECT ndc_drug_nm, '[claim_id]' AS label FROM rx_claims LIMIT 2",  # text
    ],
)
async def test_lists_meant_as_lists_are_not_noted(tool: SQLTool, sql: str) -> None:
    assert warnings(await run(tool, sql)) == []


# --- inf and NaN ------------------------------------------------------------------------------


async def test_a_division_by_zero_giving_inf_and_nan_is_noted(tool: SQLTool) -> None:
    """DuckDB's ``x / 0`` is inf, ``0 / 0`` NaN, and a ratio over no rows is too: no error."""
    result = await run(
        tool,
        "SELECT ndc_drug_nm, SUM(paid_amt) / COUNT(*) FILTER (WHERE paid_amt < 0) AS ratio, "
        "0 / 0 AS nothing, -1 / 0 AS low FROM rx_claims GROUP BY 1 ORDER BY 1 LIMIT 3",
    )
    assert "| ELIQUIS | inf | NaN | -inf |" in str(result["content"])
    (note,) = warnings(result)
    assert note.startswith("ratio holds inf; nothing holds NaN; low holds -inf: ")
    assert "x / 0 gives inf" in note
    assert "NULLIF(b, 0)" in note
    assert "first" not in note  # all 3 rows were read
    fixed = await run(
        tool,
        "SELECT ndc_drug_nm, SUM(paid_amt) / NULLIF(COUNT(*) FILTER (WHERE paid_amt < 0), 0) "
        "AS ratio FROM rx_claims GROUP BY 1 ORDER BY 1 LIMIT 3",
    )
    assert "| ELIQUIS | NULL |" in str(fixed["content"])
    assert warnings(fixed) == []


async def test_inf_in_a_longer_result_is_noted_for_the_rows_read(tool: SQLTool) -> None:
    """Only the preview's rows are read (a pass over a million rows would cost the fast
    path), and the note says so."""
    result = await run(tool, "SELECT paid_amt / (claim_id - claim_id) AS r FROM rx_claims")
    assert result["metadata"]["row_count"] == 2000
    (note,) = warnings(result)
    assert note.startswith("r holds inf and NaN in the first 5 rows: ")  # claim 0: 0 / 0


async def test_integer_division_is_float_division_and_not_noted(tool: SQLTool) -> None:
    result = await run(tool, "SELECT 7 / 2 AS half, 7 // 2 AS whole")
    assert "| 3.5 | 3 |" in str(result["content"])
    assert warnings(result) == []


# --- no rows: a case-sensitive text comparison --------------------------------------------------


async def test_no_rows_from_a_case_sensitive_comparison_is_noted(tool: SQLTool) -> None:
    result = await run(
        tool,
        "SELECT prescriber_npi_nbr, COUNT(*) AS n FROM rx_claims "
        "WHERE ndc_drug_nm = 'Humira' AND paid_amt > 0 GROUP BY 1",
    )
    assert result["metadata"]["row_count"] == 0
    (note,) = warnings(result)
    assert note.startswith("ndc_drug_nm = 'Humira' is case-sensitive.")
    assert "SELECT DISTINCT ndc_drug_nm" in note
    fix = note.rsplit("ignore case: ", 1)[1].rstrip(".")
    assert fix == "lower(ndc_drug_nm) = 'humira'"
    fixed = await run(tool, f"SELECT COUNT(*) AS n FROM rx_claims WHERE {fix}", "fixed")
    upper = await run(tool, "SELECT COUNT(*) AS n FROM rx_claims WHERE ndc_drug_nm = 'HUMIRA'")
    counts = [str(r["content"]).rsplit("\n", 1)[1] for r in (fixed, upper)]
    assert counts[0] == counts[1] != "| 0 |"  # the fix it gives finds the HUMIRA rows


async def test_no_rows_from_in_and_like_is_noted(tool: SQLTool) -> None:
    listed = await run(tool, "SELECT * FROM rx_claims WHERE ndc_drug_nm IN ('humira', 'x')")
    (note,) = warnings(listed)
    assert note.startswith("ndc_drug_nm = 'humira' is case-sensitive.")
    liked = await run(tool, "SELECT * FROM rx_claims WHERE ndc_drug_nm LIKE 'Hum%'")
    (note,) = warnings(liked)
    assert note.endswith("ignore case: lower(ndc_drug_nm) LIKE 'hum%'.")


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM rx_claims WHERE paid_amt < 0",  # no text compared
        "SELECT * FROM rx_claims WHERE service_date_dd = '2023-01-01'",  # no letters
        "SELECT * FROM rx_claims WHERE lower(ndc_drug_nm) = 'nothing'",  # ignores case
        "SELECT * FROM rx_claims WHERE ndc_drug_nm ILIKE 'nothing'",
    ],
)
async def test_no_rows_without_a_case_sensitive_comparison_is_not_noted(
    tool: SQLTool, sql: str
) -> None:
    result = await run(tool, sql)
    assert result["metadata"]["row_count"] == 0
    assert warnings(result) == []


async def test_rows_found_with_a_text_comparison_are_not_noted(tool: SQLTool) -> None:
    result = await run(tool, "SELECT COUNT(*) AS n FROM rx_claims WHERE ndc_drug_nm = 'HUMIRA'")
    assert warnings(result) == []


# --- text compared with a number: an error, with what to write ----------------------------------


@pytest.mark.parametrize(
    ("where", "fix"),
    [
        ("prescriber_npi_state_cd = 1", "prescriber_npi_state_cd = '1'"),
        ("prescriber_npi_state_cd IN (1, 2)", "prescriber_npi_state_cd IN ('1', '2')"),
        ("1 = r.prescriber_npi_state_cd", "'1' = r.prescriber_npi_state_cd"),
        ("r.prescriber_npi_state_cd > 5", "TRY_CAST(r.prescriber_npi_state_cd AS BIGINT) > 5"),
        ("prescriber_npi_state_cd <= 2.5", "TRY_CAST(prescriber_npi_state_cd AS DOUBLE) <= 2.5"),
    ],
)
async def test_text_compared_with_a_number_says_what_to_write(
    tool: SQLTool, where: str, fix: str
) -> None:
    sql = f"SELECT COUNT(*) AS n FROM rx_claims r WHERE {where}"
    result = await run(tool, sql)
    assert result["is_error"] is True
    text = str(result["content"])
    assert "compared with the number" in text
    assert text.rstrip().endswith(f": {fix}.")
    fixed = await run(tool, f"SELECT COUNT(*) AS n FROM rx_claims r WHERE {fix}")
    assert fixed["is_error"] is False  # what it says to write runs


async def test_a_cast_that_fails_outside_a_comparison_gets_no_such_hint(tool: SQLTool) -> None:
    result = await run(tool, "SELECT CAST(ndc_drug_nm AS INTEGER) AS n FROM rx_claims")
    assert result["is_error"] is True
    assert "Could not convert string" in str(result["content"])
    assert "compared with the number" not in str(result["content"])


# --- BigQuery: a failed query that was billed says so ------------------------------------------


@pytest.fixture
async def bigquery_backend(bigquery_server: BigQueryServer) -> Any:
    client = bigquery.Client(
        project="test-project",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options=ClientOptions(api_endpoint=bigquery_server.base_url),
    )
    backend = BigQueryBackend("test-project", "claims", client=client, page_rows=100)
    yield backend
    await backend.aclose()
    client.close()  # type: ignore[no-untyped-call]


async def test_a_billed_failed_query_says_it_was_billed(
    bigquery_backend: BigQueryBackend, bigquery_server: BigQueryServer, workspace: Path
) -> None:
    bigquery_server.hold_jobs = True  # runs until the tool's timeout cancels it
    result = await run(
        SQLTool(workspace, backend=bigquery_backend, timeout=0.5),
        "SELECT COUNT(*) AS n FROM rx_claims",
    )
    assert result["is_error"] is True
    assert result["metadata"]["bytes_billed"] == 10 * 1024 * 1024
    text = str(result["content"])
    assert "stopped after 0.5 s" in text
    assert text.endswith("\nThis failed query was still billed 10.0 MB.")


async def test_an_unbilled_failed_query_says_nothing_of_a_bill(
    bigquery_backend: BigQueryBackend, workspace: Path
) -> None:
    result = await run(
        SQLTool(workspace, backend=bigquery_backend),
        "SELECT CAST(ndc_drug_nm AS INT64) AS n FROM rx_claims",
    )
    assert result["is_error"] is True
    assert "billed" not in str(result["content"])
