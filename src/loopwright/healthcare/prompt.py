"""The healthcare research agent's system prompt, with the schema read from the database.

The agent can only write correct SQL for tables it knows, so the prompt describes the real
database: tables, columns and types, row counts, what each column means (the column
comments), the date range of date columns and the values of categorical columns (drug
names, states, specialties...), all read from the database when the agent is made, never
copied by hand. Today's date is filled in on every model call, so a long-lived agent does
not go stale.

Two variants: :func:`system_prompt` is the design guide's prompt (schema, tools, research
workflow, guidelines) for capable models; :func:`compact_system_prompt` is a short one for
tiny local models, which follow a worked example far better than a description, so it
shows one real SQL call, computed on this database, for a question like the user's.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import sys
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from loopwright.messages import Message, TextBlock, ToolResultBlock, ToolUseBlock
from loopwright.models.base import Model, ModelEvent, ModelRequest, ModelResponse, prompt_chars
from loopwright.models.retry import close_stream

if TYPE_CHECKING:
    import duckdb

    from loopwright.sessions.session import Session
    from loopwright.sql.base import SQLBackend

#: Categorical columns with at most this many distinct values have their values listed.
MAX_LISTED_DISTINCT = 60
#: Columns with at most this many distinct values have them all listed; others, the
#: :data:`MOST_COMMON_VALUES` most frequent.
MAX_LISTED_VALUES = 40
MOST_COMMON_VALUES = 10
#: ``ModelRequest.metadata`` key: how many leading messages are worked examples (the local
#: model's :data:`loopwright.models.local.PINNED_MESSAGES`; local.py imports llama.cpp's
#: bindings lazily but is not needed to build a prompt, so the key is spelled out here).
PINNED_MESSAGES = "pinned_messages"
#: Values listed per column in the compact prompt.
COMPACT_LISTED_VALUES = 8
#: Patient quasi-identifiers (sex, zip code, birth year...) have their values listed only up
#: to this many: a code list like F, M is the spelling the model must match and names no
#: one; a longer list (zip codes, birth years) spells out the patients' own attributes.
MAX_LISTED_QUASI = 5
#: A column with a value longer than this is free text, not a code list: its values are
#: not listed (one row of a notes column could otherwise fill the prompt).
MAX_LISTED_VALUE_CHARS = 80
#: Column and table comments are cut to this many characters in the prompt.
MAX_DESCRIPTION_CHARS = 300
#: Tables measured (row count, values, date ranges) in a DuckDB file: the first ones as
#: listed; the rest are listed with their columns alone, as a catalogue of thousands of
#: tables would otherwise take minutes of scans to describe tables the prompt cannot hold.
MAX_MEASURED_TABLES = 100
#: Size of the prompt's list of tables, in characters (about 10,000 tokens; the generated
#: claims database takes 8,000): hundreds of tables, or one of hundreds of columns, would
#: otherwise fill the model's context before the first question. A table that does not fit
#: is listed with its column names alone, or, past that, named in a closing note.
MAX_SCHEMA_CHARS = 40_000
#: The same for the compact prompt of tiny models, whose context is a few thousand tokens.
MAX_COMPACT_SCHEMA_CHARS = 3_000
#: Columns listed per table; the others are counted (information_schema lists them).
MAX_LISTED_COLUMNS = 100

_TEXT_TYPES = ("VARCHAR", "TEXT", "STRING", "CHAR")
_DATE_TYPES = ("DATE", "TIMESTAMP")


@dataclass(frozen=True, slots=True)
class ColumnProfile:
    """One column as the prompt describes it."""

    name: str
    type: str
    description: str | None = None
    values: tuple[str, ...] = ()
    """The most frequent values of a categorical column, most frequent first."""
    distinct: int | None = None
    """How many distinct values it has (approximate), when it was measured."""
    range: tuple[str, str] | None = None
    """The earliest and latest value of a date column."""
    quoted: str | None = None
    """The name as the database's SQL must write it, where that is not the bare name
    (PostgreSQL folds unquoted names to lower case: ``"NDC_DRUG_NM"``)."""

    @property
    def in_sql(self) -> str:
        """The name as a query writes it."""
        return self.quoted or self.name


@dataclass(frozen=True, slots=True)
class TableProfile:
    """One table: its columns, size and meaning."""

    name: str
    columns: tuple[ColumnProfile, ...]
    rows: int | None = None
    description: str | None = None
    view: bool = False
    """A view (listed with its columns, not measured)."""
    quoted: str | None = None
    """The name as the database's SQL must write it, where that is not the bare name
    (``claims."RX_CLAIMS"``)."""

    @property
    def in_sql(self) -> str:
        """The name as a query writes it."""
        return self.quoted or self.name

    def column(self, name: str) -> ColumnProfile | None:
        """The column called ``name`` (case-insensitive)."""
        wanted = name.lower()
        return next((c for c in self.columns if c.name.lower() == wanted), None)


@dataclass(frozen=True, slots=True)
class Example:
    """A worked SQL call for small models: a question, its query, what it found, an answer."""

    question: str
    sql: str
    dataset_name: str
    description: str
    columns: tuple[str, ...] = ()
    rows: tuple[tuple[Any, ...], ...] = ()
    answer: str | None = None
    topic: str = ""
    """What the example is about (its drug): never shown for a question about the same."""
    size: int = 0
    """How many rows the question asks for (top 5, top 10)."""

    @property
    def arguments(self) -> dict[str, str]:
        """The ``SQL`` tool call's input."""
        return {"sql": self.sql, "dataset_name": self.dataset_name, "description": self.description}

    def result_text(self) -> str:
        """The result as the ``SQL`` tool reports it (row count, columns, the rows)."""
        n = len(self.rows)
        lines = [
            f"Saved {n} row{'' if n == 1 else 's'} × {len(self.columns)} columns to "
            f"{self.dataset_name}.csv and {self.dataset_name}.parquet.",
            f"Columns: {', '.join(self.columns)}",
            "",
            "All rows:",
            "| " + " | ".join(self.columns) + " |",
            "|" + "|".join("---" for _ in self.columns) + "|",
        ]
        lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in self.rows]
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class DatabaseProfile:
    """What the agent is told about the database: its engine and its tables."""

    engine: str
    """The database's name as users know it (``DuckDB``, ``PostgreSQL``, ``BigQuery``)."""
    tables: tuple[TableProfile, ...]
    examples: tuple[Example, ...] = ()
    """Worked SQL calls on this database, for small models (with results when known)."""
    notes: tuple[str, ...] = field(default_factory=tuple)

    def table(self, name: str) -> TableProfile | None:
        """The table called ``name`` (case-insensitive; ``schema.table`` matches ``table``)."""
        wanted = name.lower()
        exact = (t for t in self.tables if t.name.lower() == wanted)
        by_last_part = (t for t in self.tables if t.name.lower().rsplit(".", 1)[-1] == wanted)
        return next(exact, None) or next(by_last_part, None)

    def schema(self) -> dict[str, list[tuple[str, str]]]:
        """``{table: [(column, type)]}``, the shape ``check_sql`` and ``DefineCohort`` take."""
        return {t.name: [(c.name, c.type) for c in t.columns] for t in self.tables}


