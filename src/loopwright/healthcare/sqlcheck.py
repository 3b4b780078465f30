"""Deterministic checks of an SQL query against a schema: names, identifiers, result size.

An LLM judge can say whether a query answers the question; these checks catch, for free and
every time, the mistakes that need no judgement:

- unknown tables and columns, with the closest names as suggestions (and the table a column
  really lives in);
- results that expose direct patient identifiers (``PATIENT_ID``, names, dates of birth, ...)
  row by row, also inside a whole row (``SELECT r FROM RX_CLAIMS r``, ``to_json(r)``), a
  struct's fields (``s.*``) or a star DuckDB filters (``* LIKE 'PAT%'``); aggregates over them
  (``COUNT(DISTINCT PATIENT_ID)``) are fine;
- patient quasi-identifiers (birth year, sex) and provider identifiers (NPIs, names) returned
  row by row, or one row per patient (``GROUP BY PATIENT_ID``): NPIs are public business
  identifiers, not patient data, but aggregated outputs are preferred;
- ``SELECT *`` on a big table, and row-level output from a big table without a ``LIMIT``;
- the minimum and maximum of a direct identifier that DuckDB's ``SUMMARIZE`` returns
  (``DESCRIBE``, ``SHOW`` and ``SUMMARIZE``, which the SQL tool runs, are checked like
  queries; ``SHOW TABLES`` and the other catalogue listings return only names). DuckDB's
  ``PIVOT`` and ``UNPIVOT`` statements are checked as the SELECT each stands for, and its
  ``query('SELECT ...')`` and ``query_table('t')`` as the query or table they read (when their
  argument is not literal text, that is an error: what they read cannot be checked).

Tables are matched as the schema keys them: ``RX_CLAIMS`` in the default schema,
``claims.RX_CLAIMS`` in another (as profiles and the PostgreSQL/BigQuery backends key them).

The query is parsed with sqlglot (DuckDB dialect by default); ``check_sql`` returns the issues
with a severity: ``error`` (wrong or not allowed), ``warning`` (works, but should change) or
``info``.
"""

from __future__ import annotations

import contextlib
import difflib
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.optimizer.scope import Scope, traverse_scope

from loopwright.healthcare.data import (
    DIRECT_IDENTIFIERS,
    PROVIDER_IDENTIFIERS,
    QUASI_IDENTIFIERS,
    SCHEMA,
)
from loopwright.healthcare.sqlpivot import ANY_NAME, KEPT, desugared
from loopwright.healthcare.sqlstars import is_star, star_base, star_list, star_picks, value_nodes
from loopwright.sql.readonly import duckdb_show, parse_message

Severity = Literal["error", "warning", "info"]
IdentifierKind = Literal["direct", "quasi", "provider"]
SchemaLike = Mapping[str, Sequence[tuple[str, str]] | Sequence[str]]

#: the generated claims tables large enough that row-level output needs a LIMIT
DEFAULT_BIG_TABLES = frozenset({"RX_CLAIMS", "MED_CLAIMS", "PROVIDER_PAYMENTS"})

# aggregates whose result does not reveal the values aggregated (MIN/MAX/ANY_VALUE/ARRAY_AGG
# do, and so do MEDIAN and the quantiles: an order statistic is one of the values, and DuckDB
# takes the median of text, MEDIAN(PATIENT_ID) being one patient's id)
_REDUCING: tuple[type[exp.Expr], ...] = (
    exp.Count, exp.CountIf, exp.Sum, exp.Avg, exp.ApproxDistinct, exp.Stddev, exp.StddevPop,
    exp.StddevSamp, exp.Variance, exp.VariancePop, exp.Corr, exp.CovarPop, exp.CovarSamp,
    exp.Hll, exp.Rank, exp.DenseRank, exp.PercentRank, exp.CumeDist, exp.Ntile, exp.Skewness,
    exp.Kurtosis, exp.RowNumber,
    # not aggregates, but a value's size says nothing of the value: LEN(LIST(PATIENT_ID))
    exp.Length, exp.ArraySize,
)  # fmt: skip
#: Reducing aggregates whose result is a value their rows share: over one patient's rows (a
#: GROUP BY PATIENT_ID), AVG(PATIENT_BIRTH_YEAR) is that patient's birth year.
_KEEP_SHARED: tuple[type[exp.Expr], ...] = (exp.Avg,)

# Claims warehouses abbreviate: PATIENT_NM, BIRTH_DT, MBR_ID, BENE_ID, PAT_ID, ..._ADDR_LINE_1.
# A bare _NM is any name (NDC_DRUG_NM): only a patient's or member's name is an identifier.
_PERSON = r"(patient|pat|member|mbr|beneficiary|bene|subscriber)"
_DIRECT_PATTERN = re.compile(
    r"(^|_)(ssn|social_security|dob|date_of_birth|birth_?(date|dt)|mrn|medical_record|email|"
    r"e_mail|phone|telephone|street|addr(ess)?\d?|full_?name|"
    rf"{_PERSON}_?(id|nbr|num)|{_PERSON}_?((first|last|middle|full)_?)?(name|nm))($|_)",
    re.IGNORECASE,
)
_QUASI_PATTERN = re.compile(
    r"(^|_)(zip\d?|zip_?code|postal|birth_?(year|yr)|year_of_birth|age|gender|gndr|sex)($|_)",
    re.IGNORECASE,
)
_PERSON_TABLE = re.compile(
    r"patient|member|person|beneficiar|enrollee|(^|[_.])(pat|mbr|bene)s?($|_)", re.IGNORECASE
)
_NAME_COLUMN = re.compile(r"(^|_)((first|last|middle|full)_?(name|nm)|name)$|^nm$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class SQLIssue:
    """One finding: how bad, a stable code, a sentence saying what to do, and a suggestion."""

    severity: Severity
    code: str
    message: str
    suggestion: str | None = None
    table: str | None = None
    column: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            key: value
            for key, value in (
                ("severity", self.severity),
                ("code", self.code),
                ("message", self.message),
                ("suggestion", self.suggestion),
                ("table", self.table),
                ("column", self.column),
            )
            if value is not None
        }


@dataclass(frozen=True, slots=True)
class SQLCheck:
    """The issues found in one query; ``ok`` when none is an error."""

    sql: str
    issues: tuple[SQLIssue, ...]
    tables: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not any(issue.severity == "error" for issue in self.issues)

    @property
    def score(self) -> int:
        """0-100: 100 minus 40 per error, 10 per warning and 2 per note."""
        cost = {"error": 40, "warning": 10, "info": 2}
        return max(0, 100 - sum(cost[issue.severity] for issue in self.issues))

    def errors(self) -> list[SQLIssue]:
        return [issue for issue in self.issues if issue.severity == "error"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "score": self.score,
            "tables": list(self.tables),
            "issues": [issue.to_dict() for issue in self.issues],
        }


@dataclass(slots=True)
class _Schema:
    """Case-insensitive view of ``{table: columns}``, keeping the schema's spelling."""

    tables: dict[str, str] = field(default_factory=dict)  # lower -> spelling
    columns: dict[str, dict[str, str]] = field(default_factory=dict)  # lower table -> lower col
    schemas: set[str] = field(default_factory=set)  # lower "claims" of "claims.RX_CLAIMS" keys

    @classmethod
    def from_mapping(cls, schema: SchemaLike) -> _Schema:
        result = cls()
        for table, columns in schema.items():
            key = table.lower()
            result.tables[key] = table
            if "." in key:
                result.schemas.add(key.rsplit(".", 1)[0])
            names = [c if isinstance(c, str) else c[0] for c in columns]
            result.columns[key] = {name.lower(): name for name in names}
        return result

    def table(self, name: str) -> str | None:
        return self.tables.get(name.lower())

    def has_column(self, table: str, column: str) -> bool:
        return column.lower() in self.columns.get(table.lower(), {})

    def column_spelling(self, table: str, column: str) -> str:
        return self.columns.get(table.lower(), {}).get(column.lower(), column)

    def tables_with(self, column: str) -> list[str]:
        return [self.tables[t] for t, cols in self.columns.items() if column.lower() in cols]


