"""The healthcare agent on the remote providers: the official SDKs against loopback servers
on 127.0.0.1 that speak each provider's wire protocol (tests/models/*_server.py), playing the
guide's example (SQL, a chart drawn with Python, an answer)."""

from __future__ import annotations

import base64
import json
import re
import struct
from pathlib import Path
from typing import Any

import httpx
import pytest

from loopwright import MemoryStore
from loopwright.healthcare.agent import (
    COMPACT_MAX_TURNS,
    REASONING_MAX_OUTPUT_TOKENS,
    healthcare_agent,
)
from loopwright.messages import Message
from loopwright.models import ModelRequest, RetryingModel
from loopwright.models.anthropic import AnthropicModel
from loopwright.models.openai import OpenAIModel
from models import anthropic_server as anthropic_wire
from models.anthropic_server import AnthropicServer, Text, ToolUse, text_turn
from models.anthropic_server import Turn as AnthropicTurn
from models.openai_server import Fault, OpenAIServer, RecordedRequest, ToolCall, Turn

HUMIRA_CA = (
    "SELECT PRESCRIBER_NPI_NBR, COUNT(*) AS rx_count FROM RX_CLAIMS "
    "WHERE NDC_DRUG_NM = 'HUMIRA' AND PRESCRIBER_NPI_STATE_CD = 'CA' "
    "GROUP BY PRESCRIBER_NPI_NBR ORDER BY rx_count DESC, PRESCRIBER_NPI_NBR LIMIT 10"
)
HUMIRA_INPUT = {
    "sql": HUMIRA_CA,
    "dataset_name": "humira_ca_top10",
    "description": "Top HUMIRA prescribers in California",
}
CHART = """\
import matplotlib.pyplot as plt
import polars as pl

top = pl.read_parquet("humira_ca_top10.parquet")
fig, ax = plt.subplots(figsize=(6, 3))
ax.barh(top["PRESCRIBER_NPI_NBR"].to_list()[::-1], top["rx_count"].to_list()[::-1])
fig.savefig("humira_ca_top10.png", dpi=60, bbox_inches="tight")
print(f"total={top['rx_count'].sum()}")
"""
#: The note sent in place of an image to a server whose model takes none.
NOT_SENT = "[image not sent: this model does not accept images]"
QUESTION = "Find the top 10 prescribers of HUMIRA in California"
#: What llama.cpp's server answers when a text-only model (no mmproj) is sent an image.
LLAMA_CPP_NO_IMAGES = (
    "image input is not supported - hint: if this is unexpected, you may need to provide the mmproj"
)


