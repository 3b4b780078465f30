"""OpenAI, and any OpenAI-compatible server, through the Chat Completions API.

:class:`OpenAIModel` drives the official ``openai`` SDK (async client, streaming). Without a
``base_url`` it talks to api.openai.com and needs ``OPENAI_API_KEY``; with one it talks to any
server that speaks the same protocol (Ollama ``http://127.0.0.1:11434/v1``, vLLM, the
llama.cpp server, LM Studio), and a key is optional.

What the translation does, in both directions:

* the system prompt is the first ``system`` message; user text and images (as ``data:`` URLs)
  become ``user`` messages; assistant text and tool calls become one ``assistant`` message
  whose ``tool_calls`` carry the arguments as JSON strings; each tool result becomes a
  ``tool`` message with its ``tool_call_id`` (text only: images a tool returned follow in a
  ``user`` message); thinking blocks are not sent (Chat Completions has no place for them);
  consecutive messages of the same role are merged, for servers whose chat templates need
  strict alternation;
* tool schemas become ``{"type": "function", "function": {...}}``; ``tool_choice`` maps to
  ``auto``/``required``/``none``/a named function; a ``response_format`` schema is sent as
  ``json_schema`` *together with* the tools, so structured output never disables tool calls;
* the streamed answer is yielded as :class:`~loopwright.events.TextDelta` pieces, tool-call
  arguments are assembled from their deltas (arguments that are not a JSON object give a
  ``ToolUseBlock`` with ``partial_json`` set and an empty input), and usage is normalised
  (``input_tokens`` excludes cached prompt tokens, which are ``cache_read_tokens``).

A model that rejects images (o3-mini, a text-only model on a compatible server: a chart the
agent read with ``Read``, say) gets the request again with a note in place of each image,
and so from then on (see :data:`IMAGE_NOT_SENT`); otherwise every later turn of the session
would fail too.

Reasoning models (the o-series, GPT-5 and later) get no ``temperature`` and no ``stop``,
which they reject, and get ``max_completion_tokens``. api.openai.com gets
``max_completion_tokens`` for every model; other servers get ``max_tokens``, which all of
them understand (override with ``max_tokens_param``).

The SDK's own retries are off (``max_retries=0``): every failure surfaces once as a
:class:`~loopwright.models.base.ModelError` saying whether a retry may help
(``retryable``), with the HTTP ``status_code`` and the ``retry_after`` the server asked for,
and the retry layer decides what to do.
"""

from __future__ import annotations

import email.utils
import json
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, cast

try:
    import openai
    from openai.types.chat import ChatCompletionChunk
    from openai.types.chat.chat_completion_chunk import ChoiceDeltaToolCall
    from openai.types.completion_usage import CompletionUsage
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "The OpenAI provider needs the openai package: install it with "
        "`pip install 'loopwright[openai]'`."
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

if TYPE_CHECKING:
    import httpx
    import httpx2

__all__ = [
    "DEFAULT_CONTEXT_WINDOW",
    "IMAGE_NOT_SENT",
    "OPENAI_BASE_URL",
    "OpenAIModel",
    "context_window_for",
    "is_open_reasoning_model",
    "is_reasoning_model",
    "to_chat_messages",
    "to_chat_tool",
    "usage_from_openai",
]

OPENAI_BASE_URL = "https://api.openai.com/v1"
#: Sent as the API key to OpenAI-compatible servers that need none (the SDK requires one).
PLACEHOLDER_API_KEY = "sk-no-key-required"
#: Context window assumed for a model missing from the table (and for unknown local models).
DEFAULT_CONTEXT_WINDOW = 128_000

TokenLimitParam: TypeAlias = Literal["max_tokens", "max_completion_tokens"]
ChatMessage: TypeAlias = dict[str, Any]

