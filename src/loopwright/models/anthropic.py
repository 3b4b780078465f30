"""Claude models through the official ``anthropic`` SDK (the Messages API, streamed).

:class:`AnthropicModel` translates loopwright messages into Messages API requests and the
streamed answer back into :class:`~loopwright.events.TextDelta` /
:class:`~loopwright.models.base.ThinkingDelta` events and one
:class:`~loopwright.models.base.ModelResponse`.

What it takes care of:

- **Prompt caching** (on by default): ``cache_control`` breakpoints on the last tool, the
  system prompt, the last block of the conversation and the last block of the previous user
  turn (at most four, the API's limit), so each call of a long agent run re-reads the prefix
  the previous call wrote. Cache reads and writes are reported in the usage.
- **Thinking** (``thinking=<budget tokens>``): thinking blocks are kept in the history with
  their signatures and sent back, as the API requires during tool use. A redacted thinking
  block is kept as a :class:`~loopwright.messages.ThinkingBlock` with empty text whose
  ``signature`` is :data:`REDACTED_THINKING_PREFIX` followed by the block's ``data``.
- **Images** over the API's limits (5 MB of base64, 8000 pixels a side for a PNG) are sent
  as a note saying so: the API would refuse the request, and every later one of the session
  whose history holds the image.
- **Errors** become :class:`~loopwright.models.base.ModelError` with ``retryable``,
  ``status_code`` and ``retry_after`` set, for the retry layer. The SDK's own retries are
  switched off (``max_retries=0``) so a failure is retried in one place only.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import json
import os
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

try:
    import anthropic
    import httpx2
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "The Anthropic provider needs the anthropic package; install it with "
        "`pip install 'loopwright[anthropic]'`."
    ) from exc

from loopwright.events import TextDelta, Usage
from loopwright.messages import (
    ContentBlock,
    ImageBlock,
    Message,
    TextBlock,
    ThinkingBlock,
    ToolResultBlock,
    ToolUseBlock,
)
from loopwright.models.base import (
    Model,
    ModelError,
    ModelEvent,
    ModelRequest,
    ModelResponse,
    Pricing,
    ThinkingDelta,
)
from loopwright.models.loop_client import PerLoopClient
from loopwright.models.pricing import price_for

__all__ = [
    "ANTHROPIC_API_VERSION",
    "CONTEXT_WINDOWS",
    "DEFAULT_CONTEXT_WINDOW",
    "DEFAULT_MODEL",
    "LEGACY_API_VERSION",
    "MAX_CACHE_BREAKPOINTS",
    "MAX_IMAGE_BASE64_CHARS",
    "MAX_IMAGE_SIDE",
    "REDACTED_THINKING_PREFIX",
    "AnthropicModel",
    "context_window_for",
]

#: The current Sonnet (claude-sonnet-4-5 is deprecated and retires on 2026-11-30).
DEFAULT_MODEL = "claude-sonnet-5-5"
#: The API version this provider is written for, sent as ``anthropic-version`` (also what
#: the ``anthropic`` 2.x SDK sends by default).
ANTHROPIC_API_VERSION = "2026-10-21"
#: The API version before 2026-10-21: the last one that takes ``temperature``.
LEGACY_API_VERSION = "2023-06-01"
_LEGACY_PARAMS = ("temperature",)
DEFAULT_CONTEXT_WINDOW = 200_000

#: Context windows (prompt tokens) of current Claude models, from each model's page on
#: platform.claude.com/docs/en/models (checked 2026-11). Dated snapshot ids
#: (``claude-sonnet-4-5-20250929``) match their family by prefix; unknown models get
#: :data:`DEFAULT_CONTEXT_WINDOW`. Pass ``context_window=`` for anything else (for example
#: Sonnet 4.5 with the 1M-context beta header).
CONTEXT_WINDOWS: Mapping[str, int] = MappingProxyType(
    {
        "claude-fable-5-1": 1_000_000,
        "claude-opus-5-5": 1_000_000,
        "claude-sonnet-5-5": 1_000_000,
        "claude-opus-5": 1_000_000,
        "claude-sonnet-5": 1_000_000,
        "claude-opus-4-8": 1_000_000,
        "claude-opus-4-6": 1_000_000,
        "claude-sonnet-4-6": 1_000_000,
        "claude-opus-4-5": 200_000,
        "claude-sonnet-4-5": 200_000,
        "claude-haiku-4-5": 200_000,
        "claude-opus-4-1": 200_000,
        "claude-sonnet-4": 200_000,
        "claude-opus-4": 200_000,
    }
)

#: The most ``cache_control`` breakpoints one request may carry.
MAX_CACHE_BREAKPOINTS = 4

#: ``ThinkingBlock.signature`` prefix that marks a redacted thinking block (its ``data`` follows).
REDACTED_THINKING_PREFIX = "redacted_thinking:"

_EPHEMERAL: dict[str, str] = {"type": "ephemeral"}
#: The Messages API's limits on one image: 5 MB of base64 text, 8000 pixels a side. An
#: image over them is refused with a 400 for the whole request, and, as it stays in the
#: history, for every later request of the session.
MAX_IMAGE_BASE64_CHARS = 5 * 1024 * 1024
MAX_IMAGE_SIDE = 8000
_MIN_THINKING_BUDGET = 1024
#: Error types the API sends inside a stream (after a 200) mapped to their HTTP status.
_STATUS_OF_ERROR_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
#: Stop reasons passed on as loopwright's; the API's ``model_context_window_exceeded`` cuts
#: the answer like ``max_tokens`` does.
_STOP_REASONS = {"model_context_window_exceeded": "max_tokens"}


def context_window_for(model: str) -> int:
    """The context window of a Claude model id (longest known prefix, else 200K tokens)."""
    name = model.strip().lower().removeprefix("anthropic:")
    best = ""
    for family in CONTEXT_WINDOWS:
        if (name == family or name.startswith(family + "-")) and len(family) > len(best):
            best = family
    return CONTEXT_WINDOWS[best] if best else DEFAULT_CONTEXT_WINDOW


class AnthropicModel(Model):
    """A Claude model on the Anthropic Messages API, streamed through the official SDK.

    ``api_key`` defaults to ``ANTHROPIC_API_KEY``; ``base_url`` to the SDK's default (which
    honours ``ANTHROPIC_BASE_URL``). ``thinking`` enables extended thinking with that many
    budget tokens (added on top of the request's ``max_tokens``), or ``"adaptive"`` to let
    the model decide. ``max_tokens`` overrides the request's output limit. ``structured_output``
    says how ``ModelRequest.response_format`` is enforced: ``"native"`` uses the API's
    ``output_config.format`` (JSON outputs; tools stay available), ``"prompt"`` asks for it in
    the system prompt, for models without JSON outputs. ``timeout`` is in seconds.
    ``http_client`` must be an ``httpx2.AsyncClient`` (the SDK's HTTP library); it is left open
    by :meth:`aclose`.

    ``api_version`` is the ``anthropic-version`` header (default :data:`ANTHROPIC_API_VERSION`).
    API version 2026-10-21 has no sampling parameters, so ``ModelRequest.temperature`` is only
    sent with ``api_version="2023-06-01"`` (and never with thinking, which requires the
    default temperature).
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        http_client: httpx2.AsyncClient | None = None,
        max_tokens: int | None = None,
        thinking: int | Literal["adaptive"] | None = None,
        prompt_caching: bool = True,
        structured_output: Literal["native", "prompt"] = "native",
        timeout: float = 600.0,
        context_window: int | None = None,
        pricing: Pricing | None = None,
        api_version: str | None = None,
        default_headers: Mapping[str, str] | None = None,
    ) -> None:
        if not model.strip():
            raise ValueError(f"AnthropicModel needs a model id, e.g. {DEFAULT_MODEL!r}.")
        key = api_key if api_key is not None else os.environ.get("ANTHROPIC_API_KEY")
        if not key:
            raise ModelError(
                "No Anthropic API key found: set the ANTHROPIC_API_KEY environment variable "
                "(or pass api_key= to AnthropicModel)."
            )
        if isinstance(thinking, int) and thinking < _MIN_THINKING_BUDGET:
            raise ValueError(
                f"thinking budget must be at least {_MIN_THINKING_BUDGET:,} tokens (the API's "
                f"minimum), got {thinking:,}."
            )
        if timeout <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}.")
        self.model = model
        self.name = f"anthropic:{model}"
        self.max_tokens = max_tokens
        self.thinking = thinking
        self.prompt_caching = prompt_caching
        self.structured_output = structured_output
        self.timeout = timeout
        self.context_window = context_window or context_window_for(model)
        self.pricing = pricing if pricing is not None else price_for(model)
        self.api_version = api_version or ANTHROPIC_API_VERSION
        headers = {**(default_headers or {}), "anthropic-version": self.api_version}
        options: dict[str, Any] = {
            "api_key": key,
            "base_url": base_url,
            "timeout": anthropic.Timeout(timeout, connect=min(timeout, 10.0)),
            "max_retries": 0,
            "default_headers": headers,
        }
        self._clients = PerLoopClient(
            anthropic.AsyncAnthropic(http_client=http_client, **options),
            (lambda: anthropic.AsyncAnthropic(**options)) if http_client is None else None,
        )

    @property
    def base_url(self) -> str:
        """Where requests go (``https://api.anthropic.com`` unless configured otherwise)."""
        return str(self._clients.client.base_url).rstrip("/")

    # --- the request ----------------------------------------------------------------

    def request_params(self, request: ModelRequest) -> dict[str, Any]:
        """The Messages API parameters (the JSON body, less ``stream``) for ``request``."""
        thinking_on = self.thinking is not None
        params: dict[str, Any] = {
            "model": self.model,
            "max_tokens": self.max_tokens or request.max_tokens,
            "messages": _api_messages(request.messages),
        }
        if not params["messages"]:
            raise ModelError(
                "The request has no message with content to send; start the conversation "
                "with a user message."
            )
        if isinstance(self.thinking, int):
            params["thinking"] = {"type": "enabled", "budget_tokens": self.thinking}
            params["max_tokens"] += self.thinking
        elif self.thinking == "adaptive":
            params["thinking"] = {"type": "adaptive"}
        elif self.api_version == LEGACY_API_VERSION:  # later versions have no temperature
            params["temperature"] = request.temperature

        system = request.system
        if request.response_format is not None:
            schema = _json_schema_of(request.response_format)
            if self.structured_output == "native":
                params["output_config"] = {"format": _output_format(schema)}
            else:
                instruction = (
                    "When you give your final answer (not a tool call), reply with only a JSON "
                    f"value that follows this JSON schema: {json.dumps(schema)}"
                )
                system = f"{system}\n\n{instruction}" if system else instruction

        tools = [_api_tool(schema) for schema in request.tools]
        if tools:
            params["tools"] = tools
            choice = _tool_choice(request.tool_choice)
            if choice is not None:
                if thinking_on and choice["type"] in ("any", "tool"):
                    raise ModelError(
                        "Claude cannot be forced to call a tool while thinking is enabled; "
                        "use tool_choice='auto' or create the model without thinking=."
                    )
                params["tool_choice"] = choice
        # the API refuses a stop sequence of whitespace alone ("\n"): 400 for the request
        stops = [stop for stop in request.stop if stop.strip()]
        if stops:
            params["stop_sequences"] = stops
        user_id = request.metadata.get("user_id")
        if isinstance(user_id, str) and user_id:
            params["metadata"] = {"user_id": user_id}

        if self.prompt_caching:
            if system:
                params["system"] = [{"type": "text", "text": system, "cache_control": _EPHEMERAL}]
            _place_cache_breakpoints(params)
        elif system:
            params["system"] = system
        return params

    # --- the answer -------------------------------------------------------------------

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        """Stream Claude's turn: text and thinking deltas, then the whole message and usage.

        Closing the stream early (or cancelling its task) closes the HTTP response.
        """
        params = self.request_params(request)
        client = self._clients.for_this_loop()
        # parameters of older API versions that the SDK no longer names go in the raw body
        extra = {k: params.pop(k) for k in _LEGACY_PARAMS if k in params}
        try:
            events = await client.messages.create(**params, stream=True, extra_body=extra or None)
        except anthropic.APIError as exc:
            raise self._model_error(exc) from exc
        turn = _TurnAssembler()
        try:
            async for event in events:
                for out in turn.feed(event):
                    yield out
        except (anthropic.APIError, httpx2.HTTPError, json.JSONDecodeError) as exc:
            raise self._model_error(exc) from exc
        finally:
            await events.close()
        if not turn.finished:
            raise ModelError(
                "The Anthropic stream ended before the answer was complete; try again.",
                retryable=True,
            )
        response = turn.response()
        if self.pricing is not None:
            response.usage.cost_usd = self.pricing.cost(response.usage)
        yield response

    async def aclose(self) -> None:
        """Close the SDK's HTTP client (one passed in as ``http_client`` is left open)."""
        await self._clients.aclose()

    # --- errors -----------------------------------------------------------------------

    def _model_error(self, exc: Exception) -> ModelError:
        """One actionable :class:`ModelError` for whatever the SDK or the transport raised."""
        if isinstance(exc, anthropic.APIStatusError):
            return self._status_error(exc)
        if isinstance(exc, anthropic.APITimeoutError | httpx2.TimeoutException):
            return ModelError(
                f"The Anthropic API did not answer within the {self.timeout:g}s timeout; try "
                "again, or give AnthropicModel a larger timeout=.",
                retryable=True,
            )
        if isinstance(exc, anthropic.APIConnectionError):
            cause = exc.__cause__ or exc
            return ModelError(
                f"Could not reach the Anthropic API at {self.base_url} ({_describe(cause)}); "
                "check the network and base_url, then try again.",
                retryable=True,
            )
        if isinstance(exc, httpx2.TransportError):
            return ModelError(
                "The connection to the Anthropic API broke off in the middle of the answer "
                f"({_describe(exc)}); try again.",
                retryable=True,
            )
        if isinstance(exc, json.JSONDecodeError):
            return ModelError(
                f"The Anthropic API sent a malformed stream event ({exc.msg}); try again.",
                retryable=True,
            )
        return ModelError(f"The Anthropic SDK failed: {_describe(exc)}.")

    def _status_error(self, exc: anthropic.APIStatusError) -> ModelError:
        status = exc.status_code
        kind = str(exc.type) if exc.type else ""
        if status < 400:  # an error event inside a 200 stream: its type says what happened
            status = _STATUS_OF_ERROR_TYPE.get(kind, 500)
        detail = exc.api_message or _body_message(exc.body) or str(exc)
        label = f"{status} {kind}".strip()
        retryable = status in (408, 409, 429) or status >= 500
        should_retry = exc.response.headers.get("x-should-retry")
        if should_retry in ("true", "false"):
            retryable = should_retry == "true"
        retry_after = _retry_after(exc.response.headers)
        if status == 401:
            text = f"Anthropic rejected the API key ({label}: {detail}); check ANTHROPIC_API_KEY."
        elif status == 403:
            text = f"The API key may not do this ({label}: {detail}); check its permissions."
        elif status == 404:
            text = (
                f"Anthropic did not find it ({label}: {detail}); check the model id {self.model!r}."
            )
        elif status == 413:
            text = (
                f"The request is too large for the Anthropic API ({label}: {detail}); shorten it."
            )
        elif status == 429:
            wait = f"retry after {retry_after:g}s" if retry_after is not None else "retry later"
            text = f"Anthropic rate limit reached ({label}: {detail}); {wait}."
        elif status == 529:
            text = f"The Anthropic API is overloaded ({label}: {detail}); retry later."
        elif status >= 500:
            text = f"The Anthropic API failed ({label}: {detail}); retry later."
        else:
            text = f"The Anthropic API rejected the request ({label}: {detail})."
        return ModelError(text, retryable=retryable, status_code=status, retry_after=retry_after)


