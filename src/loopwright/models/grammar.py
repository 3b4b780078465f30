r"""GBNF grammars from JSON schemas, to constrain a local model's tool calls.

llama.cpp can restrict generation to the language of a GBNF grammar. :func:`tool_call_grammar`
builds one from the registered tools' schemas: the model either writes one tool call as a
JSON object ``{"name": "<tool>", "arguments": {...}}`` whose arguments match that tool's
``input_schema``, or it answers in plain text (or, with ``answer_schema``, with JSON that
matches it). Every call the model emits then parses and validates.

:func:`schema_to_gbnf` turns a single JSON schema into a grammar of the JSON values it
accepts. Supported: ``type`` (one or a list), ``enum``, ``const``, ``anyOf``/``oneOf``,
``allOf`` of objects, ``nullable``, ``$ref`` into ``$defs``/``definitions`` (recursion
included); objects (``properties``, ``required``, ``additionalProperties``), arrays
(``items``, ``prefixItems``, ``minItems``/``maxItems``), strings (``minLength``/``maxLength``,
``pattern``, and ``format`` for the formats in :data:`FORMAT_PATTERNS`), integers with
``minimum``/``maximum`` (exclusive ones too), numbers, booleans and null.

A ``pattern`` becomes grammar rules when it keeps to the regex subset that JSON Schema's
ECMA-262 and Python's ``re`` (which validates) read alike: literals and escapes, classes
(``[a-z_]``, ``[^/]``, ``\d``, ``\w``, ``\s`` and their negations), ``.``, groups,
alternation, ``*``/``+``/``?``/``{m,n}`` and the anchors ``^``/``$`` at the ends of a
top-level alternative (an unanchored side allows any text, as the search validation does).
Where the two engines differ (``\d`` and ``\w`` take Unicode characters in Python) the
grammar allows only what both accept. Each allowed character is generated as JSON writes it
(``\"``, ``\\``, ``\n``, ``\u0001``). A ``minLength``/``maxLength`` next to a pattern is
enforced when a single repetition makes the length vary (``^[a-z][a-z0-9]*$``).
Lookaround, backreferences, word boundaries, flags and the like are not translated: the
string is then unconstrained, as before (see :attr:`GrammarBuilder.ignored`).

What a grammar cannot express degrades gracefully to a more permissive rule: an
untranslatable ``pattern`` or ``format``, ``multipleOf``, ``uniqueItems``, ``not``,
``if``/``then``/``else``, ``patternProperties``, ``propertyNames``, ``contains``,
``minProperties``/``maxProperties``, ``dependentRequired``/``dependentSchemas``, a
``maxLength`` over :data:`MAX_REPEAT` and the bounds of non-integer numbers (except that a
lower bound of 0 or more forbids a minus sign) are not enforced; such keywords are listed
in :attr:`GrammarBuilder.ignored`. A value the grammar lets through may then still fail
validation, which the tool registry reports to the model as an ordinary tool error.

Generated objects keep the schema's property order, required properties first. Properties
not in ``properties`` are only generated when the schema has no ``properties`` and allows
extra ones (``dict[str, T]``); ``additionalProperties`` next to ``properties`` is accepted
by validation but never generated. Integers and exponents are limited to 15 digits, which
also stops a model from writing digits forever.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

#: The keys of a tool call object: ``{"name": <tool name>, "arguments": <input object>}``.
NAME_KEY = "name"
ARGUMENTS_KEY = "arguments"

MAX_DIGITS = 15
_MAX_INT = 10**MAX_DIGITS - 1
#: The longest repetition a grammar spells out (``maxLength``, ``{m,n}`` in a pattern);
#: llama.cpp makes a rule per repetition. A longer upper bound is not enforced.
MAX_REPEAT = 1000

_IGNORED_KEYWORDS = frozenset(
    {
        "multipleOf",
        "uniqueItems",
        "not",
        "if",
        "then",
        "else",
        "patternProperties",
        "propertyNames",
        "contains",
        "minContains",
        "maxContains",
        "minProperties",
        "maxProperties",
        "dependentRequired",
        "dependentSchemas",
        "dependencies",
        "unevaluatedProperties",
        "unevaluatedItems",
        "contentEncoding",
        "contentMediaType",
    }
)

_PRIMITIVES: dict[str, str] = {
    "ws": '" "?',
    "char": r'[^"\\\x00-\x1f] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4})',
    "string": '"\\"" char* "\\""',
    "digits": f"[0-9]{{1,{MAX_DIGITS}}}",
    "integer": f'"-"? ("0" | [1-9] [0-9]{{0,{MAX_DIGITS - 1}}})',
    "unsigned-integer": f'"0" | [1-9] [0-9]{{0,{MAX_DIGITS - 1}}}',
    "fraction": '"." digits',
    "exponent": "[eE] [-+]? digits",
    "number": "integer fraction? exponent?",
    "unsigned-number": "unsigned-integer fraction? exponent?",
    "boolean": '"true" | "false"',
    "null": '"null"',
    "value": "object | array | string | number | boolean | null",
    "object": '"{" ws (member ("," ws member)*)? "}"',
    "member": 'string ":" ws value',
    "array": '"[" ws (value ("," ws value)*)? "]"',
}
# the rules each primitive uses, so a grammar only carries what it needs
_PRIMITIVE_DEPENDENCIES: dict[str, tuple[str, ...]] = {
    "string": ("char",),
    "fraction": ("digits",),
    "exponent": ("digits",),
    "number": ("integer", "fraction", "exponent"),
    "unsigned-number": ("unsigned-integer", "fraction", "exponent"),
    "value": ("object", "array", "string", "number", "boolean", "null"),
    "object": ("ws", "member"),
    "member": ("string", "ws", "value"),
    "array": ("ws", "value"),
}


class GrammarError(ValueError):
    """A schema cannot be turned into a grammar (for instance a ``$ref`` that goes nowhere)."""


def literal(text: str) -> str:
    """``text`` as a GBNF string literal."""
    out = ['"']
    for ch in text:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def json_literal(value: Any) -> str:
    """A GBNF literal matching exactly the compact JSON form of ``value``."""
    return literal(json.dumps(value, ensure_ascii=False, separators=(", ", ": ")))


class GrammarBuilder:
    """Collects the rules of one grammar; each schema becomes a named rule.

    ``root_schema`` is the document ``$ref`` pointers are resolved against.
    """

    def __init__(self, root_schema: Mapping[str, Any] | None = None) -> None:
        self.root_schema: Mapping[str, Any] = root_schema or {}
        self.rules: dict[str, str] = {}
        #: Keywords that were present but not enforced by the grammar.
        self.ignored: set[str] = set()
        self._by_body: dict[str, str] = {}
        self._refs: dict[str, str] = {}

    # --- rules ---------------------------------------------------------------------------

    def primitive(self, name: str) -> str:
        """Add a built-in rule (``string``, ``integer``, ``value``...) and return its name."""
        if name not in self.rules:
            self.rules[name] = _PRIMITIVES[name]
            for dependency in _PRIMITIVE_DEPENDENCIES.get(name, ()):
                self.primitive(dependency)
        return name

    def add(self, name: str, body: str) -> str:
        """Add a rule (reusing an identical one) and return the name to refer to it by."""
        existing = self._by_body.get(body)
        if existing is not None:
            return existing
        name = self._unique(name)
        self.rules[name] = body
        self._by_body[body] = name
        return name

    def _unique(self, name: str) -> str:
        base = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-") or "rule"
        if base in _PRIMITIVES or base == "root":  # names the grammar uses itself
            base = f"{base}-x"
        candidate, index = base, 2
        while candidate in self.rules:
            candidate = f"{base}-{index}"
            index += 1
        return candidate

    def render(self, root: str) -> str:
        """The grammar text, with ``root`` as the start rule."""
        lines = [f"root ::= {root}"] if root != "root" else []
        lines += [f"{name} ::= {body}" for name, body in self.rules.items()]
        return "\n".join(lines) + "\n"

    # --- schemas -------------------------------------------------------------------------

    def schema_rule(self, schema: Any, name: str) -> str:
        """The name of a rule matching the JSON values ``schema`` accepts."""
        if schema is True or schema is None:
            return self.primitive("value")
        if schema is False:
            raise GrammarError(f"schema {name!r} is `false`: no value can match it")
        if not isinstance(schema, Mapping):
            raise GrammarError(f"schema {name!r} must be an object, got {type(schema).__name__}")
        self.ignored.update(key for key in schema if key in _IGNORED_KEYWORDS)
        ref = schema.get("$ref")
        if isinstance(ref, str):
            return self._ref_rule(ref)
        if "const" in schema:
            return self.add(name, json_literal(schema["const"]))
        if isinstance(schema.get("enum"), list):
            return self._enum_rule(schema, name)
        for keyword in ("anyOf", "oneOf"):
            options = schema.get(keyword)
            if isinstance(options, list) and options:
                siblings = {k: v for k, v in schema.items() if k != keyword}
                return self._alternatives([_merge(siblings, option) for option in options], name)
        if isinstance(schema.get("allOf"), list):
            return self.schema_rule(self._merge_all_of(schema), name)
        kind = schema.get("type")
        nullable = schema.get("nullable") is True
        if isinstance(kind, list):
            kinds = [k for k in kind if isinstance(k, str)]
            if nullable and "null" not in kinds:
                kinds.append("null")
            if len(kinds) == 1:
                return self._typed_rule(schema, kinds[0], name)
            return self._alternatives([{**schema, "type": k} for k in kinds], name)
        if nullable:
            return self._alternatives(
                [{k: v for k, v in schema.items() if k != "nullable"}, {"type": "null"}], name
            )
        if isinstance(kind, str):
            return self._typed_rule(schema, kind, name)
        # no type: guess from the keywords, else any JSON value
        if "properties" in schema or "additionalProperties" in schema or "required" in schema:
            return self._typed_rule(schema, "object", name)
        if "items" in schema or "prefixItems" in schema:
            return self._typed_rule(schema, "array", name)
        self.ignored.update(key for key in ("pattern", "format") if key in schema)
        return self.primitive("value")

    def _alternatives(self, schemas: Sequence[Any], name: str) -> str:
        parts = [
            self.schema_rule(option, f"{name}-{index}") for index, option in enumerate(schemas)
        ]
        unique = list(dict.fromkeys(parts))
        if len(unique) == 1:
            return unique[0]
        return self.add(name, " | ".join(unique))

    def _enum_rule(self, schema: Mapping[str, Any], name: str) -> str:
        values: list[Any] = list(schema["enum"])
        if schema.get("nullable") is True and None not in values:
            values.append(None)
        if not values:
            raise GrammarError(f"schema {name!r} has an empty enum: no value can match it")
        return self.add(name, " | ".join(dict.fromkeys(json_literal(v) for v in values)))

    def _ref_rule(self, ref: str) -> str:
        existing = self._refs.get(ref)
        if existing is not None:
            return existing
        target = self._resolve(ref)
        # reserve the name first so a recursive schema refers to itself
        rule = self._unique(ref.rsplit("/", 1)[-1] or "ref")
        self._refs[ref] = rule
        self.rules[rule] = ""
        inner = self.schema_rule(target, f"{rule}-body")
        self.rules[rule] = inner
        return rule

    def _resolve(self, ref: str) -> Any:
        if not ref.startswith("#"):
            raise GrammarError(f"only local $ref pointers (#/...) are supported, not {ref!r}")
        node: Any = self.root_schema
        for raw in ref[1:].split("/"):
            if not raw:
                continue
            part = raw.replace("~1", "/").replace("~0", "~")
            if isinstance(node, Mapping) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                raise GrammarError(f"$ref {ref!r} does not point into the schema")
        return node

    def _merge_all_of(self, schema: Mapping[str, Any]) -> dict[str, Any]:
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            if isinstance(part, Mapping) and isinstance(part.get("$ref"), str):
                part = self._resolve(part["$ref"])
            if not isinstance(part, Mapping):
                continue
            for key, value in part.items():
                if key == "properties" and isinstance(value, Mapping):
                    merged["properties"] = {**merged.get("properties", {}), **value}
                elif key == "required" and isinstance(value, list):
                    merged["required"] = list(dict.fromkeys([*merged.get("required", []), *value]))
                elif key not in merged:
                    merged[key] = value
                elif merged[key] != value:
                    self.ignored.add("allOf")  # conflicting constraints: the first one wins
        return merged

    def _typed_rule(self, schema: Mapping[str, Any], kind: str, name: str) -> str:
        if kind == "string":
            return self._string_rule(schema, name)
        if kind == "integer":
            return self._integer_rule(schema, name)
        if kind == "number":
            return self._number_rule(schema)
        if kind == "boolean":
            return self.primitive("boolean")
        if kind == "null":
            return self.primitive("null")
        if kind == "array":
            return self._array_rule(schema, name)
        if kind == "object":
            return self._object_rule(schema, name)
        raise GrammarError(f"schema {name!r} has an unknown type {kind!r}")

    def _string_rule(self, schema: Mapping[str, Any], name: str) -> str:
        low = _non_negative_int(schema.get("minLength")) or 0
        high = _non_negative_int(schema.get("maxLength"))
        if high is not None and high < low:  # no string fits: leave it to validation
            self.ignored.add("minLength/maxLength")
            low, high = 0, None
        if high is not None and high > MAX_REPEAT:
            self.ignored.add("maxLength")  # too long to count in a grammar
            high = None
        pattern, fmt = schema.get("pattern"), schema.get("format")
        regex: str | None = None
        if isinstance(pattern, str):
            regex = pattern
            if fmt is not None:
                self.ignored.add("format")  # the pattern is enforced, not both
        elif "pattern" in schema:
            self.ignored.add("pattern")
        elif isinstance(fmt, str) and fmt in FORMAT_PATTERNS:
            regex = FORMAT_PATTERNS[fmt]
        elif fmt is not None:
            self.ignored.add("format")
        if regex is not None:
            try:
                body = self._pattern_body(regex, low, high)
            except UntranslatablePattern:
                self.ignored.add("pattern" if isinstance(pattern, str) else "format")
            else:
                return self.add(name, f'"\\"" {body} "\\""')
        if not low and high is None:
            return self.primitive("string")
        self.primitive("char")
        count = f"{{{low},{'' if high is None else high}}}"
        return self.add(name, f'"\\"" char{count} "\\""')

    def _pattern_body(self, pattern: str, low: int, high: int | None) -> str:
        """GBNF for the JSON string content (between the quotes) of the strings ``pattern``
        matches (searched for, as JSON Schema does, unless anchored), ``low`` to ``high``
        characters long. Raises :class:`UntranslatablePattern` outside the subset."""
        parser = _RegexParser(pattern)
        branches = _branches(parser.parse())
        if parser.loosened:
            self.ignored.add("pattern repetitions over MAX_REPEAT")
        shown: list[str] = []
        for items in branches:
            fits, bounded = _clamp(items, low, high)
            if not fits:
                continue  # no string of this branch has an allowed length
            if bounded is None:
                self.ignored.add("minLength/maxLength")  # with this pattern: not enforced
                bounded = items
            shown.append(self._regex_gbnf(_Seq(bounded)))
        if not shown:
            raise UntranslatablePattern(f"no string matching {pattern!r} has an allowed length")
        unique = list(dict.fromkeys(shown))
        return unique[0] if len(unique) == 1 else "(" + " | ".join(unique) + ")"

    def _regex_gbnf(self, node: _Node) -> str:
        """A GBNF expression for the JSON text of the strings ``node`` matches."""
        if isinstance(node, _Set):
            if node.ranges == _ANY:
                return self.primitive("char")
            return _json_chars(node.ranges)
        if isinstance(node, _Alt):
            options = list(dict.fromkeys(self._regex_gbnf(o) for o in node.options))
            return options[0] if len(options) == 1 else "(" + " | ".join(options) + ")"
        if isinstance(node, _Repeat):
            if node.high == 0 or _lengths(node.item)[1] == 0:
                return '""'  # nothing, however often: llama.cpp refuses ""{1,3}
            inner = self._regex_gbnf(node.item)
            if (node.low, node.high) == (1, 1):
                return inner
            if not _is_atom(inner):
                inner = f"({inner})"
            if node.high is None:
                suffix = {0: "*", 1: "+"}.get(node.low, f"{{{node.low},}}")
            elif node.low == 0 and node.high == 1:
                suffix = "?"
            elif node.low == node.high:
                suffix = f"{{{node.low}}}"
            else:
                suffix = f"{{{node.low},{node.high}}}"
            return inner + suffix
        assert isinstance(node, _Seq)
        parts: list[str] = []
        text = ""  # a run of single characters, written as one literal
        for item in node.items:
            char = _single(item)
            if char is not None:
                text += json.dumps(char, ensure_ascii=False)[1:-1]
                continue
            if text:
                parts.append(literal(text))
                text = ""
            parts.append(self._regex_gbnf(item))
        if text:
            parts.append(literal(text))
        return " ".join(parts) if parts else '""'

    def _number_rule(self, schema: Mapping[str, Any]) -> str:
        bounds = [schema.get(k) for k in ("minimum", "exclusiveMinimum")]
        low: float | None = max((float(b) for b in bounds if _is_number(b)), default=None)
        if any(k in schema for k in ("maximum", "exclusiveMaximum")) or (
            low is not None and low > 0
        ):
            self.ignored.add("minimum/maximum of a number")
        if low is not None and low >= 0:
            return self.primitive("unsigned-number")
        return self.primitive("number")

    def _integer_rule(self, schema: Mapping[str, Any], name: str) -> str:
        low, high = _integer_bounds(schema)
        if low is None and high is None:
            return self.primitive("integer")
        low = -_MAX_INT if low is None else max(low, -_MAX_INT)
        high = _MAX_INT if high is None else min(high, _MAX_INT)
        if low > high:
            raise GrammarError(f"schema {name!r} allows no integer (minimum above maximum)")
        if low == 0 and high == _MAX_INT:
            return self.primitive("unsigned-integer")
        options: list[str] = []
        if low < 0:  # negatives: "-" then the magnitude in [max(1, -high), -low]
            options += [f'"-" {part}' for part in _range_alternatives(max(1, -high), -low)]
        if high >= 0:
            options += _range_alternatives(max(0, low), high)
        return self.add(name, " | ".join(options))

    def _array_rule(self, schema: Mapping[str, Any], name: str) -> str:
        ws = self.primitive("ws")
        low = _non_negative_int(schema.get("minItems")) or 0
        high = _non_negative_int(schema.get("maxItems"))
        prefix = schema.get("prefixItems")
        items = schema.get("items")
        if isinstance(items, list):  # draft-7 tuples
            prefix, items = items, schema.get("additionalItems", True)
        if isinstance(prefix, list) and prefix:
            parts = [self.schema_rule(s, f"{name}-{i}") for i, s in enumerate(prefix)]
            # a tuple is generated whole: the trailing items are allowed but never needed
            body = f'"[" {ws} ' + f' "," {ws} '.join(parts) + ' "]"'
            return self.add(name, body)
        item = self.schema_rule(items if items is not None else True, f"{name}-item")
        if high is not None and high < low:
            raise GrammarError(f"schema {name!r} allows no array (minItems above maxItems)")
        if high == 0:
            return self.add(name, f'"[" {ws} "]"')
        more_low = max(low - 1, 0)
        more = f"{{{more_low},{'' if high is None else high - 1}}}"
        if more == "{0,}":
            more = "*"
        sequence = f'{item} ("," {ws} {item}){more}'
        body = f'"[" {ws} {sequence} "]"' if low > 0 else f'"[" {ws} ({sequence})? "]"'
        return self.add(name, body)

    def _object_rule(self, schema: Mapping[str, Any], name: str) -> str:
        ws = self.primitive("ws")
        properties = schema.get("properties")
        properties = properties if isinstance(properties, Mapping) else {}
        required_list = schema.get("required")
        required = set(required_list) if isinstance(required_list, list) else set()
        extra = schema.get("additionalProperties", True)
        if not properties:
            if extra is False:
                return self.add(name, f'"{{" {ws} "}}"')
            string = self.primitive("string")
            value = self.schema_rule(extra, f"{name}-value")
            member = self.add(f"{name}-member", f'{string} ":" {ws} {value}')
            return self.add(name, f'"{{" {ws} ({member} ("," {ws} {member})*)? "}}"')
        missing = required - set(properties)
        if missing:  # required but not described: any value will do
            properties = {**properties, **{key: True for key in sorted(missing)}}
        members: list[tuple[str, bool]] = []
        for key, sub in properties.items():
            value = self.schema_rule(sub, f"{name}-{key}")
            member = f'{literal(json.dumps(key, ensure_ascii=False))} ":" {ws} {value}'
            members.append((member, key in required))
        ordered = [m for m, req in members if req] + [m for m, req in members if not req]
        n_required = sum(1 for _, req in members if req)
        if n_required:
            body = f' "," {ws} '.join(ordered[:n_required])
            for member in ordered[n_required:]:
                body += f' ("," {ws} {member})?'
            return self.add(name, f'"{{" {ws} {body} "}}"')
        # only optional properties: any ordered subset, without a leading comma
        optional = ordered
        tail = ""
        tails: list[str] = []
        for member in reversed(optional):
            tails.append(tail)
            tail = f'("," {ws} {member})? {tail}'.strip()
        tails.reverse()
        choices = [f"{member} {tails[i]}".strip() for i, member in enumerate(optional)]
        inner = self.add(f"{name}-members", " | ".join(f"({c})" for c in choices))
        return self.add(name, f'"{{" {ws} {inner}? "}}"')


def schema_to_gbnf(schema: Mapping[str, Any] | bool) -> str:
    """A GBNF grammar (start rule ``root``) of the compact JSON values ``schema`` accepts."""
    builder = GrammarBuilder(schema if isinstance(schema, Mapping) else None)
    rule = builder.schema_rule(schema, "root-value")
    return builder.render(rule)


def tool_call_grammar(
    tools: Sequence[Mapping[str, Any]],
    *,
    allow_text: bool = True,
    only: Iterable[str] | None = None,
    answer_schema: Mapping[str, Any] | None = None,
) -> str:
    """The grammar of one model turn: a tool call, or the final answer.

    ``tools`` are tool schemas (``{"name", "description", "input_schema"}``). A tool call is
    ``{"name": "<tool>", "arguments": <input>}`` with the input matching that tool's
    ``input_schema``. The final answer is plain text that does not start with ``{`` or
    whitespace (so it cannot be mistaken for a call), or, with ``answer_schema``, a JSON
    value matching it. ``allow_text=False`` forces a tool call; ``only`` restricts the calls
    to the named tools.
    """
    wanted = set(only) if only is not None else None
    builder = GrammarBuilder()
    ws = builder.primitive("ws")
    calls: list[str] = []
    for schema in tools:
        tool_name = str(schema.get("name", ""))
        if not tool_name or (wanted is not None and tool_name not in wanted):
            continue
        input_schema = schema.get("input_schema") or {"type": "object"}
        builder.root_schema = input_schema if isinstance(input_schema, Mapping) else {}
        builder._refs = {}  # $refs are local to each tool's schema
        arguments = builder.schema_rule(input_schema, f"{tool_name}-arguments")
        head = (
            f'"{{" {ws} {json_literal(NAME_KEY)} ":" {ws} {json_literal(tool_name)} '
            f'"," {ws} {json_literal(ARGUMENTS_KEY)} ":" {ws}'
        )
        calls.append(builder.add(f"{tool_name}-call", f'{head} {arguments} "}}"'))
    if wanted is not None and not calls:
        raise GrammarError(f"no tool named {', '.join(sorted(wanted))!r} is available")
    alternatives = list(calls)
    if allow_text or not calls:
        if answer_schema is not None:
            builder.root_schema = answer_schema
            builder._refs = {}
            alternatives.append(builder.schema_rule(answer_schema, "answer"))
        else:
            alternatives.append(builder.add("answer", r"[^{ \t\r\n] [^\x00]*"))
    return builder.render(builder.add("turn", " | ".join(alternatives)))


# --- helpers ---------------------------------------------------------------------------


def _merge(siblings: Mapping[str, Any], option: Any) -> Any:
    """An ``anyOf`` option with the keywords written beside the ``anyOf`` applied to it."""
    constraining = {
        k: v
        for k, v in siblings.items()
        if k not in ("description", "title", "default", "examples", "$comment", "nullable")
    }
    if siblings.get("nullable") is True:
        constraining["nullable"] = True
    if not constraining or not isinstance(option, Mapping):
        return option
    return {**constraining, **option}


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _non_negative_int(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def _integer_bounds(schema: Mapping[str, Any]) -> tuple[int | None, int | None]:
    """The inclusive integer range of an integer schema's (exclusive) minimum and maximum."""
    import math

    lows: list[int] = []
    highs: list[int] = []
    if _is_number(schema.get("minimum")):
        lows.append(math.ceil(schema["minimum"]))
    if _is_number(schema.get("exclusiveMinimum")):
        lows.append(math.floor(schema["exclusiveMinimum"]) + 1)
    elif schema.get("exclusiveMinimum") is True and lows:  # draft 4 boolean form
        lows[-1] = math.floor(schema["minimum"]) + 1
    if _is_number(schema.get("maximum")):
        highs.append(math.floor(schema["maximum"]))
    if _is_number(schema.get("exclusiveMaximum")):
        highs.append(math.ceil(schema["exclusiveMaximum"]) - 1)
    elif schema.get("exclusiveMaximum") is True and highs:
        highs[-1] = math.ceil(schema["maximum"]) - 1
    return (max(lows) if lows else None, min(highs) if highs else None)


def _range_alternatives(low: int, high: int) -> list[str]:
    """GBNF alternatives matching the decimal numbers in [low, high] (0 <= low <= high),
    without leading zeros."""
    out: list[str] = []
    full: list[int] = []  # a run of lengths whose every number is in range

    def flush() -> None:
        if full:
            first, last = full[0] - 1, full[-1] - 1
            count = f"{{{first}}}" if first == last else f"{{{first},{last}}}"
            out.append(f"[1-9] [0-9]{count}")
            full.clear()

    for length in range(len(str(low)), len(str(high)) + 1):
        floor = 0 if length == 1 else 10 ** (length - 1)
        start = max(low, floor)
        end = min(high, 10**length - 1)
        if start > end:
            continue
        if length > 1 and start == floor and end == 10**length - 1:
            full.append(length)
            continue
        flush()
        out += _same_length(str(start), str(end))
    flush()
    return out


def _same_length(low: str, high: str) -> list[str]:
    """Alternatives for the digit strings between ``low`` and ``high`` (of equal length)."""
    if len(low) == 1:
        return [_digit_class(low, high)]
    if low[0] == high[0]:
        return [f'"{low[0]}" ({" | ".join(_same_length(low[1:], high[1:]))})']
    rest = len(low) - 1
    out: list[str] = []
    if low[1:] == "0" * rest:
        first = low[0]
    else:
        out.append(f'"{low[0]}" ({" | ".join(_same_length(low[1:], "9" * rest))})')
        first = str(int(low[0]) + 1)
    last = high[0] if high[1:] == "9" * rest else str(int(high[0]) - 1)
    if first <= last:
        out.append(f"{_digit_class(first, last)} [0-9]{{{rest}}}")
    if high[1:] != "9" * rest:
        out.append(f'"{high[0]}" ({" | ".join(_same_length("0" * rest, high[1:]))})')
    return out


def _digit_class(low: str, high: str) -> str:
    return f'"{low}"' if low == high else f"[{low}-{high}]"


# --- regular expressions: ``pattern`` and ``format`` -----------------------------------------


class UntranslatablePattern(ValueError):
    """A ``pattern`` outside the subset :class:`GrammarBuilder` turns into GBNF (lookaround,
    backreferences, flags, ...): the string is then left unconstrained."""


_MAX_CODE_POINT = 0x10FFFF
#: Ranges of code points, sorted, disjoint and not adjacent.
_Ranges = tuple[tuple[int, int], ...]


def _normalised(ranges: Iterable[tuple[int, int]]) -> _Ranges:
    out: list[tuple[int, int]] = []
    for low, high in sorted(ranges):
        if out and low <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], high))
        else:
            out.append((low, high))
    return tuple(out)


