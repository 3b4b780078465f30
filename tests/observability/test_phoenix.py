"""Integration: spans reach a real OTLP backend, Arize Phoenix, started on 127.0.0.1.

Phoenix (the ``arize-phoenix`` package) is found as the ``phoenix`` command next to this
interpreter, on ``PATH``, or at ``LOOPWRIGHT_TEST_PHOENIX`` (a ``phoenix`` executable from
another virtualenv). The test starts it with its data in a temporary directory, telemetry and
outside resources off, sends a run's spans through the OTLP/HTTP environment switch, reads
them back through Phoenix's REST API, and stops it.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from local_servers import free_port, server_process
from loopwright import ReadTool, ScriptedModel, call
from loopwright.tools.delegate import Delegate, SubAgent

from .conftest import make_agent

STARTUP_TIMEOUT_S = 120.0


def phoenix_command() -> list[str] | None:
    explicit = os.environ.get("LOOPWRIGHT_TEST_PHOENIX")
    if explicit:
        return [explicit]
    beside = Path(sys.executable).with_name("phoenix")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("phoenix")
    return [found] if found else None


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    command = phoenix_command()
    if command is None:
        pytest.skip(
            "Arize Phoenix is not installed: install the arize-phoenix package (for example "
            "`uv tool install arize-phoenix`, which puts `phoenix` on PATH) or point "
            "LOOPWRIGHT_TEST_PHOENIX at a phoenix executable"
        )
    workdir = tmp_path_factory.mktemp("phoenix")
    port, grpc_port = free_port(), free_port()
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PHOENIX_", "LANGFUSE_"))
    }
    env.update(
        PHOENIX_WORKING_DIR=str(workdir),
        PHOENIX_HOST="127.0.0.1",
        PHOENIX_PORT=str(port),
        PHOENIX_GRPC_PORT=str(grpc_port),
        PHOENIX_TELEMETRY_ENABLED="false",
        PHOENIX_ALLOW_EXTERNAL_RESOURCES="false",
    )
    url = f"http://127.0.0.1:{port}"
    with server_process(
        [*command, "serve"],
        name="Phoenix",
        ready_url=f"{url}/healthz",
        log_path=workdir / "phoenix.log",
        timeout=STARTUP_TIMEOUT_S,
        poll=0.25,
        env=env,
        cwd=workdir,
        stop_timeout=20,
    ):
        yield url


def phoenix_spans(url: str, expected: int) -> list[dict[str, Any]]:
    """The default project's spans, once Phoenix has ingested ``expected`` of them."""
    deadline = time.monotonic() + 30
    spans: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        answer = httpx.get(f"{url}/v1/projects/default/spans", params={"limit": 100}, timeout=5)
        if answer.status_code == 200:
            spans = answer.json()["data"]
            if len(spans) >= expected:
                return spans
        time.sleep(0.25)
    raise AssertionError(f"Phoenix holds {len(spans)} spans, expected {expected}")


async def test_phoenix_receives_the_span_tree(
    phoenix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"{phoenix}/v1/traces")
    model = ScriptedModel(
        [
            call("Delegate", agent="researcher", task="look for notes"),
            call("Read", file_path="notes.txt"),  # the sub-agent's turns
            "There are no notes.",
            "The researcher found no notes.",
        ]
    )
    delegate = Delegate([SubAgent("researcher", "Reads files.", tools=["Read"])])
    agent = make_agent(model, tmp_path, tools=[ReadTool, delegate], instruments=None)
    result = await agent.collect("find my notes")
    assert result.stop_reason == "end_turn"
    await agent.aclose()  # flushes the exporter's batch

    spans = phoenix_spans(phoenix, 8)
    by_id = {s["context"]["span_id"]: s for s in spans}
    names = sorted(s["name"] for s in spans)
    assert names == [
        "chat scripted",
        "chat scripted",
        "chat scripted",
        "chat scripted",
        "execute_tool Delegate",
        "execute_tool Read",
        "invoke_agent agent",
        "invoke_agent researcher",
    ]

    def named(name: str) -> dict[str, Any]:
        return next(s for s in spans if s["name"] == name)

    root = named("invoke_agent agent")
    child = named("invoke_agent researcher")
    delegate_span = named("execute_tool Delegate")
    read = named("execute_tool Read")
    assert root["parent_id"] is None
    assert by_id[delegate_span["parent_id"]] is root
    assert by_id[child["parent_id"]] is delegate_span
    assert by_id[read["parent_id"]] is child
    assert len({s["context"]["trace_id"] for s in spans}) == 1

    assert root["attributes"]["gen_ai.conversation.id"] == result.session.id
    assert root["attributes"]["gen_ai.operation.name"] == "invoke_agent"
    assert read["status_code"] == "ERROR"
    chat = named("chat scripted")
    assert chat["attributes"]["gen_ai.request.model"] == "scripted"
    assert chat["attributes"]["gen_ai.usage.input_tokens"] > 0
