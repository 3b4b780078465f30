"""Deterministic checks of an SQL query against a schema: names, identifiers, result size.

An LLM judge can say whether a query answers the question; these checks catch, for free and
every time, the mistakes that need no judgement:

- unknown tables and columns, with the closest names as suggestions (and the table a column
  really lives in);
- results that expose direct patient identifiers (``PATIENT_ID``, names, dates of birth, ...)
  row by row; aggregates over them (``COUNT(DISTINCT PATIENT_ID)``) are fine;
- patient quasi-identifiers (birth year, sex) and provider identifiers (NPIs, names) returned
  row by row: NPIs are public business identifiers, not patient data, but aggregated outputs
  are preferred;
- ``SELECT *`` on a big table, and row-level output from a big table without a ``LIMIT``.

The query is parsed with sqlglot (DuckDB dialect by default); ``check_sql`` returns the issues
with a severity: ``error`` (wrong or not allowed), ``warning`` (works, but should change) or
``info``.
"""

from __future__ import annotations

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

Severity = Literal["error", "warning", "info"]
IdentifierKind = Literal["direct", "quasi", "provider"]
SchemaLike = Mapping[str, Sequence[tuple[str, str]] | Sequence[str]]

#: the generated claims tables large enough that row-level output needs a LIMIT
DEFAULT_BIG_TABLES = frozenset({"RX_CLAIMS", "MED_CLAIMS", "PROVIDER_PAYMENTS"})

# aggregates whose result does not reveal the values aggregated (MIN/MAX/ANY_VALUE/ARRAY_AGG do)
_REDUCING: tuple[type[exp.Expr], ...] = (
    exp.Count, exp.CountIf, exp.Sum, exp.Avg, exp.ApproxDistinct, exp.Stddev, exp.StddevPop,
    exp.StddevSamp, exp.Variance, exp.VariancePop, exp.Corr, exp.CovarPop, exp.CovarSamp,
    exp.Median, exp.Quantile, exp.PercentileCont, exp.PercentileDisc, exp.Hll,
    exp.Rank, exp.DenseRank, exp.PercentRank, exp.CumeDist, exp.Ntile, exp.Skewness,
    exp.Kurtosis, exp.RowNumber,
)  # fmt: skip

