"""The Memory tool, run the way the agent runs it: through a ToolRegistry and an Agent."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from loopwright import Agent, ScriptedModel, call
from loopwright.events import ToolResult as ToolResultEvent
from loopwright.memory import MemoryBank
from loopwright.models.base import ModelRequest
from loopwright.models.scripted import TurnSpec
from loopwright.tools import ToolRegistry, ToolResult
from loopwright.tools.memory import MemoryTool, MemoryTools


def text(result: ToolResult) -> str:
    content = result["content"]
    assert isinstance(content, str), content
    return content


@pytest.fixture
def bank(tmp_path: Path) -> MemoryBank:
    return MemoryBank(tmp_path / "memory.db")


@pytest.fixture
def registry(tmp_path: Path, bank: MemoryBank) -> ToolRegistry:
    registry = ToolRegistry(tmp_path / "ws", session_id="s-1")
    registry.register_all([MemoryTools(bank, scope="user:ada")])  # bound to the session
    return registry


async def test_remember_recall_list_forget(registry: ToolRegistry, bank: MemoryBank) -> None:
    remembered = await registry.execute(
        "Memory",
        {
            "action": "remember",
            "text": "Ada takes her coffee black.",
            "kind": "preference",
            "tags": ["drinks"],
        },
    )
    assert text(remembered) == "Remembered as #1."
    await registry.execute("Memory", {"action": "remember", "text": "Ada's cat is Miso."})
    again = await registry.execute(
        "Memory", {"action": "remember", "text": "ada takes her coffee black"}
    )
    assert text(again) == "Already remembered as #1; marked as stated again."

    recalled = text(await registry.execute("Memory", {"action": "recall", "query": "coffee"}))
    assert recalled.splitlines()[0] == "1 memory for 'coffee', most relevant first:"
    assert re.fullmatch(
        r"#1 \[preference\] Ada takes her coffee black\. \(tags: drinks; \d{4}-\d\d-\d\d\)",
        recalled.splitlines()[1],
    )
    listed = text(await registry.execute("Memory", {"action": "list"}))
    assert listed.splitlines()[0] == "All 2 memories, newest first:"

    forgotten = await registry.execute("Memory", {"action": "forget", "ids": [1, 7]})
    assert not forgotten["is_error"]
    assert text(forgotten).startswith("Forgot #1. No memory #7 here")
    assert await bank.count(scope="user:ada") == 1
    missing = await registry.execute("Memory", {"action": "forget", "ids": [1]})
    assert missing["is_error"]


async def test_memories_record_their_session(registry: ToolRegistry, bank: MemoryBank) -> None:
    await registry.execute("Memory", {"action": "remember", "text": "Ship on Fridays."})
    [memory] = await bank.recent(scope="user:ada")
    assert memory.session_id == "s-1"


@pytest.mark.parametrize(
    ("tool_input", "message"),
    [
        ({"action": "remember"}, "remember needs `text`"),
        ({"action": "recall", "query": "  "}, "recall needs `query`"),
        ({"action": "forget"}, "forget needs `ids`"),
        ({"action": "remember", "text": "x" * 5000}, "Split it into separate facts"),
        ({"action": "remember", "text": "ok", "tags": ["t" * 100]}, "too long"),
        ({"action": "fly"}, "Invalid input for tool 'Memory'"),
        ({"action": "forget", "ids": ["one"]}, "Invalid input for tool 'Memory'"),
        ({"action": "recall", "query": "x", "limit": 500}, "Invalid input for tool 'Memory'"),
        ({"action": "list", "scope": "user:bob"}, "Invalid input for tool 'Memory'"),
    ],
)
async def test_bad_calls_get_clear_errors(
    registry: ToolRegistry, bank: MemoryBank, tool_input: dict[str, object], message: str
) -> None:
    result = await registry.execute("Memory", tool_input)
    assert result["is_error"]
    assert message in text(result)
    assert await bank.count() == 0


async def test_each_tool_sees_only_its_scope(tmp_path: Path, bank: MemoryBank) -> None:
    ada = MemoryTool(tmp_path, bank=bank, scope="user:ada")
    bob = MemoryTool(tmp_path, bank=bank, scope="user:bob")
    await ada.execute({"action": "remember", "text": "Ada's PIN is 1234."})
    assert "No memories match" in text(await bob.execute({"action": "recall", "query": "PIN"}))
    assert text(await bob.execute({"action": "list"})) == "No memories yet."
    assert (await bob.execute({"action": "forget", "ids": [1]}))["is_error"]
    assert "1234" in text(await ada.execute({"action": "recall", "query": "PIN"}))


def recall_then_answer(request: ModelRequest) -> TurnSpec:
    """Recall first; then answer with what the tool returned."""
    last = request.messages[-1]
    if not last.tool_results:
        return call("Memory", action="recall", query="favourite editor")
    return "From memory: " + last.tool_results[0].text


def test_an_agent_remembers_in_one_session_and_recalls_in_a_new_one(tmp_path: Path) -> None:
    first = Agent(
        ScriptedModel(
            [
                call(
                    "Memory",
                    action="remember",
                    text="The user's favourite editor is Helix.",
                    kind="preference",
                ),
                "Noted: you like Helix.",
            ]
        ),
        tools=[MemoryTools(scope="user:ada")],
    )
    told = first.run_sync("Remember that my favourite editor is Helix.")
    assert told.ok

    # a new agent, a new session, a new bank on the same default file
    second = Agent(ScriptedModel(recall_then_answer), tools=[MemoryTools(scope="user:ada")])
    asked = second.run_sync("Which editor do I like?")
    assert asked.session.id != told.session.id
    [result] = [e for e in asked.events if isinstance(e, ToolResultEvent)]
    assert not result.is_error
    assert "The user's favourite editor is Helix." in asked.text
    assert "[preference]" in asked.text

    # another user's agent does not see it
    other = Agent(ScriptedModel(recall_then_answer), tools=[MemoryTools(scope="user:bob")])
    assert "No memories match" in other.run_sync("Which editor do I like?").text


async def test_the_memory_of_a_session_is_in_the_loopwright_home(loopwright_home: Path) -> None:
    tool = MemoryTool(loopwright_home / "ws", scope="project:falcon", session_id="abc")
    await tool.execute({"action": "remember", "text": "Falcon uses trunk-based development."})
    await tool.aclose()
    async with MemoryBank(loopwright_home / "memory.db") as bank:
        [memory] = await bank.recent(scope="project:falcon")
        assert (memory.text, memory.session_id) == ("Falcon uses trunk-based development.", "abc")