def classify_identifier(
    table: str,
    column: str,
    identifiers: Mapping[tuple[str, str], IdentifierKind] | None = None,
) -> IdentifierKind | None:
    """Whether ``table.column`` identifies a patient (direct or quasi) or a provider.

    Explicit ``identifiers`` win; then the generated schema's sets; then name patterns
    (``ssn``, ``date_of_birth``, ``patient_id``, ``MBR_ID``, ``PATIENT_NM``, names in a
    patient table, ``zip``, ...). A bare table name in ``identifiers`` or the sets also names
    that table in another schema (``claims.RX_CLAIMS``), as ``DatabaseProfile.table`` reads it.
    Names written with spaces, hyphens or in camel case (``"Patient Name"``, ``DateOfBirth``,
    ``"Member-ID"``) are matched as their snake_case spelling too.
    """
    kind = _classified(table, column, identifiers)
    if kind is None:
        snake_table, snake_column = snake_case(table), snake_case(column)
        if (snake_table, snake_column) != (table, column):
            kind = _classified(snake_table, snake_column, identifiers)
    return kind


def snake_case(name: str) -> str:
    """``name`` with words split by underscores: ``DateOfBirth`` and ``Date of Birth`` are
    ``Date_Of_Birth`` and ``Date_of_Birth`` (a ``schema.table`` keeps its dot)."""
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)
    return re.sub(r"[^0-9A-Za-z.]+", "_", words).strip("_")


def _classified(
    table: str,
    column: str,
    identifiers: Mapping[tuple[str, str], IdentifierKind] | None,
) -> IdentifierKind | None:
    """:func:`classify_identifier` for the names as written."""
    ordered: list[tuple[IdentifierKind, Iterable[tuple[str, str]]]] = [
        (kind, [key]) for key, kind in (identifiers or {}).items()
    ]
    ordered += [
        ("direct", DIRECT_IDENTIFIERS),
        ("quasi", QUASI_IDENTIFIERS),
        ("provider", PROVIDER_IDENTIFIERS),
    ]
    for wanted in (table.upper(), table.rsplit(".", 1)[-1].upper()):  # the exact name first
        for kind, known in ordered:
            if any((t.upper(), c.upper()) == (wanted, column.upper()) for t, c in known):
                return kind
    if _DIRECT_PATTERN.search(column):
        return "direct"
    if _PERSON_TABLE.search(table) and _NAME_COLUMN.search(column):
        return "direct"
    about_patients = _PERSON_TABLE.search(table) or _PERSON_TABLE.search(column)
    if about_patients and _QUASI_PATTERN.search(column):
        return "quasi"
    if re.search(r"(^|_)npi(_?(number|nbr|num|id))?$", column, re.IGNORECASE):
        return "provider"
    return None


# --- the checker -----------------------------------------------------------------------------

#: the schemas an unqualified table name lands in: ``main`` (DuckDB) and ``public``
#: (PostgreSQL); tables in other schemas (``information_schema``, ``pg_catalog``, an attached
#: database) are not judged against the schema, unless its keys name that schema
#: (``claims.RX_CLAIMS``)
_DEFAULT_SCHEMAS = frozenset({"", "main", "public"})

#: what a statement does with the query checked: return its rows, describe its columns, or
#: summarize each column (DuckDB's SUMMARIZE: counts, averages, its minimum and maximum)
_Kind = Literal["query", "describe", "summarize"]

#: one column a source produces: its name and the (table, column) values it carries; a None
#: name stands for columns we cannot name (a table function's) and matches any name
_Output = tuple[str | None, list[tuple[str, str]]]


def check_sql(
    sql: str,
    schema: SchemaLike | None = None,
    *,
    dialect: str = "duckdb",
    identifiers: Mapping[tuple[str, str], IdentifierKind] | None = None,
    big_tables: Iterable[str] | None = None,
) -> SQLCheck:
    """Check one query against ``schema`` (``{table: [(column, type)]}``; default: the
    generated claims schema). ``big_tables`` names the tables where ``SELECT *`` and unlimited
    row-level output are flagged (default: the claims fact tables).

    Never raises on any query text: what the checker cannot follow yields fewer findings."""
    names = _Schema.from_mapping(SCHEMA if schema is None else schema)
    big = {t.lower() for t in (DEFAULT_BIG_TABLES if big_tables is None else big_tables)}
    text = sql
    if dialect == "duckdb":
        with contextlib.suppress(Exception):  # what it cannot read, the parse below reports
            shown = duckdb_show(sql)
            if isinstance(shown, exp.Show):  # SHOW TABLES and the like: names from the catalogue
                return SQLCheck(sql, ())
            text = shown  # SHOW x is DuckDB's DESCRIBE x
    try:
        statements = [s for s in sqlglot.parse(text, read=dialect) if s is not None]
    except SqlglotError as error:
        message = f"The query does not parse ({parse_message(error)}); fix the syntax."
        return SQLCheck(sql, (SQLIssue("error", "parse_error", message),))
    except Exception as error:  # sqlglot's parser recurses: deep nesting overflows the stack
        message = f"The query could not be parsed ({type(error).__name__}); simplify it."
        return SQLCheck(sql, (SQLIssue("error", "parse_error", message),))
    if not statements:
        return SQLCheck(sql, (SQLIssue("error", "empty", "The query is empty; write a SELECT."),))
    if len(statements) > 1:
        message = "The text holds several statements; send one query."
        return SQLCheck(sql, (SQLIssue("error", "multiple_statements", message),))
    root = statements[0]
    with contextlib.suppress(Exception):  # what cannot be rewritten is checked as written
        root = desugared(root)
    checker = _Checker(names, big, identifiers)
    if dialect == "duckdb":
        with contextlib.suppress(Exception):
            root = _inlined(root, checker)
    if dialect == "duckdb" and isinstance(root, (exp.Describe, exp.Summarize)):
        # The SQL tool runs these on DuckDB: they return a table's or query's columns (and,
        # for SUMMARIZE, statistics of each), never its rows. Check the query they look at.
        inspected = _inspected(root)
        kind: _Kind = "summarize" if isinstance(root, exp.Summarize) else "describe"
        issues = checker.run(inspected, kind) if inspected is not None else []
        return SQLCheck(sql, tuple(issues), tuple(sorted(checker.tables_used)))
    if not isinstance(root, exp.Query):
        message = (
            f"This is a {root.key.upper()} statement, not a query; "
            "only SELECT (and WITH ... SELECT) is allowed."
        )
        return SQLCheck(sql, (SQLIssue("error", "not_a_query", message),))
    return SQLCheck(sql, tuple(checker.run(root)), tuple(sorted(checker.tables_used)))


#: DuckDB's table functions that read by name what the query text does not show: query('SELECT
#: ...') runs a query given as a string, query_table('RX_CLAIMS') (or a list of names) reads tables
_READ_BY_NAME = frozenset({"query", "query_table"})


def _inlined(tree: exp.Expr, checker: _Checker) -> exp.Expr:
    """``tree`` with each ``query('...')`` and ``query_table('...')`` FROM item written as the
    query or table it reads, so that names and identifiers are followed into it. One whose
    argument is not a string literal (or a list of them) runs what cannot be read here: that is
    an error, as a privacy check errs on the side of flagging."""

    def rewrite(node: exp.Expr) -> exp.Expr:
        call = node.this if isinstance(node, exp.Table) else None
        if not isinstance(call, exp.Anonymous) or call.name.lower() not in _READ_BY_NAME:
            return node
        read = _read_by_name(call)
        if read is None:
            checker.add(SQLIssue(
                "error", "unreadable_source",
                f"{call.name}(...) reads tables or runs SQL that the query text does not show; "
                "write the query with the table names in it."))  # fmt: skip
            return node
        alias = node.args.get("alias")
        if isinstance(read, exp.Table):
            read.set("alias", alias.copy() if alias is not None else None)
            return read
        return exp.Subquery(this=_inlined(read, checker), alias=alias.copy() if alias else None)

    return tree.transform(rewrite)


