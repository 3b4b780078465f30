"""DuckDB's PIVOT and UNPIVOT statements, written as the SELECT each stands for.

sqlglot reads DuckDB's ``PIVOT t ON c IN (...) USING agg GROUP BY g`` and ``UNPIVOT t ON a, b
INTO NAME n VALUE v`` as nodes that are no query and that its scopes do not enter, and the SQL
standard's ``FROM t PIVOT (agg FOR c IN (...))`` as a table with the table's columns.
:func:`desugared` rewrites each into the SELECT it stands for, so that ``sqlcheck`` follows
names and identifiers through it like through any query.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlglot import exp

from loopwright.healthcare.sqlstars import value_nodes

#: marks (in a node's ``meta``) on the SELECT written for a PIVOT or UNPIVOT statement: the
#: star standing for the columns it keeps (not a ``SELECT *`` the agent wrote), and a column
#: whose name DuckDB makes up from values or expressions (it matches any name)
KEPT = "sqlcheck_kept_columns"
ANY_NAME = "sqlcheck_any_name"


def desugared(tree: exp.Expr) -> exp.Expr:
    """``tree`` with each PIVOT and UNPIVOT written as the SELECT it stands for, so that names,
    identifiers and row counts are followed through it like through any query.

    DuckDB's statements (``PIVOT t ON c IN (...) USING agg GROUP BY g``, ``UNPIVOT t ON a, b
    INTO NAME n VALUE v``), which the SQL tool runs at the top, in a subquery or in a CTE,
    sqlglot reads as a node that is no query and that its scopes do not enter; the SQL
    standard's ``FROM t PIVOT (agg FOR c IN (...))`` it reads as a table whose columns would
    be the table's."""
    if not any(_rewritable(node) for node in tree.find_all(exp.Pivot)):
        return tree

    def rewrite(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Pivot) and node.this is not None:
            return _pivot_query(node)
        if not isinstance(node, (exp.Table, exp.Subquery)):
            return node
        pivots = node.args.get("pivots")
        if pivots and all(_rewritable(pivot) for pivot in pivots):
            return _pivoted_source(node, pivots)
        return node

    return tree.transform(rewrite)


def _rewritable(pivot: exp.Pivot) -> bool:
    """Whether a PIVOT/UNPIVOT is one this module writes as a query: DuckDB's statement, or
    the SQL standard's clause on a FROM item with its ``FOR c IN (...)``."""
    if pivot.this is not None:
        return True
    fields = pivot.args.get("fields") or []
    return (
        isinstance(pivot.parent, (exp.Table, exp.Subquery))
        and len(fields) == 1
        and all(isinstance(field, exp.In) for field in fields)
    )


def _pivoted_source(source: exp.Table | exp.Subquery, pivots: list[exp.Pivot]) -> exp.Expr:
    """``FROM t PIVOT (agg FOR c IN (...)) p`` as ``FROM (PIVOT t ON c IN (...) USING agg) p``
    (and UNPIVOT (v FOR n IN (a, b)) as DuckDB's UNPIVOT t ON a, b INTO NAME n VALUE v); the
    result is named by the clause's alias, else the FROM item's."""
    current: exp.Expr = source.copy()
    alias = source.alias
    current.set("pivots", None)
    for pivot in pivots:
        field = pivot.args["fields"][0]
        if pivot.args.get("unpivot"):
            statement = exp.Pivot(
                this=current,
                expressions=[e.copy() for e in field.expressions],
                unpivot=True,
                into=exp.UnpivotColumns(
                    this=field.this.copy(), expressions=[e.copy() for e in pivot.expressions]
                ),
            )
        else:
            on = exp.In(this=field.this.copy(), expressions=[e.copy() for e in field.expressions])
            using = [e.copy() for e in pivot.expressions]
            statement = exp.Pivot(this=current, expressions=[on], using=using)
        alias = pivot.alias or alias
        current = exp.Subquery(
            this=_pivot_query(statement, exact=False),
            alias=exp.TableAlias(this=exp.to_identifier(alias)) if alias else None,
        )
    return current


