"""Which columns a star-like projection picks, as DuckDB reads it.

``*`` and ``t.*`` with ``EXCLUDE``, ``REPLACE`` and ``RENAME``; DuckDB's name filters on a star
(``* LIKE 'PAT%'``, ``* ILIKE``, ``* GLOB``, ``* SIMILAR TO``, with ``NOT`` and ``ESCAPE``); and
``COLUMNS(...)`` with a regular expression or a list of names. ``sqlcheck`` follows the values
of the columns picked to tell whether a query returns patient identifiers.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterator

from sqlglot import exp

#: DuckDB's filters on the names a star picks: ``* LIKE 'PAT%'``, ``* NOT ILIKE ...``,
#: ``* GLOB ...``, ``* SIMILAR TO ...`` (``ESCAPE`` and ``NOT`` wrap them)
STAR_FILTERS: tuple[type[exp.Expr], ...] = (
    exp.Like, exp.ILike, exp.Glob, exp.SimilarTo, exp.Escape, exp.Not,
)  # fmt: skip


def star_base(node: exp.Expr) -> exp.Expr | None:
    """The ``*``, ``t.*`` or ``COLUMNS(...)`` a projection picks columns with, under any of
    DuckDB's name filters on it (``* LIKE 'PAT%'``, ``NOT ILIKE``, ``GLOB``, ``SIMILAR TO``,
    with an ``ESCAPE``); None for an expression that is not a star."""
    while isinstance(node, STAR_FILTERS):
        node = node.this
    if isinstance(node, (exp.Star, exp.Columns)) or (
        isinstance(node, exp.Column) and isinstance(node.this, exp.Star)
    ):
        return node
    return None


def is_star(projection: exp.Expr) -> bool:
    """``*``, ``t.*`` (with or without EXCLUDE, or a LIKE filter) or ``COLUMNS(...)``: several
    columns at once."""
    return star_base(projection) is not None


def star_picks(node: exp.Expr) -> Callable[[str, str], bool]:
    """Which source columns a star-like projection picks, by the source's alias and the
    column's name. A selection we cannot evaluate (a lambda, a regex Python cannot read, a
    pattern that is not a literal) picks every column: a privacy check errs on the side of
    flagging."""
    filters: list[Callable[[str], bool]] = []
    current = node
    while isinstance(current, STAR_FILTERS):
        keep, current = _name_filter(current)
        filters.append(keep)
    star = current.this if isinstance(current, exp.Column) else current
    if isinstance(star, exp.Columns):
        spec = star.this
        if isinstance(spec, exp.Column) and isinstance(spec.this, exp.Star):
            spec = spec.this  # COLUMNS(t.*): the qualifier is read by _star_outputs
        if isinstance(spec, exp.Literal) and spec.is_string:
            filters.append(_regex_filter(spec.name))
        elif isinstance(spec, exp.Array) and all(
            isinstance(e, exp.Literal) for e in spec.expressions
        ):
            listed = {e.name.lower() for e in spec.expressions}
            filters.append(lambda name: name.lower() in listed)
        if not isinstance(spec, exp.Star):
            return lambda _source, name: all(keep(name) for keep in filters)
        star = spec
    ilike = star.args.get("ilike") if isinstance(star, exp.Star) else None
    if isinstance(ilike, exp.Literal) and ilike.is_string:  # * ILIKE 'pat%'
        filters.append(_pattern_filter(exp.ILike, ilike.name))
    elif ilike is not None:
        filters.append(lambda name: True)
    excluded = star.args.get("except_") or star.args.get("except") or []
    # EXCLUDE (r.PATIENT_ID) drops r's column only: m.PATIENT_ID of a join still goes out
    dropped = {
        (column.table.lower(), column.name.lower())
        for column in excluded
        if isinstance(column, exp.Column)
    }

    def picks(source: str, name: str) -> bool:
        key = name.lower()
        if ("", key) in dropped or (source.lower(), key) in dropped:
            return False
        return all(keep(name) for keep in filters)

    return picks


def _regex_filter(pattern: str) -> Callable[[str], bool]:
    """COLUMNS('regex') and ``* SIMILAR TO``: a case-sensitive search, as DuckDB does."""
    try:
        compiled = re.compile(pattern)
    except re.error:
        return lambda name: True
    return lambda name: compiled.search(name) is not None


def _name_filter(node: exp.Expr) -> tuple[Callable[[str], bool], exp.Expr]:
    """The column names a filter on a star (``* LIKE``, ``ILIKE``, ``GLOB`` or ``SIMILAR
    TO``, with NOT or ESCAPE) keeps, and the node it filters; every name when the pattern is
    not a literal."""
    escape: str | None = None
    negated = False
    while isinstance(node, (exp.Escape, exp.Not)):
        if isinstance(node, exp.Escape) and isinstance(node.expression, exp.Literal):
            escape = node.expression.name
        negated ^= isinstance(node, exp.Not)
        node = node.this
    negated ^= bool(node.args.get("negate"))
    spec = node.args.get("expression")
    if not (isinstance(spec, exp.Literal) and spec.is_string):
        return (lambda name: True), node.this
    matches = _pattern_filter(type(node), spec.name, escape)
    return ((lambda name: not matches(name)) if negated else matches), node.this


def _pattern_filter(
    kind: type[exp.Expr], pattern: str, escape: str | None = None
) -> Callable[[str], bool]:
    """Whether a column name matches a LIKE (case-sensitive), ILIKE, GLOB or SIMILAR TO (a
    regex search, as DuckDB applies it to a star) pattern."""
    if kind is exp.SimilarTo:
        return _regex_filter(pattern)
    if kind is exp.Glob:
        return lambda name: fnmatch.fnmatchcase(name, pattern)
    if kind in (exp.Like, exp.ILike):
        flags = re.DOTALL | (re.IGNORECASE if kind is exp.ILike else 0)
        compiled = re.compile(_like_regex(pattern, escape), flags)
        return lambda name: compiled.fullmatch(name) is not None
    return lambda name: True


def _like_regex(pattern: str, escape: str | None) -> str:
    """A LIKE pattern as a regular expression: ``%`` any text, ``_`` one character."""
    parts: list[str] = []
    chars = iter(pattern)
    for char in chars:
        if escape and char == escape:
            parts.append(re.escape(next(chars, "")))
        elif char == "%":
            parts.append(".*")
        elif char == "_":
            parts.append(".")
        else:
            parts.append(re.escape(char))
    return "".join(parts)


def star_list(star: exp.Expr, arg: str) -> list[exp.Alias]:
    """A star's REPLACE or RENAME list: ``expr AS column`` pairs."""
    items = star.args.get(arg) if isinstance(star, exp.Star) else None
    return [item for item in items or [] if isinstance(item, exp.Alias)]


def value_nodes(projection: exp.Expr) -> Iterator[exp.Expr]:
    """The columns, stars and subqueries whose values ``projection`` computes with; not the
    names in a star's EXCLUDE list, nor what a subquery reads (its own scope resolves it)."""
    for node in projection.walk(
        bfs=False, prune=lambda n: n is not projection and (is_star(n) or isinstance(n, exp.Query))
    ):
        if isinstance(node, (exp.Column, exp.Query)) or is_star(node):
            yield node
