"""Advice added to a failed query's error, so the model can fix the query in one step.

The database's own message stays first and whole (bar noise: DuckDB's list of every
overload of a function is cut to a few, and its "Did you mean" naming one of its own
catalogue tables is dropped); what follows it comes from the SQL and the tables' columns,
the same way on every backend whatever its wording:

- a table that does not exist: the database's tables that are close to the name (``rx_claim``
  → ``RX_CLAIMS``; on BigQuery, where table names are case-sensitive, ``rx_claims`` too);
- a column that does not exist: the close columns of the tables the query reads
  (``PRESCRIBER_NPI`` → ``PRESCRIBER_NPI_NBR``), or those tables' columns when none is close;
  a name written in double quotes that is really text (``NDC_DRUG_NM = "HUMIRA"``); a quoted
  name in the wrong case on PostgreSQL (``"PRESCRIBER_NPI_NBR"``);
- an alias the query does not define (``x.state``): the tables and aliases it does;
- another dialect's syntax (``TOP 10``, ``[brackets]``, backticks, BigQuery's
  ``DATE_SUB(..., INTERVAL ...)``, ``QUALIFY`` on PostgreSQL, ``::`` and ``ILIKE`` on
  BigQuery): what to write instead;
- another dialect's function (``DATEDIFF``, ``NVL``, ``GETDATE()``, ``strftime`` on PostgreSQL,
  ``TO_CHAR`` on BigQuery, PostgreSQL's ``date_trunc`` order on BigQuery, ...): this backend's
  equivalent, with an example; not when the database suggested one taking the same arguments;
- a division by zero: ``NULLIF`` (BigQuery: ``SAFE_DIVIDE``);
- a text column compared with a number (``PRESCRIBER_NPI_STATE_CD = 1``, which DuckDB casts to a
  number and fails on, and PostgreSQL and BigQuery refuse): the comparison rewritten, the
  number as text or the column cast.

A query that ran can still have done what it did not mean, without an error:
:func:`result_notes` says so from what the result already holds (its column types and its
preview rows; the SQL is parsed only for a result with no rows, or with an integer column on
PostgreSQL from SQL holding a ``/``): ``[brackets]`` that made a list (DuckDB's ``SELECT
[NDC_DRUG_NM]``), ``inf`` or ``NaN`` (DuckDB's ``x / 0``), an integer made by dividing integers
(PostgreSQL's ``COUNT(a) / COUNT(*)``, often 0), and no rows where a text comparison is
case-sensitive (``NDC_DRUG_NM = 'Humira'``).
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Mapping, Sequence, Set
from dataclasses import dataclass

import sqlglot
from sqlglot import exp

#: ``{table: [(column, type), ...]}``, as :meth:`SQLBackend.schema` gives it.
Columns = Mapping[str, Sequence[tuple[str, str]]]

#: Overloads of a function kept from DuckDB's "Candidate functions" list (it lists dozens
#: for an operator: 2 KB of ``"-"(x TINYINT, /) -> TINYINT``...).
MAX_CANDIDATES = 6
#: Columns listed when none is close to an unknown one.
MAX_LISTED_COLUMNS = 40
#: The database's message is cut past this many characters (a driver can say a lot).
MAX_MESSAGE_CHARS = 2_000

_BACKEND_NAMES = {"duckdb": "DuckDB", "postgres": "PostgreSQL", "bigquery": "BigQuery"}


def tidy(message: str, tables: Sequence[str] = ()) -> str:
    """``message`` with DuckDB's long lists of candidate functions cut, a "Did you mean"
    naming none of ``tables`` (DuckDB suggests its catalogue: ``rx_claim`` → ``pg_collation``)
    dropped when ``tables`` is given, and the whole cut to :data:`MAX_MESSAGE_CHARS`."""
    lines = message.splitlines()
    out: list[str] = []
    pending: list[str] = []  # the candidate functions being read
    for line in [*lines, ""]:
        if pending and line.startswith(("\t", "  ")):
            pending.append(line)
            continue
        if pending:
            out += _fewer_candidates(pending[1:], message)
            pending = []
        if line.strip() == "Candidate functions:":
            out.append(line)
            pending = [line]
            continue
        said = re.fullmatch(r'\s*Did you mean "([^"]+)"\?\s*', line)
        if said and tables and not _known(said.group(1), tables):
            continue
        out.append(line)
    text = "\n".join(out).rstrip()
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[:MAX_MESSAGE_CHARS].rstrip() + " ... (cut)"
    return text


#: The argument types of the call DuckDB could not match: ``'sum(VARCHAR)'``,
#: ``"+(DATE, STRING_LITERAL)"``.
_CALL = re.compile(r"argument types '[^(']*\(([^)']*)\)'" + r'|function call "[^(]*\(([^)"]*)\)"')


def _fewer_candidates(candidates: list[str], message: str) -> list[str]:
    """At most :data:`MAX_CANDIDATES` of DuckDB's candidate functions: those taking the
    call's first argument type first (``-(DATE, VARCHAR)``: the ``DATE`` ones, listed
    after twenty-eight integer ones)."""
    if len(candidates) <= MAX_CANDIDATES:
        return candidates
    call = _CALL.search(message)
    first = ""
    if call is not None:
        first = (call.group(1) or call.group(2) or "").split(",")[0].strip()
    if first:
        typed = re.compile(rf"[\s(]{re.escape(first)}\b")
        candidates = sorted(candidates, key=lambda line: typed.search(line) is None)
    left = len(candidates) - MAX_CANDIDATES
    return [*candidates[:MAX_CANDIDATES], f"\t... and {left} more"]


def _known(name: str, tables: Sequence[str]) -> bool:
    wanted = name.lower()
    return any(_plain(t).lower() == wanted or _last(t).lower() == wanted for t in tables)


def _plain(name: str) -> str:
    """A listed table name without the quotes a query would write it in."""
    return name.replace('"', "").replace("`", "")


def _last(name: str) -> str:
    return _plain(name).rsplit(".", 1)[-1]


# --- unknown tables ----------------------------------------------------------------------

_MISSING_TABLE = (
    re.compile(r"Table with name (\S+?) does not exist"),  # DuckDB
    re.compile(r'relation "([^"]+)" does not exist'),  # PostgreSQL
    re.compile(r"Not found: Table ([\w.:-]+)"),  # BigQuery: project:dataset.table
)


def missing_table(message: str) -> str | None:
    """The table an unknown-table ``message`` names (as the query wrote it, near enough)."""
    for pattern in _MISSING_TABLE:
        match = pattern.search(message)
        if match is not None:
            name = match.group(1).rstrip("!.")
            return name.split(":", 1)[-1]  # BigQuery's project:dataset.table
    return None


def table_hint(message: str, tables: Sequence[str], dialect: str) -> str:
    """ "Did you mean ...?" for the table an unknown-table ``message`` names, among the
    database's ``tables`` (named as a query writes them); "" when none is close."""
    missing = missing_table(message)
    if missing is None or not tables:
        return ""
    wanted = _last(missing)
    same = [t for t in tables if _last(t).lower() == wanted.lower() and _last(t) != wanted]
    if same and dialect == "bigquery":
        return (
            f"\nDid you mean {', '.join(same)}? BigQuery table names are case-sensitive: "
            "write the name exactly as listed."
        )
    if same and dialect == "postgres":
        return (
            f"\nDid you mean {', '.join(same)}? PostgreSQL keeps the case of a quoted name "
            '("RX_CLAIMS") and lower-cases an unquoted one: write the name as listed.'
        )
    close = same or _close(wanted, tables, key=_last)
    if not close:
        return ""
    return f"\nDid you mean {' or '.join(close)}?"


