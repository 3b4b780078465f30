"""What model calls cost: a price table for Anthropic and OpenAI models, in USD per million tokens.

Look a model up with :func:`price_for` (dated snapshots such as ``claude-sonnet-4-5-20250929``
or ``gpt-4.1-2025-04-14`` resolve to their family) and price a call with :func:`cost_of`, which
never fails: a model missing from the table costs 0 and is flagged (``Cost.priced`` is false)
so a report can say the figure is incomplete. Local models (``local``, ``scripted``) cost 0.

Prices change. Give your own with the ``prices=`` argument of these functions, add to the
built-in table for the whole process with :func:`register_price`, or set them without code in
``LOOPWRIGHT_PRICES`` (:func:`configured_prices`): ``MODEL=INPUT/OUTPUT[/CACHE_READ[/CACHE_WRITE]]``
entries apart with ``;``, e.g. ``llama-3.3-70b-versatile=0.59/0.79``. Those win over the tables
and over the zero price of a model served from this machine (a local proxy such as LiteLLM may
forward to a paid API).

The four prices per model are: input tokens, output tokens, cache reads (Anthropic "cache hits",
OpenAI "cached input") and cache writes (Anthropic's 5-minute cache write; OpenAI has no write
surcharge). Usage must count them apart: ``input_tokens`` are the uncached prompt tokens only.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from urllib.parse import urlsplit

from loopwright.events import Usage
from loopwright.models.base import ModelError, Pricing

__all__ = [
    "DEFAULT_PRICES",
    "PRICES_ENV",
    "Cost",
    "TieredPricing",
    "configured_prices",
    "cost_of",
    "model_family",
    "price_for",
    "register_price",
    "without_server",
]


@dataclass(frozen=True, slots=True)
class TieredPricing(Pricing):
    """Prices that change once a prompt is longer than ``long_context_threshold`` tokens.

    A call whose prompt (input + cache read + cache write tokens) exceeds the threshold is
    billed entirely at ``long_context`` prices, as Anthropic bills Claude Sonnet 4 and 4.5
    prompts over 200K tokens (the 1M-token context window) and OpenAI GPT-5.4 prompts over
    272K tokens.
    """

    long_context_threshold: int = 0
    long_context: Pricing | None = None

    def cost(self, usage: Usage) -> float:
        """What ``usage`` costs, at the long-context prices when the prompt is long."""
        prompt = usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens
        if self.long_context is not None and prompt > self.long_context_threshold:
            return self.long_context.cost(usage)
        return Pricing.cost(self, usage)


def _anthropic(input: float, output: float) -> Pricing:
    """Anthropic prices: cache hits at 0.1x input, 5-minute cache writes at 1.25x input."""
    return Pricing(input, output, round(input * 0.1, 6), round(input * 1.25, 6))


def _openai(input: float, output: float, cached: float) -> Pricing:
    """OpenAI prices: cached input is billed at ``cached``; there is no cache-write price."""
    return Pricing(input, output, cached, 0.0)


_OPUS_45 = _anthropic(5.0, 25.0)
_OPUS_4 = _anthropic(15.0, 75.0)
_SONNET = _anthropic(3.0, 15.0)
_SONNET_LONG = TieredPricing(
    3.0, 15.0, 0.30, 3.75, long_context_threshold=200_000, long_context=Pricing(6.0, 22.5, 0.6, 7.5)
)
_FABLE = Pricing(10.0, 50.0, 1.0, 12.5)
_FABLE_51 = Pricing(10.0, 50.0, 0.25, 12.5)
_GPT_5 = _openai(1.25, 10.0, 0.125)
_GPT_52 = _openai(1.75, 14.0, 0.175)

# Standard (not batch, not priority, not regional) prices in USD per million tokens.
#
# Anthropic: the "Model pricing" table of https://platform.claude.com/docs/en/about-claude/pricing
#   and the per-model overview pages (platform.claude.com/docs/en/models/<model>/overview), as
#   published in October/November 2026, cross-checked with GitHub's Copilot price table
#   (github/docs, data/tables/copilot/models-and-pricing.yml). "Cache write" is the 5-minute
#   TTL price. Claude Sonnet 5.5 cache reads follow the cut of 2026-10-07 ($0.20 -> $0.10).
#   Tiered: Sonnet 4 / 4.5 prompts over 200K tokens, Haiku 5.5 prompts over 100K tokens.
# OpenAI: https://platform.openai.com/docs/pricing (developers.openai.com/api/docs/pricing):
#   GPT-4.1, GPT-4o and o-series as of 2025-06-03 (o3 after its June 2025 cut), the GPT-5
#   family as of 2026-03 and GPT-5.4/5.5 as of 2026-11 (with their >272K-token tier), cross-
#   checked with the same GitHub table. "Cached input" is the cache-read price.
_BUILTIN: dict[str, Pricing] = {
    # --- Anthropic ---------------------------------------------------------------------
    "claude-fable-5-1": _FABLE_51,
    "claude-mythos-5-1": _FABLE_51,
    "claude-fable-5": _FABLE,
    "claude-mythos-5": _FABLE,
    "claude-opus-5-5": Pricing(4.0, 20.0, 0.20, 5.0),
    "claude-opus-5": _OPUS_45,
    "claude-sonnet-5-5": Pricing(2.0, 10.0, 0.10, 2.5),
    "claude-sonnet-5": Pricing(2.0, 10.0, 0.20, 2.5),
    "claude-haiku-5-5": TieredPricing(
        0.10,
        0.50,
        0.01,
        0.125,
        long_context_threshold=100_000,
        long_context=Pricing(0.50, 2.50, 0.05, 0.625),
    ),
    "claude-opus-4-8": _OPUS_45,
    "claude-opus-4-7": _OPUS_45,
    "claude-opus-4-6": _OPUS_45,
    "claude-opus-4-5": _OPUS_45,
    "claude-opus-4-1": _OPUS_4,
    "claude-opus-4": _OPUS_4,
    "claude-opus-4-0": _OPUS_4,
    "claude-sonnet-4-6": _SONNET,
    "claude-sonnet-4-5": _SONNET_LONG,
    "claude-sonnet-4": _SONNET_LONG,
    "claude-sonnet-4-0": _SONNET_LONG,
    "claude-haiku-4-5": _anthropic(1.0, 5.0),
    "claude-3-7-sonnet": _SONNET,
    "claude-3-5-sonnet": _SONNET,
    "claude-3-5-haiku": _anthropic(0.80, 4.0),
    "claude-3-opus": _OPUS_4,
    "claude-3-haiku": Pricing(0.25, 1.25, 0.03, 0.30),
    # --- OpenAI ------------------------------------------------------------------------
    "gpt-5.5": TieredPricing(
        5.0, 30.0, 0.50, long_context_threshold=272_000, long_context=_openai(10.0, 45.0, 1.0)
    ),
    "gpt-5.4": TieredPricing(
        2.5, 15.0, 0.25, long_context_threshold=272_000, long_context=_openai(5.0, 22.5, 0.5)
    ),
    "gpt-5.4-mini": _openai(0.75, 4.50, 0.075),
    "gpt-5.4-nano": _openai(0.20, 1.25, 0.02),
    "gpt-5.3-codex": _GPT_52,
    "gpt-5.2": _GPT_52,
    "gpt-5.2-codex": _GPT_52,
    "gpt-5.1": _GPT_5,
    "gpt-5.1-codex": _GPT_5,
    "gpt-5": _GPT_5,
    "gpt-5-chat": _GPT_5,
    "gpt-5-codex": _GPT_5,
    "gpt-5-mini": _openai(0.25, 2.0, 0.025),
    "gpt-5-nano": _openai(0.05, 0.40, 0.005),
    "gpt-5-pro": _openai(15.0, 120.0, 15.0),
    "gpt-4.1": _openai(2.0, 8.0, 0.50),
    "gpt-4.1-mini": _openai(0.40, 1.60, 0.10),
    "gpt-4.1-nano": _openai(0.10, 0.40, 0.025),
    "gpt-4o": _openai(2.50, 10.0, 1.25),
    "gpt-4o-mini": _openai(0.15, 0.60, 0.075),
    "o3": _openai(2.0, 8.0, 0.50),
    "o3-mini": _openai(1.10, 4.40, 0.55),
    "o4-mini": _openai(1.10, 4.40, 0.275),
    "o1": _openai(15.0, 60.0, 7.50),
}

#: The built-in price table (read-only): model family -> :class:`Pricing`.
DEFAULT_PRICES: Mapping[str, Pricing] = MappingProxyType(_BUILTIN)

#: Prices added with :func:`register_price`; they win over the built-in table.
_registered: dict[str, Pricing] = {}

#: Models that run on the user's machine and cost nothing per token.
_FREE_PROVIDERS = ("local", "scripted", "demo")

_PROVIDER_PREFIX = re.compile(r"^(anthropic|openai|local|scripted)[:/]")
_CLOUD_PREFIX = re.compile(r"^(?:[a-z]{2,6}\.)?anthropic\.")  # Bedrock: us.anthropic.claude-...
#: Bedrock: ...-20250929-v1:0 (``-v1`` alone after the cloud prefix); not deepseek-v3's
_CLOUD_VERSION = re.compile(r"-v\d+:\d+$")
_PREFIXED_CLOUD_VERSION = re.compile(r"-v\d+(?::\d+)?$")
#: Where the server's address starts in ``<model>@http://host/v1`` (a model's own name may hold
#: an ``@``: Cloudflare's ``@cf/meta/...``)
_AT_URL = re.compile(r"@(?=[a-z][a-z0-9+.-]*://)")
_DATE_SUFFIX = re.compile(r"[-@](?:\d{8}|\d{4}-\d{2}-\d{2})$")  # -20250929, -2025-04-14, @2025...
_ALIAS_SUFFIX = re.compile(r"-latest$")


@dataclass(frozen=True, slots=True)
class Cost:
    """The price of one model call (or a sum of them).

    ``priced`` is false when the model is missing from the price table: ``usd`` is then 0,
    which is not the real figure. ``family`` is the table entry that priced it.
    """

    usd: float
    priced: bool
    family: str | None = None


def without_server(model: str) -> str:
    """``model`` without the server's address of ``<model>@http://host/v1`` (the ``@`` before
    ``scheme://``: a model's own name may hold one, as Cloudflare's ``@cf/meta/...``)."""
    return _AT_URL.split(model, 1)[0]