# --- reading the database ----------------------------------------------------------------


def profile_duckdb(
    connection: duckdb.DuckDBPyConnection, *, engine: str = "DuckDB"
) -> DatabaseProfile:
    """Read the tables and views of a DuckDB database: columns, comments, sizes, values and
    ranges.

    Every schema is read, as the SQL tool sees it: the default schema's tables by their
    name, those of other schemas as ``schema.table``. Categorical text columns (at most
    :data:`MAX_LISTED_DISTINCT` distinct values) get their most frequent values listed; date
    columns get their range. Queries are aggregates, one scan per table; views are listed
    with their columns only (running a view to measure it can cost any amount of work).
    """
    objects = connection.execute(
        "SELECT schema_name, table_name, comment, false FROM duckdb_tables() "
        "WHERE database_name = current_database() AND NOT internal AND NOT temporary "
        "UNION ALL "
        "SELECT schema_name, view_name, comment, true FROM duckdb_views() "
        "WHERE database_name = current_database() AND NOT internal AND NOT temporary "
        "ORDER BY schema_name <> current_schema(), schema_name, table_name"
    ).fetchall()
    columns = connection.execute(
        "SELECT schema_name, table_name, column_name, data_type, comment FROM duckdb_columns() "
        "WHERE database_name = current_database() AND NOT internal "
        "ORDER BY schema_name, table_name, column_index"
    ).fetchall()
    (default_schema,) = connection.execute("SELECT current_schema()").fetchone() or ("main",)
    # names that are keywords (GROUP, ORDER, LEFT...) are written quoted, as DuckDB's SQL
    # must write them; "unreserved" ones (YEAR, NAME) need no quotes
    keywords = frozenset(
        str(word).lower()
        for (word,) in connection.execute(
            "SELECT keyword_name FROM duckdb_keywords() WHERE keyword_category <> 'unreserved'"
        ).fetchall()
    )
    by_table: dict[tuple[str, str], list[tuple[str, str, str | None]]] = {}
    for schema, table, column, kind, comment in columns:
        by_table.setdefault((str(schema), str(table)), []).append(
            (str(column), str(kind), _text(comment))
        )
    profiles = []
    measured = 0
    for schema, table, comment, is_view in objects:
        key = (str(schema), str(table))
        name = key[1] if key[0] == default_schema else f"{key[0]}.{key[1]}"
        in_sql = _duckdb_name(key[1], keywords)
        if key[0] != default_schema:
            in_sql = f"{_duckdb_name(key[0], keywords)}.{in_sql}"
        found = by_table.get(key, [])
        if is_view or measured >= MAX_MEASURED_TABLES:
            described = tuple(ColumnProfile(c, k, d) for c, k, d in found)
            profiles.append(TableProfile(name, described, None, _text(comment), view=is_view))
        else:
            measured += 1
            reference = f"{_quote(key[0])}.{_quote(key[1])}"
            profiles.append(_profile_table(connection, name, reference, found, _text(comment)))
        profiles[-1] = _written_as(profiles[-1], in_sql, keywords)
    notes = []
    if any(not t.view and t.rows is None for t in profiles):
        notes.append(UNMEASURED_NOTE.format(count=MAX_MEASURED_TABLES))
    example = next((t.quoted for t in profiles if t.quoted is not None), None) or next(
        (c.quoted for t in profiles for c in t.columns if c.quoted is not None), None
    )
    if example is not None:
        notes.append(DUCKDB_QUOTED_NAMES_NOTE.format(example=example))
    profile = DatabaseProfile(engine, tuple(profiles))
    examples = tuple(_with_result(connection, e) for e in claims_examples(profile))
    return DatabaseProfile(engine, profile.tables, examples, tuple(notes))