def _read_by_name(call: exp.Anonymous) -> exp.Table | exp.Query | None:
    """What ``query('sql')`` or ``query_table('t')`` / ``query_table(['a', 'b'])`` reads: the
    query, the table, or every table's rows one after the other; None when its argument is not
    literal text."""
    argument = call.expressions[0] if call.expressions else None
    if call.name.lower() == "query":
        if not (isinstance(argument, exp.Literal) and argument.is_string):
            return None
        try:
            parsed = sqlglot.parse(argument.name, read="duckdb")
        except Exception:  # a parse error, or nesting too deep for the parser
            return None
        query = parsed[0] if len(parsed) == 1 else None
        return query if isinstance(query, exp.Query) else None
    listed = argument.expressions if isinstance(argument, exp.Array) else [argument]
    if not listed or not all(isinstance(n, exp.Literal) and n.is_string for n in listed):
        return None
    tables = [exp.to_table(n.name, dialect="duckdb") for n in listed if isinstance(n, exp.Literal)]
    if len(tables) == 1:
        return tables[0]
    reads = [exp.select(exp.Star()).from_(table) for table in tables]
    return exp.union(*reads, distinct=False)


def _inspected(statement: exp.Describe | exp.Summarize) -> exp.Query | None:
    """The query ``DESCRIBE``/``SUMMARIZE`` looks at: a table as ``SELECT * FROM`` it; None
    for what is not a table or query (a file, which is not the schema's)."""
    target = statement.this
    if isinstance(target, exp.Table):
        return exp.select(exp.Star()).from_(target.copy())
    target = _unwrap(target) if isinstance(target, exp.Expr) else None
    return target if isinstance(target, exp.Query) else None