def model_family(model: str) -> str:
    """The price-table key for a model name: provider prefix, cloud wrapping, snapshot date
    and ``-latest`` removed, so ``claude-sonnet-4-5-20250929`` and
    ``anthropic:claude-sonnet-4-5`` both give ``claude-sonnet-4-5``."""
    name = without_server(model.strip().lower())  # openai:<model>@http://host/v1
    name = _PROVIDER_PREFIX.sub("", name)
    cloud = _CLOUD_PREFIX.match(name)
    name = _CLOUD_PREFIX.sub("", name)
    name = (_PREFIXED_CLOUD_VERSION if cloud else _CLOUD_VERSION).sub("", name)
    name = _DATE_SUFFIX.sub("", name)
    return _ALIAS_SUFFIX.sub("", name)


def _is_free(model: str) -> bool:
    """Local providers, and any model served from this machine (``<model>@http://127.0.0.1``)."""
    name = model.strip().lower()
    if name.split(":", 1)[0] in _FREE_PROVIDERS:
        return True
    served = _AT_URL.split(name, 1)
    if len(served) == 2:
        host = urlsplit(served[1]).hostname or ""
        return host in ("localhost", "::1") or host.startswith("127.")
    return False


def price_for(model: str, prices: Mapping[str, Pricing] | None = None) -> Pricing | None:
    """The prices of ``model``, or ``None`` when no table knows it.

    ``prices`` (keyed by model name or family) wins over ``LOOPWRIGHT_PRICES``
    (:func:`configured_prices`), which wins over :func:`register_price` entries, which win
    over :data:`DEFAULT_PRICES`. Models on this machine have zero prices unless one of the
    first two names them. Raises :class:`ModelError` when ``LOOPWRIGHT_PRICES`` is not usable.
    """
    exact = model.strip()
    family = model_family(model)
    keys = (exact, exact.lower(), family)
    for table in (prices or {}, configured_prices()):
        for key in keys:
            found = table.get(key)
            if found is not None:
                return found
    if _is_free(model):
        return Pricing(0.0, 0.0)
    for table in (_registered, DEFAULT_PRICES):
        for key in keys:
            found = table.get(key)
            if found is not None:
                return found
    return None


