"""The ``SQL`` tool: run one read-only query and save its full result in the workspace.

The schema is the design guide's: ``{sql, dataset_name, description}``. The result is saved
as ``<dataset_name>.csv`` and ``<dataset_name>.parquet`` in the workspace (for the ``Python``
tool to analyse), and the model gets the row count, the column names and types and the
first rows, enough to decide the next step without reading the file.

The database is a :class:`~loopwright.sql.SQLBackend` or a URL (``duckdb:///...``,
``postgresql://...``, ``bigquery://...``). ``SQLTool(workspace, backend=...)`` is one tool;
``SQL(backend)`` is the :class:`~loopwright.tools.Toolset` form for an ``Agent``, whose
sessions then share one backend (one DuckDB connection, one PostgreSQL pool, one BigQuery
client) rather than opening one each.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from loopwright.tools.base import BaseTool, ToolResult, Toolset, error, ok

if TYPE_CHECKING:
    from loopwright.sql.base import Bill, QueryResult, SQLBackend

#: ``dataset_name``: a plain file stem. Letters, digits, ``_`` and ``-``; no leading ``-``.
DATASET_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")
MAX_DATASET_NAME = 100
#: The same rule in the tool's JSON schema, where a local model's grammar enforces it.
DATASET_NAME_PATTERN = f"^{DATASET_NAME.pattern}$"
#: Characters shown of one value in the preview.
MAX_CELL_CHARS = 80
#: Seconds the registry adds to the query timeout before it gives up on the call itself.
_REGISTRY_MARGIN_S = 15.0
#: Seconds the list of tables shown with an unknown-table error may take at most (and at
#: least, where the query left less of its timeout): a hint, not worth a long wait.
TABLE_LIST_TIMEOUT_S = 10.0
_TABLE_LIST_FLOOR_S = 1.0
#: The CSV paths calls are saving right now (in any tool of the process: sessions may share a
#: workspace), each with the call's token. Two calls in one turn with the same dataset_name
#: both said "Saved N rows to x.csv", each with its own N, while x.csv held one of the two.
_SAVING: dict[str, object] = {}


@dataclass(frozen=True, slots=True)
class MaskedPreview:
    """What a :data:`PreviewMask` hides of a result's first rows before the model sees them.

    ``rows``: the preview to show instead (masked cells replaced by markers, or empty when the
    rows are withheld); ``note``: what was hidden and why, told to the model after the columns;
    ``columns``: the names of the columns masked (in the call's metadata, for the audit log);
    ``withheld``: whether no row is shown at all. The result files keep every value."""

    rows: list[tuple[Any, ...]]
    note: str
    columns: tuple[str, ...] = ()
    withheld: bool = False


#: Called with the query, the result's ``(name, type)`` columns and its first rows, before
#: they are shown: a :class:`MaskedPreview` to show instead, or None to show them as they are.
#: Healthcare's :class:`~loopwright.healthcare.sqlcheck.IdentifierMask` hides direct patient
#: identifiers. A mask that raises withholds the rows (it was there to protect them). A mask
#: with an ``error`` method (:class:`MasksErrors`) also masks the database's error messages.
PreviewMask = Callable[
    [str, Sequence[tuple[str, str]], Sequence[tuple[Any, ...]]], MaskedPreview | None
]


@runtime_checkable
class MasksErrors(Protocol):
    """A :data:`PreviewMask` that also masks the database's error messages: ``error(sql,
    message)`` returns the message to show for a failed ``sql``."""

    def error(self, sql: str, message: str) -> str: ...


class SQLTool(BaseTool):
    """``SQL``: run a read-only query; save the result as CSV and Parquet; show a preview.

    ``backend`` is a :class:`~loopwright.sql.SQLBackend` (the caller closes it) or a
    database URL (the tool opens it on first use and closes it in :meth:`aclose`).
    ``max_rows`` caps the rows saved; ``timeout`` (seconds) covers the query and writing
    the files; ``preview_rows`` rows are shown; ``parquet=False`` writes the CSV only;
    ``mask`` (a :data:`PreviewMask`) hides values of the preview from the model.
    """

    #: a bad dataset_name gets the tool's own message (dataset_name_problem), not the
    #: validator's "must match pattern"
    checks_itself = ("dataset_name",)

    def __init__(
        self,
        workspace_dir: str | os.PathLike[str],
        backend: str | SQLBackend,
        *,
        max_rows: int | None = None,
        timeout: float | None = None,
        preview_rows: int | None = None,
        parquet: bool = True,
        mask: PreviewMask | None = None,
    ) -> None:
        from loopwright.sql import (
            DEFAULT_MAX_ROWS,
            DEFAULT_PREVIEW_ROWS,
            DEFAULT_TIMEOUT_S,
            SQLBackend,
            connect,
        )

        super().__init__(workspace_dir)
        self._workspace = os.path.abspath(self.workspace_dir)
        if isinstance(backend, SQLBackend):
            self.backend, self._owns_backend = backend, False
        elif isinstance(backend, str):
            self.backend, self._owns_backend = connect(backend), True
        else:
            raise TypeError(
                "backend must be a database URL (e.g. 'duckdb:///path/claims.duckdb') or an "
                f"SQLBackend, not {type(backend).__name__}"
            )
        self.max_rows = DEFAULT_MAX_ROWS if max_rows is None else max_rows
        self.query_timeout = DEFAULT_TIMEOUT_S if timeout is None else timeout
        self.preview_rows = DEFAULT_PREVIEW_ROWS if preview_rows is None else preview_rows
        self.parquet = parquet
        self.mask = mask
        check_limits(max_rows=self.max_rows, timeout=self.query_timeout)
        if self.preview_rows < 0:
            raise ValueError("preview_rows cannot be negative")
        # the registry's own limit: later than ours, so ours interrupts the query cleanly
        self.timeout = self.query_timeout + _REGISTRY_MARGIN_S

    @property
    def name(self) -> str:
        return "SQL"

    @property
    def schema(self) -> dict[str, Any]:
        files = "CSV and Parquet files" if self.parquet else "a CSV file"
        return {
            "name": "SQL",
            "description": (
                f"Run one read-only SQL query ({self.backend.name} dialect) and save the "
                f"full result in the workspace as {files} named after dataset_name. Returns "
                "the row count, the columns and their types, and the first rows. Only a "
                "single SELECT (WITH, UNION, VALUES) is allowed. Results over "
                f"{self.max_rows:,} rows are cut: aggregate in SQL (GROUP BY, LIMIT) rather "
                "than fetching raw rows."
            ),
            "input_schema": {
                "type": "object",
                "properties": {
                    "sql": {"type": "string", "description": "SQL query to execute"},
                    "dataset_name": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": MAX_DATASET_NAME,
                        "pattern": DATASET_NAME_PATTERN,
                        "description": (
                            "Name for the CSV file (without extension): letters, digits, _ "
                            "and -, e.g. humira_ca_top10"
                        ),
                    },
                    "description": {
                        "type": "string",
                        "description": "Brief description of what this query does",
                    },
                },
                "required": ["sql", "dataset_name", "description"],
                "additionalProperties": False,
            },
        }

    async def execute(self, input: dict[str, Any]) -> ToolResult:
        from loopwright.sql import (
            QueryRefused,
            QueryTimeout,
            ResultFileError,
            SQLError,
            UnknownTable,
        )

        sql = input.get("sql")
        if not isinstance(sql, str) or not sql.strip():
            return error("sql is empty; give the SELECT query to run.")
        name = input.get("dataset_name")
        problem = dataset_name_problem(name)
        if problem is not None:
            return error(problem)
        assert isinstance(name, str)
        # joined to the workspace, never resolved: the rename replaces a symlink of that
        # name instead of writing through it (the backend creates a missing workspace)
        workspace = self._workspace
        csv_path = os.path.join(workspace, f"{name}.csv")
        parquet_path = os.path.join(workspace, f"{name}.parquet") if self.parquet else None
        token = object()
        if _SAVING.setdefault(csv_path, token) is not token:  # one step: safe across threads
            return error(
                f"Another SQL call is saving {name}.csv right now (the same dataset_name twice "
                "at once): nothing was run; give each query its own dataset_name."
            )
        started = time.monotonic()
        # what the query's job billed (BigQuery), told as soon as it has ended: a failed call
        # carries it in its metadata like a result does, so it is counted all the same
        bills: list[Bill] = []
        try:
            result = await self.backend.query(
                sql,
                csv_path,
                parquet_path,
                max_rows=self.max_rows,
                timeout=self.query_timeout,
                preview_rows=self.preview_rows,
                on_bill=bills.append,
            )
        except UnknownTable as exc:
            left = self.query_timeout - (time.monotonic() - started)
            told = await self._unknown_table(str(exc), left)
            return self._failed(f"The query failed. {told}{self._earlier(name)}", name, bills)
        except (QueryRefused, QueryTimeout, ResultFileError) as exc:
            return self._failed(f"{exc}{self._earlier(name)}", name, bills)
        except SQLError as exc:
            left = self.query_timeout - (time.monotonic() - started)
            told = await self._explained(self._error_text(sql, str(exc)), sql, left)
            return self._failed(f"The query failed. {told}{self._earlier(name)}", name, bills)
        except OSError as exc:
            text = f"Could not write the result files in the workspace: {exc}."
            return self._failed(text, name, bills)
        except asyncio.CancelledError:
            from loopwright.sql.base import count_cancelled_bill

            count_cancelled_bill(self._billed(name, bills))
            raise
        finally:
            del _SAVING[csv_path]
        metadata = self._metadata(name, result)
        metadata["description"] = str(input.get("description") or "")
        masked = self._masked(sql, result) if self.mask is not None and result.preview else None
        if masked is not None:
            metadata["masked_columns"] = list(masked.columns)
            metadata["preview_withheld"] = masked.withheld
        warnings = self._warnings(sql, result, masked)
        if warnings:
            metadata["warnings"] = warnings
        return ok(self._render(name, result, masked, warnings), metadata=metadata)

    def _warnings(
        self, sql: str, result: QueryResult, masked: MaskedPreview | None = None
    ) -> list[str]:
        """What the result says the query likely did not mean, each with the fix (a list made
        by [brackets], inf or NaN from a division by zero, no rows where text is compared
        case-sensitively), read from what is at hand: the columns and the preview rows, as
        the mask lets the model see them (``masked``: a note tells no more than the rows)."""
        from loopwright.sql.hints import result_notes

        preview = result.preview if masked is None else masked.rows
        all_shown = len(preview) == result.row_count and not result.truncated
        return result_notes(
            sql,
            self.backend.dialect,
            result.columns,
            preview,
            row_count=result.row_count,
            all_shown=all_shown,
        )

    def _billed(self, name: str, bills: list[Bill]) -> dict[str, Any] | None:
        """The metadata of a failed call whose query's job was billed (``bills``), in the
        form of a result's (:func:`~loopwright.events.warehouse_bill` reads it), else None."""
        from loopwright.sql.base import bill_fields

        if not bills:
            return None
        return {"dataset_name": name, **bill_fields(bills, self.backend.name)}

    def _failed(self, text: str, name: str, bills: list[Bill]) -> ToolResult:
        """The error result ``text``, with what the query's job was billed, if it was: in the
        metadata, and in the text (the model would otherwise take a failed query as free)."""
        metadata = self._billed(name, bills)
        if metadata is None:
            return error(text)
        if metadata["bytes_billed"]:
            text += f"\nThis failed query was still billed {_bytes(metadata['bytes_billed'])}."
        return error(text, metadata=metadata)

    def _error_text(self, sql: str, message: str) -> str:
        """The database's error ``message`` as the mask lets the model see it (a conversion
        error quotes the value it failed on: a patient id, when the query cast one)."""
        if not isinstance(self.mask, MasksErrors):
            return message
        try:
            return self.mask.error(sql, message)
        except Exception as exc:  # fail closed, as for the preview
            return (
                f"The database's message was withheld: checking it failed ({type(exc).__name__})."
            )

    def _masked(self, sql: str, result: QueryResult) -> MaskedPreview | None:
        """The preview as :attr:`mask` lets the model see it; withheld when the mask fails."""
        assert self.mask is not None
        try:
            return self.mask(sql, result.columns, result.preview)
        except Exception as exc:  # fail closed: the mask was there to protect these rows
            return MaskedPreview(
                [],
                f"The preview rows were withheld: checking them before showing them failed "
                f"({type(exc).__name__}). The saved files hold the full result.",
                withheld=True,
            )

    async def _unknown_table(self, message: str, left: float) -> str:
        """An unknown-table error: the database's ``message``, the tables close to the name
        and the list of tables, read within what the query left of its timeout (at least a
        second, at most :data:`TABLE_LIST_TIMEOUT_S`); the list always took up to a minute,
        whatever the timeout, on a slow catalogue."""
        from loopwright.sql.hints import table_hint, tidy

        try:
            tables = await self.backend.tables(_hint_timeout(left))
        except Exception:  # the list is a hint; the database's own error is the answer
            return tidy(message)
        if not tables:
            return f"{tidy(message)}\nThe database has no tables."
        message = tidy(message, tables)  # without DuckDB's "Did you mean" its catalogue
        close = table_hint(message, tables, self.backend.dialect)
        return f"{message}{close}\nTables in the database: {', '.join(tables)}."

    async def _explained(self, message: str, sql: str, left: float) -> str:
        """The database's ``message`` for ``sql``, trimmed, with what to do about it: close
        column names from the tables the query reads (read within what the query left of
        its timeout, bounded like the table list), the fix for another dialect's syntax,
        and for parameter placeholders."""
        from loopwright.sql.hints import (
            alias_hint,
            column_hint,
            dialect_hint,
            missing_column,
            sources,
            text_number_hint,
            tidy,
        )
        from loopwright.sql.readonly import placeholder_hint

        dialect = self.backend.dialect
        message = tidy(message)
        hints = (
            alias_hint(message, sql, dialect)
            + dialect_hint(message, sql, dialect)
            + text_number_hint(message, sql, dialect)
        )
        read = sources(sql, dialect) if missing_column(message) is not None else None
        if read:
            try:
                columns = await self.backend.columns([s.table for s in read], _hint_timeout(left))
            except Exception:  # a hint only
                columns = {}
            hints = column_hint(message, sql, dialect, columns) + hints
        return f"{message}{hints}{placeholder_hint(sql, dialect)}"

    def _earlier(self, name: str) -> str:
        """For a failed call: that ``name``.csv in the workspace, if there is one, is an
        earlier query's result, left as it was (never this query's)."""
        if not os.path.exists(os.path.join(self._workspace, f"{name}.csv")):
            return ""
        return f"\n{name}.csv in the workspace is still an earlier query's result, not this one's."

    def _render(
        self,
        name: str,
        result: QueryResult,
        masked: MaskedPreview | None = None,
        warnings: Sequence[str] = (),
    ) -> str:
        files = f"{name}.csv" + (f" and {name}.parquet" if result.parquet_path else "")
        n_rows, n_cols = result.row_count, len(result.columns)
        lines = [f"Saved {_count(n_rows, 'row')} × {_count(n_cols, 'column')} to {files}."]
        if result.truncated:
            first = "first row was" if n_rows == 1 else f"first {n_rows:,} were"
            lines.append(
                f"The result was cut at the row cap: the query returned more than "
                f"{_count(self.max_rows, 'row')} and only the {first} saved. Aggregate "
                "in SQL (GROUP BY, LIMIT) to get a complete answer."
            )
        if result.bytes_scanned is not None:
            lines.append(f"Scanned {_bytes(result.bytes_scanned)}.")
        columns = ", ".join(f"{c} ({t})" if t else c for c, t in result.columns)
        lines.append(f"Columns: {columns}")
        preview = result.preview
        if masked is not None:
            lines.append(masked.note)
            preview = masked.rows
        if n_rows == 0:
            lines.append("The query returned no rows.")
        # before the rows, which end the text (a reader takes what follows them as rows)
        lines += [f"Note: {warning}" for warning in warnings]
        if n_rows and preview:
            shown = len(preview)
            whole = shown == n_rows and not result.truncated  # not all, when cut at the cap
            head = "All rows" if whole else "First row" if shown == 1 else f"First {shown} rows"
            lines += ["", f"{head}:", _table([c for c, _ in result.columns], preview)]
        return "\n".join(lines)

    def _metadata(self, name: str, result: QueryResult) -> dict[str, Any]:
        return {
            "dataset_name": name,
            "csv_path": result.csv_path,
            "parquet_path": result.parquet_path,
            "row_count": result.row_count,
            "truncated": result.truncated,
            "columns": [list(c) for c in result.columns],
            "bytes_scanned": result.bytes_scanned,
            # what the warehouse billed (BigQuery on-demand; None on DuckDB and PostgreSQL,
            # which bill nothing per query) and whether its result cache answered
            "bytes_billed": result.bytes_billed,
            "cache_hit": result.cache_hit,
            "database": self.backend.name,
            "elapsed_ms": round(result.elapsed_s * 1000, 1),
        }

    async def aclose(self) -> None:
        """Close the backend if this tool opened it (from a URL)."""
        if self._owns_backend:
            await self.backend.aclose()