@pytest.fixture(autouse=True)
def no_provider_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Never a real key or endpoint from the environment: traffic stays on 127.0.0.1."""
    for name in (
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_BASE_URL",
        "LOOPWRIGHT_MODEL",
    ):
        monkeypatch.delenv(name, raising=False)


def _errors(events: list[dict[str, Any]]) -> list[str]:
    return [str(e["message"]) for e in events if e["type"] == "error"]


def _tool_results(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == "tool_result"]


# --- one agent, two questions, each with run_sync (a new event loop each time) --------


def test_openai_a_second_run_sync_question_is_answered(claims_db: Path) -> None:
    """``agent.run_sync()`` runs each question in its own ``asyncio.run()``; the SDK client
    kept the first loop's pooled connection, and the second question failed with
    "RuntimeError: Event loop is closed" (not even a ModelError, so never retried)."""
    script = [
        Turn(text="I'll count the fills.", tool_calls=[ToolCall("SQL", HUMIRA_INPUT)]),
        "The ten prescribers are in humira_ca_top10.csv.",
        Turn(text="A chart of the ten.", tool_calls=[ToolCall("Python", {"code": CHART})]),
        "The chart is humira_ca_top10.png.",
    ]
    with OpenAIServer(script) as server:
        agent = healthcare_agent(
            f"openai:gpt-4.1@{server.base_url}", database=claims_db, store=MemoryStore()
        )
        first = agent.run_sync(QUESTION)
        second = agent.run_sync("Draw a chart of them", first.session)

        assert first.stop_reason == "end_turn", _errors(first.events)
        assert second.stop_reason == "end_turn", _errors(second.events)
        assert _errors(second.events) == []
        assert second.text == "The chart is humira_ca_top10.png."
        results = _tool_results(second.events)
        assert [r["name"] for r in results] == ["Python"]
        assert not results[0]["is_error"], results[0]["content"]
        assert len(server.chat_requests) == 4  # no request sent twice
        workspace = Path(second.session.workspace_dir)
        assert (workspace / "humira_ca_top10.png").read_bytes()[:4] == b"\x89PNG"


def test_anthropic_a_second_run_sync_question_is_sent_once(claims_db: Path) -> None:
    """The same on Anthropic: the dead connection failed after the server had the request,
    the retry layer sent it again, and the turn was paid for twice (here the loopback
    server, with no turn left for the duplicate, refuses it and the run fails)."""
    script = [
        AnthropicTurn([Text("I'll count the fills."), ToolUse("SQL", HUMIRA_INPUT)]),
        text_turn("The ten prescribers are in humira_ca_top10.csv."),
        text_turn("Most of them are rheumatologists."),
    ]
    with AnthropicServer(script, api_key="test-key") as server:
        model = AnthropicModel("claude-sonnet-5-5", api_key="test-key", base_url=server.url)
        agent = healthcare_agent(
            RetryingModel(model, sleep=_no_sleep), database=claims_db, store=MemoryStore()
        )
        first = agent.run_sync(QUESTION)
        second = agent.run_sync("What are their specialties?", first.session)

        assert first.stop_reason == "end_turn", _errors(first.events)
        assert _errors(second.events) == []
        assert second.text == "Most of them are rheumatologists."
        assert [r.outcome for r in server.requests] == ["completed"] * 3


async def _no_sleep(seconds: float) -> None:
    return None


# --- a chart read back on a server whose model takes no images --------------------------


class TextOnlyServer(OpenAIServer):
    """A server whose model is text-only: a request holding an image part is refused with
    ``refusal`` (by default as llama.cpp's server refuses it: 500, ``server_error``)."""

    rejected: int = 0
    refusal: Fault = Fault.server_error(500, LLAMA_CPP_NO_IMAGES)

    async def _dispatch(self, request: RecordedRequest, reader: Any, writer: Any) -> bool:
        if _image_parts(request.body):
            self.rejected += 1
            request.outcome = "fault:status"
            await self._send_error(writer, self.refusal)
            return True
        return await super()._dispatch(request, reader, writer)


class ToLoopback(httpx.AsyncBaseTransport):
    """Sends every request to the loopback server at ``port``, whatever its URL says."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.url = request.url.copy_with(scheme="http", host="127.0.0.1", port=self.port)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def _image_parts(body: Any) -> int:
    if not isinstance(body, dict):
        return 0
    return sum(
        part.get("type") == "image_url"
        for message in body.get("messages") or []
        if isinstance(message.get("content"), list)
        for part in message["content"]
    )


def test_a_chart_read_back_on_a_text_only_server_is_sent_as_a_note(claims_db: Path) -> None:
    """The model draws the chart and reads the PNG back to check it; the ``Read`` result
    holds the image. A text-only model's server refuses every request that holds it: the
    run failed (after all its retries), and so did every later question of the session,
    whose history still held the image."""
    script = [
        Turn(text="I'll count the fills.", tool_calls=[ToolCall("SQL", HUMIRA_INPUT)]),
        Turn(text="Now a chart.", tool_calls=[ToolCall("Python", {"code": CHART})]),
        Turn(tool_calls=[ToolCall("Read", {"file_path": "humira_ca_top10.png"})]),
        "The ten prescribers are in humira_ca_top10.csv, charted in humira_ca_top10.png.",
        "The leading prescriber is first in the file.",
    ]
    with TextOnlyServer(script, model="qwen2.5:7b") as server:
        model = OpenAIModel("qwen2.5:7b", base_url=server.base_url)
        agent = healthcare_agent(
            RetryingModel(model, sleep=_no_sleep), database=claims_db, store=MemoryStore()
        )
        first = agent.run_sync(QUESTION)

        assert first.stop_reason == "end_turn", _errors(first.events)
        assert first.text.startswith("The ten prescribers are in humira_ca_top10.csv")
        read = _tool_results(first.events)[-1]
        assert read["name"] == "Read"
        assert not read["is_error"]
        assert server.rejected == 1  # once: the model remembers the server takes no images
        resent = server.chat_bodies[-1]
        assert _image_parts(resent) == 0
        assert NOT_SENT in json.dumps(resent["messages"])

        second = agent.run_sync("Who leads?", first.session)
        assert second.stop_reason == "end_turn", _errors(second.events)
        assert second.text == "The leading prescriber is first in the file."
        assert server.rejected == 1


async def test_o3_mini_on_openai_gets_the_chart_read_back_as_a_note(claims_db: Path) -> None:
    """OpenAI's own o3-mini takes no images either: the same refusal, as a 400."""
    script = [
        Turn(text="I'll count the fills.", tool_calls=[ToolCall("SQL", HUMIRA_INPUT)]),
        Turn(text="Now a chart.", tool_calls=[ToolCall("Python", {"code": CHART})]),
        Turn(tool_calls=[ToolCall("Read", {"file_path": "humira_ca_top10.png"})]),
        "The ten prescribers are charted in humira_ca_top10.png.",
    ]
    server = TextOnlyServer(script, model="o3-mini")
    server.refusal = Fault.http_error(
        400, "Invalid content type. image_url is only supported by certain models."
    )
    with server:
        async with httpx.AsyncClient(transport=ToLoopback(server.port)) as client:
            model = OpenAIModel(
                "o3-mini",
                base_url="https://api.openai.com/v1",
                api_key="sk-test",
                http_client=client,
            )
            agent = healthcare_agent(model, database=claims_db, store=MemoryStore())
            result = await agent.collect(QUESTION)

        assert result.stop_reason == "end_turn", _errors(result.events)
        assert result.text == "The ten prescribers are charted in humira_ca_top10.png."
        assert server.rejected == 1
        assert NOT_SENT in json.dumps(server.chat_bodies[-1]["messages"])


def test_openai_itself_still_gets_the_chart_as_an_image(claims_db: Path) -> None:
    """Models that take images keep getting them: only a refusal that names images turns
    them into notes."""
    script = [
        Turn(text="I'll count the fills.", tool_calls=[ToolCall("SQL", HUMIRA_INPUT)]),
        Turn(text="Now a chart.", tool_calls=[ToolCall("Python", {"code": CHART})]),
        Turn(tool_calls=[ToolCall("Read", {"file_path": "humira_ca_top10.png"})]),
        "Done.",
    ]
    with OpenAIServer(script) as server:
        model = OpenAIModel("gpt-4.1", base_url=server.base_url)
        agent = healthcare_agent(model, database=claims_db, store=MemoryStore())
        result = agent.run_sync(QUESTION)

        assert result.stop_reason == "end_turn", _errors(result.events)
        assert _image_parts(server.chat_bodies[-1]) == 1
        assert NOT_SENT not in json.dumps(server.chat_bodies[-1]["messages"])


# --- stop sequences ------------------------------------------------------------------


@pytest.fixture
def whitespace_stops_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Messages API refuses a stop sequence of whitespace alone: 400
    ``stop_sequences: each stop sequence must contain non-whitespace``."""
    checked = anthropic_wire._validate

    def validate(body: Any, version: str) -> None:
        checked(body, version)
        stops = body.get("stop_sequences") or []
        if any(not str(stop).strip() for stop in stops):
            raise anthropic_wire._Rejected(
                400,
                "invalid_request_error",
                "stop_sequences: each stop sequence must contain non-whitespace",
            )

    monkeypatch.setattr(anthropic_wire, "_validate", validate)


@pytest.mark.usefixtures("whitespace_stops_refused")
def test_anthropic_drops_stop_sequences_of_whitespace_alone(claims_db: Path) -> None:
    """The compact agent (``compact=True``) ends its answers at a newline: Claude's API
    refused the ``"\\n"`` stop sequence outright, so every request of the run failed."""
    script = [
        AnthropicTurn([ToolUse("SQL", HUMIRA_INPUT)]),
        text_turn("The top prescriber wrote the most HUMIRA fills."),
    ]
    with AnthropicServer(script, api_key="test-key") as server:
        model = AnthropicModel("claude-haiku-4-5", api_key="test-key", base_url=server.url)
        agent = healthcare_agent(model, database=claims_db, store=MemoryStore(), compact=True)
        result = agent.run_sync(QUESTION)

        assert result.stop_reason == "end_turn", _errors(result.events)
        assert [r.outcome for r in server.requests] == ["completed", "completed"]
        assert result.text == "The top prescriber wrote the most HUMIRA fills."


@pytest.mark.usefixtures("whitespace_stops_refused")
async def test_anthropic_sends_only_the_stop_sequences_it_accepts() -> None:
    with AnthropicServer([text_turn("First line")], api_key="test-key") as server:
        model = AnthropicModel("claude-haiku-4-5", api_key="test-key", base_url=server.url)
        try:
            response = await model.complete(
                ModelRequest([Message.user("hi")], stop=["\n", " \t", "END"])
            )
        finally:
            await model.aclose()

        assert response.message.text == "First line"
        assert server.requests[0].body["stop_sequences"] == ["END"]


def _hermes_tool_call(arguments: dict[str, Any]) -> str:
    """A tool call as Qwen and other Hermes-format models write it, over three lines."""
    call = json.dumps({"name": "SQL", "arguments": arguments})
    return f"<tool_call>\n{call}\n</tool_call>"


def test_a_compact_agent_on_a_server_keeps_its_models_tool_calls(claims_db: Path) -> None:
    """A tiny model on an OpenAI-compatible server (Ollama, llama.cpp) with the compact
    prompt: the server matches stop sequences against the model's raw output, in which
    the tool call spans lines; the embedded models' ``"\\n"`` stop cut it to
    ``<tool_call>`` and the SQL tool never ran."""

    def served(request: RecordedRequest) -> Turn:
        body = request.body
        done = any(m.get("role") == "tool" for m in body["messages"][-2:])
        raw = "The top prescriber wrote 15 fills." if done else _hermes_tool_call(HUMIRA_INPUT)
        stops = [s for s in body.get("stop") or [] if s in raw]
        if stops:  # generation ends at the first stop sequence; what is left is text
            return Turn(text=raw[: min(raw.index(s) for s in stops)], finish_reason="stop")
        match = re.fullmatch(r"<tool_call>\n(.*)\n</tool_call>", raw, re.DOTALL)
        if match is None:
            return Turn(text=raw)
        call = json.loads(match.group(1))
        return Turn(tool_calls=[ToolCall(call["name"], call["arguments"])])

    with OpenAIServer(served, model="qwen2.5:0.5b") as server:
        model = OpenAIModel("qwen2.5:0.5b", base_url=server.base_url)
        agent = healthcare_agent(model, database=claims_db, store=MemoryStore(), compact=True)
        result = agent.run_sync(QUESTION)

        assert result.stop_reason == "end_turn", _errors(result.events)
        results = _tool_results(result.events)
        assert [r["name"] for r in results] == ["SQL"]
        assert not results[0]["is_error"], results[0]["content"]
        assert result.text == "The top prescriber wrote 15 fills."


# --- a chart over the Anthropic API's image limits ----------------------------------------

BIG_CHARTS = """\
import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

rng = np.random.default_rng(7)
noise = rng.integers(0, 256, size=(1200, 1200, 3), dtype=np.uint8)
Image.fromarray(noise).save("heatmap.png")  # about 4.3 MB: under Read's 5 MB, not as base64
fig, ax = plt.subplots(figsize=(90, 3), dpi=100)  # 9,000 pixels wide
ax.plot(range(1000))
fig.savefig("timeline.png")
"""


def _api_image_limits(body: dict[str, Any]) -> None:
    """The Messages API's refusals of an image: over 5 MB of base64, or a side over 8000
    pixels (for the PNGs of these tests)."""

    def check(where: str, block: dict[str, Any]) -> None:
        if block.get("type") == "tool_result" and isinstance(block.get("content"), list):
            for index, part in enumerate(block["content"]):
                check(f"{where}.content.{index}", part)
        if block.get("type") != "image":
            return
        data = block["source"]["data"]
        if len(data) > 5 * 1024 * 1024:
            raise anthropic_wire._Rejected(
                400,
                "invalid_request_error",
                f"{where}.image.source.base64: image exceeds 5 MB maximum: {len(data)} bytes "
                "> 5242880 bytes",
            )
        head = base64.b64decode(data[:32])
        if max(struct.unpack(">II", head[16:24])) > 8000:
            raise anthropic_wire._Rejected(
                400,
                "invalid_request_error",
                f"{where}.image.source.base64.data: At least one of the image dimensions "
                "exceed max allowed size: 8000 pixels",
            )

    for number, message in enumerate(body["messages"]):
        for index, block in enumerate(message["content"]):
            check(f"messages.{number}.content.{index}", block)


def test_anthropic_a_chart_over_the_apis_image_limits_is_sent_as_a_note(
    claims_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Charts the model reads back to check them: one of 4.3 MB (5.8 MB as base64) and one
    9,000 pixels wide. ``Read`` takes both (its limit is 5 MB of file); the API refused the
    request that held them, and every later request of the session, which still held them."""
    checked = anthropic_wire._validate

    def validate(body: Any, version: str) -> None:
        checked(body, version)
        _api_image_limits(body)

    monkeypatch.setattr(anthropic_wire, "_validate", validate)
    script = [
        AnthropicTurn([Text("Two charts."), ToolUse("Python", {"code": BIG_CHARTS})]),
        AnthropicTurn(
            [
                ToolUse("Read", {"file_path": "heatmap.png"}),
                ToolUse("Read", {"file_path": "timeline.png"}),
            ]
        ),
        text_turn("The charts are heatmap.png and timeline.png."),
        text_turn("Fills rise over the period."),
    ]
    with AnthropicServer(script, api_key="test-key") as server:
        model = AnthropicModel("claude-sonnet-5-5", api_key="test-key", base_url=server.url)
        agent = healthcare_agent(model, database=claims_db, store=MemoryStore())
        first = agent.run_sync("Chart HUMIRA fills")

        assert first.stop_reason == "end_turn", _errors(first.events)
        reads = [r for r in _tool_results(first.events) if r["name"] == "Read"]
        assert [r["is_error"] for r in reads] == [False, False]
        workspace = Path(first.session.workspace_dir)
        assert 3_932_160 < (workspace / "heatmap.png").stat().st_size < 5 * 1024 * 1024
        sent = json.dumps(server.requests[2].body["messages"][-1])
        assert "over the Anthropic API's limit of 5,242,880 per image" in sent
        assert "9,000x300 pixels, over the Anthropic API's limit of 8,000 a side" in sent

        second = agent.run_sync("What do they show?", first.session)
        assert second.stop_reason == "end_turn", _errors(second.events)
        assert [r.outcome for r in server.requests] == ["completed"] * 4


# --- an OpenAI reasoning model --------------------------------------------------------------


def test_an_openai_reasoning_model_has_room_to_reason_and_answer(claims_db: Path) -> None:
    """o4-mini's hidden reasoning counts against ``max_completion_tokens``. With the agent's
    4,096, reasoning about the claims question used them all: the turn ended empty with
    ``finish_reason: length``, and so did each of the agent's three "continue" turns."""
    reasoning = 6_000  # tokens o4-mini spends thinking about each turn here

    def served(request: RecordedRequest) -> Turn:
        limit = request.body["max_completion_tokens"]
        if limit < reasoning + 500:  # used up before a word of the answer
            return Turn(finish_reason="length", completion_tokens=limit)
        if not any(m.get("role") == "tool" for m in request.body["messages"]):
            return Turn(tool_calls=[ToolCall("SQL", HUMIRA_INPUT)], completion_tokens=6_200)
        return Turn(text="The ten prescribers are in humira_ca_top10.csv.", completion_tokens=6_100)

    with OpenAIServer(served, model="o4-mini") as server:
        model = OpenAIModel("o4-mini", base_url=server.base_url)
        agent = healthcare_agent(model, database=claims_db, store=MemoryStore())
        result = agent.run_sync(QUESTION)

        assert result.stop_reason == "end_turn", _errors(result.events)
        assert [r["name"] for r in _tool_results(result.events)] == ["SQL"]
        assert result.text == "The ten prescribers are in humira_ca_top10.csv."
        assert len(server.chat_requests) == 2


def test_a_reasoning_model_in_compact_mode_keeps_room_to_reason(claims_db: Path) -> None:
    """Compact mode (--compact) caps a tiny model's turns at 512 tokens; a reasoning model put
    in compact mode would spend them all thinking and answer nothing."""
    with OpenAIServer([], model="o4-mini") as server:
        reasoner = OpenAIModel("o4-mini", base_url=server.base_url)
        agent = healthcare_agent(reasoner, database=claims_db, store=MemoryStore(), compact=True)
        assert agent.max_output_tokens == REASONING_MAX_OUTPUT_TOKENS
        assert agent.max_turns == COMPACT_MAX_TURNS
        chat = OpenAIModel("gpt-4.1-mini", base_url=server.base_url)
        tiny = healthcare_agent(chat, database=claims_db, store=MemoryStore(), compact=True)
        assert tiny.max_output_tokens == 512


def test_a_chat_model_keeps_the_agents_output_limit(claims_db: Path) -> None:
    with OpenAIServer(["Hello."]) as server:
        agent = healthcare_agent(
            OpenAIModel("gpt-4.1", base_url=server.base_url),
            database=claims_db,
            store=MemoryStore(),
        )
        agent.run_sync("hi")
        assert server.chat_bodies[0]["max_tokens"] == 4096
    with OpenAIServer(["Hello."], model="o4-mini") as server:
        agent = healthcare_agent(
            RetryingModel(OpenAIModel("o4-mini", base_url=server.base_url)),
            database=claims_db,
            store=MemoryStore(),
            max_output_tokens=8_000,  # given: kept
        )
        agent.run_sync("hi")
        assert server.chat_bodies[0]["max_completion_tokens"] == 8_000
