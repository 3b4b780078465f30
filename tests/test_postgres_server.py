"""The PostgreSQL launcher the store and SQL tests share starts a real server."""

from __future__ import annotations

import psycopg

from postgres_server import PostgresServer, postgres_server  # noqa: F401


def test_a_fresh_database_accepts_connections(postgres_server: PostgresServer) -> None:  # noqa: F811
    dsn = postgres_server.create_database()
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT current_database(), inet_server_addr()::text").fetchone()
    assert row is not None
    assert row[0].startswith("test_")
    assert row[1] == "127.0.0.1/32"