def _close(name: str, candidates: Sequence[str], key: object = None, n: int = 3) -> list[str]:
    """The ``candidates`` closest to ``name``, ignoring case (a prefix or a part of a
    ``_``-separated name counts: ``NPI`` → ``PRESCRIBER_NPI_NBR``)."""
    keyed = {(key(c) if callable(key) else c).lower(): c for c in candidates}
    wanted = name.lower()
    found = difflib.get_close_matches(wanted, list(keyed), n=n, cutoff=0.6)
    if not found and len(wanted) >= 3:
        found = [k for k in keyed if k.startswith(wanted) or wanted in k.split("_")][:n]
    return [keyed[k] for k in found]


# --- the query's tables ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Source:
    """A table the query reads: its name as written, and the alias it goes by."""

    table: str
    alias: str


def _parsed(sql: str, dialect: str) -> exp.Expr | None:
    """``sql``'s tree, or ``None`` when sqlglot cannot read it as one statement (a hint or a
    note only: it is left out then)."""
    try:
        return sqlglot.parse_one(sql, read=dialect)
    except Exception:
        return None


def sources(sql: str, dialect: str) -> list[Source] | None:
    """The tables ``sql`` reads (not its CTEs), each with its alias; ``None`` when it does
    not parse."""
    tree = _parsed(sql, dialect)
    if tree is None:
        return None
    ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    found: list[Source] = []
    for table in tree.find_all(exp.Table):
        if not table.name or (not table.db and table.name.lower() in ctes):
            continue
        if isinstance(table.this, exp.Func):  # a table function: UNNEST(...), range(...)
            continue
        if isinstance(table.parent, exp.UserDefinedFunction):  # BigQuery's temp function
            continue
        name = ".".join(part.name for part in table.parts)
        source = Source(name, table.alias_or_name)
        if source not in found:
            found.append(source)
    return found


def _only_tables(sql: str, dialect: str) -> bool:
    """Whether every row source of ``sql`` is a table: no CTE, subquery in FROM, table
    function or UNNEST, whose columns the schema cannot tell."""
    tree = _parsed(sql, dialect)
    if tree is None or tree.find(exp.CTE, exp.Unnest, exp.Lateral) is not None:
        return False
    for table in tree.find_all(exp.Table):
        if isinstance(table.this, exp.Func):
            return False
    return not any(isinstance(s.parent, exp.From | exp.Join) for s in tree.find_all(exp.Subquery))


def _select_aliases(sql: str, dialect: str) -> dict[str, str]:
    tree = _parsed(sql, dialect)
    if tree is None:
        return {}
    return {a.alias.lower(): a.alias for a in tree.find_all(exp.Alias) if a.alias}


#: Date parts a BigQuery habit writes bare (``DATE_TRUNC(d, MONTH)``).
_DATE_PARTS = frozenset(
    {"year", "quarter", "month", "week", "day", "hour", "minute", "second", "isoweek"}
)

#: What databases say when they already suggest names.
_SUGGESTED = ("Candidate bindings", "Perhaps you meant", "Did you mean")


def table_columns(name: str, columns: Columns) -> tuple[str, Sequence[tuple[str, str]]] | None:
    """The schema's entry for the table a query names ``name``: exact, then ignoring case,
    then by the last part (``claims.RX_CLAIMS``, ``project.claims.RX_CLAIMS``)."""
    if name in columns:
        return name, columns[name]
    for key, value in columns.items():
        if key.lower() == name.lower():
            return key, value
    last = [key for key in columns if _last(key).lower() == _last(name).lower()]
    if len(last) == 1:
        return last[0], columns[last[0]]
    return None


# --- unknown columns ---------------------------------------------------------------------

_MISSING_COLUMN = (
    # DuckDB (and the BigQuery stand-in)
    re.compile(r'Referenced column "(?P<name>[^"]+)" not found'),
    re.compile(r'Table "(?P<table>[^"]+)" does not have a column named "(?P<name>[^"]+)"'),
    re.compile(r'Values list "(?P<table>[^"]+)" does not have a column named "(?P<name>[^"]+)"'),
    # PostgreSQL
    re.compile(r'column "(?P<name>[^"]+)" does not exist'),
    re.compile(r"column (?P<table>[\w$]+)\.(?P<name>[\w$]+) does not exist"),
    re.compile(r'column (?P<table>"[^"]+")\.(?P<name>"[^"]+") does not exist'),
    # BigQuery
    re.compile(r"Unrecognized name: (?P<name>[^\s;]+)"),
    re.compile(r"Name (?P<name>\S+) not found inside (?P<table>[^\s;]+)"),
)


def missing_column(message: str) -> tuple[str | None, str] | None:
    """``(qualifier, name)`` of the column an unknown-column ``message`` names."""
    for pattern in _MISSING_COLUMN:
        match = pattern.search(message)
        if match is not None:
            table = match.groupdict().get("table")
            name = match.group("name").strip('"`')
            return (table.strip('"`') if table else None), name
    return None


