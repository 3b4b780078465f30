"""Provider-neutral conversation messages and their content blocks.

A conversation is a list of :class:`Message`; each message has a role (``user`` or
``assistant``) and a list of content blocks. The JSON form of every block is the one the
Anthropic Messages API uses (``{"type": "text", "text": ...}`` and so on), which is also the
form the design guide's examples use, so histories round-trip through JSON unchanged and
providers translate from one well-known shape.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

Role: TypeAlias = Literal["user", "assistant"]


@dataclass(slots=True)
class TextBlock:
    """Plain text written by the user or the model."""

    text: str
    type: Literal["text"] = "text"

    def to_dict(self) -> dict[str, Any]:
        return {"type": "text", "text": self.text}


@dataclass(slots=True)
class ThinkingBlock:
    """Model reasoning kept in history; ``signature`` is whatever the provider needs back."""

    thinking: str
    signature: str | None = None
    type: Literal["thinking"] = "thinking"

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"type": "thinking", "thinking": self.thinking}
        if self.signature is not None:
            data["signature"] = self.signature
        return data


#: What an image counts for in :meth:`Message.char_size`: about 1,600 tokens, what common
#: providers charge for an image near their size limit, at 4 characters a token.
IMAGE_CHARS = 1600 * 4


@dataclass(slots=True)
class ImageBlock:
    """An image, as base64 data with its media type (``image/png``...)."""

    data: str
    media_type: str = "image/png"
    type: Literal["image"] = "image"

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": self.media_type, "data": self.data},
        }


@dataclass(slots=True)
class ToolUseBlock:
    """A tool call the model asked for.

    ``partial_json`` is set (and ``input`` is empty) when the model's output was cut off
    while it was still writing the call's arguments, so the call cannot be run.
    """

    id: str
    name: str
    input: dict[str, Any]
    partial_json: str | None = None
    type: Literal["tool_use"] = "tool_use"

    @property
    def complete(self) -> bool:
        """Whether the call's arguments arrived whole and can be executed."""
        return self.partial_json is None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "type": "tool_use",
            "id": self.id,
            "name": self.name,
            "input": self.input,
        }
        if self.partial_json is not None:
            data["partial_json"] = self.partial_json
        return data


@dataclass(slots=True)
class ToolResultBlock:
    """The result of one tool call, sent back to the model in a user message."""

    tool_use_id: str
    content: str | list[TextBlock | ImageBlock]
    is_error: bool = False
    type: Literal["tool_result"] = "tool_result"

    @property
    def text(self) -> str:
        """The textual part of the result."""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(b.text for b in self.content if isinstance(b, TextBlock))

    def to_dict(self) -> dict[str, Any]:
        content: Any = (
            self.content
            if isinstance(self.content, str)
            else [block.to_dict() for block in self.content]
        )
        data: dict[str, Any] = {
            "type": "tool_result",
            "tool_use_id": self.tool_use_id,
            "content": content,
        }
        if self.is_error:
            data["is_error"] = True
        return data


ContentBlock: TypeAlias = TextBlock | ThinkingBlock | ImageBlock | ToolUseBlock | ToolResultBlock