#: Told when the tables past :data:`MAX_MEASURED_TABLES` are listed without sizes or values.
UNMEASURED_NOTE = (
    "Only the first {count} tables were measured (there are too many to measure them all): "
    "the others have no row counts or values listed; look those up with SQL when you need "
    "them."
)
#: Told when some names must be quoted in DuckDB's SQL: the model copies what it sees.
DUCKDB_QUOTED_NAMES_NOTE = (
    "Names shown in double quotes have spaces or other characters, or are SQL keywords: "
    "write them with their quotes, exactly as listed (e.g. {example})."
)


def _duckdb_name(name: str, keywords: frozenset[str]) -> str:
    """``name`` as DuckDB's SQL writes it: bare when it is a plain identifier and no
    keyword (DuckDB matches names case-insensitively, so ``Drug`` needs no quotes), quoted
    otherwise (``"Fill Date"``, ``"group"``, ``"Ärzt"``, ``"1st"``: unquoted, ``1st`` is
    read as the number 1 named ``st``)."""
    if _BARE_NAME.fullmatch(name) and name.lower() not in keywords:
        return name
    return _quote(name)


def _written_as(table: TableProfile, in_sql: str, keywords: frozenset[str]) -> TableProfile:
    """``table`` with its name and its columns' as DuckDB's SQL writes them (``quoted``
    set where that is not the bare name)."""
    columns = tuple(
        replace(c, quoted=quoted if quoted != c.name else None)
        for c in table.columns
        for quoted in (_duckdb_name(c.name, keywords),)
    )
    return replace(table, columns=columns, quoted=in_sql if in_sql != table.name else None)


def _profile_table(
    connection: duckdb.DuckDBPyConnection,
    table: str,
    quoted: str,
    columns: list[tuple[str, str, str | None]],
    description: str | None,
) -> TableProfile:
    """``table`` (``quoted``: its reference in SQL) measured: size, values, date ranges.

    The prompt goes to the model's provider: a direct patient identifier (id, name, date of
    birth) never has its values or range listed, a quasi-identifier only a short code list
    (:data:`MAX_LISTED_QUASI`); their names and types are listed as any column's."""
    from loopwright.healthcare.sqlcheck import classify_identifier

    # names spelt with spaces or in camel case too ("Date of Birth", PatientName)
    kinds = {c: classify_identifier(table, c) for c, _, _ in columns}
    texts = [c for c, k, _ in columns if _is_text(k)]
    dates = [c for c, k, _ in columns if _is_date(k) and kinds[c] not in ("direct", "quasi")]
    parts = ["COUNT(*)"]
    parts += [f"approx_count_distinct({_quote(c)})" for c in texts]
    parts += [f"MIN({_quote(c)})::VARCHAR, MAX({_quote(c)})::VARCHAR" for c in dates]
    row = connection.execute(f"SELECT {', '.join(parts)} FROM {quoted}").fetchone()
    assert row is not None
    rows = int(row[0])
    distinct = {c: int(v) for c, v in zip(texts, row[1 : 1 + len(texts)], strict=True)}
    offset = 1 + len(texts)
    ranges = {
        c: (str(row[offset + 2 * i]), str(row[offset + 2 * i + 1]))
        for i, c in enumerate(dates)
        if row[offset + 2 * i] is not None
    }
    profiles = []
    for column, kind, comment in columns:
        count = distinct.get(column)
        values: tuple[str, ...] = ()
        most = {"direct": 0, "quasi": MAX_LISTED_QUASI}.get(
            kinds[column] or "", MAX_LISTED_DISTINCT
        )
        if count is not None and 1 < count <= most:
            values = tuple(
                str(value)
                for (value,) in connection.execute(
                    f"SELECT {_quote(column)} FROM {quoted} WHERE {_quote(column)} IS NOT NULL "
                    f"GROUP BY 1 ORDER BY COUNT(*) DESC, 1 LIMIT {MAX_LISTED_VALUES + 1}"
                ).fetchall()
            )
            if len(values) <= MAX_LISTED_VALUES:  # all of them: the exact count is known
                count = len(values)
            else:
                values = values[:MOST_COMMON_VALUES]
            if any(len(value) > MAX_LISTED_VALUE_CHARS for value in values):
                values = ()  # free text, not a code list
        profiles.append(ColumnProfile(column, kind, comment, values, count, ranges.get(column)))
    return TableProfile(table, tuple(profiles), rows, description)


