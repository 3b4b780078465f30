"""The context estimate calibrated by the model's own token counts.

The agent estimates a prompt's tokens as its characters / 4. A tokenizer that spends a token
on every digit (Gemma, SmolLM2) makes about 1.4 characters a token of claims data (NPIs, NDC
codes, dates, amounts): the prompt went over the window long before trimming started, and
the provider refused it. Every response reports the prompt's real size; the agent now learns
from it. The scripted model counts its prompts as such a tokenizer does and refuses one over
its window, as a provider does.
"""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import pytest

import loopwright.agent as agent_module
from loopwright import MemoryStore, call, tool
from loopwright.agent import SUMMARY_SYSTEM
from loopwright.events import Usage
from loopwright.models.base import ModelError, ModelRequest
from loopwright.models.scripted import (
    ScriptedModel,
    ScriptedTurn,
    ScriptFunction,
    TurnSpec,
    prompt_tokens,
    to_turn,
)

from .helpers import make_agent

#: the session metadata key of the learned ratio (looked up so that the tests run, and
#: fail on their assertions, against the agent before calibration)
TOKEN_RATIO_KEY = getattr(agent_module, "TOKEN_RATIO_KEY", "token_ratio")


def claims_rows(n: int, size: int = 3_000) -> str:
    """``size`` characters of claims rows: mostly digits, as SQL results on claims are."""
    lines = ["NPI,NDC,FILL_DATE,PAID"]
    i = n * 1000
    while sum(len(line) + 1 for line in lines) < size:
        i += 1
        lines.append(
            f"{1003000000 + i * 7919},{i % 99999:05d}-{i * 37 % 10000:04d}-{i % 100:02d},"
            f"2023-{i % 12 + 1:02d}-{i % 28 + 1:02d},{i * 13 % 1000}.{i % 100:02d}"
        )
    return "\n".join(lines)[:size]


@tool
async def claims(n: int) -> str:
    """Claims rows of batch ``n``."""
    return f"batch {n}\n" + claims_rows(n)


def plain_estimate(request: ModelRequest) -> int:
    """The request's size as characters / 4 (the estimate before calibration)."""
    chars = len(request.system) + sum(len(json.dumps(t)) for t in request.tools)
    return (chars + sum(m.char_size() for m in request.messages)) // 4


def digit_tokens(request: ModelRequest) -> int:
    return prompt_tokens(request, 4.0, True)


def batches(steps: int) -> ScriptFunction:
    """A script asking for ``steps`` batches of claims, one a turn, then answering."""

    def script(request: ModelRequest) -> TurnSpec:
        if request.system == SUMMARY_SYSTEM:
            return "The user looked at claims batches."
        done = sum(len(m.tool_results) for m in request.messages if m.role == "user")
        asked = sum(1 for m in request.messages if m.tool_uses)
        if asked >= steps or done >= steps:
            return "All batches read."
        return call("claims", n=asked)

    return script


def counted(script: ScriptFunction, *, cached: int = 0, report: bool = True) -> ScriptFunction:
    """``script`` whose turns report the prompt's real size, ``cached`` tokens of it read
    from a prompt cache (as Anthropic and OpenAI report a cached prefix), or no usage at all
    (``report=False``: zero tokens, as some servers do)."""

    def play(request: ModelRequest) -> ScriptedTurn:
        spec = script(request)
        assert not inspect.isawaitable(spec)
        turn = to_turn(spec)
        real = digit_tokens(request)
        if not report:
            turn.usage = Usage(output_tokens=5)
        else:
            read = min(cached, real - 1)
            turn.usage = Usage(input_tokens=real - read, output_tokens=5, cache_read_tokens=read)
        return turn

    return play


