"""Consult: a second model asked inside a real agent run, what it is sent, what it costs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from loopwright import Agent, MemoryStore, ScriptedModel, WriteTool, call
from loopwright.events import Usage
from loopwright.messages import Message, TextBlock, ToolResultBlock, ToolUseBlock
from loopwright.models.base import Model, ModelError, ModelEvent, ModelRequest, Pricing
from loopwright.models.openai import OpenAIModel
from loopwright.models.scripted import ScriptedTurn
from loopwright.tools import ToolRegistry
from loopwright.tools.consult import CONSULT_SYSTEM, Consult, ConsultTool, conversation_brief

REVIEWER_PRICES = Pricing(input_per_mtok=3.0, output_per_mtok=15.0)


class PricedOnlyByItsTable(Model):
    """A consulted model whose responses carry no cost, only token counts (as some
    providers answer): Consult must price them with the model's own ``pricing``."""

    def __init__(self, inner: ScriptedModel, pricing: Pricing) -> None:
        self.inner = inner
        self.name = "reviewer"
        self.pricing = pricing

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        async for event in self.inner.stream(request):
            yield event


def agent_with(parent: ScriptedModel, consult: Consult, tmp_path: Path, **kwargs: object) -> Agent:
    return Agent(
        parent,
        tools=[WriteTool, consult],
        store=MemoryStore(),
        workspace_root=str(tmp_path / "ws"),
        **kwargs,  # type: ignore[arg-type]
    )


async def test_the_second_model_sees_a_brief_and_its_cost_counts_in_the_run(
    tmp_path: Path,
) -> None:
    reviewer = ScriptedModel(
        [
            ScriptedTurn(
                "Step 2 is risky: back up plan.md first.",
                usage=Usage(input_tokens=1_000, output_tokens=200),
            )
        ]
    )
    parent = ScriptedModel(
        [
            ["I will write the plan first.", call("Write", file_path="plan.md", content="1. x")],
            call("Consult", question="Is my plan sound?", context="DRAFT: delete old data"),
            "Plan reviewed.",
        ]
    )
    agent = agent_with(
        parent,
        Consult(PricedOnlyByItsTable(reviewer, REVIEWER_PRICES)),
        tmp_path,
        system_prompt="You are a careful data engineer.",
    )
    result = await agent.collect("Migrate the orders table to the new schema.")
    assert result.text == "Plan reviewed."

    [request] = reviewer.requests
    assert request.system == CONSULT_SYSTEM
    assert not request.tools
    sent = request.messages[0].text
    assert "You are a careful data engineer." in sent
    assert "USER: Migrate the orders table to the new schema." in sent
    assert "ASSISTANT: I will write the plan first." in sent
    assert 'CALL Write {"file_path": "plan.md", "content": "1. x"}' in sent
    assert "RESULT Write: Created plan.md" in sent
    assert "CALL Consult" not in sent  # the call being made is not part of the brief
    assert sent.index("The agent asks:\nIs my plan sound?") > sent.index("RESULT Write")
    assert sent.endswith("Material the agent attached:\nDRAFT: delete old data")

    consult_result = next(
        e for e in result.events if e.type == "tool_result" and e.name == "Consult"
    )
    assert consult_result.is_error is False
    assert consult_result.content == (
        "Second opinion from reviewer:\n\nStep 2 is risky: back up plan.md first."
    )
    consult_cost = REVIEWER_PRICES.cost(Usage(input_tokens=1_000, output_tokens=200))
    assert consult_cost == pytest.approx(0.006)
    done = result.events[-1]
    assert done.type == "done"
    assert done.usage.cost_usd == pytest.approx(consult_cost)  # the parent model is unpriced
    assert done.usage.model_calls == 3 + 1
    assert done.usage.input_tokens >= 1_000
    assert result.session.usage.cost_usd == pytest.approx(consult_cost)
    [usage_event] = [e for e in result.events if e.type == "usage" and e.agent]
    assert usage_event.agent == "agent/consult"
    assert usage_event.cost_usd == pytest.approx(consult_cost)
    assert usage_event.input_tokens == 1_000


async def test_the_consult_cost_counts_against_the_run_budget(tmp_path: Path) -> None:
    reviewer = ScriptedModel(
        [ScriptedTurn("Fine.", usage=Usage(input_tokens=10_000, output_tokens=1_000))],
        pricing=REVIEWER_PRICES,
    )
    parent = ScriptedModel([call("Consult", question="Review?"), "Never reached."])
    agent = agent_with(parent, Consult(reviewer), tmp_path, max_cost_usd=0.01)
    result = await agent.collect("Do it")
    assert result.stop_reason == "cost_budget"
    assert result.usage.cost_usd == pytest.approx(REVIEWER_PRICES.cost(Usage(10_000, 1_000)))