_DIRECT_PATTERN = re.compile(
    r"(^|_)(ssn|social_security|dob|date_of_birth|birth_?date|mrn|medical_record|member_id|"
    r"subscriber_id|email|e_mail|phone|telephone|street|address|patient_?id|patient_?name|"
    r"patient_(first|last)_?name|full_?name)($|_)",
    re.IGNORECASE,
)
_QUASI_PATTERN = re.compile(
    r"(^|_)(zip|zip_?code|postal|birth_?year|year_of_birth|age|gender|sex)($|_)", re.IGNORECASE
)
_PERSON_TABLE = re.compile(r"patient|member|person|beneficiar|enrollee", re.IGNORECASE)
_NAME_COLUMN = re.compile(r"(^|_)(first_?name|last_?name|name)$", re.IGNORECASE)


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

    @classmethod
    def from_mapping(cls, schema: SchemaLike) -> _Schema:
        result = cls()
        for table, columns in schema.items():
            key = table.lower()
            result.tables[key] = table
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
    (``ssn``, ``date_of_birth``, ``patient_id``, names in a patient table, ``zip``, ...).
    """
    key = (table.upper(), column.upper())
    if identifiers is not None:
        for (t, c), kind in identifiers.items():
            if (t.upper(), c.upper()) == key:
                return kind
    ordered: tuple[tuple[IdentifierKind, frozenset[tuple[str, str]]], ...] = (
        ("direct", DIRECT_IDENTIFIERS),
        ("quasi", QUASI_IDENTIFIERS),
        ("provider", PROVIDER_IDENTIFIERS),
    )
    for kind, known in ordered:
        if any((t.upper(), c.upper()) == key for t, c in known):
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
    row-level output are flagged (default: the claims fact tables)."""
    names = _Schema.from_mapping(SCHEMA if schema is None else schema)
    big = {t.lower() for t in (DEFAULT_BIG_TABLES if big_tables is None else big_tables)}
    try:
        statements = [s for s in sqlglot.parse(sql, read=dialect) if s is not None]
    except SqlglotError as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        message = f"The query does not parse ({first}); fix the syntax."
        return SQLCheck(sql, (SQLIssue("error", "parse_error", message),))
    if not statements:
        return SQLCheck(sql, (SQLIssue("error", "empty", "The query is empty; write a SELECT."),))
    if len(statements) > 1:
        message = "The text holds several statements; send one query."
        return SQLCheck(sql, (SQLIssue("error", "multiple_statements", message),))
    root = statements[0]
    if not isinstance(root, exp.Query):
        kind = root.key.upper()
        message = (
            f"This is a {kind} statement, not a query; "
            "only SELECT (and WITH ... SELECT) is allowed."
        )
        return SQLCheck(sql, (SQLIssue("error", "not_a_query", message),))

    checker = _Checker(names, big, identifiers)
    return SQLCheck(sql, tuple(checker.run(root)), tuple(sorted(checker.tables_used)))


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
        self._seen: set[tuple[str, str, str | None]] = set()

    def add(self, issue: SQLIssue) -> None:
        key = (issue.code, issue.message, issue.column)
        if key not in self._seen:
            self._seen.add(key)
            self.issues.append(issue)

    def run(self, root: exp.Query) -> list[SQLIssue]:
        try:
            scopes = traverse_scope(root)
        except SqlglotError as error:
            self.add(SQLIssue("error", "parse_error", f"The query cannot be analysed ({error})."))
            return self.issues
        for scope in scopes:
            self._check_names(scope)
        if scopes:
            self._check_output(scopes[-1])
        order = {"error": 0, "warning": 1, "info": 2}
        return sorted(self.issues, key=lambda issue: order[issue.severity])

    # names ----------------------------------------------------------------------------

    def _real_table(self, table: exp.Table) -> str | None:
        """The schema table a FROM item names, or None (reported) when unknown."""
        if not isinstance(table.this, exp.Identifier):  # read_csv(...), range(...): not ours
            return None
        spelling = self.schema.table(table.name)
        if spelling is None:
            close = difflib.get_close_matches(
                table.name.lower(), list(self.schema.tables), n=3, cutoff=0.5
            )
            suggestions = [self.schema.tables[c] for c in close]
            hint = f"did you mean {' or '.join(suggestions)}?" if suggestions else None
            known = ", ".join(sorted(self.schema.tables.values()))
            self.add(
                SQLIssue(
                    "error",
                    "unknown_table",
                    f"Table {table.name} does not exist; use one of: {known}.",
                    hint,
                    table=table.name,
                )
            )
            return None
        self.tables_used.add(spelling)
        return spelling

    def _source_columns(self, source: exp.Table | Scope) -> set[str] | None:
        """Lower-case output columns of a source; None when unknown (a star, a function)."""
        if isinstance(source, Scope):
            if _has_star(source.expression):
                return None
            return {name.lower() for name in _named_selects(source.expression)}
        spelling = (
            self.schema.table(source.name) if isinstance(source.this, exp.Identifier) else None
        )
        if spelling is None:
            return None
        return set(self.schema.columns[spelling.lower()])

    def _check_names(self, scope: Scope) -> None:
        for table in scope.sources.values():
            if isinstance(table, exp.Table):
                self._real_table(table)
        aliases = {name.lower() for name in _named_selects(scope.expression)}
        projections = (
            scope.expression.expressions if isinstance(scope.expression, exp.Select) else []
        )
        lateral = {p.alias.lower() for p in projections if isinstance(p, exp.Alias)}
        for column in scope.columns:
            if isinstance(column.this, exp.Star):
                continue
            name = column.name
            if not name:
                continue
            qualifier = column.table
            if qualifier:
                found = _lookup_source(scope, qualifier)
                if found is None:
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
            self._unknown_column(name, candidates[0] if len(candidates) == 1 else None, None)

    def _unknown_column(
        self, name: str, source: exp.Table | Scope | None, alias: str | None
    ) -> None:
        where = ""
        pool: list[str] = []
        if isinstance(source, exp.Table) and self.schema.table(source.name):
            table = self.schema.table(source.name) or source.name
            where = f" in {table}"
            pool = list(self.schema.columns[table.lower()].values())
        elif isinstance(source, Scope):
            where = f" in {alias}" if alias else ""
            pool = list(_named_selects(source.expression))
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

    def _check_output(self, root: Scope) -> None:
        selects = list(_branch_selects(root.expression))
        exposed: dict[tuple[str, str], IdentifierKind] = {}
        row_level = any(not _is_aggregated(select) for select in selects)
        for select_scope, select in _select_scopes(root):
            for projection in select.expressions:
                for table, column in self._exposed_columns(select_scope, projection):
                    kind = classify_identifier(table, column, self.identifiers)
                    if kind is not None:
                        exposed[(table, column)] = kind
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
        if quasi and row_level:
            self.add(SQLIssue(
                "warning", "quasi_identifier",
                f"The result returns {', '.join(quasi)} row by row; combined with other "
                "patient attributes these can re-identify a patient, so report them in "
                "aggregate."))  # fmt: skip
        if providers and row_level:
            self.add(SQLIssue(
                "info", "provider_identifier",
                f"The result lists {', '.join(providers)} row by row; provider identifiers are "
                "public business information, not patient data, but aggregated outputs (GROUP "
                "BY with counts or totals) are preferred."))  # fmt: skip
        if any(_has_star(select) for select in selects) and reads_big:
            self.add(SQLIssue(
                "warning", "select_star",
                f"SELECT * on {', '.join(sorted(reads_big))} returns every column of a big "
                "table; name the columns you need."))  # fmt: skip
        limited = root.expression.args.get("limit") is not None or all(
            s.args.get("limit") is not None for s in selects
        )
        if row_level and reads_big and not limited:
            self.add(SQLIssue(
                "warning", "missing_limit",
                f"The query returns row-level data from {', '.join(sorted(reads_big))} with no "
                "LIMIT; aggregate it or add a LIMIT.",
                "add LIMIT 1000, or GROUP BY the columns you want to count"))  # fmt: skip

    def _reads_big(self, scope: Scope) -> set[str]:
        """Big tables that feed this scope's rows (through derived tables and CTEs)."""
        found: set[str] = set()
        for source in _visible_sources(scope):
            if isinstance(source, exp.Table):
                spelling = self.schema.table(source.name) if source.name else None
                if spelling and spelling.lower() in self.big:
                    found.add(spelling)
            elif isinstance(source, Scope) and not any(
                _is_aggregated(s) for s in _branch_selects(source.expression)
            ):
                found |= self._reads_big(source)
        for union_scope in scope.set_operation_scopes:
            found |= self._reads_big(union_scope)
        return found

    def _exposed_columns(
        self, scope: Scope, projection: exp.Expr, depth: int = 0
    ) -> Iterator[tuple[str, str]]:
        """(table, column) pairs whose values reach the output through ``projection``."""
        if depth > 20:
            return
        if isinstance(projection, exp.Star) or (
            isinstance(projection, exp.Column) and isinstance(projection.this, exp.Star)
        ):
            qualifier = projection.table if isinstance(projection, exp.Column) else ""
            sources = (
                [_lookup_source(scope, qualifier)] if qualifier else list(_visible_sources(scope))
            )
            for source in sources:
                yield from self._all_columns(source, depth)
            return
        for column in projection.find_all(exp.Column):
            if isinstance(column.this, exp.Star) or _is_hidden(column, projection):
                continue
            yield from self._resolve(scope, column, depth)

    def _all_columns(
        self, source: exp.Table | Scope | None, depth: int
    ) -> Iterator[tuple[str, str]]:
        if isinstance(source, exp.Table):
            spelling = self.schema.table(source.name) if source.name else None
            if spelling:
                for column in self.schema.columns[spelling.lower()].values():
                    yield spelling, column
        elif isinstance(source, Scope):
            for select_scope, select in _select_scopes(source):
                for projection in select.expressions:
                    yield from self._exposed_columns(select_scope, projection, depth + 1)

    def _resolve(self, scope: Scope, column: exp.Column, depth: int) -> Iterator[tuple[str, str]]:
        qualifier = column.table
        sources = [_lookup_source(scope, qualifier)] if qualifier else list(_visible_sources(scope))
        for source in sources:
            if isinstance(source, exp.Table):
                spelling = self.schema.table(source.name) if source.name else None
                if spelling and self.schema.has_column(spelling, column.name):
                    yield spelling, column.name
                elif spelling is None and source.name:
                    yield source.name, column.name  # unknown table: judge by the name
            elif isinstance(source, Scope):
                for select_scope, select in _select_scopes(source):
                    for projection in select.expressions:
                        if projection.alias_or_name.lower() == column.name.lower():
                            yield from self._exposed_columns(select_scope, projection, depth + 1)
                        elif isinstance(projection, exp.Star) or (
                            isinstance(projection, exp.Column)
                            and isinstance(projection.this, exp.Star)
                        ):
                            for table, name in self._exposed_columns(
                                select_scope, projection, depth + 1
                            ):
                                if name.lower() == column.name.lower():
                                    yield table, name


