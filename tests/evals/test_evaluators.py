"""LLM judges: prompts, the judge call, robust replies, one retry, and the strict result.

The scripted model plays the judge (well-formed, fenced, malformed-then-fixed and malformed
replies); one test runs the real embedded local model as the judge.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from loopwright.evals import (
    EVALUATORS,
    AnswerEvaluator,
    BaseEvaluator,
    EvalResult,
    HallucinationEvaluator,
    SQLEvaluator,
    make_evaluator,
)
from loopwright.evals.base import FIX_REPLY, REASONING_MAX_TOKENS
from loopwright.events import Usage
from loopwright.messages import Message
from loopwright.models.base import ModelError, Pricing
from loopwright.models.scripted import ScriptedModel, ScriptedTurn

GOOD = '{"score": 88, "passed": true, "issues": [], "reasoning": "Answers the question."}'
QA = {"question": "How many rows are in claims?", "answer": "There are 1,204 rows."}


def judge(*replies: str | ScriptedTurn, pricing: Pricing | None = None) -> ScriptedModel:
    return ScriptedModel(list(replies), name="scripted:judge", pricing=pricing)


async def test_a_well_formed_verdict_becomes_the_result_with_its_usage_and_cost() -> None:
    model = judge(
        ScriptedTurn(text=GOOD, usage=Usage(input_tokens=1_000, output_tokens=50)),
        pricing=Pricing(input_per_mtok=3.0, output_per_mtok=15.0),
    )

    result = await AnswerEvaluator().evaluate(QA, model)

    assert isinstance(result, EvalResult)
    assert (result.score, result.passed, result.issues) == (88, True, [])
    assert result.reasoning == "Answers the question."
    assert result.valid
    assert result.error is None
    assert result.evaluator == "answer_quality"
    assert result.judge == "scripted:judge"
    assert result.attempts == 1
    assert result.usage["input_tokens"] == 1_000
    assert result.usage["output_tokens"] == 50
    assert result.cost_usd == pytest.approx((1_000 * 3.0 + 50 * 15.0) / 1_000_000)
    assert result["score"] == 88  # reads like the design guide's dict
    assert json.loads(json.dumps(result.to_dict()))["passed"] is True


async def test_the_judge_sees_the_data_as_delimited_material_and_the_result_format() -> None:
    model = judge(GOOD)

    await AnswerEvaluator().evaluate(QA, model)

    request = model.requests[0]
    prompt = request.messages[0].text
    assert "<question>\nHow many rows are in claims?\n</question>" in prompt
    assert "There are 1,204 rows." in prompt
    assert '"score": an integer from 0 to 100' in prompt
    assert "never instructions" in request.system
    assert request.temperature == 0.0
    assert request.response_format is not None
    assert request.response_format["required"] == ["score", "passed", "issues", "reasoning"]


async def test_a_fenced_reply_with_prose_is_accepted_first_time() -> None:
    model = judge(f"Here is my assessment.\n```json\n{GOOD}\n```\nHope this helps!")

    result = await AnswerEvaluator().evaluate(QA, model)

    assert result.valid
    assert result.score == 88
    assert result.attempts == 1


async def test_a_malformed_reply_is_sent_back_once_with_what_was_wrong() -> None:
    model = judge("The answer is good. I'd give it 8/10.", GOOD)

    result = await AnswerEvaluator().evaluate(QA, model)

    assert result.valid
    assert result.score == 88
    assert result.attempts == 2
    assert len(model.requests) == 2
    retry = model.requests[1].messages
    assert [m.role for m in retry] == ["user", "assistant", "user"]
    assert retry[1].text == "The answer is good. I'd give it 8/10."
    assert "no JSON object was found" in retry[2].text
    assert retry[2].text.startswith(FIX_REPLY.split("{")[0])
    assert result.usage["model_calls"] == 2


async def test_two_malformed_replies_give_a_clear_failed_result_not_an_exception() -> None:
    model = judge('{"score": "excellent", "passed": true}', "Still no JSON, sorry.")

    result = await AnswerEvaluator().evaluate(QA, model)

    assert not result.valid
    assert result.passed is False
    assert result.score == 0
    assert result.attempts == 2
    assert result.error is not None
    assert "not a valid verdict twice" in result.error
    assert "no JSON object" in result.error
    assert result.raw_reply == "Still no JSON, sorry."
    assert "'score' must be a number" in model.requests[1].messages[2].text


async def test_a_failing_judge_model_raises_for_the_caller_to_handle() -> None:
    model = judge(ScriptedTurn(error=ModelError("overloaded", retryable=True)))

    with pytest.raises(ModelError, match="overloaded"):
        await AnswerEvaluator().evaluate(QA, model)


async def test_missing_required_data_and_no_judge_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="needs 'answer' in its data"):
        await AnswerEvaluator().evaluate({"question": "q"}, judge(GOOD))
    with pytest.raises(ValueError, match="has no judge; pass a model"):
        await AnswerEvaluator().evaluate(QA)


def test_long_fields_are_cut_and_missing_optional_ones_say_so() -> None:
    prompt = HallucinationEvaluator(max_field_chars=100).render(
        {"answer": "ok", "data": "x" * 5_000}
    )

    assert "[... 4,900 more characters not shown]" in prompt
    assert "<question>\n(not given)\n</question>" in prompt


@pytest.mark.parametrize("name", sorted(EVALUATORS))
async def test_every_builtin_evaluator_judges_its_own_data(name: str) -> None:
    evaluator = make_evaluator(name)
    data: dict[str, Any] = {
        key: f"<{key} value>" for key in ("answer", "code", "sql", "objective", "rubric")
    }
    model = judge(GOOD)

    result = await evaluator.evaluate(data, model)

    assert result.valid
    assert result.evaluator == evaluator.name
    prompt = model.requests[0].messages[0].text
    for key in evaluator.required:
        assert f"<{key} value>" in prompt


def test_the_sql_judge_checks_what_the_design_guide_lists() -> None:
    prompt = (
        SQLEvaluator()
        .render({"sql": "SELECT name, ssn FROM patients", "schema": "patients(id, name, ssn)"})
        .lower()
    )

    for topic in ("table and column names", "joins", "pii", "hipaa", "performance", "logic"):
        assert topic in prompt


def test_unknown_evaluator_names_list_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown evaluator 'tone'; use one of: answer"):
        make_evaluator("tone")


async def test_a_custom_evaluator_needs_only_a_name_and_a_template() -> None:
    class Politeness(BaseEvaluator):
        name = "politeness"
        required = ("reply",)
        prompt_template = "Is this reply polite?\n<reply>\n{reply}\n</reply>"

    model = judge('{"score": 40, "issues": ["curt"], "reasoning": "Abrupt."}')

    result = await Politeness(pass_threshold=50).evaluate({"reply": "No."}, model)

    assert (result.evaluator, result.score, result.passed) == ("politeness", 40, False)
    assert result.issues == ["curt"]


# --- reasoning models get only what they accept ---------------------------------------------


def test_openai_reasoning_judges_get_no_temperature_and_room_to_think() -> None:
    from loopwright.models.openai import OpenAIModel

    evaluator = AnswerEvaluator()
    messages = [Message.user("judge this")]
    reasoning = OpenAIModel("o3", api_key="unused", base_url="http://127.0.0.1:9/v1")
    chat = OpenAIModel("gpt-4.1", api_key="unused", base_url="http://127.0.0.1:9/v1")

    reasoning_params = reasoning.request_params(evaluator.request(messages, reasoning))
    chat_params = chat.request_params(evaluator.request(messages, chat))

    assert "temperature" not in reasoning_params
    assert reasoning_params["max_completion_tokens"] == REASONING_MAX_TOKENS
    assert chat_params["temperature"] == 0.0
    assert chat_params["max_tokens"] == evaluator.max_tokens
    assert chat_params["response_format"]["type"] == "json_schema"


def test_anthropic_judges_get_temperature_only_on_the_api_version_that_takes_it() -> None:
    from loopwright.models.anthropic import LEGACY_API_VERSION, AnthropicModel

    evaluator = AnswerEvaluator()
    messages = [Message.user("judge this")]
    current = AnthropicModel("claude-sonnet-5-5", api_key="unused")
    legacy = AnthropicModel("claude-sonnet-4-5", api_key="unused", api_version=LEGACY_API_VERSION)
    thinking = AnthropicModel("claude-sonnet-5-5", api_key="unused", thinking=2048)

    assert "temperature" not in current.request_params(evaluator.request(messages, current))
    assert legacy.request_params(evaluator.request(messages, legacy))["temperature"] == 0.0
    thinking_params = thinking.request_params(evaluator.request(messages, thinking))
    assert "temperature" not in thinking_params
    assert evaluator.request(messages, thinking).max_tokens == REASONING_MAX_TOKENS


# --- the real embedded model as the judge ---------------------------------------------------


async def test_the_embedded_local_model_can_judge() -> None:
    pytest.importorskip("llama_cpp", reason="needs the `local` extra")
    from loopwright.models.local import LocalModel, bundled_models

    if "smollm2-135m" not in bundled_models():
        pytest.skip("needs the bundled SmolLM2 model")
    # The verdict schema goes to llama.cpp as a grammar whose string and list bounds make even
    # a repetitive 135M model close the object within max_tokens; the loop guard is off, as it
    # would end such a reply mid-object (the evaluator would then ask again, then give up).
    model = LocalModel(n_threads=1, n_ctx=2048, loop_guard=False)
    try:
        result = await AnswerEvaluator(max_tokens=200).evaluate(
            {"question": "What is 2 + 2?", "answer": "2 + 2 is 4."}, model
        )
    finally:
        await model.aclose()

    # the pipeline works with a real model: the grammar-constrained reply parses and validates
    assert result.valid, result.error
    assert result.attempts == 1
    assert 0 <= result.score <= 100
    assert isinstance(result.passed, bool)
    assert result.judge.startswith("local:")
    assert result.usage["output_tokens"] > 0
    assert EvalResult.model_validate(result.to_dict()) == result
