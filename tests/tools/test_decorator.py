"""@tool: a typed Python function becomes a tool, its schema read from hints and docstring."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import functools
import inspect
import json
import threading
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, TypedDict

import pytest

from loopwright.messages import ImageBlock, TextBlock
from loopwright.tools import FunctionTool, ToolContext, ToolDefinition, ToolRegistry, tool
from loopwright.tools.schema import SchemaError, json_schema_for, parse_docstring


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Address(TypedDict):
    street: str
    zip_code: int


@dataclasses.dataclass
class Point:
    x: float
    y: float
    label: str = "origin"


@dataclasses.dataclass
class Segment:
    start: Point
    end: Point


@pytest.fixture
def registry(tmp_path: Path) -> ToolRegistry:
    ws = tmp_path / "ws"
    ws.mkdir()
    return ToolRegistry(ws, session_id="session-1")


def input_schema(definition: ToolDefinition) -> dict[str, Any]:
    schema = definition.schema["input_schema"]
    assert isinstance(schema, dict)
    return schema


# --- the decorator ---------------------------------------------------------------------


def test_bare_decorator_builds_a_definition() -> None:
    @tool
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    assert isinstance(add, ToolDefinition)
    assert add.name == "add"
    assert add.schema == {
        "name": "add",
        "description": "Add two numbers.",
        "input_schema": {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
            "additionalProperties": False,
        },
    }
    assert add.sequential is False
    assert add.timeout is None


def test_decorated_function_is_still_callable_as_itself() -> None:
    @tool
    def add(a: int, b: int = 1) -> int:
        """Add two numbers."""
        return a + b

    assert add(2, 3) == 5
    assert add(a=2) == 3
    assert inspect.signature(add) == inspect.signature(add.function)  # help() shows it
    assert add.__doc__ == "Add two numbers."


async def test_decorated_async_function_is_still_awaitable() -> None:
    @tool
    async def double(x: int) -> int:
        """Double it."""
        return x * 2

    assert await double(4) == 8


def test_options_name_description_sequential_timeout() -> None:
    @tool(name="Deploy", description="Ship it.", sequential=True, timeout=3.5)
    def deploy(target: str) -> str:
        """Not this text."""
        return target

    assert deploy.name == "Deploy"
    assert deploy.schema["name"] == "Deploy"
    assert deploy.schema["description"] == "Ship it."
    assert deploy.sequential is True
    assert deploy.timeout == 3.5
    assert deploy("x") == "x"


def test_description_falls_back_to_the_function_name() -> None:
    @tool
    def count_rows(table: str) -> int:
        return 0

    assert count_rows.schema["description"] == "count rows"


def test_missing_type_hint_is_refused_at_decoration_time() -> None:
    with pytest.raises(SchemaError, match=r"parameter 'b' needs a type hint"):

        @tool
        def add(a: int, b) -> int:  # type: ignore[no-untyped-def]
            return a + int(b)


@pytest.mark.parametrize("kind", ["args", "kwargs"])
def test_star_args_are_refused_at_decoration_time(kind: str) -> None:
    def with_args(*args: int) -> int:
        return sum(args)

    def with_kwargs(**kwargs: int) -> int:
        return sum(kwargs.values())

    with pytest.raises(SchemaError, match=r"\*args and \*\*kwargs cannot become tool inputs"):
        tool(with_args if kind == "args" else with_kwargs)


class Opaque:
    """Not describable as JSON."""


def test_unsupported_types_are_refused_clearly() -> None:
    def takes_opaque(thing: Opaque) -> None:
        return None

    with pytest.raises(SchemaError, match=r"parameter 'thing': cannot describe type"):
        tool(takes_opaque)

    def int_keys(mapping: dict[int, str]) -> None:
        return None

    with pytest.raises(SchemaError, match="dictionary keys"):
        tool(int_keys)


def test_unresolvable_hint_is_refused_clearly() -> None:
    def later(thing: NotDefinedAnywhere) -> None:  # type: ignore[name-defined]  # noqa: F821
        return None

    with pytest.raises(SchemaError, match=r"cannot read the type hints of .*later"):
        tool(later)


def test_schema_error_is_a_type_error() -> None:
    assert issubclass(SchemaError, TypeError)


# --- schemas from type hints -----------------------------------------------------------


@pytest.mark.parametrize(
    ("hint", "expected"),
    [
        (str, {"type": "string"}),
        (int, {"type": "integer"}),
        (float, {"type": "number"}),
        (bool, {"type": "boolean"}),
        (Any, {}),
        (Optional[int], {"type": ["integer", "null"]}),  # noqa: UP045
        (int | None, {"type": ["integer", "null"]}),
        (list[int], {"type": "array", "items": {"type": "integer"}}),
        (list, {"type": "array"}),
        (set[str], {"type": "array", "items": {"type": "string"}, "uniqueItems": True}),
        (dict[str, float], {"type": "object", "additionalProperties": {"type": "number"}}),
        (dict, {"type": "object"}),
        (Literal["a", "b"], {"type": "string", "enum": ["a", "b"]}),
        (Literal[1, "x"], {"enum": [1, "x"]}),
        (Color, {"type": "string", "enum": ["red", "green"]}),
        (Level, {"type": "integer", "enum": [1, 2]}),
        (
            tuple[int, str],
            {
                "type": "array",
                "prefixItems": [{"type": "integer"}, {"type": "string"}],
                "minItems": 2,
                "maxItems": 2,
            },
        ),
        (tuple[float, ...], {"type": "array", "items": {"type": "number"}}),
        (Annotated[str, "The city name"], {"type": "string", "description": "The city name"}),
        (Annotated[int, {"unit": "s"}], {"type": "integer"}),
        (
            int | str,
            {"anyOf": [{"type": "integer"}, {"type": "string"}]},
        ),
        (
            list[Point] | None,
            {
                "anyOf": [
                    {"type": "array", "items": json_schema_for(Point)},
                    {"type": "null"},
                ]
            },
        ),
    ],
)
def test_schema_of_type_hints(hint: Any, expected: dict[str, Any]) -> None:
    assert json_schema_for(hint) == expected


def test_schema_of_typeddict() -> None:
    assert json_schema_for(Address) == {
        "type": "object",
        "properties": {"street": {"type": "string"}, "zip_code": {"type": "integer"}},
        "required": ["street", "zip_code"],
        "additionalProperties": False,
    }


def test_schema_of_dataclass() -> None:
    assert json_schema_for(Point) == {
        "type": "object",
        "properties": {
            "x": {"type": "number"},
            "y": {"type": "number"},
            "label": {"type": "string"},
        },
        "required": ["x", "y"],
        "additionalProperties": False,
    }
    nested = json_schema_for(Segment)
    assert nested["properties"]["start"] == json_schema_for(Point)


def test_defaults_make_parameters_optional_and_are_shown() -> None:
    @tool
    def search(
        query: str,
        limit: int = 10,
        exact: bool = False,
        color: Color = Color.RED,
        fields: tuple[str, ...] = ("a", "b"),
        where: Optional[str] = None,  # noqa: UP045
        point: Point | None = None,
        marker: object = object(),
    ) -> str:
        """Search."""
        return query

    schema = input_schema(search)
    assert schema["required"] == ["query"]
    props = schema["properties"]
    assert props["limit"] == {"type": "integer", "default": 10}
    assert props["exact"] == {"type": "boolean", "default": False}
    assert props["color"] == {"type": "string", "enum": ["red", "green"], "default": "red"}
    assert props["fields"]["default"] == ("a", "b")
    assert props["where"] == {"type": ["string", "null"], "default": None}
    assert "default" not in props["marker"]  # not JSON: left out rather than invented
    json.dumps(search.schema)  # the whole schema is JSON


def test_annotated_description_wins_over_the_docstring() -> None:
    @tool
    def weather(city: Annotated[str, "City, e.g. Paris"], days: int = 1) -> str:
        """Forecast.

        Args:
            city: From the docstring.
            days: How many days ahead.
        """
        return city

    props = input_schema(weather)["properties"]
    assert props["city"]["description"] == "City, e.g. Paris"
    assert props["days"]["description"] == "How many days ahead."


# --- descriptions from docstrings ------------------------------------------------------


def test_google_docstring() -> None:
    @tool
    def query(sql: str, limit: int = 100, *, dry_run: bool = False) -> str:
        """Run a read-only SQL query.

        Use it for counts and aggregates.

        Args:
            sql: The SELECT statement.
                It may span lines: like this.
            limit (int): Maximum rows to return.
            dry_run (bool, optional): Only explain the plan.

        Returns:
            The rows as CSV.

        Raises:
            ValueError: on a bad statement.
        """
        return sql

    assert query.description == "Run a read-only SQL query.\n\nUse it for counts and aggregates."
    props = input_schema(query)["properties"]
    assert props["sql"]["description"] == "The SELECT statement. It may span lines: like this."
    assert props["limit"]["description"] == "Maximum rows to return."
    assert props["dry_run"]["description"] == "Only explain the plan."
    assert "ValueError" not in json.dumps(query.schema)


def test_numpy_docstring() -> None:
    @tool
    def resample(series: list[float], rule: str, fill: float = 0.0, strict: bool = True) -> str:
        """Resample a time series.

        Parameters
        ----------
        series : list of float
            The values, one per period.
        rule : str
            Pandas offset alias: "D", "W" or "M".
        fill : float, optional
            Value for empty periods.
        strict
            Fail on gaps.

        Returns
        -------
        str
            The new series.
        """
        return rule

    assert resample.description == "Resample a time series."
    props = input_schema(resample)["properties"]
    assert props["series"]["description"] == "The values, one per period."
    assert props["rule"]["description"] == 'Pandas offset alias: "D", "W" or "M".'
    assert props["fill"]["description"] == "Value for empty periods."
    assert props["strict"]["description"] == "Fail on gaps."
    assert "str" not in props  # the Returns section is not a parameter


def test_sphinx_docstring() -> None:
    @tool
    def fetch(url: str, timeout: float = 10.0) -> str:
        """Fetch a web page.

        :param url: Address to fetch,
            http or https.
        :param float timeout: Seconds to wait.
        :type timeout: float
        :returns: The body.
        :raises ValueError: never.
        """
        return url

    assert fetch.description == "Fetch a web page."
    props = input_schema(fetch)["properties"]
    assert props["url"]["description"] == "Address to fetch, http or https."
    assert props["timeout"]["description"] == "Seconds to wait."


def test_parse_docstring_without_sections() -> None:
    assert parse_docstring("Just a line.\n\nAnd more.") == ("Just a line.\n\nAnd more.", {})
    assert parse_docstring(None) == ("", {})


# --- running the tool ------------------------------------------------------------------


async def test_sync_tool_end_to_end_runs_off_the_event_loop(registry: ToolRegistry) -> None:
    loop_thread = threading.get_ident()
    seen: list[int] = []

    @tool
    def add(a: int, b: int) -> int:
        """Add."""
        seen.append(threading.get_ident())
        return a + b

    registry.register(add)
    result = await registry.execute("add", {"a": 2, "b": 3})
    assert result == {"content": "5", "is_error": False}
    assert seen
    assert seen[0] != loop_thread


async def test_blocking_sync_tool_does_not_block_the_loop(registry: ToolRegistry) -> None:
    release = threading.Event()

    @tool
    def wait_for_release() -> str:
        """Blocks its thread until released."""
        assert release.wait(5)
        return "released"

    registry.register(wait_for_release)
    task = asyncio.create_task(registry.execute("wait_for_release", {}))
    await asyncio.sleep(0.01)  # the loop still runs while the function blocks
    assert not task.done()
    release.set()
    assert (await task)["content"] == "released"


async def test_async_tool_end_to_end_runs_on_the_loop(registry: ToolRegistry) -> None:
    loop_thread = threading.get_ident()

    @tool
    async def where() -> str:
        """Where am I."""
        await asyncio.sleep(0)
        return "loop" if threading.get_ident() == loop_thread else "thread"

    registry.register(where)
    assert (await registry.execute("where", {}))["content"] == "loop"


async def test_sync_function_returning_an_awaitable_is_awaited(registry: ToolRegistry) -> None:
    async def _inner(x: int) -> str:
        return f"got {x}"

    @tool
    @functools.wraps(_inner)
    def wrapped(x: int) -> Any:
        return _inner(x)

    registry.register(wrapped)
    assert (await registry.execute("_inner", {"x": 1}))["content"] == "got 1"


async def test_arguments_are_converted_to_the_declared_types(registry: ToolRegistry) -> None:
    received: dict[str, Any] = {}

    @tool
    def convert(
        color: Color,
        level: Level,
        point: Point,
        segment: Segment,
        pair: tuple[int, str],
        scale: float,
        count: int,
        weights: dict[str, float],
        colors: list[Color],
        maybe: Color | None = None,
        tags: frozenset[str] = frozenset(),
        address: Address | None = None,
    ) -> str:
        """Convert everything."""
        received.update(locals())
        return "ok"

    registry.register(convert)
    result = await registry.execute(
        "convert",
        {
            "color": "green",
            "level": 2,
            "point": {"x": 1, "y": 2.5},
            "segment": {"start": {"x": 0, "y": 0}, "end": {"x": 3, "y": 4, "label": "b"}},
            "pair": [7, "seven"],
            "scale": 2,
            "count": 3.0,
            "weights": {"a": 1},
            "colors": ["red", "green"],
            "maybe": "red",
            "tags": ["x", "y"],
            "address": {"street": "Main", "zip_code": 12345},
        },
    )
    assert result == {"content": "ok", "is_error": False}
    assert received["color"] is Color.GREEN
    assert received["level"] is Level.HIGH
    assert received["point"] == Point(1.0, 2.5)
    assert isinstance(received["point"].x, float)
    assert received["segment"] == Segment(Point(0.0, 0.0), Point(3.0, 4.0, "b"))
    assert received["pair"] == (7, "seven")
    assert isinstance(received["scale"], float)
    assert received["count"] == 3
    assert type(received["count"]) is int
    assert received["weights"] == {"a": 1.0}
    assert isinstance(received["weights"]["a"], float)
    assert received["colors"] == [Color.RED, Color.GREEN]
    assert received["maybe"] is Color.RED
    assert received["tags"] == frozenset({"x", "y"})
    assert received["address"] == {"street": "Main", "zip_code": 12345}


async def test_defaults_are_applied_when_arguments_are_omitted(registry: ToolRegistry) -> None:
    @tool
    def greet(name: str, greeting: str = "hello", color: Color = Color.RED) -> str:
        """Greet."""
        assert isinstance(color, Color)
        return f"{greeting} {name} in {color.value}"

    registry.register(greet)
    assert (await registry.execute("greet", {"name": "ada"}))["content"] == "hello ada in red"


@pytest.mark.parametrize(
    "bad",
    [
        {"color": "blue", "pair": [1, "a"]},
        {"color": "red", "pair": ["a", "b"]},
        {"color": "red", "pair": [1]},
        {"color": "red", "pair": [1, "a", 3]},
        {"color": "red", "pair": [1, "a"], "mode": "fast"},
    ],
)
async def test_invalid_arguments_never_reach_the_function(
    registry: ToolRegistry, bad: dict[str, Any]
) -> None:
    calls: list[Any] = []

    @tool
    def strict(color: Color, pair: tuple[int, str], mode: Literal["slow"] = "slow") -> str:
        """Strict."""
        calls.append((color, pair, mode))
        return "ran"

    registry.register(strict)
    result = await registry.execute("strict", bad)
    assert result["is_error"] is True
    assert "Invalid input for tool 'strict'" in result["content"]
    assert calls == []


async def test_tool_context_is_injected_and_hidden_from_the_schema(
    registry: ToolRegistry,
) -> None:
    @tool
    def where_am_i(ctx: ToolContext, name: str) -> str:
        """Report the workspace."""
        (ctx.workspace_dir / name).write_text("here")
        return f"{ctx.workspace_dir}|{ctx.session_id}"

    schema = input_schema(where_am_i)
    assert list(schema["properties"]) == ["name"]
    assert schema["required"] == ["name"]
    registry.register(where_am_i)
    result = await registry.execute("where_am_i", {"name": "f.txt"})
    assert result["content"] == f"{registry.workspace_dir}|session-1"
    assert (Path(registry.workspace_dir) / "f.txt").read_text() == "here"
    refused = await registry.execute("where_am_i", {"name": "x", "ctx": {}})
    assert refused["is_error"] is True


async def test_exceptions_in_the_function_become_error_results(registry: ToolRegistry) -> None:
    @tool
    def divide(a: float, b: float) -> float:
        """Divide."""
        return a / b

    registry.register(divide)
    result = await registry.execute("divide", {"a": 1, "b": 0})
    assert result["is_error"] is True
    assert "ZeroDivisionError: float division by zero" in result["content"]


async def test_decorator_timeout_stops_a_slow_tool(registry: ToolRegistry) -> None:
    @tool(timeout=0.05)
    async def slow() -> str:
        """Slow."""
        await asyncio.sleep(10)
        return "never"

    registry.register(slow)
    result = await registry.execute("slow", {})
    assert result["is_error"] is True
    assert "slow timed out after 0.05s" in result["content"]


def test_decorator_sequential_reaches_the_registry(registry: ToolRegistry) -> None:
    @tool(sequential=True)
    def write_row(row: str) -> str:
        """Write."""
        return row

    @tool
    def read_row(row: str) -> str:
        """Read."""
        return row

    bound = registry.register(write_row)
    registry.register(read_row)
    assert isinstance(bound, FunctionTool)
    assert registry.is_sequential("write_row")
    assert not registry.is_sequential("read_row")


def test_one_definition_binds_to_several_workspaces(tmp_path: Path) -> None:
    @tool
    def ping() -> str:
        """Ping."""
        return "pong"

    one, two = ToolRegistry(tmp_path / "a"), ToolRegistry(tmp_path / "b")
    first, second = one.register(ping), two.register(ping)
    assert first is not second
    assert first.workspace_dir != second.workspace_dir


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain", "plain"),
        (None, ""),
        (42, "42"),
        ({"rows": [1, 2]}, json.dumps({"rows": [1, 2]})),
        ([1, "a"], json.dumps([1, "a"])),
    ],
)
async def test_return_values_become_text(registry: ToolRegistry, value: Any, expected: str) -> None:
    @tool
    def give() -> Any:
        """Give."""
        return value

    registry.register(give)
    assert await registry.execute("give", {}) == {"content": expected, "is_error": False}


async def test_returning_blocks_and_result_dicts(registry: ToolRegistry) -> None:
    image = ImageBlock("aGk=", "image/png")

    @tool
    def picture() -> list[TextBlock | ImageBlock]:
        """Picture."""
        return [TextBlock("a chart"), image]

    @tool
    def failure() -> dict[str, Any]:
        """Fails politely."""
        return {"content": "no data for 1999", "is_error": True}

    @tool
    def one_block() -> TextBlock:
        """One block."""
        return TextBlock("just this")

    registry.register_all([picture, failure, one_block])
    assert (await registry.execute("picture", {}))["content"] == [TextBlock("a chart"), image]
    assert await registry.execute("failure", {}) == {
        "content": "no data for 1999",
        "is_error": True,
    }
    assert (await registry.execute("one_block", {}))["content"] == [TextBlock("just this")]