def column_hint(message: str, sql: str, dialect: str, columns: Columns) -> str:
    """Advice for an unknown column that ``message`` names, from the columns of the tables
    the query reads (``columns``: at least those); "" when there is nothing to add."""
    missing = missing_column(message)
    read = sources(sql, dialect)
    if missing is None or not read:
        return ""
    if _foreign_call(message, sql, dialect) is not None:
        return ""  # DATEDIFF(day, ...): the function's hint says what to write
    qualifier, name = missing
    if qualifier is not None:
        read = [s for s in read if s.alias.lower() == qualifier.lower()] or read
    known: list[tuple[str, list[str]]] = []  # (table as written, its columns)
    for source in read:
        found = table_columns(source.table, columns)
        if found is not None:
            known.append((source.table, [c for c, _ in found[1]]))
    if not known:
        return ""
    everywhere = [c for _, names in known for c in names]
    same = [c for c in everywhere if c.lower() == name.lower()]
    if f'"{name}"' in sql and dialect != "bigquery" and not same:
        return (
            f'\n"{name}" is in double quotes, which name a column in {_BACKEND_NAMES[dialect]}'
            f" SQL: write text in single quotes ('{name}')."
        )
    if same and dialect == "postgres" and same[0] != name:
        return (
            f"\nThe column is {same[0]}: PostgreSQL keeps the case of a quoted name "
            f'("{name}") and lower-cases an unquoted one, so write it without quotes.'
        )
    if same:
        return ""  # it exists: the database's own message says what is wrong
    alias = _select_aliases(sql, dialect).get(name.lower())
    if alias is not None:
        return (
            f"\n{alias} is an alias from the SELECT list, which {_BACKEND_NAMES[dialect]} "
            "does not see where it is used (WHERE, HAVING or the same SELECT list): repeat "
            "the expression there, or compute it in a subquery."
        )
    if name.lower() in _DATE_PARTS and dialect != "bigquery":
        return (
            f"\n{name} is not a column: {_BACKEND_NAMES[dialect]} takes a date part as text "
            f"first, e.g. date_trunc('{name.lower()}', SERVICE_DATE_DD) or "
            f"date_part('{name.lower()}', SERVICE_DATE_DD)."
        )
    if any(said in message for said in _SUGGESTED):
        return ""  # the database already suggested names
    if qualifier is None and not _only_tables(sql, dialect):
        return ""  # it may read a CTE or subquery, whose columns the schema does not tell
    close = _close(name, everywhere)
    if close:
        where = {c: t for t, names in reversed(known) for c in names}
        named = [f"{c} ({where[c]})" if len(known) > 1 else c for c in close]
        return f"\nDid you mean {' or '.join(named)}?"
    parts = []
    for table, names in known:
        shown = ", ".join(names[:MAX_LISTED_COLUMNS])
        more = f", ... ({len(names) - MAX_LISTED_COLUMNS} more)"
        more = more if len(names) > MAX_LISTED_COLUMNS else ""
        parts.append(f"\nColumns of {table}: {shown}{more}.")
    return "".join(parts)


# --- aliases -----------------------------------------------------------------------------

_MISSING_ALIAS = (
    re.compile(r'missing FROM-clause entry for table "(?P<name>[^"]+)"'),  # PostgreSQL
    re.compile(r'Referenced table "(?P<name>[^"]+)" not found'),  # DuckDB
)


def alias_hint(message: str, sql: str, dialect: str) -> str:
    """For a qualifier the query never defined (``x.state``): the tables and aliases it
    does define."""
    match = next((m for p in _MISSING_ALIAS if (m := p.search(message))), None)
    read = sources(sql, dialect)
    if match is None or not read:
        return ""
    named = [s.table if s.alias == s.table else f"{s.table} AS {s.alias}" for s in read]
    return (
        f"\n{match.group('name')} is neither a table nor an alias in the query's FROM; "
        f"it reads {', '.join(named)}: qualify columns with one of those."
    )


# --- another dialect's syntax ------------------------------------------------------------

_COMMENTS_AND_STRINGS = re.compile(
    r"--[^\n]*|/\*.*?\*/|'(?:[^'\\]|''|\\.)*'", re.DOTALL
)  # fmt: skip
_TOP = re.compile(r"\bSELECT\s+(?:DISTINCT\s+)?TOP\s*\(?\s*(\d+)", re.IGNORECASE)
_BRACKETED = re.compile(r"(?:\bFROM|\bJOIN|\.)\s*\[\w[^\]]*\]|\[\w+\]\s*\.", re.IGNORECASE)
_DATE_SUB = re.compile(r"\bDATE_(?:SUB|ADD)\s*\(.{0,200}?\bINTERVAL\b", re.IGNORECASE | re.DOTALL)
_QUALIFY = re.compile(r"\bQUALIFY\b", re.IGNORECASE)
_ILIKE = re.compile(r"\bILIKE\b", re.IGNORECASE)
_DOUBLE_COLON = re.compile(r"::")
_EMPTY_PARENTHESES = re.compile(r"\bCURRENT_(?:DATE|TIMESTAMP)\s*\(\s*\)", re.IGNORECASE)


def dialect_hint(message: str, sql: str, dialect: str) -> str:
    """What to write instead of another SQL dialect's syntax in ``sql``, which failed with
    ``message`` ("" when nothing in it is recognised)."""
    text = _COMMENTS_AND_STRINGS.sub(" ", sql)
    name = _BACKEND_NAMES.get(dialect, dialect)
    lowered = message.lower()
    syntax = "syntax error" in lowered or "parse" in lowered
    hints = []
    top = _TOP.search(text)
    if top is not None:
        hints.append(
            f"TOP is SQL Server syntax: drop it and end the query with LIMIT {top.group(1)}."
        )
    # [NDC_DRUG_NM] = 'HUMIRA' is a list compared with text in DuckDB: "... VARCHAR[]"
    if _BRACKETED.search(text) or (_made_a_list(message) and _LIST_OF_A_NAME.search(text)):
        quote = (
            "backticks (`RX_CLAIMS`)" if dialect == "bigquery" else 'double quotes ("RX_CLAIMS")'
        )
        hints.append(f"[Brackets] are SQL Server's quotes: in {name} quote names with {quote}.")
    if "`" in text and dialect == "postgres":
        hints.append('PostgreSQL quotes names with double quotes ("name"), not backticks.')
    if (
        dialect in ("duckdb", "postgres")
        and _DATE_SUB.search(text)
        and (syntax or "date_sub" in lowered or "date_add" in lowered)
    ):
        interval = "INTERVAL 1 YEAR" if dialect == "duckdb" else "INTERVAL '1 year'"
        hints.append(
            f"DATE_SUB(..., INTERVAL ...) is BigQuery/MySQL syntax: in {name} subtract the "
            f"interval, e.g. CURRENT_DATE - {interval}."
        )
    if dialect == "postgres" and _QUALIFY.search(text) and syntax:
        hints.append(
            "PostgreSQL has no QUALIFY: compute the window function (ROW_NUMBER() OVER ...) "
            "in a subquery and filter on it outside: SELECT * FROM (SELECT ..., ROW_NUMBER() "
            "OVER (...) AS rn FROM ...) s WHERE rn = 1."
        )
    if dialect == "postgres" and syntax and _EMPTY_PARENTHESES.search(text):
        hints.append(
            "PostgreSQL writes CURRENT_DATE and CURRENT_TIMESTAMP without parentheses (or now())."
        )
    if dialect == "bigquery" and syntax and _DOUBLE_COLON.search(text):
        hints.append("BigQuery has no :: casts: write CAST(x AS type) (e.g. CAST(x AS FLOAT64)).")
    if dialect == "bigquery" and syntax and _ILIKE.search(text):
        hints.append("BigQuery has no ILIKE: write LOWER(x) LIKE '%humira%'.")
    if "division by zero" in lowered or "divide by zero" in lowered:
        if dialect == "bigquery":
            hints.append("Use SAFE_DIVIDE(a, b), which gives NULL where b is 0.")
        else:
            hints.append("Divide by NULLIF(b, 0) to get NULL where the divisor is 0.")
    function = function_hint(message, sql, dialect)
    return "".join(f"\n{hint}" for hint in hints) + function