def _complement(ranges: _Ranges) -> _Ranges:
    out: list[tuple[int, int]] = []
    start = 0
    for low, high in ranges:
        if low > start:
            out.append((start, low - 1))
        start = high + 1
    if start <= _MAX_CODE_POINT:
        out.append((start, _MAX_CODE_POINT))
    return tuple(out)


def _minus(ranges: _Ranges, removed: _Ranges) -> _Ranges:
    keep = _complement(removed)
    out: list[tuple[int, int]] = []
    for low, high in ranges:
        for k_low, k_high in keep:
            if k_low <= high and low <= k_high:
                out.append((max(low, k_low), min(high, k_high)))
    return _normalised(out)


_SURROGATES: _Ranges = ((0xD800, 0xDFFF),)
#: Every character a JSON string can hold (what the ``char`` rule writes).
_ANY = _complement(_SURROGATES)
_DIGITS: _Ranges = ((0x30, 0x39),)
_WORD = _normalised([(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)])
_ASCII: _Ranges = ((0, 0x7F),)
_NON_ASCII: _Ranges = ((0x80, _MAX_CODE_POINT),)
_ASCII_SPACE = _normalised([(0x09, 0x0D), (0x20, 0x20)])
#: Whitespace to Python's ``re`` (which validates patterns) or to JavaScript's.
_ANY_SPACE = _normalised(
    [
        *_ASCII_SPACE,
        (0x1C, 0x1F),
        (0x85, 0x85),
        (0xA0, 0xA0),
        (0x1680, 0x1680),
        (0x2000, 0x200A),
        (0x2028, 0x2029),
        (0x202F, 0x202F),
        (0x205F, 0x205F),
        (0x3000, 0x3000),
        (0xFEFF, 0xFEFF),
    ]
)
#: ``\d``, ``\w``, ``\s`` and their negations as (surely in, maybe in): Python's ``re`` takes
#: Unicode digits, letters and spaces for them, JavaScript only ASCII ones. A class uses
#: what both agree on: the first set where it includes, the second where it excludes.
_SHORTHANDS: dict[str, tuple[_Ranges, _Ranges]] = {
    "d": (_DIGITS, _normalised([*_DIGITS, *_NON_ASCII])),
    "w": (_WORD, _normalised([*_WORD, *_NON_ASCII])),
    "s": (_ASCII_SPACE, _ANY_SPACE),
    "D": (_minus(_ASCII, _DIGITS), _complement(_DIGITS)),
    "W": (_minus(_ASCII, _WORD), _complement(_WORD)),
    "S": (_complement(_ANY_SPACE), _complement(_ASCII_SPACE)),
}
#: ``.``: any character but a line break (to Python: ``\n``; to JavaScript: four of them).
_DOT = _complement(_normalised([(0x0A, 0x0A), (0x0D, 0x0D), (0x2028, 0x2029), *_SURROGATES]))
_CHAR_ESCAPES = {"n": 0x0A, "r": 0x0D, "t": 0x09, "f": 0x0C, "v": 0x0B}
_JSON_ESCAPES = {0x08: "b", 0x09: "t", 0x0A: "n", 0x0C: "f", 0x0D: "r"}
_QUANTIFIER = re.compile(r"\{([0-9]+)(,([0-9]*))?\}")


