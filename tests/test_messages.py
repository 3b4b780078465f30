"""Messages and content blocks survive a trip through JSON unchanged."""

from __future__ import annotations

import json
from typing import Any

import pytest

from loopwright.messages import (
    IMAGE_CHARS,
    ImageBlock,
    Message,
    TextBlock,
    ThinkingBlock,
    ToolResultBlock,
    ToolUseBlock,
    block_from_dict,
    messages_from_json,
    messages_to_json,
)

PNG_B64 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"
)

BLOCKS: list[tuple[Any, dict[str, Any]]] = [
    (TextBlock("hello"), {"type": "text", "text": "hello"}),
    (
        ThinkingBlock("let me think", signature="sig-123"),
        {"type": "thinking", "thinking": "let me think", "signature": "sig-123"},
    ),
    (ThinkingBlock("no signature"), {"type": "thinking", "thinking": "no signature"}),
    (
        ImageBlock(PNG_B64, "image/png"),
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}},
    ),
    (
        ToolUseBlock("call_1", "Read", {"file_path": "a.txt", "limit": 5}),
        {
            "type": "tool_use",
            "id": "call_1",
            "name": "Read",
            "input": {"file_path": "a.txt", "limit": 5},
        },
    ),
    (
        ToolUseBlock("call_2", "Write", {}, partial_json='{"file_path": "a.t'),
        {
            "type": "tool_use",
            "id": "call_2",
            "name": "Write",
            "input": {},
            "partial_json": '{"file_path": "a.t',
        },
    ),
    (
        ToolResultBlock("call_1", "1\tline"),
        {"type": "tool_result", "tool_use_id": "call_1", "content": "1\tline"},
    ),
    (
        ToolResultBlock("call_3", "File not found", is_error=True),
        {
            "type": "tool_result",
            "tool_use_id": "call_3",
            "content": "File not found",
            "is_error": True,
        },
    ),
    (
        ToolResultBlock("call_4", [TextBlock("a chart:"), ImageBlock(PNG_B64, "image/jpeg")]),
        {
            "type": "tool_result",
            "tool_use_id": "call_4",
            "content": [
                {"type": "text", "text": "a chart:"},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/jpeg", "data": PNG_B64},
                },
            ],
        },
    ),
]


@pytest.mark.parametrize(("block", "wire"), BLOCKS, ids=lambda v: getattr(v, "type", ""))
def test_block_wire_form_and_round_trip(block: Any, wire: dict[str, Any]) -> None:
    assert block.to_dict() == wire
    assert block_from_dict(wire) == block
    assert block_from_dict(json.loads(json.dumps(block.to_dict()))) == block


def test_every_block_type_round_trips_inside_messages() -> None:
    conversation = [
        Message("user", [TextBlock("read a.txt and show the chart")]),
        Message(
            "assistant",
            [
                ThinkingBlock("I should read it", "sig"),
                TextBlock("Reading."),
                ToolUseBlock("c1", "Read", {"file_path": "a.txt"}),
                ToolUseBlock("c2", "Read", {}, partial_json='{"file'),
            ],
        ),
        Message(
            "user",
            [
                ToolResultBlock("c1", "1\thello"),
                ToolResultBlock("c2", [TextBlock("chart"), ImageBlock(PNG_B64)], is_error=True),
                ImageBlock(PNG_B64, "image/gif"),
            ],
        ),
        Message.assistant("Done: it says hello."),
    ]
    text = messages_to_json(conversation)
    assert isinstance(json.loads(text), list)
    restored = messages_from_json(text)
    assert restored == conversation
    assert [m.to_dict() for m in restored] == [m.to_dict() for m in conversation]
    assert messages_to_json(restored) == text


def test_message_from_dict_round_trip() -> None:
    message = Message("assistant", [TextBlock("a"), ToolUseBlock("i", "Bash", {"command": "ls"})])
    assert Message.from_dict(message.to_dict()) == message


def test_non_ascii_survives_json() -> None:
    conversation = [Message.user("héllo 世界 🚀")]
    text = messages_to_json(conversation)
    assert "世界" in text  # kept readable, not escaped
    assert messages_from_json(text)[0].text == "héllo 世界 🚀"


