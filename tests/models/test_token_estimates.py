"""Token estimates: a second model's prompt is estimated as the agent estimates its own, and
the embedded model reports the size of the prompt it was given, not only what it processed.

The agent keeps its prompt under the window with 4 characters a token times a token ratio it
learns from the model's counts (``_TokenRatio``); a tokenizer making a token of every digit
(Gemma's, SmolLM2's) makes far more tokens of claims data (NPIs, counts) than that.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from loopwright import Agent, MemoryStore, ScriptedModel, call
from loopwright.events import TextDelta
from loopwright.messages import Message, ToolResultBlock, ToolUseBlock
from loopwright.models.base import ModelRequest, ModelResponse, estimate_input_tokens, prompt_chars
from loopwright.models.scripted import prompt_tokens
from loopwright.tools.consult import CONSULT_SYSTEM, ConsultTool

#: ten-digit NPIs and counts: a token a digit for the scripted model's tokenizer below
TABLE = "\n".join(f"| {1_000_000_000 + 7919 * n} | {n % 50} |" for n in range(400))


async def test_a_consult_prompt_is_estimated_with_the_ratio_the_agent_learned(
    tmp_path: Path,
) -> None:
    """Old: ``chars // 4`` put the consulted prompt at about 2,600 tokens, so it and the
    2,048 tokens of answer room fit the 7,680-token window; the model counted 6,700, and
    the two do not fit (a server refuses such a request; one that reports no usage is
    billed the estimate). Now the estimate uses the token ratio the agent learned from the
    same model's counts of this session's prompts."""

    def script(request: ModelRequest) -> Any:
        if request.system == CONSULT_SYSTEM:
            return "Looks right."
        if any(m.tool_results for m in request.messages):
            return "Done."
        return call("Consult", question="Are these the top prescribers?", context=TABLE)

    model = ScriptedModel(script, chars_per_token=4.0, token_per_digit=True, context_window=7680)
    agent = Agent(
        model,
        tools=[ConsultTool],
        system_prompt="You study prescribers.",
        store=MemoryStore(),
        workspace_root=str(tmp_path / "ws"),
    )
    first_rows = "\n".join(TABLE.splitlines()[:100])
    result = await agent.collect(f"Top prescribers:\n{first_rows}")
    assert result.text == "Done."
    [consult] = [r for r in model.requests if r.system == CONSULT_SYSTEM]
    counted = prompt_tokens(consult, 4.0, True)
    plain = prompt_chars(consult) // 4
    room = consult.max_tokens
    assert plain + room < model.context_window < counted + room  # the plain estimate is wrong
    assert consult.estimated_input_tokens + room > model.context_window
    assert abs(consult.estimated_input_tokens - counted) < counted * 0.25


def test_the_shared_estimate_counts_what_the_agent_counts() -> None:
    """System prompt, tool schemas as JSON, messages as ``Message.char_size`` (an image at
    ``IMAGE_CHARS``), 4 characters a token times the learned ratio."""
    from loopwright.messages import IMAGE_CHARS, ImageBlock, TextBlock

    image = Message("user", [TextBlock("What is in it?"), ImageBlock("aGk=")])
    schema = {"name": "SQL", "input_schema": {"type": "object"}}
    request = ModelRequest([image], system="S" * 100, tools=[schema])
    chars = 100 + len('{"name": "SQL", "input_schema": {"type": "object"}}') + 14 + IMAGE_CHARS
    assert prompt_chars(request) == chars
    assert estimate_input_tokens(request) == chars // 4
    assert estimate_input_tokens(request, 2.5) == int(chars * 2.5 / 4)


# --- the embedded model ------------------------------------------------------------------

llama_cpp = pytest.importorskip("llama_cpp", reason="needs the `local` extra")

from loopwright.models.local import LocalModel, bundled_models  # noqa: E402

needs_smollm2 = pytest.mark.skipif(
    "smollm2-135m" not in bundled_models(), reason="needs the bundled SmolLM2 model"
)
THREADS = 1


def exchange(index: int) -> list[Message]:
    """One earlier question as the agent stores it: request, SQL call, result, answer."""
    call_id = f"call_{index}"
    rows = "\n".join(f"| 9{index:02d}{n:07d} | {20 - n} |" for n in range(10))
    arguments = {"sql": f"SELECT npi, COUNT(*) FROM rx WHERE q = {index}", "dataset_name": "d"}
    return [
        Message.user(f"Question {index}: top prescribers in state {index}?"),
        Message("assistant", [ToolUseBlock(call_id, "SQL", arguments)]),
        Message("user", [ToolResultBlock(call_id, f"| npi | rx_count |\n|---|---|\n{rows}")]),
        Message.assistant(f"Answer {index}: NPI 9{index:02d}0000000 leads."),
    ]


def conversation(exchanges: int) -> ModelRequest:
    messages = [m for index in range(exchanges) for m in exchange(index)]
    messages.append(Message.user("Question now: top prescribers in AZ?"))
    return ModelRequest(messages, system="You answer with SQL.", max_tokens=2)


async def respond(model: LocalModel, request: ModelRequest) -> ModelResponse:
    response: ModelResponse | None = None
    async for event in model.stream(request):
        if not isinstance(event, TextDelta):
            response = event if isinstance(event, ModelResponse) else response
    assert response is not None
    return response


@needs_smollm2
async def test_a_fitted_prompt_reports_the_whole_prompts_size_for_the_ratio() -> None:
    """Old: only the fitted prompt's size was reported (what fit the window after the oldest
    turns were left out), so the ratio the agent learns from it (tokens per 4 characters of
    the whole conversation it sent) fell the longer the session grew. Now ``prompt_tokens``
    is the whole prompt's real count; usage stays what was processed."""
    small = LocalModel(n_ctx=2048, n_threads=THREADS)
    large = LocalModel(n_ctx=8192, n_threads=THREADS)
    long, short = conversation(14), conversation(2)
    try:
        weights = await large._ensure_loaded()
        whole = len(large._prepare(weights, long, None).tokens)
        fitted = await respond(small, long)
        fits = await respond(small, short)
    finally:
        await small.aclose()
        await large.aclose()
    assert whole > 2048
    assert fitted.usage.input_tokens + long.max_tokens <= 2048  # what was processed
    assert fitted.prompt_tokens == whole
    assert fits.prompt_tokens == fits.usage.input_tokens  # nothing left out
    # the ratio the agent learns (real tokens / (characters / 4)): from the whole prompt it
    # is the tokenizer's, as on a conversation that fits; from the fitted one far below
    learned_long = fitted.prompt_tokens / (prompt_chars(long) / 4)
    learned_short = fits.usage.input_tokens / (prompt_chars(short) / 4)
    processed_long = fitted.usage.input_tokens / (prompt_chars(long) / 4)
    assert learned_long == pytest.approx(learned_short, rel=0.2)
    assert processed_long < 0.6 * learned_short
