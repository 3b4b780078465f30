"""Model providers behind one interface, and ``resolve_model`` for model strings.

Model strings:

- ``anthropic`` or ``anthropic:<model>`` (default ``claude-sonnet-5-5``; any model name, e.g.
  ``anthropic:claude-sonnet-4-5``): needs ``ANTHROPIC_API_KEY``.
- ``openai`` or ``openai:<model>`` (default ``gpt-4.1``): needs ``OPENAI_API_KEY``.
- ``<provider>:<model>@<base_url>``, e.g. ``openai:llama3.2@http://127.0.0.1:11434/v1``: any
  server that speaks the provider's protocol (Ollama, vLLM, llama.cpp server, LM Studio); no
  key is needed unless that server wants one. ``resolve_model(..., base_url=...)`` does the
  same.
- ``local`` (the embedded model bundled with the ``local`` extra), ``local:<path.gguf>``, or a
  bundled model by name: ``local:smollm2-135m``, ``local:gemma3-270m``.
- ``scripted``: the built-in demo script (no LLM); ``scripted:<file.json|yaml>`` plays the
  turns in that file (see :func:`loopwright.models.scripted.load_script`).
- ``auto``: the default below.

With no model string (or ``auto``), :func:`describe_default` decides: the model string in
``LOOPWRIGHT_MODEL`` if that is set, else Anthropic if ``ANTHROPIC_API_KEY`` is set, else
OpenAI if ``OPENAI_API_KEY`` is set, else the embedded local model.

Anthropic and OpenAI models are wrapped in a :class:`~loopwright.models.retry.RetryingModel`
(exponential backoff on 429, 5xx, overload, connection errors and timeouts) unless
``retries=False``. Provider modules are imported only when a model is made, so importing
loopwright stays fast.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from loopwright.lazy import lazy_getattr
from loopwright.models.base import (
    Model,
    ModelError,
    ModelEvent,
    ModelRequest,
    ModelResponse,
    Pricing,
    RetryNotice,
    ThinkingDelta,
)

if TYPE_CHECKING:
    from loopwright.models.cache import CachedModel
    from loopwright.models.fallback import FallbackModel
    from loopwright.models.pricing import Cost, cost_of, price_for, register_price
    from loopwright.models.retry import RetryingModel
    from loopwright.models.scripted import ScriptedModel

__all__ = [
    "DEFAULT_ANTHROPIC_MODEL",
    "DEFAULT_OPENAI_MODEL",
    "CachedModel",
    "Cost",
    "FallbackModel",
    "Model",
    "ModelChoice",
    "ModelError",
    "ModelEvent",
    "ModelRequest",
    "ModelResponse",
    "Pricing",
    "RetryNotice",
    "RetryingModel",
    "ScriptedModel",
    "ThinkingDelta",
    "available_models",
    "cost_of",
    "describe_default",
    "price_for",
    "register_price",
    "resolve_model",
]

#: The Anthropic model used for ``anthropic`` without a model name, and by default.
DEFAULT_ANTHROPIC_MODEL = "claude-sonnet-5-5"
#: The OpenAI model used for ``openai`` without a model name.
DEFAULT_OPENAI_MODEL = "gpt-4.1"

_LAZY = {
    "CachedModel": "loopwright.models.cache",
    "FallbackModel": "loopwright.models.fallback",
    "RetryingModel": "loopwright.models.retry",
    "ScriptedModel": "loopwright.models.scripted",
    "Cost": "loopwright.models.pricing",
    "cost_of": "loopwright.models.pricing",
    "price_for": "loopwright.models.pricing",
    "register_price": "loopwright.models.pricing",
    "AnthropicModel": "loopwright.models.anthropic",
    "OpenAIModel": "loopwright.models.openai",
    "LocalModel": "loopwright.models.local",
    "RecordingTransport": "loopwright.models.recording",
    "ReplayTransport": "loopwright.models.recording",
    "recording_client": "loopwright.models.recording",
    "replay_client": "loopwright.models.recording",
}

_FORMS = (
    "anthropic[:MODEL], openai[:MODEL], openai:MODEL@http://HOST:PORT/v1, local, "
    "local:/path/to/model.gguf, scripted, auto"
)
_KEYS = {"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY"}
_DEFAULT_NAMES = {"anthropic": DEFAULT_ANTHROPIC_MODEL, "openai": DEFAULT_OPENAI_MODEL}
_LOCAL_EXTRA = "pip install 'loopwright[local]'"
_OFFICIAL_HOSTS = ("api.anthropic.com", "api.openai.com")


__getattr__ = lazy_getattr(__name__, _LAZY, globals())


@dataclass(frozen=True, slots=True)
class ModelChoice:
    """Which model string was chosen (``spec``) and why (``reason``, for people)."""

    spec: str
    reason: str


def available_models() -> list[str]:
    """The forms of model string this version understands."""
    return [form.strip() for form in _FORMS.split(",")]


def describe_default(env: Mapping[str, str] | None = None) -> ModelChoice:
    """The model used when none is given, and why: the model string in ``LOOPWRIGHT_MODEL``
    if set, else Anthropic if ``ANTHROPIC_API_KEY`` is set, else OpenAI if
    ``OPENAI_API_KEY`` is set, else the embedded local model."""
    env = os.environ if env is None else env
    chosen = env.get("LOOPWRIGHT_MODEL", "").strip()
    if chosen and chosen.lower() != "auto":
        return ModelChoice(chosen, "default: LOOPWRIGHT_MODEL is set")
    if env.get("ANTHROPIC_API_KEY", "").strip():
        return ModelChoice(
            f"anthropic:{DEFAULT_ANTHROPIC_MODEL}", "default: ANTHROPIC_API_KEY is set"
        )
    if env.get("OPENAI_API_KEY", "").strip():
        return ModelChoice(
            f"openai:{DEFAULT_OPENAI_MODEL}",
            "default: OPENAI_API_KEY is set, ANTHROPIC_API_KEY is not",
        )
    return ModelChoice(
        "local",
        "default: the embedded model, as neither ANTHROPIC_API_KEY nor OPENAI_API_KEY is set",
    )


def resolve_model(
    spec: Model | str | None = None,
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    retries: bool = True,
    env: Mapping[str, str] | None = None,
) -> Model:
    """Turn a model string (or a ready :class:`Model`, returned as it is) into a model.

    ``None`` or ``"auto"`` picks the default (see :func:`describe_default`). ``base_url``
    and ``api_key`` override the server and the key of ``anthropic``/``openai`` models;
    ``env`` replaces ``os.environ`` when looking keys up. ``retries=False`` leaves a
    provider unwrapped. Raises :class:`ModelError` with one sentence saying what to do when
    the string is not understood, a provider's key is missing or the local model is not
    installed.
    """
    if isinstance(spec, Model):
        return spec
    env = os.environ if env is None else env
    if spec is not None and spec.strip().lower() not in ("", "auto"):
        return _from_string(spec.strip(), base_url, api_key, retries, env, defaulted=False)
    choice = describe_default(env)
    try:
        return _from_string(choice.spec, base_url, api_key, retries, env, defaulted=True)
    except ModelError as exc:
        if "LOOPWRIGHT_MODEL" in choice.reason:
            raise ModelError(f"LOOPWRIGHT_MODEL: {exc}") from None
        raise


def _from_string(
    text: str,
    base_url: str | None,
    api_key: str | None,
    retries: bool,
    env: Mapping[str, str],
    *,
    defaulted: bool,
) -> Model:
    provider, _, rest = text.partition(":")
    provider = provider.lower()
    if text.lower() in ("scripted", "scripted:demo", "demo"):
        from loopwright.models.demo import demo_model

        return demo_model()
    if provider == "scripted" and rest.strip():
        from loopwright.models.scripted import load_script

        return load_script(rest.strip())
    if provider == "local":
        return _local(rest.strip() or None, defaulted=defaulted)
    if provider in _KEYS:
        name, url = _name_and_url(rest)
        if url and not url.startswith(("http://", "https://")):
            raise ModelError(
                f"the base URL in model {text!r} must start with http:// or https://, e.g. "
                f"{provider}:{name or _DEFAULT_NAMES[provider]}@http://127.0.0.1:11434/v1"
            )
        server = base_url or url or env.get(f"{provider.upper()}_BASE_URL", "").strip() or None
        model = _remote(
            provider,
            name.strip() or _DEFAULT_NAMES[provider],
            base_url=server,
            api_key=api_key,
            env=env,
        )
        if not retries:
            return model
        from loopwright.models.retry import RetryingModel

        return RetryingModel(model)
    raise ModelError(f"unknown model {text!r}{_hint(text)}; use one of: {_FORMS}")


def _name_and_url(rest: str) -> tuple[str, str]:
    """``NAME@URL`` apart: at the ``@`` before ``scheme://``, as a model's own name may hold
    one (Cloudflare's ``@cf/meta/llama-3.1-8b-instruct``); without a scheme, at the last ``@``
    past the name's first character (its URL then lacks ``http://``: refused, saying so)."""
    import re

    found = re.search(r"@(?=[A-Za-z][A-Za-z0-9+.-]*://)", rest)
    if found is not None:
        return rest[: found.start()], rest[found.end() :]
    at = rest.rfind("@")
    if at > 0:
        return rest[:at], rest[at + 1 :]
    return rest, ""


def _hint(text: str) -> str:
    lowered = text.lower()
    if lowered.startswith("claude"):
        return f" (did you mean 'anthropic:{text}'?)"
    if lowered.startswith(("gpt", "o1", "o3", "o4", "chatgpt")):
        return f" (did you mean 'openai:{text}'?)"
    if lowered.endswith(".gguf"):
        return f" (did you mean 'local:{text}'?)"
    return ""


def _remote(
    provider: str,
    name: str,
    *,
    base_url: str | None,
    api_key: str | None,
    env: Mapping[str, str],
) -> Model:
    variable = _KEYS[provider]
    key = api_key or env.get(variable, "").strip() or None
    if key is None:
        official = base_url is None or urlsplit(base_url).hostname in _OFFICIAL_HOSTS
        if official:  # a self-hosted server may want no key; the provider's own API does
            raise ModelError(
                f"{provider}:{name} needs an API key; set the {variable} environment variable"
            )
        key = "unused"
    if provider == "anthropic":
        from loopwright.models.anthropic import AnthropicModel

        return AnthropicModel(name, api_key=key, base_url=base_url)
    from loopwright.models.openai import OpenAIModel

    return OpenAIModel(name, api_key=key, base_url=base_url)


def _local(path: str | None, *, defaulted: bool) -> Model:
    if importlib.util.find_spec("llama_cpp") is None:
        if defaulted:
            raise ModelError(
                "no model is configured; set ANTHROPIC_API_KEY or OPENAI_API_KEY, or install "
                f"the embedded model with: {_LOCAL_EXTRA}"
            )
        raise ModelError(f"the local model needs llama-cpp-python; install it with: {_LOCAL_EXTRA}")
    from loopwright.models.local import BUNDLED_MODELS, LocalModel

    if path in BUNDLED_MODELS:  # local:smollm2-135m, local:gemma3-270m
        return LocalModel(bundled=path)
    if path is not None and not Path(path).expanduser().is_file():
        raise ModelError(
            f"no model file at {path}; give the path of a GGUF file (local:/models/model.gguf) "
            f"or a bundled model ({', '.join(f'local:{m}' for m in BUNDLED_MODELS)})"
        )
    return LocalModel(str(Path(path).expanduser()) if path is not None else None)
