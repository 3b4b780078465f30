"""ToolRegistry: every call goes through it, and every failure comes back as a result."""

from __future__ import annotations

import asyncio
import copy
import os
import re
from pathlib import Path
from typing import Any, ClassVar

import pytest

from loopwright.messages import ImageBlock, TextBlock
from loopwright.sandbox import SecurityError
from loopwright.tools import BaseTool, ReadTool, ToolRegistry, ToolResult, WriteTool, tool
from loopwright.tools.registry import DEFAULT_MAX_OUTPUT_CHARS, DEFAULT_TIMEOUT_S


class Recorder(BaseTool):
    """A tool that records what it was called with and returns a canned answer."""

    input_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "text": {"type": "string"},
            "count": {"type": "integer"},
            "options": {"type": "object", "properties": {"tags": {"type": "array"}}},
        },
        "required": ["text"],
        "additionalProperties": False,
    }

    def __init__(self, workspace_dir: str | os.PathLike[str], answer: Any = "done") -> None:
        super().__init__(workspace_dir)
        self.calls: list[dict[str, Any]] = []
        self.answer = answer

    @property
    def name(self) -> str:
        return "Recorder"

    @property
    def schema(self) -> dict[str, Any]:
        return {"name": self.name, "description": "Records.", "input_schema": self.input_schema}

    async def execute(self, input: dict[str, Any]) -> ToolResult:
        self.calls.append(input)
        answer = self.answer
        return answer  # type: ignore[no-any-return]


class Raiser(BaseTool):
    """Raises whatever it was given."""

    def __init__(self, workspace_dir: str | os.PathLike[str], exc: BaseException) -> None:
        super().__init__(workspace_dir)
        self.exc = exc

    @property
    def name(self) -> str:
        return "Raiser"

    @property
    def schema(self) -> dict[str, Any]:
        return {"name": "Raiser", "description": "Fails.", "input_schema": {"type": "object"}}

    async def execute(self, input: dict[str, Any]) -> ToolResult:
        raise self.exc


class Sleeper(BaseTool):
    """Sleeps for ``seconds`` (input), then answers."""

    timeout: float | None = 0.05

    @property
    def name(self) -> str:
        return "Sleeper"

    @property
    def schema(self) -> dict[str, Any]:
        return {
            "name": "Sleeper",
            "description": "Sleeps.",
            "input_schema": {"type": "object", "properties": {"seconds": {"type": "number"}}},
        }

    async def execute(self, input: dict[str, Any]) -> ToolResult:
        await asyncio.sleep(input.get("seconds", 10))
        return {"content": "woke up", "is_error": False}