def cost_of(model: str, usage: Usage, prices: Mapping[str, Pricing] | None = None) -> Cost:
    """What ``usage`` of ``model`` costs; an unknown model costs 0 with ``priced=False`` (as
    does any model while ``LOOPWRIGHT_PRICES`` is not usable: this never raises)."""
    try:
        pricing = price_for(model, prices)
    except ModelError:
        return Cost(0.0, False, None)
    if pricing is None:
        return Cost(0.0, False, None)
    return Cost(pricing.cost(usage), True, model_family(model))


#: The environment variable of :func:`configured_prices`.
PRICES_ENV = "LOOPWRIGHT_PRICES"
_PRICES_FORM = (
    "write MODEL=INPUT/OUTPUT[/CACHE_READ[/CACHE_WRITE]] in USD per million tokens, entries "
    "apart with ';' (e.g. llama-3.3-70b-versatile=0.59/0.79; gpt-4.1=2/8/0.5)"
)


def configured_prices(raw: str | None = None) -> Mapping[str, Pricing]:
    """The prices ``LOOPWRIGHT_PRICES`` sets (or ``raw``), keyed by model family: for models
    the built-in table lacks (a model on an OpenAI-compatible service such as Groq or
    Together: ``openai:NAME@URL`` is priced under ``NAME``), or whose price changed. Raises
    :class:`ModelError` naming the entry and the form when it is not usable."""
    return _parse_prices(os.environ.get(PRICES_ENV, "") if raw is None else raw)


