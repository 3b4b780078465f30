"""GBNF grammars from JSON schemas, to constrain a local model's tool calls.

llama.cpp can restrict generation to the language of a GBNF grammar. :func:`tool_call_grammar`
builds one from the registered tools' schemas: the model either writes one tool call as a
JSON object ``{"name": "<tool>", "arguments": {...}}`` whose arguments match that tool's
``input_schema``, or it answers in plain text (or, with ``answer_schema``, with JSON that
matches it). Every call the model emits then parses and validates.

:func:`schema_to_gbnf` turns a single JSON schema into a grammar of the JSON values it
accepts. Supported: ``type`` (one or a list), ``enum``, ``const``, ``anyOf``/``oneOf``,
``allOf`` of objects, ``nullable``, ``$ref`` into ``$defs``/``definitions`` (recursion
included); objects (``properties``, ``required``, ``additionalProperties``), arrays
(``items``, ``prefixItems``, ``minItems``/``maxItems``), strings (``minLength``/``maxLength``),
integers with ``minimum``/``maximum`` (exclusive ones too), numbers, booleans and null.

What a grammar cannot express degrades gracefully to a more permissive rule: ``pattern``,
``format``, ``multipleOf``, ``uniqueItems``, ``not``, ``if``/``then``/``else``,
``patternProperties``, ``propertyNames``, ``contains``, ``minProperties``/``maxProperties``,
``dependentRequired``/``dependentSchemas`` and the bounds of non-integer numbers (except that
a lower bound of 0 or more forbids a minus sign) are not enforced; such keywords are listed
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
from typing import Any, TypeGuard

#: The keys of a tool call object: ``{"name": <tool name>, "arguments": <input object>}``.
NAME_KEY = "name"
ARGUMENTS_KEY = "arguments"

MAX_DIGITS = 15
_MAX_INT = 10**MAX_DIGITS - 1

_IGNORED_KEYWORDS = frozenset(
    {
        "pattern",
        "format",
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
        low = _non_negative_int(schema.get("minLength"))
        high = _non_negative_int(schema.get("maxLength"))
        if not low and high is None:
            return self.primitive("string")
        self.primitive("char")
        count = f"{{{low or 0},{'' if high is None else high}}}"
        return self.add(name, f'"\\"" char{count} "\\""')

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


__all__ = [
    "ARGUMENTS_KEY",
    "NAME_KEY",
    "GrammarBuilder",
    "GrammarError",
    "json_literal",
    "literal",
    "schema_to_gbnf",
    "tool_call_grammar",
]
