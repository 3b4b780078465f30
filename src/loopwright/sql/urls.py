"""Database URLs: one string picks the backend and says where the data is.

- ``duckdb:///abs/path/claims.duckdb`` (the text after ``duckdb://`` is the path; a relative
  one is taken from the current directory), ``duckdb://:memory:``; a bare path ending in
  ``.duckdb``/``.ddb``/``.db`` means DuckDB too. Query parameters are DuckDB settings
  (``?memory_limit=2GB&threads=2``).
- ``postgresql://user:password@host:5432/dbname?sslmode=require`` (or ``postgres://``): any
  libpq connection URL.
- ``bigquery://PROJECT[/DATASET]?maximum_bytes_billed=N&location=US&api_endpoint=URL``: the
  dataset is the default one for unqualified table names, in ``PROJECT`` (which runs and
  pays for the queries) or, written ``OTHER_PROJECT.DATASET``, in another project (a public
  dataset); ``api_endpoint`` points the client at an emulator (which is then used without
  credentials).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, quote, unquote, urlsplit

if TYPE_CHECKING:
    from loopwright.sql.base import SQLBackend

_EXAMPLES = (
    "duckdb:///path/to/file.duckdb, postgresql://user@host/dbname or bigquery://project/dataset"
)
_DUCKDB_SUFFIXES = (".duckdb", ".ddb", ".db")


def connect(url: str) -> SQLBackend:
    """The backend for a database URL. Nothing is opened until the first query.

    Raises ``ValueError`` for a URL no backend understands, and ``ImportError`` (with the
    package to install) when the backend's driver is missing.
    """
    if not isinstance(url, str) or not url.strip():
        raise ValueError(f"A database URL is needed, for example {_EXAMPLES}.")
    url = url.strip()
    scheme, _, rest = url.partition("://")
    scheme = scheme.lower()
    if not rest and url.lower().endswith(_DUCKDB_SUFFIXES):
        scheme, rest = "duckdb", url
    if scheme == "duckdb":
        return _duckdb(rest)
    if scheme in ("postgresql", "postgres"):
        _require("psycopg", "psycopg[binary]")
        from loopwright.sql.postgres import PostgresBackend

        return PostgresBackend(url)
    if scheme == "bigquery":
        return _bigquery(url)
    raise ValueError(f"Unknown database URL {redact(url)!r}: use {_EXAMPLES}.")


def _duckdb(rest: str) -> SQLBackend:
    _require("duckdb", "duckdb")
    from loopwright.sql.duckdb import DuckDBBackend

    path, _, query = rest.partition("?")
    config: dict[str, str | bool | int | float] = dict(parse_qsl(query))
    path = unquote(path)
    if path in ("", ":memory:", "/:memory:"):
        return DuckDBBackend(":memory:", config=config)
    return DuckDBBackend(path, config=config)


def _bigquery(url: str) -> SQLBackend:
    _require("google.cloud.bigquery", "google-cloud-bigquery")
    from loopwright.sql.bigquery import BigQueryBackend

    parts = urlsplit(url)
    project = unquote(parts.netloc)
    dataset = unquote(parts.path.strip("/")) or None
    if not project:
        raise ValueError(
            f"The BigQuery URL {url!r} names no project: use bigquery://PROJECT[/DATASET]."
        )
    params = dict(parse_qsl(parts.query))
    unknown = set(params) - {"maximum_bytes_billed", "location", "api_endpoint"}
    if unknown:
        raise ValueError(
            f"Unknown BigQuery URL parameter(s) {', '.join(sorted(unknown))}: use "
            "maximum_bytes_billed, location or api_endpoint."
        )
    cap = params.get("maximum_bytes_billed")
    if cap is not None and not cap.isdigit():
        raise ValueError(f"maximum_bytes_billed must be a whole number of bytes, not {cap!r}.")
    return BigQueryBackend(
        project,
        dataset,
        location=params.get("location"),
        maximum_bytes_billed=int(cap) if cap is not None else None,
        api_endpoint=params.get("api_endpoint"),
    )


def _require(module: str, package: str) -> None:
    import importlib.util

    try:
        found = importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        found = False
    if not found:
        raise ImportError(
            f"This database needs the '{package}' package: install loopwright[sql] "
            f"(pip install 'loopwright[sql]')."
        )


def absolute(database: str) -> str:
    """``database``, a URL or the path of a DuckDB file, naming the same database from any
    directory: a relative DuckDB file (a bare path, or after ``duckdb://``) made absolute from
    the current directory, ``~`` expanded as DuckDB does, its settings kept; anything else as
    it is."""
    scheme, sep, rest = database.partition("://")
    if not sep:
        return str(Path(database).expanduser().resolve())
    path, mark, settings = rest.partition("?")
    if scheme.lower() != "duckdb" or path.startswith("/") or unquote(path) in ("", ":memory:"):
        return database
    whole = quote(str(Path(unquote(path)).expanduser().resolve()), safe="/")
    return f"{scheme}://{whole}{mark}{settings}"


def redact(text: str, url: str | None = None) -> str:
    """``text`` with the password of ``url`` starred out, for messages; ``url`` is ``text``
    itself by default (a URL or a key=value DSN). Another library's message that quotes the
    URL is redacted by passing the URL too."""
    source = text if url is None else url
    text = re.sub(r"(password\s*=\s*)('[^']*'|\S+)", r"\1***", text)
    try:
        password = urlsplit(source).password
    except ValueError:  # not a URL's shape ("[bad" opens an IPv6 address it never closes)
        found = re.search(r"://[^/@:]*:([^@/]*)@", source)
        password = found.group(1) if found else None
    if password:
        text = text.replace(f":{password}@", ":***@")
    return text