class Shouter(BaseTool):
    """Returns ``size`` characters of output."""

    max_output_chars: int | None = None

    @property
    def name(self) -> str:
        return "Shouter"

    @property
    def schema(self) -> dict[str, Any]:
        return {
            "name": "Shouter",
            "description": "Lots of output.",
            "input_schema": {
                "type": "object",
                "properties": {"size": {"type": "integer"}},
                "required": ["size"],
            },
        }

    async def execute(self, input: dict[str, Any]) -> ToolResult:
        size = input["size"]
        body = "".join(f"{i:08d}\n" for i in range(size // 9 + 1))[:size]
        return {"content": body, "is_error": False}


def text(result: ToolResult) -> str:
    """The content of a result that must be text."""
    content = result["content"]
    assert isinstance(content, str), content
    return content


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    return ws


@pytest.fixture
def registry(workspace: Path) -> ToolRegistry:
    return ToolRegistry(workspace)


# --- registration ----------------------------------------------------------------------


def test_register_instance_class_and_function(registry: ToolRegistry, workspace: Path) -> None:
    @tool
    def shout(text: str) -> str:
        """Shout."""
        return text.upper()

    recorder = Recorder(workspace)
    assert registry.register(recorder) is recorder
    read = registry.register(ReadTool)
    assert isinstance(read, ReadTool)
    assert read.workspace_dir == str(workspace)
    bound = registry.register(shout)
    assert bound.name == "shout"
    assert bound.workspace_dir == str(workspace)
    assert registry.names == ["Recorder", "Read", "shout"]
    assert "Read" in registry
    assert len(registry) == 3
    assert [s["name"] for s in registry.get_schemas()] == ["Recorder", "Read", "shout"]


def test_register_something_else_is_a_clear_type_error(registry: ToolRegistry) -> None:
    def plain(x: int) -> int:
        return x

    with pytest.raises(TypeError, match="@tool"):
        registry.register(plain)  # type: ignore[arg-type]


def test_duplicate_name_is_refused_unless_replace(registry: ToolRegistry, workspace: Path) -> None:
    first = Recorder(workspace, answer="first")
    second = Recorder(workspace, answer="second")
    registry.register(first)
    with pytest.raises(ValueError, match=r"already registered.*replace=True"):
        registry.register(second)
    assert registry.get("Recorder") is first
    registry.register(second, replace=True)
    assert registry.get("Recorder") is second
    assert len(registry.get_schemas()) == 1


async def test_replace_takes_effect_for_execution_and_schemas(
    registry: ToolRegistry, workspace: Path
) -> None:
    registry.register(Recorder(workspace, answer="first"))
    assert len(registry.get_schemas()) == 1

    class Recorder2(Recorder):
        input_schema: ClassVar[dict[str, Any]] = {"type": "object", "properties": {}}

    registry.register(Recorder2(workspace, answer="second"), replace=True)
    assert registry.get_schemas()[0]["input_schema"] == {"type": "object", "properties": {}}
    result = await registry.execute("Recorder", {})
    assert result["content"] == "second"


def test_unregister(registry: ToolRegistry) -> None:
    registry.register(ReadTool)
    registry.unregister("Read")
    assert "Read" not in registry
    assert registry.get_schemas() == []


def test_set_prehook_on_unknown_tool(registry: ToolRegistry) -> None:
    registry.register(ReadTool)
    with pytest.raises(KeyError, match="Read"):
        registry.set_prehook("Nope", None)


# --- unknown tools and schema validation -----------------------------------------------


async def test_unknown_tool_names_the_available_tools(registry: ToolRegistry) -> None:
    registry.register(ReadTool)
    registry.register(WriteTool)
    result = await registry.execute("Reed", {"file_path": "x"})
    assert result["is_error"] is True
    assert "Unknown tool: 'Reed'" in result["content"]
    assert "Read" in result["content"]
    assert "Write" in result["content"]


async def test_unknown_tool_on_an_empty_registry(registry: ToolRegistry) -> None:
    result = await registry.execute("Anything", {})
    assert result["is_error"] is True
    assert "none" in result["content"]


@pytest.mark.parametrize(
    ("bad_input", "expected"),
    [
        ({}, "must contain ['text']"),
        ({"text": 5}, "input.text must be string"),
        ({"text": "x", "count": "3"}, "input.count must be integer"),
        ({"text": "x", "count": True}, "input.count must be integer"),
        ({"text": "x", "extra": 1}, "must not contain {'extra'}"),
    ],
)
async def test_schema_invalid_input_is_refused_without_executing(
    registry: ToolRegistry, workspace: Path, bad_input: dict[str, Any], expected: str
) -> None:
    recorder = registry.register(Recorder(workspace))
    assert isinstance(recorder, Recorder)
    result = await registry.execute("Recorder", bad_input)
    assert result["is_error"] is True
    assert text(result).startswith("Invalid input for tool 'Recorder': ")
    assert expected in result["content"]
    assert "Call it again with input matching its schema" in result["content"]
    assert recorder.calls == []


async def test_non_dict_input_is_refused(registry: ToolRegistry, workspace: Path) -> None:
    recorder = registry.register(Recorder(workspace))
    result = await registry.execute("Recorder", ["text"])  # type: ignore[arg-type]
    assert result["is_error"] is True
    assert "expected a JSON object" in result["content"]
    assert isinstance(recorder, Recorder)
    assert recorder.calls == []


async def test_a_tool_with_a_broken_schema_is_reported_as_the_tools_bug(
    registry: ToolRegistry, workspace: Path
) -> None:
    class Broken(Recorder):
        input_schema: ClassVar[dict[str, Any]] = {"type": "object", "required": "text"}

    broken = registry.register(Broken(workspace))
    result = await registry.execute("Recorder", {"text": "x"})
    assert result["is_error"] is True
    assert "not valid JSON Schema" in result["content"]
    assert "bug in the tool" in result["content"]
    assert isinstance(broken, Recorder)
    assert broken.calls == []


async def test_valid_input_reaches_the_tool(registry: ToolRegistry, workspace: Path) -> None:
    recorder = registry.register(Recorder(workspace))
    result = await registry.execute("Recorder", {"text": "hello", "count": 2})
    assert result == {"content": "done", "is_error": False}
    assert isinstance(recorder, Recorder)
    assert recorder.calls == [{"text": "hello", "count": 2}]


async def test_schema_defaults_do_not_leak_into_the_models_input(
    registry: ToolRegistry,
) -> None:
    @tool
    def greet(name: str, greeting: str = "hello", tags: list[str] | None = None) -> str:
        """Greet someone."""
        return f"{greeting} {name}"

    registry.register(greet)
    original = {"name": "ada"}
    result = await registry.execute("greet", original)
    assert result["content"] == "hello ada"
    assert original == {"name": "ada"}


# --- prehooks --------------------------------------------------------------------------


async def test_prehook_runs_before_execute_and_can_normalise(
    registry: ToolRegistry, workspace: Path
) -> None:
    recorder = registry.register(Recorder(workspace))
    assert isinstance(recorder, Recorder)
    order: list[str] = []

    async def hook(data: dict[str, Any]) -> None:
        order.append(f"hook saw {len(recorder.calls)} calls")
        data["text"] = data["text"].strip().lower()

    registry.set_prehook("Recorder", hook)
    await registry.execute("Recorder", {"text": "  HeLLo  "})
    assert order == ["hook saw 0 calls"]
    assert recorder.calls == [{"text": "hello"}]


async def test_prehook_that_raises_refuses_the_call(
    registry: ToolRegistry, workspace: Path
) -> None:
    recorder = registry.register(Recorder(workspace))

    async def deny(data: dict[str, Any]) -> None:
        raise PermissionError("no shouting allowed")

    registry.set_prehook("Recorder", deny)
    result = await registry.execute("Recorder", {"text": "HI"})
    assert result["is_error"] is True
    assert "Recorder refused" in result["content"]
    assert "PermissionError: no shouting allowed" in result["content"]
    assert isinstance(recorder, Recorder)
    assert recorder.calls == []


async def test_prehook_security_error_is_reported_as_is(
    registry: ToolRegistry, workspace: Path
) -> None:
    registry.register(Recorder(workspace))

    async def deny(data: dict[str, Any]) -> None:
        raise SecurityError("Access denied: not today")

    registry.set_prehook("Recorder", deny)
    result = await registry.execute("Recorder", {"text": "x"})
    assert result == {"content": "Access denied: not today", "is_error": True}


async def test_prehook_can_be_removed(registry: ToolRegistry, workspace: Path) -> None:
    registry.register(Recorder(workspace))

    async def deny(data: dict[str, Any]) -> None:
        raise RuntimeError("no")

    registry.set_prehook("Recorder", deny)
    registry.set_prehook("Recorder", None)
    assert (await registry.execute("Recorder", {"text": "x"}))["is_error"] is False


async def test_prehooks_do_not_mutate_the_models_input(
    registry: ToolRegistry, workspace: Path
) -> None:
    recorder = registry.register(Recorder(workspace))

    async def meddle(data: dict[str, Any]) -> None:
        data["text"] = "changed"
        data["options"]["tags"].append("added")
        data["options"]["new"] = True

    registry.set_prehook("Recorder", meddle)
    original = {"text": "orig", "options": {"tags": ["a"]}}
    snapshot = copy.deepcopy(original)
    await registry.execute("Recorder", original)
    assert original == snapshot
    assert isinstance(recorder, Recorder)
    assert recorder.calls == [{"text": "changed", "options": {"tags": ["a", "added"], "new": True}}]


async def test_builtin_path_validation_normalises_without_touching_the_original(
    registry: ToolRegistry, workspace: Path
) -> None:
    registry.register(WriteTool)
    seen: list[str] = []

    async def spy(data: dict[str, Any]) -> None:
        seen.append(data["file_path"])

    registry.set_prehook("Write", spy)
    original = {"file_path": "sub/../f.txt", "content": "x"}
    await registry.execute("Write", original)
    assert seen == [str(workspace / "f.txt")]  # hooks see the resolved path
    assert original["file_path"] == "sub/../f.txt"


async def test_user_prehook_cannot_disable_path_validation(
    registry: ToolRegistry, workspace: Path, tmp_path: Path
) -> None:
    registry.register(ReadTool)
    registry.register(WriteTool)
    (tmp_path / "secret.txt").write_text("top secret")

    async def allow_everything(data: dict[str, Any]) -> None:
        return None

    registry.set_prehook("Read", allow_everything)
    result = await registry.execute("Read", {"file_path": "../secret.txt"})
    assert result["is_error"] is True
    assert "Access denied" in result["content"]

    registry.set_prehook("Read", None)
    result = await registry.execute("Read", {"file_path": "/etc/passwd"})
    assert "Access denied" in result["content"]


async def test_user_prehook_cannot_redirect_a_path_outside(
    registry: ToolRegistry, workspace: Path, tmp_path: Path
) -> None:
    registry.register(ReadTool)
    registry.register(WriteTool)
    (tmp_path / "secret.txt").write_text("top secret")
    (workspace / "ok.txt").write_text("fine")

    async def redirect(data: dict[str, Any]) -> None:
        data["file_path"] = str(tmp_path / "secret.txt")

    registry.set_prehook("Read", redirect)
    registry.set_prehook("Write", redirect)
    result = await registry.execute("Read", {"file_path": "ok.txt"})
    assert result["is_error"] is True
    assert "Access denied" in result["content"]
    assert "top secret" not in result["content"]
    result = await registry.execute("Write", {"file_path": "ok.txt", "content": "pwned"})
    assert result["is_error"] is True
    assert (tmp_path / "secret.txt").read_text() == "top secret"


async def test_path_params_of_a_custom_tool_are_validated(
    registry: ToolRegistry, workspace: Path
) -> None:
    class PathRecorder(Recorder):
        path_params = ("text",)

    recorder = registry.register(PathRecorder(workspace))
    result = await registry.execute("Recorder", {"text": "../../etc/shadow"})
    assert result["is_error"] is True
    assert "Access denied" in result["content"]
    await registry.execute("Recorder", {"text": "a/./b"})
    assert isinstance(recorder, Recorder)
    assert recorder.calls == [{"text": str(workspace / "a" / "b")}]


async def test_user_prehook_cannot_redirect_a_custom_tools_path_outside(
    registry: ToolRegistry, workspace: Path, tmp_path: Path
) -> None:
    class PathRecorder(Recorder):
        path_params = ("text",)

    recorder = registry.register(PathRecorder(workspace))

    async def redirect(data: dict[str, Any]) -> None:
        data["text"] = str(tmp_path / "secret.txt")

    registry.set_prehook("Recorder", redirect)
    result = await registry.execute("Recorder", {"text": "inside.txt"})
    assert result["is_error"] is True
    assert "Access denied" in result["content"]
    assert isinstance(recorder, Recorder)
    assert recorder.calls == []


# --- failures inside the tool ----------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (ValueError("bad value 42"), "Raiser failed: ValueError: bad value 42"),
        (KeyError("missing"), "Raiser failed: KeyError: 'missing'"),
        (ZeroDivisionError(), "Raiser failed: ZeroDivisionError"),
        (OSError(28, "No space left on device"), "OSError: [Errno 28] No space left on device"),
        (TimeoutError("upstream API timed out"), "TimeoutError: upstream API timed out"),
    ],
)
async def test_tool_exception_becomes_an_error_result(
    registry: ToolRegistry, workspace: Path, exc: Exception, expected: str
) -> None:
    registry.register(Raiser(workspace, exc))
    result = await registry.execute("Raiser", {})
    assert result["is_error"] is True
    assert expected in result["content"]


