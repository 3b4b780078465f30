"""``loopwright healthcare --compact/--full``: a tiny model behind an OpenAI-compatible server
(Ollama, llama.cpp's server, vLLM) gets the compact agent the embedded models get (a short
prompt, the SQL tool alone, worked examples as earlier turns), as the requests that server
receives show; ``--full`` and ``LOOPWRIGHT_COMPACT`` choose too, and a session goes on in
either mode whichever it began in."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from loopwright.healthcare.data import build_database
from models.openai_server import OpenAIServer, ToolCall

from .conftest import CliRunner

pytest.importorskip("openai")  # the CLI's client of the loopback server

QUESTION = "How many pharmacy claims are there?"
COUNT = {
    "sql": "SELECT COUNT(*) AS claims FROM RX_CLAIMS",
    "dataset_name": "claim_count",
    "description": "All pharmacy claims",
}
#: How each prompt begins (healthcare.prompt's compact and full system prompts).
COMPACT_PROMPT = "You answer questions about healthcare claims data with the SQL tool"
FULL_PROMPT = "You are a healthcare data research engineer"
FULL_TOOLS = {"SQL", "DefineCohort", "Python", "Bash", "Read", "Write", "Edit", "Glob", "Grep"}


@pytest.fixture(scope="module")
def claims(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small claims database of this module's own (the subprocesses open it read-only)."""
    path = tmp_path_factory.mktemp("hc-compact") / "claims.duckdb"
    return build_database(path, rx_claims=2_000, seed=11)


def served_model(server: OpenAIServer) -> str:
    """The model string of a small model behind ``server``, as Ollama names one."""
    return f"openai:qwen2.5:0.5b@{server.base_url}"


def tool_names(body: dict[str, Any]) -> list[str]:
    return [tool["function"]["name"] for tool in body.get("tools", [])]


def system_prompt(body: dict[str, Any]) -> str:
    first = body["messages"][0]
    assert first["role"] == "system", body["messages"]
    return str(first["content"])


def assert_compact(body: dict[str, Any], first: str = QUESTION) -> None:
    """The request of a compact agent: its prompt, the SQL tool alone, worked examples (a
    question, its SQL call, the result and the answer) before the session's ``first``
    question, a short output limit, and no newline stop (a server's model writes its calls
    over lines)."""
    assert system_prompt(body).startswith(COMPACT_PROMPT), system_prompt(body)[:200]
    assert tool_names(body) == ["SQL"]
    messages = body["messages"]
    examples = messages[1 : [m.get("content") for m in messages].index(first)]
    calls = [m for m in examples if m["role"] == "assistant" and m.get("tool_calls")]
    assert calls, examples
    assert all(c["tool_calls"][0]["function"]["name"] == "SQL" for c in calls)
    assert any(m["role"] == "tool" and "Saved" in m["content"] for m in examples)
    assert body["max_tokens"] == 512
    assert "stop" not in body


def assert_full(body: dict[str, Any]) -> None:
    assert system_prompt(body).startswith(FULL_PROMPT), system_prompt(body)[:200]
    assert set(tool_names(body)) >= FULL_TOOLS
    assert body["messages"][1:] == [{"role": "user", "content": QUESTION}]  # no examples


def answer_script() -> list[Any]:
    return [ToolCall("SQL", COUNT), "There are 2,000 pharmacy claims."]


