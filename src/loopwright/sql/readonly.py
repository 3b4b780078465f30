"""Read-only by construction: a statement is run only if it parses as one query.

The SQL is parsed with sqlglot in the backend's dialect and must be exactly one query
(``SELECT``, ``WITH ... SELECT``, ``UNION``/``INTERSECT``/``EXCEPT``, ``VALUES``; in DuckDB
also ``DESCRIBE``, ``SUMMARIZE``, ``PIVOT``/``UNPIVOT`` and ``SHOW``, which DuckDB reads as
``DESCRIBE`` or a listing of its catalogue). Refused,
each with a message saying what to do instead:

- anything else at the top (DML, DDL, ``PRAGMA``, ``SET``, ``COPY``, ``ATTACH``, ``INSTALL``,
  ``LOAD``, ``EXPORT``, ``CALL``, transactions...) and more than one statement, except
  BigQuery's ``CREATE TEMP FUNCTION`` statements before the one query (BigQuery runs them as
  one query job; nothing outlasts it), whose bodies are checked like the query (a SQL body,
  or JavaScript written in the statement: no ``REMOTE`` function, no ``library`` of code
  from Cloud Storage, no other language);
- data-changing statements hidden inside a query (PostgreSQL's ``WITH d AS (DELETE ...)``),
  ``SELECT ... INTO`` (creates a table) and ``FOR UPDATE`` (takes locks);
- functions that reach outside the database, run SQL the check cannot see or change what a
  rollback does not undo: DuckDB's file readers (``read_csv``, ``read_parquet``, ``glob``,
  ``*_scan``, ``query(...)``, ``json_execute_serialized_sql``...), its checkpoint, logging
  and profiling functions, and file-name table references (``FROM 'claims.csv'``,
  ``SUMMARIZE 'claims.csv'``); PostgreSQL's server-file, large-object, signalling, settings,
  advisory-lock, replication-slot and statistics-reset functions and ``ts_stat`` (names
  written with ``U&"..."`` escapes are read as PostgreSQL reads them); BigQuery's
  ``EXTERNAL_QUERY``.

SQL sqlglot cannot parse (a syntax error, nesting too deep for it, or input it trips over)
is refused as :class:`UnparsableQuery`, never run. The deny lists name what is known; the
connection's own locks (below) are what holds against the rest.

This is the first of two locks: each backend's connection is read-only as well (DuckDB
``read_only`` with external access off, a PostgreSQL read-only transaction, a BigQuery dry
run whose statement type must be ``SELECT``), so a statement the parser misjudges still
cannot write.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn

import sqlglot
from sqlglot import TokenType, exp
from sqlglot.errors import ParseError, TokenError

if TYPE_CHECKING:
    from loopwright.sql.base import UnparsableQuery

#: Statement types a query may be, at the top.
_QUERY_ROOTS: tuple[type[exp.Expression], ...] = (
    exp.Select,
    exp.SetOperation,
    exp.Values,
    exp.Subquery,
)

#: DuckDB's read-only statements besides SELECT, allowed there (they are queries in DuckDB):
#: inspections, and the ``PIVOT``/``UNPIVOT`` statements (the backend also asks DuckDB, which
#: runs a ``PIVOT`` without an ``IN`` list as several statements, and that is refused).
_DUCKDB_QUERIES: tuple[type[exp.Expression], ...] = (exp.Describe, exp.Summarize, exp.Pivot)

#: Nodes that change data or state wherever they appear in the tree.
_WRITES: tuple[type[exp.Expression], ...] = tuple(
    getattr(exp, name)
    for name in (
        "Insert",
        "Update",
        "Delete",
        "Merge",
        "Create",
        "Drop",
        "Alter",
        "TruncateTable",
        "Copy",
        "Set",
        "Pragma",
        "Command",
        "Use",
        "Transaction",
        "Commit",
        "Rollback",
        "Attach",
        "Detach",
        "Install",
        "LoadData",
        "Grant",
        "Revoke",
        "Analyze",
        "Declare",
        "Export",
    )
    if hasattr(exp, name)
)

_DUCKDB_DENIED = frozenset(
    {
        "glob",
        "sniff_csv",
        "parquet_metadata",
        "parquet_schema",
        "parquet_file_metadata",
        "parquet_kv_metadata",
        "parquet_bloom_probe",
        "query",
        "query_table",
        "getenv",
        "st_read",
        "st_read_meta",
        "iceberg_metadata",
        "iceberg_snapshots",
        "load_aws_credentials",
        "duckdb_secrets",
        "which_secret",
        "from_csv_auto",
        # runs a statement serialised as JSON, which the check never sees
        "json_execute_serialized_sql",
        # change the instance (checkpoints, logging, profiling, external resources)
        "checkpoint",
        "force_checkpoint",
        "enable_logging",
        "disable_logging",
        "truncate_duckdb_logs",
        "write_log",
        "enable_profiling",
        "disable_profiling",
        "create_external_resource",
        "destroy_external_resource",
        "register_external_resource",
        "register_external_resource_type",
        "deregister_external_resource",
    }
)

_POSTGRES_DENIED = frozenset(
    {
        "pg_read_file",
        "pg_read_binary_file",
        "pg_stat_file",
        "pg_terminate_backend",
        "pg_cancel_backend",
        "pg_reload_conf",
        "pg_rotate_logfile",
        "pg_switch_wal",
        "pg_create_restore_point",
        "pg_promote",
        "pg_backup_start",
        "pg_backup_stop",
        "pg_notify",
        "pg_logical_emit_message",
        "set_config",
        "query_to_xml",
        "query_to_xml_and_xmlschema",
        "query_to_xmlschema",
        "cursor_to_xml",
        "cursor_to_xmlschema",
        # run a query given as text, which the check never sees
        "ts_stat",
        "ts_rewrite",
        # server files and logs
        "pg_current_logfile",
        "pg_hba_file_rules",
        "pg_ident_file_mappings",
        "pg_show_all_file_settings",
        # large objects by descriptor
        "loread",
        "lowrite",
        # changes a rollback does not undo: replication slots, statistics, logs, indexes
        "pg_drop_replication_slot",
        "pg_replication_slot_advance",
        "pg_log_backend_memory_contexts",
        "pg_import_system_collations",
        "pg_stat_statements_reset",
        "brin_summarize_new_values",
        "brin_summarize_range",
        "brin_desummarize_range",
        "gin_clean_pending_list",
    }
)

#: Prefixes of PostgreSQL functions refused like :data:`_POSTGRES_DENIED`: files, large
#: objects, locks (session advisory locks outlive the transaction), other servers,
#: replication slots and origins, statistics resets, recovery control.
_POSTGRES_DENIED_PREFIXES = (
    "lo_",
    "pg_ls_",
    "pg_read_",
    "pg_advisory",
    "pg_try_advisory",
    "pg_file_",
    "dblink",
    "pg_create_",
    "pg_copy_",
    "pg_logical_slot_",
    "pg_replication_origin_",
    "pg_stat_reset",
    "pg_wal_replay_",
    "binary_upgrade_",
)

_BIGQUERY_DENIED = frozenset({"external_query"})


def _duckdb_denied(name: str) -> bool:
    return (
        name in _DUCKDB_DENIED or name.startswith(("read_", "parquet_")) or name.endswith("_scan")
    )


def _postgres_denied(name: str) -> bool:
    return name in _POSTGRES_DENIED or name.startswith(_POSTGRES_DENIED_PREFIXES)


#: An escape in a PostgreSQL ``U&"..."`` identifier: ``\XXXX``, ``\+XXXXXX`` or ``\\``.
_UNICODE_ESCAPE = re.compile(r"\\(?:\+([0-9a-fA-F]{6})|([0-9a-fA-F]{4})|(\\))")


def _unicode_escapes(name: str) -> str:
    """``name`` with its ``U&`` escapes read (sqlglot keeps them as they were written)."""

    def read(match: re.Match[str]) -> str:
        code = match.group(1) or match.group(2)
        if code is None:
            return "\\"
        try:
            return chr(int(code, 16)).lower()
        except (ValueError, OverflowError):  # past U+10FFFF: PostgreSQL refuses it too
            return match.group(0)

    return _UNICODE_ESCAPE.sub(read, name)


_DENIED: dict[str, Callable[[str], bool]] = {
    "duckdb": _duckdb_denied,
    "postgres": _postgres_denied,
    "bigquery": lambda name: name in _BIGQUERY_DENIED,
}

#: A table name that is really a file or URL: DuckDB reads ``FROM 'claims.csv'`` as a file.
_FILE_LIKE = re.compile(r"[./\\:~]")

#: First words of statements that are queries (the parse error is then a syntax error).
_QUERY_WORDS = frozenset(
    {"SELECT", "WITH", "VALUES", "FROM", "TABLE", "DESCRIBE", "SUMMARIZE", "PIVOT", "UNPIVOT"}
)

#: SQL comments, and comments or string literals (``'it''s'``).
_COMMENT = r"--[^\n]*|/\*.*?\*/"
_COMMENTS = re.compile(_COMMENT, re.DOTALL)
_BIGQUERY_COMMENTS = re.compile(rf"{_COMMENT}|#[^\n]*", re.DOTALL)
_COMMENTS_AND_STRINGS = re.compile(rf"{_COMMENT}|'(?:[^']|'')*'", re.DOTALL)

_ADVICE = "The SQL tool runs one read-only query (SELECT, WITH ... SELECT, UNION, VALUES)."


def check_read_only(sql: str, dialect: str) -> exp.Expression:
    """Parse ``sql`` in ``dialect`` and return its tree, or raise ``QueryRefused``.

    ``dialect`` is a sqlglot dialect name (``duckdb``, ``postgres``, ``bigquery``...).
    """
    from loopwright.sql.base import QueryRefused, UnparsableQuery

    if not sql or not sql.strip():
        raise QueryRefused("The SQL is empty; give one SELECT query to run.")
    first = _first_word(sql, dialect)
    if dialect == "duckdb" and first in ("SHOW", "DESCRIBE"):
        shown = duckdb_show(sql)
        if isinstance(shown, exp.Show):
            for table in shown.find_all(exp.Table):
                _check_table_name(table)
            return shown
        sql = shown  # checked as the DESCRIBE DuckDB reads it as
    elif dialect == "bigquery" and first == "CREATE":  # temporary functions: below
        if not _TEMP_FUNCTION.match(_without_comments(sql, dialect).lstrip(" \t\r\n(")):
            raise QueryRefused(_only_temp_functions("CREATE"))  # no parser warnings either
    elif first and first not in _QUERY_WORDS:  # refused before parsing: no parser warnings
        raise QueryRefused(f"{first} statements are not allowed. {_ADVICE}")
    try:
        # a comment after the last semicolon is a statement of its own to sqlglot (a
        # Semicolon node holding the comment); the databases read it as nothing
        statements = [
            s
            for s in sqlglot.parse(sql, read=dialect)
            if s is not None and not isinstance(s, exp.Semicolon)
        ]
    except (ParseError, TokenError) as exc:
        raise _unparsable(dialect, parse_message(exc)) from None
    except RecursionError:
        raise UnparsableQuery(
            "The SQL is nested too deeply to be checked (hundreds of levels of parentheses, "
            "CASE or subqueries); flatten it, e.g. with WITH ... for intermediate steps."
        ) from None
    except Exception as exc:  # sqlglot trips over some malformed input (TypeError...)
        raise _unparsable(dialect, f"{type(exc).__name__}: {parse_message(exc)}") from None
    if not statements:
        raise QueryRefused("The SQL holds no statement; give one SELECT query to run.")
    functions: list[exp.Create] = []
    if dialect == "bigquery":
        while len(statements) > 1 and _temp_function(statements[0]):
            functions.append(statements.pop(0))  # type: ignore[arg-type]
        head = statements[0]
        if _temp_function(head):
            raise QueryRefused(
                "The SQL holds only CREATE TEMP FUNCTION statements: put the one SELECT that "
                "uses them after them, in the same SQL."
            )
        if isinstance(head, exp.Command) and _TEMP_FUNCTION.match(head.sql("bigquery")):
            raise QueryRefused(  # BigQuery's, but sqlglot reads it as an opaque command
                "This CREATE TEMP FUNCTION could not be checked: the read-only check does not "
                "read its form (OPTIONS after the body, an AGGREGATE function...). "
                f"{_TEMP_FUNCTION_FORMS} Or write its expression into the query."
            )
        if isinstance(head, exp.Create | exp.Command) and first == "CREATE":
            raise QueryRefused(_only_temp_functions(_statement_kind(head, "CREATE")))
    if len(statements) > 1:
        raise QueryRefused(
            f"The SQL holds {len(statements)} statements; run one query per call "
            "(use WITH ... for intermediate steps)."
        )
    tree = statements[0]
    allowed = _QUERY_ROOTS + (_DUCKDB_QUERIES if dialect == "duckdb" else ())
    if not isinstance(tree, allowed) or (
        isinstance(tree, exp.Subquery) and not isinstance(tree.unnest(), _QUERY_ROOTS)
    ):
        raise QueryRefused(f"{_statement_kind(tree, sql)} statements are not allowed. {_ADVICE}")
    if isinstance(tree, exp.Summarize) and isinstance(tree.this, exp.Literal):
        _refuse_file(tree.this.name)  # SUMMARIZE 'claims.csv' reads the file
    for function in functions:
        _check_temp_function(function)
    _check_nodes(tree, dialect)
    return tree


#: BigQuery's ``CREATE [OR REPLACE] TEMP[ORARY] [AGGREGATE] FUNCTION``, at the start of the
#: SQL (past comments) or of a statement sqlglot reads as a command.
_TEMP_FUNCTION = re.compile(
    r"CREATE\s+(?:OR\s+REPLACE\s+)?TEMP(?:ORARY)?\s+(?:AGGREGATE\s+)?FUNCTION\b", re.IGNORECASE
)

#: The temporary functions the check lets through, in words.
_TEMP_FUNCTION_FORMS = (
    "CREATE TEMP FUNCTION statements before one SELECT may define a function by a SQL "
    "expression, CREATE TEMP FUNCTION f(x INT64) AS (expression), or by JavaScript written in "
    "the statement: CREATE TEMP FUNCTION f(x FLOAT64) RETURNS FLOAT64 LANGUAGE js AS "
    'r"""return 2 * x;""".'
)

#: What a temporary function's definition may hold besides its name, arguments and body
#: (and ``OPTIONS(description='...')``).
_FUNCTION_PROPERTIES = (
    exp.TemporaryProperty,
    exp.ReturnsProperty,
    exp.StabilityProperty,  # [NOT] DETERMINISTIC
    exp.LanguageProperty,  # js or sql, checked before
)


def _only_temp_functions(kind: str) -> str:
    return (
        f"{kind} statements are not allowed, but CREATE TEMP FUNCTION ... statements before "
        "one SELECT are (they last for the query); or write the function's expression into "
        "the query."
    )


def _temp_function(statement: object) -> bool:
    """Whether ``statement`` is BigQuery's ``CREATE [OR REPLACE] TEMP FUNCTION``: it lasts
    for the query it is sent with, which BigQuery runs as one query job (not a script)."""
    if not isinstance(statement, exp.Create) or statement.kind != "FUNCTION":
        return False
    properties = statement.args.get("properties")
    return properties is not None and any(
        isinstance(p, exp.TemporaryProperty) for p in properties.expressions
    )


def _check_temp_function(function: exp.Create) -> None:
    """Refuse a temporary function that reaches outside the query (a ``REMOTE`` function, a
    JavaScript ``library`` in Cloud Storage, a language but SQL and JavaScript), or holds
    anything the query may not, anywhere in its definition (its body above all)."""
    from loopwright.sql.base import QueryRefused

    properties = function.args.get("properties")
    for prop in properties.expressions if properties is not None else []:
        if isinstance(prop, exp.RemoteWithConnectionModelProperty):
            why = "a REMOTE function calls a service outside BigQuery"
        elif isinstance(prop, exp.LanguageProperty) and prop.name.lower() not in ("js", "sql"):
            why = f"LANGUAGE {prop.name} functions are not run for a query here"
        elif isinstance(prop, _FUNCTION_PROPERTIES):
            continue
        elif type(prop) is exp.Property and prop.name.lower() == "library":
            why = (
                "OPTIONS(library=...) loads JavaScript from Cloud Storage files, outside the "
                "database's tables"
            )
        elif type(prop) is exp.Property and prop.name.lower() == "description":
            if isinstance(prop.args.get("value"), exp.Literal):
                continue
            why = "OPTIONS(description=...) takes a string"
        else:
            why = f"{prop.sql('bigquery')} is not one the read-only check knows"
        raise QueryRefused(f"This temporary function is not allowed: {why}. {_TEMP_FUNCTION_FORMS}")
    if function.expression is None:
        raise QueryRefused(f"This temporary function has no body. {_TEMP_FUNCTION_FORMS}")
    for part in function.iter_expressions():  # the body (a JavaScript body is a string)...
        _check_nodes(part, "bigquery")


def _check_nodes(tree: exp.Expression, dialect: str) -> None:
    """Refuse what changes data or state, or reaches outside, anywhere in ``tree``."""
    from loopwright.sql.base import QueryRefused

    for node in tree.walk():
        if isinstance(node, _WRITES):
            raise QueryRefused(
                f"The query contains a {_statement_kind(node)} statement, which is not "
                f"allowed. {_ADVICE}"
            )
        if isinstance(node, exp.Into):
            raise QueryRefused(
                f"SELECT ... INTO creates a table, which is not allowed. {_ADVICE} "
                "The result is saved to a file for you."
            )
        if isinstance(node, exp.Lock):
            raise QueryRefused("FOR UPDATE/FOR SHARE takes locks; remove the locking clause.")
        if isinstance(node, exp.Func):
            _check_function(node, dialect)
        if dialect == "duckdb" and isinstance(node, exp.Table):
            _check_table_name(node)


#: DuckDB's ``SHOW`` forms that list the catalogue rather than describe a table or query.
_LISTINGS = {("ALL",), ("DATABASES",), ("SCHEMAS",), ("TABLES",), ("ALL", "TABLES")}


def duckdb_show(sql: str) -> str | exp.Show:
    """DuckDB's ``SHOW`` (and ``DESCRIBE``) statement ``sql`` as the read-only check reads it.

    DuckDB reads ``SHOW x`` as ``DESCRIBE x`` (the columns of a table or query): the
    ``DESCRIBE`` text is returned, to be checked like any ``DESCRIBE``. The listings (a bare
    ``SHOW`` or ``DESCRIBE``, ``SHOW DATABASES``, ``SHOW SCHEMAS``, ``SHOW [ALL] TABLES
    [FROM schema]``) name no table and read only the catalogue: their tree is returned.
    Other SQL comes back unchanged, for the usual check to judge.
    """
    if _first_word(sql) not in ("SHOW", "DESCRIBE"):
        return sql  # the common case, told without tokenizing the whole statement
    try:
        tokens = sqlglot.tokenize(sql, read="duckdb")
    except TokenError:
        return sql  # the parse reports it
    while tokens and tokens[-1].token_type == TokenType.SEMICOLON:
        tokens.pop()
    if not tokens or tokens[0].token_type not in (TokenType.SHOW, TokenType.DESCRIBE):
        return sql
    if any(t.token_type == TokenType.SEMICOLON for t in tokens):
        return sql  # several statements: refused as such
    words: list[str] = []  # the leading plain words: TABLES, ALL TABLES...
    for token in tokens[1:3]:
        if token.token_type not in (TokenType.VAR, TokenType.ALL):
            break
        words.append(token.text.upper())
    after = tokens[1 + len(words) :]
    listing = tuple(words) in _LISTINGS
    if len(tokens) == 1 or (listing and not after):
        return exp.Show(this=" ".join(words) or "ALL TABLES")
    if listing and words[-1] == "TABLES" and after[0].token_type == TokenType.FROM:
        try:  # SHOW [ALL] TABLES FROM schema
            tree = sqlglot.parse_one(sql, read="duckdb")
        except (ParseError, TokenError):
            return sql
        if isinstance(tree, exp.Show) and isinstance(tree.args.get("from_"), exp.Table):
            return tree
        return sql
    if tokens[0].token_type == TokenType.DESCRIBE:
        return sql
    return "DESCRIBE " + sql[tokens[1].start :]


def _check_function(node: exp.Func, dialect: str) -> None:
    from loopwright.sql.base import QueryRefused

    denied = _DENIED.get(dialect)
    if denied is None:
        return
    name = (node.name if isinstance(node, exp.Anonymous) else node.sql_name()).lower()
    if "\\" in name and dialect == "postgres":  # U&"pg_read_fil\0065" is pg_read_file
        name = _unicode_escapes(name)
    if denied(name):
        raise QueryRefused(
            f"The function {name}() is not allowed: the SQL tool only reads the database's "
            "own tables (no files, other servers or settings). Query the tables instead."
        )


def _check_table_name(node: exp.Table) -> None:
    identifier = node.this
    if isinstance(identifier, exp.Identifier) and _FILE_LIKE.search(identifier.name):
        _refuse_file(identifier.name)


def _refuse_file(name: str) -> NoReturn:
    from loopwright.sql.base import QueryRefused

    raise QueryRefused(
        f"{name!r} looks like a file, not a table: the SQL tool only reads the "
        "database's own tables. Query the tables instead."
    )


def _statement_kind(node: object, sql: str = "") -> str:
    """How a user would name the statement: ``INSERT``, ``PRAGMA``, ``LOAD``..."""
    if isinstance(node, exp.Command):
        return str(node.this).upper()
    if isinstance(node, _WRITES) or sql == "":
        name = type(node).__name__
        return {"TruncateTable": "TRUNCATE", "LoadData": "LOAD DATA"}.get(name, name.upper())
    return _first_word(sql) or type(node).__name__.upper()  # a statement sqlglot does not know


def _first_word(sql: str, dialect: str = "") -> str:
    """The statement's first keyword, past comments and parentheses (``""`` if none)."""
    match = re.search(r"[A-Za-z_]+", _without_comments(sql, dialect).lstrip(" \t\r\n("))
    return match.group(0).upper() if match else ""