@dataclass(frozen=True, slots=True)
class _Set:
    ranges: _Ranges


@dataclass(frozen=True, slots=True)
class _Seq:
    items: tuple[_Node, ...]


@dataclass(frozen=True, slots=True)
class _Alt:
    options: tuple[_Node, ...]


@dataclass(frozen=True, slots=True)
class _Repeat:
    item: _Node
    low: int
    high: int | None


@dataclass(frozen=True, slots=True)
class _Anchor:
    start: bool


_Node = _Set | _Seq | _Alt | _Repeat | _Anchor


class _RegexParser:
    """Parses the regex subset both JSON Schema's ECMA-262 and Python's ``re`` read alike:
    literals, escapes, classes, ``.``, groups, alternation, quantifiers, ``^``/``$``."""

    def __init__(self, pattern: str) -> None:
        self.text = pattern
        self.pos = 0
        #: A repetition count over MAX_REPEAT was taken as unbounded.
        self.loosened = False

    def parse(self) -> _Node:
        node = self._alternation()
        if self.pos != len(self.text):
            raise UntranslatablePattern(f"unbalanced ')' at {self.pos}")
        return node

    def _peek(self, ahead: int = 0) -> str:
        index = self.pos + ahead
        return self.text[index] if index < len(self.text) else ""

    def _alternation(self) -> _Node:
        options = [self._sequence()]
        while self._peek() == "|":
            self.pos += 1
            options.append(self._sequence())
        return options[0] if len(options) == 1 else _Alt(tuple(options))

    def _sequence(self) -> _Seq:
        items: list[_Node] = []
        while self._peek() not in ("", "|", ")"):
            items.append(self._quantified(self._atom()))
        return _Seq(tuple(items))

    def _atom(self) -> _Node:
        char = self.text[self.pos]
        self.pos += 1
        if char == "(":
            self._group_opening()
            inner = self._alternation()
            if self._peek() != ")":
                raise UntranslatablePattern("a group is not closed")
            self.pos += 1
            return inner
        if char == "[":
            return self._class()
        if char == ".":
            return _Set(_DOT)
        if char in "^$":
            return _Anchor(start=char == "^")
        if char == "\\":
            return self._escape()
        if char in "*+?" or (char == "{" and _QUANTIFIER.match(self.text, self.pos - 1)):
            raise UntranslatablePattern(f"nothing to repeat at {self.pos - 1}")
        return _Set(((ord(char), ord(char)),))

    def _group_opening(self) -> None:
        if self._peek() != "?":
            return  # a capturing group: the same language
        rest = self.text[self.pos :]
        named = re.match(r"\?P?<[A-Za-z_][A-Za-z0-9_]*>", rest)
        if rest.startswith("?:"):
            self.pos += 2
        elif named:
            self.pos += named.end()
        else:  # lookaround, flags, comments, conditionals
            raise UntranslatablePattern(f"the group '({rest[:3]}' is not translated")

    def _quantified(self, atom: _Node) -> _Node:
        char = self._peek()
        high: int | None
        if char and char in "*+?":
            low, high = {"*": (0, None), "+": (1, None), "?": (0, 1)}[char]
            self.pos += 1
        elif char == "{" and (match := _QUANTIFIER.match(self.text, self.pos)):
            low = int(match.group(1))
            high = low if match.group(2) is None else int(match.group(3) or -1)
            high = None if high == -1 else high
            self.pos = match.end()
        elif char == "{" and re.match(r"\{,[0-9]*\}", self.text[self.pos :]):
            raise UntranslatablePattern("'{,n}' means a count to Python, text to ECMA-262")
        else:
            return atom
        if isinstance(atom, _Anchor):
            raise UntranslatablePattern("an anchor cannot be repeated")
        if self._peek() == "?":
            self.pos += 1  # lazy: the same strings
        after = self._peek()
        if (after and after in "*+?") or (after == "{" and _QUANTIFIER.match(self.text, self.pos)):
            raise UntranslatablePattern("a repetition is repeated")
        if high is not None and high < low:
            raise UntranslatablePattern(f"the count {{{low},{high}}} is backwards")
        if low > MAX_REPEAT:
            raise UntranslatablePattern(f"a repetition of at least {low} is too long")
        if high is not None and high > MAX_REPEAT:
            self.loosened = True
            high = None
        if high is None and _lengths(atom)[0] == 0:
            raise UntranslatablePattern("an unbounded repetition of what can be empty")
        return _Repeat(atom, low, high)

    def _escape(self) -> _Node:
        char = self._peek()
        if not char:
            raise UntranslatablePattern("the pattern ends in a backslash")
        self.pos += 1
        if char in _SHORTHANDS:
            return _Set(_SHORTHANDS[char][0])
        if char == "A":
            return _Anchor(start=True)
        if char == "Z":  # Python's end of text (fastjsonschema writes $ as \Z)
            return _Anchor(start=False)
        point = self._escaped_char(char)
        return _Set(((point, point),))

    def _escaped_char(self, char: str) -> int:
        """The code point of the escape ``\\<char>...`` (``pos`` is after ``char``)."""
        if char in _CHAR_ESCAPES:
            return _CHAR_ESCAPES[char]
        digits = {"x": 2, "u": 4}.get(char)
        if digits is not None:
            code = self.text[self.pos : self.pos + digits]
            if len(code) != digits or not all(c in "0123456789abcdefABCDEF" for c in code):
                raise UntranslatablePattern(f"a bad \\{char} escape")
            self.pos += digits
            point = int(code, 16)
            if 0xD800 <= point <= 0xDFFF:
                raise UntranslatablePattern("a surrogate code point")
            return point
        if char == "0" and not self._peek().isdigit():
            return 0
        if char.isascii() and (char.isalnum() or char == "_"):
            # backreferences, \b, \B, \p{...}, \k<...>, \c: not a set of characters
            raise UntranslatablePattern(f"the escape \\{char} is not translated")
        return ord(char)

    def _class(self) -> _Set:
        negated = self._peek() == "^"
        if negated:
            self.pos += 1
        if self._peek() == "]":  # '[]': nothing to ECMA-262, ']' to Python
            raise UntranslatablePattern("a class starting with ']'")
        surely: list[tuple[int, int]] = []  # in the class to both engines
        maybe: list[tuple[int, int]] = []  # in it to one of them
        while True:
            char = self._peek()
            if not char:
                raise UntranslatablePattern("a class is not closed")
            if char == "]":
                self.pos += 1
                break
            item = self._class_item()
            if isinstance(item, tuple):
                surely += item[0]
                maybe += item[1]
                continue
            low = item
            if self._peek() == "-" and self._peek(1) not in ("]", ""):
                self.pos += 1
                high = self._class_item()
                if isinstance(high, tuple):
                    raise UntranslatablePattern("a range ends in a class escape")
                if high < low:
                    raise UntranslatablePattern("a backwards range in a class")
                surely.append((low, high))
                maybe.append((low, high))
            else:
                surely.append((low, low))
                maybe.append((low, low))
        if negated:
            ranges = _complement(_normalised([*maybe, *_SURROGATES]))
        else:
            ranges = _minus(_normalised(surely), _SURROGATES)
        if not ranges:
            raise UntranslatablePattern("a class that matches nothing")
        return _Set(ranges)

    def _class_item(self) -> int | tuple[_Ranges, _Ranges]:
        char = self.text[self.pos]
        self.pos += 1
        if char == "[" and self._peek() in (":", "=", "."):
            raise UntranslatablePattern("a POSIX class")  # text to Python and ECMA-262
        if char != "\\":
            return ord(char)
        escaped = self._peek()
        if not escaped:
            raise UntranslatablePattern("the pattern ends in a backslash")
        self.pos += 1
        if escaped in _SHORTHANDS:
            return _SHORTHANDS[escaped]
        if escaped == "b":
            return 0x08  # backspace, in a class
        return self._escaped_char(escaped)