def test_string_content_is_one_text_block() -> None:
    assert Message.from_dict({"role": "user", "content": "hi"}) == Message.user("hi")
    assert Message.from_dict({"role": "assistant"}) == Message("assistant", [])


def test_tool_result_without_content_is_empty_text() -> None:
    block = block_from_dict({"type": "tool_result", "tool_use_id": "x"})
    assert block == ToolResultBlock("x", "")
    assert block_from_dict({"type": "tool_result", "tool_use_id": "x", "content": None}) == block


def test_message_helpers() -> None:
    message = Message(
        "assistant",
        [TextBlock("Hello, "), ToolUseBlock("a", "Read", {}), TextBlock("world")],
    )
    assert message.text == "Hello, world"
    assert [b.id for b in message.tool_uses] == ["a"]
    results = Message("user", [ToolResultBlock("a", [TextBlock("x"), ImageBlock("d")])])
    assert results.tool_results[0].text == "x"
    assert ToolUseBlock("a", "Read", {}).complete
    assert not ToolUseBlock("a", "Read", {}, partial_json="{").complete
    assert Message.user("abc").char_size() == 3


def test_an_image_in_a_tool_result_counts_like_an_image_in_a_message() -> None:
    """Read returns a chart as an image inside its tool result; the context estimate must
    count it (it counted only the result's text, so a few charts read back went unseen)."""
    image = ImageBlock("iVBORw0KGgo=")
    read = ToolResultBlock("t1", [TextBlock("Image chart.png (9 bytes):"), image, image])
    sized = Message("user", [read]).char_size()
    assert sized == len(read.text) + 32 + 2 * IMAGE_CHARS
    assert Message("user", [image]).char_size() == IMAGE_CHARS
    assert Message("user", [ToolResultBlock("t2", "plain")]).char_size() == len("plain") + 32


@pytest.mark.parametrize("role", ["system", "tool", "", None, "User"])
def test_bad_role_is_a_clear_value_error(role: Any) -> None:
    with pytest.raises(ValueError, match="role must be 'user' or 'assistant'"):
        Message.from_dict({"role": role, "content": "hi"})


@pytest.mark.parametrize("kind", ["video", "redacted", None, ""])
def test_unknown_block_type_is_a_clear_value_error(kind: Any) -> None:
    with pytest.raises(ValueError, match="unknown content block type"):
        block_from_dict({"type": kind, "text": "x"})
    with pytest.raises(ValueError, match="unknown content block type"):
        Message.from_dict({"role": "user", "content": [{"type": kind}]})


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"type": "text"}, "text block is missing its 'text' field"),
        ({"type": "tool_use", "name": "Read"}, "tool_use block is missing its 'id' field"),
        ({"type": "tool_result", "content": "x"}, "missing its 'tool_use_id' field"),
        ({"type": "thinking"}, "thinking block is missing its 'thinking' field"),
        ({"type": "image", "source": {"type": "base64"}}, "missing its 'data' field"),
        ({"type": "image", "source": {"type": "url", "url": "http://x"}}, "only base64 image"),
        (
            {"type": "tool_result", "tool_use_id": "x", "content": [{"type": "tool_use"}]},
            "missing",
        ),
        (
            {
                "type": "tool_result",
                "tool_use_id": "x",
                "content": [{"type": "thinking", "thinking": "t"}],
            },
            "a tool_result may hold text and images, not thinking",
        ),
        ({"type": "tool_result", "tool_use_id": "x", "content": 5}, "string or a list"),
    ],
)
def test_malformed_blocks_are_value_errors(data: dict[str, Any], expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        block_from_dict(data)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"role": "user"}', "a conversation must be a JSON list"),
        ('["hello"]', "a message must be a JSON object"),
        ('[{"role": "user", "content": ["hi"]}]', "a content block must be a JSON object"),
        ('[{"role": "user", "content": 5}]', "message content must be a string or a list"),
    ],
)
def test_malformed_conversations_are_value_errors(text: str, expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        messages_from_json(text)


def test_invalid_json_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="Expecting"):  # JSONDecodeError is a ValueError
        messages_from_json("[{")