class SQL(Toolset):
    """The ``SQL`` tool for each session of an ``Agent``, all sharing one backend.

    ``backend`` is a database URL (opened on first use) or an
    :class:`~loopwright.sql.SQLBackend`; the options are :class:`SQLTool`'s. The backend
    outlives sessions; close it with ``await sql.aclose()`` (or ``async with SQL(...)``)
    when the agent is done.
    """

    def __init__(
        self,
        backend: str | SQLBackend,
        *,
        max_rows: int | None = None,
        timeout: float | None = None,
        preview_rows: int | None = None,
        parquet: bool = True,
        mask: PreviewMask | None = None,
    ) -> None:
        from loopwright.sql import SQLBackend, connect

        if not isinstance(backend, str | SQLBackend):
            raise TypeError(
                "backend must be a database URL (e.g. 'duckdb:///path/claims.duckdb') or an "
                f"SQLBackend, not {type(backend).__name__}"
            )
        check_limits(max_rows=max_rows, timeout=timeout)  # now, not when a session starts
        self.backend: SQLBackend = connect(backend) if isinstance(backend, str) else backend
        self._owns_backend = isinstance(backend, str)
        self.options: dict[str, Any] = {
            "max_rows": max_rows,
            "timeout": timeout,
            "preview_rows": preview_rows,
            "parquet": parquet,
            "mask": mask,
        }

    def bind(self, workspace_dir: str, session_id: str | None = None) -> list[BaseTool]:
        return [SQLTool(workspace_dir, self.backend, **self.options)]

    async def aclose(self) -> None:
        """Close the shared backend if this toolset opened it (from a URL)."""
        if self._owns_backend:
            await self.backend.aclose()

    async def __aenter__(self) -> SQL:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _hint_timeout(left: float) -> float:
    """Seconds a hint's catalogue read may take: what the query left of its timeout, at
    least :data:`_TABLE_LIST_FLOOR_S` and at most :data:`TABLE_LIST_TIMEOUT_S`."""
    return min(TABLE_LIST_TIMEOUT_S, max(_TABLE_LIST_FLOOR_S, left))