class _Checker:
    def __init__(
        self,
        schema: _Schema,
        big: set[str],
        identifiers: Mapping[tuple[str, str], IdentifierKind] | None,
    ) -> None:
        self.schema = schema
        self.big = big
        self.identifiers = identifiers
        self.issues: list[SQLIssue] = []
        self.tables_used: set[str] = set()
        self._seen: set[tuple[str, str]] = set()
        self._scope_of: dict[int, Scope] = {}  # id(scope.expression) -> scope
        self._outputs_of: dict[int, list[_Output]] = {}  # id(scope) -> its output columns
        self._per_patient: dict[int, set[str]] = {}  # id(select) -> its patient keys

    def add(self, issue: SQLIssue) -> None:
        # One mistake is one finding, even when several scopes or tables lead to it (a column
        # seen from a subquery and its parent, PATIENT_ID from both sides of a USING join).
        key = (issue.code, (issue.column or issue.table or issue.message).lower())
        if key not in self._seen:
            self._seen.add(key)
            self.issues.append(issue)

    def run(self, root: exp.Query, kind: _Kind = "query") -> list[SQLIssue]:
        # Every step is guarded: a query shape sqlglot or this code does not expect must cost
        # some findings, never an exception in the caller (an agent's tool loop).
        try:
            scopes = traverse_scope(root)
        except SqlglotError as error:
            self.add(SQLIssue("error", "parse_error", f"The query cannot be analysed ({error})."))
            return self.issues
        except Exception:
            scopes = []
        self._scope_of = {id(scope.expression): scope for scope in scopes}
        claimed: set[int] = set()
        for scope in scopes:
            try:
                # sqlglot also lists a subquery's unqualified columns in its parent scope (they
                # might be correlated); scopes come innermost first, so judging each column in
                # the first scope that lists it judges it once, where it is written.
                own = [column for column in scope.columns if id(column) not in claimed]
                claimed.update(id(column) for column in own)
                self._check_names(scope, own)
            except Exception:
                continue
        if scopes and kind != "describe":  # DESCRIBE returns names and types only
            with contextlib.suppress(Exception):
                if kind == "summarize":
                    self._check_summary(scopes[-1])
                else:
                    self._check_output(scopes[-1])
        order = {"error": 0, "warning": 1, "info": 2}
        return sorted(self.issues, key=lambda issue: order[issue.severity])

    # names ----------------------------------------------------------------------------

    def _is_ours(self, table: exp.Table) -> bool:
        """Whether a FROM table can be a schema table: a plain name (not a function) that is
        unqualified, in the default schema, or in a schema the schema's keys name (a profile
        or backend keys tables outside the default schema as ``claims.RX_CLAIMS``)."""
        schema = table.db.lower()
        return isinstance(table.this, exp.Identifier) and (
            schema in _DEFAULT_SCHEMAS or schema in self.schema.schemas
        )

    def _table_spelling(self, table: exp.Table) -> str | None:
        """The schema's spelling of a FROM table; None when it is not a schema table."""
        if not self._is_ours(table):
            return None
        if table.db:  # main.RX_CLAIMS is the key RX_CLAIMS, unless main.RX_CLAIMS is a key
            found = self.schema.table(f"{table.db}.{table.name}")
            if found is not None or table.db.lower() not in _DEFAULT_SCHEMAS:
                return found
        return self.schema.table(table.name)

    def _real_table(self, table: exp.Table) -> str | None:
        """The schema table a FROM item names, or None (reported) when unknown."""
        if not self._is_ours(table):  # read_csv(...), range(...), information_schema.tables
            return None
        spelling = self._table_spelling(table)
        if spelling is None:
            written = table.name if table.db.lower() in _DEFAULT_SCHEMAS else _dotted(table)
            close = difflib.get_close_matches(
                written.lower(), list(self.schema.tables), n=3, cutoff=0.5
            )
            suggestions = [self.schema.tables[c] for c in close]
            hint = f"did you mean {' or '.join(suggestions)}?" if suggestions else None
            known = ", ".join(sorted(self.schema.tables.values()))
            self.add(
                SQLIssue(
                    "error",
                    "unknown_table",
                    f"Table {written} does not exist; use one of: {known}.",
                    hint,
                    table=written,
                )
            )
            return None
        self.tables_used.add(spelling)
        return spelling

    def _source_columns(self, source: exp.Table | Scope) -> set[str] | None:
        """Lower-case output columns of a source; None when unknown (a star, a function)."""
        if isinstance(source, Scope):
            names = _scope_names(source)
            return None if names is None else {name.lower() for name in names if name}
        if self._table_spelling(source) is None:
            return None
        return {name.lower() for name, _ in self._outputs(source) if name}

    def _check_names(self, scope: Scope, columns: list[exp.Column]) -> None:
        for table in scope.sources.values():
            if isinstance(table, exp.Table):
                self._real_table(table)
        self._check_using(scope)
        aliases = {name.lower() for name in _named_selects(scope.expression)}
        projections = (
            scope.expression.expressions if isinstance(scope.expression, exp.Select) else []
        )
        lateral = {p.alias.lower() for p in projections if isinstance(p, exp.Alias)}
        for column in columns:
            if isinstance(column.this, exp.Star):
                continue
            name = column.name
            if not name:
                continue
            qualifier = column.table
            if qualifier:
                found = _lookup_source(scope, qualifier)
                if found is None:
                    if self._is_field_access(scope, column):
                        continue
                    if not column.text("db") and _row_source(scope, name, qualifier):
                        continue  # main.RX_CLAIMS: the whole row of FROM RX_CLAIMS
                    self.add(SQLIssue("error", "unknown_alias",
                                      f"{qualifier}.{name} refers to {qualifier}, which is not a "
                                      "table or alias in this query; use a name from FROM/JOIN.",
                                      column=name))  # fmt: skip
                    continue
                known = self._source_columns(found)
                if known is not None and name.lower() not in known:
                    self._unknown_column(name, found, qualifier)
                continue
            owner = next((p for p in projections if column is p or _within(column, p)), None)
            if owner is None and name.lower() in aliases:  # ORDER BY/GROUP BY/HAVING alias
                continue
            if owner is not None and name.lower() in lateral - {owner.alias_or_name.lower()}:
                continue  # DuckDB lets a projection use an earlier projection's alias
            candidates = list(_visible_sources(scope))
            if not candidates:
                continue
            knowns = [self._source_columns(s) for s in candidates]
            if any(k is None for k in knowns) or any(name.lower() in k for k in knowns if k):
                continue
            if _row_source(scope, name) is not None:
                continue  # SELECT r FROM RX_CLAIMS r: the whole row, a struct
            self._unknown_column(name, candidates[0] if len(candidates) == 1 else None, None)

    def _is_field_access(self, scope: Scope, column: exp.Column) -> bool:
        """Whether ``s.a`` or ``t.s.a`` reads field ``a`` of a struct column ``s``: DuckDB reads
        a qualifier that names no table as a column (an unknown source may hold it too)."""
        outer = column.text("db")
        source = _lookup_source(scope, outer) if outer else None
        sources = [source] if source is not None else list(_visible_sources(scope))
        struct = column.table if source is not None else outer or column.table
        knowns = [self._source_columns(s) for s in sources]
        return any(known is None or struct.lower() in known for known in knowns)

    def _check_using(self, scope: Scope) -> None:
        """``JOIN b USING (c)`` needs ``c`` on both sides. sqlglot keeps these names out of the
        scope's columns (they are bare identifiers), so they are checked here."""
        select = scope.expression
        if not isinstance(select, exp.Select):
            return
        first = select.args.get("from_") or select.args.get("from")
        left: list[exp.Expr] = [first.this] if isinstance(first, exp.From) else []
        for join in select.args.get("joins") or []:
            for using in join.args.get("using") or []:
                for side in ([join.this], left):
                    self._check_side(scope, using.name, side)
            left.append(join.this)

    def _check_side(self, scope: Scope, name: str, items: list[exp.Expr]) -> None:
        """Report ``name`` when no FROM item of one side of a join has it (and all are known)."""
        found = [(item, _lookup_source(scope, item.alias_or_name)) for item in items]
        sources = [(item, source) for item, source in found if source is not None]
        knowns = [self._source_columns(source) for _, source in sources]
        if not knowns or any(known is None or name.lower() in known for known in knowns):
            return
        if len(sources) == 1:
            item, source = sources[0]
            self._unknown_column(name, source, item.alias_or_name)
        else:
            self._unknown_column(name, None, None)

    def _unknown_column(
        self, name: str, source: exp.Table | Scope | None, alias: str | None
    ) -> None:
        where = ""
        pool: list[str] = []
        if isinstance(source, exp.Table) and self._table_spelling(source):
            table = self._table_spelling(source) or source.name
            where = f" in {table}"
            pool = list(self.schema.columns[table.lower()].values())
        elif isinstance(source, Scope):
            where = f" in {alias}" if alias else ""
            pool = [name for name in _scope_names(source) or [] if name]
        else:
            pool = [c for cols in self.schema.columns.values() for c in cols.values()]
        close = difflib.get_close_matches(name.lower(), [p.lower() for p in pool], n=3, cutoff=0.6)
        spelled = [next(p for p in pool if p.lower() == c) for c in close]
        elsewhere = [t for t in self.schema.tables_with(name)]
        hints = []
        if spelled:
            hints.append(f"did you mean {' or '.join(spelled)}?")
        if elsewhere and where:
            hints.append(f"{name} is a column of {', '.join(elsewhere)}: join it")
        self.add(
            SQLIssue(
                "error",
                "unknown_column",
                f"Column {name} does not exist{where}; check the schema for its name.",
                "; ".join(hints) or None,
                table=source.name if isinstance(source, exp.Table) else None,
                column=name,
            )
        )

    # what the result exposes ---------------------------------------------------------

    def _identifiers_out(self, root: Scope) -> dict[tuple[str, str], IdentifierKind]:
        """The identifier columns whose values reach the result, with their kind."""
        exposed: dict[tuple[str, str], IdentifierKind] = {}
        for select_scope, select in _select_scopes(root):
            for projection in select.expressions:
                for table, column in self._exposed_columns(select_scope, projection):
                    kind = classify_identifier(table, column, self.identifiers)
                    if kind is not None:
                        exposed[(table, column)] = kind
        return exposed

    def _check_summary(self, root: Scope) -> None:
        """SUMMARIZE returns no patient rows, but its min and max of each column are two real
        values: of a direct identifier, two patients' ids (names, dates of birth). A warning,
        not an error: two values per column, not a listing of patients, and leaving the column
        out is an easy fix."""
        direct = [
            f"{table}.{self.schema.column_spelling(table, column)}"
            for (table, column), kind in sorted(self._identifiers_out(root).items())
            if kind == "direct"
        ]
        if direct:
            columns = ", ".join(name.rsplit(".", 1)[-1] for name in direct)
            self.add(SQLIssue(
                "warning", "summarize_identifier",
                f"SUMMARIZE returns the minimum and maximum of {', '.join(direct)}: real values "
                "of a direct patient identifier; summarize the other columns.",
                f"SUMMARIZE SELECT * EXCLUDE ({columns}) FROM ..."))  # fmt: skip

    def _check_output(self, root: Scope) -> None:
        selects = list(_branch_selects(root.expression))
        branches = list(_select_scopes(root))
        exposed = self._identifiers_out(root)
        row_level = any(not _is_aggregated(select) for select in selects)
        # GROUP BY PATIENT_ID aggregates, but what it returns it returns for each patient
        per_patient = sorted(
            {key for scope, select in branches for key in self._patients_grouped(scope, select)}
        )
        listed = row_level or bool(per_patient)
        how = (
            "row by row"
            if row_level
            else f"one row per patient (it groups by {', '.join(per_patient)})"
        )
        regroup = None
        if not row_level and per_patient:
            patient = per_patient[0].rsplit(".", 1)[-1]
            regroup = (
                f"GROUP BY the attributes you report, not by {patient}, and count the patients "
                f"in each group with COUNT(DISTINCT {patient})"
            )
        reads_big = self._reads_big(root)
        quasi: list[str] = []
        providers: list[str] = []
        for (table, column), kind in sorted(exposed.items()):
            spelled = self.schema.column_spelling(table, column)
            if kind == "direct":
                self.add(SQLIssue(
                    "error", "direct_identifier",
                    f"The result returns {table}.{spelled}, a direct patient identifier; "
                    f"aggregate instead (for example COUNT(DISTINCT {spelled})) or leave it out.",
                    table=table, column=spelled))  # fmt: skip
            elif kind == "quasi":
                quasi.append(f"{table}.{spelled}")
            else:
                providers.append(f"{table}.{spelled}")
        if quasi and listed:
            self.add(SQLIssue(
                "warning", "quasi_identifier",
                f"The result returns {', '.join(quasi)} {how}; combined with other "
                "patient attributes these can re-identify a patient, so report them in "
                "aggregate.", regroup))  # fmt: skip
        if providers and listed:
            self.add(SQLIssue(
                "info", "provider_identifier",
                f"The result lists {', '.join(providers)} {how}; provider identifiers are "
                "public business information, not patient data, but aggregated outputs (GROUP "
                "BY with counts or totals) are preferred."))  # fmt: skip
        if any(_has_star(select, scope) for scope, select in branches) and reads_big:
            self.add(SQLIssue(
                "warning", "select_star",
                f"SELECT * on {', '.join(sorted(reads_big))} returns every column of a big "
                "table; name the columns you need."))  # fmt: skip
        if row_level and reads_big and not _is_limited(root.expression):
            self.add(SQLIssue(
                "warning", "missing_limit",
                f"The query returns row-level data from {', '.join(sorted(reads_big))} with no "
                "LIMIT; aggregate it or add a LIMIT.",
                "add LIMIT 1000, or GROUP BY the columns you want to count"))  # fmt: skip

    def _patient_keys(self, scope: Scope, select: exp.Select) -> set[str]:
        """The direct identifiers an aggregating SELECT groups its rows by (GROUP BY, also by
        position, alias or ALL, ROLLUP and the like, or DISTINCT ON): it returns one row per
        patient, so the rest of what it returns is per-patient data."""
        if not _is_aggregated(select):
            return set()
        projections = list(select.expressions)
        aliases = {p.alias.lower(): p for p in projections if isinstance(p, exp.Alias)}
        keys: list[exp.Expr] = []
        group = select.args.get("group")
        if isinstance(group, exp.Group):
            if group.args.get("all"):  # GROUP BY ALL: the projections that do not aggregate
                keys += [p for p in projections if is_star(p) or not _aggregates(p)]
            keys += list(group.expressions)
        distinct = select.args.get("distinct")
        on = distinct.args.get("on") if isinstance(distinct, exp.Distinct) else None
        if isinstance(on, exp.Expr):
            keys += list(on.expressions) if isinstance(on, exp.Tuple) else [on]
        found: set[str] = set()
        for key in keys:
            targets = [key]
            if isinstance(key, exp.Literal) and key.is_int:  # GROUP BY 1: the first projection
                index = int(key.name) - 1
                targets = [projections[index]] if 0 <= index < len(projections) else []
            elif isinstance(key, exp.Column) and not key.table and key.name.lower() in aliases:
                targets.append(aliases[key.name.lower()])  # a projection's alias, or a column
            for target in targets:
                for table, column in self._exposed_columns(scope, target):
                    if classify_identifier(table, column, self.identifiers) == "direct":
                        found.add(f"{table}.{self.schema.column_spelling(table, column)}")
        return found

    def _patients_grouped(self, scope: Scope, select: exp.Expr | None) -> set[str]:
        """:meth:`_patient_keys` of ``select`` (none when it is no SELECT), worked out once:
        non-empty when it returns one row per patient."""
        if not isinstance(select, exp.Select):
            return set()
        key = id(select)
        if key not in self._per_patient:
            self._per_patient[key] = set()  # its keys' own projections are read meanwhile
            self._per_patient[key] = self._patient_keys(scope, select)
        return self._per_patient[key]

    def _is_big(self, spelling: str) -> bool:
        """Whether a schema table is big: named in ``big_tables`` as it is keyed, or by its
        bare name (the default RX_CLAIMS is big in whatever schema it lives)."""
        key = spelling.lower()
        return key in self.big or key.rsplit(".", 1)[-1] in self.big

    def _reads_big(self, root: Scope) -> set[str]:
        """Big tables whose rows feed the result, through derived tables and CTEs that neither
        aggregate nor limit their rows."""
        found: set[str] = set()
        visited: set[int] = set()
        pending = [root]
        while pending:
            scope = pending.pop()
            # A LATERAL or UNNEST source sees the sources of the scope that lists it, itself
            # included: without this a scope is revisited forever.
            if id(scope) in visited:
                continue
            visited.add(id(scope))
            for source in _visible_sources(scope):
                if isinstance(source, exp.Table):
                    spelling = self._table_spelling(source)
                    if spelling and self._is_big(spelling):
                        found.add(spelling)
                elif isinstance(source, Scope) and not _is_bounded(source.expression):
                    pending.append(source)
            pending.extend(scope.set_operation_scopes)
        return found

    def _exposed_columns(self, scope: Scope, projection: exp.Expr) -> Iterator[tuple[str, str]]:
        """(table, column) pairs whose values reach the output through ``projection``."""
        if is_star(projection):
            for _, values in self._star_outputs(scope, projection):
                yield from values
            return
        # one row per patient: an average of a patient's rows is the patient's own value
        kept = _KEEP_SHARED if self._patients_grouped(scope, projection.parent) else ()
        for node in value_nodes(projection):
            if _in_subquery(node, projection) or _is_hidden(node, projection, kept):
                continue
            if isinstance(node, exp.Query):  # a scalar subquery: resolved in its own scope
                inner = self._scope_of.get(id(_unwrap(node)))
                for _, values in self._outputs(inner):
                    yield from values
            elif is_star(node):
                # COLUMNS('regex') inside an expression, or PostgreSQL's row_to_json(r.*) (the
                # whole row); a bare * there is COUNT(*)'s, or an error in DuckDB
                if not isinstance(star_base(node), exp.Star):
                    for _, values in self._star_outputs(scope, node):
                        yield from values
            elif isinstance(node, exp.Column):
                yield from self._resolve(scope, node.name, node.table, node.text("db"))

    def _resolve(
        self, scope: Scope, name: str, qualifier: str = "", outer: str = ""
    ) -> Iterator[tuple[str, str]]:
        """The (table, column) values a column reference ``[outer.][qualifier.]name`` reads.

        A name that is no column but a FROM item's (``SELECT r FROM RX_CLAIMS r``,
        ``SELECT main.RX_CLAIMS FROM RX_CLAIMS``, ``to_json(r)``) is the whole row, as a struct
        in DuckDB and BigQuery or a composite in PostgreSQL: it reads every column."""
        if qualifier:
            source = _lookup_source(scope, qualifier)
            row = _row_source(scope, name, qualifier) if source is None and not outer else None
            if row is not None:
                for _, values in self._outputs(row):
                    yield from values
                return
            if source is None:  # struct field access: the value is (part of) the struct column
                if outer and _lookup_source(scope, outer) is not None:
                    yield from self._resolve(scope, qualifier, outer)
                else:
                    yield from self._resolve(scope, outer or qualifier)
                return
            sources: list[exp.Table | Scope] = [source]
        else:
            sources = list(_visible_sources(scope))
        named = False  # whether a source has a column of that name: it wins over a row's name
        for source in sources:
            if isinstance(source, exp.Table) and self._table_spelling(source) is None:
                if isinstance(source.this, exp.Identifier) and source.name:
                    yield source.name, name  # not a schema table: judge the column by its name
                continue
            for output, values in self._outputs(source):
                if output is None or output.lower() == name.lower():
                    named = named or output is not None
                    yield from values
        row = None if qualifier or named else _row_source(scope, name)
        if row is not None:
            for _, values in self._outputs(row):
                yield from values

    def _outputs(self, source: exp.Table | Scope | None) -> list[_Output]:
        """The columns a source produces, in order, each with the values it carries."""
        if isinstance(source, exp.Table):
            spelling = self._table_spelling(source)
            if spelling is None:
                return []
            columns = list(self.schema.columns[spelling.lower()].values())
            alias = source.args.get("alias")  # FROM RX_CLAIMS r(a, b) renames its first columns
            renamed = [c.name for c in alias.columns] if isinstance(alias, exp.TableAlias) else []
            return [
                (renamed[i] if i < len(renamed) else c, [(spelling, c)])
                for i, c in enumerate(columns)
            ]
        if source is None:
            return []
        key = id(source)
        if key in self._outputs_of:
            return self._outputs_of[key]
        self._outputs_of[key] = []  # a scope that reads itself (recursive CTE) sees no columns
        query = _scope_query(source)
        outputs: list[_Output] = []
        if query is None:  # a table function: its columns carry whatever its arguments hold
            outputs = [(None, list(self._exposed_columns(source, source.expression)))]
        else:
            inner = source if query is source.expression else self._scope_of.get(id(query))
            branches = [
                list(self._select_outputs(select_scope, select))
                for select_scope, select in (_select_scopes(inner) if inner else [])
            ]
            outputs = [(name, list(values)) for name, values in branches[0]] if branches else []
            for branch in branches[1:]:  # a set operation: names from the first branch
                for (_, values), (_, more) in zip(outputs, branch, strict=False):
                    values.extend(more)
            renamed = _alias_columns(source)
            outputs = [
                (renamed[i] if i < len(renamed) else name, values)
                for i, (name, values) in enumerate(outputs)
            ]
        self._outputs_of[key] = outputs
        return outputs

    def _select_outputs(self, scope: Scope, select: exp.Select) -> Iterator[_Output]:
        for projection in select.expressions:
            if is_star(projection):
                yield from self._star_outputs(scope, projection)
            else:
                name = None if projection.meta.get(ANY_NAME) else projection.alias_or_name
                yield name, list(self._exposed_columns(scope, projection))

    def _star_outputs(self, scope: Scope, node: exp.Expr) -> Iterator[_Output]:
        """The columns ``*``, ``t.*`` (with EXCLUDE, REPLACE or RENAME, or a LIKE filter) or
        ``COLUMNS(...)`` picks. ``s.*`` of a struct column ``s`` (not a table) returns its
        fields: the values the struct holds, under names we do not follow."""
        base = star_base(node)
        if base is None:
            return
        qualified = base.this if isinstance(base, exp.Columns) else base
        column = qualified if isinstance(qualified, exp.Column) else None
        qualifier = column.table if column is not None else ""
        sources: list[tuple[str, exp.Table | Scope]] = []
        if column is not None and qualifier:
            found = _lookup_source(scope, qualifier)
            if found is None:  # s.* or t.s.*: the fields of struct s
                yield None, list(self._resolve(scope, qualifier, column.text("db")))
                return
            sources = [(qualifier, found)]
        else:  # a star reads this scope's FROM, not an outer query's
            sources = [(alias, source) for alias, (_, source) in scope.selected_sources.items()]
        picks = star_picks(node)
        star = base.this if isinstance(base, exp.Column) else base
        replaced = {a.alias.lower(): a for a in star_list(star, "replace")}
        renamed = {a.this.name.lower(): a.alias for a in star_list(star, "rename")}
        for alias, source in sources:
            for name, values in self._outputs(source):
                if name is None:
                    yield name, values
                elif picks(alias, name):
                    key = name.lower()
                    if key in replaced:  # REPLACE (expr AS col): the value is expr's now
                        values = list(self._exposed_columns(scope, replaced[key]))
                    yield renamed.get(key, name), values

    def result_outputs(self, root: exp.Query) -> list[_Output]:
        """The columns ``root`` returns, in order, each with the (table, column) values it
        carries (a None name: columns that cannot be named, a table function's)."""
        scopes = traverse_scope(root)
        self._scope_of = {id(scope.expression): scope for scope in scopes}
        return self._outputs(scopes[-1]) if scopes else []


