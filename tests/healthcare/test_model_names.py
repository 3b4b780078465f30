"""What the healthcare agent makes of a model's name when no mode is asked for: a tiny model
behind an OpenAI-compatible server (Ollama ``qwen2.5:0.5b``, llama.cpp's ``...-0.5b-...gguf``)
gets the compact agent, as the embedded models do; an open reasoning model there (Qwen3,
QwQ, DeepSeek-R1, gpt-oss...) gets turns long enough to reason and still answer, with the
request otherwise as any compatible server's (``max_tokens``, ``temperature``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from loopwright import Agent, MemoryStore
from loopwright.cli.eval import healthcare_limits
from loopwright.evals.suite import load_suite
from loopwright.healthcare.agent import (
    COMPACT_MAX_TURNS,
    REASONING_MAX_OUTPUT_TOKENS,
    healthcare_agent,
    is_small_model,
    parameter_billions,
    reasons_in_its_output,
)
from loopwright.healthcare.prompt import HealthcarePrompt
from loopwright.models import resolve_model
from loopwright.models.openai import OpenAIModel, is_open_reasoning_model, is_reasoning_model
from models.openai_server import OpenAIServer, RecordedRequest, ToolCall, Turn

from .test_eval_compact import _suite

#: A port nothing listens on: these models are made, never called.
NOWHERE = "http://127.0.0.1:9/v1"
QUESTION = "How many pharmacy claims are there?"
COUNT = {
    "sql": "SELECT COUNT(*) AS claims FROM RX_CLAIMS",
    "dataset_name": "claim_count",
    "description": "All pharmacy claims",
}


def render(agent: Agent) -> str:
    """The agent's system prompt, as its first turn sends it."""
    prompt = agent.system_prompt
    assert isinstance(prompt, HealthcarePrompt)
    return prompt.render()


@pytest.mark.parametrize(
    ("name", "billions"),
    [
        ("openai:qwen2.5:0.5b@http://127.0.0.1:11434/v1", 0.5),
        ("openai:gemma3:270m@http://127.0.0.1:11434/v1", 0.27),
        ("openai:smollm2:135m@http://127.0.0.1:11434/v1", 0.135),
        ("SmolLM2-360M-Instruct", 0.36),
        ("qwen2.5-0.5b-instruct-q4_k_m.gguf", 0.5),
        ("llama3.2:1b", 1.0),
        ("deepseek-r1:1.5b", 1.5),
        ("Qwen/Qwen3-1.7B", 1.7),
        ("llama3.2:3b-instruct-q4_K_M", 3.0),
        ("mixtral:8x7b", 56.0),  # eight experts of 7B
        ("qwen3:30b-a3b", 30.0),  # 30B, of which 3B active
        ("Qwen2.5-7B-Instruct-1M", 7.0),  # 7B, with a million-token context
        ("openai:gemma3:1b@http://gpu-7b.local:8080/v1", 1.0),  # not the server's name
        # names that give no size
        ("gpt-4o", None),
        ("gpt-4o-mini-2024-07-18", None),
        ("qwen2.5", None),
        ("llama3.2", None),
        ("claude-3-5-haiku-20241022", None),
        ("qwen2.5-coder-q4_k_m.gguf", None),
        ("gemma3n:e2b", None),
    ],
)
def test_the_parameters_a_models_name_gives(name: str, billions: float | None) -> None:
    assert parameter_billions(name) == billions


@pytest.mark.parametrize(
    ("name", "small"),
    [
        ("openai:qwen2.5:0.5b@http://127.0.0.1:11434/v1", True),
        ("openai:gemma3:270m@http://127.0.0.1:11434/v1", True),
        ("openai:smollm2:135m@http://127.0.0.1:11434/v1", True),
        ("openai:SmolLM2-360M-Instruct@http://127.0.0.1:8000/v1", True),
        ("openai:qwen2.5-0.5b-instruct-q4_k_m.gguf@http://127.0.0.1:8080/v1", True),
        ("openai:llama3.2:1b@http://127.0.0.1:11434/v1", True),
        ("openai:qwen2.5:1.5b@http://127.0.0.1:11434/v1", True),
        ("local:gemma3-270m", True),
        ("local", True),
        ("openai:gemma2:2b@http://127.0.0.1:11434/v1", False),  # the threshold: under 2B
        ("openai:llama3.2:3b@http://127.0.0.1:11434/v1", False),
        ("openai:mixtral:8x7b@http://127.0.0.1:11434/v1", False),
        ("openai:llama3.2@http://127.0.0.1:11434/v1", False),  # no size: not known to be tiny
        ("openai:gpt-4o", False),
        ("anthropic:claude-3-5-haiku-20241022", False),
    ],
)
def test_which_models_are_small(name: str, small: bool) -> None:
    assert is_small_model(name) is small


def test_a_tiny_server_model_gets_the_compact_agent_unless_full_is_asked(claims_db: Path) -> None:
    """``llama3.2:1b`` behind Ollama got the full agent: ten tools, 4,096-token turns and 50
    of them. ``compact=False`` still gives it that."""
    tiny = OpenAIModel("llama3.2:1b", base_url=NOWHERE)
    agent = healthcare_agent(tiny, database=claims_db, store=MemoryStore())
    assert (agent.max_turns, agent.max_output_tokens) == (COMPACT_MAX_TURNS, 512)
    assert render(agent).startswith("You answer questions about healthcare claims data")
    assert len(agent.tools) == 1  # SQL
    full = healthcare_agent(tiny, database=claims_db, store=MemoryStore(), compact=False)
    assert full.max_output_tokens == 4096
    assert render(full).startswith("You are a healthcare data research engineer")
    big = healthcare_agent(
        OpenAIModel("llama3.1:8b", base_url=NOWHERE), database=claims_db, store=MemoryStore()
    )
    assert big.max_output_tokens == 4096


