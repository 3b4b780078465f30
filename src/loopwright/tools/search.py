"""``Search``: ranked passages of the workspace's text files for a question or keywords.

Where ``Grep`` finds exact strings and patterns, ``Search`` answers "where is this talked
about": it keeps a full-text index of the workspace (:class:`~loopwright.memory.documents.
DocumentIndex`, in ``.loopwright/search.db``), brings it up to date before each search (only
changed files are read again), and returns the best passages with their paths and line
ranges, ranked by bm25, or by bm25 fused with vector similarity when an embedding function
is configured::

    from loopwright import Agent
    from loopwright.memory import OpenAIEmbeddings
    from loopwright.tools.search import SearchTool, SearchTools

    Agent(model, tools=[SearchTool])  # keyword ranking
    Agent(model, tools=[SearchTools(embedder=OpenAIEmbeddings(base_url=...))])  # hybrid
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

from loopwright.memory.documents import (
    MAX_FILE_BYTES,
    MAX_FILES,
    MAX_TOTAL_BYTES,
    DocumentIndex,
    IndexStats,
    Passage,
)
from loopwright.memory.embeddings import EmbeddingFunction
from loopwright.tools.base import BaseTool, ToolResult, Toolset, error, ok
from loopwright.tools.files import GlobError, compile_glob

DEFAULT_LIMIT = 5
MAX_LIMIT = 20
#: A passage longer than this is cut in the answer (the model can Read the rest).
MAX_SHOWN_CHARS = 1500


class SearchTool(BaseTool):
    """Search the workspace's text files; the index is this tool's, closed with it."""

    kind = "read"

    def __init__(
        self,
        workspace_dir: str | os.PathLike[str],
        *,
        embedder: EmbeddingFunction | None = None,
        index_path: str | os.PathLike[str] | None = None,
        max_file_bytes: int = MAX_FILE_BYTES,
        max_files: int = MAX_FILES,
        max_total_bytes: int = MAX_TOTAL_BYTES,
    ) -> None:
        super().__init__(workspace_dir)
        self.index = DocumentIndex(
            workspace_dir,
            index_path=index_path,
            embedder=embedder,
            max_file_bytes=max_file_bytes,
            max_files=max_files,
            max_total_bytes=max_total_bytes,
        )

    @property
    def name(self) -> str:
        return "Search"

    @property
    def schema(self) -> dict[str, Any]:
        return {
            "name": "Search",
            "description": (
                "Find where something is discussed in the workspace's text files: returns the "
                "passages most relevant to a question or keywords, best first, each with its "
                "file path and line range (read around it with Read offset/limit). Words are "
                "matched with stemming and as prefixes; phrase the query with the words the "
                "files likely use. Use Grep for an exact string or a regex, Glob for names."
            ),
            "input_schema": {
                "type": "object",
                "properties": {
                    "query": {
                        "type": "string",
                        "minLength": 1,
                        "description": "A question or keywords, e.g. 'how to roll back a deploy'",
                    },
                    "limit": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": MAX_LIMIT,
                        "description": f"How many passages to return (default {DEFAULT_LIMIT})",
                    },
                    "glob": {
                        "type": "string",
                        "description": (
                            "Only search files matching these globs, separated by spaces "
                            "(e.g. 'docs/** *.md'; '!tests/**' excludes)"
                        ),
                    },
                },
                "required": ["query"],
                "additionalProperties": False,
            },
        }

    async def execute(self, input: dict[str, Any]) -> ToolResult:
        query = str(input["query"]).strip()
        if not query:
            return error("Search needs a query: give a question or some keywords.")
        limit = int(input.get("limit") or DEFAULT_LIMIT)
        glob = input.get("glob")
        try:
            path_filter = _path_filter(glob) if glob else None
        except GlobError as exc:
            return error(f"Invalid glob {glob!r}: {exc}. Use patterns like 'docs/**' or '*.md'.")
        passages = await self.index.search(query, limit=limit, path_filter=path_filter)
        return ok(render(query, passages, self.index.stats, glob))

    async def aclose(self) -> None:
        await self.index.aclose()


class SearchTools(Toolset):
    """``Search`` for each session's workspace, configured once: an embedding function for
    hybrid ranking and the index's size caps."""

    def __init__(
        self,
        *,
        embedder: EmbeddingFunction | None = None,
        max_file_bytes: int = MAX_FILE_BYTES,
        max_files: int = MAX_FILES,
        max_total_bytes: int = MAX_TOTAL_BYTES,
    ) -> None:
        self.embedder = embedder
        self.max_file_bytes = max_file_bytes
        self.max_files = max_files
        self.max_total_bytes = max_total_bytes

    def bind(self, workspace_dir: str, session_id: str | None = None) -> list[BaseTool]:
        return [
            SearchTool(
                workspace_dir,
                embedder=self.embedder,
                max_file_bytes=self.max_file_bytes,
                max_files=self.max_files,
                max_total_bytes=self.max_total_bytes,
            )
        ]


def _path_filter(glob: str) -> Callable[[str], bool]:
    """A predicate on workspace-relative paths from ripgrep-style globs (a pattern without
    ``/`` matches the file name at any depth; ``!`` excludes)."""
    include: list[re.Pattern[str]] = []
    exclude: list[re.Pattern[str]] = []
    for pattern in re.split(r"[\s,]+", glob.strip()):
        if not pattern:
            continue
        negated = pattern.startswith("!")
        pattern = pattern.removeprefix("!").removeprefix("./").removeprefix("/")
        if "/" not in pattern:
            pattern = "**/" + pattern
        (exclude if negated else include).append(compile_glob(pattern))

    def accepts(path: str) -> bool:
        if any(regex.fullmatch(path) for regex in exclude):
            return False
        return not include or any(regex.fullmatch(path) for regex in include)

    return accepts


def render(query: str, passages: list[Passage], stats: IndexStats, glob: str | None) -> str:
    """The model-facing answer: a header, then each passage under its path and lines."""
    where = f" in files matching {glob!r}" if glob else ""
    files = f"{stats.files:,} indexed file{'s' if stats.files != 1 else ''}"
    notes: list[str] = []
    if stats.embedding_error:
        notes.append(
            f"Vector search is unavailable ({stats.embedding_error}); ranked by keywords only."
        )
    if stats.skipped.get("too_many") or stats.skipped.get("over_budget"):
        notes.append("Some files were not indexed: the workspace is over the index's size caps.")
    if not passages:
        if stats.files == 0:
            lines = ["The workspace has no text files to search."]
        else:
            lines = [
                f"No passages match {query!r}{where} ({files}). Try other words or fewer of "
                "them, or Grep for an exact string."
            ]
        return "\n".join([*lines, *notes])
    count = len(passages)
    lines = [
        f"{count} passage{'s' if count != 1 else ''} for {query!r}{where} ({files}), best first:"
    ]
    for passage in passages:
        span = (
            f"line {passage.start_line}"
            if passage.start_line == passage.end_line
            else f"lines {passage.start_line}-{passage.end_line}"
        )
        text = passage.text
        if len(text) > MAX_SHOWN_CHARS:
            text = (
                text[:MAX_SHOWN_CHARS].rstrip()
                + f"\n[... passage cut; Read {passage.path} with offset={passage.start_line} "
                f"to see all of it]"
            )
        lines += ["", f"--- {passage.path} ({span}) ---", text]
    if notes:
        lines += ["", *notes]
    return "\n".join(lines)
