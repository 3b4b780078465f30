"""A long healthcare session: dozens of questions with real SQL results over the claims
database, in a context window that forces trimming and summaries, continued the next day.

The analyst's datasets must stay known after the earlier turns are condensed (whatever the
model's summary keeps), a summary that fails must not lose the question, and a wide SQL
preview must not overflow a tiny model's window. Scripted models, real DuckDB, the real
SQLite store.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import duckdb
import pytest

from loopwright.agent import CALLS_HEADING, SUMMARY_SYSTEM
from loopwright.healthcare.agent import healthcare_agent
from loopwright.models.base import ModelError, ModelRequest
from loopwright.models.scripted import ScriptedModel, ScriptedToolCall, ScriptedTurn
from loopwright.sessions.session import Session
from loopwright.sessions.sqlite import SQLiteStore

STATES = ["CA", "MI", "TX", "FL", "NY", "WA", "NC", "NJ", "OH", "IL", "GA", "PA"]
FOLLOW_UP = "Now chart the first result by month."


def prompt_tokens(request: ModelRequest) -> int:
    """The request's size at about 4 characters a token (what the agent estimates)."""
    chars = len(request.system) + sum(len(json.dumps(t)) for t in request.tools)
    return (chars + sum(m.char_size() for m in request.messages)) // 4


def _drugs_sql(state: str) -> str:
    return (
        "SELECT GENERIC_NM, COUNT(*) AS claims, SUM(PAID_AMT) AS paid FROM rx_claims "
        f"WHERE PRESCRIBER_NPI_STATE_CD = '{state}' GROUP BY 1 ORDER BY 2 DESC, 1"
    )


def _context_text(request: ModelRequest) -> str:
    parts = []
    for message in request.messages:
        parts.append(message.text)
        parts += [r.text for r in message.tool_results]
        parts += [json.dumps(u.input) for u in message.tool_uses]
    return "\n".join(parts)


@pytest.mark.parametrize("summary", ["vague", "error"])
def test_a_long_session_keeps_its_datasets_through_summaries_and_the_next_day(
    claims_db: Path, claims_con: duckdb.DuckDBPyConnection, tmp_path: Path, summary: str
) -> None:
    """Twelve questions, each a real query saved as a dataset, then the next day a follow-up
    about the first one. The model's summary of the condensed turns kept none of the dataset
    names or row counts (a vague summary), and a summary call that failed ended the
    question's run with the provider's error: the datasets were lost to the model either
    way, though the files were still in the workspace."""
    seen_on_follow_up: list[str] = []
    requests: list[ModelRequest] = []

    def script(request: ModelRequest) -> Any:
        requests.append(request)
        if request.system == SUMMARY_SYSTEM:
            if summary == "error":
                return ScriptedTurn(error=ModelError("rate limited (429)", retryable=True))
            return "The analyst explored prescription claims by state."
        assert prompt_tokens(request) <= 16_000, "the prompt is over the window"
        last = request.messages[-1]
        if last.text == FOLLOW_UP:
            seen_on_follow_up.append(_context_text(request))
            return "Charted."
        if last.tool_results:
            return "Here are the top drugs. " + "Commentary on the result. " * 120
        state = last.text.split()[-1].rstrip("?")
        query = {"sql": _drugs_sql(state), "description": "top drugs", "dataset_name": state}
        return ScriptedToolCall("SQL", {**query, "dataset_name": f"top_drugs_{state.lower()}"})

    def agent(store: SQLiteStore) -> Any:
        model = ScriptedModel(script, context_window=16_000)
        return healthcare_agent(
            model, database=claims_db, store=store, workspace_root=str(tmp_path / "ws")
        )

    store = SQLiteStore(tmp_path / "sessions.db")
    day1 = agent(store)
    session = day1.new_session("long")
    for state in STATES:
        result = day1.run_sync(f"What are the top drugs prescribed in {state}?", session)
        assert result.stop_reason == "end_turn", result.events[-1]
    assert session.context_start > 0, "the session was never summarised"
    store.close()

    # the next day: a new process, a new store object
    store = SQLiteStore(tmp_path / "sessions.db")
    resumed = Session.resume("long", store=store)
    assert [m.to_dict() for m in resumed.messages] == [m.to_dict() for m in session.messages]
    day2 = agent(store)
    result = day2.run_sync(FOLLOW_UP, resumed)
    assert result.stop_reason == "end_turn", result.events[-1]
    store.close()

    (context,) = seen_on_follow_up
    row = claims_con.execute(
        "SELECT COUNT(DISTINCT GENERIC_NM) FROM rx_claims WHERE PRESCRIBER_NPI_STATE_CD = 'CA'"
    ).fetchone()
    assert row is not None
    # the first dataset, its file and its real size, are still in what the model reads
    assert f"Saved {row[0]} rows × 3 columns to top_drugs_ca.csv" in context
    assert CALLS_HEADING in context
    with open(resumed.workspace_dir / "top_drugs_ca.csv", newline="") as handle:
        assert len(list(csv.reader(handle))) == row[0] + 1
    # the log keeps every question, answer and result; the usage counts every model call
    questions = [m.text for m in resumed.messages if m.role == "user" and m.text]
    assert questions[:-1] == [f"What are the top drugs prescribed in {s}?" for s in STATES]
    assert len([r for m in resumed.messages for r in m.tool_results]) == len(STATES)
    answered = [r for r in requests if not (summary == "error" and r.system == SUMMARY_SYSTEM)]
    assert resumed.usage.model_calls == len(answered)
    if summary == "error":
        assert "could not summarise" in resumed.summary
        assert "rate limited (429)" in resumed.summary


