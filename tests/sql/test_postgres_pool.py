"""The PostgreSQL backend's pool when the server drops its idle connections (a restart, an
``idle_session_timeout``, a firewall, an administrator's ``pg_terminate_backend``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import psycopg
import pytest

from loopwright.sql import PostgresBackend, SQLError
from loopwright.tools.sql import SQLTool
from postgres_server import PostgresServer


@pytest.fixture
async def backend(postgres_server: PostgresServer) -> AsyncIterator[PostgresBackend]:
    dsn = postgres_server.create_database("pgpool")
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute("CREATE TABLE rx_claims (ndc_drug_nm text)")
        connection.execute("INSERT INTO rx_claims VALUES ('HUMIRA'), ('OZEMPIC')")
    backend = PostgresBackend(dsn, pool_size=1)
    yield backend
    await backend.aclose()


async def _drop_pooled_connection(
    backend: PostgresBackend, server: PostgresServer, workspace: Path
) -> None:
    """Run a query (its connection goes back to the pool), then have the server end that
    connection, as a restart does, and wait until it is gone."""
    result = await backend.query("SELECT pg_backend_pid() AS pid", workspace / "pid.csv")
    ((pid,),) = result.preview
    with psycopg.connect(server.dsn(), autocommit=True) as admin:
        row = admin.execute("SELECT pg_terminate_backend(%s, 30000)", (pid,)).fetchone()
    assert row == (True,)


async def _query(backend: PostgresBackend, workspace: Path) -> object:
    result = await backend.query(
        "SELECT ndc_drug_nm FROM rx_claims ORDER BY 1", workspace / "drugs.csv"
    )
    return result.preview


async def _schema(backend: PostgresBackend, workspace: Path) -> object:
    return await backend.schema()


async def _syntax(backend: PostgresBackend, workspace: Path) -> object:
    # sqlglot cannot parse it: the server's PREPARE is the first statement sent
    with pytest.raises(SQLError) as caught:
        await backend.query("SELECT FROM WHERE", workspace / "bad.csv")
    return str(caught.value).splitlines()[0]


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (_query, [("HUMIRA",), ("OZEMPIC",)]),
        (_schema, {"rx_claims": [("ndc_drug_nm", "text")]}),
        (_syntax, 'PostgreSQL: syntax error at or near "WHERE"'),
    ],
    ids=["query", "schema", "syntax check"],
)
async def test_a_connection_the_server_dropped_is_replaced_not_reported(
    backend: PostgresBackend,
    postgres_server: PostgresServer,
    workspace: Path,
    call: Callable[[PostgresBackend, Path], Awaitable[object]],
    expected: object,
) -> None:
    """After a server restart every pooled connection is dead: the next queries (as many as
    the pool held) failed with "terminating connection due to administrator command", and
    DefineCohort, which reads the schema first, failed the same way."""
    await _drop_pooled_connection(backend, postgres_server, workspace)
    assert await call(backend, workspace) == expected
    assert await call(backend, workspace) == expected  # and the new connection is pooled


async def test_the_sql_tool_answers_after_the_server_dropped_its_connection(
    backend: PostgresBackend, postgres_server: PostgresServer, workspace: Path
) -> None:
    tool = SQLTool(workspace, backend=backend)
    await _drop_pooled_connection(backend, postgres_server, workspace)
    result = await tool.execute(
        {"sql": "SELECT count(*) AS n FROM rx_claims", "dataset_name": "n", "description": "n"}
    )
    assert result["is_error"] is False, result["content"]
    assert "| 2 |" in str(result["content"])
