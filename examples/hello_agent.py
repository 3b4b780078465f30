"""A custom agent with a custom tool, on the scripted model (no API key, no network).

The scripted model plays the LLM's part: it is a function that reads the conversation
(including real tool results) and decides the next step. Everything else is real: the loop,
the tools, the workspace and the SQLite session store.

    make demo            # or: uv run python examples/hello_agent.py
"""

from __future__ import annotations

import asyncio
import re

from loopwright import Agent, ReadTool, ScriptedModel, ScriptedTurn, WriteTool, call, tool
from loopwright.models.base import ModelRequest

POEM = """The loop begins: a question, then a plan,
a tool is called, its answer read, and then
the agent thinks again, as agents can,
until the work is done. Then stop. Amen."""


@tool
def word_stats(text: str) -> dict[str, int]:
    """Count the words, lines and characters of a text.

    Args:
        text: The text to measure.
    """
    return {"words": len(text.split()), "lines": text.count("\n") + 1, "characters": len(text)}


def poet(request: ModelRequest) -> ScriptedTurn:
    """Plays the model: write a poem, read it back, measure it, report."""
    done = [b.name for m in request.messages for b in m.tool_uses]
    results = [r.text for m in request.messages for r in m.tool_results]
    if "Write" not in done:
        return ScriptedTurn(
            "I'll write the poem to poem.txt.\n",
            [call("Write", file_path="poem.txt", content=POEM)],
        )
    if "Read" not in done:
        return ScriptedTurn("Let me read it back.\n", [call("Read", file_path="poem.txt")])
    if "word_stats" not in done:
        text = "\n".join(
            line.split("\t", 1)[1] for line in results[-1].splitlines() if "\t" in line
        )
        return ScriptedTurn("Now I'll measure it.\n", [call("word_stats", text=text)])
    words = re.search(r'"words": (\d+)', results[-1])
    return ScriptedTurn(f"Done: poem.txt holds a {words.group(1) if words else '?'}-word poem.")


async def main() -> None:
    agent = Agent(
        ScriptedModel(poet, name="scripted:poet"),
        system_prompt="You are a poet who checks their work.",
        tools=[WriteTool, ReadTool, word_stats],
    )
    session = agent.new_session()
    print(f"session {session.id}, workspace {session.workspace_dir}\n")
    async for event in agent.run(
        "Write a short poem about agent loops and count its words.", session
    ):
        if event["type"] == "text_delta":
            print(event["text"], end="", flush=True)
        elif event["type"] == "tool_call":
            print(f"  -> {event['name']}({', '.join(event['input'])})")
        elif event["type"] == "tool_result":
            first_line = event["content"].splitlines()[0] if event["content"] else ""
            print(f"  <- {event['name']} {event['duration_ms']:.1f} ms: {first_line}")
        elif event["type"] == "done":
            usage = event["usage"]
            calls = f"{usage.model_calls} model calls, {usage.tool_calls} tool calls"
            print(f"\n\n[{event['stop_reason']}: {calls}]")
    print((session.workspace_dir / "poem.txt").read_text())


if __name__ == "__main__":
    asyncio.run(main())