def test_a_wide_sql_preview_fits_a_tiny_models_window_and_the_session_goes_on(
    claims_db: Path, tmp_path: Path
) -> None:
    """A 150-column result's preview is about 10,000 tokens: over a 4,096-token embedded
    model's window by itself. The run failed ("does not fit the context window"), and every
    later question of the session failed the same way, the result being among the recent
    ones the agent never trims."""
    wide = "SELECT " + ", ".join(["m.*"] * 10) + " FROM med_claims m LIMIT 10"
    count = "SELECT COUNT(*) AS n FROM med_claims"
    sizes: list[int] = []

    def script(request: ModelRequest) -> Any:
        if not request.tools:  # the summary
            return "The user looked at medical claims."
        sizes.append(prompt_tokens(request))
        if sizes[-1] > 4096:
            raise ModelError(f"The conversation ({sizes[-1]:,} tokens) does not fit")
        last = request.messages[-1]
        if last.tool_results:
            return "Done."
        sql, name = (wide, "wide") if "wide" in last.text else (count, "n_claims")
        return ScriptedToolCall("SQL", {"sql": sql, "description": "q", "dataset_name": name})

    model = ScriptedModel(script, name="local:tiny", context_window=4096)
    agent = healthcare_agent(
        model,
        database=claims_db,
        store=SQLiteStore(tmp_path / "s.db"),
        workspace_root=str(tmp_path),
    )
    session = agent.new_session()
    for question in ("Show me the wide claims table", "How many medical claims?"):
        result = agent.run_sync(question, session)
        assert result.stop_reason == "end_turn", result.events[-1]
    with open(session.workspace_dir / "wide.csv", newline="") as handle:
        header = next(csv.reader(handle))
    assert len(header) == 150
    (shown,) = [r.text for m in session.messages for r in m.tool_results if "150 columns" in r.text]
    assert "output truncated" in shown
    saved = shown.split("is saved in ", 1)[1].split(";", 1)[0]
    whole = (session.workspace_dir / saved).read_text(encoding="utf-8")
    assert whole.startswith("Saved 10 rows × 150 columns to wide.csv")
    assert len(whole) > len(shown)
    assert (session.workspace_dir / "n_claims.csv").is_file()