# --- helpers over sqlglot's scopes ---------------------------------------------------------


def _dotted(table: exp.Table) -> str:
    """``schema.table`` as written (without a catalog), or ``table`` when unqualified."""
    return f"{table.db}.{table.name}" if table.db else table.name


def _named_selects(expression: exp.Expr) -> list[str]:
    return list(expression.named_selects) if isinstance(expression, exp.Query) else []


def _has_star(expression: exp.Expr, scope: Scope) -> bool:
    """Whether a SELECT lists a literal ``*``, ``t.*`` or ``COLUMNS(*)``, all of a table's
    columns, what the select_star warning is about (``COLUMNS('regex')`` and ``* LIKE ...``
    already name the columns they want, ``s.*`` of a struct column its fields; the star a
    PIVOT/UNPIVOT keeps is not written)."""
    selects = expression.expressions if isinstance(expression, exp.Select) else []
    for select in selects:
        star = select.this if isinstance(select, (exp.Column, exp.Columns)) else select
        if not isinstance(star, exp.Star) or star.meta.get(KEPT) or star.args.get("ilike"):
            continue
        struct = isinstance(select, exp.Column) and select.table
        if struct and _lookup_source(scope, select.table) is None:
            continue
        return True
    return False


def _unwrap(query: exp.Expr) -> exp.Expr:
    while isinstance(query, exp.Subquery):
        query = query.this
    return query