def check_limits(
    *, max_rows: object = None, timeout: object = None, timeout_name: str = "timeout"
) -> None:
    """``ValueError`` for a row cap or a timeout the SQL tool cannot use (``None``: the
    default); ``timeout_name`` is what the caller calls its timeout."""
    if max_rows is not None and (
        isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1
    ):
        raise ValueError(f"max_rows must be a whole number of at least 1, got {max_rows!r}.")
    if timeout is not None and (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not math.isfinite(timeout)
        or timeout <= 0
    ):
        raise ValueError(f"{timeout_name} must be a positive number of seconds, got {timeout!r}.")


def dataset_name_problem(name: object) -> str | None:
    """Why ``name`` cannot be a dataset name (a plain file stem), or ``None`` if it can."""
    example = "e.g. humira_ca_top10"
    if not isinstance(name, str) or not name:
        return f"dataset_name is empty; give a short file name without extension, {example}."
    if len(name) > MAX_DATASET_NAME:
        return (
            f"dataset_name is {len(name)} characters long; use at most {MAX_DATASET_NAME}, "
            f"{example}."
        )
    if DATASET_NAME.fullmatch(name) is None:
        return (
            f"dataset_name {name!r} is not a plain file name: use only letters, digits, _ and "
            f"- (no dots, slashes, spaces or extension, not starting with -), {example}."
        )
    return None


