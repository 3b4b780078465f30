"""Command-line options several ``loopwright`` commands share, declared once.

Typer reads them from the annotations: ``model: ModelOption = "auto"``. Only typer is
imported, so ``loopwright --help`` stays fast.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

ModelOption = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        metavar="MODEL",
        help=(
            "Model string: anthropic[:MODEL], openai[:MODEL], openai:MODEL@http://HOST:PORT/v1 "
            "(any OpenAI-compatible server), local, local:/path/model.gguf, or scripted (a "
            "demo script, no LLM). 'auto' uses LOOPWRIGHT_MODEL if set, else Anthropic if "
            "ANTHROPIC_API_KEY is set, else OpenAI if OPENAI_API_KEY is set, else the embedded "
            "local model."
        ),
        show_default=True,
    ),
]
PermissionOption = Annotated[
    str | None,
    typer.Option(
        "--permission-mode",
        "-p",
        metavar="MODE",
        help=(
            "auto: every tool may run (inside the sandbox); ask: write and execute tools wait "
            "for your answer at a prompt; read-only: they are refused. "
            "[default: LOOPWRIGHT_PERMISSION_MODE or auto]"
        ),
    ),
]
SessionOption = Annotated[
    str | None,
    typer.Option(
        "--session",
        "-s",
        metavar="ID",
        help="Continue this session, or create it with this id (default: a new session).",
    ),
]
MaxTurnsOption = Annotated[
    int | None,
    typer.Option(
        "--max-turns",
        min=1,
        metavar="N",
        help="Stop after this many model calls [default: LOOPWRIGHT_MAX_TURNS or 50].",
    ),
]
TimeoutOption = Annotated[
    float | None,
    typer.Option(
        "--timeout",
        min=0.001,
        metavar="SECONDS",
        help="Stop after this long [default: LOOPWRIGHT_TIMEOUT or none].",
    ),
]
JsonOption = Annotated[
    bool,
    typer.Option("--json", help="Print each event as one JSON line, nothing else."),
]
#: ``serve`` and ``mcp serve``: which agent to serve (see ``cli.serve.AGENTS``).
ServedAgentOption = Annotated[
    str,
    typer.Option(
        "--agent",
        metavar="AGENT",
        help="Which agent to serve: standard (files, shell, Python, a task list...) or "
        "healthcare (the healthcare research agent: SQL and DefineCohort over claims data).",
    ),
]
DatabaseOption = Annotated[
    str | None,
    typer.Option(
        "--database",
        "-d",
        metavar="URL",
        help=(
            "The healthcare agent's database instead of the generated one: postgresql://..., "
            "bigquery://PROJECT/DATASET or a .duckdb file."
        ),
    ),
]


def _compact_option(prefix: str) -> Any:
    """``--compact/--full`` (``None``: neither given); ``prefix`` opens its help."""
    return typer.Option(
        "--compact/--full",
        help=(
            f"{prefix}compact mode, for a tiny model (an embedded one, or one of "
            "under 2 billion parameters behind a server, e.g. "
            "openai:qwen2.5:0.5b@http://HOST:PORT/v1): a short prompt, the SQL tool alone, "
            "worked SQL examples shown as earlier turns, at most 6 model calls. --full: the "
            "whole prompt and every tool (Python, charts, cohorts...), for a capable model. "
            "[default: LOOPWRIGHT_COMPACT, else compact for the embedded local: models and "
            "models named with under 2B parameters]"
        ),
        show_default=False,
    )


#: The flag that gave ``compact`` (``True``/``False``), for messages and commands.
COMPACT_FLAGS = {True: "--compact", False: "--full"}
#: ``--compact/--full`` of ``loopwright healthcare``.
CompactOption = Annotated[bool | None, _compact_option("--compact: ")]
#: ``--compact/--full`` of the commands that serve an agent (``--agent healthcare``).
AgentCompactOption = Annotated[bool | None, _compact_option("With --agent healthcare, --compact: ")]