# --- translating the conversation ------------------------------------------------------


def _api_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """API messages: blocks translated, empty messages dropped, same-role neighbours merged."""
    out: list[dict[str, Any]] = []
    for message in messages:
        blocks = [api for api in map(_api_block, message.content) if api is not None]
        if not blocks:
            continue
        if out and out[-1]["role"] == message.role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": message.role, "content": blocks})
    for message_param in out:
        if message_param["role"] == "user":  # the API wants tool results before any text
            message_param["content"].sort(key=lambda b: b["type"] != "tool_result")
    return out


def _api_block(block: ContentBlock) -> dict[str, Any] | None:
    """The API form of one block, or ``None`` for a block the API would reject."""
    if isinstance(block, TextBlock):
        return {"type": "text", "text": block.text} if block.text.strip() else None
    if isinstance(block, ImageBlock):
        refused = _image_over_limits(block)
        if refused is not None:
            return {"type": "text", "text": f"[image not sent: {refused}]"}
        return block.to_dict()
    if isinstance(block, ToolUseBlock):
        # a call cut off mid-arguments was answered with an error result; its input is empty
        return {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
    if isinstance(block, ToolResultBlock):
        result: dict[str, Any] = {"type": "tool_result", "tool_use_id": block.tool_use_id}
        if isinstance(block.content, str):
            if block.content:
                result["content"] = block.content
        else:
            parts = [p for p in map(_api_block, block.content) if p is not None]
            if parts:
                result["content"] = parts
        if block.is_error:
            result["is_error"] = True
        return result
    if isinstance(block, ThinkingBlock):
        if block.signature is None:  # not Claude's (another provider's reasoning): unverifiable
            return None
        if block.signature.startswith(REDACTED_THINKING_PREFIX):
            return {
                "type": "redacted_thinking",
                "data": block.signature.removeprefix(REDACTED_THINKING_PREFIX),
            }
        return {"type": "thinking", "thinking": block.thinking, "signature": block.signature}
    return None  # pragma: no cover - every block type is handled above


def _image_over_limits(block: ImageBlock) -> str | None:
    """Why the API would refuse this image (too large, or a PNG too wide or tall), or
    ``None``."""
    if len(block.data) > MAX_IMAGE_BASE64_CHARS:
        return (
            f"{len(block.data):,} bytes as base64, over the Anthropic API's limit of "
            f"{MAX_IMAGE_BASE64_CHARS:,} per image; save it smaller (fewer pixels, a lower dpi)"
        )
    size = _png_size(block.data)
    if size is not None and max(size) > MAX_IMAGE_SIDE:
        return (
            f"{size[0]:,}x{size[1]:,} pixels, over the Anthropic API's limit of "
            f"{MAX_IMAGE_SIDE:,} a side; save it smaller (fewer pixels, a lower dpi)"
        )
    return None


def _png_size(data: str) -> tuple[int, int] | None:
    """Width and height from a base64 PNG's header, or ``None`` if it is not a PNG."""
    try:
        head = base64.b64decode(data[:32])
    except (binascii.Error, ValueError):
        return None
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def _api_tool(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A tool definition as the API takes it (a copy: the registry's schema is not touched)."""
    if "name" not in schema:
        raise ModelError(f"A tool schema has no 'name'; got keys {sorted(schema)}.")
    tool: dict[str, Any] = {
        "name": schema["name"],
        "input_schema": schema.get("input_schema") or {"type": "object", "properties": {}},
    }
    if schema.get("description"):
        tool["description"] = schema["description"]
    for key in ("strict", "input_examples"):
        if key in schema:
            tool[key] = schema[key]
    return tool


def _tool_choice(choice: str | dict[str, Any] | None) -> dict[str, Any] | None:
    if choice is None:
        return None
    if isinstance(choice, dict):
        name = choice.get("name")
        if not name:
            raise ModelError(f"tool_choice must name the tool to force, got {choice!r}.")
        return {"type": "tool", "name": name}
    mapped = {"auto": "auto", "any": "any", "required": "any", "none": "none"}.get(choice)
    if mapped is None:
        raise ModelError(
            f"Unknown tool_choice {choice!r}; use 'auto', 'any', 'none' or {{'name': <tool>}}."
        )
    return {"type": mapped}


def _json_schema_of(response_format: dict[str, Any]) -> dict[str, Any]:
    """The schema inside a response format (a bare schema, or OpenAI's json_schema wrapper)."""
    inner = response_format.get("json_schema")
    if isinstance(inner, dict) and isinstance(inner.get("schema"), dict):
        return dict(inner["schema"])
    if response_format.get("type") == "json_schema" and isinstance(
        response_format.get("schema"), dict
    ):
        return dict(response_format["schema"])
    return response_format


def _output_format(schema: dict[str, Any]) -> dict[str, Any]:
    try:
        strict = anthropic.transform_schema(schema)
    except (ValueError, TypeError) as exc:
        raise ModelError(
            f"The response format is not a JSON schema Claude's JSON outputs accept ({exc}); "
            "simplify it or use structured_output='prompt'."
        ) from exc
    return {"type": "json_schema", "schema": strict}


def _place_cache_breakpoints(params: dict[str, Any]) -> None:
    """Mark the last tool, the conversation's end and the previous user turn as cache points.

    The system prompt (if any) was marked already. Together the marks let every call read
    the tools, the system prompt and the conversation so far from the cache the previous
    call wrote, and write the new prefix for the next one.
    """
    budget = MAX_CACHE_BREAKPOINTS - (1 if "system" in params else 0)
    tools = params.get("tools")
    if tools:
        tools[-1]["cache_control"] = _EPHEMERAL
        budget -= 1
    messages: list[dict[str, Any]] = params["messages"]
    last = len(messages) - 1
    previous_user = next(
        (i for i in range(last - 1, -1, -1) if messages[i]["role"] == "user"), None
    )
    for index in (last, previous_user):
        if index is None or budget <= 0:
            continue
        block = _last_cacheable(messages[index]["content"])
        if block is not None:
            block["cache_control"] = _EPHEMERAL
            budget -= 1


def _last_cacheable(content: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The last block that may carry ``cache_control`` (thinking blocks may not)."""
    for index in range(len(content) - 1, -1, -1):
        if content[index]["type"] not in ("thinking", "redacted_thinking"):
            return content[index]
    return None


# --- assembling the streamed answer ----------------------------------------------------


@dataclass(slots=True)
class _PartialBlock:
    kind: str
    parts: list[str] = field(default_factory=list)
    signature: str | None = None
    tool_id: str = ""
    tool_name: str = ""
    start_input: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class _TurnAssembler:
    """Builds the assistant message from the stream's events, yielding deltas on the way."""

    blocks: dict[int, _PartialBlock] = field(default_factory=dict)
    usage: Usage = field(default_factory=lambda: Usage(model_calls=1))
    stop_reason: str | None = None
    finished: bool = False

    def feed(self, event: Any) -> list[TextDelta | ThinkingDelta]:
        kind = getattr(event, "type", None)
        if kind == "content_block_delta":
            return self._delta(event.index, event.delta)
        if kind == "content_block_start":
            return self._start(event.index, event.content_block)
        if kind == "message_start":
            self._take_usage(event.message.usage)
        elif kind == "message_delta":
            if event.delta.stop_reason is not None:
                self.stop_reason = str(event.delta.stop_reason)
            self._take_usage(event.usage)
        elif kind == "message_stop":
            self.finished = True
        return []

    def _start(self, index: int, block: Any) -> list[TextDelta | ThinkingDelta]:
        # the SDK builds stream events without validating them: read fields defensively
        kind = str(getattr(block, "type", ""))
        partial = _PartialBlock(kind)
        self.blocks[index] = partial
        if kind == "text":
            text = getattr(block, "text", None) or ""
            if text:
                partial.parts.append(text)
                return [TextDelta(text)]
        elif kind == "thinking":
            partial.signature = getattr(block, "signature", None) or None
            thinking = getattr(block, "thinking", None) or ""
            if thinking:
                partial.parts.append(thinking)
                return [ThinkingDelta(thinking)]
        elif kind == "redacted_thinking":
            partial.signature = REDACTED_THINKING_PREFIX + str(getattr(block, "data", ""))
        elif kind == "tool_use":
            partial.tool_id = str(getattr(block, "id", ""))
            partial.tool_name = str(getattr(block, "name", ""))
            start_input = getattr(block, "input", None)
            if isinstance(start_input, dict):
                partial.start_input = dict(start_input)
        return []

    def _delta(self, index: int, delta: Any) -> list[TextDelta | ThinkingDelta]:
        partial = self.blocks.get(index)
        if partial is None:  # a delta without its start: the stream is broken
            raise ModelError(
                f"The Anthropic stream sent a delta for block {index} before starting it; "
                "try again.",
                retryable=True,
            )
        kind = delta.type
        if kind == "text_delta":
            partial.parts.append(delta.text)
            return [TextDelta(delta.text)] if delta.text else []
        if kind == "thinking_delta":
            partial.parts.append(delta.thinking)
            return [ThinkingDelta(delta.thinking)] if delta.thinking else []
        if kind == "signature_delta":
            partial.signature = (partial.signature or "") + delta.signature
        elif kind == "input_json_delta":
            partial.parts.append(delta.partial_json)
        return []

    def _take_usage(self, usage: Any) -> None:
        if usage is None:
            return
        if getattr(usage, "input_tokens", None) is not None:
            self.usage.input_tokens = usage.input_tokens
        if getattr(usage, "output_tokens", None) is not None:
            self.usage.output_tokens = usage.output_tokens
        if getattr(usage, "cache_read_input_tokens", None) is not None:
            self.usage.cache_read_tokens = usage.cache_read_input_tokens
        if getattr(usage, "cache_creation_input_tokens", None) is not None:
            self.usage.cache_write_tokens = usage.cache_creation_input_tokens

    def response(self) -> ModelResponse:
        content: list[ContentBlock] = []
        for index in sorted(self.blocks):
            block = self._finish_block(self.blocks[index])
            if block is not None:
                content.append(block)
        has_calls = any(isinstance(b, ToolUseBlock) for b in content)
        stop = self.stop_reason or ("tool_use" if has_calls else "end_turn")
        return ModelResponse(
            Message("assistant", content), _STOP_REASONS.get(stop, stop), self.usage
        )

    @staticmethod
    def _finish_block(partial: _PartialBlock) -> ContentBlock | None:
        text = "".join(partial.parts)
        if partial.kind == "text":
            return TextBlock(text) if text else None
        if partial.kind == "thinking":
            return ThinkingBlock(text, partial.signature)
        if partial.kind == "redacted_thinking":
            return ThinkingBlock("", partial.signature)
        if partial.kind == "tool_use":
            if not text.strip():
                return ToolUseBlock(partial.tool_id, partial.tool_name, partial.start_input)
            try:
                arguments = json.loads(text)
            except json.JSONDecodeError:
                arguments = None
            if not isinstance(arguments, dict):  # cut off by max_tokens, or not an object
                return ToolUseBlock(partial.tool_id, partial.tool_name, {}, partial_json=text)
            return ToolUseBlock(partial.tool_id, partial.tool_name, arguments)
        return None  # server-tool blocks and other kinds this provider does not request


# --- small helpers -------------------------------------------------------------------


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from ``retry-after-ms`` / ``retry-after`` (seconds or an HTTP date)."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _body_message(body: object) -> str | None:
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
    return body if isinstance(body, str) and body else None


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
