"""``LOOPWRIGHT_PRICES`` as a careful user writes it, and as they mistype it.

Entries written apart with commas (and a ``loopwright.toml`` list, which the file joined with
commas) were read as one entry whose model name ran to the last ``=``: no model was priced,
without a word. Two entries that name one family (two snapshots of a model, a model given
twice) kept the last silently, pricing the other's calls at it. ``deepseek-v3`` and
``deepseek-v2`` were one family (``deepseek``, the ``-vN`` of a Bedrock id taken off every
name), and an OpenAI-compatible model named with an ``@`` (Cloudflare's ``@cf/...``) had no
family at all, so no entry could price it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from loopwright.models.base import ModelError, Pricing
from loopwright.models.pricing import configured_prices, model_family, price_for
from loopwright.settings import read_config

CLOUDFLARE = "https://api.cloudflare.com/client/v4/accounts/abc/ai/v1"


@pytest.mark.parametrize("raw", ["a=1/2,b=3/4", "llama=0.59/0.79, mistral=0.2/0.6"])
def test_entries_apart_with_commas_are_refused_naming_the_separator(raw: str) -> None:
    with pytest.raises(ModelError) as caught:
        configured_prices(raw)
    message = str(caught.value)
    assert repr(raw) in message
    assert "entries apart with ';'" in message


def test_a_toml_list_of_prices_prices_each_model(tmp_path: Path) -> None:
    config = tmp_path / "loopwright.toml"
    config.write_text(
        'prices = ["llama-3.3-70b-versatile=0.59/0.79", "qwen2.5:0.5b=0.1/0.2"]\n',
        encoding="utf-8",
    )
    raw = read_config(config)["LOOPWRIGHT_PRICES"]
    assert dict(configured_prices(raw)) == {
        "llama-3.3-70b-versatile": Pricing(0.59, 0.79),
        "qwen2.5:0.5b": Pricing(0.1, 0.2),
    }


@pytest.mark.parametrize(
    ("raw", "first", "second", "family"),
    [
        (
            "gpt-4o-2024-05-13=5/15; gpt-4o-2024-08-06=2.5/10",
            "gpt-4o-2024-05-13=5/15",
            "gpt-4o-2024-08-06=2.5/10",
            "gpt-4o",
        ),
        ("llama=1/2;\nLlama = 3/4", "llama=1/2", "Llama = 3/4", "llama"),
    ],
)
def test_two_prices_for_one_family_are_refused(
    raw: str, first: str, second: str, family: str
) -> None:
    with pytest.raises(ModelError) as caught:
        configured_prices(raw)
    message = str(caught.value)
    assert f"{first!r} and {second!r} both price {family}" in message


def test_the_same_price_twice_is_not_a_conflict() -> None:
    assert dict(configured_prices("llama=1/2; openai:llama=1/2")) == {"llama": Pricing(1.0, 2.0)}


def test_versioned_open_models_keep_their_own_prices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOPWRIGHT_PRICES", "deepseek-v3=0.27/1.1; deepseek-v2=0.14/0.28")
    assert price_for("openai:deepseek-v3@https://api.example.invalid/v1") == Pricing(0.27, 1.1)
    assert price_for("openai:deepseek-v2@https://api.example.invalid/v1") == Pricing(0.14, 0.28)
    assert price_for("openai:deepseek@https://api.example.invalid/v1") is None
    # Bedrock ids still lose their version
    assert model_family("us.anthropic.claude-haiku-4-5-20251001-v1:0") == "claude-haiku-4-5"
    assert model_family("anthropic.claude-3-5-sonnet-20241022-v2:0") == "claude-3-5-sonnet"


def test_a_model_named_with_an_at_sign_is_priced_by_its_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = f"openai:@cf/meta/llama-3.1-8b-instruct@{CLOUDFLARE}"
    assert model_family(name) == "@cf/meta/llama-3.1-8b-instruct"
    monkeypatch.setenv("LOOPWRIGHT_PRICES", "@cf/meta/llama-3.1-8b-instruct=0.28/0.83")
    assert price_for(name) == Pricing(0.28, 0.83)
    # on this machine, without an entry: free
    monkeypatch.delenv("LOOPWRIGHT_PRICES")
    assert price_for("openai:@cf/meta/llama@http://127.0.0.1:8787/v1") == Pricing(0.0, 0.0)