def test_digit_heavy_results_are_trimmed_before_the_window_is_exceeded(tmp_path: Path) -> None:
    """Eight results of 3,000 characters of claims rows (each ~2,300 tokens to a tokenizer
    that spends a token on every digit, 750 by the estimate) in a 12,000-token window: the
    fifth went over the window while the estimate said 40% of it, and the run failed."""
    model = ScriptedModel(batches(8), context_window=12_000, token_per_digit=True)
    agent = make_agent(model, tmp_path, tools=[claims], keep_recent_tool_results=2)
    session = agent.new_session()
    result = agent.run_sync("read the claims batches", session)
    assert result.stop_reason == "end_turn", result.events[-1]
    turns = [r for r in model.requests if r.system != SUMMARY_SYSTEM]
    real = [digit_tokens(r) for r in turns]
    assert max(real) <= 12_000
    # old outputs were trimmed: the prompt stays under the threshold, as the model counts it
    assert real[-1] <= 12_000 * 0.8
    last = turns[-1]
    texts = [r.text for m in last.messages for r in m.tool_results]
    assert any("was trimmed to save context" in t for t in texts)
    # the estimate the requests carry follows the model's count once it has seen one
    for request, size in zip(turns[2:], real[2:], strict=True):
        assert abs(request.estimated_input_tokens - size) < 0.25 * size
    # what it learned is kept with the session: about 3 tokens for 4 characters of claims
    saved = session.metadata[TOKEN_RATIO_KEY]
    assert saved["model"] == "scripted"
    assert 2.0 < saved["ratio"] < 4.0
    # and a single result is cut to a quarter of the budget as the model counts it
    assert agent.registry_for(session).max_output_chars < 12_000 * 0.8 / 2.0


def test_cached_prompt_tokens_are_part_of_the_prompt(tmp_path: Path) -> None:
    """A provider caching the prompt reports most of it as ``cache_read_tokens`` and only
    the new part as ``input_tokens``: the whole is what fills the window."""
    script = counted(batches(8), cached=5_000)
    model = ScriptedModel(script, context_window=12_000, token_per_digit=True)
    agent = make_agent(model, tmp_path, tools=[claims], keep_recent_tool_results=2)
    session = agent.new_session()
    result = agent.run_sync("read the claims batches", session)
    assert result.stop_reason == "end_turn", result.events[-1]
    assert max(digit_tokens(r) for r in model.requests) <= 12_000
    assert session.metadata[TOKEN_RATIO_KEY]["ratio"] > 2.0


def test_a_model_reporting_no_usage_keeps_the_plain_estimate(tmp_path: Path) -> None:
    """Zero tokens reported (a server without usage) teaches nothing: the estimate stays
    characters / 4, trimming starts where it always did, nothing is saved."""
    runs = []
    for report in (False, True):
        # True: the default scripted model, which reports the request's own estimate
        script = counted(batches(16), report=False) if not report else batches(16)
        model = ScriptedModel(script, context_window=12_000)
        agent = make_agent(model, tmp_path, tools=[claims], keep_recent_tool_results=2)
        session = agent.new_session()
        result = agent.run_sync("read the claims batches", session)
        assert result.stop_reason == "end_turn", result.events[-1]
        assert TOKEN_RATIO_KEY not in session.metadata
        assert all(r.estimated_input_tokens == plain_estimate(r) for r in model.requests)
        trimmed = [
            sum("was trimmed" in b.text for m in r.messages for b in m.tool_results)
            for r in model.requests
        ]
        runs.append((trimmed, agent.registry_for(session).max_output_chars))
    assert runs[0] == runs[1]
    trimmed, limit = runs[0]
    assert trimmed[-1] > 0  # the estimate reached the threshold: old outputs were trimmed
    assert trimmed.index(next(t for t in trimmed if t)) == 13  # as it always did
    assert limit == 9_600


