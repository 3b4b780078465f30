"""``loopwright healthcare`` with neither ``--compact`` nor ``--full``: a model behind an
OpenAI-compatible server whose name gives under 2B parameters (``qwen2.5:0.5b``,
``SmolLM2-360M-Instruct``, ``...-0.5b-instruct-q4_k_m.gguf``) gets the compact agent, as the
requests that server receives show; a bigger one, or one whose name gives no size, the full
agent; ``--full`` and ``LOOPWRIGHT_COMPACT=0`` still win. An open reasoning model there gets a
reasoning model's turns. ``--full`` on an embedded model that cannot hold the full prompt
says to drop ``--full``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loopwright.healthcare.agent import REASONING_MAX_OUTPUT_TOKENS
from loopwright.healthcare.data import build_database
from models.openai_server import OpenAIServer

from .conftest import CliRunner
from .test_healthcare_compact import (
    COMPACT_PROMPT,
    QUESTION,
    answer_script,
    assert_compact,
    assert_full,
    system_prompt,
    tool_names,
)

pytest.importorskip("openai")  # the CLI's client of the loopback server


@pytest.fixture(scope="module")
def claims(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small claims database of this module's own (the subprocesses open it read-only)."""
    path = tmp_path_factory.mktemp("hc-auto-compact") / "claims.duckdb"
    return build_database(path, rx_claims=2_000, seed=11)


def first_request(cli: CliRunner, claims: Path, name: str, *flags: str) -> dict[str, object]:
    """The first chat request ``loopwright healthcare FLAGS QUESTION`` sends for the model
    ``name`` behind a loopback server (the run answers)."""
    with OpenAIServer(answer_script(), model=name) as server:
        model = f"openai:{name}@{server.base_url}"
        result = cli("healthcare", "-d", str(claims), "-m", model, *flags, QUESTION)
    assert result.returncode == 0, result.stderr
    assert "There are 2,000 pharmacy claims." in result.stdout
    return server.chat_bodies[0]


@pytest.mark.parametrize(
    "name",
    [
        "qwen2.5:0.5b",  # Ollama
        "SmolLM2-360M-Instruct",  # vLLM, a Hugging Face name
        "qwen2.5-0.5b-instruct-q4_k_m.gguf",  # llama.cpp's server, the file's name
        "llama3.2:1b",
    ],
)
def test_a_tiny_model_behind_a_server_is_compact_by_default(
    cli: CliRunner, claims: Path, name: str
) -> None:
    """They got the full prompt, every tool and 4,096-token turns they cannot use."""
    assert_compact(first_request(cli, claims, name))


@pytest.mark.parametrize("name", ["qwen2.5:7b", "mixtral:8x7b", "llama3.2"])
def test_a_bigger_model_or_one_of_no_known_size_gets_the_full_agent(
    cli: CliRunner, claims: Path, name: str
) -> None:
    body = first_request(cli, claims, name)
    assert_full(body)
    assert body["max_tokens"] == 4096


@pytest.mark.parametrize(("flags", "setting"), [(("--full",), "auto"), ((), "0")])
def test_full_and_loopwright_compact_0_still_win(
    cli: CliRunner,
    cli_env: dict[str, str],
    claims: Path,
    flags: tuple[str, ...],
    setting: str | None,
) -> None:
    if setting is not None:
        cli_env["LOOPWRIGHT_COMPACT"] = setting
    body = first_request(cli, claims, "qwen2.5:0.5b", *flags)
    assert_full(body)


def test_an_open_reasoning_model_behind_a_server_gets_room_to_reason(
    cli: CliRunner, claims: Path
) -> None:
    """Qwen3 thinks before it answers, within ``max_tokens``: it gets a reasoning model's
    turns, in the request's usual form for a compatible server; DeepSeek-R1 1.5B is tiny too:
    compact, with those turns."""
    qwen3 = first_request(cli, claims, "qwen3:8b")
    assert system_prompt(qwen3).startswith("You are a healthcare data research engineer")
    assert qwen3["max_tokens"] == REASONING_MAX_OUTPUT_TOKENS
    assert "max_completion_tokens" not in qwen3
    assert "temperature" in qwen3
    r1 = first_request(cli, claims, "deepseek-r1:1.5b")
    assert system_prompt(r1).startswith(COMPACT_PROMPT)
    assert tool_names(r1) == ["SQL"]
    assert r1["max_tokens"] == REASONING_MAX_OUTPUT_TOKENS


@pytest.mark.parametrize("how", ["--full", "LOOPWRIGHT_COMPACT=0"])
def test_full_on_the_embedded_model_says_to_drop_it(
    cli: CliRunner, cli_env: dict[str, str], claims: Path, how: str
) -> None:
    """The full prompt of the claims database does not fit the embedded models' 4,096-token
    window; the error said to ask for less in a new session, which fails the same way."""
    pytest.importorskip("llama_cpp")
    args = ["-d", str(claims), "-m", "local:gemma3-270m", "--json", QUESTION]
    if how == "--full":
        args.insert(0, how)
    else:
        cli_env["LOOPWRIGHT_COMPACT"] = "0"
    result = cli("healthcare", *args, timeout=180)
    assert result.returncode == 1, result.stderr
    done = json.loads(result.stdout.splitlines()[-1])
    assert done["stop_reason"] == "error"
    detail = done["detail"]
    assert "does not fit the local model's context window of 4,096 tokens" in detail
    assert "drop --full (or set LOOPWRIGHT_COMPACT=auto) for compact mode" in detail
    assert "new session" not in detail