def _made_a_list(message: str) -> bool:
    """Whether ``message`` is about ``[brackets]`` around a name: a list it made (DuckDB's
    ``VARCHAR[]``, BigQuery's ``ARRAY<STRING>``) or, in PostgreSQL, a syntax error at ``[``."""
    return "[]" in message or "ARRAY<" in message or 'syntax error at or near "["' in message


# --- another dialect's functions ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Equivalent:
    """What a backend has for another dialect's function: ``advice``, its ``examples`` in
    the ``{}``. The examples are SQL over a and b (dates, a the earlier), d (a date), x and y
    (numbers), s (text), t (a date as text) and cond (a condition)."""

    advice: str
    examples: tuple[str, ...]

    def text(self) -> str:
        return self.advice.format(*self.examples)


def _each(names: str, advice: str, *examples: str) -> dict[str, Equivalent]:
    return dict.fromkeys(names.split(), Equivalent(advice, examples))


#: Each backend's equivalents of the functions other dialects have and it lacks (or has in
#: another shape: :data:`OTHER_SHAPES`), by the lower-case names those dialects give them.
EQUIVALENTS: dict[str, dict[str, Equivalent]] = {
    "duckdb": {
        **_each(
            "datediff date_diff timestampdiff months_between",
            "{} is the days from a to b (or 'month', 'year')",
            "date_diff('day', a, b)",
        ),
        **_each(
            "dateadd add_months timestampadd", "add an interval, e.g. {}", "d + INTERVAL 1 MONTH"
        ),
        **_each(
            "getdate sysdate curdate",
            "{} is today, {} the current timestamp",
            "current_date",
            "now()",
        ),
        **_each("nvl isnull", "write {}", "coalesce(x, y)"),
        **_each("iff iif", "write {} or {}", "if(cond, x, y)", "CASE WHEN cond THEN x ELSE y END"),
        **_each(
            "date_format to_char format_date",
            "write {} (%Y year, %m month, %d day)",
            "strftime(d, '%Y-%m')",
        ),
        **_each("to_date str_to_date parse_date", "write {}", "strptime(t, '%Y-%m-%d')::DATE"),
        **_each("safe_divide", "write {}, NULL where y is 0", "x / NULLIF(y, 0)"),
        **_each("convert", "write {} (or DATE, INTEGER, DOUBLE)", "CAST(x AS VARCHAR)"),
        **_each("charindex", "write {}, the text first", "strpos(s, 'U')"),
        **_each("eomonth", "write {}", "last_day(d)"),
        **_each("decode", "write {}", "CASE s WHEN 'HUMIRA' THEN 1 ELSE 0 END"),
    },
    "postgres": {
        **_each(
            "datediff date_diff timestampdiff months_between",
            "{} is the days from a to b; the whole months are {}",
            "b::date - a::date",
            "extract(year from age(b, a)) * 12 + extract(month from age(b, a))",
        ),
        **_each(
            "dateadd add_months timestampadd", "add an interval, e.g. {}", "d + INTERVAL '1 month'"
        ),
        **_each(
            "getdate sysdate curdate",
            "{} is today, {} the current timestamp",
            "CURRENT_DATE",
            "now()",
        ),
        **_each("nvl isnull ifnull", "write {}", "coalesce(x, y)"),
        **_each("iff iif if", "write {}", "CASE WHEN cond THEN x ELSE y END"),
        **_each("len", "write {}", "length(s)"),
        **_each(
            "strftime date_format format_date",
            "write {} (YYYY year, MM month, DD day)",
            "to_char(d, 'YYYY-MM')",
        ),
        **_each("str_to_date parse_date", "write {}", "to_date(t, 'YYYY-MM-DD')"),
        **_each("datepart", "write {} or {}", "date_part('year', d)", "EXTRACT(YEAR FROM d)"),
        **_each("year", "write {}", "EXTRACT(YEAR FROM d)"),
        **_each("month", "write {}", "EXTRACT(MONTH FROM d)"),
        **_each("day", "write {}", "EXTRACT(DAY FROM d)"),
        **_each("charindex", "write {}, the text first", "strpos(s, 'U')"),
        **_each(
            "eomonth last_day",
            "write {}",
            "(date_trunc('month', d) + INTERVAL '1 month - 1 day')::date",
        ),
        **_each("safe_divide", "write {}, NULL where y is 0", "x / NULLIF(y, 0)"),
        **_each("countif", "write {}", "COUNT(*) FILTER (WHERE cond)"),
        **_each("median", "write {}", "percentile_cont(0.5) WITHIN GROUP (ORDER BY x)"),
        **_each("group_concat listagg", "write {}", "string_agg(s, ',')"),
        **_each("decode", "write {}", "CASE s WHEN 'HUMIRA' THEN 1 ELSE 0 END"),
        **_each("date_trunc", "write {}, the part first, as text", "date_trunc('month', d)"),
        **_each("convert", "write {} (or date, integer, numeric)", "CAST(x AS text)"),
    },
    "bigquery": {
        **_each(
            "datediff date_diff timestampdiff months_between",
            "{} is the days from a to b (or MONTH, YEAR; TIMESTAMP_DIFF for timestamps)",
            "DATE_DIFF(b, a, DAY)",
        ),
        **_each("dateadd add_months timestampadd", "write {}", "DATE_ADD(d, INTERVAL 1 MONTH)"),
        **_each(
            "getdate now sysdate curdate",
            "{} is today, {} the current timestamp",
            "CURRENT_DATE()",
            "CURRENT_TIMESTAMP()",
        ),
        **_each("nvl isnull", "write {}", "IFNULL(x, y)"),
        **_each("iff iif", "write {}", "IF(cond, x, y)"),
        **_each("len", "write {}", "LENGTH(s)"),
        **_each(
            "strftime date_format to_char",
            "write {}, the format first (FORMAT_TIMESTAMP for a timestamp)",
            "FORMAT_DATE('%Y-%m', d)",
        ),
        **_each("to_date str_to_date", "write {}, the format first", "PARSE_DATE('%Y-%m-%d', t)"),
        **_each("datepart date_part", "write {} (or MONTH, DAY)", "EXTRACT(YEAR FROM d)"),
        **_each("year", "write {}", "EXTRACT(YEAR FROM d)"),
        **_each("month", "write {}", "EXTRACT(MONTH FROM d)"),
        **_each("day", "write {}", "EXTRACT(DAY FROM d)"),
        **_each("charindex", "write {}, the text first", "STRPOS(s, 'U')"),
        **_each("eomonth", "write {}", "LAST_DAY(d)"),
        **_each("median", "write {}, an approximate median", "APPROX_QUANTILES(x, 2)[OFFSET(1)]"),
        **_each("group_concat listagg", "write {}", "STRING_AGG(s, ',')"),
        **_each("decode", "write {}", "CASE s WHEN 'HUMIRA' THEN 1 ELSE 0 END"),
        **_each("convert", "write {} (or DATE, INT64, FLOAT64)", "CAST(x AS STRING)"),
        **_each(
            "date_trunc datetrunc",
            "write {}, the date first and the part bare",
            "DATE_TRUNC(d, MONTH)",
        ),
    },
}