# Prompt sizes (tokens) of current OpenAI models; the first pattern that matches wins.
# GPT-5 models have a 400K window of which 128K are reserved for output: 272K of prompt.
_CONTEXT_WINDOWS: tuple[tuple[re.Pattern[str], int], ...] = tuple(
    (re.compile(pattern), size)
    for pattern, size in (
        (r"^gpt-5(\.\d+)?-chat", 128_000),
        (r"^gpt-5(\.\d+)?(-|$)", 272_000),
        (r"^gpt-4\.1(-|$)", 1_047_576),
        (r"^(gpt-4o|chatgpt-4o)(-|$)", 128_000),
        (r"^gpt-4-(turbo|\d{4}-preview|vision)", 128_000),
        (r"^gpt-4-32k", 32_768),
        (r"^gpt-4(-|$)", 8_192),
        (r"^gpt-3\.5-turbo", 16_385),
        (r"^o1-(mini|preview)", 128_000),
        (r"^o\d+(-|$)", 200_000),
        (r"^codex-mini", 200_000),
    )
)
_REASONING_MODEL = re.compile(r"^(o\d+|gpt-([5-9]|\d{2,})(\.\d+)?|codex-mini)(-|$)")
#: Open reasoning models as OpenAI-compatible servers name them (Ollama ``qwen3:8b``, vLLM
#: ``Qwen/QwQ-32B``, a llama.cpp server's ``DeepSeek-R1-Distill-Qwen-1.5B-Q4_K_M.gguf``,
#: DeepSeek's API ``deepseek-reasoner``); Qwen3 but for its instruct (``-Instruct-2507``),
#: coder, embedding and reranker models, which do not think first.
_OPEN_REASONING_MODEL = re.compile(
    r"(?<![a-z0-9])(qwen3|qwq|deepseek-r1|deepseek-reasoner|gpt-oss"
    r"|phi-?4(-mini)?(-flash)?-reasoning|magistral)(?![a-z0-9])"
)
_NOT_THINKING_QWEN3 = re.compile(r"instruct|coder|embedding|reranker")
_MAX_DETAIL = 500
#: What a server says when its model takes no images: OpenAI for o3-mini ("image_url is only
#: supported by certain models"), llama.cpp ("image input is not supported", "Unsupported
#: content part type: image_url"), vLLM ("not a multimodal model"), LM Studio ("does not
#: support images")...
_NO_IMAGES = re.compile(r"image|multi-?modal|vision|mmproj", re.IGNORECASE)
#: Sent in place of an image to a server whose model does not accept images.
IMAGE_NOT_SENT = "[image not sent: this model does not accept images]"
_TOOL_NAME_SAFE = re.compile(r"[^A-Za-z0-9_-]")

_STOP_REASONS = {
    "stop": "end_turn",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "length": "max_tokens",
    "content_filter": "refusal",
}


def _bare_model_name(model: str) -> str:
    """``openai/gpt-4.1`` or ``OpenAI:GPT-4.1`` -> ``gpt-4.1``."""
    name = model.strip().lower()
    for separator in (":", "/"):
        name = name.rsplit(separator, 1)[-1]
    return name


def is_reasoning_model(model: str) -> bool:
    """Whether ``model`` is an OpenAI reasoning model (o-series, GPT-5 and later, not the
    ``-chat`` variants): they reject ``temperature`` and ``stop`` and need
    ``max_completion_tokens``."""
    name = _bare_model_name(model)
    return bool(_REASONING_MODEL.match(name)) and "-chat" not in name


def is_open_reasoning_model(model: str) -> bool:
    """Whether ``model`` names an open reasoning model, as an OpenAI-compatible server serves
    it: Qwen3, QwQ, DeepSeek-R1 and its distills, gpt-oss, Phi-4-reasoning, Magistral. They
    think before they answer, and the thinking counts against the turn's output limit
    (``max_tokens``). Unlike :func:`is_reasoning_model` this changes nothing in the request:
    they take ``temperature``, ``stop`` and ``max_tokens`` as other models do."""
    name = model.strip().lower()
    found = _OPEN_REASONING_MODEL.search(name)
    if found is None:
        return False
    return found[1] != "qwen3" or _NOT_THINKING_QWEN3.search(name) is None


def context_window_for(model: str) -> int:
    """The prompt size (tokens) of an OpenAI model, or :data:`DEFAULT_CONTEXT_WINDOW`."""
    name = _bare_model_name(model)
    for pattern, size in _CONTEXT_WINDOWS:
        if pattern.match(name):
            return size
    return DEFAULT_CONTEXT_WINDOW


def _is_openai_host(base_url: str | None) -> bool:
    if base_url is None:
        return True
    host = base_url.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0].lower()
    return host == "api.openai.com"