async def test_tool_own_timeout_error_is_not_reported_as_the_registry_timeout(
    registry: ToolRegistry, workspace: Path
) -> None:
    registry.register(Raiser(workspace, TimeoutError("upstream API timed out")))
    result = await registry.execute("Raiser", {})
    assert "was stopped" not in result["content"]
    assert "Raiser failed" in result["content"]


async def test_security_error_raised_by_a_tool(registry: ToolRegistry, workspace: Path) -> None:
    registry.register(Raiser(workspace, SecurityError("Access denied: nope")))
    result = await registry.execute("Raiser", {})
    assert result == {"content": "Access denied: nope", "is_error": True}


async def test_cancellation_propagates(registry: ToolRegistry, workspace: Path) -> None:
    registry.register(Raiser(workspace, asyncio.CancelledError()))
    with pytest.raises(asyncio.CancelledError):
        await registry.execute("Raiser", {})


async def test_cancelling_a_running_call_propagates(
    registry: ToolRegistry, workspace: Path
) -> None:
    registry.register(Sleeper(workspace))
    registry.get("Sleeper").timeout = None  # type: ignore[union-attr]
    task = asyncio.create_task(registry.execute("Sleeper", {"seconds": 10}))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_cancellation_in_a_prehook_propagates(
    registry: ToolRegistry, workspace: Path
) -> None:
    registry.register(Recorder(workspace))

    async def cancelled(data: dict[str, Any]) -> None:
        raise asyncio.CancelledError

    registry.set_prehook("Recorder", cancelled)
    with pytest.raises(asyncio.CancelledError):
        await registry.execute("Recorder", {"text": "x"})


