"""MCP tool results and content blocks as loopwright tool results.

An MCP ``CallToolResult`` (or the plain dicts an in-process MCP-style function returns) holds
text, images, audio, embedded resources and resource links, optional ``structuredContent``
and ``isError``. The model gets what it can read: text as text, images as
:class:`~loopwright.messages.ImageBlock`, embedded text resources as text headed by their URI,
structured content as JSON text (unless a text block already carries the same JSON, as
servers built on the SDK do, or the result's ``_meta`` marks it as metadata the text leaves
out on purpose, as loopwright's own server does: :data:`STRUCTURED_IS_METADATA`), binary
data it cannot use as a one-line note. The structured value itself stays in the result's
``metadata`` for programs. Works on SDK objects by duck typing (``model_dump``), so
importing this module does not load the MCP SDK.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from loopwright.messages import ImageBlock, TextBlock
from loopwright.tools.base import ToolResult

Block = TextBlock | ImageBlock

#: ``_meta`` key of a tool result whose text is the whole result for a model, and whose
#: ``structuredContent`` is metadata for programs (a tool's row count, files, usage): set by
#: loopwright's MCP server, so a loopwright client does not show the model that JSON too.
STRUCTURED_IS_METADATA = "loopwright/structured-is-metadata"


def to_tool_result(value: Any) -> ToolResult:
    """A loopwright tool result from an MCP result or an MCP-style function's return value.

    Accepted: a string; a list of content blocks (``[{"type": "text", "text": ...}]``, SDK
    content objects, or loopwright blocks); a dict with ``content`` and optionally
    ``is_error``/``isError`` and ``structuredContent``; an SDK ``CallToolResult``.
    """
    if value is None:
        return {"content": "", "is_error": False}
    if isinstance(value, str):
        return {"content": value, "is_error": False}
    value = _plain(value)
    structured: Any = None
    is_error = False
    metadata_only = False
    if isinstance(value, Mapping) and "content" in value:
        content: Any = value["content"]
        is_error = bool(value.get("is_error", value.get("isError", False)))
        structured = value.get("structuredContent", value.get("structured_content"))
        meta = value.get("_meta")
        metadata_only = isinstance(meta, Mapping) and meta.get(STRUCTURED_IS_METADATA) is True
    elif isinstance(value, Mapping) and "type" in value:
        content = [value]
    elif isinstance(value, TextBlock | ImageBlock | list | tuple):
        content = value
    else:
        try:
            content = json.dumps(value, ensure_ascii=False, default=str)
        except (TypeError, ValueError):
            content = repr(value)
    blocks = content_blocks(content)
    if structured is not None and not metadata_only and not _shown(structured, blocks):
        blocks.append(TextBlock(json.dumps(structured, ensure_ascii=False, indent=2)))
    result: ToolResult = {"content": _compact(blocks), "is_error": is_error}
    if is_error and result["content"] == "":
        result["content"] = "The MCP tool reported an error without a message."
    if structured is not None:
        result["metadata"] = {"structured_content": structured}
    return result


def content_blocks(content: Any) -> list[Block]:
    """MCP content (a string, one block or a list of blocks) as loopwright blocks."""
    if content is None:
        return []
    if isinstance(content, str):
        return [TextBlock(content)] if content else []
    if isinstance(content, TextBlock | ImageBlock):
        return [content]
    if isinstance(content, Mapping) or hasattr(content, "model_dump"):
        content = [content]
    blocks: list[Block] = []
    for item in content:
        block = _block(item)
        if block is not None:
            blocks.append(block)
    return blocks


def _plain(value: Any) -> Any:
    """SDK (pydantic) objects as their JSON-shaped dicts, with MCP's camelCase keys."""
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json", by_alias=True, exclude_none=True)
    return value


def _block(item: Any) -> Block | None:
    if isinstance(item, TextBlock | ImageBlock):
        return item
    if isinstance(item, str):
        return TextBlock(item)
    item = _plain(item)
    if not isinstance(item, Mapping):
        return TextBlock(json.dumps(item, ensure_ascii=False, default=str))
    kind = item.get("type")
    if kind == "text":
        return TextBlock(str(item.get("text", "")))
    if kind == "image":
        data = item.get("data")
        if isinstance(data, str) and data:
            return ImageBlock(data, str(_mime(item) or "image/png"))
        return TextBlock("[image without data]")
    if kind == "audio":
        return TextBlock(
            f"[audio ({_mime(item) or 'unknown type'}), {_size(item.get('data'))}: not shown]"
        )
    if kind == "resource":
        return _resource(item.get("resource"))
    if kind == "resource_link":
        details = [str(item[key]) for key in ("name", "description") if item.get(key)]
        mime = _mime(item)
        if mime:
            details.append(mime)
        suffix = f" ({', '.join(details)})" if details else ""
        return TextBlock(f"[resource link: {item.get('uri', '?')}{suffix}]")
    return TextBlock(json.dumps(item, ensure_ascii=False, default=str))


def _resource(resource: Any) -> Block:
    if not isinstance(resource, Mapping):
        return TextBlock("[embedded resource without contents]")
    uri = resource.get("uri", "?")
    mime = _mime(resource)
    if isinstance(resource.get("text"), str):
        return TextBlock(f"[resource {uri}]\n{resource['text']}")
    blob = resource.get("blob")
    if isinstance(blob, str) and mime and mime.startswith("image/"):
        return ImageBlock(blob, mime)
    return TextBlock(
        f"[resource {uri} ({mime or 'binary'}), {_size(blob)} of binary data: not shown]"
    )


def _mime(item: Mapping[str, Any]) -> str | None:
    value = item.get("mimeType", item.get("mime_type"))
    return str(value) if value else None


def _size(data: Any) -> str:
    if not isinstance(data, str):
        return "no data"
    return f"{len(data) * 3 // 4:,} bytes"


def _shown(structured: Any, blocks: list[Block]) -> bool:
    """Whether the text already says what the structured value holds, so adding its JSON
    would only repeat it: a text block parses to the same JSON (what SDK servers send), or
    every value in it appears in the text (``{"result": "hi"}`` next to the text ``hi``)."""
    text = "\n".join(block.text for block in blocks if isinstance(block, TextBlock))
    if not text.strip():
        return False
    for block in blocks:
        if isinstance(block, TextBlock) and block.text.lstrip()[:1] in ("{", "["):
            try:
                if json.loads(block.text) == structured:
                    return True
            except ValueError:
                continue
    leaves = list(_leaves(structured))
    if not leaves or len(leaves) > _MAX_LEAVES:
        return False
    lowered = text.lower()
    return all(leaf.lower() in lowered for leaf in leaves)


_MAX_LEAVES = 200


def _leaves(value: Any) -> Any:
    """The scalar values inside a JSON value, as the text would show them."""
    if isinstance(value, Mapping):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _leaves(item)
    elif isinstance(value, str | int | float):  # bool is an int
        yield str(value)


def _compact(blocks: list[Block]) -> str | list[Block]:
    """Text-only content as one string (what most tools return); a list when images are in."""
    if all(isinstance(block, TextBlock) for block in blocks):
        return "\n".join(block.text for block in blocks if isinstance(block, TextBlock))
    return blocks


__all__ = ["STRUCTURED_IS_METADATA", "content_blocks", "to_tool_result"]
