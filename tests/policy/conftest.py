"""Shared pieces for the policy tests: a workspace, small real tools, a registry factory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from loopwright.policy import Policy
from loopwright.tools import ReadTool, ToolRegistry, ToolResult, WriteTool, tool


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    return ws


@tool(name="Bash")
def fake_bash(command: str) -> str:
    """Stands in for the shell tool: echoes the command it would run (runs nothing)."""
    return f"ran: {command}"


@tool
def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


@tool(name="mcp__github__create_issue")
def create_issue(title: str) -> str:
    """Pretend to create an issue."""
    return f"created {title}"


RegistryFactory = Callable[..., ToolRegistry]


@pytest.fixture
def make_registry(workspace: Path) -> RegistryFactory:
    """A real registry with Read, Write, Bash (fake), echo and an MCP-named tool."""

    def make(policy: Policy | None = None, **options: Any) -> ToolRegistry:
        registry = ToolRegistry(workspace, policy=policy, **options)
        registry.register_all([ReadTool, WriteTool, fake_bash, echo, create_issue])
        return registry

    return make


def text(result: ToolResult) -> str:
    """The content of a result that must be text."""
    content = result["content"]
    assert isinstance(content, str), content
    return content