#: Functions of other dialects taking a bare date part or type (DATEDIFF(day, a, b),
#: CONVERT(VARCHAR, x)), which a database then reports as an unknown column.
_TAKE_A_WORD = frozenset(
    {"datediff", "date_diff", "dateadd", "datepart", "datetrunc", "timestampdiff", "timestampadd"}
    | {"convert"}
)
_TYPE_WORDS = frozenset(
    {"varchar", "nvarchar", "char", "text", "string", "int", "integer", "int64", "bigint"}
    | {"float", "float64", "double", "decimal", "numeric", "date", "datetime", "timestamp"}
)
_BARE_WORDS = _DATE_PARTS | _TYPE_WORDS | {"dd", "mm", "yy", "yyyy", "qq", "wk", "hh", "mi", "ss"}


def _text_first(args: list[str]) -> bool:
    return bool(args) and args[0] == "''"


#: The functions of :data:`EQUIVALENTS` that the backend has, in another shape: whether a
#: call's arguments (strings as ``''``) are in the other dialect's shape.
OTHER_SHAPES: dict[str, dict[str, Callable[[list[str]], bool]]] = {
    # DATEDIFF(day, a, b), DATE_DIFF(b, a, DAY) for date_diff('day', a, b)
    "duckdb": {
        "datediff": lambda a: not _text_first(a),
        "date_diff": lambda a: not _text_first(a),
        "decode": lambda a: len(a) > 2,  # Oracle's DECODE(x, 'A', 1, 0); DuckDB's decodes a blob
    },
    "postgres": {
        "date_trunc": lambda a: not _text_first(a),  # date_trunc(d, 'month')
        "decode": lambda a: len(a) > 2,  # Oracle's DECODE(x, 'A', 1, 0)
        "convert": lambda a: bool(a) and _bare_word(a[0]) in _TYPE_WORDS,  # CONVERT(VARCHAR, x)
    },
    # DATE_TRUNC('month', d), DATE_DIFF('day', a, b)
    "bigquery": {"date_trunc": _text_first, "date_diff": _text_first},
}

#: (function, the backend's own) taking the same arguments: the database suggesting the
#: second for the first ("Did you mean "if"?") has said it all.
_SAME_ARGUMENTS = frozenset(
    {
        ("iff", "if"),
        ("iif", "if"),
        ("nvl", "coalesce"),
        ("nvl", "ifnull"),
        ("isnull", "coalesce"),
        ("isnull", "ifnull"),
        ("ifnull", "coalesce"),
        ("curdate", "current_date"),
        ("getdate", "now"),
        ("getdate", "current_timestamp"),
        ("sysdate", "now"),
        ("sysdate", "current_timestamp"),
        ("now", "current_timestamp"),
        ("eomonth", "last_day"),
        ("len", "length"),
        ("listagg", "string_agg"),
    }
)

#: The function an error says does not exist, or does not take the arguments given.
_NO_FUNCTION = (
    re.compile(r'Function with name "?(\w+)"? does not exist'),  # DuckDB
    re.compile(r"No function matches the given name and argument types '(\w+)\("),  # DuckDB
    re.compile(r'candidate function for the function call "(\w+)\('),  # DuckDB
    re.compile(r'function (?:\w+\.)?"?(\w+)"?\(.*?\) does not exist'),  # PostgreSQL
    re.compile(r"Function not found: (?:[\w.]+\.)?(\w+)"),  # BigQuery
    re.compile(r"No matching signature for (?:aggregate )?function (\w+)", re.IGNORECASE),
)
_SUGGESTED_FUNCTION = re.compile(r'Did you mean "?(\w+)"?\?')

_CALL_NAME = re.compile(r"\b([A-Za-z_]\w*)\s*\(")


def function_hint(message: str, sql: str, dialect: str) -> str:
    """This backend's equivalent of another dialect's function in ``sql``, which ``message``
    says does not exist (or takes other arguments), or whose bare date part or type
    (``DATEDIFF(day, a, b)``) the database took for a column; "" when there is none."""
    found = _foreign_call(message, sql, dialect)
    return "" if found is None else "\n" + _equivalent_text(*found, dialect)


def unparsed_function_hint(sql: str, dialect: str) -> str:
    """For ``sql`` the read-only check could not parse (the database never saw it): this
    backend's equivalent of the first call in it of another dialect's function, in that
    dialect's shape (``DATEDIFF(a, b)``, ``CONVERT(DATE, s)`` on DuckDB); "" when none."""
    equivalents = EQUIVALENTS.get(dialect, {})
    shapes = OTHER_SHAPES.get(dialect, {})
    for name, args in _calls(sql, set(equivalents)):
        shape = shapes.get(name)
        if shape is None or shape(args):
            return _equivalent_text(name, equivalents[name], dialect)
    return ""


def _equivalent_text(name: str, equivalent: Equivalent, dialect: str) -> str:
    db = _BACKEND_NAMES[dialect]
    if name in OTHER_SHAPES.get(dialect, {}):
        return f"{db}'s {name.upper()} takes other arguments: {equivalent.text()}."
    return f"{name.upper()} is not a {db} function: {equivalent.text()}."