def test_compact_gives_a_tiny_model_behind_a_server_the_compact_agent(
    cli: CliRunner, claims: Path, loopwright_home: Path
) -> None:
    """Only the embedded models got compact mode: a sub-1B model behind Ollama got the full
    prompt and every tool, and there was no way to ask for it."""
    with OpenAIServer(answer_script(), model="qwen2.5:0.5b") as server:
        result = cli(
            "healthcare", "-d", str(claims), "-m", served_model(server), "--compact",
            "-s", "tiny", QUESTION,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "There are 2,000 pharmacy claims." in result.stdout
    first, second = server.chat_bodies
    assert_compact(first)
    assert first["messages"][-1] == {"role": "user", "content": QUESTION}
    assert_compact(second)  # the examples are shown again, before the turn so far
    assert [m["role"] for m in second["messages"][-3:]] == ["user", "assistant", "tool"]
    assert (loopwright_home / "workspaces" / "tiny" / "claim_count.csv").is_file()


@pytest.mark.parametrize(
    ("flags", "setting", "compact"),
    [
        ((), None, True),  # automatic: the name says 0.5B parameters, under 2B
        ((), "1", True),
        ((), "auto", True),
        ((), "0", False),
        (("--full",), "1", False),  # the flag wins over the setting
        (("--compact",), "0", True),
    ],
)
def test_the_flags_and_loopwright_compact_choose_the_mode(
    cli: CliRunner,
    cli_env: dict[str, str],
    claims: Path,
    flags: tuple[str, ...],
    setting: str | None,
    compact: bool,
) -> None:
    if setting is not None:
        cli_env["LOOPWRIGHT_COMPACT"] = setting
    with OpenAIServer(answer_script(), model="qwen2.5:0.5b") as server:
        result = cli("healthcare", "-d", str(claims), "-m", served_model(server), *flags, QUESTION)
    assert result.returncode == 0, result.stderr
    body = server.chat_bodies[0]
    if compact:
        assert_compact(body)
    else:
        assert_full(body)


def test_a_chat_takes_compact_too(cli: CliRunner, claims: Path) -> None:
    with OpenAIServer(answer_script(), model="qwen2.5:0.5b") as server:
        args = ["-d", str(claims), "-m", served_model(server), "--compact"]
        result = cli("healthcare", *args, input=f"{QUESTION}\n")
    assert result.returncode == 0, result.stderr
    assert "There are 2,000 pharmacy claims." in result.stdout
    assert_compact(server.chat_bodies[0])


def test_a_session_goes_on_in_the_other_mode(cli: CliRunner, claims: Path) -> None:
    """Begun in compact mode and continued with --full, then with --compact again: each turn
    has its mode's prompt and tools and the whole history (not the worked examples, which
    the session never holds), and answers."""
    follow_up = "And in California?"
    in_ca = {
        **COUNT,
        "sql": f"{COUNT['sql']} WHERE PRESCRIBER_NPI_STATE_CD = 'CA'",
        "dataset_name": "ca",
    }
    script = [
        *answer_script(),
        ToolCall("SQL", in_ca),
        "California has a few.",
        ToolCall("SQL", COUNT),
        "Still 2,000.",
    ]
    with OpenAIServer(script, model="qwen2.5:0.5b") as server:
        base = ["healthcare", "-d", str(claims), "-m", served_model(server), "-s", "both"]
        runs = [
            cli(*base, "--compact", QUESTION),
            cli(*base, "--full", follow_up),
            cli(*base, "--compact", "Once more?"),
        ]
    for result in runs:
        assert result.returncode == 0, result.stderr
    assert "California has a few." in runs[1].stdout
    assert "Still 2,000." in runs[2].stdout
    bodies = server.chat_bodies
    assert len(bodies) == 6
    full = bodies[2]
    assert system_prompt(full).startswith(FULL_PROMPT)
    assert set(tool_names(full)) >= FULL_TOOLS
    history = [m["role"] for m in full["messages"][1:]]
    assert history == ["user", "assistant", "tool", "assistant", "user"]  # no examples
    assert full["messages"][1]["content"] == QUESTION
    again = bodies[4]
    assert_compact(again)  # the examples, then the session's turns from its first question
    said = [m.get("content") for m in again["messages"]]
    assert said.index(QUESTION) < said.index(follow_up) < said.index("Once more?")
    assert said[-1] == "Once more?"


def test_compact_offers_the_scripted_model_the_sql_tool_alone_and_full_every_tool(
    cli: CliRunner, cli_env: dict[str, str], claims: Path, tmp_path: Path
) -> None:
    """The scripted model calls SQL, then Python: in compact mode Python is not offered;
    --full over LOOPWRIGHT_COMPACT=1 offers it."""
    script = tmp_path / "turns.json"
    python = {"call": "Python", "input": {"code": "print('python ran')"}}
    script.write_text(json.dumps([{"call": "SQL", "input": COUNT}, python, "Done."]))
    cli_env["LOOPWRIGHT_COMPACT"] = "1"
    model = f"scripted:{script}"
    results = {}
    for flag in ("--compact", "--full"):
        result = cli("healthcare", "-d", str(claims), "-m", model, flag, "--json", QUESTION)
        assert result.returncode == 0, result.stderr
        events = [json.loads(line) for line in result.stdout.splitlines()]
        results[flag] = {e["name"]: e for e in events if e["type"] == "tool_result"}
    assert not results["--compact"]["SQL"]["is_error"]
    assert results["--compact"]["Python"]["is_error"]
    assert "Unknown tool: 'Python'" in results["--compact"]["Python"]["content"]
    assert not results["--full"]["Python"]["is_error"], results["--full"]["Python"]
    assert "python ran" in results["--full"]["Python"]["content"]


@pytest.mark.parametrize("how", ["--full", "compact = false in loopwright.toml"])
def test_full_gives_the_embedded_model_the_full_prompt(
    cli: CliRunner, cli_env: dict[str, str], claims: Path, tmp_path: Path, how: str
) -> None:
    """The embedded models are compact by default; --full (or ``compact = false``, which
    read as "" before: the default) gives them the full prompt and every tool, which their
    4,096-token window cannot hold: the run says so."""
    pytest.importorskip("llama_cpp")
    args = ["-d", str(claims), "-m", "local:gemma3-270m", "--json", QUESTION]
    if how == "--full":
        args.insert(0, how)
    else:
        config = tmp_path / "loopwright.toml"
        config.write_text("compact = false\n")
        cli_env["LOOPWRIGHT_CONFIG"] = str(config)
    result = cli("healthcare", *args, timeout=180)
    assert result.returncode == 1, result.stderr
    done = json.loads(result.stdout.splitlines()[-1])
    assert done["type"] == "done"
    assert done["stop_reason"] == "error"
    assert "does not fit the local model's context window of 4,096 tokens" in done["detail"]


def test_a_bad_loopwright_compact_is_refused_before_the_database_is_built(
    cli: CliRunner, cli_env: dict[str, str], loopwright_home: Path
) -> None:
    cli_env["LOOPWRIGHT_COMPACT"] = "tiny"
    result = cli("healthcare", "--rows", "1000", QUESTION)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: LOOPWRIGHT_COMPACT='tiny': use 1 (compact mode")
    assert not (loopwright_home / "data").exists()


def test_help_says_what_compact_and_full_do(cli: CliRunner) -> None:
    result = cli("healthcare", "--help")
    assert result.returncode == 0
    flat = " ".join(result.stdout.split())
    assert "--compact / --full" in flat
    assert "the SQL tool alone" in flat
    assert "[default: LOOPWRIGHT_COMPACT, else compact for the embedded local: models and " in (
        flat
    )


def test_sessions_resume_takes_compact_and_full(cli: CliRunner, claims: Path) -> None:
    """A healthcare session continued with ``sessions resume ID --compact`` (a chat) gets the
    compact agent; the flags are refused for a session that is not a healthcare one."""
    script = [*answer_script(), ToolCall("SQL", COUNT), "Still 2,000."]
    with OpenAIServer(script, model="qwen2.5:0.5b") as server:
        model = ["-m", served_model(server)]
        first = cli("healthcare", "-d", str(claims), *model, "-s", "hc1", "--full", QUESTION)
        assert first.returncode == 0, first.stderr
        again = cli("sessions", "resume", "hc1", *model, "--compact", input="Once more?\n")
    assert again.returncode == 0, again.stderr
    assert "Still 2,000." in again.stdout
    assert_full(server.chat_bodies[0])
    assert_compact(server.chat_bodies[2], first=QUESTION)
    plain = cli("run", "-m", "scripted", "-s", "plain1", "hello")
    assert plain.returncode == 0, plain.stderr
    refused = cli("sessions", "resume", "plain1", "--full")
    assert refused.returncode == 2
    assert "--full is for healthcare sessions; plain1 is not one" in refused.stderr