def _scope_query(scope: Scope) -> exp.Query | None:
    """The query whose SELECT list makes a source's columns: the scope's own, a LATERAL's
    subquery, or None for a table function (UNNEST, range, ...) whose columns we cannot know."""
    expression = scope.expression
    if isinstance(expression, exp.Lateral):
        expression = _unwrap(expression.this)
    return expression if isinstance(expression, exp.Query) else None


def _alias_columns(scope: Scope) -> list[str]:
    """The column list written after a source's alias (``t(a, b)``, ``WITH c(a) AS``), which
    renames its first columns; for a recursive CTE's anchor it sits on the CTE, above the
    UNION."""
    node: exp.Expr | None = scope.expression
    while node is not None:
        alias = node.args.get("alias")
        if isinstance(alias, exp.TableAlias) and alias.columns:
            return [column.name for column in alias.columns]
        if isinstance(node, exp.UDTF) or not isinstance(
            node.parent, (exp.SetOperation, exp.Subquery, exp.CTE)
        ):
            return []
        node = node.parent
    return []


def _scope_names(scope: Scope) -> list[str] | None:
    """A derived table's, CTE's or LATERAL's column names in order, after any renaming; None
    when they cannot be known from the query text (a star, a table function)."""
    query = _scope_query(scope)
    selects = list(_branch_selects(query)) if query is not None else []
    if not selects or any(is_star(p) or p.meta.get(ANY_NAME) for p in selects[0].expressions):
        return None
    names = [projection.alias_or_name for projection in selects[0].expressions]
    renamed = _alias_columns(scope)
    return renamed + names[len(renamed) :]


def _branch_selects(expression: exp.Expr) -> Iterator[exp.Select]:
    if isinstance(expression, exp.Select):
        yield expression
    elif isinstance(expression, exp.SetOperation):
        yield from _branch_selects(expression.left)
        yield from _branch_selects(expression.right)
    elif isinstance(expression, exp.Subquery):
        yield from _branch_selects(expression.this)


def _select_scopes(scope: Scope) -> Iterator[tuple[Scope, exp.Select]]:
    """The SELECTs of a scope with the scope each runs in (a set operation has several)."""
    if scope.set_operation_scopes:
        for child in scope.set_operation_scopes:
            yield from _select_scopes(child)
    elif isinstance(scope.expression, exp.Select):
        yield scope, scope.expression


def _visible_sources(scope: Scope) -> Iterator[exp.Table | Scope]:
    seen: set[int] = set()
    current: Scope | None = scope
    while current is not None:
        for source in current.selected_sources.values():
            node = source[1]
            if id(node) not in seen:
                seen.add(id(node))
                yield node
        if not (current.is_subquery or current.is_correlated_subquery):
            break
        current = current.parent


def _row_source(scope: Scope, name: str, schema: str = "") -> exp.Table | Scope | None:
    """The FROM item whose whole row a column reference ``name`` (or ``schema.name``) stands
    for: the alias, or the name of an unaliased table (``main.RX_CLAIMS`` when FROM
    RX_CLAIMS or main.RX_CLAIMS); None when no FROM item is called that."""
    current: Scope | None = scope
    while current is not None:
        for alias, (node, source) in current.selected_sources.items():
            if alias.lower() != name.lower():
                continue
            if not schema:
                return source
            if isinstance(node, exp.Table) and not node.alias:
                written = node.db.lower()
                if written == schema.lower() or (
                    not written and schema.lower() in _DEFAULT_SCHEMAS
                ):
                    return source
        if not (current.is_subquery or current.is_correlated_subquery):
            break
        current = current.parent
    return None


def _lookup_source(scope: Scope, alias: str) -> exp.Table | Scope | None:
    current: Scope | None = scope
    while current is not None:
        for name, source in current.sources.items():
            if name.lower() == alias.lower():
                return source
        current = current.parent
    return None


def _within(node: exp.Expr, ancestor: exp.Expr) -> bool:
    parent = node.parent
    while parent is not None:
        if parent is ancestor:
            return True
        parent = parent.parent
    return False


def _in_subquery(node: exp.Expr, projection: exp.Expr) -> bool:
    """Whether ``node`` sits inside a subquery of ``projection``: it belongs to that query."""
    current = node
    while current is not projection and current.parent is not None:
        current = current.parent
        if isinstance(current, exp.Query):
            return True
    return False


def _is_limited(expression: exp.Expr) -> bool:
    """Whether a query returns a bounded number of rows: a LIMIT (or FETCH) on the whole query
    or on every branch of a set operation."""
    if expression.args.get("limit") is not None:
        return True
    selects = list(_branch_selects(expression))
    return bool(selects) and all(s.args.get("limit") is not None for s in selects)


def _is_bounded(expression: exp.Expr) -> bool:
    """Whether a derived table or CTE returns groups or a limited number of rows, so that
    reading it is not reading a big table row by row."""
    return any(_is_aggregated(s) for s in _branch_selects(expression)) or _is_limited(expression)


def _is_aggregated(select: exp.Select) -> bool:
    """Whether the SELECT returns groups rather than rows: GROUP BY, DISTINCT (one row per
    distinct value, like a GROUP BY of every column) or an aggregate of its own (not one
    inside a scalar subquery)."""
    if select.args.get("group") is not None or select.args.get("distinct") is not None:
        return True
    return any(_aggregates(projection) for projection in select.expressions)


def _aggregates(projection: exp.Expr) -> bool:
    """Whether a projection holds an aggregate of its own (not a window's, nor one inside a
    scalar subquery)."""
    return any(
        node.find_ancestor(exp.Window) is None and not _in_subquery(node, projection)
        for node in projection.find_all(exp.AggFunc)
    )