async def test_tool_timeout_class_attribute_stops_a_slow_tool(
    registry: ToolRegistry, workspace: Path
) -> None:
    registry.register(Sleeper(workspace))
    result = await registry.execute("Sleeper", {"seconds": 10})
    assert result["is_error"] is True
    assert "Sleeper timed out after 0.05s and was stopped" in result["content"]


async def test_registry_default_timeout_applies_when_the_tool_has_none(workspace: Path) -> None:
    class PatientSleeper(Sleeper):
        timeout = None

    registry = ToolRegistry(workspace, default_timeout=0.05)
    registry.register(PatientSleeper(workspace))
    result = await registry.execute("Sleeper", {"seconds": 10})
    assert result["is_error"] is True
    assert "timed out after 0.05s" in result["content"]


async def test_tool_timeout_overrides_the_registry_default(workspace: Path) -> None:
    class QuickEnough(Sleeper):
        timeout = 5.0

    registry = ToolRegistry(workspace, default_timeout=0.01)
    registry.register(QuickEnough(workspace))
    result = await registry.execute("Sleeper", {"seconds": 0.05})
    assert result == {"content": "woke up", "is_error": False}


async def test_no_timeout_at_all(workspace: Path) -> None:
    class PatientSleeper(Sleeper):
        timeout = None

    registry = ToolRegistry(workspace, default_timeout=None)
    registry.register(PatientSleeper(workspace))
    result = await registry.execute("Sleeper", {"seconds": 0.01})
    assert result["content"] == "woke up"