def test_a_resumed_session_starts_calibrated(tmp_path: Path) -> None:
    """Every one-shot CLI question is a new process: the ratio learned by the session's
    earlier questions is used by the next one's first request (for the same model only)."""
    store = MemoryStore()
    model = ScriptedModel(batches(3), context_window=50_000, token_per_digit=True)
    agent = make_agent(model, tmp_path, tools=[claims], store=store)
    session = agent.new_session()
    assert agent.run_sync("read three batches", session).ok
    learned = session.metadata[TOKEN_RATIO_KEY]["ratio"]
    assert learned > 2.0

    again = ScriptedModel(["Nothing more."], context_window=50_000, token_per_digit=True)
    fresh = make_agent(again, tmp_path, tools=[claims], store=store)
    resumed = store.load(session.id)
    assert resumed is not None
    assert fresh.run_sync("anything else?", resumed).ok
    first = again.requests[0]
    assert abs(first.estimated_input_tokens - plain_estimate(first) * learned) <= learned
    assert abs(first.estimated_input_tokens - digit_tokens(first)) < 0.2 * digit_tokens(first)

    # another model (another tokenizer) does not take it over
    other = ScriptedModel(["Fine."], name="other", context_window=50_000)
    third = make_agent(other, tmp_path, tools=[claims], store=store)
    assert third.run_sync("and now?", store.load(session.id)).ok
    assert other.requests[0].estimated_input_tokens == plain_estimate(other.requests[0])


def test_a_new_session_starts_from_what_the_agent_learned(tmp_path: Path) -> None:
    model = ScriptedModel(batches(2), context_window=50_000, token_per_digit=True)
    lw = make_agent(model, tmp_path, tools=[claims])
    assert lw.run_sync("two batches", lw.new_session()).ok
    learned = lw._learned["scripted"]
    assert learned > 1.5
    model._function = lambda request: "Hello."
    lw.run_sync("hi", lw.new_session())
    request = model.requests[-1]
    assert abs(request.estimated_input_tokens - plain_estimate(request) * learned) <= learned


def test_the_ratio_is_bounded_and_rises_faster_than_it_falls() -> None:
    _TokenRatio = agent_module._TokenRatio
    ratio = _TokenRatio("m")
    assert not ratio.observe(4_000, 0)  # no count
    assert not ratio.observe(40, 500)  # a tiny prompt is no measure
    assert ratio.value == 1.0
    assert ratio.observe(4_000, 10**9)  # a wrong report cannot blind the agent
    assert ratio.value == _TokenRatio.MAX
    low = _TokenRatio("m")
    low.observe(4_000, 1)
    assert low.value == _TokenRatio.MIN
    r = _TokenRatio("m")
    r.observe(4_000, 1_000)  # 1.0
    r.observe(4_000, 3_000)  # measured 3.0
    up = r.value
    assert up > 2.0
    r.observe(4_000, 1_000)  # measured 1.0
    assert r.value > 1.0 + (up - 1.0) / 2  # falls slowly: an overcount only trims early


def _question_script(path: Path, window: int, n: int) -> str:
    """A scripted model for one question of a session: the healthcare agent's SQL on
    claims rows (NPIs, NDC codes, dates, amounts), then the answer; counting its prompts as
    a small model's tokenizer does (3 characters a token, a token for every digit) and
    refusing one over ``window``. The first text turns also serve a summary request, should
    the agent make one first."""
    query = (
        "SELECT PRESCRIBER_NPI_NBR, NDC_CD, SERVICE_DATE_DD, PAID_AMT, DISPENSED_QUANTITY_VAL"
        f" FROM rx_claims ORDER BY CLAIM_ID LIMIT 10 OFFSET {n * 10}"
    )
    summary = "Earlier the user looked at claims rows; each was saved to a dataset."
    turns = [
        {
            "text": summary,
            "call": "SQL",
            "input": {"sql": query, "description": f"rows {n}", "dataset_name": f"rows_{n}"},
        },
        f"Batch {n} is saved as rows_{n}.",
        f"Batch {n} is saved as rows_{n}.",
        f"Batch {n} is saved as rows_{n}.",
    ]
    data = {"context_window": window, "chars_per_token": 3, "token_per_digit": True}
    path.write_text(json.dumps({**data, "turns": turns}), encoding="utf-8")
    return f"scripted:{path}"


