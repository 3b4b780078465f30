"""JSON schemas from Python type hints and docstrings, for ``@tool``.

Written here rather than through pydantic so that importing loopwright and decorating a
function stay cheap, and so the schemas stay small and flat (no ``title`` noise, no ``$defs``
for simple types), which small local models follow better when a grammar is built from them.
Pydantic models used as parameter types are still supported: their own schema is used.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

_SIMPLE: dict[Any, dict[str, Any]] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    type(None): {"type": "null"},
    bytes: {"type": "string"},
    Any: {},
    object: {},
}


class SchemaError(TypeError):
    """A type hint cannot be expressed as a JSON schema for a tool parameter."""


def _is_simple(annotation: Any) -> bool:
    try:
        return annotation in _SIMPLE
    except TypeError:  # unhashable, e.g. Annotated[int, {"unit": "s"}]
        return False


def json_schema_for(annotation: Any) -> dict[str, Any]:
    """The JSON schema of values of type ``annotation``."""
    if _is_simple(annotation):
        return dict(_SIMPLE[annotation])
    if annotation is inspect.Parameter.empty:
        return {}
    origin = get_origin(annotation)
    args = get_args(annotation)
    if origin is typing.Annotated:
        schema = json_schema_for(args[0])
        for extra in args[1:]:
            if isinstance(extra, str):
                schema["description"] = extra
            elif hasattr(extra, "description") and getattr(extra, "description", None):
                schema["description"] = extra.description
        return schema
    if origin is Literal:
        values = list(args)
        schema = {"enum": values}
        kinds = {type(v) for v in values}
        if len(kinds) == 1 and next(iter(kinds)) in _SIMPLE:
            schema = {**_SIMPLE[next(iter(kinds))], "enum": values}
        return schema
    if origin in (Union, types.UnionType):
        members = [a for a in args if a is not type(None)]
        nullable = len(members) != len(args)
        if len(members) == 1:
            inner = json_schema_for(members[0])
            if not nullable:
                return inner
            if set(inner) == {"type"} and isinstance(inner["type"], str):
                return {"type": [inner["type"], "null"]}
            return {"anyOf": [inner, {"type": "null"}]}
        options = [json_schema_for(m) for m in members]
        if nullable:
            options.append({"type": "null"})
        return {"anyOf": options}
    if origin in (list, Sequence, set, frozenset, typing.List, typing.Set) or annotation in (  # noqa: UP006
        list,
        set,
        frozenset,
    ):
        schema = {"type": "array"}
        if args:
            schema["items"] = json_schema_for(args[0])
        if origin in (set, frozenset) or annotation in (set, frozenset):
            schema["uniqueItems"] = True
        return schema
    if origin is tuple or annotation is tuple:
        if not args:
            return {"type": "array"}
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": json_schema_for(args[0])}
        return {
            "type": "array",
            "prefixItems": [json_schema_for(a) for a in args],
            "minItems": len(args),
            "maxItems": len(args),
        }
    if origin in (dict, Mapping) or annotation is dict:
        schema = {"type": "object"}
        if len(args) == 2:
            if args[0] is not str:
                raise SchemaError("dictionary keys of a tool parameter must be str")
            schema["additionalProperties"] = json_schema_for(args[1])
        return schema
    if inspect.isclass(annotation):
        if issubclass(annotation, enum.Enum):
            values = [member.value for member in annotation]
            schema = {"enum": values}
            kinds = {type(v) for v in values}
            if len(kinds) == 1 and next(iter(kinds)) in _SIMPLE:
                schema = {**_SIMPLE[next(iter(kinds))], "enum": values}
            return schema
        if typing.is_typeddict(annotation):
            return _object_schema_of_typeddict(annotation)
        if dataclasses.is_dataclass(annotation):
            return _object_schema_of_dataclass(annotation)
        model_schema = getattr(annotation, "model_json_schema", None)
        if callable(model_schema):  # a pydantic model
            return dict(model_schema())
    raise SchemaError(f"cannot describe type {annotation!r} as a JSON schema")


def _object_schema_of_typeddict(cls: type) -> dict[str, Any]:
    hints = get_type_hints(cls, include_extras=True)
    required = sorted(getattr(cls, "__required_keys__", set(hints)))
    return {
        "type": "object",
        "properties": {name: json_schema_for(hint) for name, hint in hints.items()},
        "required": required,
        "additionalProperties": False,
    }


def _object_schema_of_dataclass(cls: type) -> dict[str, Any]:
    hints = get_type_hints(cls, include_extras=True)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for f in dataclasses.fields(cls):
        properties[f.name] = json_schema_for(hints.get(f.name, Any))
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            required.append(f.name)
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


# --- docstrings -------------------------------------------------------------------------

_SECTION = re.compile(
    r"^\s*(Args|Arguments|Parameters|Params|Returns|Return|Raises|Yields|Examples?|Notes?)\s*:?\s*$"
)
_GOOGLE_PARAM = re.compile(r"^\s*\*{0,2}(\w+)\s*(?:\(([^)]*)\))?\s*:\s*(.*)$")
_SPHINX_PARAM = re.compile(r"^\s*:param\s+(?:[^:]*\s)?(\w+)\s*:\s*(.*)$")
_NUMPY_PARAM = re.compile(r"^\s*\*{0,2}(\w+)\s*(?::\s*(.*))?$")


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """Split a docstring into (description, {parameter: description}).

    Google (``Args:``), NumPy (``Parameters`` + dashes) and Sphinx (``:param x:``) styles are
    understood.
    """
    if not doc:
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    description: list[str] = []
    params: dict[str, str] = {}
    section: str | None = None
    current: str | None = None
    numpy = False
    index = 0
    while index < len(lines):
        line = lines[index]
        next_line = lines[index + 1] if index + 1 < len(lines) else ""
        header = _SECTION.match(line)
        if header and (line.rstrip().endswith(":") or set(next_line.strip()) == {"-"}):
            section = header.group(1).lower()
            numpy = set(next_line.strip()) == {"-"}
            current = None
            index += 2 if numpy else 1
            continue
        sphinx = _SPHINX_PARAM.match(line)
        if sphinx:
            section, current = "sphinx", sphinx.group(1)
            params[current] = sphinx.group(2).strip()
        elif line.lstrip().startswith(":") and section == "sphinx":
            current = None  # :returns:, :raises: and similar
        elif section in ("args", "arguments", "parameters", "params"):
            indent = len(line) - len(line.lstrip())
            match = _NUMPY_PARAM.match(line) if numpy else _GOOGLE_PARAM.match(line)
            if match and (indent == 0 or not numpy) and (current is None or indent <= 4):
                current = match.group(1)
                params[current] = "" if numpy else match.group(3).strip()
            elif current and line.strip():
                params[current] = (params[current] + " " + line.strip()).strip()
        elif section is None:
            description.append(line)
        elif section == "sphinx" and current and line.strip():
            params[current] = (params[current] + " " + line.strip()).strip()
        index += 1
    return "\n".join(description).strip(), params


# --- functions --------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class FunctionSignature:
    """What ``@tool`` learned from a function: its schema and how to call it."""

    description: str
    input_schema: dict[str, Any]
    #: parameter name -> annotation, for converting JSON values to Python values
    annotations: dict[str, Any]
    #: name of the parameter that receives the ToolContext, if any
    context_param: str | None


def function_signature(
    fn: Callable[..., Any], context_type: type | None = None
) -> FunctionSignature:
    """Build the input schema of ``fn`` from its signature, type hints and docstring."""
    description, param_docs = parse_docstring(inspect.getdoc(fn))
    try:
        hints = get_type_hints(fn, include_extras=True)
    except Exception as exc:  # unresolvable forward reference, for instance
        raise SchemaError(f"cannot read the type hints of {fn.__qualname__}: {exc}") from exc
    properties: dict[str, Any] = {}
    required: list[str] = []
    annotations: dict[str, Any] = {}
    context_param: str | None = None
    for param in inspect.signature(fn).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise SchemaError(f"{fn.__qualname__}: *args and **kwargs cannot become tool inputs")
        hint = hints.get(param.name, param.annotation)
        if context_type is not None and hint is context_type:
            context_param = param.name
            continue
        if hint is inspect.Parameter.empty:
            raise SchemaError(
                f"{fn.__qualname__}: parameter {param.name!r} needs a type hint to become a "
                "tool input"
            )
        try:
            schema = json_schema_for(hint)
        except SchemaError as exc:
            raise SchemaError(f"{fn.__qualname__}: parameter {param.name!r}: {exc}") from None
        if param.name in param_docs and "description" not in schema:
            schema["description"] = param_docs[param.name]
        if param.default is param.empty:
            required.append(param.name)
        elif isinstance(param.default, enum.Enum) and _json_safe(param.default.value):
            schema["default"] = param.default.value
        elif _json_safe(param.default):
            schema["default"] = param.default
        properties[param.name] = schema
        annotations[param.name] = hint
    input_schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }
    return FunctionSignature(
        description or fn.__name__.replace("_", " "), input_schema, annotations, context_param
    )


def _json_safe(value: Any) -> bool:
    if value is None or isinstance(value, str | int | float | bool):
        return True
    if isinstance(value, list | tuple):
        return all(_json_safe(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _json_safe(v) for k, v in value.items())
    return False


def convert_argument(annotation: Any, value: Any) -> Any:
    """Turn a JSON value into the Python type the function asked for (enums, tuples...)."""
    if value is None:
        return None
    origin = get_origin(annotation)
    args = get_args(annotation)
    if origin is typing.Annotated:
        return convert_argument(args[0], value)
    if origin in (Union, types.UnionType):
        members = [a for a in args if a is not type(None)]
        return convert_argument(members[0], value) if len(members) == 1 else value
    if origin in (list, Sequence) and args and isinstance(value, list):
        return [convert_argument(args[0], v) for v in value]
    if (origin in (set, frozenset) or annotation in (set, frozenset)) and isinstance(value, list):
        items = [convert_argument(args[0], v) for v in value] if args else value
        return frozenset(items) if frozenset in (origin, annotation) else set(items)
    if (origin is tuple or annotation is tuple) and isinstance(value, list):
        if args and not (len(args) == 2 and args[1] is Ellipsis):
            return tuple(convert_argument(a, v) for a, v in zip(args, value, strict=False))
        return tuple(convert_argument(args[0], v) for v in value) if args else tuple(value)
    if origin in (dict, Mapping) and len(args) == 2 and isinstance(value, dict):
        return {k: convert_argument(args[1], v) for k, v in value.items()}
    if inspect.isclass(annotation):
        if annotation is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if annotation is int and isinstance(value, float) and value.is_integer():
            return int(value)  # JSON Schema's "integer" accepts 3.0
        if issubclass(annotation, enum.Enum):
            return annotation(value)
        if dataclasses.is_dataclass(annotation) and isinstance(value, dict):
            hints = get_type_hints(annotation)
            return annotation(
                **{k: convert_argument(hints.get(k, Any), v) for k, v in value.items()}
            )
        validate = getattr(annotation, "model_validate", None)
        if callable(validate):
            return validate(value)
    return value