def _foreign_call(message: str, sql: str, dialect: str) -> tuple[str, Equivalent] | None:
    equivalents = EQUIVALENTS.get(dialect, {})
    shapes = OTHER_SHAPES.get(dialect, {})
    named = next((m.group(1).lower() for p in _NO_FUNCTION if (m := p.search(message))), None)
    if named is not None:
        said = _SUGGESTED_FUNCTION.search(message)
        if said is not None and (named, said.group(1).lower()) in _SAME_ARGUMENTS:
            return None
        shape = shapes.get(named)
        if shape is not None and not any(shape(args) for _, args in _calls(sql, {named})):
            return None
        return (named, equivalents[named]) if named in equivalents else None
    missing = missing_column(message)
    if missing is None or missing[1].lower() not in _BARE_WORDS:
        return None
    word = missing[1].lower()
    for name, args in _calls(sql, _TAKE_A_WORD & set(equivalents)):
        shape = shapes.get(name)
        if word in map(_bare_word, args) and (shape is None or shape(args)):
            return name, equivalents[name]
    return None


def _calls(sql: str, names: Set[str]) -> list[tuple[str, list[str]]]:
    """The calls in ``sql`` of the functions ``names`` (lower case): each name with its
    arguments' text, a string written ``''``."""
    code = _COMMENTS_AND_STRINGS.sub(lambda m: "''" if m[0].startswith("'") else " ", sql)
    found = []
    for match in _CALL_NAME.finditer(code):
        name = match.group(1).lower()
        if name not in names:
            continue
        args, depth, start = [], 0, match.end()
        for i in range(match.end(), len(code)):
            if code[i] == "(":
                depth += 1
            elif code[i] == ")" and depth:
                depth -= 1
            elif code[i] in ")," and not depth:
                args.append(code[start:i].strip())
                start = i + 1
                if code[i] == ")":
                    break
        found.append((name, args))
    return found


def _bare_word(argument: str) -> str:
    """The word an argument is (``day``; ``varchar`` of ``VARCHAR(10)``), lower-cased; ""
    when it is an expression."""
    word = re.fullmatch(r"([A-Za-z_]\w*)\s*(?:\([\d\s,]*\))?", argument)
    return word.group(1).lower() if word else ""


# --- text compared with a number ---------------------------------------------------------

#: DuckDB casting a text column to a number to compare it with one (naming the column), or
#: refusing to (``<``, ``>``: naming none).
_TEXT_AS_NUMBER = (
    re.compile(r"Could not convert string .* when casting from source column (?P<name>\w+)"),
    re.compile(r"Cannot compare values of type VARCHAR and type \w*(?:INT|DECIMAL|DOUBLE|FLOAT)"),
)
_COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE)


def text_number_hint(message: str, sql: str, dialect: str) -> str:
    """For a text column compared with a number (``PRESCRIBER_NPI_STATE_CD = 1``), which DuckDB
    does by casting the text to a number, failing on the first value that is not one (and
    refuses for ``<``), and PostgreSQL and BigQuery refuse: the comparison rewritten, the
    number as text (``= '1'``) or, to order by value, the column cast to a number. "" when
    ``sql`` compares no such column."""
    said, named, offset = _text_with_number(message, sql)
    if not said:
        return ""
    for comparison, column, number in _compared_with_numbers(sql, dialect):
        if named is not None and column.name.lower() != named:
            continue
        if offset is not None and not _around(offset, column, number):
            continue
        fixed = comparison.copy()
        if isinstance(comparison, exp.EQ | exp.NEQ | exp.In):
            for literal in list(fixed.find_all(exp.Literal)):
                if literal.is_number:
                    literal.replace(exp.Literal.string(literal.name))
            how = "write the number as text in single quotes"
        else:  # '9' > '10' as text: compare numbers
            kind = "BIGINT" if number.name.isdigit() else "DOUBLE"
            for side in list(fixed.find_all(exp.Column)):
                if side == column:
                    side.replace(_as_number(side, kind, dialect))
            how = "to compare numbers, cast the column"
        return (
            f"\n{column.sql(dialect)} is text, compared with the number {number.sql(dialect)}:"
            f" {how}: {_negated_as(comparison, fixed).sql(dialect)}."
        )
    return ""


def _compared_with_numbers(
    sql: str, dialect: str
) -> list[tuple[exp.Expr, exp.Column, exp.Literal]]:
    """Each comparison in ``sql`` (``=``, ``<``, ``IN``...) of a bare column with a number,
    with the column and the number."""
    tree = _parsed(sql, dialect)
    if tree is None:
        return []
    found: list[tuple[exp.Expr, exp.Column, exp.Literal]] = []
    for node in tree.find_all(*_COMPARISONS, exp.In):
        sides = _sides(node)
        column = next((s for s in sides if isinstance(s, exp.Column)), None)
        number = next((s for s in sides if isinstance(s, exp.Literal) and s.is_number), None)
        if column is not None and number is not None:
            found.append((node, column, number))
    return found


def _sides(node: exp.Expr) -> list[object]:
    """What a comparison compares: both sides, or an ``IN``'s value and its list."""
    if isinstance(node, exp.In):
        return [node.this, *node.expressions]
    return [node.args.get("this"), node.args.get("expression")]


#: PostgreSQL and BigQuery refusing to compare two types, naming the types only:
#: "operator does not exist: character varying = integer", "No matching signature for operator
#: = for argument types: STRING, INT64" (IN: "... argument types STRING and {INT64}").
_NO_OPERATOR = (
    re.compile(
        r"operator does not exist: (?P<a>[a-z][a-z ]*?) [=<>!]+ (?P<b>[a-z][a-z ]*?)$", re.M
    ),
    re.compile(
        r"No matching signature for operator (?:[=<>!]+|(?:NOT )?IN|BETWEEN) for argument types:? "
        r"(?P<a>\w+)(?:, | and \{)(?P<b>\w+)"
    ),
)
_TEXT_TYPES = frozenset({"text", "character varying", "character", "name", "citext", "STRING"})
_NUMBER_TYPES = frozenset(
    {"smallint", "integer", "bigint", "numeric", "double precision", "real"}
    | {"INT64", "FLOAT64", "NUMERIC", "BIGNUMERIC"}
)


def _text_with_number(message: str, sql: str) -> tuple[bool, str | None, int | None]:
    """Whether ``message`` refuses a text column compared with a number; the column's name
    (lower case) when DuckDB names it, and where in ``sql`` the message points
    (:func:`_error_offset`), when it does."""
    duckdb = next((m for p in _TEXT_AS_NUMBER if (m := p.search(message))), None)
    if duckdb is not None:
        name = duckdb.groupdict().get("name")
        return True, None if name is None else name.lower(), _error_offset(message, sql)
    refused = next((m for p in _NO_OPERATOR if (m := p.search(message))), None)
    if refused is None:
        return False, None, None
    types = {refused["a"], refused["b"]}
    if not (types & _TEXT_TYPES and types & _NUMBER_TYPES):
        return False, None, None
    return True, None, _error_offset(message, sql)