def test_defaults(workspace: Path) -> None:
    registry = ToolRegistry(workspace)
    assert registry.default_timeout == DEFAULT_TIMEOUT_S
    assert registry.max_output_chars == DEFAULT_MAX_OUTPUT_CHARS


# --- results ---------------------------------------------------------------------------


async def test_plain_string_result_is_accepted(registry: ToolRegistry, workspace: Path) -> None:
    registry.register(Recorder(workspace, answer="just text"))
    assert await registry.execute("Recorder", {"text": "x"}) == {
        "content": "just text",
        "is_error": False,
    }


async def test_missing_is_error_defaults_to_false_and_extra_keys_are_kept(
    registry: ToolRegistry, workspace: Path
) -> None:
    registry.register(Recorder(workspace, answer={"content": "ok", "metadata": {"rows": 3}}))
    result = await registry.execute("Recorder", {"text": "x"})
    assert result == {"content": "ok", "is_error": False, "metadata": {"rows": 3}}


async def test_tool_reported_error_is_kept(registry: ToolRegistry, workspace: Path) -> None:
    registry.register(Recorder(workspace, answer={"content": "exit 1", "is_error": True}))
    assert (await registry.execute("Recorder", {"text": "x"}))["is_error"] is True


@pytest.mark.parametrize("answer", [None, 42, {"no_content": True}])
async def test_malformed_result_is_an_error_blaming_the_tool(
    registry: ToolRegistry, workspace: Path, answer: Any
) -> None:
    registry.register(Recorder(workspace, answer=answer))
    result = await registry.execute("Recorder", {"text": "x"})
    assert result["is_error"] is True
    assert "bug in the tool" in result["content"]