def _is_hidden(node: exp.Expr, projection: exp.Expr, kept: tuple[type[exp.Expr], ...] = ()) -> bool:
    """Whether the value of ``node`` (a column or subquery) cannot reach the output through
    ``projection``: it sits in a reducing aggregate (COUNT, SUM, ...) other than those
    ``kept``, a comparison (EXISTS and IN included), or a window's PARTITION/ORDER BY."""
    current: exp.Expr | None = node
    child: exp.Expr = node
    while current is not None and current is not projection.parent:
        parent = current.parent
        if isinstance(current, (*_REDUCING, exp.Predicate)) and not isinstance(current, kept):
            return True
        if isinstance(current, exp.Window) and child is not current.this:
            return True
        if isinstance(current, exp.If) and child is current.this:
            return True
        child = current
        current = parent
    return False


# --- where a result holds patient identifiers ------------------------------------------------

#: The columns of DuckDB's SUMMARIZE that hold values of the column summarized (its minimum,
#: maximum and quartiles are values of its rows); the others are counts and averages.
SUMMARY_VALUE_COLUMNS = ("min", "max", "q25", "q50", "q75")


@dataclass(frozen=True, slots=True)
class ResultIdentifiers:
    """Where a query's result holds values of direct patient identifiers.

    ``columns``: result column (by position) -> the identifiers whose values it carries
    (``MED_CLAIMS.PATIENT_ID``; a column named like one, ``PATIENT_ID``, when the query could not
    be followed). ``summarized``: for DuckDB's ``SUMMARIZE``, the summarized column (lower case)
    -> its identifiers: that row's :data:`SUMMARY_VALUE_COLUMNS` are identifier values.
    ``unplaced``: identifiers the result holds in columns that could not be told apart (a
    table function's, a star over what the schema does not list): none of its rows can be
    shown safely."""

    columns: Mapping[int, tuple[str, ...]] = field(default_factory=dict)
    summarized: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    unplaced: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.columns or self.summarized or self.unplaced)


def result_identifiers(
    sql: str,
    columns: Sequence[tuple[str, str]] | Sequence[str],
    schema: SchemaLike | None = None,
    *,
    dialect: str = "duckdb",
    identifiers: Mapping[tuple[str, str], IdentifierKind] | None = None,
) -> ResultIdentifiers:
    """Which columns of the result of ``sql`` (as run: ``columns`` are its ``(name, type)``
    or names, in order) hold values of direct patient identifiers.

    The query is followed as :func:`check_sql` follows it (aliases, subqueries, CTEs, stars,
    whole rows as structs, ``query('...')``), so ``SELECT PATIENT_ID AS p`` marks ``p``, and
    ``COUNT(DISTINCT PATIENT_ID) AS patient_id_count``, an aggregate, marks nothing; provider
    identifiers (NPIs) and quasi-identifiers are never marked. Where the query cannot be parsed
    the columns are judged by their names (and a struct's by its fields' names, from its type).
    Never raises on query text."""
    result = [(c, "") if isinstance(c, str) else (str(c[0]), str(c[1])) for c in columns]
    names = _Schema.from_mapping(SCHEMA if schema is None else schema)
    checker = _Checker(names, set(), identifiers)
    try:
        root = _statement(sql, dialect, checker)
    except Exception:  # what sqlglot cannot read, DuckDB ran
        return _unfollowed(sql, result, names, identifiers)
    if root is None or isinstance(root, exp.Describe):
        return ResultIdentifiers()  # names and types only
    try:
        if isinstance(root, exp.Summarize):
            inspected = _inspected(root)
            if inspected is None:
                return ResultIdentifiers()
            return _summarized(checker.result_outputs(inspected), checker)
        if not isinstance(root, exp.Query):
            return _unfollowed(sql, result, names, identifiers)
        outputs = checker.result_outputs(root)
    except Exception:  # a shape sqlglot's scopes cannot follow (two unaliased subqueries)
        return _unfollowed(sql, result, names, identifiers)
    direct = [(name, _direct(values, checker)) for name, values in outputs]
    if len(direct) == len(result) and all(name is not None for name, _ in direct):
        # one output per column, in order: each column is judged by what it carries
        return ResultIdentifiers({i: ids for i, (_, ids) in enumerate(direct) if ids})
    # columns we cannot line up (a star over a table function, say): match them by name, and
    # what carries an identifier under no name of the result is unplaced
    marked = _by_names(result, names, identifiers)
    placed: set[str] = set()
    for index, (column, _) in enumerate(result):
        carried = [
            ids for name, ids in direct if name is not None and name.lower() == column.lower()
        ]
        found = tuple(sorted({i for ids in carried for i in ids}))
        if found:
            marked[index] = tuple(sorted({*marked.get(index, ()), *found}))
            placed.update(found)
    unplaced = sorted({i for _, ids in direct for i in ids} - placed)
    return ResultIdentifiers(marked, unplaced=tuple(unplaced))


def _statement(sql: str, dialect: str, checker: _Checker) -> exp.Expr | None:
    """``sql`` parsed as :func:`check_sql` reads it (DuckDB's SHOW as DESCRIBE, PIVOT as the
    SELECT it stands for, ``query('...')`` inlined); None for a catalogue listing. Raises
    when it does not parse into one statement."""
    text = sql
    if dialect == "duckdb":
        shown = duckdb_show(sql)
        if isinstance(shown, exp.Show):
            return None
        text = shown
    statements = [s for s in sqlglot.parse(text, read=dialect) if s is not None]
    if len(statements) != 1:
        raise ValueError("not one statement")
    root = statements[0]
    with contextlib.suppress(Exception):
        root = desugared(root)
    if dialect == "duckdb":
        root = _inlined(root, checker)
    return root


def _direct(values: Iterable[tuple[str, str]], checker: _Checker) -> tuple[str, ...]:
    """The direct identifiers among the (table, column) values an output carries, spelt
    ``TABLE.COLUMN`` as the schema spells them."""
    return tuple(
        sorted(
            {
                f"{table}.{checker.schema.column_spelling(table, column)}"
                for table, column in values
                if classify_identifier(table, column, checker.identifiers) == "direct"
            }
        )
    )


def _summarized(outputs: list[_Output], checker: _Checker) -> ResultIdentifiers:
    """SUMMARIZE's rows (one per column of what it summarizes) that hold identifier values."""
    summarized: dict[str, tuple[str, ...]] = {}
    unplaced: set[str] = set()
    for name, values in outputs:
        ids = _direct(values, checker)
        if not ids:
            continue
        if name is None:
            unplaced.update(ids)
        else:
            key = name.lower()
            summarized[key] = tuple(sorted({*summarized.get(key, ()), *ids}))
    return ResultIdentifiers(summarized=summarized, unplaced=tuple(sorted(unplaced)))


#: Told as the identifier an unfollowed query may hold.
UNFOLLOWED = "(a query the identifier check could not follow)"


def _unfollowed(
    sql: str,
    columns: Sequence[tuple[str, str]],
    schema: _Schema,
    identifiers: Mapping[tuple[str, str], IdentifierKind] | None,
) -> ResultIdentifiers:
    """A query that could not be followed: the columns named like a direct identifier are
    marked; and when it names a table holding direct identifiers, any column may carry one, so
    the rest is unplaced (a privacy check errs on the side of withholding)."""
    marked = _by_names(columns, schema, identifiers)
    words = {word.lower() for word in _TYPE_WORD.findall(sql)}
    risky = [
        table
        for key, table in schema.tables.items()
        if key.rsplit(".", 1)[-1] in words
        and any(
            classify_identifier(table, column, identifiers) == "direct"
            for column in schema.columns[key].values()
        )
    ]
    return ResultIdentifiers(marked, unplaced=(UNFOLLOWED,) if risky else ())


_TYPE_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _by_names(
    columns: Sequence[tuple[str, str]],
    schema: _Schema,
    identifiers: Mapping[tuple[str, str], IdentifierKind] | None,
) -> dict[int, tuple[str, ...]]:
    """The result columns whose name is a direct identifier's (in a schema table holding that
    column, or by its name alone), or whose type is a struct with such a field."""

    def direct(name: str) -> str | None:
        for table in schema.tables_with(name) or [""]:
            if classify_identifier(table, name, identifiers) == "direct":
                return f"{table}.{schema.column_spelling(table, name)}" if table else name
        return None

    marked: dict[int, tuple[str, ...]] = {}
    for index, (name, kind) in enumerate(columns):
        found = {direct(name)}
        if "(" in kind:  # STRUCT(PATIENT_ID VARCHAR, ...), MAP(...): the fields' names
            found.update(direct(word) for word in _TYPE_WORD.findall(kind))
        ids = tuple(sorted(f for f in found if f is not None))
        if ids:
            marked[index] = ids
    return marked