#: PostgreSQL's and DuckDB's caret under the line of the query they quote ("LINE 2: ...WHERE x
#: = 1", the quote cut with "..."), and BigQuery's "at [2:7]" (line and column, from 1).
_CARET = re.compile(r"^(LINE (\d+): )(.*)\n( *)\^", re.M)
_AT = re.compile(r"\bat \[(\d+):(\d+)\]")


def _error_offset(message: str, sql: str) -> int | None:
    """Where in ``sql`` its error ``message`` points (an index: PostgreSQL's caret is under
    an operator, DuckDB's and BigQuery's at the start of the comparison), or None when it does
    not say (or quotes a line ``sql`` does not have)."""
    lines = sql.split("\n")
    caret = _CARET.search(message)
    if caret is not None:
        line, quoted, column = int(caret[2]), caret[3], len(caret[4]) - len(caret[1])
        if quoted.startswith("..."):
            quoted, column = quoted[3:], column - 3
        quoted = quoted.removesuffix("...")
        # libpq shows a tab as a space
        start = lines[line - 1].replace("\t", " ").find(quoted) if line <= len(lines) else -1
        if start < 0 or not 0 <= column <= len(quoted):
            return None
        return sum(len(text) + 1 for text in lines[: line - 1]) + start + column
    at = _AT.search(message)
    if at is not None and 0 < int(at[1]) <= len(lines):
        return sum(len(text) + 1 for text in lines[: int(at[1]) - 1]) + int(at[2]) - 1
    return None


def _around(offset: int, column: exp.Column, number: exp.Literal) -> bool:
    """Whether ``offset`` is in the text from ``column`` to ``number`` (either first), as
    sqlglot read them; True when it did not say where they are."""
    nodes = (*column.find_all(exp.Identifier), number)
    places = [p for n in nodes for key in ("start", "end") if isinstance(p := n.meta.get(key), int)]
    if len(places) < 2 * len(nodes):
        return True
    return min(places) <= offset <= max(places)


def _negated_as(comparison: exp.Expr, fixed: exp.Expr) -> exp.Expr:
    """``fixed`` under the ``NOT`` that ``comparison`` is under (``x NOT IN (1, 2)``)."""
    node = comparison
    while isinstance(node.parent, exp.Paren):
        node = node.parent
    return exp.Not(this=fixed) if isinstance(node.parent, exp.Not) else fixed


def _as_number(column: exp.Column, kind: str, dialect: str) -> exp.Expr:
    """Text ``column`` as a number of ``kind`` (``BIGINT``, ``DOUBLE``), NULL where it is not
    one: ``TRY_CAST`` (BigQuery's ``SAFE_CAST``); PostgreSQL, which has neither, casts only
    the values that are digits."""
    if dialect != "postgres":
        return exp.TryCast(this=column.copy(), to=exp.DataType.build(kind))
    digits = "^-?[0-9]+$" if kind == "BIGINT" else "^-?[0-9]+([.][0-9]+)?$"
    is_number = exp.RegexpLike(this=column.copy(), expression=exp.Literal.string(digits))
    cast = exp.Cast(this=column.copy(), to=exp.DataType.build(kind))
    return exp.Case().when(is_number, cast)


# --- a result that is not what the query meant -------------------------------------------

#: ``[NDC_DRUG_NM]``: a name in SQL Server's quotes, a list literal in DuckDB and BigQuery
#: (not a subscript: ``x[i]``, ``f(x)[i]``; nor ``ARRAY[x]``, checked apart).
_LIST_OF_A_NAME = re.compile(r"(?<![\w\]\)\"`])\[\s*([A-Za-z_]\w*)\s*\]")
_ARRAY_BEFORE = re.compile(r"\bARRAY\s*$", re.IGNORECASE)
_LETTER = re.compile(r"[A-Za-z]")
_NON_FINITE = ("inf", "-inf", "NaN")


def result_notes(
    sql: str,
    dialect: str,
    columns: Sequence[tuple[str, str]],
    preview: Sequence[Sequence[object]],
    *,
    row_count: int,
    all_shown: bool,
) -> list[str]:
    """What a successful result of ``sql`` says that the query likely did not mean, each with
    the fix: ``[brackets]`` that made a list rather than quoting a name, infinities and NaN
    (DuckDB's ``x / 0``), PostgreSQL's integer division, no rows where a text comparison is
    case-sensitive. From what is at hand only: the result's ``columns`` (``(name, type)``), its
    ``preview`` rows (``all_shown``: every row of the result) and ``row_count``; the SQL is
    parsed only when there are no rows, or an integer column on PostgreSQL and a ``/``."""
    notes = [
        bracket_note(sql, dialect, columns),
        non_finite_note(columns, preview, dialect, all_shown=all_shown, sql=sql),
        integer_division_note(sql, dialect, columns),
    ]
    if row_count == 0:
        notes.append(case_note(sql, dialect))
    return [note for note in notes if note is not None]


def bracket_note(sql: str, dialect: str, columns: Sequence[tuple[str, str]]) -> str | None:
    """For ``SELECT [NDC_DRUG_NM]`` whose result has a list column: the brackets made a list
    of the column's value (named ``list_value(NDC_DRUG_NM)``), where SQL Server quotes a
    name. Only a selected ``[name]``: one handed to a function (``list_concat(l, [x])``) or
    indexed is a list meant. The SQL is parsed only when its text has such brackets."""
    if not any(kind.endswith("]") or kind.upper().startswith("ARRAY") for _, kind in columns):
        return None
    text = _COMMENTS_AND_STRINGS.sub(" ", sql)
    written = {  # ARRAY[x] means a list (a bounded look back: a long SQL has many brackets)
        m.group(1).lower(): m.group(1)
        for m in _LIST_OF_A_NAME.finditer(text)
        if _ARRAY_BEFORE.search(text[max(0, m.start() - 64) : m.start()]) is None
    }
    if not written:
        return None
    # only a selected [name] made a list column: one handed to a function is meant
    tree = _parsed(sql, dialect)
    selected = {
        _bracketed_name(projection)
        for select in (tree.find_all(exp.Select) if tree is not None else ())
        for projection in select.expressions
    }
    names = [name for key, name in written.items() if key in selected]  # in the SQL's order
    if not names:
        return None
    quote = (
        f"backticks (`{names[0]}`)" if dialect == "bigquery" else f'double quotes ("{names[0]}")'
    )
    made = "makes" if len(names) == 1 else "make"
    shown = ", ".join(f"[{n}]" for n in names[:5])  # a SQL of hundreds: a note of a line
    shown += f" and {len(names) - 5} more" if len(names) > 5 else ""
    return (
        f"{shown} {made} a list holding the column's value, not the "
        f"column: [brackets] are SQL Server's quotes. In {_BACKEND_NAMES.get(dialect, dialect)} "
        f"write the name bare or in {quote}."
    )