def profile_schema(
    schema: dict[str, list[tuple[str, str]]],
    *,
    engine: str,
    note: str | None = None,
    quote: Callable[[str], str] | None = None,
    quoted_note: str | None = None,
) -> DatabaseProfile:
    """A profile from a bare schema (a remote warehouse: no sizes or values are read, as
    every query there costs time or money).

    ``quote`` writes a name as the engine's SQL must (BigQuery: ``order`` in backticks);
    when some name needs it, ``quoted_note`` (formatted with an ``example``) says so."""

    def written(name: str) -> str | None:
        sql = name if quote is None else quote(name)
        return None if sql == name else sql

    tables = tuple(
        TableProfile(
            name,
            tuple(ColumnProfile(c, k, quoted=written(c)) for c, k in columns),
            # a dataset-qualified name (no default dataset) is quoted part by part
            quoted=written(name) if quote is None else _quoted_path(name, quote),
        )
        for name, columns in sorted(schema.items())
    )
    notes = [] if note is None else [note]
    example = next(
        (t.in_sql for t in tables if t.quoted is not None),
        next((c.quoted for t in tables for c in t.columns if c.quoted is not None), None),
    )
    if example is not None and quoted_note is not None:
        notes.append(quoted_note.format(example=example))
    profile = DatabaseProfile(engine, tables)
    return DatabaseProfile(engine, tables, claims_examples(profile), tuple(notes))


def _quoted_path(name: str, quote: Callable[[str], str]) -> str | None:
    """``dataset.table`` (or a bare ``table``) with each part quoted as needed; ``None``
    when no part needs it."""
    sql = ".".join(quote(part) for part in name.split(".", 1))
    return None if sql == name else sql


#: Told when some BigQuery names must be quoted: the model copies what it sees.
BACKTICKS_NOTE = (
    "Names shown in backticks are BigQuery reserved words or hold other characters: write "
    "them with their backticks, exactly as listed (e.g. {example})."
)
#: Told on every BigQuery database: a column name in double quotes is a string there, so
#: ``WHERE "NDC_DRUG_NM" = 'HUMIRA'`` compares two strings (no rows, no error, a billed scan).
DOUBLE_QUOTES_NOTE = (
    "In BigQuery SQL double quotes make strings, not names: write names as listed, and text "
    "in single quotes (NDC_DRUG_NM = 'HUMIRA')."
)


class DatabaseFileError(ValueError):
    """A DuckDB database file that cannot be opened: missing, not a file, not DuckDB's, or
    damaged."""


async def profile_backend(backend: SQLBackend) -> DatabaseProfile:
    """The profile of the SQL tool's database: read in full from a DuckDB file, the schema
    alone (``backend.schema()``) from PostgreSQL or BigQuery."""
    from loopwright.sql.duckdb import DuckDBBackend

    if isinstance(backend, DuckDBBackend) and not backend.in_memory:
        import asyncio

        def read() -> DatabaseProfile:
            from loopwright.sql.duckdb import file_problem

            problem = file_problem(backend.database)
            if problem is not None:
                raise DatabaseFileError(
                    f"The database file {backend.database} {problem}; check the path, "
                    "or leave the database out to use the generated claims data."
                )
            import duckdb

            try:
                connection = open_like(backend)
            except duckdb.Error as exc:
                raise DatabaseFileError(
                    f"Cannot open the DuckDB database {backend.database} read-only: {exc}"
                ) from None
            try:
                return profile_duckdb(connection)
            finally:
                connection.close()

        return await asyncio.to_thread(read)
    note = (
        f"Row counts and column values of this {backend.name} database are not listed "
        "(reading them costs queries): look them up with SQL when you need them."
    )
    postgres = sys.modules.get("loopwright.sql.postgres")
    if postgres is not None and isinstance(backend, postgres.PostgresBackend):
        return profile_postgres(await backend.catalog(), note=note)
    bigquery = sys.modules.get("loopwright.sql.bigquery")
    if bigquery is not None and isinstance(backend, bigquery.BigQueryBackend):
        return profile_schema(
            await backend.schema(),
            engine=backend.name,
            note=f"{note} {DOUBLE_QUOTES_NOTE}",
            quote=bigquery.quote_name,
            quoted_note=BACKTICKS_NOTE,
        )
    return profile_schema(await backend.schema(), engine=backend.name, note=note)


#: Told when names must be quoted: the model copies what it sees, quotes and all.
QUOTED_NAMES_NOTE = (
    "PostgreSQL folds unquoted names to lower case: write the names shown in double quotes "
    "with their quotes, exactly as listed (e.g. {example})."
)


def profile_postgres(catalog: Sequence[Any], *, note: str | None = None) -> DatabaseProfile:
    """A profile from a PostgreSQL catalog (:meth:`~loopwright.sql.PostgresBackend.catalog`):
    the tables, views and columns with their comments, and their names as PostgreSQL's SQL
    must write them (quoted where they have capitals, or are keywords). No sizes or values
    are read (every query on a shared server costs)."""

    def quoted(name: str, sql: str) -> str | None:
        return None if sql == name else sql

    tables = tuple(
        TableProfile(
            table.name,
            tuple(
                ColumnProfile(c.name, c.type, c.comment, quoted=quoted(c.name, c.sql))
                for c in table.columns
            ),
            description=table.comment,
            view=table.view,
            quoted=quoted(table.name, table.sql),
        )
        for table in sorted(catalog, key=lambda t: t.name)
    )
    notes = [] if note is None else [note]
    example = next(
        (t.in_sql for t in tables if t.quoted is not None),
        next((c.quoted for t in tables for c in t.columns if c.quoted is not None), None),
    )
    if example is not None:
        notes.append(QUOTED_NAMES_NOTE.format(example=example))
    profile = DatabaseProfile("PostgreSQL", tables)
    return DatabaseProfile("PostgreSQL", tables, claims_examples(profile), tuple(notes))