def _without_comments(sql: str, dialect: str) -> str:
    """``sql`` with its comments blanked, ``# ...`` too in BigQuery's."""
    return (_BIGQUERY_COMMENTS if dialect == "bigquery" else _COMMENTS).sub(" ", sql)


def _unparsable(dialect: str, detail: str) -> UnparsableQuery:
    from loopwright.sql.base import UnparsableQuery

    return UnparsableQuery(
        f"The SQL could not be parsed as {dialect} SQL ({detail}); fix the syntax and run it "
        "again.",
        detail=detail,
    )


def rewrite_hint(sql: str, dialect: str = "duckdb") -> str:
    """Advice for a query the database (of sqlglot's ``dialect``) accepts but sqlglot cannot
    parse: what in it sqlglot trips over, where that can be told from the text, else the
    general advice. BigQuery quotes names with backticks (double quotes make strings there)
    and writes PIVOT as an operator of FROM: the advice about those is DuckDB's alone."""
    text = _without_comments_and_strings(sql)
    hints = []
    duckdb_like = dialect != "bigquery"
    if "`" in text and duckdb_like:  # DuckDB reads `name` as a name, sqlglot only in BigQuery's
        hints.append('Quote names with double quotes ("NDC_DRUG_NM"), not backticks.')
    if duckdb_like and re.search(r"\b(?:UN)?PIVOT\b", text, flags=re.IGNORECASE):
        hints.append(
            "Put the PIVOT statement in a subquery, with any ORDER BY or LIMIT outside it: "
            "SELECT * FROM (PIVOT ... ON ... USING ...) ORDER BY ... LIMIT ...; or write it "
            "with GROUP BY and CASE (or FILTER) instead."
        )
    if not hints:
        hints.append("Write it with more common syntax (plain functions, subqueries or WITH ...).")
    return " ".join(hints)