async def test_non_string_content_is_turned_into_text(
    registry: ToolRegistry, workspace: Path
) -> None:
    registry.register(Recorder(workspace, answer={"content": 1234, "is_error": False}))
    assert (await registry.execute("Recorder", {"text": "x"}))["content"] == "1234"


def saved_file(workspace: Path, content: str) -> Path:
    match = re.search(r"saved in (\S+\.txt)", content)
    assert match, content
    return workspace / match.group(1)


async def test_huge_output_is_truncated_with_a_note_and_saved_in_full(
    workspace: Path,
) -> None:
    registry = ToolRegistry(workspace, max_output_chars=1000)
    registry.register(Shouter(workspace))
    full = (await Shouter(workspace).execute({"size": 50_000}))["content"]
    assert isinstance(full, str)
    result = await registry.execute("Shouter", {"size": 50_000})
    content = result["content"]
    assert isinstance(content, str)
    assert result["is_error"] is False
    assert len(content) < 1500
    assert content.startswith(full[:750])
    assert content.endswith(full[-250:])
    assert "output truncated: 49,000 of 50,000 characters cut" in content
    # no Read or Grep here: the note does not send the model to tools it does not have
    assert "with Read" not in content
    assert "Grep" not in content
    assert "ask for less at a time" in content
    path = saved_file(workspace, content)
    assert path.read_text(encoding="utf-8") == full
    assert str(path.relative_to(workspace)).startswith(os.path.join(".loopwright", ""))


async def test_saved_output_can_be_read_back_with_read(workspace: Path) -> None:
    registry = ToolRegistry(workspace, max_output_chars=500)
    registry.register(Shouter(workspace))
    registry.register(ReadTool)
    content = (await registry.execute("Shouter", {"size": 9_000}))["content"]
    assert isinstance(content, str)
    assert "read it in parts with Read (offset/limit)." in content
    relative = saved_file(workspace, content).relative_to(workspace)
    page = await registry.execute("Read", {"file_path": str(relative), "offset": 500, "limit": 1})
    assert text(page).startswith("500\t00000499")


