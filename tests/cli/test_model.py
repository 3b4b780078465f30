"""Which model the CLI runs, and that it says which and why (on stderr, so --json stays JSON)."""

from __future__ import annotations

import json

import pytest

from .conftest import CliRunner


def test_an_anthropic_key_makes_anthropic_the_default(
    cli: CliRunner, cli_env: dict[str, str]
) -> None:
    pytest.importorskip("anthropic")
    from models.anthropic_server import AnthropicServer, text_turn

    del cli_env["LOOPWRIGHT_MODEL"]
    with AnthropicServer([text_turn("Hello from the loopback Claude.")]) as server:
        cli_env["ANTHROPIC_API_KEY"] = "sk-ant-test"
        cli_env["ANTHROPIC_BASE_URL"] = server.url
        cli_env["OPENAI_API_KEY"] = "sk-also-set"  # Anthropic wins when both are set
        result = cli("run", "--json", "say hello")

    assert result.returncode == 0, result.stderr
    assert (
        "model anthropic:claude-sonnet-5-5 (default: ANTHROPIC_API_KEY is set)"
        in result.stderr.splitlines()
    )
    events = [json.loads(line) for line in result.stdout.splitlines()]  # stdout: only JSON
    answer = "".join(e["text"] for e in events if e["type"] == "text_delta")
    assert answer == "Hello from the loopback Claude."
    assert events[-1]["stop_reason"] == "end_turn"
    assert server.requests[0].body["model"] == "claude-sonnet-5-5"


def test_an_openai_key_alone_makes_openai_the_default(
    cli: CliRunner, cli_env: dict[str, str]
) -> None:
    pytest.importorskip("openai")
    from models.openai_server import OpenAIServer

    del cli_env["LOOPWRIGHT_MODEL"]
    with OpenAIServer(["Hello from the loopback GPT."]) as server:
        cli_env["OPENAI_API_KEY"] = "sk-test"
        cli_env["OPENAI_BASE_URL"] = server.base_url
        result = cli("run", "say hello")

    assert result.returncode == 0, result.stderr
    line = next(x for x in result.stderr.splitlines() if x.startswith("model "))
    assert line.startswith("model openai:gpt-4.1 [openai:gpt-4.1@http://127.0.0.1:")
    assert line.endswith("(default: OPENAI_API_KEY is set, ANTHROPIC_API_KEY is not)")
    assert "Hello from the loopback GPT." in result.stdout
    assert server.chat_bodies[0]["model"] == "gpt-4.1"


def test_without_keys_the_default_is_the_embedded_model(
    cli: CliRunner, cli_env: dict[str, str]
) -> None:
    pytest.importorskip("llama_cpp")
    del cli_env["LOOPWRIGHT_MODEL"]
    # an empty chat picks the model (the weights load on first use) and quits at once
    result = cli("chat", input="")

    assert result.returncode == 0, result.stderr
    line = next(x for x in result.stderr.splitlines() if x.startswith("model "))
    assert line.startswith("model local [local:")
    assert line.endswith(
        "(default: the embedded model, as neither ANTHROPIC_API_KEY nor OPENAI_API_KEY is set)"
    )


def test_an_explicit_model_is_announced_as_chosen(cli: CliRunner) -> None:
    result = cli("run", "--json", "--model", "scripted", "a task")
    assert result.returncode == 0, result.stderr
    assert "model scripted [scripted:demo] (from --model)" in result.stderr.splitlines()
    assert all(line.startswith("{") for line in result.stdout.splitlines())


def test_a_named_provider_without_its_key_fails_at_once_saying_what_to_set(
    cli: CliRunner,
) -> None:
    result = cli("run", "--model", "anthropic:claude-haiku-4-5", "a task")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "error: anthropic:claude-haiku-4-5 needs an API key; set the ANTHROPIC_API_KEY "
        "environment variable (or choose another model with --model)"
    ]


def test_help_explains_the_model_strings_and_the_default(cli: CliRunner) -> None:
    result = cli("run", "--help")
    assert result.returncode == 0
    flat = " ".join(result.stdout.split())
    assert "anthropic[:MODEL]" in flat
    assert "openai:MODEL@http://HOST:PORT/v1" in flat
    assert "'auto' uses LOOPWRIGHT_MODEL if set, else Anthropic if ANTHROPIC_API_KEY is set" in flat
    assert "[default: auto]" in flat