class OpenAIModel(Model):
    """An OpenAI model, or a model behind any OpenAI-compatible server, via Chat Completions.

    ``model`` is the model name the server knows (``gpt-4.1``, ``o4-mini``, ``qwen3:8b`` on
    Ollama...). ``base_url`` points at an OpenAI-compatible server (default: api.openai.com,
    or ``OPENAI_BASE_URL`` if set). ``api_key`` defaults to ``OPENAI_API_KEY``; it is
    required for api.openai.com and optional elsewhere. ``http_client`` lets you bring an
    ``httpx``/``httpx2`` ``AsyncClient`` (proxies, custom TLS); you then own and close it.
    ``timeout`` bounds each request (connect, and every read of the stream). ``context_window``
    overrides the built-in table (set it for local models: the default is 128K tokens).
    ``pricing`` defaults to the price table of :mod:`loopwright.models.pricing`.
    ``reasoning_effort`` (``low``, ``medium``, ``high``...) is sent to reasoning models.
    ``max_tokens_param`` forces the name of the output-limit parameter.
    """

    def __init__(
        self,
        model: str = "gpt-4.1",
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        http_client: httpx.AsyncClient | httpx2.AsyncClient | None = None,
        timeout: float = 600.0,
        context_window: int | None = None,
        pricing: Pricing | None = None,
        reasoning_effort: str | None = None,
        max_tokens_param: TokenLimitParam | None = None,
        default_headers: Mapping[str, str] | None = None,
    ) -> None:
        if not model or not model.strip():
            raise ModelError("OpenAIModel needs a model name, for example OpenAIModel('gpt-4.1').")
        base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        self.base_url: str | None = base_url.rstrip("/") if base_url else None
        official = _is_openai_host(self.base_url)
        key = api_key or os.environ.get("OPENAI_API_KEY") or None
        if key is None:
            if official:
                raise ModelError(
                    "OPENAI_API_KEY is not set: set it to your OpenAI API key (or pass "
                    "api_key=..., or base_url=... for an OpenAI-compatible server)."
                )
            key = PLACEHOLDER_API_KEY
        self.model = model.strip()
        self.name = f"openai:{self.model}" + (f"@{self.base_url}" if self.base_url else "")
        self.context_window = context_window or context_window_for(self.model)
        if pricing is None:
            from loopwright.models.pricing import price_for

            pricing = price_for(self.name)
        self.pricing = pricing
        self.timeout = timeout
        self.reasoning_effort = reasoning_effort
        self.reasoning = is_reasoning_model(self.model)
        self.max_tokens_param: TokenLimitParam = max_tokens_param or (
            "max_completion_tokens" if official or self.reasoning else "max_tokens"
        )
        self._official = official
        #: False once a compatible server rejected ``response_format: json_schema``
        self._json_schema_format = True
        #: False once the server refused an image (a model that takes none)
        self._images = True
        self._where = "OpenAI" if official else f"the OpenAI-compatible server at {self.base_url}"
        options: dict[str, Any] = {
            "api_key": key,
            "base_url": self.base_url,
            "timeout": timeout,
            "max_retries": 0,
            "default_headers": default_headers,
        }
        self._clients = PerLoopClient(
            openai.AsyncOpenAI(
                **options,
                # the SDK accepts both httpx and httpx2 clients; its signature names only httpx2
                http_client=cast("httpx2.AsyncClient | None", http_client),
            ),
            (lambda: openai.AsyncOpenAI(**options)) if http_client is None else None,
        )

    # --- the request ----------------------------------------------------------------------

    def request_params(self, request: ModelRequest) -> dict[str, Any]:
        """The Chat Completions parameters (all but ``stream``) for ``request``."""
        params: dict[str, Any] = {
            "model": self.model,
            "messages": to_chat_messages(
                request.system, request.messages, null_content=self._official, images=self._images
            ),
            "stream_options": {"include_usage": True},
            self.max_tokens_param: request.max_tokens,
        }
        if request.tools:
            params["tools"] = [to_chat_tool(tool) for tool in request.tools]
            choice = _tool_choice(request.tool_choice)
            if choice is not None:
                params["tool_choice"] = choice
        if not self.reasoning:
            params["temperature"] = request.temperature
            if request.stop:
                params["stop"] = list(request.stop)
        if self.reasoning_effort is not None:
            params["reasoning_effort"] = self.reasoning_effort
        if request.response_format is not None:
            response_format = _response_format(request.response_format)
            if not self._json_schema_format and response_format["type"] == "json_schema":
                schema = response_format["json_schema"]["schema"]
                response_format = {"type": "json_object", "schema": schema}
            params["response_format"] = response_format
        return params

    async def _create(self, request: ModelRequest) -> openai.AsyncStream[ChatCompletionChunk]:
        """Send the request. A compatible server that rejects ``json_schema`` structured
        output gets it again as ``json_object`` with the schema (llama-cpp-python's form); a
        model that takes no images (o3-mini; a text-only model on llama.cpp, vLLM, Ollama...)
        gets it again with a note in place of each image (a chart the agent read, say), which
        would otherwise fail every later turn of the session too. This model remembers either
        from then on."""
        client = self._clients.for_this_loop()
        while True:
            params = self.request_params(request)
            try:
                chunks: openai.AsyncStream[ChatCompletionChunk]
                chunks = await client.chat.completions.create(stream=True, **params)
                return chunks
            except openai.APIStatusError as exc:
                if exc.status_code not in ((400,) if self._official else (400, 415, 422, 500)):
                    raise
                format_type = (params.get("response_format") or {}).get("type")
                if (
                    not self._official
                    and format_type == "json_schema"
                    and "response_format" in str(exc)
                ):
                    self._json_schema_format = False
                elif self._images and _has_images(params) and _NO_IMAGES.search(str(exc)):
                    self._images = False  # o3-mini on OpenAI itself takes no images either
                else:
                    raise

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        """Stream one Chat Completions turn: text deltas, then the :class:`ModelResponse`."""
        turn = _TurnBuilder()
        try:
            chunks = await self._create(request)
        except openai.APIError as exc:
            raise self._error(exc) from exc
        try:
            async for chunk in chunks:
                for event in turn.add(chunk):
                    yield event
        except openai.APIError as exc:
            raise self._error(exc) from exc
        finally:
            # closes the HTTP response: on normal end, error, cancellation or aclose()
            with suppress(Exception):
                await chunks.close()
        if turn.finish_reason is None:
            raise ModelError(
                f"the stream from {self._where} ended before the model finished its turn; "
                "try again.",
                retryable=True,
            )
        yield turn.response(request, self.pricing)

    # --- errors -------------------------------------------------------------------------

    def _error(self, exc: openai.APIError) -> ModelError:
        """Turn an SDK exception into one actionable :class:`ModelError`."""
        where = self._where
        if isinstance(exc, openai.APITimeoutError):
            return ModelError(
                f"{where} did not answer within {self.timeout:g}s; try again, or raise "
                "OpenAIModel(timeout=...).",
                retryable=True,
            )
        if isinstance(exc, openai.APIConnectionError):
            cause = exc.__cause__ or exc.__context__
            reason = f" ({type(cause).__name__}: {cause})" if cause is not None else ""
            return ModelError(
                f"lost the connection to {where}{reason}; check the network (or that the "
                "server is running) and try again.",
                retryable=True,
            )
        detail = _provider_message(exc)
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            retry_after = _retry_after(exc.response.headers)
            retryable = status in (408, 409, 429) or status >= 500
            if status == 401:
                text = (
                    f"{where} rejected the API key (401: {detail}); set OPENAI_API_KEY (or "
                    "api_key=...) to a valid key."
                )
            elif status == 403:
                text = (
                    f"{where} refused the request (403: {detail}); check that your key may "
                    f"use model {self.model!r}."
                )
            elif status == 404:
                text = (
                    f"{where} does not know model {self.model!r} or this endpoint "
                    f"(404: {detail}); check the model name and base_url."
                )
            elif status == 429:
                wait = f"retry after {retry_after:g}s" if retry_after is not None else "wait"
                text = f"{where} is rate limiting requests (429: {detail}); {wait} and try again."
            elif status >= 500:
                text = f"{where} had a server error ({status}: {detail}); try again later."
            else:
                text = f"{where} rejected the request ({status}: {detail})."
            return ModelError(
                text, retryable=retryable, status_code=status, retry_after=retry_after
            )
        # an error object in the middle of the stream
        invalid = (exc.type or "").startswith("invalid_request")
        return ModelError(
            f"{where} reported an error mid-stream ({detail})"
            + ("." if invalid else "; try again."),
            retryable=not invalid,
        )

    async def aclose(self) -> None:
        """Close the HTTP client (unless it was given to us: then the caller closes it)."""
        await self._clients.aclose()