def _table(names: list[str], rows: list[tuple[Any, ...]]) -> str:
    """A compact Markdown table of the preview rows."""
    lines = ["| " + " | ".join(_cell(n) for n in names) + " |"]
    lines.append("|" + "|".join("---" for _ in names) + "|")
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        text = "NULL"
    elif value == "NULL":  # the text NULL, told apart from a missing value
        text = '"NULL"'
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float):
        text = _float_text(value)
    elif isinstance(value, Decimal):
        text = format(value, "f")
    elif isinstance(value, int | str):
        text = str(value)
    elif isinstance(value, dt.datetime):
        text = value.isoformat(sep=" ")
    elif isinstance(value, dt.date | dt.time):
        text = value.isoformat()
    elif isinstance(value, bytes):
        text = "\\x" + value.hex()  # as the CSV writes it
    else:  # a list, struct or map: as the CSV's JSON
        from loopwright.sql.output import nested_json

        text = nested_json(value)
    text = text.replace("\r", " ").replace("\n", " ").replace("|", "\\|")
    if len(text) > MAX_CELL_CHARS:
        text = text[: MAX_CELL_CHARS - 1] + "…"
    return text


def _float_text(value: float) -> str:
    """A float as the CSV holds it (its shortest exact digits), but without an exponent
    where one is not needed (1e-06 to 1e16) and without float noise past 16 significant
    digits (``0.1 + 0.2`` shows as ``0.3``). Rounding to fewer digits made a sum of money
    ``4.45837887e+12`` in the preview while the CSV said ``4458378870000.0``."""
    if math.isnan(value):
        return "NaN"  # as the CSV writes it
    if math.isinf(value):
        return f"{value:g}"
    text = repr(value)
    mantissa = text.partition("e")[0]
    if len(mantissa.replace("-", "").replace(".", "").strip("0")) > 16:
        text = f"{value:.16g}"
    if "e" in text and 1e-6 <= abs(value) < 1e16:
        text = format(Decimal(text), "f")
    return text


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _bytes(n: int) -> str:
    size = float(n)
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{n:,} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n:,} bytes"


__all__ = [
    "SQL",
    "MaskedPreview",
    "MasksErrors",
    "PreviewMask",
    "SQLTool",
    "check_limits",
    "dataset_name_problem",
]