@dataclass(slots=True)
class Message:
    """One turn of the conversation: a role and its content blocks."""

    role: Role
    content: list[ContentBlock] = field(default_factory=list)

    @classmethod
    def user(cls, text: str) -> Message:
        """A user message holding one text block."""
        return cls("user", [TextBlock(text)])

    @classmethod
    def assistant(cls, text: str) -> Message:
        """An assistant message holding one text block."""
        return cls("assistant", [TextBlock(text)])

    @property
    def text(self) -> str:
        """All text blocks joined: what a person would read of this message."""
        return "".join(b.text for b in self.content if isinstance(b, TextBlock))

    @property
    def tool_uses(self) -> list[ToolUseBlock]:
        """The tool calls in this message, in order."""
        return [b for b in self.content if isinstance(b, ToolUseBlock)]

    @property
    def tool_results(self) -> list[ToolResultBlock]:
        """The tool results in this message, in order."""
        return [b for b in self.content if isinstance(b, ToolResultBlock)]

    def to_dict(self) -> dict[str, Any]:
        return {"role": self.role, "content": [block.to_dict() for block in self.content]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Message:
        """Rebuild a message from its JSON form; a bare string content is one text block."""
        if not isinstance(data, dict):
            raise ValueError(f"a message must be a JSON object, got {type(data).__name__}")
        role = data.get("role")
        if role not in ("user", "assistant"):
            raise ValueError(f"message role must be 'user' or 'assistant', got {role!r}")
        raw = data.get("content", [])
        if isinstance(raw, str):
            return cls(role, [TextBlock(raw)])
        if not isinstance(raw, list):
            raise ValueError(
                f"message content must be a string or a list of blocks, got {type(raw).__name__}"
            )
        return cls(role, [block_from_dict(item) for item in raw])

    def char_size(self) -> int:
        """Rough size of the message in characters, used to estimate tokens."""
        total = 0
        for block in self.content:
            if isinstance(block, TextBlock):
                total += len(block.text)
            elif isinstance(block, ToolResultBlock):
                total += len(block.text) + 32
                if not isinstance(block.content, str):  # an image Read returned, say
                    total += IMAGE_CHARS * sum(isinstance(b, ImageBlock) for b in block.content)
            elif isinstance(block, ToolUseBlock):
                total += len(block.name) + len(json.dumps(block.input)) + 32
            elif isinstance(block, ThinkingBlock):
                total += len(block.thinking)
            else:
                total += IMAGE_CHARS
        return total


def block_from_dict(data: dict[str, Any]) -> ContentBlock:
    """Rebuild one content block from its JSON form; raises ``ValueError`` if it is not one."""
    if not isinstance(data, dict):
        raise ValueError(f"a content block must be a JSON object, got {type(data).__name__}")
    try:
        return _block_from_dict(data)
    except KeyError as exc:
        raise ValueError(
            f"{data.get('type')} block is missing its {exc.args[0]!r} field: {data!r:.200}"
        ) from None


def _block_from_dict(data: dict[str, Any]) -> ContentBlock:
    kind = data.get("type")
    if kind == "text":
        return TextBlock(str(data["text"]))
    if kind == "tool_use":
        return ToolUseBlock(
            id=str(data["id"]),
            name=str(data["name"]),
            input=dict(data.get("input") or {}),
            partial_json=data.get("partial_json"),
        )
    if kind == "tool_result":
        raw = data.get("content")
        content: str | list[TextBlock | ImageBlock]
        if raw is None:
            content = ""
        elif isinstance(raw, str):
            content = raw
        elif not isinstance(raw, list):
            raise ValueError(
                f"tool_result content must be a string or a list, got {type(raw).__name__}"
            )
        else:
            content = []
            for item in raw:
                block = block_from_dict(item)
                if not isinstance(block, TextBlock | ImageBlock):
                    raise ValueError(f"a tool_result may hold text and images, not {block.type}")
                content.append(block)
        return ToolResultBlock(str(data["tool_use_id"]), content, bool(data.get("is_error")))
    if kind == "thinking":
        return ThinkingBlock(str(data["thinking"]), data.get("signature"))
    if kind == "image":
        source = data.get("source") or {}
        if source.get("type", "base64") != "base64":
            raise ValueError(f"only base64 image sources are supported, not {source['type']!r}")
        return ImageBlock(str(source["data"]), str(source.get("media_type", "image/png")))
    raise ValueError(
        f"unknown content block type {kind!r}; expected one of: text, thinking, image, "
        "tool_use, tool_result"
    )


def messages_to_json(messages: list[Message]) -> str:
    """Serialise a conversation to a JSON string."""
    return json.dumps([m.to_dict() for m in messages], ensure_ascii=False)


def messages_from_json(text: str) -> list[Message]:
    """Parse a conversation serialised by :func:`messages_to_json`."""
    data = json.loads(text)
    if not isinstance(data, list):
        raise ValueError(
            f"a conversation must be a JSON list of messages, got {type(data).__name__}"
        )
    return [Message.from_dict(item) for item in data]
