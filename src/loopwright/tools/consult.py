"""``Consult``: ask a second model for a review or a plan (a second opinion).

An agent deep in a task has no one to check its reasoning. ``Consult`` hands a compact brief
of the conversation (the task, the running summary, the recent turns with tool calls and
results cut short) and the agent's question to another model, often a stronger or simply
different one, and returns its answer as the tool result. The consulted model sees no tools
and changes nothing; its tokens and cost count in the run's usage and limits like the
agent's own.

Configure it per agent with :class:`Consult`::

    Agent("openai:gpt-4.1-mini", tools=[Consult("anthropic:claude-sonnet-5-5")])

Without a configured model (``ConsultTool`` registered as a class) the agent's own model is
consulted, with a fresh context and a reviewer's instructions.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Final

from loopwright.events import UsageUpdate
from loopwright.messages import (
    ImageBlock,
    Message,
    TextBlock,
    ToolResultBlock,
    ToolUseBlock,
)
from loopwright.models.base import Model, ModelError, ModelRequest, estimate_input_tokens
from loopwright.run_context import current_call, current_run
from loopwright.tools.base import BaseTool, ToolResult, Toolset, error, ok

if TYPE_CHECKING:
    import os

    from loopwright.run_context import RunContext

DEFAULT_CONTEXT_CHARS: Final = 12_000
DEFAULT_MAX_TOKENS: Final = 2048
DEFAULT_TIMEOUT_S: Final = 300.0

CONSULT_SYSTEM: Final = (
    "You are a senior expert giving a second opinion to an AI agent in the middle of a task. "
    "You get a brief of its conversation so far (tool calls and results are abridged) and "
    "its question. Answer the question directly. When asked for a review, point out concrete "
    "mistakes, risks, unverified assumptions and missing steps, most important first; when "
    "asked for a plan, give short numbered steps. Say plainly when the approach is sound. Be "
    "brief and specific; you cannot run tools, so say what the agent should check."
)

_USER_CHARS: Final = 1500
_ASSISTANT_CHARS: Final = 1000
_CALL_CHARS: Final = 300
_RESULT_CHARS: Final = 400


class ConsultTool(BaseTool):
    """Ask a second model about the conversation so far; returns its answer.

    ``model``: a :class:`~loopwright.models.base.Model` or a model string (resolved with
    :func:`~loopwright.models.resolve_model`); ``None`` consults the calling agent's model.
    ``max_context_chars`` bounds the brief of the conversation; ``max_tokens`` the answer.
    """

    kind: ClassVar[str] = "read"

    def __init__(
        self,
        workspace_dir: str | os.PathLike[str],
        model: Model | str | None = None,
        *,
        system_prompt: str = CONSULT_SYSTEM,
        max_context_chars: int = DEFAULT_CONTEXT_CHARS,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        temperature: float = 0.0,
        timeout: float | None = DEFAULT_TIMEOUT_S,
    ) -> None:
        super().__init__(workspace_dir)
        if isinstance(model, str):
            from loopwright.models import resolve_model

            model = resolve_model(model)
        if max_context_chars < 500:
            raise ValueError("max_context_chars must be at least 500")
        self.model = model
        self.system_prompt = system_prompt
        self.max_context_chars = max_context_chars
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.timeout = timeout

    @property
    def name(self) -> str:
        return "Consult"

    @property
    def schema(self) -> dict[str, Any]:
        return {
            "name": "Consult",
            "description": (
                "Ask a second, independent model for a review or a plan: it sees a brief of "
                "this conversation and your question, and answers in text. Use it before a "
                "risky or irreversible step, when stuck, or to check a result. It cannot run "
                "tools; put anything it must see (a diff, a draft, an error) in context."
            ),
            "input_schema": {
                "type": "object",
                "properties": {
                    "question": {
                        "type": "string",
                        "minLength": 1,
                        "description": "What you want reviewed, planned or answered",
                    },
                    "context": {
                        "type": "string",
                        "description": "Material the reviewer must read (code, a plan, output)",
                    },
                },
                "required": ["question"],
                "additionalProperties": False,
            },
        }

    async def execute(self, input: dict[str, Any]) -> ToolResult:
        run = current_run()
        model = self.model or (run.agent.model if run is not None else None)
        if model is None:
            return error(
                "Consult has no model to ask: configure one with Consult(model=...) or run it "
                "inside an agent."
            )
        question = str(input["question"]).strip()
        if not question:
            return error("Consult needs a question; say what you want reviewed or planned.")
        prompt = self.prompt(question, str(input.get("context") or ""), run)
        request = ModelRequest(
            messages=[Message.user(prompt)],
            system=self.system_prompt,
            max_tokens=self.max_tokens,
            temperature=self.temperature,
        )
        request.estimated_input_tokens = estimate_input_tokens(request, _token_ratio(run, model))
        try:
            response = await model.complete(request)
        except ModelError as exc:
            return error(
                f"Consult could not get an answer from {model.name}: {exc}. Go on without "
                "the second opinion, or try again later."
            )
        usage = response.usage.copy()
        usage.model_calls = max(usage.model_calls, 1)
        if usage.cost_usd == 0.0 and model.pricing is not None:
            usage.cost_usd = model.pricing.cost(usage)
        if run is not None:
            run.add_usage(usage)
            run.emit(
                UsageUpdate(
                    usage.input_tokens,
                    usage.output_tokens,
                    usage.cache_read_tokens,
                    usage.cache_write_tokens,
                    usage.cost_usd,
                    run.usage.copy(),
                    context_window=model.context_window,
                    agent=f"{run.path}/consult",
                )
            )
        answer = response.message.text.strip()
        if not answer:
            return error(
                f"{model.name} gave no answer (stop reason: {response.stop_reason}); ask a "
                "narrower question."
            )
        note = " (cut at the answer length limit)" if response.stop_reason == "max_tokens" else ""
        return ok(
            f"Second opinion from {model.name}{note}:\n\n{answer}",
            metadata={"model": model.name, "usage": usage.to_dict(), "prompt_chars": len(prompt)},
        )

    def prompt(self, question: str, context: str, run: RunContext | None) -> str:
        """What the consulted model is sent: the brief, the question, the attached material."""
        parts: list[str] = []
        if run is not None:
            scope = current_call()
            skip = scope.call.id if scope is not None else None
            session = run.session
            parts.append(
                conversation_brief(
                    session.messages[session.context_start :],
                    summary=session.summary,
                    task=_first_user_text(session.messages),
                    instructions=_instructions(run),
                    budget=self.max_context_chars,
                    skip_call_id=skip,
                )
            )
        parts.append(f"The agent asks:\n{question}")
        if context.strip():
            limit = self.max_context_chars
            cut = f"\n[... {len(context) - limit:,} characters cut]" if len(context) > limit else ""
            parts.append(f"Material the agent attached:\n{context[:limit]}{cut}")
        return "\n\n---\n\n".join(parts)


class Consult(Toolset):
    """The ``Consult`` tool configured for an agent: ``Consult("anthropic:claude-...")``.

    A model string is resolved once, here, so a missing API key shows up when the agent is
    built, not in the middle of a run; every session shares the model.
    """

    def __init__(
        self,
        model: Model | str | None = None,
        *,
        system_prompt: str = CONSULT_SYSTEM,
        max_context_chars: int = DEFAULT_CONTEXT_CHARS,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        temperature: float = 0.0,
        timeout: float | None = DEFAULT_TIMEOUT_S,
    ) -> None:
        if isinstance(model, str):
            from loopwright.models import resolve_model

            model = resolve_model(model)
        self.model = model
        self.options: dict[str, Any] = {
            "system_prompt": system_prompt,
            "max_context_chars": max_context_chars,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "timeout": timeout,
        }

    def bind(self, workspace_dir: str, session_id: str | None = None) -> list[BaseTool]:
        return [ConsultTool(workspace_dir, self.model, **self.options)]

    async def aclose(self) -> None:
        """Close the consulted model (its network client) when you are done with the agent."""
        if self.model is not None:
            await self.model.aclose()


def conversation_brief(
    messages: Sequence[Message],
    *,
    summary: str = "",
    task: str = "",
    instructions: str = "",
    budget: int = DEFAULT_CONTEXT_CHARS,
    skip_call_id: str | None = None,
) -> str:
    """A compact, bounded rendering of a conversation for another model to read.

    The newest messages are kept whole as far as ``budget`` (characters) allows, older ones
    are dropped and counted; texts are cut, tool calls shown as ``CALL name {input}`` and
    results as ``RESULT name: first characters``. ``summary`` (the session's running summary)
    and ``task`` (the user's first message, shown when it fell out of the window) and
    ``instructions`` (the agent's system prompt) take at most a third of the budget together.
    ``skip_call_id`` leaves out one tool call (the ``Consult`` call being made).
    """
    head: list[str] = []
    side = budget // 3
    if instructions.strip():
        head.append(f"The agent's instructions (abridged):\n{_cut(instructions, side // 3)}")
    names = {
        block.id: block.name
        for message in messages
        for block in message.content
        if isinstance(block, ToolUseBlock)
    }
    rendered = [_render(message, names, skip_call_id) for message in messages]
    rendered = [lines for lines in rendered if lines]
    task_text = task.strip()
    task_part = (
        f"The user's task (first message):\n{_cut(task_text, side // 3)}" if task_text else ""
    )
    if summary.strip():
        head.append(f"Summary of the earlier conversation:\n{_cut(summary, side // 3)}")
    remaining = budget - sum(len(part) + 2 for part in [*head, task_part])
    kept: list[str] = []
    omitted = 0
    for index in range(len(rendered) - 1, -1, -1):
        chunk = "\n".join(rendered[index])
        if len(chunk) + 1 > remaining - 60:
            if not kept:  # the newest message alone is too long: keep its start
                kept.append(_cut(chunk, max(remaining - 120, 0)))
                index -= 1
            omitted = index + 1
            break
        kept.append(chunk)
        remaining -= len(chunk) + 1
    kept.reverse()
    if task_part and task_text[:200] not in "\n".join(kept):
        head.insert(len(head) - bool(summary.strip()), task_part)  # before the summary
    body = ["Recent conversation (oldest first):"]
    if omitted:
        body.append(f"[{omitted} earlier message{'s' if omitted != 1 else ''} omitted]")
    body.extend(kept)
    if not kept and not omitted:
        body.append("(no messages yet)")
    return "\n\n".join([*head, "\n".join(body)])


def _render(message: Message, names: dict[str, str], skip: str | None) -> list[str]:
    lines: list[str] = []
    role = message.role.upper()
    for block in message.content:
        if isinstance(block, TextBlock):
            if block.text.strip():
                limit = _USER_CHARS if message.role == "user" else _ASSISTANT_CHARS
                lines.append(f"{role}: {_cut(block.text.strip(), limit)}")
        elif isinstance(block, ToolUseBlock):
            if block.id != skip:
                arguments = json.dumps(block.input, ensure_ascii=False, default=str)
                lines.append(f"CALL {block.name} {_cut(arguments, _CALL_CHARS)}")
        elif isinstance(block, ToolResultBlock):
            if block.tool_use_id != skip:
                name = names.get(block.tool_use_id, "tool")
                flag = " (error)" if block.is_error else ""
                text = " ".join(block.text.split())
                images = (
                    sum(isinstance(b, ImageBlock) for b in block.content)
                    if isinstance(block.content, list)
                    else 0
                )
                extra = f" [{images} image(s)]" if images else ""
                lines.append(f"RESULT {name}{flag}: {_cut(text, _RESULT_CHARS)}{extra}")
        elif isinstance(block, ImageBlock):
            lines.append(f"{role}: [image]")
    return lines


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]} [... {len(text) - limit:,} more characters]"


def _first_user_text(messages: Sequence[Message]) -> str:
    for message in messages:
        if message.role == "user" and message.text.strip():
            return message.text
    return ""


def _token_ratio(run: RunContext | None, model: Model) -> float:
    """The token ratio the agent learned for ``model`` in this session (its model's counts of
    the session's prompts: digits, codes, another language), so the consulted model's prompt
    is estimated as the agent estimates its own; 1.0 for another model."""
    if run is None or run.agent.model.name != model.name:
        return 1.0
    return run.agent._token_ratio(run.session).value


def _instructions(run: RunContext) -> str:
    prompt = run.agent.system_prompt
    if callable(prompt):
        try:
            return str(prompt(run.session))
        except Exception:  # the brief must not fail for the prompt's sake
            return ""
    return prompt


__all__ = [
    "CONSULT_SYSTEM",
    "DEFAULT_CONTEXT_CHARS",
    "Consult",
    "ConsultTool",
    "conversation_brief",
]
