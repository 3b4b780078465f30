"""The ``Python`` tool: run a piece of Python code in the sandbox, in the workspace.

The code runs as a script (``python <file>``) with the sandbox's interpreter: the one
running loopwright by default, so the project's installed libraries (Polars, DuckDB...)
import, or ``SandboxConfig.python``. It gets the same isolation, limits, scrubbed
environment and output capture as ``Bash``; the workspace is on ``sys.path`` so its own
modules import, and tracebacks show the lines of the code.
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from typing import Any

from loopwright.sandbox.base import (
    Sandbox,
    SandboxConfig,
    SandboxError,
    SandboxSession,
    create_sandbox,
)
from loopwright.tools.base import BaseTool, ToolResult, Toolset, error
from loopwright.tools.shell import (
    DEFAULT_OUTPUT_BYTES,
    DEFAULT_TIMEOUT_MS,
    MAX_TIMEOUT_MS,
    REGISTRY_TIMEOUT_S,
    render_outcome,
)
from loopwright.tools.written import (
    broken_images,
    broken_note,
    files_written,
    is_image,
    workspace_files,
    written_note,
)

#: What to do about code that timed out or printed too much (it has no background mode).
PYTHON_ADVICE = (
    "Make it cheaper (less data, or a sample of it) or give a longer timeout "
    f"(timeout, in ms, at most {MAX_TIMEOUT_MS:,}).",
    "Print less (a summary, df.head()), or write the output to a file and read it in parts.",
)

#: What code that ran out of memory leaves on stderr: Python's (and NumPy's) MemoryError,
#: the abort of Rust code (Polars) or C++ code, DuckDB's error.
_OUT_OF_MEMORY = re.compile(
    r"\b\w*MemoryError\b|memory allocation of \d+ bytes failed|std::bad_alloc"
    r"|Out of Memory Error"
)

#: Where the code is written (inside the workspace, so every backend sees it); removed after.
CODE_DIR = os.path.join(".loopwright", "python")

#: Code that asks matplotlib to show a figure: in the sandbox (no display, the Agg backend)
#: that does nothing at all, silently.
_SHOWS_A_FIGURE = re.compile(r"\b(?:plt|pyplot|fig\w*)\s*\.\s*show\s*\(")
#: What code that showed a figure and saved no image is told.
SHOW_NOTE = (
    "[plt.show() shows nothing here: the code runs with no display, so no chart was made. "
    'Save the figure to a file instead, plt.savefig("name.png", dpi=120, bbox_inches="tight"), '
    "and name that file in the answer.]"
)


class PythonTool(BaseTool):
    """``Python``: run Python code in the sandbox and return what it printed."""

    sequential = True
    timeout = REGISTRY_TIMEOUT_S

    def __init__(
        self,
        workspace_dir: str | os.PathLike[str],
        sandbox: Sandbox | None = None,
        *,
        default_timeout_ms: int = DEFAULT_TIMEOUT_MS,
        max_output_bytes: int = DEFAULT_OUTPUT_BYTES,
    ) -> None:
        super().__init__(workspace_dir)
        self.sandbox = sandbox or create_sandbox()
        self.default_timeout_ms = default_timeout_ms
        self.max_output_bytes = max_output_bytes
        self._session: SandboxSession | None = None

    @property
    def name(self) -> str:
        return "Python"

    @property
    def schema(self) -> dict[str, Any]:
        return {
            "name": "Python",
            "description": (
                "Run Python code in the sandbox, in the workspace directory, as a script: "
                "print() what you want to see (the value of a last expression is not "
                "shown). Each call is a fresh interpreter (variables do not carry over; save "
                "intermediate results to files). Installed data libraries can be imported, "
                "and so can modules in the workspace. Save files to keep (charts, tables) "
                "in the workspace with relative paths (chart.png): files written elsewhere, "
                "such as /tmp, are not kept. A query result saved as both .csv and .parquet: "
                "read the .parquet (pl.read_parquet), which keeps its column types; "
                "pl.read_csv guesses them (codes and ids such as 00074290601 become numbers "
                "and lose their leading zeros, dates stay text). Returns stdout, then stderr "
                "after a [stderr] line (tracebacks), and the exit code when it is not 0."
            ),
            "input_schema": {
                "type": "object",
                "properties": {
                    "code": {"type": "string", "description": "The Python code to run"},
                    "timeout": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": MAX_TIMEOUT_MS,
                        "description": (
                            f"Milliseconds before it is killed (default {DEFAULT_TIMEOUT_MS}, "
                            f"at most {MAX_TIMEOUT_MS})"
                        ),
                    },
                },
                "required": ["code"],
                "additionalProperties": False,
            },
        }

    @property
    def sandbox_session(self) -> SandboxSession:
        """The sandbox session of this workspace (opened on first use)."""
        if self._session is None or self._session.closed:
            self._session = self.sandbox.open(self.workspace_dir)
        return self._session

    async def execute(self, input: dict[str, Any]) -> ToolResult:
        code = input["code"]
        if not code.strip():
            return error("The code is empty; give the Python code to run.")
        timeout_ms = input.get("timeout") or self.default_timeout_ms
        session = self.sandbox_session
        path = os.path.join(session.workspace, CODE_DIR, f"cell_{uuid.uuid4().hex[:8]}.py")
        before = workspace_files(session.workspace)
        try:
            _write(path, code)
            outcome = await session.run(
                [self.sandbox.python, path],
                time_limit=timeout_ms / 1000,
                env={"PYTHONPATH": session.workspace},
                max_output_bytes=self.max_output_bytes,
            )
        except SandboxError as exc:
            return error(str(exc))
        except UnicodeEncodeError as exc:
            bad = exc.object[exc.start : exc.end]
            return error(
                f"The code holds {bad!a} at character {exc.start}: a lone surrogate (half "
                "of a character), which is not valid text. Remove it, or write it as that "
                "escape inside a string."
            )
        except OSError as exc:
            return error(f"Could not write the code to the workspace: {exc}.")
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)
        result = render_outcome(
            outcome, timeout_s=timeout_ms / 1000, what="The Python code", advice=PYTHON_ADVICE
        )
        if (
            result["is_error"]
            and not outcome.timed_out
            and outcome.violation is None
            and _OUT_OF_MEMORY.search(outcome.stderr)
            and not _figure_too_large(outcome.stderr)
        ):
            # a bare MemoryError (or Polars' abort) says neither that a limit was hit nor
            # what to do about it
            result["content"] = f"{result['content']}\n{self._memory_note()}"
        after = workspace_files(session.workspace)
        written = files_written(before, after)
        notes: list[str] = []
        if result["is_error"] and _figure_too_large(outcome.stderr):
            notes.append(self._figure_note())
        broken = broken_images(session.workspace, [name for name, _ in written])
        if broken:
            # a chart cut short by a crash or a kill: listed as written, but it will not open
            notes.append(broken_note(broken))
        elif (
            not result["is_error"]
            and before is not None
            and after is not None  # what was written is known: no image among it
            and _SHOWS_A_FIGURE.search(code)
            and not any(is_image(name) for name, _ in written)
        ):
            notes.append(SHOW_NOTE)
        if written:
            # charts and tables the code saved, named so the answer can list them
            notes.append(written_note(written))
        if notes:
            result["content"] = "\n".join([str(result["content"]), *notes])
        if written:
            result.setdefault("metadata", {})["files_written"] = [name for name, _ in written]
        if broken:
            result.setdefault("metadata", {})["broken_images"] = [name for name, _ in broken]
        return result

    def _memory_where(self) -> str:
        from loopwright.sandbox.limits import format_size

        limit = self.sandbox.config.limits.memory_bytes
        return (
            f"each process may use at most {format_size(limit)} here"
            if limit
            else "on this machine"
        )

    def _figure_note(self) -> str:
        return (
            f"[The figure is too large to draw in memory ({self._memory_where()}): its size "
            "in pixels is figsize (inches) times dpi. Draw it smaller, e.g. "
            "plt.subplots(figsize=(10, 6)) and savefig(..., dpi=120).]"
        )

    def _memory_note(self) -> str:
        where = self._memory_where()
        return (
            f"[The Python code ran out of memory ({where}). Work on less at once: aggregate "
            "with SQL first, read only the columns and rows needed "
            '(pl.scan_parquet("x.parquet").select(...).filter(...).collect()), or a sample.]'
        )

    async def aclose(self) -> None:
        """Kill whatever the code left running."""
        session, self._session = self._session, None
        if session is not None:
            await session.aclose()


def _figure_too_large(stderr: str) -> bool:
    """Whether the code ran out of memory drawing a matplotlib figure (its pixel buffer)."""
    return "_RendererAgg(" in stderr and _OUT_OF_MEMORY.search(stderr) is not None


def _write(path: str, code: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(code)


class PythonTools(Toolset):
    """The ``Python`` tool for each session, in a given sandbox.

    ``sandbox`` is a :class:`~loopwright.sandbox.Sandbox`, a backend name or ``None`` for
    the default; ``config`` configures a sandbox made from a name (for example
    ``SandboxConfig(python="/opt/venv/bin/python")``).
    """

    def __init__(
        self,
        sandbox: Sandbox | str | None = None,
        *,
        config: SandboxConfig | None = None,
        default_timeout_ms: int = DEFAULT_TIMEOUT_MS,
        max_output_bytes: int = DEFAULT_OUTPUT_BYTES,
    ) -> None:
        if not 1 <= default_timeout_ms <= MAX_TIMEOUT_MS:
            raise ValueError(f"default_timeout_ms must be between 1 and {MAX_TIMEOUT_MS}")
        self._sandbox = sandbox
        self.config = config
        self.default_timeout_ms = default_timeout_ms
        self.max_output_bytes = max_output_bytes

    @property
    def sandbox(self) -> Sandbox:
        """The sandbox every session's code runs in (chosen on first use)."""
        if not isinstance(self._sandbox, Sandbox):
            self._sandbox = create_sandbox(self._sandbox, self.config)
        return self._sandbox

    def bind(self, workspace_dir: str, session_id: str | None = None) -> list[BaseTool]:
        return [
            PythonTool(
                workspace_dir,
                self.sandbox,
                default_timeout_ms=self.default_timeout_ms,
                max_output_bytes=self.max_output_bytes,
            )
        ]


__all__ = ["PythonTool", "PythonTools"]