def open_like(backend: Any) -> duckdb.DuckDBPyConnection:
    """A read-only DuckDB connection to a :class:`~loopwright.sql.DuckDBBackend`'s file,
    with exactly the backend's settings: DuckDB shares one instance per file in a process
    and refuses a second connection with other settings."""
    import duckdb

    from loopwright.sql.duckdb import READ_ONLY_CONFIG

    config: dict[str, str | bool | int | float | list[str]] = {
        **backend.config,
        **READ_ONLY_CONFIG,
    }
    return duckdb.connect(os.fspath(backend.database), read_only=True, config=config)


# --- the worked example for small models -------------------------------------------------

_EXAMPLE_COLUMNS = ("PRESCRIBER_NPI_NBR", "NDC_DRUG_NM", "PRESCRIBER_NPI_STATE_CD")


def claims_examples(profile: DatabaseProfile, *, candidates: int = 4) -> tuple[Example, ...]:
    """Top-prescribers queries on the pharmacy claims, as worked examples for small models.

    Drugs and states are the most common ones in the data (read from the profile), each
    asked for as a top 5 and a top 10, so :class:`FewShotModel` can pick examples that are
    not about the user's drug and whose size matches the question. Empty when the database
    has no pharmacy claims table of the guide's shape.
    """
    from loopwright.healthcare.data import STATE_NAMES

    table = profile.table("RX_CLAIMS")
    if table is None:
        return ()
    found = [table.column(name) for name in _EXAMPLE_COLUMNS]
    if any(column is None for column in found):
        return ()
    npi, drug_col, state_col = (c for c in found if c is not None)
    templates = {
        5: "Who are the top {n} prescribers of {drug} in {state}?",
        10: "Find the top {n} prescribers of {drug} in {state}.",
    }
    examples = []
    for rank in range(min(candidates, len(drug_col.values), len(state_col.values))):
        drug, state = drug_col.values[rank], state_col.values[rank]
        slug = re.sub(r"[^a-z0-9]+", "_", f"{drug}_{state}".lower()).strip("_")
        for size, template in templates.items():
            sql = (
                f"SELECT {npi.in_sql}, COUNT(*) AS rx_count FROM {table.in_sql} "
                f"WHERE {drug_col.in_sql} = {_literal(drug)} AND {state_col.in_sql} = "
                f"{_literal(state)} GROUP BY {npi.in_sql} "
                f"ORDER BY rx_count DESC, {npi.in_sql} LIMIT {size}"  # ties in a fixed order
            )
            question = template.format(n=size, drug=drug, state=STATE_NAMES.get(state, state))
            description = f"Top {size} {drug} prescribers in {state}"
            examples.append(
                Example(question, sql, f"{slug}_top{size}", description, topic=drug, size=size)
            )
    return tuple(examples)


def _with_result(connection: duckdb.DuckDBPyConnection, example: Example) -> Example:
    """The example with the rows its query really returns here, and an answer from them."""
    cursor = connection.execute(example.sql)
    columns = tuple(str(d[0]) for d in cursor.description or ())
    rows = tuple(tuple(row) for row in cursor.fetchall())
    if not rows:
        return example
    top_npi, top_count = rows[0][0], int(rows[0][1])
    total = sum(int(row[1]) for row in rows)
    answer = (
        f"The top prescriber is NPI {top_npi}, who wrote {top_count:,} prescriptions. The top "
        f"{len(rows)} wrote {total:,} prescriptions in total; the list is in "
        f"{example.dataset_name}.csv.\n"
        "Would you like to see their specialties, or the trend over time?"
    )
    return replace(example, columns=columns, rows=rows, answer=answer)


# --- rendering ------------------------------------------------------------------------------


def render_schema(
    profile: DatabaseProfile, *, compact: bool = False, budget: int = MAX_SCHEMA_CHARS
) -> str:
    """The tables as the prompt lists them; ``compact`` drops descriptions and long lists.

    The list holds at most ``budget`` characters (:data:`MAX_SCHEMA_CHARS`), as a warehouse
    can have thousands of tables: a table whose full description does not fit is listed on
    one line, its columns and their types; one that does not fit even so is named in a
    closing note saying where its columns are. A table lists at most
    :data:`MAX_LISTED_COLUMNS` columns, and says how many more it has."""
    if not profile.tables:
        return "(none: this database has no tables or views)"

    def forms(table: TableProfile, index: int) -> Iterator[str]:
        yield _render_table(table, index, compact)
        names = [f"{c.in_sql} {_shown_type(c.type)}" for c in table.columns]
        yield f"{index}. {_table_line(table, names, _size(table))}"

    return _within_budget(profile.tables, forms, budget, "\n\n")


