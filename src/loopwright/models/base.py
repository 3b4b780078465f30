"""The one interface every model provider implements.

A provider turns a :class:`ModelRequest` (system prompt, messages, tool schemas, limits) into
a stream: zero or more :class:`~loopwright.events.TextDelta` / :class:`ThinkingDelta` as the
answer is produced, then exactly one :class:`ModelResponse` with the whole assistant message,
why it stopped, and the tokens it used.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from loopwright.events import TextDelta, Usage
from loopwright.messages import Message


@dataclass(slots=True)
class ModelRequest:
    """Everything a provider needs for one model call."""

    messages: Sequence[Message]
    system: str = ""
    tools: Sequence[dict[str, Any]] = ()
    max_tokens: int = 4096
    temperature: float = 0.0
    #: The agent's running estimate of the prompt size, for providers that cannot count.
    estimated_input_tokens: int = 0
    #: ``None``/``"auto"`` (the model decides), ``"any"`` (must call a tool), ``"none"``, or
    #: ``{"name": tool}`` to force one tool.
    tool_choice: str | dict[str, Any] | None = None
    #: A JSON schema the final answer must follow (structured output). Tool calls stay
    #: available: providers must not let it disable them.
    response_format: dict[str, Any] | None = None
    stop: Sequence[str] = ()
    metadata: dict[str, Any] = field(default_factory=dict)


def prompt_chars(request: ModelRequest) -> int:
    """The characters of ``request``'s prompt as the agent's context estimate counts them:
    the system prompt, the tool schemas as JSON, and the messages
    (:meth:`~loopwright.messages.Message.char_size`: an image counts as
    :data:`~loopwright.messages.IMAGE_CHARS`)."""
    return (
        len(request.system)
        + sum(len(json.dumps(schema)) for schema in request.tools)
        + sum(message.char_size() for message in request.messages)
    )


def estimate_input_tokens(request: ModelRequest, ratio: float = 1.0) -> int:
    """The agent's estimate of ``request``'s prompt in tokens: 4 characters a token
    (:func:`prompt_chars`), times ``ratio``, the tokens per 4 characters the model's own
    counts taught the agent (its token ratio; 1.0 before it learned one)."""
    return int(prompt_chars(request) * ratio / 4)


@dataclass(slots=True)
class ThinkingDelta:
    """A piece of the model's visible reasoning (not sent to the user as answer text)."""

    thinking: str


@dataclass(slots=True)
class ModelResponse:
    """The finished model turn.

    ``stop_reason`` is one of ``end_turn``, ``tool_use``, ``max_tokens``, ``stop_sequence``,
    ``refusal``. When it is ``max_tokens`` a tool call may be incomplete
    (``ToolUseBlock.partial_json`` set).
    """

    message: Message
    stop_reason: str
    usage: Usage
    #: The size in the model's tokens of the prompt the caller sized (:func:`prompt_chars`),
    #: when it is not what ``usage`` counts as processed: a local model that left turns out
    #: to fit its window processed fewer, a wrapper that added worked examples of its own
    #: (counted in its smaller window) more. ``None``: ``usage``'s prompt tokens are it.
    #: What the agent's token ratio learns from; usage and cost stay what was processed.
    prompt_tokens: int | None = None


@dataclass(slots=True)
class RetryNotice:
    """A provider call failed and is being retried after ``delay`` seconds.

    ``discard_partial`` is true when text of the failed attempt was already streamed: that
    text is void, and the turn restarts from the beginning. The agent turns this into a
    retryable ``error`` event so consumers can say so; the history only ever holds the
    final, complete turn.
    """

    message: str
    attempt: int
    delay: float
    discard_partial: bool = False


ModelEvent: TypeAlias = TextDelta | ThinkingDelta | RetryNotice | ModelResponse


@dataclass(frozen=True, slots=True)
class Pricing:
    """Prices in US dollars per million tokens."""

    input_per_mtok: float
    output_per_mtok: float
    cache_read_per_mtok: float = 0.0
    cache_write_per_mtok: float = 0.0

    def cost(self, usage: Usage) -> float:
        """What ``usage`` costs at these prices."""
        return (
            usage.input_tokens * self.input_per_mtok
            + usage.output_tokens * self.output_per_mtok
            + usage.cache_read_tokens * self.cache_read_per_mtok
            + usage.cache_write_tokens * self.cache_write_per_mtok
        ) / 1_000_000


class ModelError(Exception):
    """A provider failed; ``retryable`` says whether trying again later may work.

    ``status_code`` is the HTTP status when there was one; ``retry_after`` the seconds the
    provider asked to wait (from a ``retry-after`` header), if it said.
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = False,
        status_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status_code = status_code
        self.retry_after = retry_after


class Model(ABC):
    """Base class of model providers.

    Subclasses implement :meth:`stream`. ``context_window`` is the prompt size (in tokens) the
    model accepts; the agent keeps the conversation under it. ``pricing`` (optional) turns
    usage into cost.
    """

    name: str = "model"
    context_window: int = 200_000
    pricing: Pricing | None = None

    @abstractmethod
    def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        """Produce the model's turn as a stream ending in one :class:`ModelResponse`."""

    async def complete(self, request: ModelRequest) -> ModelResponse:
        """Run :meth:`stream` to the end and return the final response."""
        final: ModelResponse | None = None
        async for event in self.stream(request):
            if isinstance(event, ModelResponse):
                final = event
        if final is None:
            raise ModelError(f"model {self.name!r} ended its stream without a response")
        return final

    async def aclose(self) -> None:
        """Release network clients or loaded weights. The default has nothing to release."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"
