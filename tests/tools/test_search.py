"""The Search tool, run the way the agent runs it: through a ToolRegistry and an Agent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from loopwright import Agent, ScriptedModel, call
from loopwright.events import ToolResult as ToolResultEvent
from loopwright.models.base import ModelRequest
from loopwright.models.scripted import TurnSpec
from loopwright.tools import ToolRegistry, ToolResult
from loopwright.tools.search import MAX_SHOWN_CHARS, SearchTool, SearchTools


def text(result: ToolResult) -> str:
    content = result["content"]
    assert isinstance(content, str), content
    return content


def write(root: Path, path: str, content: str) -> None:
    target = root / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(content)


TOPICS = ("login page", "billing export", "search box")


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    for n in range(60):
        write(
            root,
            f"notes/day{n:02}.md",
            f"# Day {n}\n\nStandup notes. The team discussed tickets, reviews and lunch.\n"
            f"Ticket {1000 + n} is about the {TOPICS[n % 3]}.\n",
        )
    write(
        root,
        "docs/oncall.md",
        "# On call\n\nIntro.\n\n## Database failover\n\n"
        "If the primary database stops answering, promote the replica with "
        "`pg_ctl promote -D /var/lib/postgresql/data` and update the DNS record.\n",
    )
    write(root, "src/app.py", "def loadUserSettings(path):\n    return parse(path)\n")
    return root


@pytest.fixture
def registry(workspace: Path) -> ToolRegistry:
    registry = ToolRegistry(workspace)
    registry.register(SearchTool)
    return registry


async def test_search_answers_ranked_passages(registry: ToolRegistry) -> None:
    result = await registry.execute(
        "Search", {"query": "what do I do when the primary database fails over?"}
    )
    assert not result["is_error"]
    lines = text(result).splitlines()
    assert lines[0].endswith("(62 indexed files), best first:")
    assert lines[2] == "--- docs/oncall.md (lines 1-7) ---"  # a short file is one passage
    assert "`pg_ctl promote -D /var/lib/postgresql/data`" in lines[9]


async def test_search_follows_edits(registry: ToolRegistry, workspace: Path) -> None:
    assert "No passages match" in text(await registry.execute("Search", {"query": "zookeeper"}))
    write(workspace, "notes/day07.md", "# Day 7\n\nThe zookeeper quorum lost a node.\n")
    found = text(await registry.execute("Search", {"query": "zookeeper quorum"}))
    assert "--- notes/day07.md (lines 1-3) ---" in found
    assert "Ticket 1007" not in found


async def test_camel_case_and_globs(registry: ToolRegistry) -> None:
    found = text(await registry.execute("Search", {"query": "user settings"}))
    assert "--- src/app.py (lines 1-2) ---" in found.splitlines()[2]
    only_docs = text(await registry.execute("Search", {"query": "ticket", "glob": "docs/**"}))
    assert only_docs.startswith("No passages match 'ticket' in files matching 'docs/**'")
    some = text(
        await registry.execute("Search", {"query": "billing export", "glob": "*.md !day0*"})
    )
    assert "notes/day0" not in some
    assert "notes/day1" in some


async def test_limit_and_long_passages(registry: ToolRegistry, workspace: Path) -> None:
    result = text(await registry.execute("Search", {"query": "standup tickets", "limit": 3}))
    assert result.startswith("3 passages for 'standup tickets'")
    assert result.count("\n--- notes/") == 3
    write(workspace, "big.txt", "aardvark " * 2000)
    cut = text(await registry.execute("Search", {"query": "aardvark", "limit": 1}))
    assert "[... passage cut; Read big.txt with offset=1 to see all of it]" in cut
    assert len(cut) < MAX_SHOWN_CHARS + 400


@pytest.mark.parametrize(
    ("tool_input", "message"),
    [
        ({}, "Invalid input for tool 'Search'"),
        ({"query": ""}, "Invalid input for tool 'Search'"),
        ({"query": "x", "limit": 0}, "Invalid input for tool 'Search'"),
        ({"query": "x", "path": "/etc"}, "Invalid input for tool 'Search'"),
        ({"query": "   "}, "Search needs a query"),
        ({"query": "x", "glob": "docs/[a"}, "Invalid glob 'docs/[a'"),
    ],
)
async def test_bad_calls_get_clear_errors(
    registry: ToolRegistry, tool_input: dict[str, object], message: str
) -> None:
    result = await registry.execute("Search", tool_input)
    assert result["is_error"]
    assert message in text(result)


async def test_nothing_outside_the_workspace_is_read(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    write(tmp_path / "outside", "passwords.txt", "root password is hunter2")
    write(root, "readme.md", "nothing to see")
    os.symlink(tmp_path / "outside" / "passwords.txt", root / "passwords.txt")
    os.symlink(tmp_path / "outside", root / "outside")
    tool = SearchTool(root)
    result = text(await tool.execute({"query": "root password hunter2"}))
    assert result.startswith("No passages match")
    assert "(1 indexed file)" in result
    await tool.aclose()


async def test_an_empty_workspace(tmp_path: Path) -> None:
    tool = SearchTool(tmp_path)
    assert text(await tool.execute({"query": "x"})) == "The workspace has no text files to search."
    await tool.aclose()


def search_then_answer(request: ModelRequest) -> TurnSpec:
    last = request.messages[-1]
    if not last.tool_results:
        return call("Search", query="promote the replica")
    first = last.tool_results[0].text.splitlines()[2]
    return f"See {first.strip('- ')}."


def test_an_agent_uses_search(workspace: Path, tmp_path: Path) -> None:
    agent = Agent(
        ScriptedModel(search_then_answer),
        tools=[SearchTools(max_files=1000)],
        workspace_root=str(tmp_path / "sessions"),
    )
    session = agent.new_session("s1")
    for path in workspace.rglob("*.md"):
        target = Path(session.workspace_dir) / path.relative_to(workspace)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(path.read_text())
    result = agent.run_sync("How do I fail over the database?", session)
    [event] = [e for e in result.events if isinstance(e, ToolResultEvent)]
    assert not event.is_error
    assert result.text == "See docs/oncall.md (lines 1-7)."
    assert (Path(session.workspace_dir) / ".loopwright" / "search.db").is_file()