# --- helpers over sqlglot's scopes ---------------------------------------------------------


def _named_selects(expression: exp.Expr) -> list[str]:
    return list(expression.named_selects) if isinstance(expression, exp.Query) else []


def _has_star(expression: exp.Expr) -> bool:
    selects = expression.expressions if isinstance(expression, exp.Select) else []
    return any(
        isinstance(s, exp.Star) or (isinstance(s, exp.Column) and isinstance(s.this, exp.Star))
        for s in selects
    )


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


def _is_aggregated(select: exp.Select) -> bool:
    """Whether the SELECT returns groups rather than rows (GROUP BY or an aggregate)."""
    if select.args.get("group") is not None:
        return True
    for projection in select.expressions:
        for node in projection.find_all(exp.AggFunc):
            if node.find_ancestor(exp.Window) is None:
                return True
    return False


def _is_hidden(column: exp.Column, projection: exp.Expr) -> bool:
    """Whether the column's value cannot reach the output through ``projection``: it sits in
    a reducing aggregate (COUNT, SUM, ...), a comparison, or a window's PARTITION/ORDER BY."""
    node: exp.Expr | None = column
    child: exp.Expr = column
    while node is not None and node is not projection.parent:
        parent = node.parent
        if isinstance(node, (*_REDUCING, exp.Predicate)):
            return True
        if isinstance(node, exp.Window) and child is not node.this:
            return True
        if isinstance(node, exp.If) and child is node.this:
            return True
        child = node
        node = parent
    return False


__all__ = [
    "DEFAULT_BIG_TABLES",
    "SQLCheck",
    "SQLIssue",
    "check_sql",
    "classify_identifier",
]