def test_a_cli_session_of_claims_questions_stays_in_a_small_window(
    loopwright_home: Path, tmp_path: Path
) -> None:
    """``loopwright healthcare --session S`` one question a process, on a model whose
    tokenizer makes ~1.7 tokens of what the estimate takes for one: the fourth question's
    prompt went over the 12,000-token window while the estimate put it at 65% of it, and
    every later question of the session failed ("prompt is too long"). The ratio learned by
    the first question is kept with the session, so each new process trims in time."""
    from cli_process import cli_env, run_cli
    from loopwright.sessions.sqlite import SQLiteStore

    env = cli_env(loopwright_home)
    for n in range(7):
        script = _question_script(tmp_path / "model.json", 12_000, n)
        args = ["healthcare", "--rows", "1000", "-m", script, "--session", "claims"]
        done = run_cli([*args, f"Show me claims batch {n}"], env=env, cwd=tmp_path)
        assert done.returncode == 0, (n, done.stdout[-600:])
        assert "prompt is too long" not in done.stdout + done.stderr
    store = SQLiteStore(loopwright_home / "sessions.db")
    try:
        session = store.load("claims")
    finally:
        store.close()
    assert session is not None
    saved = session.metadata[TOKEN_RATIO_KEY]
    assert saved["model"] == "scripted:model.json"
    assert saved["ratio"] > 1.3
    # older turns were summarised to make room (a question whose first request was a
    # summary's was answered by the turn after); the log keeps every result whole
    assert session.context_start > 0
    assert session.summary  # one of the script's texts: each can answer a summary request
    results = [b for m in session.messages for b in m.tool_results]
    assert len(results) >= 4
    assert all(r.text.startswith("Saved 10 rows") for r in results)
    answers = [m.text for m in session.messages if m.role == "assistant" and m.text]
    assert answers[-1].startswith("Batch 6 is saved")


def test_a_script_file_sets_the_window_the_tokenizer_and_each_turns_usage(tmp_path: Path) -> None:
    from loopwright.models.scripted import load_script

    path = tmp_path / "s.json"
    turns = [{"text": "hi", "usage": {"input_tokens": 0, "output_tokens": 0}}, "again"]
    options = {"context_window": 3_576, "chars_per_token": 2.5, "token_per_digit": True}
    path.write_text(json.dumps({**options, "turns": turns}), encoding="utf-8")
    model = load_script(str(path))
    assert model.context_window == 3_576
    assert (model.chars_per_token, model.token_per_digit) == (2.5, True)
    assert model._turns[0].usage == Usage()  # type: ignore[union-attr]
    # a reply to a prompt over the window is refused, as a provider refuses it
    lw = make_agent(model, tmp_path)
    result = lw.run_sync("1" * 3_000 + " x" * 2_000)
    assert result.stop_reason == "error"
    assert "prompt is too long: 4,600 tokens > 3,576 maximum" in result.events[-1].detail  # type: ignore[union-attr]

    for bad, said in (
        ({"context_window": "big"}, "context_window must be a positive number, got 'big'"),
        ({"chars_per_token": 0}, "chars_per_token must be a positive number, got 0"),
        ({"token_per_digit": 1}, "token_per_digit must be true or false, got 1"),
        ({"window": 5}, "unknown key(s) window; expected turns, delay"),
    ):
        path.write_text(json.dumps({**bad, "turns": ["x"]}), encoding="utf-8")
        with pytest.raises(ModelError, match=re.escape(said)):
            load_script(str(path))
    path.write_text(json.dumps([{"text": "x", "usage": 5}]), encoding="utf-8")
    with pytest.raises(ModelError, match="turn 1: usage is"):
        load_script(str(path))


def test_the_scripted_tokenizer_counts_images_in_tool_results_as_the_estimate_does() -> None:
    """A chart Read back is an image inside a tool result: the scripted model's count and the
    agent's estimate must both see it, or a window test with charts would prove nothing."""
    from loopwright.messages import ImageBlock, Message, TextBlock, ToolResultBlock

    result = ToolResultBlock("t1", [TextBlock("Image chart.png (9 bytes):"), ImageBlock("x")])
    request = ModelRequest(messages=[Message("user", [result])], system="s")
    assert prompt_tokens(request, 4.0, False) >= 1600
    assert abs(prompt_tokens(request, 4.0, False) - plain_estimate(request)) <= 1
