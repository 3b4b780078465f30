"""The healthcare agent on the embedded model (``loopwright healthcare --model local``): a
session longer than the model's context window, a model stuck repeating itself, and the cost
of the tool call grammar. Everything runs the real bundled models through llama.cpp."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from loopwright import MemoryStore
from loopwright.events import Done, TextDelta
from loopwright.messages import Message, ToolResultBlock, ToolUseBlock
from loopwright.models.base import ModelError, ModelRequest, ModelResponse

llama_cpp = pytest.importorskip("llama_cpp", reason="needs the `local` extra")

from loopwright.healthcare.agent import healthcare_agent  # noqa: E402
from loopwright.healthcare.prompt import PINNED_MESSAGES, FewShotModel  # noqa: E402
from loopwright.models.grammar import tool_call_grammar  # noqa: E402
from loopwright.models.local import (  # noqa: E402
    LEFT_OUT_NOTE,
    LEFT_OUT_RESULT,
    LocalModel,
    bundled_model_path,
    bundled_models,
)

needs_smollm2 = pytest.mark.skipif(
    "smollm2-135m" not in bundled_models(), reason="needs the bundled SmolLM2 model"
)
#: one thread: these tests share the machine with others, and llama.cpp's threads wait for
#: each other
THREADS = 1
needs_gemma = pytest.mark.skipif(
    "gemma3-270m" not in bundled_models(), reason="needs the bundled Gemma 3 model"
)

DRUGS = ("HUMIRA", "OZEMPIC", "ELIQUIS", "KEYTRUDA", "JARDIANCE", "TRULICITY", "XARELTO")
STATES = ("CA", "TX", "FL", "NY", "OH", "GA", "PA", "IL", "MI", "NC", "WA", "AZ")
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
        "additionalProperties": False,
    },
}


def exchange(index: int, drug: str, state: str) -> list[Message]:
    """One earlier question as the agent stores it: request, SQL call, result table, answer.
    Ten-digit NPIs: a token per digit for Gemma, where the agent counts 4 characters a token."""
    call_id = f"call_{index}"
    rows = "\n".join(f"| 9{index:02d}{n:07d} | {20 - n} |" for n in range(10))
    result = (
        f"Saved 10 rows × 2 columns to {drug.lower()}_{state.lower()}.csv.\n"
        f"| PRESCRIBER_NPI_NBR | rx_count |\n|---|---|\n{rows}"
    )
    sql = (
        f"SELECT PRESCRIBER_NPI_NBR, COUNT(*) AS rx_count FROM RX_CLAIMS WHERE NDC_DRUG_NM = "
        f"'{drug}' AND PRESCRIBER_NPI_STATE_CD = '{state}' GROUP BY 1 ORDER BY 2 DESC LIMIT 10"
    )
    arguments = {"sql": sql, "dataset_name": f"{drug.lower()}_{state.lower()}", "description": "x"}
    return [
        Message.user(f"Question {index}: top prescribers of {drug} in {state}?"),
        Message("assistant", [ToolUseBlock(call_id, "SQL", arguments)]),
        Message("user", [ToolResultBlock(call_id, result)]),
        Message.assistant(f"Answer {index}: NPI 9{index:02d}0000000 leads {drug} in {state}."),
    ]


def history(count: int) -> list[Message]:
    return [
        message
        for index in range(count)
        for message in exchange(index, DRUGS[index % len(DRUGS)], STATES[index % len(STATES)])
    ]


async def prompt_of(model: LocalModel, request: ModelRequest) -> tuple[str, int]:
    """The prompt the model would be given for ``request`` (as text) and its token count."""
    weights = await model._ensure_loaded()
    assert weights.llama is not None
    prepared = model._prepare(weights, request, None)
    text = weights.llama.detokenize(prepared.tokens, special=True).decode("utf-8", "replace")
    return text, len(prepared.tokens)


# --- a conversation longer than the window ------------------------------------------------


@needs_smollm2
async def test_a_conversation_longer_than_the_window_leaves_its_oldest_turns_out() -> None:
    """Old: "The conversation (N tokens) does not fit the local model's context window ...;
    start a new session": every later question of the session failed the same way."""
    from loopwright.models import local

    assert local.PINNED_MESSAGES == PINNED_MESSAGES  # FewShotModel's key is the model's
    model = LocalModel(n_ctx=2048, n_threads=THREADS)
    example = exchange(99, "STELARA", "WA")
    messages = [*example, *history(14), Message.user("Question now: top prescribers in AZ?")]
    request = ModelRequest(
        messages, system="You answer with SQL.", max_tokens=400, metadata={PINNED_MESSAGES: 4}
    )
    try:
        text, size = await prompt_of(model, request)
        assert size + 256 <= 2048  # room left for a whole reply (a tool call is ~100 tokens)
        assert "Question now: top prescribers in AZ?" in text
        assert "Question 99: top prescribers of STELARA" in text  # the pinned worked example
        assert "Answer 13:" in text  # the latest exchanges are kept
        assert "Question 0:" not in text  # the oldest are not
        assert "Answer 0:" not in text
        assert LEFT_OUT_NOTE in text
    finally:
        await model.aclose()