def placeholder_hint(sql: str, dialect: str) -> str:
    """Advice for a failed query that holds parameter placeholders (``$1``, ``$name``, ``?``,
    ``%(name)s``, ``@name``): the SQL tool runs the text as it is and binds no values, so
    such SQL (a cohort's saved query, a snippet from application code) can only fail. Empty
    when there are none, or the SQL does not parse."""
    try:
        tree = sqlglot.parse_one(sql, read=dialect)
    except Exception:  # a hint only: the database's own error stands
        return ""
    found: list[str] = []
    for node in tree.find_all(exp.Placeholder, exp.Parameter):
        if isinstance(node.parent, exp.Parameter):
            continue  # BigQuery's @@name is a Parameter holding a Parameter
        if isinstance(node, exp.Placeholder) and node.name and isinstance(node.parent, exp.Bracket):
            continue  # a slice up to a column, list[:n], which sqlglot reads as [ :n ]
        name = node.name
        written = name and re.search(rf"%\({re.escape(name)}\)s|[:$@]{re.escape(name)}\b", sql)
        text = written.group(0) if written else node.sql(dialect=dialect)  # as the SQL has it
        if text.startswith("@@"):
            continue  # a BigQuery system variable (@@dataset_id), not a parameter
        if text not in found:
            found.append(text)
    if not found:
        return ""
    shown = ", ".join(found[:5]) + (", ..." if len(found) > 5 else "")
    return (
        f"\nThe query has parameter placeholders ({shown}), and this tool binds no values: "
        "write the values into the SQL as literals, e.g. NDC_DRUG_NM = 'HUMIRA' or "
        "SERVICE_DATE_DD >= DATE '2024-01-01'. (A saved cohort's SQL lists its values under "
        '"parameters" in its definition file.)'
    )


