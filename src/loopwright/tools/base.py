"""The tool interface: ``BaseTool``, its result shape, and ``@tool`` for plain functions.

The interface is the one the design guide's users know: a tool is built with the workspace
directory, has a ``name`` and a ``schema`` (``{"name", "description", "input_schema"}``), an
``async prehook(input)`` for validation, and ``async execute(input)`` returning
``{"content": str, "is_error": bool}`` (extra keys allowed).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, NotRequired, TypedDict, overload

from loopwright.messages import ImageBlock, TextBlock
from loopwright.sandbox.paths import PathValidator
from loopwright.tools.schema import FunctionSignature, convert_argument, function_signature

Prehook = Callable[[dict[str, Any]], Awaitable[None]]

#: The limit a registry gives the call, running in this task, of a tool that bounds its calls
#: itself (``BaseTool.times_itself``): the tool's ``timeout``, else the registry's
#: ``default_timeout`` (``None``: no limit). Unset outside a registry's call.
call_timeout: ContextVar[float | None] = ContextVar("loopwright_call_timeout")


class ToolResult(TypedDict):
    """What ``execute`` returns. Tools may add keys of their own (kept out of the prompt)."""

    content: str | list[TextBlock | ImageBlock]
    is_error: bool
    metadata: NotRequired[dict[str, Any]]


def ok(content: str | list[TextBlock | ImageBlock], **extra: Any) -> ToolResult:
    """A successful tool result."""
    return {"content": content, "is_error": False, **extra}  # type: ignore[typeddict-item]


def error(content: str, **extra: Any) -> ToolResult:
    """A failed tool result: the model sees the message and can try something else."""
    return {"content": content, "is_error": True, **extra}  # type: ignore[typeddict-item]


@dataclass(frozen=True, slots=True)
class ToolContext:
    """Given to a ``@tool`` function that declares a parameter of this type."""

    workspace_dir: Path
    session_id: str | None = None


class BaseTool(ABC):
    """Base class of every tool, built-in or yours.

    Class attributes tune how the registry runs it:

    - ``sequential``: calls of this tool run one at a time, in the model's order (writes, shell),
      instead of concurrently with the other calls of the same turn;
    - ``path_params``: input keys that are paths; each is validated against the workspace
      before anything runs (and replaced by its resolved absolute path);
    - ``timeout``: seconds before a call is stopped (``None``: the registry's default);
    - ``times_itself``: the tool bounds its calls itself and the registry sets no deadline, but
      tells it the limit (:data:`call_timeout`): an MCP server's tool stops a call after that
      long *without an answer or progress*, so a long call that reports progress goes on;
    - ``max_output_chars``: longer output is cut, the rest saved to a file (``None``: default);
    - ``checks_itself``: input properties whose string rules (``pattern``, ``format``,
      ``minLength``, ``maxLength``) the tool checks itself, with a message saying what to write
      instead: the schema sent to models keeps them (a local model's grammar then writes only
      values the tool takes), the registry's validation leaves them to the tool.
    """

    sequential: bool = False
    path_params: ClassVar[tuple[str, ...]] = ()
    timeout: float | None = None
    times_itself: bool = False
    max_output_chars: int | None = None
    checks_itself: ClassVar[tuple[str, ...]] = ()

    def __init__(self, workspace_dir: str | os.PathLike[str]) -> None:
        self.workspace_dir = os.fspath(workspace_dir)
        self._prehook: Prehook | None = None
        self._validator: PathValidator | None = None
        self._input_validator: Callable[[Any], Any] | None = None

    @property
    @abstractmethod
    def name(self) -> str:
        """The name the model calls the tool by."""

    @property
    @abstractmethod
    def schema(self) -> dict[str, Any]:
        """``{"name", "description", "input_schema"}`` as sent to the model."""

    async def prehook(self, input: dict[str, Any]) -> None:
        """Validate or transform the input before execution; raise to refuse the call."""
        if self._prehook is not None:
            await self._prehook(input)

    @abstractmethod
    async def execute(self, input: dict[str, Any]) -> ToolResult:
        """Run the tool and return ``{"content": ..., "is_error": ...}``."""

    @property
    def path_validator(self) -> PathValidator:
        """The validator for this tool's workspace."""
        if self._validator is None:
            self._validator = PathValidator(self.workspace_dir)
        return self._validator

    def validate_paths(self, input: dict[str, Any]) -> None:
        """Resolve every path parameter in place; raises ``SecurityError`` on an escape."""
        for param in self.path_params:
            value = input.get(param)
            if isinstance(value, str):
                input[param] = self.path_validator.validate(value, f"{self.name} {param}")

    def relative(self, path: str) -> str:
        """A path shown to the model: relative to the workspace when inside it."""
        root = self.path_validator.workspace_dir
        if path == root:
            return "."
        prefix = os.path.join(root, "")
        if path.startswith(prefix):
            return path[len(prefix) :]
        return path

    async def aclose(self) -> None:
        """Release what the tool holds (processes, connections) when its session closes."""


class Toolset(ABC):
    """Several tools that share state within one session (a shell manager, a database
    connection, an MCP client). Given to an ``Agent`` or ``ToolRegistry.register_all``, it is
    bound once per session and its tools are registered together."""

    @abstractmethod
    def bind(self, workspace_dir: str, session_id: str | None = None) -> list[BaseTool]:
        """The session's tool instances, sharing whatever state they need."""

    async def aprepare(self) -> None:
        """Async set-up before the toolset is first bound (connect to servers, list their
        tools). Called by the agent before a session's tools are made; must be idempotent."""

    async def aclose(self) -> None:
        """Release what the toolset itself holds (a shared model, a connection pool) when the
        agent that was given it closes; each session's tools are closed with the session."""


class FunctionTool(BaseTool):
    """A tool made from a typed Python function by ``@tool``."""

    def __init__(
        self,
        definition: ToolDefinition,
        workspace_dir: str | os.PathLike[str],
        session_id: str | None = None,
    ) -> None:
        super().__init__(workspace_dir)
        self.definition = definition
        self.session_id = session_id
        self.sequential = definition.sequential
        self.timeout = definition.timeout

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def schema(self) -> dict[str, Any]:
        return self.definition.schema

    async def execute(self, input: dict[str, Any]) -> ToolResult:
        definition = self.definition
        signature = definition.signature
        kwargs = {
            key: convert_argument(signature.annotations[key], value)
            for key, value in input.items()
            if key in signature.annotations
        }
        if signature.context_param is not None:
            kwargs[signature.context_param] = ToolContext(Path(self.workspace_dir), self.session_id)
        if definition.is_async:
            value = await definition.function(**kwargs)
        else:
            # a worker thread, so a slow or blocking function never stalls the event loop
            value = await asyncio.to_thread(definition.function, **kwargs)
            if inspect.isawaitable(value):  # e.g. a partial or wrapper around an async function
                value = await value
        return _as_result(value)


def _as_result(value: Any) -> ToolResult:
    if isinstance(value, dict) and "content" in value:
        value.setdefault("is_error", False)
        return value  # type: ignore[return-value]
    if isinstance(value, str):
        return ok(value)
    if value is None:
        return ok("")
    if isinstance(value, TextBlock | ImageBlock):
        return ok([value])
    if (
        isinstance(value, list)
        and value
        and all(isinstance(v, TextBlock | ImageBlock) for v in value)
    ):
        return ok(value)
    import json

    try:
        return ok(json.dumps(value, ensure_ascii=False, default=str))
    except (TypeError, ValueError):
        return ok(repr(value))


class ToolDefinition:
    """A function turned into a tool definition by ``@tool``; still callable as the function.

    It becomes a tool bound to a workspace when registered (``registry.register(fn)``) or given
    to an ``Agent``.
    """

    def __init__(
        self,
        function: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        sequential: bool = False,
        timeout: float | None = None,
    ) -> None:
        self.function = function
        self.name = name or function.__name__
        self.signature: FunctionSignature = function_signature(function, ToolContext)
        self.description = description or self.signature.description
        self.sequential = sequential
        self.timeout = timeout
        self.is_async = inspect.iscoroutinefunction(function)
        self.schema: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "input_schema": self.signature.input_schema,
        }
        functools.update_wrapper(self, function)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.function(*args, **kwargs)

    def bind(
        self, workspace_dir: str | os.PathLike[str], session_id: str | None = None
    ) -> FunctionTool:
        """The tool instance for one workspace."""
        return FunctionTool(self, workspace_dir, session_id)

    def __repr__(self) -> str:
        return f"<tool {self.name}>"


@overload
def tool(function: Callable[..., Any], /) -> ToolDefinition: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    sequential: bool = False,
    timeout: float | None = None,
) -> Callable[[Callable[..., Any]], ToolDefinition]: ...


def tool(
    function: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    sequential: bool = False,
    timeout: float | None = None,
) -> ToolDefinition | Callable[[Callable[..., Any]], ToolDefinition]:
    """Turn a typed, documented function (sync or async) into a tool.

    The input schema comes from the type hints, the descriptions from the docstring (Google,
    NumPy or Sphinx style). Sync functions run in a worker thread so they never block the
    loop; a thread cannot be stopped, so on a timeout the call returns an error at once but
    the function runs on until it returns (write long work as ``async def``). A parameter
    typed :class:`ToolContext` receives the workspace and session id.
    """

    def decorate(fn: Callable[..., Any]) -> ToolDefinition:
        return ToolDefinition(
            fn, name=name, description=description, sequential=sequential, timeout=timeout
        )

    if function is not None:
        return decorate(function)
    return decorate