def _lengths(node: _Node) -> tuple[int, int | None]:
    """The fewest and most characters ``node`` matches (``None``: no limit)."""
    if isinstance(node, _Set):
        return 1, 1
    if isinstance(node, _Anchor):
        return 0, 0
    if isinstance(node, _Repeat):
        low, high = _lengths(node.item)
        if high == 0:
            return 0, 0
        most = None if high is None or node.high is None else high * node.high
        return low * node.low, most
    parts = [_lengths(item) for item in (node.items if isinstance(node, _Seq) else node.options)]
    highs = [high for _, high in parts]
    if isinstance(node, _Seq):
        total = None if None in highs else sum(h for h in highs if h is not None)
        return sum(low for low, _ in parts), total
    if not parts:
        return 0, 0
    most = None if None in highs else max(h for h in highs if h is not None)
    return min(low for low, _ in parts), most


def _has_anchor(node: _Node) -> bool:
    if isinstance(node, _Anchor):
        return True
    if isinstance(node, _Repeat):
        return _has_anchor(node.item)
    if isinstance(node, _Seq):
        return any(_has_anchor(item) for item in node.items)
    if isinstance(node, _Alt):
        return any(_has_anchor(option) for option in node.options)
    return False


def _branches(node: _Node) -> list[tuple[_Node, ...]]:
    """The top-level alternatives of a pattern as whole-string matches: an unanchored side
    becomes any text (JSON Schema searches for the pattern)."""
    options = node.options if isinstance(node, _Alt) else (node,)
    branches: list[tuple[_Node, ...]] = []
    for option in options:
        items = list(option.items) if isinstance(option, _Seq) else [option]
        start = end = False
        while items and isinstance(items[0], _Anchor) and items[0].start:
            items.pop(0)
            start = True
        while items and isinstance(items[-1], _Anchor) and not items[-1].start:
            items.pop()
            end = True
        if any(_has_anchor(item) for item in items):
            raise UntranslatablePattern("an anchor inside the pattern")
        anything = _Repeat(_Set(_ANY), 0, None)
        branches.append((*(() if start else (anything,)), *items, *(() if end else (anything,))))
    return branches


