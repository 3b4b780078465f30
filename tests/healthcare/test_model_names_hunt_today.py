"""Model names the size reading missed: a model whose own name holds an ``@`` (Cloudflare
Workers AI's ``@cf/meta/llama-3.2-1b-instruct``, behind its OpenAI-compatible endpoint) gave
no size, as everything from its first ``@`` on was taken for the server's address: it got
the full agent, which a 1B model cannot use."""

from __future__ import annotations

import pytest

from loopwright.healthcare.agent import is_small_model, parameter_billions

CLOUDFLARE = "https://api.cloudflare.com/client/v4/accounts/abc/ai/v1"


@pytest.mark.parametrize(
    ("name", "billions"),
    [
        (f"openai:@cf/meta/llama-3.2-1b-instruct@{CLOUDFLARE}", 1.0),
        ("@cf/meta/llama-3.2-1b-instruct", 1.0),
        (f"openai:@cf/meta/llama-3.1-8b-instruct@{CLOUDFLARE}", 8.0),
        # the server's address still gives no size
        ("openai:llama3.2@http://gpu-1b.example.invalid:8000/v1", None),
    ],
)
def test_sizes_of_names_with_an_at_sign(name: str, billions: float | None) -> None:
    assert parameter_billions(name) == billions


def test_a_tiny_model_named_with_an_at_sign_is_compact_by_default() -> None:
    assert is_small_model(f"openai:@cf/meta/llama-3.2-1b-instruct@{CLOUDFLARE}")
    assert not is_small_model(f"openai:@cf/meta/llama-3.1-8b-instruct@{CLOUDFLARE}")