def _within_budget(
    tables: Sequence[TableProfile],
    forms: Callable[[TableProfile, int], Iterable[str]],
    budget: int,
    separator: str,
) -> str:
    """The tables listed in at most ``budget`` characters: each in the first of its
    ``forms`` (given the table and its number in the list; made as they are tried) that
    still fits, the tables none of whose forms fit named in a closing note."""
    listed: list[str] = []
    left_out: list[TableProfile] = []
    used = 0
    for table in tables:
        form = next((f for f in forms(table, len(listed) + 1) if used + len(f) <= budget), None)
        if form is None:
            left_out.append(table)
            continue
        listed.append(form)
        used += len(form) + len(separator)
    if left_out:
        listed.append(_left_out_note(left_out, budget // 10))
    return separator.join(listed)


def _render_table(table: TableProfile, index: int, compact: bool) -> str:
    size = _size(table)
    if compact:
        lines = [f"{table.in_sql}{size}:"]
    else:
        about = f": {_first_sentence(table.description)}" if table.description else ""
        lines = [f"{index}. {table.in_sql}{size}{about}"]
    for column in table.columns[:MAX_LISTED_COLUMNS]:
        lines.append(_render_column(column, compact))
    more = len(table.columns) - MAX_LISTED_COLUMNS
    if more > 0:
        lines.append(f"   - ... and {more:,} more columns (information_schema.columns lists them)")
    return "\n".join(lines)


def _size(table: TableProfile) -> str:
    size = f" ({table.rows:,} rows)" if table.rows is not None else ""
    return size + (" (view)" if table.view else "")


def _table_line(table: TableProfile, columns: Sequence[str], size: str = "") -> str:
    """A table on one line: its name and ``columns`` (the first :data:`MAX_LISTED_COLUMNS`
    of them), with how many more there are."""
    listed = ", ".join(columns[:MAX_LISTED_COLUMNS])
    more = len(columns) - MAX_LISTED_COLUMNS
    if more > 0:
        listed += f", ... ({more:,} more columns)"
    return f"{table.in_sql}{size}: {listed}"


def _left_out_note(tables: Sequence[TableProfile], chars: int) -> str:
    """The closing note naming the tables the list had no room for (as many names as fit in
    ``chars``)."""
    names: list[str] = []
    length = 0
    for table in tables:
        if names and length + len(table.in_sql) + 2 > chars:
            break
        names.append(table.in_sql)
        length += len(table.in_sql) + 2
    rest = len(tables) - len(names)
    shown = ", ".join(names) + (f" and {rest:,} more" if rest else "")
    count = len(tables)
    return (
        f"{count:,} more table{'' if count == 1 else 's'}, not described here to keep this "
        f"list short: {shown}. Look up a table's columns with SQL (information_schema.columns) "
        "before you query it."
    )


def _shown_type(kind: str) -> str:
    """A column type as listed: a long one (a STRUCT of many fields) cut short."""
    return kind if len(kind) <= MAX_DESCRIPTION_CHARS else kind[:MAX_DESCRIPTION_CHARS] + "…"


def _render_column(column: ColumnProfile, compact: bool) -> str:
    text = f"   - {column.in_sql} {_shown_type(column.type)}"
    if column.description and not compact:
        text += f": {_shortened(column.description)}"
    if column.range is not None:
        text += f" (from {column.range[0]} to {column.range[1]})"
    if column.values:
        limit = COMPACT_LISTED_VALUES if compact else MAX_LISTED_VALUES
        shown = ", ".join(column.values[:limit])
        count = column.distinct if column.distinct is not None else len(column.values)
        more = len(column.values) > limit or count > len(column.values)
        label = f"{count} values" if not more else f"about {count} values, most common"
        if more and count == len(column.values):
            label = f"{count} values, most common"
        text += f" [{label}: {shown}{', ...' if more else ''}]"
    return text


def _shortened(text: str) -> str:
    """A comment on one line, cut to :data:`MAX_DESCRIPTION_CHARS` characters."""
    text = " ".join(text.split())
    if len(text) <= MAX_DESCRIPTION_CHARS:
        return text
    return text[:MAX_DESCRIPTION_CHARS].rstrip() + "…"


def _first_sentence(text: str) -> str:
    """A table comment without the generator's trailer (kept to its first sentence)."""
    match = re.match(r"(.+?\.)(\s|$)", text.strip())
    return _shortened(match.group(1) if match else text)


TOOL_NOTES: dict[str, str] = {
    "SQL": (
        "run one read-only {dialect} SQL query; the full result is saved in the workspace "
        "as <dataset_name>.csv (and .parquet) and you see the row count, column types and "
        "the first rows"
    ),
    "DefineCohort": (
        "define a patient cohort from structured inclusion/exclusion criteria (drugs, "
        "conditions, states, specialties, dates, age, sex, minimum claims); values are "
        "bound as query parameters, the definition is saved as cohorts/<name>.json and the "
        "members as cohorts/<name>.csv (and .parquet); you get the patient and claim counts"
    ),
    "Python": (
        "run Python in the sandbox (polars, duckdb, matplotlib are installed; each call is "
        'a fresh interpreter, so read the results you saved: pl.read_parquet("<dataset>.'
        'parquet") keeps their column types, where pl.read_csv guesses them and turns codes '
        "with leading zeros into numbers)"
    ),
    "Bash": "run shell commands in the workspace (sandboxed, no network)",
    "Read": "read files from the workspace",
    "Write": "create files (scripts, notes, reports)",
    "Edit": "change files in place",
    "Glob": "find files by pattern",
    "Grep": "search file contents",
    "TodoWrite": "keep a task list for multi-step analyses",
}

WORKFLOW = """\
1. Understand the research question; for a multi-step analysis, plan it with TodoWrite.
2. Query the data with SQL: filter and aggregate in SQL (GROUP BY, LIMIT) rather than \
fetching raw rows, and join tables when that gives a richer answer. Use DefineCohort to \
define a patient population by criteria.
3. Analyse the saved results with Python (polars, reading the .parquet files) when SQL \
alone is not enough.
4. Draw a chart when it helps: matplotlib with the Agg backend, saved as a PNG file in the \
workspace (plt.savefig("name.png", dpi=120, bbox_inches="tight")).
5. Present the findings clearly, with the key numbers exactly as the results show them.
6. Suggest two or three follow-up analyses."""

#: The workflow when the session cannot run code or write files (the read-only mode).
WORKFLOW_SQL_ONLY = """\
1. Understand the research question.
2. Query the data with SQL: filter and aggregate in SQL (GROUP BY, LIMIT) rather than \
fetching raw rows, and join tables when that gives a richer answer. Use DefineCohort to \
define a patient population by criteria.
3. This session is read-only: it has no Python, Bash or file tools, so draw no charts and \
write no files; do the analysis in SQL (aggregates, window functions) and show results as \
Markdown tables.
4. Present the findings clearly, with the key numbers exactly as the results show them.
5. Suggest two or three follow-up analyses."""

GUIDELINES = """\
- Explain results in plain English for a healthcare analyst, not in SQL terms.
- Quote numbers exactly from the query results; never guess or round away a count.
- Save intermediate results as CSV files (the SQL tool saves each result; give datasets \
short descriptive names).
- List every file you created in your answer (CSV, PNG), with what it holds; show each \
chart as a Markdown image, ![what it shows](name.png), so the web UI draws it in place.
- Privacy: report aggregates. Never put patient-level identifiers (patient ids, or a \
patient's birth year and sex together) in answers or charts; counts of patients are fine. \
Provider NPIs are public business identifiers and may be named. The SQL preview may show \
patient identifiers as [masked #n] (the saved files keep them): do not print them with \
Python, Bash or Read either; count or group them in SQL.
- Match values as the database stores them (the listed values show the spelling, e.g. drug \
names in upper case and two-letter state codes).
- If a query fails, read the error, fix the query and try again."""


def system_prompt(
    profile: DatabaseProfile,
    *,
    today: dt.date | None = None,
    tools: Sequence[str] = tuple(TOOL_NOTES),
) -> str:
    """The research agent's system prompt (the design guide's, with the real schema)."""
    today = today or dt.date.today()
    dialect = profile.engine
    tool_lines = "\n".join(
        f"- {name}: {TOOL_NOTES[name].format(dialect=dialect)}"
        for name in tools
        if name in TOOL_NOTES
    )
    notes = "".join(f"\n{note}" for note in profile.notes)
    return f"""\
You are a healthcare data research engineer with direct, read-only access to a claims \
database ({profile.engine}). Analysts ask you questions in plain English; you answer them \
with data.

**Available datasets** (read from the database):

{render_schema(profile)}
{notes}
**Your tools:**
{tool_lines}

**Research workflow:**
{WORKFLOW if "Python" in tools else WORKFLOW_SQL_ONLY}

**Guidelines:**
{GUIDELINES}

Current date: {today.isoformat()}"""


def compact_system_prompt(profile: DatabaseProfile, *, today: dt.date | None = None) -> str:
    """A short prompt for tiny local models: the tables with their columns on one line each,
    and the date. Worked examples without results (a remote warehouse) are shown as text;
    those with results are best shown as earlier turns (:class:`FewShotModel`)."""
    today = today or dt.date.today()
    tables = (
        _within_budget(
            profile.tables,
            lambda table, _: (_table_line(table, [c.in_sql for c in table.columns]),),
            MAX_COMPACT_SCHEMA_CHARS,
            "\n",
        )
        or "(none)"
    )
    parts = [
        f"You answer questions about healthcare claims data with the SQL tool "
        f"({profile.engine}). Call the SQL tool once, then answer in one sentence with the "
        "numbers from its result.",
        f"Tables:\n{tables}",
    ]
    shown: dict[int, Example] = {}
    for example in profile.examples:
        if not example.rows:
            shown.setdefault(example.size, example)
    for example in shown.values():
        call = json.dumps({"name": "SQL", "arguments": example.arguments})
        parts.append(f"Example question: {example.question}\nExample tool call: {call}")
    parts.append(f"Current date: {today.isoformat()}")
    return "\n\n".join(parts)


class HealthcarePrompt:
    """The agent's system prompt as a callable: the schema is fixed when the agent is made,
    today's date is filled in on every model call."""

    def __init__(
        self,
        profile: DatabaseProfile,
        *,
        compact: bool = False,
        tools: Sequence[str] = tuple(TOOL_NOTES),
        today: Callable[[], dt.date] = dt.date.today,
    ) -> None:
        self.profile = profile
        self.compact = compact
        self.tools = tuple(tools)
        self.today = today

    def render(self) -> str:
        """The prompt as of today."""
        if self.compact:
            return compact_system_prompt(self.profile, today=self.today())
        return system_prompt(self.profile, today=self.today(), tools=self.tools)

    def __call__(self, session: Session) -> str:
        return self.render()


# --- few-shot turns for small models ---------------------------------------------------


class FewShotModel(Model):
    """A model shown worked examples as earlier turns of the conversation.

    Tiny models copy a demonstration they saw as a real exchange (request, tool call,
    result, answer) far more faithfully than one described in the system prompt. For each
    request, ``per_request`` examples are chosen: none about a subject (drug) the user's
    request names, each of a different size, the one whose size the request mentions last
    (nearest the conversation). They are added in front of the conversation; the session's
    history never holds them. ``stop`` adds stop sequences (a model that does not end its
    turns cleanly stops there; example answers put a newline after the answer proper).
    A request that offers no tools (the agent's summary of a long session) is passed on
    as it is.
    """

    def __init__(
        self,
        inner: Model,
        examples: Sequence[Example],
        *,
        per_request: int = 2,
        stop: Sequence[str] = (),
    ) -> None:
        self.inner = inner
        self.examples = tuple(examples)
        self.per_request = per_request
        self.stop = tuple(stop)
        self.name = inner.name
        self.pricing = inner.pricing
        # the agent keeps its context under the window; leave room for the examples
        longest = sorted((len(e.result_text()) + len(e.sql) for e in self.examples), reverse=True)
        shown = sum(longest[:per_request]) + 200 * per_request
        self.context_window = max(inner.context_window - shown // 3, inner.context_window // 2)

    def choose(self, request_text: str) -> list[Example]:
        """The examples shown for a request (see the class docs)."""
        chosen: list[Example] = []
        for example in self.examples:
            if len(chosen) == self.per_request:
                break
            if _mentions(request_text, example.topic):
                continue
            if all(example.size != c.size and example.topic != c.topic for c in chosen):
                chosen.append(example)
        chosen.sort(key=lambda e: re.search(rf"\b{e.size}\b", request_text) is not None)
        return chosen

    def example_messages(self, request_text: str) -> list[Message]:
        """The chosen examples as conversation turns."""
        messages: list[Message] = []
        for index, example in enumerate(self.choose(request_text)):
            call_id = f"example_{index + 1}"
            messages += [
                Message("user", [TextBlock(example.question)]),
                Message("assistant", [ToolUseBlock(call_id, "SQL", example.arguments)]),
                Message("user", [ToolResultBlock(call_id, example.result_text())]),
                Message("assistant", [TextBlock(example.answer or "Done.")]),
            ]
        return messages

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        """The inner model's turn with the examples in front. They count once, in the smaller
        ``context_window``: the response's ``prompt_tokens``, which the agent's token ratio
        learns from, leaves them out (the inner model's own count without its pinned
        messages, else the examples' share of its prompt taken out by characters)."""
        if not request.tools:
            # not a turn of the agent (which always offers its SQL tool) but another request:
            # the summary of a long session's earlier turns, many lines, no SQL examples
            events = self.inner.stream(request)
        else:
            text = next(
                (m.text for m in reversed(request.messages) if m.role == "user" and m.text.strip()),
                "",
            )
            examples = self.example_messages(text)
            request = replace(
                request,
                messages=[*examples, *request.messages],
                stop=[*request.stop, *self.stop],
                # a local model that must leave turns out to fit its window keeps these
                metadata={**request.metadata, PINNED_MESSAGES: len(examples)},
            )
            events = self.inner.stream(request)
        try:
            async for event in events:
                if isinstance(event, ModelResponse) and event.prompt_tokens is None:
                    event.prompt_tokens = _without_examples(request, event)
                yield event
        finally:
            await close_stream(events)

    async def aclose(self) -> None:
        await self.inner.aclose()


def _without_examples(shown: ModelRequest, response: ModelResponse) -> int | None:
    """The tokens of ``shown``'s prompt without its pinned worked examples, from what the
    model counted of the whole (their share by characters); ``None`` when there are none, or
    the model counted nothing or only echoed the agent's estimate (a server without usage)."""
    pinned = shown.metadata.get(PINNED_MESSAGES, 0)
    usage = response.usage
    counted = usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens
    if not pinned or counted in (0, shown.estimated_input_tokens):
        return None
    whole = prompt_chars(shown)
    examples = sum(message.char_size() for message in shown.messages[:pinned])
    return round(counted * (whole - examples) / whole)


def _mentions(text: str, topic: str) -> bool:
    """Whether ``text`` names ``topic`` (or its first word: "NURTEC ODT" as "Nurtec")."""
    if not topic:
        return False
    names = {topic, topic.split()[0]}
    return any(re.search(rf"\b{re.escape(n)}\b", text, re.IGNORECASE) for n in names)


# --- helpers -------------------------------------------------------------------------------


def _text(value: object) -> str | None:
    return str(value).strip() or None if value is not None else None


def _is_text(kind: str) -> bool:
    """Whether a column of this type holds text (a list of texts, ``VARCHAR[]``, does not:
    its values would be listed as Python writes lists, not as SQL does)."""
    return kind.upper().startswith(_TEXT_TYPES) and not kind.rstrip().endswith("]")


def _is_date(kind: str) -> bool:
    return kind.upper().startswith(_DATE_TYPES)


_BARE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


__all__ = [
    "ColumnProfile",
    "DatabaseFileError",
    "DatabaseProfile",
    "Example",
    "FewShotModel",
    "HealthcarePrompt",
    "TableProfile",
    "claims_examples",
    "compact_system_prompt",
    "open_like",
    "profile_backend",
    "profile_duckdb",
    "profile_postgres",
    "profile_schema",
    "render_schema",
    "system_prompt",
]
