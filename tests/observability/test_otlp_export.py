"""The environment switch exports real OTLP/HTTP requests to a receiver on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import pytest

from loopwright import ReadTool, ScriptedModel, call
from loopwright.observability.tracing import TracingInstrument

from .conftest import make_agent
from .otlp_receiver import otlp_receiver


def attributes(span: object) -> dict[str, object]:
    found: dict[str, object] = {}
    for item in span.attributes:  # type: ignore[attr-defined]
        value = item.value
        kind = value.WhichOneof("value")
        found[item.key] = getattr(value, kind) if kind else None
    return found


async def test_otlp_variables_send_spans_over_http(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with otlp_receiver() as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
        monkeypatch.setenv("OTEL_SERVICE_NAME", "otlp-test")
        model = ScriptedModel([call("Read", file_path="none.txt"), "Done."])
        agent = make_agent(model, tmp_path, tools=[ReadTool], instruments=None)
        assert any(isinstance(i, TracingInstrument) for i in agent.instruments.items)
        result = await agent.collect("read it")
        await agent.aclose()  # flushes the batch

        assert {r.path for r in receiver.received} == {"/v1/traces"}
        spans = receiver.spans()
        names = sorted(s.name for s in spans)
        assert names == [
            "chat scripted",
            "chat scripted",
            "execute_tool Read",
            "invoke_agent agent",
        ]
        root = next(s for s in spans if s.name == "invoke_agent agent")
        assert all(s.parent_span_id == root.span_id for s in spans if s is not root)
        assert attributes(root)["gen_ai.conversation.id"] == result.session.id
        tool = next(s for s in spans if s.name == "execute_tool Read")
        assert tool.status.code == 2  # STATUS_CODE_ERROR
        resource = receiver.received[0].request.resource_spans[0].resource
        service = {a.key: a.value.string_value for a in resource.attributes}["service.name"]
        assert service == "otlp-test"


async def test_langfuse_keys_send_spans_to_its_otlp_endpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with otlp_receiver() as receiver:
        monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", "pk-lf-test")
        monkeypatch.setenv("LANGFUSE_SECRET_KEY", "sk-lf-test")
        monkeypatch.setenv("LANGFUSE_HOST", receiver.url)
        agent = make_agent(ScriptedModel(["hello"]), tmp_path, instruments=None)
        await agent.collect("hi")
        await agent.aclose()

        assert [r.path for r in receiver.received] == ["/api/public/otel/v1/traces"]
        # Basic base64("pk-lf-test:sk-lf-test")
        auth = receiver.received[0].headers["authorization"]
        assert auth == "Basic cGstbGYtdGVzdDpzay1sZi10ZXN0"
        assert sorted(s.name for s in receiver.spans()) == ["chat scripted", "invoke_agent agent"]


async def test_settings_passed_as_a_mapping_choose_endpoint_and_headers(tmp_path: Path) -> None:
    from loopwright.observability.tracing import tracer_provider_from_env

    with otlp_receiver() as receiver:
        provider = tracer_provider_from_env(
            {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_EXPORTER_OTLP_HEADERS": "x-key=v1"}
        )
        assert provider is not None
        agent = make_agent(
            ScriptedModel(["hi"]), tmp_path, instruments=[TracingInstrument(provider)]
        )
        await agent.collect("hello")
        provider.shutdown()
        (received,) = receiver.received
        assert received.path == "/v1/traces"
        assert received.headers["x-key"] == "v1"


def test_other_backend_headers_never_go_to_langfuse() -> None:
    from loopwright.observability.tracing import TracingConfigError, tracer_provider_from_env

    with pytest.raises(TracingConfigError, match="would be sent to Langfuse"):
        tracer_provider_from_env(
            {
                "LANGFUSE_PUBLIC_KEY": "pk",
                "LANGFUSE_SECRET_KEY": "sk",
                "OTEL_EXPORTER_OTLP_HEADERS": "api-key=other-vendor",
            }
        )
