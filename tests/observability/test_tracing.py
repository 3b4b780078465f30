"""OpenTelemetry spans of real runs on the scripted model, captured in memory."""

from __future__ import annotations

import json
import logging
from contextlib import aclosing
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, Decision, Sampler, SamplingResult
from opentelemetry.trace import NoOpTracerProvider, SpanKind, StatusCode

from loopwright import BaseTool, ReadTool, ScriptedModel, ScriptedTurn, ToolResult, WriteTool, call
from loopwright.events import Usage
from loopwright.instrument import default_instruments
from loopwright.models.base import ModelError, Pricing
from loopwright.observability.tracing import (
    TracingConfigError,
    TracingInstrument,
    instrument_from_env,
    langfuse_exporter_settings,
    provider_and_model,
    span_context_of,
    tracer_provider_from_env,
)
from loopwright.run_context import RunContext
from loopwright.tools.delegate import Delegate, SubAgent

from .conftest import by_name, make_agent


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


async def test_a_run_is_an_agent_span_with_chat_and_tool_spans(
    tmp_path: Path, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    model = ScriptedModel(
        [
            ["Writing.", call("Write", file_path="a.txt", content="hello")],
            call("Read", file_path="missing.txt"),
            "Done.",
        ]
    )
    agent = make_agent(
        model,
        tmp_path,
        tools=[WriteTool, ReadTool],
        instruments=[TracingInstrument(provider)],
        max_output_tokens=1234,
        temperature=0.5,
    )
    result = await agent.collect("write a file")
    assert result.stop_reason == "end_turn"

    spans = by_name(exporter.get_finished_spans())
    assert sorted(spans) == [
        "chat scripted",
        "execute_tool Read",
        "execute_tool Write",
        "invoke_agent agent",
    ]
    (root,) = spans["invoke_agent agent"]
    chats = spans["chat scripted"]
    (write,) = spans["execute_tool Write"]
    (read,) = spans["execute_tool Read"]
    assert len(chats) == 3

    # one trace; every step is a child of the run's span
    assert root.parent is None
    trace_ids = {s.context.trace_id for group in spans.values() for s in group}
    assert trace_ids == {root.context.trace_id}
    for span in [*chats, write, read]:
        assert parent_id(span) == root.context.span_id

    run = attrs(root)
    assert run["gen_ai.operation.name"] == "invoke_agent"
    assert run["gen_ai.agent.name"] == "agent"
    assert run["gen_ai.conversation.id"] == result.session.id
    assert run["session.id"] == result.session.id
    assert run["loopwright.stop_reason"] == "end_turn"
    assert run["gen_ai.usage.output_tokens"] == result.usage.output_tokens
    assert run["loopwright.usage.tool_errors"] == 1
    assert root.kind == SpanKind.INTERNAL
    assert root.status.status_code == StatusCode.UNSET

    first = attrs(chats[0])
    assert chats[0].kind == SpanKind.CLIENT
    assert first["gen_ai.operation.name"] == "chat"
    assert first["gen_ai.request.model"] == "scripted"
    assert first["gen_ai.provider.name"] == "scripted"
    assert first["gen_ai.system"] == "scripted"
    assert first["gen_ai.request.max_tokens"] == 1234
    assert first["gen_ai.request.temperature"] == 0.5
    assert first["gen_ai.response.finish_reasons"] == ("tool_use",)
    assert first["gen_ai.usage.input_tokens"] > 0
    assert first["gen_ai.usage.output_tokens"] > 0
    assert "gen_ai.response.time_to_first_chunk" in first  # "Writing." streamed
    assert attrs(chats[2])["gen_ai.response.finish_reasons"] == ("end_turn",)
    # the chat spans' tokens add up to the run's
    total_out = sum(attrs(c)["gen_ai.usage.output_tokens"] for c in chats)
    assert total_out == result.usage.output_tokens

    tool = attrs(write)
    assert tool["gen_ai.operation.name"] == "execute_tool"
    assert tool["gen_ai.tool.name"] == "Write"
    assert tool["gen_ai.tool.type"] == "function"
    calls = result.session.messages[1].tool_uses
    assert tool["gen_ai.tool.call.id"] == calls[0].id
    assert write.status.status_code == StatusCode.UNSET
    assert read.status.status_code == StatusCode.ERROR
    assert "missing.txt" in (read.status.description or "")
    assert attrs(read)["error.type"] == "ToolError"

    # privacy by default: no contents anywhere
    for group in spans.values():
        for span in group:
            keys = set(attrs(span))
            assert not keys & {
                "gen_ai.input.messages",
                "gen_ai.output.messages",
                "gen_ai.system_instructions",
                "gen_ai.tool.call.arguments",
                "gen_ai.tool.call.result",
            }


async def test_cache_tokens_and_cost_follow_the_conventions(
    tmp_path: Path, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    usage = Usage(input_tokens=100, output_tokens=20, cache_read_tokens=1000, cache_write_tokens=50)
    pricing = Pricing(input_per_mtok=3, output_per_mtok=15, cache_read_per_mtok=0.3)
    model = ScriptedModel([ScriptedTurn(text="hi", usage=usage)], name="anthropic:claude-x")
    model.pricing = pricing
    agent = make_agent(model, tmp_path, instruments=[TracingInstrument(provider)])
    result = await agent.collect("hello")

    (chat,) = by_name(exporter.get_finished_spans())["chat claude-x"]
    found = attrs(chat)
    assert found["gen_ai.provider.name"] == "anthropic"
    assert found["gen_ai.request.model"] == "claude-x"
    # input tokens count every input token, cached ones included
    assert found["gen_ai.usage.input_tokens"] == 1150
    assert found["gen_ai.usage.cache_read.input_tokens"] == 1000
    assert found["gen_ai.usage.cache_creation.input_tokens"] == 50
    assert found["gen_ai.usage.output_tokens"] == 20
    assert found["loopwright.usage.cost_usd"] == pytest.approx(pricing.cost(usage))
    assert result.usage.cost_usd == pytest.approx(found["loopwright.usage.cost_usd"])


def test_provider_names_from_model_strings() -> None:
    assert provider_and_model(ScriptedModel([], name="openai:gpt-5@http://127.0.0.1:8000/v1")) == (
        "openai",
        "gpt-5",
    )
    assert provider_and_model(ScriptedModel([], name="local:smollm2")) == ("llama_cpp", "smollm2")
    assert provider_and_model(ScriptedModel([], name="scripted")) == ("scripted", "scripted")
    # a fallback chain is named for its first model; a nameless model for its class
    chain = ScriptedModel([], name="anthropic:claude-x > openai:gpt-5@http://127.0.0.1:1/v1")
    assert provider_and_model(chain) == ("anthropic", "claude-x")
    assert provider_and_model(ScriptedModel([], name="")) == ("scriptedmodel", "")
    # parsed once per name: a model renamed later is parsed anew
    model = ScriptedModel([], name="openai:gpt-5")
    assert provider_and_model(model) == ("openai", "gpt-5")
    model.name = "local:qwen3"
    assert provider_and_model(model) == ("llama_cpp", "qwen3")


async def test_contents_are_recorded_only_when_asked(
    tmp_path: Path, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    model = ScriptedModel([call("Write", file_path="a.txt", content="secret data"), "Done."])
    agent = make_agent(
        model,
        tmp_path,
        tools=[WriteTool],
        system_prompt="You write files.",
        instruments=[TracingInstrument(provider, record_content=True)],
    )
    await agent.collect("please write a.txt")
    spans = by_name(exporter.get_finished_spans())

    first, second = (attrs(s) for s in spans["chat scripted"])
    assert json.loads(first["gen_ai.system_instructions"]) == [
        {"type": "text", "content": "You write files."}
    ]
    inputs = json.loads(first["gen_ai.input.messages"])
    assert inputs == [
        {"role": "user", "parts": [{"type": "text", "content": "please write a.txt"}]}
    ]
    (output,) = json.loads(first["gen_ai.output.messages"])
    assert output["role"] == "assistant"
    assert output["finish_reason"] == "tool_use"
    assert output["parts"][0]["type"] == "tool_call"
    assert output["parts"][0]["arguments"] == {"file_path": "a.txt", "content": "secret data"}
    # the second call sees the tool's answer as a "tool" message
    later = json.loads(second["gen_ai.input.messages"])
    assert [m["role"] for m in later] == ["user", "assistant", "tool"]
    assert later[2]["parts"][0]["type"] == "tool_call_response"

    (tool,) = spans["execute_tool Write"]
    assert json.loads(attrs(tool)["gen_ai.tool.call.arguments"])["content"] == "secret data"
    assert "a.txt" in attrs(tool)["gen_ai.tool.call.result"]
    (root,) = spans["invoke_agent agent"]
    assert json.loads(attrs(root)["gen_ai.input.messages"]) == inputs
    assert json.loads(attrs(root)["gen_ai.output.messages"])[0]["parts"] == [
        {"type": "text", "content": "Done."}
    ]


async def test_a_sub_agent_run_nests_under_the_tool_call_that_started_it(
    tmp_path: Path, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    model = ScriptedModel(
        [
            call("Delegate", agent="researcher", task="find the answer"),
            ["Looking.", call("Read", file_path="nothing.txt")],  # the sub-agent's turns
            "The answer is 42.",
            "The researcher says 42.",  # the parent's answer
        ]
    )
    delegate = Delegate([SubAgent("researcher", "Finds things.", tools=["Read"])])
    agent = make_agent(
        model, tmp_path, tools=[ReadTool, delegate], instruments=[TracingInstrument(provider)]
    )
    result = await agent.collect("ask the researcher")
    assert result.stop_reason == "end_turn"

    spans = by_name(exporter.get_finished_spans())
    (root,) = spans["invoke_agent agent"]
    (child,) = spans["invoke_agent researcher"]
    (delegate_span,) = spans["execute_tool Delegate"]
    (read,) = spans["execute_tool Read"]
    assert parent_id(delegate_span) == root.context.span_id
    assert parent_id(child) == delegate_span.context.span_id
    assert parent_id(read) == child.context.span_id
    child_chats = [s for s in spans["chat scripted"] if parent_id(s) == child.context.span_id]
    assert len(child_chats) == 2
    assert len({s.context.trace_id for group in spans.values() for s in group}) == 1
    assert attrs(child)["loopwright.agent.path"] == "agent/researcher"
    assert attrs(child)["gen_ai.conversation.id"] != result.session.id  # its own session
    # the child ended before the tool call that ran it
    assert child.end_time is not None
    assert delegate_span.end_time is not None
    assert child.end_time <= delegate_span.end_time


async def test_a_failed_model_call_marks_the_spans_as_errors(
    tmp_path: Path, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    model = ScriptedModel([ScriptedTurn(error=ModelError("the provider is down"))])
    agent = make_agent(model, tmp_path, instruments=[TracingInstrument(provider)])
    result = await agent.collect("hi")
    assert result.stop_reason == "error"

    spans = by_name(exporter.get_finished_spans())
    (chat,) = spans["chat scripted"]
    (root,) = spans["invoke_agent agent"]
    assert chat.status.status_code == StatusCode.ERROR
    assert attrs(chat)["error.type"] == "ModelError"
    assert [e.name for e in chat.events] == ["exception"]
    assert root.status.status_code == StatusCode.ERROR
    assert attrs(root)["error.type"] == "ModelError"
    assert "provider is down" in (root.status.description or "")


async def test_a_stopped_run_ends_all_its_spans(
    tmp_path: Path, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    model = ScriptedModel([call("Write", file_path="a.txt", content="x"), "never reached"])
    agent = make_agent(
        model, tmp_path, tools=[WriteTool], instruments=[TracingInstrument(provider)]
    )
    async with aclosing(agent.run("go")) as events:
        async for event in events:
            if event.type == "tool_call":
                break  # the consumer walks away mid-run
    spans = by_name(exporter.get_finished_spans())
    (root,) = spans["invoke_agent agent"]
    assert attrs(root)["loopwright.stop_reason"] == "cancelled"
    assert all(parent_id(s) == root.context.span_id for s in spans["chat scripted"])


async def test_spans_nest_under_the_application_span(
    tmp_path: Path, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    tracer = provider.get_tracer("app")
    seen: list[RunContext] = []

    class Keep(TracingInstrument):
        def run_finished(self, run: RunContext, done: Any) -> None:
            super().run_finished(run, done)
            seen.append(run)

    agent = make_agent(ScriptedModel(["hi"]), tmp_path, instruments=[Keep(provider)])
    with tracer.start_as_current_span("request") as outer:
        await agent.collect("hello")
    spans = by_name(exporter.get_finished_spans())
    (root,) = spans["invoke_agent agent"]
    assert parent_id(root) == outer.get_span_context().span_id
    # evaluations that finish later can find the run's span
    context = span_context_of(seen[0])
    assert context is not None
    assert context.span_id == root.context.span_id


# --- configuration from the environment ---------------------------------------------------


def test_nothing_is_exported_unless_configured() -> None:
    assert tracer_provider_from_env({}) is None
    assert instrument_from_env() is None
    assert not any(isinstance(i, TracingInstrument) for i in default_instruments())


def test_an_otlp_endpoint_makes_a_batching_exporter() -> None:
    provider = tracer_provider_from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert provider is not None
    try:
        assert provider.resource.attributes["service.name"] == "loopwright"
        processors = provider._active_span_processor._span_processors
        assert [type(p).__name__ for p in processors] == ["BatchSpanProcessor"]
    finally:
        provider.shutdown()
    assert (
        tracer_provider_from_env(
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_SDK_DISABLED": "true"}
        )
        is None
    )


def test_unusable_settings_say_what_to_fix(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(TracingConfigError, match="http/protobuf"):
        tracer_provider_from_env(
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
        )
    with pytest.raises(TracingConfigError, match="LANGFUSE_SECRET_KEY"):
        langfuse_exporter_settings({"LANGFUSE_PUBLIC_KEY": "pk-lf-1"})
    with pytest.raises(TracingConfigError, match="not a URL"):
        langfuse_exporter_settings(
            {"LANGFUSE_PUBLIC_KEY": "pk", "LANGFUSE_SECRET_KEY": "sk", "LANGFUSE_HOST": "langfuse"}
        )


def test_a_bad_setting_leaves_runs_untraced_with_an_error_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", "pk-lf-1")
    with caplog.at_level(logging.ERROR, logger="loopwright.observability"):
        assert instrument_from_env() is None
    assert "Tracing is off" in caplog.text
    assert "LANGFUSE_SECRET_KEY" in caplog.text


def test_langfuse_settings_build_its_otlp_endpoint() -> None:
    endpoint, headers = langfuse_exporter_settings(
        {
            "LANGFUSE_PUBLIC_KEY": "pk-lf-1",
            "LANGFUSE_SECRET_KEY": "sk-lf-2",
            "LANGFUSE_HOST": "https://langfuse.example.org/",
        }
    ) or ("", {})
    assert endpoint == "https://langfuse.example.org/api/public/otel/v1/traces"
    assert headers == {"Authorization": "Basic cGstbGYtMTpzay1sZi0y"}  # pk-lf-1:sk-lf-2


# --- what the per-step fast paths must keep -------------------------------------------------


class Echo(BaseTool):
    """A tool named like an MCP server's, to check per-tool attributes (kept per name)."""

    @property
    def name(self) -> str:
        return "mcp__files__echo"

    @property
    def schema(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": "Echo the text.",
            "input_schema": {
                "type": "object",
                "properties": {"text": {"type": "string"}},
                "required": ["text"],
            },
        }

    async def execute(self, input: dict[str, Any]) -> ToolResult:
        return {"content": f"echo: {input['text']}", "is_error": False}


class Recording(Sampler):
    """Samples the spans whose name ``keep`` accepts, and keeps what it was shown."""

    def __init__(self, keep: Any = None) -> None:
        self.keep = keep
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def should_sample(
        self,
        parent_context: Any,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Any = None,
        links: Any = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        self.seen.append((name, dict(attributes or {})))
        sampled = self.keep is None or self.keep(name)
        decision = Decision.RECORD_AND_SAMPLE if sampled else Decision.DROP
        return SamplingResult(decision, attributes)

    def get_description(self) -> str:
        return "Recording"


def sampled_provider(sampler: Sampler) -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


class KeepRuns(TracingInstrument):
    """Keeps the runs it traced (to look at what the instrument left on them)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.runs: list[RunContext] = []

    def run_finished(self, run: RunContext, done: Any) -> None:
        super().run_finished(run, done)
        self.runs.append(run)


async def test_each_tool_call_has_its_own_attributes(
    tmp_path: Path, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    model = ScriptedModel(
        [
            [call("mcp__files__echo", text="a"), call("mcp__files__echo", text="b")],
            [call("mcp__files__echo", text="c"), call("Read", file_path="none.txt")],
            "Done.",
        ]
    )
    agent = make_agent(
        model,
        tmp_path,
        tools=[Echo, ReadTool],
        instruments=[TracingInstrument(provider, record_content=True)],
    )
    result = await agent.collect("echo things")
    assert result.stop_reason == "end_turn"

    spans = by_name(exporter.get_finished_spans())
    echoes = spans["execute_tool mcp__files__echo"]
    (read,) = spans["execute_tool Read"]
    calls = [u for m in result.session.messages for u in m.tool_uses]
    ids = {u.id: u for u in calls}
    assert sorted(attrs(s)["gen_ai.tool.call.id"] for s in [*echoes, read]) == sorted(ids)
    for span in echoes:
        found = attrs(span)
        use = ids[str(found["gen_ai.tool.call.id"])]
        assert found["gen_ai.tool.name"] == "mcp__files__echo"
        assert found["gen_ai.tool.type"] == "extension"
        assert json.loads(str(found["gen_ai.tool.call.arguments"])) == use.input
        assert found["gen_ai.tool.call.result"] == f"echo: {use.input['text']}"
        assert found["loopwright.tool.output_chars"] == len(f"echo: {use.input['text']}")
    found = attrs(read)
    assert found["gen_ai.tool.name"] == "Read"
    assert found["gen_ai.tool.type"] == "function"
    assert json.loads(str(found["gen_ai.tool.call.arguments"])) == {"file_path": "none.txt"}


async def test_time_to_first_chunk_lies_within_the_chat_span(
    tmp_path: Path, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    model = ScriptedModel(["A streamed answer, in several chunks of sixteen characters."])
    agent = make_agent(model, tmp_path, instruments=[TracingInstrument(provider)])
    await agent.collect("hi")
    (chat,) = by_name(exporter.get_finished_spans())["chat scripted"]
    assert chat.start_time is not None
    assert chat.end_time is not None
    first = attrs(chat)["gen_ai.response.time_to_first_chunk"]
    assert isinstance(first, float)
    assert 0 < first <= (chat.end_time - chat.start_time) / 1e9


async def test_samplers_see_each_span_s_attributes_when_it_starts(tmp_path: Path) -> None:
    sampler = Recording()
    provider, exporter = sampled_provider(sampler)
    model = ScriptedModel([call("Read", file_path="none.txt"), "Done."])
    agent = make_agent(model, tmp_path, tools=[ReadTool], instruments=[TracingInstrument(provider)])
    result = await agent.collect("read it")
    provider.shutdown()

    seen = {name: attributes for name, attributes in sampler.seen}
    assert sorted(seen) == ["chat scripted", "execute_tool Read", "invoke_agent agent"]
    assert seen["invoke_agent agent"]["gen_ai.agent.name"] == "agent"
    assert seen["invoke_agent agent"]["gen_ai.conversation.id"] == result.session.id
    chat = seen["chat scripted"]
    assert chat["gen_ai.operation.name"] == "chat"
    assert chat["gen_ai.request.model"] == "scripted"
    assert chat["gen_ai.request.max_tokens"] == agent.max_output_tokens
    assert chat["gen_ai.conversation.id"] == result.session.id
    tool = seen["execute_tool Read"]
    assert tool["gen_ai.tool.name"] == "Read"
    assert tool["gen_ai.tool.call.id"] == result.session.messages[1].tool_uses[0].id
    # what was shown at the start is what the spans carry
    for span in exporter.get_finished_spans():
        assert seen[span.name].items() <= attrs(span).items()


async def test_a_run_whose_steps_are_sampled_out_still_gets_its_totals(tmp_path: Path) -> None:
    provider, exporter = sampled_provider(Recording(lambda name: name.startswith("invoke_")))
    model = ScriptedModel(
        [
            call("Read", file_path="none.txt"),
            ScriptedTurn(error=ModelError("the provider is down")),
        ]
    )
    agent = make_agent(model, tmp_path, tools=[ReadTool], instruments=[TracingInstrument(provider)])
    result = await agent.collect("read it")
    provider.shutdown()
    assert result.stop_reason == "error"

    (root,) = exporter.get_finished_spans()  # the chat and tool spans were dropped
    assert root.name == "invoke_agent agent"
    found = attrs(root)
    assert found["loopwright.usage.tool_calls"] == 1
    assert found["loopwright.usage.tool_errors"] == 1
    assert found["gen_ai.usage.output_tokens"] == result.usage.output_tokens
    # the failed model call's span was not recorded, but the run still says what failed
    assert found["error.type"] == "ModelError"
    assert root.status.status_code == StatusCode.ERROR


async def test_an_unsampled_run_records_nothing_and_runs_normally(tmp_path: Path) -> None:
    provider, exporter = sampled_provider(ALWAYS_OFF)
    instrument = KeepRuns(provider, record_content=True)
    model = ScriptedModel([call("Read", file_path="none.txt"), "Done."])
    agent = make_agent(model, tmp_path, tools=[ReadTool], instruments=[instrument])
    result = await agent.collect("read it")
    provider.shutdown()
    assert result.stop_reason == "end_turn"
    assert exporter.get_finished_spans() == ()
    # still one trace a later evaluation could link to (its spans are just not sampled)
    context = span_context_of(instrument.runs[0])
    assert context is not None
    assert context.is_valid
    assert not context.trace_flags.sampled


async def test_without_an_sdk_a_run_keeps_no_tracing_state(tmp_path: Path) -> None:
    instrument = KeepRuns(NoOpTracerProvider())
    model = ScriptedModel(
        [call("Delegate", agent="helper", task="look"), "Seen.", "The helper saw it."]
    )
    delegate = Delegate([SubAgent("helper", "Looks.", tools=[])])
    agent = make_agent(model, tmp_path, tools=[delegate], instruments=[instrument])
    result = await agent.collect("ask the helper")
    assert result.stop_reason == "end_turn"
    assert [run.path for run in instrument.runs] == ["agent/helper", "agent"]
    for run in instrument.runs:
        assert run.data == {}
        assert span_context_of(run) is None