# --- request translation ---------------------------------------------------------------


def to_chat_tool(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A loopwright tool schema (``name``, ``description``, ``input_schema``) as an OpenAI
    function tool. A schema already in OpenAI form is passed through."""
    if schema.get("type") == "function" and "function" in schema:
        return dict(schema)
    function: dict[str, Any] = {
        "name": schema["name"],
        "parameters": schema.get("input_schema") or {"type": "object", "properties": {}},
    }
    if schema.get("description"):
        function["description"] = schema["description"]
    return {"type": "function", "function": function}


def _tool_choice(choice: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
    if choice is None or choice == "auto":
        return None  # the API default when tools are given
    if choice in ("any", "required"):
        return "required"
    if choice == "none":
        return "none"
    if isinstance(choice, dict):
        if choice.get("type") == "function":
            return choice
        name = choice.get("name")
        if isinstance(name, str):
            return {"type": "function", "function": {"name": name}}
    raise ModelError(
        f"unsupported tool_choice {choice!r}; use 'auto', 'any', 'none' or {{'name': tool}}."
    )


def _response_format(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON schema (or an OpenAI ``response_format``) as a ``response_format`` value."""
    if spec.get("type") in ("json_schema", "json_object", "text") and "properties" not in spec:
        return dict(spec)
    if isinstance(spec.get("schema"), dict):
        wrapper: dict[str, Any] = {
            "name": _schema_name(spec.get("name") or spec["schema"].get("title")),
            "schema": spec["schema"],
        }
        for key in ("description", "strict"):
            if key in spec:
                wrapper[key] = spec[key]
        return {"type": "json_schema", "json_schema": wrapper}
    return {
        "type": "json_schema",
        "json_schema": {"name": _schema_name(spec.get("title")), "schema": dict(spec)},
    }


def _schema_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        return "response"
    return _TOOL_NAME_SAFE.sub("_", name.strip())[:64]


def _image_part(block: ImageBlock) -> dict[str, Any]:
    return {
        "type": "image_url",
        "image_url": {"url": f"data:{block.media_type};base64,{block.data}"},
    }


def _has_images(params: Mapping[str, Any]) -> bool:
    """Whether the request's messages hold an image part."""
    return any(
        isinstance(message.get("content"), list)
        and any(part.get("type") == "image_url" for part in message["content"])
        for message in params.get("messages", ())
    )


def _tool_message(
    block: ToolResultBlock, images: bool = True
) -> tuple[ChatMessage, list[dict[str, Any]]]:
    """The ``tool`` message for a result, and the image parts that must follow it (none,
    with a note in the text, when ``images`` is false)."""
    found = (
        []
        if isinstance(block.content, str)
        else [_image_part(b) for b in block.content if isinstance(b, ImageBlock)]
    )
    text = block.text
    if block.is_error and not text.lower().startswith("error"):
        text = f"Error: {text}"
    if found and images:
        text = f"{text}\n[{len(found)} image(s) attached in the next message]".lstrip()
    elif found:
        text = f"{text}\n{IMAGE_NOT_SENT}".lstrip()
        found = []
    return {"role": "tool", "tool_call_id": block.tool_use_id, "content": text or "(empty)"}, found


def _assistant_message(message: Message, null_content: bool) -> ChatMessage | None:
    text = "".join(b.text for b in message.content if isinstance(b, TextBlock))
    calls = [
        {
            "id": block.id,
            "type": "function",
            "function": {
                "name": block.name,
                # a cut-off call was never run; its raw text is not valid JSON, which
                # compatible servers' chat templates cannot render
                "arguments": json.dumps(block.input if block.complete else {}),
            },
        }
        for block in message.content
        if isinstance(block, ToolUseBlock)
    ]
    if not text and not calls:
        return None  # nothing to say (thinking blocks only): Chat Completions keeps none
    # OpenAI documents null content beside tool calls; some compatible servers (the
    # llama-cpp-python server) only accept a string
    chat: ChatMessage = {"role": "assistant", "content": text or (None if null_content else "")}
    if calls:
        chat["tool_calls"] = calls
    return chat


def _user_messages(message: Message, images: bool = True) -> list[ChatMessage]:
    tools: list[ChatMessage] = []
    tool_images: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for block in message.content:
        if isinstance(block, TextBlock):
            parts.append({"type": "text", "text": block.text})
        elif isinstance(block, ImageBlock):
            if images:
                parts.append(_image_part(block))
            else:
                parts.append({"type": "text", "text": IMAGE_NOT_SENT})
        elif isinstance(block, ToolResultBlock):
            tool, images_of_tool = _tool_message(block, images)
            tools.append(tool)
            if images_of_tool:
                label = f"Image(s) returned by tool call {block.tool_use_id}:"
                tool_images += [{"type": "text", "text": label}, *images_of_tool]
    out = list(tools)
    if tool_images or parts:
        out.append({"role": "user", "content": tool_images + parts})
    return out


def to_chat_messages(
    system: str,
    messages: Sequence[Message],
    *,
    null_content: bool = True,
    images: bool = True,
) -> list[ChatMessage]:
    """A loopwright conversation as Chat Completions ``messages``.

    ``null_content=False`` sends ``""`` instead of ``null`` as the text of an assistant
    message that only holds tool calls (for servers that require a string). ``images=False``
    sends a note (:data:`IMAGE_NOT_SENT`) in place of each image, for text-only models.
    """
    chat: list[ChatMessage] = [{"role": "system", "content": system}] if system else []
    for message in messages:
        if message.role == "assistant":
            converted = _assistant_message(message, null_content)
            if converted is not None:
                chat.append(converted)
        else:
            chat += _user_messages(message, images)
    return [_finish_user_content(m) for m in _merge_same_roles(chat)]


def _merge_same_roles(messages: list[ChatMessage]) -> list[ChatMessage]:
    merged: list[ChatMessage] = []
    for message in messages:
        previous = merged[-1] if merged else None
        role = message["role"]
        if previous is None or previous["role"] != role or role not in ("user", "assistant"):
            merged.append(dict(message))
        elif role == "user":
            previous["content"] = _as_parts(previous["content"]) + _as_parts(message["content"])
        else:
            texts = [t for t in (previous.get("content"), message.get("content")) if t]
            previous["content"] = "\n\n".join(texts) or previous.get("content")
            calls = previous.get("tool_calls", []) + message.get("tool_calls", [])
            if calls:
                previous["tool_calls"] = calls
    return merged


def _as_parts(content: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content)


def _finish_user_content(message: ChatMessage) -> ChatMessage:
    """Plain text goes as a string (every server understands it); images need parts."""
    content: Any = message.get("content")
    texts_only = isinstance(content, list) and all(p.get("type") == "text" for p in content)
    if message["role"] == "user" and texts_only:
        message["content"] = "\n\n".join(part["text"] for part in content)
    return message


# --- response assembly -----------------------------------------------------------------


def usage_from_openai(usage: CompletionUsage, pricing: Pricing | None = None) -> Usage:
    """Normalise an OpenAI ``usage`` object: cached prompt tokens are ``cache_read_tokens``
    and are not counted again in ``input_tokens``."""
    details = usage.prompt_tokens_details
    cached = (details.cached_tokens or 0) if details is not None else 0
    written = (getattr(details, "cache_write_tokens", None) or 0) if details is not None else 0
    result = Usage(
        input_tokens=max(0, (usage.prompt_tokens or 0) - cached - written),
        output_tokens=usage.completion_tokens or 0,
        cache_read_tokens=cached,
        cache_write_tokens=written,
        model_calls=1,
    )
    if pricing is not None:
        result.cost_usd = pricing.cost(result)
    return result


@dataclass(slots=True)
class _PendingCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _TurnBuilder:
    """Accumulates the chunks of one streamed turn."""

    text: list[str] = field(default_factory=list)
    thinking: list[str] = field(default_factory=list)
    refusal: list[str] = field(default_factory=list)
    calls: dict[int, _PendingCall] = field(default_factory=dict)
    finish_reason: str | None = None
    usage: CompletionUsage | None = None

    def add(self, chunk: ChatCompletionChunk) -> list[TextDelta | ThinkingDelta]:
        events: list[TextDelta | ThinkingDelta] = []
        if chunk.usage is not None:
            self.usage = chunk.usage
        for choice in chunk.choices or ():
            if choice.index not in (0, None):
                continue  # only one choice is requested
            delta = choice.delta
            if delta is not None:
                reasoning = _reasoning_text(delta)
                if reasoning:
                    self.thinking.append(reasoning)
                    events.append(ThinkingDelta(reasoning))
                if delta.content:
                    self.text.append(delta.content)
                    events.append(TextDelta(delta.content))
                if delta.refusal:
                    self.refusal.append(delta.refusal)
                for tool_delta in delta.tool_calls or ():
                    pending = self.calls.setdefault(self._call_index(tool_delta), _PendingCall())
                    if tool_delta.id and not pending.id:
                        pending.id = tool_delta.id
                    function = tool_delta.function
                    if function is not None:
                        if function.name and not pending.name:
                            pending.name = function.name
                        if function.arguments:
                            pending.arguments.append(function.arguments)
            if choice.finish_reason is not None:
                self.finish_reason = choice.finish_reason
        return events

    def _call_index(self, tool_delta: ChoiceDeltaToolCall) -> int:
        """Which call a delta belongs to: its ``index``, or, from servers that send none
        (each call whole in one delta), a new call per new ``id``."""
        index = getattr(tool_delta, "index", None)
        if isinstance(index, int):
            return index
        call_id = getattr(tool_delta, "id", None)
        for known, pending in self.calls.items():
            if call_id and pending.id == call_id:
                return known
        if call_id or not self.calls:
            return max(self.calls, default=-1) + 1
        return max(self.calls)

    def response(self, request: ModelRequest, pricing: Pricing | None) -> ModelResponse:
        content: list[ContentBlock] = []
        if self.thinking:
            content.append(ThinkingBlock("".join(self.thinking)))
        text = "".join(self.text)
        refusal = "".join(self.refusal)
        if text:
            content.append(TextBlock(text))
        elif refusal:
            content.append(TextBlock(refusal))
        calls = [_tool_use(self.calls[index]) for index in sorted(self.calls)]
        content += calls
        stop_reason = _STOP_REASONS.get(self.finish_reason or "", "end_turn")
        if refusal and not text and not calls:
            stop_reason = "refusal"
        elif calls and stop_reason == "end_turn":
            stop_reason = "tool_use"  # some servers say "stop" after tool calls
        if self.usage is not None:
            usage = usage_from_openai(self.usage, pricing)
        else:  # the server does not report usage: estimate it, so budgets still work
            out_chars = len(text) + len(refusal) + sum(len(json.dumps(c.input)) for c in calls)
            usage = Usage(
                input_tokens=request.estimated_input_tokens,
                output_tokens=out_chars // 4 + 1,
                model_calls=1,
            )
            if pricing is not None:
                usage.cost_usd = pricing.cost(usage)
        return ModelResponse(Message("assistant", content), stop_reason, usage)


def _reasoning_text(delta: Any) -> str:
    """Reasoning streamed by compatible servers (``reasoning_content`` or ``reasoning``)."""
    extra = getattr(delta, "model_extra", None) or {}
    for key in ("reasoning_content", "reasoning"):
        value = extra.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


def _tool_use(pending: _PendingCall) -> ToolUseBlock:
    raw = "".join(pending.arguments)
    call_id = pending.id or f"call_{uuid.uuid4().hex[:24]}"
    if not raw.strip():
        return ToolUseBlock(call_id, pending.name, {})
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        return ToolUseBlock(call_id, pending.name, {}, partial_json=raw)
    return ToolUseBlock(call_id, pending.name, parsed)


def _provider_message(exc: openai.APIError) -> str:
    """The provider's own words for an error (its ``error.message``), else the SDK's, on one
    line and at most :data:`_MAX_DETAIL` characters."""
    detail = " ".join(_raw_provider_message(exc).split())
    return detail if len(detail) <= _MAX_DETAIL else detail[: _MAX_DETAIL - 1] + "…"


def _raw_provider_message(exc: openai.APIError) -> str:
    body = exc.body
    if isinstance(body, dict):
        message = body.get("message")
        if isinstance(message, str) and message.strip():
            return message.strip()
        nested = body.get("error")
        if isinstance(nested, dict) and isinstance(nested.get("message"), str):
            return str(nested["message"]).strip()
        if isinstance(nested, str) and nested.strip():
            return nested.strip()
    if isinstance(body, str) and body.strip():
        return body
    return exc.message


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (seconds or HTTP date)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    milliseconds = lowered.get("retry-after-ms")
    if milliseconds is not None:
        with suppress(ValueError):
            return max(0.0, float(milliseconds) / 1000)
    value = lowered.get("retry-after")
    if value is None:
        return None
    with suppress(ValueError):
        return max(0.0, float(value))
    parsed = email.utils.parsedate_tz(value)
    if parsed is None:
        return None
    return max(0.0, email.utils.mktime_tz(parsed) - time.time())