def _pivot_query(pivot: exp.Pivot, exact: bool = True) -> exp.Select:
    """The SELECT a DuckDB ``PIVOT`` or ``UNPIVOT`` statement stands for.

    ``PIVOT t ON c IN (x, y) USING agg AS a GROUP BY g`` returns per group ``g`` the aggregate
    over the rows where ``c`` is each listed value: ``SELECT g, agg AS x_a, agg AS y_a FROM t
    WHERE c IN (x, y) GROUP BY g``. Without GROUP BY it groups by every column not named in
    ON or USING (a star EXCLUDE here: PATIENT_ID among them is returned). Without IN, the
    distinct values of ``c`` become column names: ``c`` is returned too.

    ``UNPIVOT t ON a, b INTO NAME n VALUE v`` returns, for every row and every column
    unpivoted, the other columns, the column's name and its value: ``SELECT * EXCLUDE (a, b),
    'a' AS n, [a, b] AS v FROM t``, row by row.

    ``exact`` False: the pivot columns' names follow another dialect's rules (the SQL
    standard's clause): only a single unaliased aggregate over string values is named here."""
    select = exp.Select().from_(desugared(pivot.this.copy()))
    ons = [on.copy() for on in pivot.expressions]
    named = {
        column.name.lower(): column.name
        for on in ons
        for column in value_nodes(on.this if isinstance(on, (exp.In, exp.Alias)) else on)
        if isinstance(column, exp.Column) and not isinstance(column.this, exp.Star)
    }
    if pivot.args.get("unpivot"):
        into = pivot.args.get("into")
        name = into.this.name if isinstance(into, exp.UnpivotColumns) and into.this else "name"
        values = [e.name for e in into.expressions] if isinstance(into, exp.UnpivotColumns) else []
        unpivoted = [
            exp.Columns(this=on) if isinstance(on, exp.Star) else on.unalias() for on in ons
        ]
        projections: list[exp.Expr] = [
            _kept_columns(named.values()),
            exp.alias_(exp.Literal.string(""), name, quoted=True),
        ]
        projections += [
            exp.alias_(exp.Array(expressions=[u.copy() for u in unpivoted]), value, quoted=True)
            for value in values or ["value"]
        ]
        return select.select(*projections, copy=False)
    usings = [u.copy() for u in pivot.args.get("using") or []]
    usings = usings or [exp.Count(this=exp.Star())]  # PIVOT without USING counts the rows
    named.update(
        (column.name.lower(), column.name)
        for using in usings
        for column in value_nodes(using)
        if isinstance(column, exp.Column) and not isinstance(column.this, exp.Star)
    )
    group = pivot.args.get("group")
    projections = (
        [key.copy() for key in group.expressions]
        if isinstance(group, exp.Group)
        else [_kept_columns(named.values())]
    )
    for on in ons:
        if not isinstance(on, exp.In):  # its distinct values name the output columns
            projections.append(_any_name(on))
    for name, using in _pivot_columns(ons, usings, exact):
        value = using.unalias().copy()
        projections.append(exp.alias_(value, name, quoted=True) if name else _any_name(value))
    select = select.select(*projections, copy=False)
    filters = [on for on in ons if isinstance(on, exp.In)]
    if filters:
        select = select.where(*filters, copy=False)
    select.set("group", group.copy() if isinstance(group, exp.Group) else exp.Group(all=True))
    return select


def _kept_columns(dropped: Iterable[str]) -> exp.Star:
    """``* EXCLUDE (dropped)``: the columns a PIVOT without GROUP BY or an UNPIVOT keeps."""
    star = exp.Star(except_=[exp.column(name, quoted=True) for name in dropped] or None)
    star.meta[KEPT] = True
    return star


def _any_name(expression: exp.Expr) -> exp.Expr:
    """A projection whose output name DuckDB makes up (from values or the expression's text):
    it matches any name a query around it uses."""
    expression.meta[ANY_NAME] = True
    return expression


def _pivot_columns(
    ons: list[exp.Expr], usings: list[exp.Expr], exact: bool = True
) -> list[tuple[str | None, exp.Expr]]:
    """The columns a PIVOT makes, each with its name as DuckDB spells it (``A`` for value
    ``'A'`` and a single USING, ``A_total`` for ``USING sum(x) AS total``) and its aggregate;
    None for a name it derives from an expression's text or an ON without IN (and, when not
    ``exact``, for any but a single unaliased aggregate's string values)."""
    values = ons[0].expressions if len(ons) == 1 and isinstance(ons[0], exp.In) else None
    names = [_value_name(value) for value in values or []]
    simple = len(usings) == 1 and not isinstance(usings[0], exp.Alias)
    if not exact and not (
        simple and all(isinstance(v, exp.Literal) and v.is_string for v in values or [])
    ):
        names = []
    if not names or len(names) * len(usings) > 200:
        return [(None, using) for using in usings]
    columns: list[tuple[str | None, exp.Expr]] = []
    for name in names:
        for using in usings:
            if name is not None and isinstance(using, exp.Alias) and using.alias:
                columns.append((f"{name}_{using.alias}", using))
            else:
                columns.append((name if name is not None and simple else None, using))
    return columns


def _value_name(value: exp.Expr) -> str | None:
    """The column name DuckDB gives a PIVOT ... IN value: its text (``'A'`` is A, ``-1``)."""
    if isinstance(value, exp.Literal):
        return value.name
    if isinstance(value, exp.Null):
        return "NULL"
    if isinstance(value, exp.Neg) and isinstance(value.this, exp.Literal):
        return f"-{value.this.name}"
    return None
