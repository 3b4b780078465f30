"""The healthcare agent's system prompt on BigQuery writes names as BigQuery's SQL must:
reserved words and names of other characters in backticks, so a name copied from the prompt
into a query works."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from loopwright.healthcare import healthcare_agent
from loopwright.healthcare.prompt import profile_backend
from loopwright.models import ScriptedModel
from loopwright.sessions import MemoryStore
from loopwright.sql import BigQueryBackend
from sql.bigquery_server import BigQueryServer


def _odd_names(server: BigQueryServer) -> None:
    server.setup(
        "CREATE SCHEMA claims; CREATE TABLE claims.RX_CLAIMS (PRESCRIBER_NPI_NBR VARCHAR, "
        "NDC_DRUG_NM VARCHAR, PRESCRIBER_NPI_STATE_CD VARCHAR, SERVICE_DATE_DD DATE);"
    )
    server.load("claims", "order", pa.table({"group": [1, 2], "n": [3, 4]}))
    server.load("claims", "daily visits", pa.table({"visit-count": [5]}))


def test_the_prompt_quotes_bigquery_names_that_must_be_quoted() -> None:
    """Tables ``order`` and ``daily visits`` and columns ``group`` and ``visit-count`` were
    listed bare: copied into a query they are a syntax error or a keyword. They are listed
    in backticks, with a note saying to keep them, and plain names stay plain."""
    with BigQueryServer(project="test-project") as server:
        _odd_names(server)
        url = f"bigquery://test-project/claims?api_endpoint={server.base_url}"
        agent = healthcare_agent(ScriptedModel(["ok"]), database=url, store=MemoryStore())
        prompt = agent.system_prompt(agent.new_session())
    assert ". `order`" in prompt
    assert "- `group` INT" in prompt
    assert "- n INT" in prompt
    assert ". `daily visits`" in prompt
    assert "- `visit-count` INT" in prompt
    assert ". RX_CLAIMS" in prompt
    assert "- NDC_DRUG_NM STRING" in prompt
    assert "write them with their backticks" in prompt
    assert "In BigQuery SQL double quotes make strings, not names" in prompt


async def test_each_name_works_in_a_query_as_the_prompt_writes_it(tmp_path: Path) -> None:
    """With and without a default dataset, every table and column as profiled runs."""
    with BigQueryServer(project="test-project") as server:
        _odd_names(server)
        for dataset in ("claims", None):
            backend = BigQueryBackend("test-project", dataset, api_endpoint=server.base_url)
            try:
                profile = await profile_backend(backend)
                names = sorted(t.in_sql for t in profile.tables)
                prefix = "claims." if dataset is None else ""
                assert names == sorted(
                    f"{prefix}{n}" for n in ("RX_CLAIMS", "`daily visits`", "`order`")
                )
                for table in profile.tables:
                    columns = ", ".join(c.in_sql for c in table.columns)
                    result = await backend.query(
                        f"SELECT {columns} FROM {table.in_sql}", tmp_path / "out.csv"
                    )
                    assert result.row_count >= 0
            finally:
                await backend.aclose()


def test_a_database_with_plain_names_gets_no_quoting_note() -> None:
    with BigQueryServer(project="test-project") as server:
        server.setup(
            "CREATE SCHEMA claims; CREATE TABLE claims.RX_CLAIMS (PRESCRIBER_NPI_NBR VARCHAR);"
        )
        url = f"bigquery://test-project/claims?api_endpoint={server.base_url}"
        agent = healthcare_agent(ScriptedModel(["ok"]), database=url, store=MemoryStore())
        prompt = agent.system_prompt(agent.new_session())
    assert "backticks" not in prompt
    assert ". RX_CLAIMS" in prompt
    # a column name in double quotes is text in BigQuery: a wrong answer with no error
    assert "double quotes make strings, not names" in prompt
    assert "text in single quotes (NDC_DRUG_NM = 'HUMIRA')" in prompt