async def test_the_running_summary_and_the_task_stay_in_a_long_conversation(
    tmp_path: Path,
) -> None:
    reviewer = ScriptedModel(["Looks right."])
    parent = ScriptedModel([call("Consult", question="Anything I missed?"), "Ok."])
    agent = agent_with(parent, Consult(reviewer, max_context_chars=3_000), tmp_path)
    session = agent.new_session()
    session.append(Message.user("TASK: reconcile the Q3 ledger with the bank export."))
    for n in range(60):
        session.append(Message("assistant", [ToolUseBlock(f"c{n}", "Write", {"n": n})]))
        session.append(Message("user", [ToolResultBlock(f"c{n}", f"wrote part {n} " * 30)]))
    session.append(Message.assistant("Parts written."))
    session.summary = "Found 3 mismatched entries in September."
    await agent.collect("Check my work.", session)
    sent = reviewer.requests[0].messages[0].text
    assert len(sent) < 3_000 + 200
    assert "TASK: reconcile the Q3 ledger" in sent
    assert "Summary of the earlier conversation:\nFound 3 mismatched entries" in sent
    assert "earlier messages omitted]" in sent
    assert "USER: Check my work." in sent  # the newest turns are kept
    assert "RESULT Write: wrote part 59" in sent
    assert "wrote part 0 " not in sent


def test_conversation_brief_shapes_and_bounds() -> None:
    long_result = "line\n" * 2_000
    messages = [
        Message.user("Find the bug."),
        Message(
            "assistant",
            [TextBlock("Looking."), ToolUseBlock("a", "Bash", {"command": "pytest -x"})],
        ),
        Message("user", [ToolResultBlock("a", long_result, is_error=True)]),
    ]
    brief = conversation_brief(messages, budget=2_000)
    assert brief.splitlines()[0] == "Recent conversation (oldest first):"
    assert "USER: Find the bug." in brief
    assert 'CALL Bash {"command": "pytest -x"}' in brief
    assert "RESULT Bash (error): line line" in brief
    assert "more characters]" in brief
    assert len(brief) < 2_000
    assert "(no messages yet)" in conversation_brief([], budget=1_000)
    huge = [Message.user("x" * 50_000)]
    assert len(conversation_brief(huge, budget=1_000)) < 1_700


async def test_without_a_configured_model_the_agents_own_model_is_asked(tmp_path: Path) -> None:
    def script(request: ModelRequest) -> object:
        if request.system == CONSULT_SYSTEM:
            return "Independent view: fine."
        if any(m.tool_results for m in request.messages):
            return "Done."
        return call("Consult", question="Second look?")

    own = ScriptedModel(script)
    agent = Agent(
        own, tools=[ConsultTool], store=MemoryStore(), workspace_root=str(tmp_path / "ws")
    )
    result = await agent.collect("Go")
    assert result.text == "Done."
    consults = [r for r in own.requests if r.system == CONSULT_SYSTEM]
    assert len(consults) == 1
    assert not consults[0].tools


async def test_a_failing_model_is_a_tool_error_not_a_crash(tmp_path: Path) -> None:
    broken = ScriptedModel([ScriptedTurn(error=ModelError("overloaded", retryable=True))])
    registry = ToolRegistry(tmp_path)
    registry.register_all([Consult(broken)])
    result = await registry.execute("Consult", {"question": "Review?"})
    assert result["is_error"] is True
    assert "Consult could not get an answer from scripted: overloaded" in str(result["content"])
    outside_a_run = ToolRegistry(tmp_path)
    outside_a_run.register(ConsultTool)
    alone = await outside_a_run.execute("Consult", {"question": "Review?"})
    assert "configure one with Consult(model=...)" in str(alone["content"])


def test_a_bad_model_string_fails_when_the_agent_is_built(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ModelError, match="OPENAI_API_KEY"):
        Consult("openai:gpt-4.1")
    with pytest.raises(ModelError, match="unknown model"):
        Consult("gpt4-turbo-ultra")


async def test_consulting_an_openai_compatible_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The consulted model is the real OpenAI SDK against a loopback Chat Completions server."""
    from models.openai_server import OpenAIServer, Turn

    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    with OpenAIServer([Turn("Use a transaction.", prompt_tokens=500, completion_tokens=50)]) as (
        server
    ):
        reviewer = OpenAIModel("gpt-4.1", base_url=server.base_url, pricing=REVIEWER_PRICES)
        parent = ScriptedModel([call("Consult", question="How do I migrate safely?"), "Ok."])
        agent = agent_with(parent, Consult(reviewer), tmp_path)
        result = await agent.collect("Migrate the table.")
        await reviewer.aclose()
    [body] = server.chat_bodies
    assert body["model"] == "gpt-4.1"
    prompt = body["messages"][-1]["content"]
    prompt_text = prompt if isinstance(prompt, str) else prompt[0]["text"]
    assert "How do I migrate safely?" in prompt_text
    assert "USER: Migrate the table." in prompt_text
    consult_result = next(e for e in result.events if e.type == "tool_result")
    assert consult_result.content == f"Second opinion from {reviewer.name}:\n\nUse a transaction."
    expected = REVIEWER_PRICES.cost(Usage(input_tokens=500, output_tokens=50))
    assert result.usage.cost_usd == pytest.approx(expected)
    assert result.usage.input_tokens >= 500


async def test_a_model_string_is_resolved_and_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from models.openai_server import OpenAIServer

    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    with OpenAIServer(["Split it into batches."]) as server:
        consult = Consult(f"openai:gpt-4.1-mini@{server.base_url}")
        parent = ScriptedModel([call("Consult", question="Plan the backfill?"), "Ok."])
        result = await agent_with(parent, consult, tmp_path).collect("Backfill the table.")
        await consult.aclose()
    assert server.chat_bodies[0]["model"] == "gpt-4.1-mini"
    consult_result = next(e for e in result.events if e.type == "tool_result")
    assert consult_result.content.endswith(":\n\nSplit it into batches.")
    assert result.usage.model_calls == 3  # two parent turns and the consult