#: What a masked value shows in the preview: equal values share the number.
MASK_MARKER = "[masked #{n}]"

#: Database errors about a value of the data (a failed cast or comparison), which quote it:
#: DuckDB's conversion errors, PostgreSQL's "invalid input syntax for type", BigQuery's "Bad
#: int64 value".
_DATA_ERROR = re.compile(
    r"conversion error|invalid input|out of range|could not (convert|cast)|date field|"
    r"invalid input syntax|bad [\w ]+ value|invalid (date|timestamp|number|numeric)",
    re.IGNORECASE,
)
#: A quoted value in an error message ('x' or "x", doubled quotes inside), or what BigQuery's
#: "Bad int64 value: x" and DuckDB's bare "Invalid Input Error: x" end with.
_QUOTED_VALUE = re.compile(
    r"'((?:[^']|'')*)'|\"((?:[^\"]|\"\")*)\"|"
    r"(?<=value: )(\S+)|(?<=Invalid Input Error: )(\S+)"
)


class IdentifierMask:
    """The SQL tool's preview mask for patient data (a :data:`~loopwright.tools.sql.PreviewMask`).

    The preview of a result goes to the model's provider, and from there into traces,
    transcripts and logs; the result files stay in the analyst's workspace. This mask shows
    each value of a direct patient identifier (:func:`result_identifiers`: ``PATIENT_ID``, a
    name, a date of birth, also renamed, inside a struct or a JSON row, or as SUMMARIZE's
    minimum and maximum) as ``[masked #1]``, ``[masked #2]``... (equal values share a number
    within one preview, so rows of one patient can still be told apart), and says which columns
    it masked and why. Aggregates (``COUNT(DISTINCT PATIENT_ID)``), provider identifiers (NPIs)
    and quasi-identifiers are shown as they are. When identifier values cannot be tied to
    columns, no row is shown. NULLs stay NULL (a missing id identifies no one).

    ``schema`` (``{table: [(column, type)]}``, default: the generated claims schema),
    ``dialect`` and ``identifiers`` are :func:`check_sql`'s."""

    def __init__(
        self,
        schema: SchemaLike | None = None,
        *,
        dialect: str = "duckdb",
        identifiers: Mapping[tuple[str, str], IdentifierKind] | None = None,
    ) -> None:
        self.schema = schema
        self.dialect = dialect
        self.identifiers = identifiers

    def error(self, sql: str, message: str) -> str:
        """The database's error ``message`` for ``sql`` with the values it quotes from the data
        masked, when it is about a value (a cast, a comparison) and the query reads a direct
        patient identifier: ``CAST(PATIENT_ID AS INTEGER)`` failed with "Could not convert
        string 'PT0013943796'". Values written in the query itself are kept (the model knows
        them), and so is every other message (unknown columns, syntax)."""
        if not _DATA_ERROR.search(message) or not self._reads_identifier(sql):
            return message
        written = sql.lower()
        masked = 0

        def replace(match: re.Match[str]) -> str:
            nonlocal masked
            value = next((g for g in match.groups() if g is not None), "")
            if not value or value.lower() in written:
                return match.group(0)
            masked += 1
            text = match.group(0)
            quote = text[0] if text[0] in "'\"" else ""
            return f"{quote}[masked]{quote}"

        told = _QUOTED_VALUE.sub(replace, message)
        if not masked:
            return message
        return (
            f"{told}\n(The values the database quoted from the data are masked: the query reads "
            "a direct patient identifier, whose values are not shown to you.)"
        )

    def _reads_identifier(self, sql: str) -> bool:
        """Whether ``sql`` names a direct identifier column (of a schema table holding one, or
        named like one), or takes whole rows (``*``, ``to_json(r)``) of a table holding one."""
        schema = _Schema.from_mapping(SCHEMA if self.schema is None else self.schema)
        words = {word.lower() for word in _TYPE_WORD.findall(sql)}
        for word in words:
            for table in schema.tables_with(word) or [""]:
                if classify_identifier(table, word, self.identifiers) == "direct":
                    return True
        # SELECT * (not COUNT(*)) of a table holding one: the cast may be of any column
        return "*" in sql.replace("(*)", "") and bool(
            _unfollowed(sql, [], schema, self.identifiers).unplaced
        )

    def __call__(
        self, sql: str, columns: Sequence[tuple[str, str]], rows: Sequence[tuple[Any, ...]]
    ) -> Any:  # MaskedPreview | None (typed loosely: the SQL tool is imported lazily)
        from loopwright.tools.sql import MaskedPreview

        found = result_identifiers(
            sql, columns, self.schema, dialect=self.dialect, identifiers=self.identifiers
        )
        if not found:
            return None
        names = [str(column[0]) for column in columns]
        if found.unplaced:
            held = ", ".join(i for i in found.unplaced if i != UNFOLLOWED) or None
            why = (
                f"the result holds values of {held}, a direct patient identifier, in columns "
                "that cannot be told apart"
                if held
                else "the query could not be followed to tell which columns hold direct patient "
                "identifiers"
            )
            return MaskedPreview(
                [],
                f"The preview rows were withheld (patient privacy): {why}. The saved files hold "
                "the full result; to see rows, select named columns and leave the identifier "
                "out or aggregate it (COUNT(DISTINCT ...)).",
                tuple(names),
                withheld=True,
            )
        numbers: dict[str, int] = {}

        def marker(value: Any) -> Any:
            if value is None:
                return None
            key = repr(value)
            return MASK_MARKER.format(n=numbers.setdefault(key, len(numbers) + 1))

        masked_rows = [list(row) for row in rows]
        told: list[str] = []
        if found.columns:
            for index in sorted(found.columns):
                for row in masked_rows:
                    if index < len(row):
                        row[index] = marker(row[index])
                told.append(f"{names[index]} ({', '.join(found.columns[index])})")
            shown = tuple(names[i] for i in sorted(found.columns))
            kind = "a direct patient identifier" if len(told) == 1 else "direct patient identifiers"
            what = f"Masked in this preview: {'; '.join(told)}, {kind}: its values are"
            if len(told) > 1:
                what = f"Masked in this preview: {'; '.join(told)}, {kind}: their values are"
        else:
            lowered = [name.lower() for name in names]
            if "column_name" not in lowered:  # not SUMMARIZE's shape: nothing to tie rows to
                return MaskedPreview(
                    [],
                    "The preview rows were withheld (patient privacy): they summarize "
                    f"{', '.join(i for ids in found.summarized.values() for i in ids)}, a "
                    "direct patient identifier. The saved files hold the full result.",
                    tuple(names),
                    withheld=True,
                )
            at = lowered.index("column_name")
            stats = [i for i, name in enumerate(lowered) if name in SUMMARY_VALUE_COLUMNS]
            summarized: list[str] = []
            for row in masked_rows:
                ids = found.summarized.get(str(row[at]).lower()) if at < len(row) else None
                if ids is None:
                    continue
                for index in stats:
                    row[index] = marker(row[index])
                summarized.append(f"{row[at]} ({', '.join(ids)})")
            if not summarized:
                return None  # the identifier's row is past the preview
            shown = tuple(names[i] for i in stats)
            kind = "a direct patient identifier" if len(summarized) == 1 else "direct identifiers"
            what = (
                f"Masked in this preview: the {', '.join(names[i] for i in stats)} of "
                f"{'; '.join(summarized)}, {kind}: these values are"
            )
        return MaskedPreview(
            [tuple(row) for row in masked_rows],
            f"{what} not shown to you (patient privacy; equal values share a number within this "
            "preview). The saved files hold the real values: use them in SQL (joins, "
            "COUNT(DISTINCT ...)) and report counts, not patient ids.",
            shown,
        )


__all__ = [
    "DEFAULT_BIG_TABLES",
    "MASK_MARKER",
    "SUMMARY_VALUE_COLUMNS",
    "UNFOLLOWED",
    "IdentifierMask",
    "ResultIdentifiers",
    "SQLCheck",
    "SQLIssue",
    "check_sql",
    "classify_identifier",
    "result_identifiers",
]
