"""Events: their wire form is the contract shared by the Python API, CLI --json and SSE."""

from __future__ import annotations

import json
from typing import Any

import pytest

from loopwright.events import (
    EVENT_TYPES,
    ApprovalRequest,
    Done,
    Error,
    Event,
    TextDelta,
    ToolCall,
    ToolResult,
    Usage,
    UsageUpdate,
    event_from_dict,
)

USAGE = Usage(
    input_tokens=120,
    output_tokens=30,
    cache_read_tokens=5,
    cache_write_tokens=2,
    cost_usd=0.25,
    model_calls=2,
    tool_calls=3,
    tool_errors=1,
)
USAGE_WIRE = {
    "input_tokens": 120,
    "output_tokens": 30,
    "cache_read_tokens": 5,
    "cache_write_tokens": 2,
    "total_tokens": 157,
    "cost_usd": 0.25,
    "model_calls": 2,
    "tool_calls": 3,
    "tool_errors": 1,
}

EVENTS: list[tuple[Event, dict[str, Any]]] = [
    (TextDelta("Hel"), {"type": "text_delta", "text": "Hel"}),
    (
        ToolCall("call_1", "Read", {"file_path": "a.txt"}),
        {"type": "tool_call", "id": "call_1", "name": "Read", "input": {"file_path": "a.txt"}},
    ),
    (
        ToolResult("call_1", "Read", "1\thello", False, 12.5),
        {
            "type": "tool_result",
            "id": "call_1",
            "name": "Read",
            "content": "1\thello",
            "is_error": False,
            "duration_ms": 12.5,
        },
    ),
    (
        ApprovalRequest("ap_1", "call_2", "Bash", {"command": "rm -rf build"}, "deletes files"),
        {
            "type": "approval_request",
            "id": "ap_1",
            "tool_call_id": "call_2",
            "name": "Bash",
            "input": {"command": "rm -rf build"},
            "reason": "deletes files",
        },
    ),
    (
        UsageUpdate(100, 20, 0, 0, 0.01, run=USAGE, context_tokens=900, context_window=200_000),
        {
            "type": "usage",
            "input_tokens": 100,
            "output_tokens": 20,
            "cache_read_tokens": 0,
            "cache_write_tokens": 0,
            "cost_usd": 0.01,
            "run": USAGE_WIRE,
            "context_tokens": 900,
            "context_window": 200_000,
        },
    ),
    (
        Error("Set ANTHROPIC_API_KEY to use this model.", retryable=False),
        {
            "type": "error",
            "message": "Set ANTHROPIC_API_KEY to use this model.",
            "retryable": False,
            "retrying": False,
            "discard_partial": False,
        },
    ),
    (
        Done("end_turn", USAGE, session_id="s1"),
        {
            "type": "done",
            "stop_reason": "end_turn",
            "usage": USAGE_WIRE,
            "session_id": "s1",
            "detail": "",
        },
    ),
]


@pytest.mark.parametrize(("event", "wire"), EVENTS, ids=lambda v: getattr(v, "type", ""))
def test_wire_form(event: Event, wire: dict[str, Any]) -> None:
    assert event.to_dict() == wire
    assert json.loads(event.to_json()) == wire


@pytest.mark.parametrize(
    ("event", "keys"),
    [
        (TextDelta("x"), {"text"}),
        (ToolCall("i", "n", {}), {"id", "name", "input"}),
        (
            ToolResult("i", "n", "c", True, 1.0),
            {"id", "name", "content", "is_error", "duration_ms"},
        ),
        (Error("m"), {"message", "retryable"}),
        (Done("end_turn", Usage()), {"stop_reason", "usage"}),
    ],
)
def test_design_contract_keys_are_present(event: Event, keys: set[str]) -> None:
    wire = event.to_dict()
    assert wire["type"] == event.type
    assert keys <= set(wire)


@pytest.mark.parametrize(("event", "wire"), EVENTS, ids=lambda v: getattr(v, "type", ""))
def test_round_trip_through_the_wire(event: Event, wire: dict[str, Any]) -> None:
    restored = event_from_dict(event.to_dict())
    assert type(restored) is type(event)
    assert restored == event
    assert event_from_dict(json.loads(event.to_json())) == event


@pytest.mark.parametrize(("event", "wire"), EVENTS, ids=lambda v: getattr(v, "type", ""))
def test_dict_style_access(event: Event, wire: dict[str, Any]) -> None:
    assert event["type"] == wire["type"]
    for key, value in wire.items():
        if key in ("usage", "run"):
            assert event[key].to_dict() == value
        else:
            assert event[key] == value
        assert key in event
    assert event.get("type") == wire["type"]


def test_dict_style_access_reads_like_the_guides_consumers() -> None:
    event = TextDelta("Hello")
    assert event["type"] == "text_delta"
    assert event["text"] == "Hello"
    assert event.get("missing") is None
    assert event.get("missing", "fallback") == "fallback"


@pytest.mark.parametrize("key", ["missing", "to_dict", "to_json", "get", "__class__", "__slots__"])
def test_unknown_keys_are_key_errors(key: str) -> None:
    event = TextDelta("x")
    with pytest.raises(KeyError):
        event[key]
    assert key not in event
    assert event.get(key) is None


def test_non_string_key_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        TextDelta("x")[0]  # type: ignore[index]
    assert 0 not in TextDelta("x")


def test_agent_name_is_on_the_wire_only_when_set() -> None:
    assert "agent" not in TextDelta("x").to_dict()
    wire = TextDelta("x", agent="researcher").to_dict()
    assert wire == {"type": "text_delta", "text": "x", "agent": "researcher"}
    assert event_from_dict(wire) == TextDelta("x", agent="researcher")


def test_event_types_registry_covers_every_event() -> None:
    assert set(EVENT_TYPES) == {
        "text_delta",
        "tool_call",
        "tool_result",
        "approval_request",
        "usage",
        "error",
        "notice",
        "done",
    }


def test_event_from_dict_ignores_unknown_extra_keys() -> None:
    event = event_from_dict({"type": "text_delta", "text": "x", "future_field": 1})
    assert event == TextDelta("x")


def test_event_from_dict_done_without_usage() -> None:
    event = event_from_dict({"type": "done", "stop_reason": "cancelled"})
    assert isinstance(event, Done)
    assert event.usage == Usage()


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"type": "nope"}, "unknown event type 'nope'"),
        ({"text": "x"}, "unknown event type None"),
        ({"type": "tool_call", "id": "x"}, "malformed tool_call event"),
        ([], "an event must be a JSON object"),
    ],
)
def test_event_from_dict_errors_are_value_errors(data: Any, expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        event_from_dict(data)


def test_usage_arithmetic_and_round_trip() -> None:
    total = Usage()
    total.add(USAGE)
    total.add(USAGE)
    assert total.input_tokens == 240
    assert total.total_tokens == 314
    assert total.cost_usd == pytest.approx(0.5)
    copy = total.copy()
    assert copy == total
    assert copy is not total
    assert Usage.from_dict(USAGE.to_dict()) == USAGE
    assert Usage.from_dict({}) == Usage()