@needs_smollm2
async def test_the_current_requests_older_results_go_before_it_fails_with_what_to_do() -> None:
    """Within one request's own tool calls the older results are stubbed, the latest kept;
    a request that cannot fit even then is a clear error, not a llama.cpp failure."""
    model = LocalModel(n_ctx=1536, n_threads=THREADS)
    turns = exchange(1, "HUMIRA", "CA")
    current = [turns[0]]
    for index in range(6):  # six calls in one request, each with a 10-row result
        call_turns = exchange(10 + index, "HUMIRA", "CA")
        current += [call_turns[1], call_turns[2]]
    try:
        text, size = await prompt_of(model, ModelRequest(current, max_tokens=200))
        assert size + 200 <= 1536
        assert "Question 1: top prescribers of HUMIRA" in text  # the request itself
        assert "| 9150000000 | 20 |" in text  # the latest result, whole
        assert "| 9100000000 | 20 |" not in text  # the first one, left out
        assert LEFT_OUT_RESULT in text
        with pytest.raises(ModelError, match="does not fit the local model's context window"):
            await prompt_of(model, ModelRequest([Message.user("word " * 3000)], max_tokens=20))
    finally:
        await model.aclose()


@needs_smollm2
async def test_the_healthcare_agent_keeps_answering_in_a_long_session(claims_db: Path) -> None:
    """The real agent (compact mode, FewShotModel around the embedded model) on a session of
    earlier questions: the agent's estimate (4 characters a token) says it fits, the real
    count does not. Old: the run ended with ``error`` before any model call."""
    agent = healthcare_agent(
        LocalModel(n_ctx=2048, n_threads=THREADS),
        database=claims_db,
        store=MemoryStore(),
        max_turns=2,
    )
    assert isinstance(agent.model, FewShotModel)
    session = agent.new_session()
    for message in history(9):
        session.append(message)
    done: Done | None = None
    try:
        async for event in agent.run("Top 5 prescribers of HUMIRA in Texas?", session):
            if isinstance(event, Done):
                done = event
    finally:
        await agent.aclose()
    assert done is not None
    assert done.stop_reason != "error", done.detail
    assert done.usage.model_calls >= 1


# --- a model repeating itself ---------------------------------------------------------------


@needs_gemma
async def test_a_loop_is_neither_shown_nor_kept_in_the_conversation() -> None:
    """Gemma copies a run of ``</thead>`` it saw in an earlier answer, again and again (a
    real session did: every later answer ended in 48 of them, copied from the one before).
    The loop guard stopped it at 48 tokens, but they were all streamed and stored. Now the
    repeats are held back while they repeat and dropped when they turn out to be a loop."""
    loop = "</thead>" * 48
    messages: list[Message] = []
    for drug in ("HUMIRA", "OZEMPIC"):
        messages += [
            Message.user(f"Who prescribes the most {drug}?"),
            Message.assistant(f"NPI 9070730772 prescribes the most {drug}.{loop}"),
        ]
    messages.append(Message.user("Who prescribes the most ELIQUIS?"))
    model = LocalModel(bundled="gemma3-270m", n_threads=THREADS)
    deltas: list[str] = []
    response: ModelResponse | None = None
    try:
        async for event in model.stream(ModelRequest(messages, max_tokens=200)):
            if isinstance(event, TextDelta):
                deltas.append(event.text)
            elif isinstance(event, ModelResponse):
                response = event
    finally:
        await model.aclose()
    assert response is not None
    text = response.message.text
    assert text.startswith("NPI 9070730772 prescribes the most ELIQUIS.")
    assert text.count("</thead>") <= 1
    assert "".join(deltas) == text  # what was shown is what is kept


# --- the grammar's cost ------------------------------------------------------------------------


@needs_smollm2
def test_the_grammar_checks_the_likeliest_tokens_first_and_picks_the_same_call() -> None:
    """llama-cpp-python's sampler checks every token of the vocabulary against the grammar:
    about 50 ms a token with Gemma's 262,144 (the model itself takes ~12 ms on two cores).
    Checking the likeliest tokens first gives the same greedy output, rarely checking all."""
    from loopwright.models.local import _GrammarCheck

    llama = llama_cpp.Llama(
        bundled_model_path("smollm2-135m"), n_ctx=1024, n_threads=THREADS, verbose=False
    )
    vocab = llama_cpp.llama_model_get_vocab(llama.model)
    grammar = tool_call_grammar([SQL_SCHEMA], allow_text=False)
    prompt = (
        "<|im_start|>user\nCall the SQL tool to find the top 10 prescribers of HUMIRA in "
        "California (RX_CLAIMS, PRESCRIBER_NPI_NBR, NDC_DRUG_NM, PRESCRIBER_NPI_STATE_CD) as "
        "JSON.<|im_end|>\n<|im_start|>assistant\n"
    )
    tokens = llama.tokenize(prompt.encode(), add_bos=False, special=True)

    def generate(**options: Any) -> tuple[list[int], bool]:
        out: list[int] = []
        check = options.pop("check", None)
        for token in llama.generate(tokens, temp=0.0, reset=True, **options):
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                return out, True
            if check is not None:
                check.accept(token)
            out.append(token)
            if len(out) >= 100:
                break
        return out, False

    try:
        reference, finished = generate(grammar=llama_cpp.LlamaGrammar.from_string(grammar))
        check = _GrammarCheck(vocab, grammar)
        try:
            processors = llama_cpp.LogitsProcessorList([check.processor(64)])
            fast, fast_finished = generate(logits_processor=processors, check=check)
        finally:
            check.close()
        assert fast == reference
        assert fast_finished == finished
        assert check.full_checks < len(fast) / 4, (check.full_checks, len(fast))
        if finished:
            call = json.loads(llama.detokenize(fast).decode())
            assert call["name"] == "SQL"
            assert set(call["arguments"]) == {"sql", "dataset_name", "description"}
        with pytest.raises(ModelError, match=r"llama\.cpp rejected the grammar"):
            _GrammarCheck(vocab, "root ::= (")
    finally:
        llama.close()
