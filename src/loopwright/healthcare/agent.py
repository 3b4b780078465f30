"""The healthcare research agent: the design guide's worked example, ready to run.

``healthcare_agent()`` is an :class:`~loopwright.Agent` that answers analysts' questions
about claims data: it queries with ``SQL``, defines populations with ``DefineCohort``,
analyses the saved CSVs and draws charts with ``Python`` (polars and matplotlib, inside the
sandbox), and explains the findings in plain English. With no database it builds the
synthetic claims database (:mod:`loopwright.healthcare.data`) on first use, so it works with
no cloud account; a database URL (``postgresql://...``, ``bigquery://project/dataset``,
``duckdb:///path``) points it at a real warehouse instead.

::

    from loopwright.healthcare import healthcare_agent

    agent = healthcare_agent("anthropic")
    print(agent.run_sync("Find the top 10 prescribers of HUMIRA in California").text)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import re
import weakref
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

from loopwright.agent import Agent, ToolSpec
from loopwright.healthcare.data import DEFAULT_RX_CLAIMS, ProgressCallback, ensure_database
from loopwright.healthcare.prompt import DatabaseProfile, FewShotModel, HealthcarePrompt
from loopwright.models import Model, resolve_model
from loopwright.models.base import ModelError, ModelEvent, ModelRequest
from loopwright.sql.base import SQLError

if TYPE_CHECKING:
    from loopwright.healthcare.id_guard import IdentifierGuard
    from loopwright.policy import Policy
    from loopwright.sql.base import SQLBackend

T = TypeVar("T")


class DatabaseUnreadable(SQLError, ValueError):
    """The database's schema could not be read: a server that refused the connection or the
    credentials, a query the warehouse rejected. An :class:`~loopwright.sql.SQLError` (the
    database failed, not the caller) and, as before, a ``ValueError``."""


#: The tools of the full agent, in the order the prompt lists them.
TOOL_NAMES = (
    "SQL",
    "DefineCohort",
    "Python",
    "Bash",
    "Read",
    "Write",
    "Edit",
    "Glob",
    "Grep",
    "TodoWrite",
)

#: Model calls a tiny (compact mode) model gets: short answers, and no long detours.
COMPACT_MAX_TURNS = 6

#: Models whose name gives fewer parameters than this (in billions: ``135m``, ``0.5b``, ``1b``,
#: ``1.5b``, ``1.7b``) work in compact mode by default. From 2B up (``2b``, ``3b``, ``8b``) a
#: model gets the full agent: most of those follow the full prompt and call its tools.
COMPACT_BELOW_BILLIONS = 2.0

#: Output limit of a model turn for a reasoning model, whose hidden reasoning counts against
#: it: OpenAI's o-series and GPT-5 (OpenAI recommends leaving at least 25,000 tokens for
#: reasoning and the answer), and the open ones on an OpenAI-compatible server (Qwen3, QwQ,
#: DeepSeek-R1, gpt-oss...: :func:`~loopwright.models.openai.is_open_reasoning_model`).
#: Within the agent's usual 4,096 the reasoning about a claims question often used them all,
#: and the turn ended empty ("length"), or its answer was cut off.
REASONING_MAX_OUTPUT_TOKENS = 25_000

#: Settings of the sandboxed commands: charts render to files, never to a display.
SANDBOX_ENV = {"MPLBACKEND": "Agg"}

#: The policies that hold an identifier guard already.
_GUARDED: weakref.WeakSet[Policy] = weakref.WeakSet()

_DUCKDB_SUFFIXES = (".duckdb", ".ddb", ".db")


def database_url(database: str | os.PathLike[str]) -> str:
    """The SQL backend URL for a database given as a URL or as the path of a DuckDB file."""
    raw = os.fspath(database)
    if "://" in raw:
        return raw
    path = Path(raw).expanduser()
    if path.is_file() or raw.lower().endswith(_DUCKDB_SUFFIXES):
        # quoted: the URL's "?" starts settings and "%41" is an escape; a path may hold both
        return f"duckdb://{quote(str(path.resolve()))}"
    raise ValueError(
        f"{raw!r} is neither a database URL nor a DuckDB file; give a URL such as "
        "postgresql://user@host/db or bigquery://project/dataset, or the path of a .duckdb file."
    )


#: A parameter count in a model's name: ``135m``, ``0.5b``, ``1b``, ``8x7b`` (a mixture of
#: experts: 8 of 7B). Not ``qwen2.5``, ``llama3.2``, ``gpt-4o``, a date, a quantization
#: (``q4_k_m``), ``a3b`` (the active parameters of ``30b-a3b``) or a context size (``1m``).
_PARAMETERS = re.compile(
    r"(?<![a-z0-9.])(?:(?P<experts>\d+)x)?(?P<count>\d+(?:\.\d+)?b|\d{2,}(?:\.\d+)?m)(?![a-z0-9])"
)


def parameter_billions(name: str) -> float | None:
    """The parameters (in billions) a model's name gives, ``None`` when it gives none:
    ``openai:qwen2.5:0.5b@http://127.0.0.1:11434/v1`` 0.5, ``SmolLM2-360M-Instruct`` 0.36,
    ``mixtral:8x7b`` 56; the largest when it gives several (``qwen2.5-7b-instruct-1m``: 7)."""
    from loopwright.models.pricing import without_server

    served = without_server(name.lower())  # not the server's address
    sizes = []
    for found in _PARAMETERS.finditer(served):
        count = found["count"]
        size = float(count[:-1]) / (1 if count.endswith("b") else 1000)
        sizes.append(size * int(found["experts"] or 1))
    return max(sizes, default=None)


def is_embedded_model(model: Model | str) -> bool:
    """Whether ``model`` (a model, or a model string) is an embedded ``local:`` one."""
    name = model if isinstance(model, str) else model.name
    return name == "local" or name.startswith("local:")


def is_small_model(model: Model | str) -> bool:
    """Whether ``model`` (a model, or a model string) is a tiny model, which works in compact
    mode by default: an embedded ``local:`` model, or one whose name gives fewer than
    :data:`COMPACT_BELOW_BILLIONS` billion parameters (``qwen2.5:0.5b``, ``gemma3:270m``,
    ``llama3.2:1b`` behind Ollama; see :func:`parameter_billions`). A name that gives no
    size (``gpt-4.1-mini``, ``qwen2.5``) is not known to be tiny."""
    if is_embedded_model(model):
        return True
    size = parameter_billions(model if isinstance(model, str) else model.name)
    return size is not None and size < COMPACT_BELOW_BILLIONS


def reasons_in_its_output(model: Model) -> bool:
    """Whether ``model`` (inside the retrying or caching wrappers, which keep it as
    ``.model``) reasons before it answers, its reasoning counted as output tokens: an OpenAI
    reasoning model, or an open one (Qwen3, QwQ, DeepSeek-R1, gpt-oss, Phi-4-reasoning,
    Magistral) on an OpenAI-compatible server, known by its name."""
    seen: set[int] = set()
    inner = model
    while isinstance(wrapped := getattr(inner, "model", None), Model) and id(inner) not in seen:
        seen.add(id(inner))
        inner = wrapped
    if getattr(inner, "reasoning", False) is True:
        return True
    served = getattr(inner, "model", None)  # the OpenAI provider's: the name the server knows
    if not inner.name.startswith("openai:") or not isinstance(served, str):
        return False
    from loopwright.models.openai import is_open_reasoning_model

    return is_open_reasoning_model(served)


def healthcare_agent(
    model: Model | str | None = None,
    *,
    database: str | os.PathLike[str] | SQLBackend | None = None,
    rx_claims: int = DEFAULT_RX_CLAIMS,
    compact: bool | None = None,
    progress: ProgressCallback | None = None,
    max_rows: int | None = None,
    query_timeout: float | None = None,
    mask_identifiers: bool = True,
    **agent_options: Any,
) -> Agent:
    """The healthcare research agent.

    ``database``: a database URL, the path of a DuckDB file, or an
    :class:`~loopwright.sql.SQLBackend`; by default the synthetic claims database of
    ``rx_claims`` pharmacy claims, built on first use (``progress(fraction, message)`` is
    called while it builds). The system prompt describes the database as read from it, and
    today's date. ``compact`` (by default: for the tiny models, :func:`is_small_model`: the
    embedded ``local:`` ones and those named with under 2B parameters, ``qwen2.5:0.5b``) is
    what a tiny model can use: a short prompt, the ``SQL`` tool alone, worked SQL examples
    computed on this database shown as earlier turns
    (:class:`~loopwright.healthcare.prompt.FewShotModel`), at most 6 turns of 512 tokens, and
    one-line answers from the embedded models. ``compact=False`` on an embedded model, whose
    4,096-token window the full prompt and tools may not leave room in, makes a turn that does
    not fit fail saying to use compact mode. A reasoning model, whose hidden reasoning counts
    as output (OpenAI's o-series and GPT-5; Qwen3, QwQ, DeepSeek-R1, gpt-oss... on an
    OpenAI-compatible server: :func:`reasons_in_its_output`), may write
    :data:`REASONING_MAX_OUTPUT_TOKENS` tokens a turn (unless ``max_output_tokens`` is given).
    ``max_rows`` is the SQL tool's row cap and ``query_timeout`` the time limit of its queries
    and of ``DefineCohort``'s; other keyword arguments go to :class:`~loopwright.Agent`
    (``max_turns``, ``store``, ``timeout``...).

    ``mask_identifiers`` (on by default): the first rows the SQL tool shows the model, which
    go to the model's provider (and into traces, transcripts and the audit log's preview), show
    direct patient identifiers (patient ids, names, dates of birth; not NPIs, not aggregates
    such as ``COUNT(DISTINCT PATIENT_ID)``) as ``[masked #n]``, with a note saying which
    columns and why (:class:`~loopwright.healthcare.sqlcheck.IdentifierMask`). The saved CSV and
    Parquet files keep every value for the analyst. What the model prints of those files (and
    of its cohorts' member lists) with ``Python``, ``Bash``, ``Read`` or ``Grep`` shows the
    same values as ``[masked #n]`` too (:class:`~loopwright.healthcare.id_guard.
    IdentifierGuard`; values code derived from them, hashed or split, are not recognized).

    Raises ``ValueError`` for a database it cannot use (:class:`DatabaseUnreadable`, also an
    :class:`~loopwright.sql.SQLError`, when the database was there but failed to answer) or
    SQL limits it cannot use (``max_rows`` below 1, ``query_timeout`` not a positive number) and
    :class:`~loopwright.models.ModelError` for a model it cannot make, each saying what to do.
    """
    from loopwright.healthcare.cohort import DefineCohort, supports
    from loopwright.sandbox.base import SandboxConfig
    from loopwright.sql import SQLBackend
    from loopwright.tools.files import EditTool, GlobTool, ReadTool, WriteTool
    from loopwright.tools.grep import GrepTool
    from loopwright.tools.python import PythonTools
    from loopwright.tools.shell import ShellTools
    from loopwright.tools.sql import SQL, check_limits
    from loopwright.tools.todo import TodoWriteTool

    # before a database is built or opened
    check_limits(max_rows=max_rows, timeout=query_timeout, timeout_name="query_timeout")
    resolved: Model = resolve_model(model)
    if compact is None:
        compact = is_small_model(resolved)
    if database is None:
        database = ensure_database(rx_claims=rx_claims, progress=progress)
    sql_options: dict[str, Any] = {"max_rows": max_rows, "timeout": query_timeout}
    if isinstance(database, SQLBackend):
        sql = SQL(database, **sql_options)
    else:
        sql = SQL(database_url(database), **sql_options)
    backend = sql.backend
    try:
        profile = _run(_profile(backend))
    except BaseException:
        _run(sql.aclose())
        raise
    guard = None
    if mask_identifiers:
        from loopwright.healthcare.id_guard import IdentifierGuard
        from loopwright.healthcare.sqlcheck import IdentifierMask

        # the schema as read from this database, so a star or a renamed column is followed
        sql.options["mask"] = IdentifierMask(profile.schema(), dialect=backend.dialect)
        # ...and what the model prints of the saved files with Python, Bash, Read, Grep
        guard = IdentifierGuard(profile.schema())
    tools: list[ToolSpec] = [sql]
    names = ["SQL"]
    if not compact:
        if supports(backend):
            cohort_options = {} if query_timeout is None else {"query_timeout": query_timeout}
            tools.append(DefineCohort(backend, **cohort_options))
            names.append("DefineCohort")
        config = SandboxConfig(env=dict(SANDBOX_ENV))
        refused = _refused(agent_options.get("policy"))
        offered: list[tuple[str, ToolSpec]] = [
            ("Python", PythonTools(config=config)),
            ("Bash", ShellTools(config=config)),
            ("Read", ReadTool),
            ("Write", WriteTool),
            ("Edit", EditTool),
            ("Glob", GlobTool),
            ("Grep", GrepTool),
            ("TodoWrite", TodoWriteTool),
        ]
        tools += [spec for name, spec in offered if name not in refused]
        names += [n for n in TOOL_NAMES if n not in names and n != "DefineCohort"]
        names = [n for n in names if n not in refused]
    options: dict[str, Any] = {"name": "healthcare"}
    if reasons_in_its_output(resolved):  # its hidden reasoning counts as output, in any mode
        options["max_output_tokens"] = REASONING_MAX_OUTPUT_TOKENS
    elif compact:
        options["max_output_tokens"] = 512  # a tiny model: short answers, no long detours
    if compact:
        options["max_turns"] = COMPACT_MAX_TURNS
    options.update(agent_options)
    if not compact:
        options["policy"] = _with_chart_check(options.get("policy"))
    if guard is not None:
        # in compact mode too: the agent has no tool that prints a file, but the files are
        # resources to an MCP client (which reads them as Read would), and a later session
        # in the full mode goes on from what this one learnt
        options["policy"] = _with_identifier_guard(options.get("policy"), guard)
    prompt = HealthcarePrompt(profile, compact=compact, tools=names)
    shown = [example for example in profile.examples if example.rows]
    if compact and shown:
        # worked examples as earlier turns; an embedded model's answer ends at a newline
        # (its tool calls, written to a grammar, hold none). A server's model writes tool
        # calls in its own format, over lines (<tool_call>\n{...}), and servers match stop
        # sequences against that raw output: a "\n" stop would cut every call.
        stop = ("\n",) if is_embedded_model(resolved) else ()
        resolved = FewShotModel(resolved, shown, stop=stop)
    elif not compact and is_embedded_model(resolved):
        resolved = FullModeAdvice(resolved)
    return Agent(resolved, system_prompt=prompt, tools=tools, **options)


#: Why an embedded model in full mode failed a turn, and what to do instead of what its own
#: message says (a shorter request in a new session would not fit either).
FULL_MODE_ADVICE = (
    "The full healthcare agent (--full, LOOPWRIGHT_COMPACT=0 or compact=False) has a prompt "
    "and tools that take most of an embedded model's window: drop --full (or set "
    "LOOPWRIGHT_COMPACT=auto) for compact mode, the embedded models' default (a short prompt "
    "and the SQL tool alone), or use a model with a larger context window."
)


class FullModeAdvice(Model):
    """An embedded model given the full agent: a conversation too long for its window is
    refused saying to use compact mode (:data:`FULL_MODE_ADVICE`), not to start a new session
    with a shorter request, which the full prompt alone may not leave room for. Otherwise it is
    ``model`` (kept as ``.model``, as the retrying and caching wrappers keep theirs)."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.name = model.name
        self.context_window = model.context_window
        self.pricing = model.pricing

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        from loopwright.models.retry import close_stream

        events = self.model.stream(request)
        try:
            async for event in events:
                yield event
        except ModelError as exc:
            said = str(exc)
            if "context window" not in said:
                raise
            what = said.partition(";")[0].rstrip(". ")  # its size; not the model's advice
            raise ModelError(
                f"{what}. {FULL_MODE_ADVICE}",
                retryable=exc.retryable,
                status_code=exc.status_code,
                retry_after=exc.retry_after,
            ) from exc
        finally:
            await close_stream(events)

    async def aclose(self) -> None:
        await self.model.aclose()


#: The tools the read-only permission mode refuses (they write or run code), by the name
#: the prompt lists them under.
_WRITING_TOOLS = ("Python", "Bash", "Write", "Edit")


def _refused(policy: object) -> frozenset[str]:
    """The tools not offered at all under ``policy``: in read-only mode, Python, Bash, Write
    and Edit, which it refuses call by call (the model was told of them, tried them and lost
    its turns to the refusals), unless an allow or ask rule names one."""
    from loopwright.policy import Policy

    if not isinstance(policy, Policy) or policy.mode != "read-only":
        return frozenset()
    import fnmatch

    rules = [*policy.permissions.allow, *policy.permissions.ask]
    named = {n for n in _WRITING_TOOLS for r in rules if fnmatch.fnmatchcase(n, r.tool)}
    if any(r.tool in ("Write", "Edit") for r in rules):  # the file tools' family
        named |= {"Write", "Edit"}
    return frozenset(n for n in _WRITING_TOOLS if n not in named)


def _with_chart_check(policy: Policy | None) -> Policy:
    """``policy`` (a new ``auto`` one when ``None``) with the Stop hook that checks the
    charts an answer names are in the workspace (:mod:`loopwright.healthcare.named_charts`),
    added once."""
    from loopwright.healthcare.named_charts import ChartCheck
    from loopwright.policy import Policy

    if policy is None:
        policy = Policy()
    if not any(isinstance(hook, ChartCheck) for hook in policy.hooks.stop_hooks):
        policy.hooks.stop(ChartCheck())
    return policy


def _with_identifier_guard(policy: Policy | None, guard: IdentifierGuard) -> Policy:
    """``policy`` (a new ``auto`` one when ``None``) with ``guard``, the PostToolUse hook that
    masks the patient identifiers of the workspace's results in what ``Python``, ``Bash``,
    ``Read`` and ``Grep`` show the model (:mod:`loopwright.healthcare.id_guard`), and its
    PreToolUse hook that notes the files a ``SQL`` or ``DefineCohort`` call may write (read
    even when the call never says it wrote them), added once (a policy shared by two agents,
    or by an agent and its sub-agents, keeps the first one's, which learns from every
    session)."""
    from loopwright.healthcare.id_guard import MATCHER, PENDING_MATCHER
    from loopwright.policy import Policy

    if policy is None:
        policy = Policy()
    if policy not in _GUARDED:
        policy.hooks.pre_tool_use(PENDING_MATCHER, guard.before)
        policy.hooks.post_tool_use(MATCHER, guard)
        _GUARDED.add(policy)
    return policy


async def _profile(backend: SQLBackend) -> DatabaseProfile:
    from loopwright.healthcare.prompt import profile_backend

    try:
        return await profile_backend(backend)
    except SQLError as exc:
        raise DatabaseUnreadable(f"Cannot read the database's schema: {exc}") from None


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, even inside a running event loop
    (in a thread of its own then), so the agent can be made anywhere."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


__all__ = [
    "COMPACT_BELOW_BILLIONS",
    "COMPACT_MAX_TURNS",
    "FULL_MODE_ADVICE",
    "REASONING_MAX_OUTPUT_TOKENS",
    "SANDBOX_ENV",
    "TOOL_NAMES",
    "DatabaseUnreadable",
    "FullModeAdvice",
    "database_url",
    "healthcare_agent",
    "is_embedded_model",
    "is_small_model",
    "parameter_billions",
    "reasons_in_its_output",
]
