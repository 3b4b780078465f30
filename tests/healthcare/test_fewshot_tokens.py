"""FewShotModel's worked examples count once: in its smaller context window, not again in
the token ratio the agent learns from the model's counts (``ModelResponse.prompt_tokens``).

Old: the inner model's count of the prompt, examples included, was all the agent had to
learn from, so its ratio grew by the examples' share on top of the window kept free for
them, and trimming and summaries started early on the embedded model.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from loopwright import Agent, tool
from loopwright.agent import TOKEN_RATIO_KEY
from loopwright.events import TextDelta
from loopwright.healthcare.prompt import Example, FewShotModel
from loopwright.messages import Message
from loopwright.models.base import Model, ModelRequest, ModelResponse, prompt_chars
from loopwright.models.scripted import ScriptedModel, call

SQL_SCHEMA = {
    "name": "SQL",
    "description": "Run one read-only SQL query and save the result.",
    "input_schema": {
        "type": "object",
        "properties": {
            "sql": {"type": "string"},
            "dataset_name": {"type": "string"},
            "description": {"type": "string"},
        },
        "required": ["sql", "dataset_name", "description"],
    },
}


def example(drug: str, size: int) -> Example:
    rows = tuple((f"{1_000_000_000 + 7919 * n}", 40 - n) for n in range(size))
    return Example(
        f"Who are the top {size} prescribers of {drug} in Ohio?",
        f"SELECT PRESCRIBER_NPI_NBR, COUNT(*) AS rx_count FROM RX_CLAIMS WHERE NDC_DRUG_NM = "
        f"'{drug}' GROUP BY 1 ORDER BY 2 DESC LIMIT {size}",
        f"{drug.lower()}_top{size}",
        f"Top {size} {drug} prescribers",
        columns=("PRESCRIBER_NPI_NBR", "rx_count"),
        rows=rows,
        answer=f"NPI {rows[0][0]} leads {drug} with {rows[0][1]} claims.",
        topic=drug,
        size=size,
    )


EXAMPLES = (example("HUMIRA", 5), example("ELIQUIS", 10))


@tool(name="SQL")
def sql_tool(sql: str, dataset_name: str = "result", description: str = "") -> str:
    """Run one read-only SQL query and save the result."""
    return f"Saved 1 row × 1 column to {dataset_name}.csv.\nAll rows:\n| n |\n| 1 |"


def agent_request() -> ModelRequest:
    """A turn as the agent sends it: its system prompt, the SQL tool, the conversation."""
    return ModelRequest(
        [Message.user("Find the top 10 prescribers of OZEMPIC in Texas.")],
        system="You answer questions about pharmacy claims with SQL. " * 8,
        tools=[SQL_SCHEMA],
        max_tokens=2,
    )


async def respond(model: Model, request: ModelRequest) -> ModelResponse:
    response: ModelResponse | None = None
    async for event in model.stream(request):
        if not isinstance(event, TextDelta):
            response = event if isinstance(event, ModelResponse) else response
    assert response is not None
    return response


async def test_a_counting_models_prompt_tokens_leave_the_examples_share_out() -> None:
    """A model that counts its prompt (a server's model): usage counts the examples it
    processed; ``prompt_tokens``, what the ratio learns from, is the agent's part."""
    inner = ScriptedModel([call("SQL", sql="SELECT 1")], chars_per_token=4.0)
    fewshot = FewShotModel(inner, EXAMPLES)
    request = agent_request()
    response = await respond(fewshot, request)
    [shown] = inner.requests
    assert len(shown.messages) == 9  # two examples of four turns, then the request
    assert response.usage.input_tokens == math.ceil(prompt_chars(shown) / 4)
    assert response.prompt_tokens is not None
    assert abs(response.prompt_tokens - prompt_chars(request) / 4) <= 1
    assert response.prompt_tokens < response.usage.input_tokens / 2
    assert fewshot.context_window < inner.context_window  # where the examples count


async def test_a_model_that_only_echoes_the_estimate_teaches_nothing_still() -> None:
    """A server without usage reports the request's estimate: the agent learns nothing from
    it (it compares the two), so no share of it is taken out."""
    inner = ScriptedModel([call("SQL", sql="SELECT 1")])
    request = agent_request()
    request.estimated_input_tokens = 321
    response = await respond(FewShotModel(inner, EXAMPLES), request)
    assert response.usage.input_tokens == 321
    assert response.prompt_tokens is None


llama_cpp = pytest.importorskip("llama_cpp", reason="needs the `local` extra")

from loopwright.models.local import LocalModel, bundled_models  # noqa: E402


@pytest.mark.skipif("smollm2-135m" not in bundled_models(), reason="needs the bundled SmolLM2")
async def test_the_embedded_model_counts_the_prompt_without_the_pinned_examples() -> None:
    """On the embedded model the ratio's count is exact: the same prompt rendered and
    tokenized without the examples, which is what the model alone counts for the request."""
    local = LocalModel(n_threads=1)
    fewshot = FewShotModel(local, EXAMPLES)
    request = agent_request()
    try:
        alone = await respond(local, request)
        shown = await respond(fewshot, request)
    finally:
        await fewshot.aclose()
    assert shown.usage.input_tokens > alone.usage.input_tokens + 200  # the examples, processed
    assert shown.prompt_tokens == alone.usage.input_tokens
    assert fewshot.context_window < local.context_window


def test_the_agent_learns_its_ratio_without_the_examples(tmp_path: Path) -> None:
    """End to end: an agent on FewShotModel around a model counting 4 characters a token,
    exactly the agent's own estimate. The ratio it learns stays 1 (nothing to correct);
    learning from the count with the examples in it, it had taken the prompt for several
    times its size, and trimmed and summarised early."""
    inner = ScriptedModel([call("SQL", sql="SELECT 1"), "Done."], chars_per_token=4.0)
    agent = Agent(FewShotModel(inner, EXAMPLES), tools=[sql_tool], workspace_root=str(tmp_path))
    session = agent.new_session()
    result = agent.run_sync("Find the top 10 prescribers of OZEMPIC in Texas.", session)
    assert result.stop_reason == "end_turn", result.events[-1]
    counted = [r.estimated_input_tokens for r in inner.requests]
    assert len(counted) == 2
    ratio = session.metadata[TOKEN_RATIO_KEY]["ratio"] if TOKEN_RATIO_KEY in session.metadata else 1
    assert 0.9 <= ratio <= 1.1, ratio