def _clamp(
    items: tuple[_Node, ...], low: int, high: int | None
) -> tuple[bool, tuple[_Node, ...] | None]:
    """``items`` (a sequence) limited to ``low``..``high`` characters: (whether any string can
    fit, the limited items or ``None`` where the limit cannot be written in the sequence)."""
    least, most = _lengths(_Seq(items))
    if (high is not None and least > high) or (most is not None and most < low):
        return False, ()
    if least >= low and (high is None or (most is not None and most <= high)):
        return True, items  # every match has an allowed length
    varying = [i for i, item in enumerate(items) if len(set(_lengths(item))) > 1]
    if len(varying) != 1 or not isinstance(items[varying[0]], _Repeat):
        return True, None
    index = varying[0]
    repeat = items[index]
    assert isinstance(repeat, _Repeat)
    size, size_high = _lengths(repeat.item)
    if size != size_high or not size:
        return True, None
    fixed = least - repeat.low * size  # the other items' length
    count_low = max(repeat.low, -(-(low - fixed) // size))
    count_high = repeat.high
    if high is not None:
        most_count = (high - fixed) // size
        count_high = most_count if count_high is None else min(count_high, most_count)
    if count_high is not None and count_low > count_high:
        return False, ()
    if count_low > MAX_REPEAT or (count_high is not None and count_high > MAX_REPEAT):
        return True, None
    limited = _Repeat(repeat.item, count_low, count_high)
    return True, (*items[:index], limited, *items[index + 1 :])


def _single(node: _Node) -> str | None:
    """The one character a node matches, if it matches exactly one."""
    if isinstance(node, _Set) and len(node.ranges) == 1 and node.ranges[0][0] == node.ranges[0][1]:
        return chr(node.ranges[0][0])
    return None


def _class_char(point: int) -> str:
    if point < 0x80 and chr(point).isalnum():
        return chr(point)
    if point <= 0xFF:
        return f"\\x{point:02X}"
    if point <= 0xFFFF:
        return f"\\u{point:04X}"
    return f"\\U{point:08X}"


def _gbnf_class(ranges: _Ranges) -> str:
    """A GBNF character class of ``ranges``, negated where that is shorter."""

    def spelled(parts: _Ranges) -> str:
        return "".join(
            _class_char(a) if a == b else f"{_class_char(a)}-{_class_char(b)}" for a, b in parts
        )

    outside = _minus(_complement(ranges), _SURROGATES)
    if len(outside) < len(ranges):
        return f"[^{spelled(outside)}]"
    return f"[{spelled(ranges)}]"


def _is_atom(expression: str) -> bool:
    """Whether a GBNF expression can take a repetition suffix without parentheses: one
    literal, class or rule name, or one parenthesised group."""
    if re.fullmatch(r'"(?:[^"\\]|\\.)*"|\[(?:[^\]\\]|\\.)*\]|[A-Za-z0-9-]+', expression):
        return True
    if not expression.startswith("("):
        return False
    depth, index = 0, 0
    while index < len(expression):
        char = expression[index]
        if char in '"[':  # skip a literal or a class, escapes included
            close = '"' if char == '"' else "]"
            index += 1
            while expression[index] != close:
                index += 2 if expression[index] == "\\" else 1
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return index == len(expression) - 1
        index += 1
    return False


def _json_chars(ranges: _Ranges) -> str:
    """GBNF for one character of ``ranges`` as it is written in a JSON string: as itself,
    or escaped (a quote, a backslash, a control character)."""
    plain = _minus(ranges, ((0x00, 0x1F), (0x22, 0x22), (0x5C, 0x5C)))
    options = [_gbnf_class(plain)] if plain else []
    for point in (0x22, 0x5C):
        if _minus(ranges, _complement(((point, point),))):
            options.append(literal("\\" + chr(point)))
    controls = [
        p for low, high in _minus(ranges, _complement(((0, 0x1F),))) for p in range(low, high + 1)
    ]
    if controls:  # \b \t \n \f \r, or \u00XX (any of them)
        escapes: list[str] = []
        shorts = "".join(_JSON_ESCAPES[p] for p in controls if p in _JSON_ESCAPES)
        if shorts:
            escapes.append(f"[{shorts}]")
        for high_digit in (0, 1):
            lows = "".join(f"{p & 0xF:x}" for p in controls if p >> 4 == high_digit)
            if lows:
                escapes.append(f'"u00{high_digit}" [{lows}]')
        options.append('"\\\\" (' + " | ".join(escapes) + ")")
    if not options:
        raise UntranslatablePattern("a class of characters JSON cannot hold")
    return options[0] if len(options) == 1 else "(" + " | ".join(options) + ")"


#: A calendar day, YYYY-MM-DD (29 February in leap years only), as fastjsonschema checks it.
_DATE = (
    r"[0-9]{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|"
    r"[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))|(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])"
    r"|(?:[02468][048]|[13579][26])00)-02-29"
)
_TIME = (
    r"(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,6})?"
    r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
)
_BYTE = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
#: The ``format`` values enforced, as the patterns generated: what both RFC 3339 (and the
#: like) and fastjsonschema accept.
FORMAT_PATTERNS: dict[str, str] = {
    "date": f"^(?:{_DATE})$",
    "time": f"^{_TIME}$",
    "date-time": f"^(?:{_DATE})T{_TIME}$",
    "uuid": r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
    "ipv4": rf"^(?:{_BYTE}\.){{3}}{_BYTE}$",
}


__all__ = [
    "ARGUMENTS_KEY",
    "FORMAT_PATTERNS",
    "MAX_REPEAT",
    "NAME_KEY",
    "GrammarBuilder",
    "GrammarError",
    "UntranslatablePattern",
    "json_literal",
    "literal",
    "schema_to_gbnf",
    "tool_call_grammar",
]