def _bracketed_name(projection: exp.Expr) -> str:
    """The name (lower case) in a projection that is ``[name]`` (aliased or not), else ""."""
    value = projection.this if isinstance(projection, exp.Alias) else projection
    if isinstance(value, exp.Array) and len(value.expressions) == 1:
        item = value.expressions[0]
        if isinstance(item, exp.Column) and not item.table:
            return item.name.lower()
    return ""


def non_finite_note(
    columns: Sequence[tuple[str, str]],
    preview: Sequence[Sequence[object]],
    dialect: str,
    *,
    all_shown: bool = True,
    sql: str | None = None,
) -> str | None:
    """For float columns holding ``inf``, ``-inf`` or ``NaN`` in the ``preview`` rows
    (``all_shown``: the whole result): what made them (in DuckDB a division by zero, when
    ``sql`` divides: not ``'inf'::DOUBLE``) and the fix. The rest of a larger result is not
    read: that would be a pass over all of it."""
    found: dict[str, set[str]] = {}
    for row in preview:
        for (name, _), value in zip(columns, row, strict=False):
            if isinstance(value, float) and not math.isfinite(value):
                found.setdefault(name, set()).add(f"{value:g}".replace("nan", "NaN"))
    if not found:
        return None
    held = "; ".join(
        f"{name} holds {' and '.join(v for v in _NON_FINITE if v in held)}"
        for name, held in found.items()
    )
    if not all_shown:
        held += " in the first row" if len(preview) == 1 else f" in the first {len(preview)} rows"
    divides = sql is None or "/" in _COMMENTS_AND_STRINGS.sub(" ", sql)
    if dialect != "duckdb" or not divides:
        return f"{held}: not a number any sum or average can use; filter it out first."
    return (
        f"{held}: in DuckDB x / 0 gives inf (0 / 0 NaN) instead of an error, and a sum or "
        "average over it gives the same. Divide by NULLIF(b, 0) to get NULL where b is 0."
    )


#: PostgreSQL's integer types, as a result's columns name them.
_POSTGRES_INTEGERS = frozenset({"int2", "int4", "int8", "smallint", "integer", "bigint"})
#: What a result column's expression may be around a division that made it (its arithmetic).
_ARITHMETIC = (exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Mod)


def integer_division_note(sql: str, dialect: str, columns: Sequence[tuple[str, str]]) -> str | None:
    """For PostgreSQL result columns that are integers made by ``/`` of two integer
    expressions (``COUNT(a) / COUNT(*)``, often 0): PostgreSQL drops the fraction, and how to
    keep it. Not for a division by a number (``days / 7``: whole weeks, likely meant). From the
    columns' types first: the SQL is parsed only when one is an integer and ``/`` is in it."""
    if dialect != "postgres" or "/" not in sql:
        return None
    integers = [i for i, (_, kind) in enumerate(columns) if kind in _POSTGRES_INTEGERS]
    if not integers:
        return None
    tree = _parsed(sql, dialect)
    if not isinstance(tree, exp.Query):
        return None
    selects = tree.selects
    if len(selects) != len(columns) or any(s.is_star for s in selects):
        return None  # which expression made which column is not known
    made = {columns[i][0]: d for i in integers if (d := _division(selects[i].unalias()))}
    if not made:
        return None
    names, division = " and ".join(made), next(iter(made.values()))
    fraction = f"{_operand(division.this)}::numeric / {division.expression.sql(dialect)}"
    are = "is an integer" if len(made) == 1 else "are integers"
    return (
        f"{names} {are} made by dividing integers ({division.sql(dialect)}), which PostgreSQL "
        f"does in whole numbers, dropping the fraction (1 / 4 is 0). If a fraction was meant, "
        f"cast one side: {fraction} (or multiply by 1.0 first)."
    )


def _division(node: exp.Expr) -> exp.Div | None:
    """The first ``/`` in ``node``'s arithmetic whose divisor is not a number written out."""
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.Div) and not isinstance(node.expression, exp.Literal):
        return node
    if isinstance(node, _ARITHMETIC):
        return _division(node.this) or _division(node.expression)
    if isinstance(node, exp.Neg):
        return _division(node.this)
    return None


def _operand(node: exp.Expr) -> str:
    """``node`` in PostgreSQL SQL, in parentheses unless ``::`` applies to all of it."""
    text = node.sql("postgres")
    if isinstance(node, exp.Column | exp.Paren | exp.Literal | exp.Func):
        return text
    return f"({text})"


def case_note(sql: str, dialect: str) -> str | None:
    """For a query with no rows that compares a column with text (``NDC_DRUG_NM =
    'Humira'``): the comparison is case-sensitive, and how to ignore case."""
    tree = _parsed(sql, dialect)
    if tree is None:
        return None
    for node in tree.find_all(exp.EQ, exp.In, exp.Like):
        if not _drops_rows(node):
            continue
        sides = _sides(node)
        column = next((s for s in sides if isinstance(s, exp.Column)), None)
        text = next(
            (
                s
                for s in sides
                if isinstance(s, exp.Literal) and s.is_string and _LETTER.search(s.name)
            ),
            None,
        )
        if column is None or text is None:
            continue
        operator = "LIKE" if isinstance(node, exp.Like) else "="
        written = f"{column.sql(dialect)} {operator} {text.sql(dialect)}"
        lowered = exp.Literal.string(text.name.lower()).sql(dialect)
        return (
            f"{written} is case-sensitive. If rows were expected, check how the values are "
            f"written (SELECT DISTINCT {column.sql(dialect)}) or ignore case: "
            f"lower({column.sql(dialect)}) {operator} {lowered}."
        )
    return None


def _drops_rows(comparison: exp.Expr) -> bool:
    """Whether a case mismatch in ``comparison`` would leave rows out: it is in a ``WHERE``,
    ``HAVING``, ``QUALIFY`` or ``JOIN ... ON`` (not a projection's ``CASE``), under no ``NOT``
    (``NOT IN``, ``NOT EXISTS``: a mismatch there keeps rows)."""
    return comparison.find_ancestor(exp.Not) is None and (
        comparison.find_ancestor(exp.Where, exp.Having, exp.Qualify, exp.Join) is not None
    )
