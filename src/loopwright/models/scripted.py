"""A scripted model: a test double that streams like a real provider.

Use it to test agents without a network or an API key. Give it a list of turns (each a
string, a tool call, a list of both, or a :class:`ScriptedTurn`), or a function that receives
each :class:`~loopwright.models.base.ModelRequest` and returns the turn. Text is streamed in
small chunks, so consumers see the same event sequence a real provider produces.

It is a double for testing the loop and your tools; it does not claim anything about how a
real model behaves. By default it reports the request's own token estimate as the prompt's
size; give ``chars_per_token`` (and ``token_per_digit``) to have it count the prompt as a
tokenizer would and refuse a prompt over its ``context_window``, as a provider does.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import math
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from loopwright.events import TextDelta, Usage
from loopwright.messages import (
    IMAGE_CHARS,
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
)


@dataclass(slots=True)
class ScriptedToolCall:
    """A tool call the scripted model will make.

    Set ``partial_json`` to simulate a call cut off by ``max_tokens`` mid-arguments.
    """

    name: str
    input: dict[str, Any] = field(default_factory=dict)
    id: str | None = None
    partial_json: str | None = None


@dataclass(slots=True)
class ScriptedTurn:
    """One model turn: optional text, then optional tool calls."""

    text: str = ""
    tool_calls: list[ScriptedToolCall] = field(default_factory=list)
    stop_reason: str | None = None
    usage: Usage | None = None
    #: Raise this instead of answering (to test error handling).
    error: Exception | None = None


TurnSpec: TypeAlias = "str | ScriptedToolCall | ScriptedTurn | Sequence[str | ScriptedToolCall]"
ScriptFunction: TypeAlias = Callable[[ModelRequest], "TurnSpec | Awaitable[TurnSpec]"]


def call(name: str, input: dict[str, Any] | None = None, /, **kwargs: Any) -> ScriptedToolCall:
    """Shorthand for a scripted tool call: ``call("Write", file_path="a.txt", content="hi")``."""
    return ScriptedToolCall(name, {**(input or {}), **kwargs})


def to_turn(spec: TurnSpec) -> ScriptedTurn:
    """Normalise the shorthand forms of a turn into a :class:`ScriptedTurn`."""
    if isinstance(spec, ScriptedTurn):
        return spec
    if isinstance(spec, str):
        return ScriptedTurn(text=spec)
    if isinstance(spec, ScriptedToolCall):
        return ScriptedTurn(tool_calls=[spec])
    turn = ScriptedTurn()
    for item in spec:
        if isinstance(item, str):
            turn.text += item
        elif isinstance(item, ScriptedToolCall):
            turn.tool_calls.append(item)
        else:
            raise TypeError(f"a scripted turn holds strings and tool calls, not {item!r}")
    return turn


class ScriptedModel(Model):
    """A model that plays back scripted turns, or asks a function for each turn."""

    def __init__(
        self,
        script: Iterable[TurnSpec] | ScriptFunction,
        *,
        name: str = "scripted",
        chunk_size: int = 16,
        delay: float = 0.0,
        context_window: int = 200_000,
        pricing: Pricing | None = None,
        record_requests: bool = True,
        chars_per_token: float | None = None,
        token_per_digit: bool = False,
    ) -> None:
        if chars_per_token is not None and not chars_per_token > 0:
            raise ValueError(f"chars_per_token must be over 0, got {chars_per_token!r}")
        self.name = name
        self.chunk_size = max(1, chunk_size)
        self.delay = delay
        self.context_window = context_window
        self.pricing = pricing
        #: how the model counts a prompt (see :func:`prompt_tokens`); with neither, it
        #: reports the request's estimate and takes any prompt
        self.chars_per_token = chars_per_token
        self.token_per_digit = token_per_digit
        self._function: ScriptFunction | None = None
        self._turns: list[TurnSpec] = []
        if callable(script):
            self._function = script
        else:
            self._turns = list(script)
        self._next = 0
        self._id_prefix = f"call_{uuid.uuid4().hex[:10]}_"
        self._ids = 0
        #: Every request the model received, for assertions in tests (unless
        #: ``record_requests=False``, e.g. in benchmarks, where it would hold every prompt).
        self.requests: list[ModelRequest] = []
        self.record_requests = record_requests

    @property
    def remaining(self) -> int:
        """How many scripted turns are left (0 for a function script)."""
        return len(self._turns) - self._next

    async def _next_turn(self, request: ModelRequest) -> ScriptedTurn:
        if self._function is not None:
            result = self._function(request)
            if inspect.isawaitable(result):
                result = await result
            return to_turn(result)
        if self._next >= len(self._turns):
            raise ModelError(
                f"scripted model {self.name!r} ran out of turns after {len(self._turns)}; "
                "add more turns to the script"
            )
        spec = self._turns[self._next]
        self._next += 1
        return to_turn(spec)

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        if self.record_requests:
            self.requests.append(request)
        counted: int | None = None
        if self.chars_per_token is not None or self.token_per_digit:
            counted = prompt_tokens(request, self.chars_per_token or 4.0, self.token_per_digit)
            if counted > self.context_window:
                raise ModelError(
                    f"prompt is too long: {counted:,} tokens > {self.context_window:,} maximum "
                    f"(the context window of {self.name})"
                )
        turn = await self._next_turn(request)
        if turn.error is not None:
            raise turn.error
        text = turn.text
        step = self.chunk_size
        for start in range(0, len(text), step):
            if self.delay:
                await asyncio.sleep(self.delay)
            yield TextDelta(text[start : start + step])
        if self.delay and not text:
            await asyncio.sleep(self.delay)
        content: list[ContentBlock] = []
        if text:
            content.append(TextBlock(text))
        for scripted in turn.tool_calls:
            self._ids += 1
            content.append(
                ToolUseBlock(
                    id=scripted.id or f"{self._id_prefix}{self._ids}",
                    name=scripted.name,
                    input={} if scripted.partial_json is not None else dict(scripted.input),
                    partial_json=scripted.partial_json,
                )
            )
        stop_reason = turn.stop_reason or ("tool_use" if turn.tool_calls else "end_turn")
        if turn.usage is not None:
            usage = turn.usage.copy()
        else:
            usage = self._estimate_usage(request, turn)
            if counted is not None:
                usage.input_tokens = counted
        usage.model_calls = 1
        if self.pricing is not None and usage.cost_usd == 0.0:
            usage.cost_usd = self.pricing.cost(usage)
        yield ModelResponse(Message("assistant", content), stop_reason, usage)

    @staticmethod
    def _estimate_usage(request: ModelRequest, turn: ScriptedTurn) -> Usage:
        out_chars = len(turn.text) + sum(
            len(c.name) + len(c.partial_json or json.dumps(c.input)) for c in turn.tool_calls
        )
        return Usage(input_tokens=request.estimated_input_tokens, output_tokens=out_chars // 4 + 1)


def prompt_tokens(request: ModelRequest, chars_per_token: float, token_per_digit: bool) -> int:
    """The tokens a tokenizer making one token of ``chars_per_token`` characters would make of
    ``request``'s prompt (system prompt, tool schemas, messages, each block's framing as the
    agent's estimate counts it: :meth:`Message.char_size`); ``token_per_digit``: one token for
    every digit, as Gemma's and SmolLM2's tokenizers do."""
    texts = [request.system, *(json.dumps(schema) for schema in request.tools)]
    framing = 0
    for message in request.messages:
        for block in message.content:
            if isinstance(block, TextBlock):
                texts.append(block.text)
            elif isinstance(block, ToolResultBlock):
                texts.append(block.text)
                framing += 32
                if not isinstance(block.content, str):
                    framing += IMAGE_CHARS * sum(isinstance(b, ImageBlock) for b in block.content)
            elif isinstance(block, ToolUseBlock):
                texts.append(block.name + json.dumps(block.input))
                framing += 32
            elif isinstance(block, ThinkingBlock):
                texts.append(block.thinking)
            elif isinstance(block, ImageBlock):
                framing += IMAGE_CHARS
    chars = framing + sum(len(text) for text in texts)
    digits = sum(text.count(d) for text in texts for d in "0123456789") if token_per_digit else 0
    return digits + math.ceil((chars - digits) / chars_per_token)


def load_script(path: str) -> ScriptedModel:
    """A scripted model played from a JSON or YAML file (``scripted:PATH`` model strings).

    The file holds a list of turns, or ``{"turns": [...], "delay": s, "chunk_size": n,
    "context_window": tokens, "chars_per_token": x, "token_per_digit": true}`` (the last
    three: the model counts its prompts as a tokenizer would, reports that count and
    refuses a prompt over the window; see :class:`ScriptedModel`). A turn is a string
    (text), or ``{"text": ..., "call": NAME, "input": {...}}``, or ``{"text": ..., "calls":
    [{"name": ..., "input": {...}}, ...]}``, each with an optional ``"usage": {"input_tokens":
    n, "output_tokens": n, "cache_read_tokens": n, ...}`` reported for that turn. Turns play
    in order across the prompts of a session; the model errors when the script runs out.
    """
    from pathlib import Path

    file = Path(path).expanduser()
    if not file.is_file():
        raise ModelError(f"no script file at {path}; give a JSON or YAML file of turns")
    text = file.read_text(encoding="utf-8")
    try:
        if file.suffix in (".yaml", ".yml"):
            import yaml

            data: Any = yaml.safe_load(text)
        else:
            import json

            data = json.loads(text)
    except Exception as exc:
        raise ModelError(f"cannot read the script {path}: {exc}") from None
    options: dict[str, Any] = {}
    if isinstance(data, dict):
        options = _options(data, path)
        data = data.get("turns")
    if not isinstance(data, list) or not data:
        raise ModelError(f"the script {path} must hold a non-empty list of turns")
    return ScriptedModel(
        [_turn_from_data(item, f"{path} turn {i + 1}") for i, item in enumerate(data)],
        name=f"scripted:{file.name}",
        **options,
    )


#: a script file's options, and the types each takes
_OPTIONS: dict[str, tuple[type, ...]] = {
    "delay": (int, float),
    "chunk_size": (int,),
    "context_window": (int,),
    "chars_per_token": (int, float),
    "token_per_digit": (bool,),
}


def _options(data: dict[str, Any], path: str) -> dict[str, Any]:
    unknown = set(data) - {"turns", *_OPTIONS}
    if unknown:
        raise ModelError(
            f"the script {path} has unknown key(s) {', '.join(sorted(unknown))}; "
            f"expected turns, {', '.join(_OPTIONS)}"
        )
    options: dict[str, Any] = {}
    for key, types in _OPTIONS.items():
        if key not in data:
            continue
        value = data[key]
        wrong = not isinstance(value, types) or (bool not in types and isinstance(value, bool))
        if (
            wrong
            or (bool not in types and value <= 0 and key != "delay")
            or (key == "delay" and value < 0)
        ):
            kind = "true or false" if bool in types else "a positive number"
            raise ModelError(f"the script {path}: {key} must be {kind}, got {value!r}")
        options[key] = value
    return options


def _turn_from_data(item: Any, where: str) -> ScriptedTurn:
    if isinstance(item, str):
        return ScriptedTurn(text=item)
    if not isinstance(item, dict):
        raise ModelError(f"{where}: a turn is a string or an object with text/call/calls")
    unknown = set(item) - {"text", "call", "input", "calls", "usage"}
    if unknown:
        raise ModelError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    calls = []
    if item.get("call"):
        calls.append(ScriptedToolCall(str(item["call"]), dict(item.get("input") or {})))
    for entry in item.get("calls") or []:
        if not isinstance(entry, dict) or "name" not in entry:
            raise ModelError(f"{where}: each of calls is {{'name': ..., 'input': {{...}}}}")
        calls.append(ScriptedToolCall(str(entry["name"]), dict(entry.get("input") or {})))
    usage = None
    if "usage" in item:
        try:
            if not isinstance(item["usage"], dict):
                raise TypeError("not an object")
            usage = Usage.from_dict(item["usage"])
        except (TypeError, ValueError) as exc:
            raise ModelError(
                f"{where}: usage is {{'input_tokens': n, 'output_tokens': n, ...}} ({exc})"
            ) from None
    return ScriptedTurn(text=str(item.get("text", "")), tool_calls=calls, usage=usage)
