"""Every setting in one table, and ``loopwright.toml``.

Precedence: command-line flags, then environment variables, then ``loopwright.toml``, then
the defaults. The file is ``$LOOPWRIGHT_CONFIG`` when set, else ``./loopwright.toml``, else
``<XDG_CONFIG_HOME or ~/.config>/loopwright/loopwright.toml``. Its keys are the setting names
below (a flat table; sections ``[server]``, ``[evals]``... are read as ``server.port``...).

Loading the file fills in the environment variables that are not set (so library code, which
reads the environment, sees the file's values too); API keys are never read from the file.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class Setting:
    """One setting: its key in ``loopwright.toml``, its variable, default and meaning."""

    key: str
    env: str
    default: str
    help: str


#: The settings that are switched on and off (``true``/``false`` in ``loopwright.toml``; the
#: others take a value, and a ``true`` or ``false`` there is an error).
SWITCHES = frozenset(
    {"audit", "debug", "trace_content", "stats", "mask_identifiers", "compact", "evals.enabled"}
)


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "model",
        "LOOPWRIGHT_MODEL",
        "auto",
        "Model string: anthropic[:MODEL], openai[:MODEL], openai:MODEL@URL, local, "
        "local:PATH.gguf, local:smollm2-135m, local:gemma3-270m, scripted. auto: Anthropic if "
        "ANTHROPIC_API_KEY is set, else OpenAI if OPENAI_API_KEY is set, else the embedded model.",
    ),
    Setting(
        "permission_mode",
        "LOOPWRIGHT_PERMISSION_MODE",
        "auto",
        "auto (tools run in the sandbox), ask (write/execute calls wait for approval), "
        "read-only (they are refused).",
    ),
    Setting(
        "audit",
        "LOOPWRIGHT_AUDIT",
        "",
        "Audit log of every tool call (CLI and server), with secrets redacted: 1 for "
        "<home>/audit/<session id>.jsonl (outside the workspace: out of the agent's reach, "
        "kept after sessions rm), or a path ({session_id} is replaced; relative: inside the "
        "workspace). Empty or 0: off.",
    ),
    Setting("max_turns", "LOOPWRIGHT_MAX_TURNS", "50", "Model calls per run before it stops."),
    Setting("timeout", "LOOPWRIGHT_TIMEOUT", "", "Seconds of wall-clock per run (empty: none)."),
    Setting(
        "home",
        "LOOPWRIGHT_HOME",
        "~/.local/share/loopwright",
        "Data directory: sessions.db, workspaces/, memory, generated data.",
    ),
    Setting(
        "workspaces",
        "LOOPWRIGHT_WORKSPACES",
        "<home>/workspaces",
        "Where each session gets its workspace directory.",
    ),
    Setting(
        "store",
        "LOOPWRIGHT_STORE",
        "sqlite:///<home>/sessions.db",
        "Session store: sqlite:///PATH, postgresql://USER@HOST/DB or memory.",
    ),
    Setting(
        "cache",
        "LOOPWRIGHT_CACHE",
        "~/.cache/loopwright",
        "Rebuildable files (model files joined from packages).",
    ),
    Setting(
        "sandbox",
        "LOOPWRIGHT_SANDBOX",
        "auto",
        "Process sandbox: auto, bubblewrap, process or docker.",
    ),
    Setting(
        "grep_backend", "LOOPWRIGHT_GREP_BACKEND", "auto", "Grep backend: auto, ripgrep or python."
    ),
    Setting("debug", "DEBUG", "", "1: readable progress lines on stderr."),
    Setting("log", "LOOPWRIGHT_LOG", "", "json: structured JSON log lines on stderr."),
    Setting(
        "trace_content",
        "LOOPWRIGHT_TRACE_CONTENT",
        "",
        "1: record prompts and completions in traces (off by default, for privacy), "
        "redacted by the policy and cut at 32,000 characters a string.",
    ),
    Setting(
        "stats",
        "LOOPWRIGHT_STATS",
        "1 (CLI and server)",
        "Keep per-call timings in .loopwright/stats.jsonl and conversation.json (0: off).",
    ),
    Setting(
        "mask_identifiers",
        "LOOPWRIGHT_MASK_IDENTIFIERS",
        "1",
        "Healthcare agent: show direct patient identifiers as [masked #n] in the SQL preview "
        "the model (and its provider) sees; the saved files keep them. 0: show them.",
    ),
    Setting(
        "compact",
        "LOOPWRIGHT_COMPACT",
        "auto",
        "Healthcare agent: compact mode, for a tiny model (a short prompt, the SQL tool alone, "
        "worked SQL examples shown as earlier turns, 6 model calls). 1: on (a small model "
        "behind a server, e.g. openai:qwen2.5:0.5b@URL); 0: off (the full prompt and every "
        "tool); auto: on for the embedded local: models and models named with under 2B "
        "parameters (qwen2.5:0.5b, llama3.2:1b). --compact/--full override it.",
    ),
    Setting(
        "prices",
        "LOOPWRIGHT_PRICES",
        "",
        "Model prices in USD per million tokens, over the built-in table: "
        "MODEL=INPUT/OUTPUT[/CACHE_READ[/CACHE_WRITE]] entries apart with ';' (e.g. "
        "llama-3.3-70b-versatile=0.59/0.79). For a model the table lacks (openai:NAME@URL is "
        "priced as NAME), whose price changed, or behind a local proxy (otherwise free).",
    ),
    Setting(
        "bigquery_usd_per_tib",
        "LOOPWRIGHT_BIGQUERY_USD_PER_TIB",
        "6.25",
        "USD per TiB billed that BigQuery queries' cost is estimated at (on-demand list "
        "price), shown apart from the model's cost in the turn's line and sessions report, "
        "and counted with it in an agent's max_cost_usd.",
    ),
    Setting(
        "langfuse_host",
        "LANGFUSE_HOST",
        "",
        "Langfuse base URL; with LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY (environment "
        "only) traces go to Langfuse's OTLP endpoint.",
    ),
    Setting(
        "langfuse_public_key",
        "LANGFUSE_PUBLIC_KEY",
        "",
        "Langfuse public key (the secret key is read from the environment only).",
    ),
    Setting(
        "otlp_endpoint",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "",
        "OpenTelemetry OTLP/HTTP endpoint for traces (any OTEL_EXPORTER_OTLP_* variable works).",
    ),
    Setting("evals.enabled", "EVALS_ENABLED", "", "1: run evaluators on runs in the background."),
    Setting("evals.model", "EVALS_MODEL", "", "Model string of the judge (default: the agent's)."),
    Setting(
        "mcp_config",
        "LOOPWRIGHT_MCP_CONFIG",
        "./mcp.json",
        "MCP servers whose tools the CLI agent gets ({'mcpServers': {...}}).",
    ),
    Setting(
        "http_allow",
        "LOOPWRIGHT_HTTP_ALLOW",
        "",
        "Domains the CLI agent's HTTP tool may reach (comma-separated; none: no HTTP tool).",
    ),
    Setting(
        "anthropic_base_url",
        "ANTHROPIC_BASE_URL",
        "",
        "Another server speaking Anthropic's API (the key stays in the environment).",
    ),
    Setting(
        "openai_base_url",
        "OPENAI_BASE_URL",
        "",
        "Another OpenAI-compatible server (Ollama, vLLM, llama.cpp) for openai models.",
    ),
    Setting(
        "server.tokens_file",
        "LOOPWRIGHT_TOKENS_FILE",
        "",
        "A TOML ([tokens]) or JSON file mapping HTTP API tokens to users.",
    ),
    Setting(
        "server.tokens",
        "LOOPWRIGHT_TOKENS",
        "",
        "HTTP API bearer tokens: token=user,token2=user2 (none: 127.0.0.1 only).",
    ),
)

#: variables :func:`apply_config` set from the file (to report where values came from)
FROM_FILE: set[str] = set()

#: Never taken from a file: secrets belong in the environment or a secret store.
SECRET_VARIABLES = frozenset({"ANTHROPIC_API_KEY", "OPENAI_API_KEY", "LANGFUSE_SECRET_KEY"})

#: How a list in ``loopwright.toml`` is joined into its setting's value, for the settings
#: whose entries are not apart with ``,`` (a price has none, but ``;`` ends one).
LIST_SEPARATORS = {"prices": ";"}

#: The words a switch (``DEBUG``, ``LOOPWRIGHT_STATS``, ``LOOPWRIGHT_AUDIT``...) takes for on
#: and for off, in any case.
ON_WORDS = frozenset({"1", "true", "yes", "on"})
OFF_WORDS = frozenset({"0", "false", "no", "off"})


def switch(raw: str | None) -> bool | None:
    """``True`` for an on word, ``False`` for an off word (:data:`ON_WORDS`,
    :data:`OFF_WORDS`; case and spaces aside), ``None`` for anything else: empty (the
    default), ``auto``, a path, a typo for the caller to refuse."""
    word = (raw or "").strip().lower()
    if word in ON_WORDS:
        return True
    if word in OFF_WORDS:
        return False
    return None


def config_path(env: Mapping[str, str] | None = None) -> Path | None:
    """The ``loopwright.toml`` in effect, or ``None`` when there is none."""
    env = os.environ if env is None else env
    explicit = env.get("LOOPWRIGHT_CONFIG")
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ValueError(f"LOOPWRIGHT_CONFIG names {path}, which is not a file")
        return path
    local = Path("loopwright.toml")
    if local.is_file():
        return local.resolve()
    xdg = env.get("XDG_CONFIG_HOME")
    user = (Path(xdg).expanduser() if xdg else Path.home() / ".config") / "loopwright"
    candidate = user / "loopwright.toml"
    return candidate if candidate.is_file() else None


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def read_config(path: Path) -> dict[str, str]:
    """The file's settings as ``{ENV_VARIABLE: value}``; unknown keys are an error."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path} is not valid TOML: {exc}") from None
    by_key = {s.key: s for s in SETTINGS}
    values: dict[str, str] = {}
    for key, value in _flatten(data).items():
        setting = by_key.get(key)
        if setting is None:
            known = ", ".join(sorted(by_key))
            raise ValueError(f"{path}: unknown setting {key!r}; the settings are: {known}")
        if isinstance(value, bool):
            if key not in SWITCHES:
                raise ValueError(
                    f"{path}: {key} = {str(value).lower()}: {key} takes a value (its default: "
                    f"{setting.default or 'none'}), not true or false"
                )
            text = "1" if value else "0"  # "" would mean the default, not off
        elif isinstance(value, list):
            text = LIST_SEPARATORS.get(key, ",").join(str(v) for v in value)
        else:
            text = str(value)
        values[setting.env] = text
    return values


def apply_config(env: MutableMapping[str, str] | None = None) -> Path | None:
    """Fill unset environment variables from ``loopwright.toml``; returns the file used."""
    env = os.environ if env is None else env
    path = config_path(env)
    if path is None:
        return None
    for name, value in read_config(path).items():
        if name not in SECRET_VARIABLES and not env.get(name):
            env[name] = value
            FROM_FILE.add(name)
    return path


def effective(env: Mapping[str, str] | None = None) -> list[tuple[Setting, str, str]]:
    """Each setting with its value and where it came from (environment, file or default)."""
    env = os.environ if env is None else env
    return [
        (s, env[s.env], "loopwright.toml" if s.env in FROM_FILE else "environment")
        if env.get(s.env)
        else (s, s.default, "default")
        for s in SETTINGS
    ]


def markdown_table() -> str:
    """The settings as a Markdown table (docs/configuration.md is checked against it)."""
    lines = [
        "| Setting (`loopwright.toml`) | Environment variable | Default | Meaning |",
        "|---|---|---|---|",
    ]
    for s in SETTINGS:
        default = f"`{s.default}`" if s.default else "(none)"
        lines.append(f"| `{s.key}` | `{s.env}` | {default} | {s.help} |")
    return "\n".join(lines)