@lru_cache(maxsize=8)
def _parse_prices(raw: str) -> Mapping[str, Pricing]:
    table: dict[str, Pricing] = {}
    entries: dict[str, str] = {}  # family -> the entry that priced it
    for entry in re.split(r"[;\n]", raw):
        entry = entry.strip()
        if not entry:
            continue
        name, sep, figures = entry.rpartition("=")
        parts = figures.split("/")
        try:
            values = [float(part) for part in parts]
        except ValueError:
            values = []
        if (
            not sep
            or not name.strip()
            or "=" in name  # entries apart with commas: "a=1/2, b=3/4"
            or not 2 <= len(parts) <= 4
            or len(values) != len(parts)
            or not all(math.isfinite(v) and v >= 0 for v in values)
        ):
            raise ModelError(f"{PRICES_ENV}: {entry!r} is not a price: {_PRICES_FORM}")
        family = model_family(name)
        pricing = Pricing(*values)
        if table.get(family, pricing) != pricing:
            raise ModelError(
                f"{PRICES_ENV}: {entries[family]!r} and {entry!r} both price {family} (a "
                "model is priced by its family: no provider prefix, snapshot date or -latest); "
                "keep one of them"
            )
        table[family], entries[family] = pricing, entry
    return MappingProxyType(table)


def register_price(model: str, pricing: Pricing) -> None:
    """Set the prices of ``model`` (a name or a family) for this process.

    Use it for a model the built-in table lacks or whose price changed; for a scoped
    override pass ``prices=`` to :func:`price_for` / :func:`cost_of` instead.
    """
    if not model.strip():
        raise ValueError("register_price needs a model name, e.g. 'gpt-4.1'")
    _registered[model_family(model)] = pricing
