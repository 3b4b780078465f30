"""Model strings, the default model, and what ``import loopwright`` does not load."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from loopwright import Agent, MemoryStore
from loopwright.models import (
    DEFAULT_ANTHROPIC_MODEL,
    DEFAULT_OPENAI_MODEL,
    ModelChoice,
    ModelError,
    available_models,
    describe_default,
    resolve_model,
)
from loopwright.models.retry import RetryingModel
from loopwright.models.scripted import ScriptedModel

from .anthropic_server import AnthropicServer, Fault, text_turn

ANTHROPIC = {"ANTHROPIC_API_KEY": "sk-ant-test"}
OPENAI = {"OPENAI_API_KEY": "sk-test"}


def test_the_default_follows_the_keys_that_are_set() -> None:
    assert describe_default({**ANTHROPIC, **OPENAI}) == ModelChoice(
        f"anthropic:{DEFAULT_ANTHROPIC_MODEL}", "default: ANTHROPIC_API_KEY is set"
    )
    assert describe_default(OPENAI) == ModelChoice(
        f"openai:{DEFAULT_OPENAI_MODEL}",
        "default: OPENAI_API_KEY is set, ANTHROPIC_API_KEY is not",
    )
    local = describe_default({"ANTHROPIC_API_KEY": "  ", "OPENAI_API_KEY": ""})
    assert local.spec == "local"
    assert "neither ANTHROPIC_API_KEY nor OPENAI_API_KEY is set" in local.reason
    assert describe_default({**ANTHROPIC, "LOOPWRIGHT_MODEL": "openai:gpt-4.1-mini"}) == (
        ModelChoice("openai:gpt-4.1-mini", "default: LOOPWRIGHT_MODEL is set")
    )
    assert describe_default({**OPENAI, "LOOPWRIGHT_MODEL": "auto"}).spec.startswith("openai:")


def test_anthropic_strings_make_a_retrying_anthropic_model() -> None:
    pytest.importorskip("anthropic")
    from loopwright.models.anthropic import AnthropicModel

    model = resolve_model("anthropic:claude-haiku-4-5", env=ANTHROPIC)
    assert isinstance(model, RetryingModel)
    assert isinstance(model.model, AnthropicModel)
    assert model.name == "anthropic:claude-haiku-4-5"
    assert model.pricing is not None
    assert model.pricing.input_per_mtok == 1.0
    bare = resolve_model("anthropic", env=ANTHROPIC, retries=False)
    assert isinstance(bare, AnthropicModel)
    assert bare.name == f"anthropic:{DEFAULT_ANTHROPIC_MODEL}"


def test_openai_strings_and_compatible_servers() -> None:
    pytest.importorskip("openai")
    from loopwright.models.openai import OpenAIModel

    model = resolve_model("openai:gpt-4.1-mini", env=OPENAI)
    assert isinstance(model, RetryingModel)
    assert isinstance(model.model, OpenAIModel)
    assert model.name == "openai:gpt-4.1-mini"

    # a compatible server needs no OpenAI key, and serving from this machine costs nothing
    ollama = resolve_model("openai:llama3.2@http://127.0.0.1:11434/v1", env={}, retries=False)
    assert isinstance(ollama, OpenAIModel)
    assert ollama.base_url == "http://127.0.0.1:11434/v1"
    assert ollama.model == "llama3.2"
    assert ollama.pricing is not None
    assert ollama.pricing.input_per_mtok == 0.0
    same = resolve_model("openai:llama3.2", base_url="http://127.0.0.1:11434/v1", env={})
    assert same.name == ollama.name


def test_a_missing_key_is_one_sentence_naming_the_variable() -> None:
    with pytest.raises(ModelError) as anthropic:
        resolve_model("anthropic:claude-sonnet-4-5", env={})
    assert str(anthropic.value) == (
        "anthropic:claude-sonnet-4-5 needs an API key; set the ANTHROPIC_API_KEY environment "
        "variable"
    )
    with pytest.raises(ModelError, match="set the OPENAI_API_KEY environment variable"):
        resolve_model("openai", env={})
    with pytest.raises(ModelError, match="set the OPENAI_API_KEY"):  # the API itself needs one
        resolve_model("openai:gpt-4.1@https://api.openai.com/v1", env={})


@pytest.mark.parametrize(
    ("spec", "hint"),
    [
        ("gpt-4.1", "did you mean 'openai:gpt-4.1'?"),
        ("claude-sonnet-4-5", "did you mean 'anthropic:claude-sonnet-4-5'?"),
        ("/models/x.gguf", "did you mean 'local:/models/x.gguf'?"),
        ("mistral:large", ""),
    ],
)
def test_an_unknown_string_lists_the_forms(spec: str, hint: str) -> None:
    with pytest.raises(ModelError) as raised:
        resolve_model(spec, env={})
    message = str(raised.value)
    assert message.startswith(f"unknown model {spec!r}")
    assert hint in message
    for form in ("anthropic[:MODEL]", "openai:MODEL@http://HOST:PORT/v1", "local", "scripted"):
        assert form in message
    assert "\n" not in message


def test_a_bad_base_url_says_what_a_good_one_looks_like() -> None:
    with pytest.raises(ModelError, match=r"must start with http:// or https://, e\.g\. openai:"):
        resolve_model("openai:llama3@localhost:11434", env={})


def test_local_strings(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    from loopwright.models.local import LocalModel

    with pytest.raises(ModelError, match=r"no model file at .*missing\.gguf; give the path"):
        resolve_model(f"local:{tmp_path / 'missing.gguf'}")
    model = resolve_model("local", env={})
    assert isinstance(model, LocalModel)  # not wrapped: a local model has nothing to retry
    assert model.name.startswith("local:")
    assert model.pricing is None or model.pricing.input_per_mtok == 0.0
    defaulted = resolve_model(None, env={})
    assert isinstance(defaulted, LocalModel)
    assert resolve_model("auto", env={}).name == defaulted.name
    # the bundled models by name
    smol = resolve_model("local:smollm2-135m", env={})
    assert isinstance(smol, LocalModel)
    assert smol.name == defaulted.name
    gemma = resolve_model("local:gemma3-270m", env={})
    assert isinstance(gemma, LocalModel)
    assert "gemma" in gemma.name.lower()


def test_scripted_ready_models_and_the_list_of_forms() -> None:
    assert resolve_model("scripted").name == "scripted:demo"
    mine = ScriptedModel(["hi"])
    assert resolve_model(mine) is mine
    assert "openai:MODEL@http://HOST:PORT/v1" in available_models()
    assert "scripted" in available_models()


def test_a_bad_loopwright_model_variable_says_where_the_string_came_from() -> None:
    with pytest.raises(ModelError, match=r"^LOOPWRIGHT_MODEL: unknown model 'nope'"):
        resolve_model(None, env={"LOOPWRIGHT_MODEL": "nope"})


async def test_the_default_model_retries_a_rate_limit_on_its_own(tmp_path: Path) -> None:
    """``Agent()`` with no model and ANTHROPIC_API_KEY set talks to Anthropic, with retries."""
    pytest.importorskip("anthropic")
    with AnthropicServer([text_turn("Hi from the default model.")]) as server:
        server.inject(Fault.rate_limited(retry_after=0))
        env = {**ANTHROPIC, "ANTHROPIC_BASE_URL": server.url}
        agent = Agent(resolve_model(env=env), store=MemoryStore(), workspace_root=str(tmp_path))
        result = await agent.collect("hello")
        await agent.aclose()
    assert result.ok
    assert result.text == "Hi from the default model."
    errors = [e for e in result.events if e.type == "error"]
    assert len(errors) == 1
    assert "retrying in 0.0s (attempt 2 of 5)" in errors[0]["message"]
    sent = server.requests[-1].headers
    assert "sk-ant-test" in (sent.get("x-api-key", "") + sent.get("authorization", ""))
    assert server.requests[-1].body["model"] == DEFAULT_ANTHROPIC_MODEL


def test_importing_loopwright_loads_no_provider_sdk() -> None:
    code = (
        "import json, sys, loopwright, loopwright.models;"
        "from loopwright import Agent;"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('anthropic', 'openai', 'llama_cpp', 'httpx', 'httpx2', 'numpy'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(result.stdout) == []


def test_a_model_whose_own_name_holds_an_at_sign() -> None:
    """Cloudflare Workers AI names its models ``@cf/meta/...``: the string was cut at that
    first ``@``, leaving no model name and the rest taken for a URL without http://."""
    pytest.importorskip("openai")
    from loopwright.models.openai import OpenAIModel

    url = "https://api.cloudflare.com/client/v4/accounts/abc/ai/v1"
    model = resolve_model(f"openai:@cf/meta/llama-3.1-8b-instruct@{url}", env={}, retries=False)
    assert isinstance(model, OpenAIModel)
    assert model.model == "@cf/meta/llama-3.1-8b-instruct"
    assert model.base_url == url
    served = resolve_model(
        "openai:@cf/meta/llama-3.1-8b-instruct", env={"OPENAI_BASE_URL": url}, retries=False
    )
    assert isinstance(served, OpenAIModel)
    assert (served.model, served.base_url) == ("@cf/meta/llama-3.1-8b-instruct", url)
    with pytest.raises(ModelError, match="must start with http:// or https://"):
        resolve_model("openai:@cf/meta/llama-3.1-8b-instruct@api.cloudflare.com/v1", env={})