async def test_output_under_the_limit_is_untouched(workspace: Path) -> None:
    registry = ToolRegistry(workspace, max_output_chars=1000)
    registry.register(Shouter(workspace))
    result = await registry.execute("Shouter", {"size": 1000})
    assert isinstance(result["content"], str)
    assert len(result["content"]) == 1000
    assert "truncated" not in result["content"]
    assert not (workspace / ".loopwright").exists()


async def test_tool_max_output_chars_overrides_the_registry(workspace: Path) -> None:
    class Terse(Shouter):
        max_output_chars = 100

    registry = ToolRegistry(workspace, max_output_chars=1_000_000)
    registry.register(Terse(workspace))
    content = (await registry.execute("Shouter", {"size": 1000}))["content"]
    assert "900 of 1,000 characters cut" in content


@pytest.mark.parametrize("limit", [1, 2, 3])
async def test_tiny_limits_still_cut(workspace: Path, limit: int) -> None:
    registry = ToolRegistry(workspace, max_output_chars=limit)
    registry.register(Shouter(workspace))
    content = (await registry.execute("Shouter", {"size": 5000}))["content"]
    assert isinstance(content, str)
    assert len(content) < 400
    assert "output truncated" in content


async def test_huge_text_blocks_in_a_list_result_are_truncated(workspace: Path) -> None:
    png = ImageBlock("aGVsbG8=", "image/png")
    registry = ToolRegistry(workspace, max_output_chars=100)
    registry.register(Recorder(workspace, answer={"content": [TextBlock("z" * 5000), png]}))
    content = (await registry.execute("Recorder", {"text": "x"}))["content"]
    assert isinstance(content, list)
    text, image = content
    assert isinstance(text, TextBlock)
    assert len(text.text) < 500
    assert "output truncated" in text.text
    assert image is png


async def test_tool_name_is_sanitised_in_the_saved_file_name(workspace: Path) -> None:
    class Slashy(Shouter):
        @property
        def name(self) -> str:
            return "mcp__a/b__c"

    registry = ToolRegistry(workspace, max_output_chars=10)
    registry.register(Slashy(workspace))
    content = (await registry.execute("mcp__a/b__c", {"size": 100}))["content"]
    assert isinstance(content, str)
    path = saved_file(workspace, content)
    assert path.parent == workspace / ".loopwright" / "tool-outputs"
    assert path.exists()


async def test_sequential_flag(registry: ToolRegistry) -> None:
    registry.register(ReadTool)
    registry.register(WriteTool)
    assert registry.is_sequential("Write")
    assert not registry.is_sequential("Read")
    assert not registry.is_sequential("Unknown")


async def test_aclose_reaches_every_tool_even_if_one_fails(
    registry: ToolRegistry, workspace: Path
) -> None:
    closed: list[str] = []

    class Closer(Recorder):
        def __init__(self, workspace_dir: str, label: str, fail: bool) -> None:
            super().__init__(workspace_dir)
            self.label, self.fail = label, fail

        @property
        def name(self) -> str:
            return self.label

        async def aclose(self) -> None:
            closed.append(self.label)
            if self.fail:
                raise RuntimeError("boom")

    registry.register(Closer(str(workspace), "a", True))
    registry.register(Closer(str(workspace), "b", False))
    await registry.aclose()
    assert closed == ["a", "b"]


async def test_concurrent_calls_run_concurrently(registry: ToolRegistry, workspace: Path) -> None:
    arrived: list[int] = []
    everyone_here = asyncio.Event()

    class Rendezvous(Recorder):
        async def execute(self, input: dict[str, Any]) -> ToolResult:
            arrived.append(1)
            if len(arrived) == 5:
                everyone_here.set()
            await everyone_here.wait()  # only returns if all five calls are in flight at once
            return {"content": "met", "is_error": False}

    tool_ = Rendezvous(workspace)
    tool_.timeout = 5.0
    registry.register(tool_)
    results = await asyncio.gather(*(registry.execute("Recorder", {"text": "x"}) for _ in range(5)))
    assert [r["content"] for r in results] == ["met"] * 5
