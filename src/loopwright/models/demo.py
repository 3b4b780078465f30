"""The built-in demo script: a scripted model that exercises real tools without an LLM.

Given any task, it writes the task into ``task.md`` with the real ``Write`` tool, reads it
back with ``Read``, and answers with what it did. It shows the loop, the tools and the
session store working end to end; it does not understand the task.
"""

from __future__ import annotations

from loopwright.messages import Message
from loopwright.models.base import ModelRequest
from loopwright.models.scripted import ScriptedModel, ScriptedTurn, call


def _latest_task(messages: list[Message] | tuple[Message, ...]) -> str:
    for message in reversed(messages):
        if message.role == "user" and message.text:
            return message.text
    return ""


def _demo_turn(request: ModelRequest) -> ScriptedTurn:
    messages = list(request.messages)
    tools = {schema["name"] for schema in request.tools}
    # where are we in the current task? count tool calls since the last user text
    calls_so_far: list[str] = []
    for message in reversed(messages):
        if message.role == "user" and message.text:
            break
        calls_so_far.extend(b.name for b in message.tool_uses)
    task = _latest_task(messages)
    if "Write" in tools and "Write" not in calls_so_far:
        return ScriptedTurn(
            text="I'll record the task in the workspace first.\n",
            tool_calls=[call("Write", file_path="task.md", content=f"# Task\n\n{task}\n")],
        )
    if "Read" in tools and "Read" not in calls_so_far:
        return ScriptedTurn(
            text="Now I'll read it back to check it was saved.\n",
            tool_calls=[call("Read", file_path="task.md")],
        )
    last_result = ""
    if messages and messages[-1].tool_results:
        last_result = messages[-1].tool_results[-1].text
    return ScriptedTurn(
        text=(
            "Done. I saved your task to `task.md` in this session's workspace and read it back:\n\n"
            f"{last_result}\n\n"
            "(This answer comes from loopwright's scripted demo model, which runs the real "
            "tools but does not understand the task. Configure a real model to get real answers.)"
        )
    )


def demo_model() -> ScriptedModel:
    """A fresh instance of the demo script."""
    return ScriptedModel(_demo_turn, name="scripted:demo", chunk_size=12)