def test_eval_gives_a_tiny_server_model_the_compact_turn_limit(tmp_path: Path) -> None:
    """``loopwright eval --agent healthcare`` follows the same rule for its turn limit."""
    suite = load_suite(_suite(tmp_path))
    tiny = resolve_model(f"openai:qwen2.5:0.5b@{NOWHERE}")
    big = resolve_model(f"openai:qwen2.5:7b@{NOWHERE}")
    assert healthcare_limits(suite, tiny).limits_for(suite.tasks[0]).max_turns == (
        COMPACT_MAX_TURNS
    )
    assert healthcare_limits(suite, big).limits_for(suite.tasks[0]).max_turns == 20


@pytest.mark.parametrize(
    ("name", "reasons"),
    [
        ("qwen3:8b", True),
        ("Qwen/Qwen3-8B", True),
        ("qwen3:30b-a3b-thinking-2507-q4_K_M", True),
        ("qwen3:30b-a3b-instruct-2507-q4_K_M", False),  # Qwen3's instruct models do not think
        ("Qwen3-4B-Instruct-2507", False),
        ("qwen3-coder:30b", False),
        ("qwq:32b", True),
        ("bartowski/Qwen_QwQ-32B-GGUF", True),
        ("deepseek-r1:1.5b", True),
        ("DeepSeek-R1-Distill-Qwen-1.5B-Q4_K_M.gguf", True),
        ("deepseek-reasoner", True),
        ("gpt-oss:20b", True),
        ("openai/gpt-oss-120b", True),
        ("phi4-reasoning:14b", True),
        ("phi4-mini-reasoning", True),
        ("microsoft/Phi-4-reasoning-plus", True),
        ("magistral:24b", True),
        ("mistralai/Magistral-Small-2506", True),
        ("qwen2.5:7b", False),
        ("phi4:14b", False),
        ("deepseek-v3", False),
        ("llama3.2", False),
        ("gpt-4.1", False),
    ],
)
def test_open_reasoning_models_by_name(name: str, reasons: bool) -> None:
    assert is_open_reasoning_model(name) is reasons
    # the OpenAI provider's own notion (it sends these as any compatible server's models)
    assert is_reasoning_model(name) is False


@pytest.mark.parametrize("name", ["qwen3:8b", "gpt-oss:20b", "deepseek-r1:8b", "magistral:24b"])
def test_an_open_reasoning_model_has_room_to_reason_and_answer(claims_db: Path, name: str) -> None:
    """Qwen3 on Ollama thinks (``reasoning_content``) before each turn, and the thinking
    counts against ``max_tokens``: within the agent's 4,096 the answer was cut off. The
    request is otherwise a compatible server's: ``max_tokens``, a temperature."""
    thinking = 6_000  # tokens the model spends thinking about each turn here

    def served(request: RecordedRequest) -> Turn:
        limit = request.body["max_tokens"]
        if limit < thinking + 500:  # the turn ends while it still thinks
            return Turn(reasoning="Let me think. " * 40, finish_reason="length")
        if not any(m.get("role") == "tool" for m in request.body["messages"]):
            return Turn(reasoning="The claims table. " * 40, tool_calls=[ToolCall("SQL", COUNT)])
        return Turn(reasoning="Now the answer. " * 40, text="There are 20,000 pharmacy claims.")

    with OpenAIServer(served, model=name) as server:
        model = OpenAIModel(name, base_url=server.base_url)
        assert reasons_in_its_output(model)
        agent = healthcare_agent(model, database=claims_db, store=MemoryStore())
        result = agent.run_sync(QUESTION)

        assert result.stop_reason == "end_turn", [e for e in result.events if e["type"] == "error"]
        assert result.text == "There are 20,000 pharmacy claims."
        first = server.chat_bodies[0]
        assert first["max_tokens"] == REASONING_MAX_OUTPUT_TOKENS
        assert "max_completion_tokens" not in first
        assert "temperature" in first
        assert len(server.chat_requests) == 2


def test_a_tiny_reasoning_model_is_compact_and_keeps_room_to_reason(claims_db: Path) -> None:
    """``deepseek-r1:1.5b``: compact (a tiny model), with a reasoning model's turns."""
    model = OpenAIModel("deepseek-r1:1.5b", base_url=NOWHERE)
    agent = healthcare_agent(model, database=claims_db, store=MemoryStore())
    assert agent.max_turns == COMPACT_MAX_TURNS
    assert agent.max_output_tokens == REASONING_MAX_OUTPUT_TOKENS


def test_a_chat_model_behind_a_server_keeps_the_agents_output_limit(claims_db: Path) -> None:
    model = OpenAIModel("qwen2.5:7b", base_url=NOWHERE)
    assert not reasons_in_its_output(model)
    agent = healthcare_agent(model, database=claims_db, store=MemoryStore())
    assert agent.max_output_tokens == 4096