def _without_comments_and_strings(sql: str) -> str:
    """``sql`` with its comments and string literals blanked, for looking at its syntax."""
    return _COMMENTS_AND_STRINGS.sub(" ", sql)


def parse_message(exc: Exception) -> str:
    """sqlglot's parse error ``exc`` in words: what it expected, and where."""
    if isinstance(exc, ParseError) and exc.errors:
        first = exc.errors[0]
        description = _readable(str(first.get("description") or "syntax error"))
        line, col = first.get("line"), first.get("col")
        if line is not None:
            return f"{description} at line {line}, column {col}"
        return description
    lines = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).splitlines()
    return _readable(lines[0]) if lines else "syntax error"


#: sqlglot's own objects in its messages: a token (``<Token token_type: TokenType.WHERE,
#: text: WHERE, ...>``) and a tree class (``<class 'sqlglot.expressions.query.Limit'>``).
_TOKEN = re.compile(
    r"<Token token_type: TokenType\.(\w+), text: (.*?), line: .*?comments: \[.*?\]>"
)
_MISSING = re.compile(r"Required keyword: '\w+' missing for <class '(?:\w+\.)*(\w+)'>")


def _readable(description: str) -> str:
    """``description`` with sqlglot's objects named as a user would name them."""

    def token(match: re.Match[str]) -> str:
        return "the end of the SQL" if match.group(1) == "SENTINEL" else repr(match.group(2))

    description = _TOKEN.sub(token, description)
    return _MISSING.sub(lambda match: f"incomplete {match.group(1).upper()}", description)
