"""``Grep``: search file contents with ripgrep, or with a pure-Python fallback.

Both backends take the same query and give the same results (the tests check this on the
same trees); the backend only decides how fast. ripgrep (``rg``, 11 or newer) is used when it
is on ``PATH``; otherwise, or when asked (``GrepTool(ws, backend="python")`` or the
environment variable ``LOOPWRIGHT_GREP_BACKEND=python``; ``ripgrep`` forces rg, ``auto`` is
the default), the search runs in Python with :mod:`re`.

What is searched, either way (ripgrep's defaults, pinned so a user's ripgrep config or the
directories above the workspace change nothing):

- ignore files inside the workspace are respected: ``.gitignore`` (whether or not the
  workspace is a git repository), ``.ignore`` and ``.rgignore``, with ripgrep's precedence.
  When ``path`` is a subdirectory, the ignore files of the directories between it and the
  workspace apply too. Ignore files above the workspace, git's global excludes and
  ``.git/info/exclude`` are not used;
- hidden files and directories (names starting with ``.``, so ``.git`` too) are skipped,
  unless ``glob``, ``type`` or a ``!`` rule in an ignore file names them;
- ``glob`` and ``type`` select files and override ignore rules, as in ripgrep: ``glob``
  takes several patterns separated by spaces or commas (``"*.py *.md"``, ``"*.{ts,tsx}"``),
  ``!`` excludes (``"!tests/**"``), and a pattern with a ``/`` is matched against the path
  relative to the workspace;
- binary files (a NUL byte in the first 64 KiB) are skipped; symbolic links are not
  followed; a file given as ``path`` is always searched;
- output paths are relative to the workspace. ``files_with_matches`` lists files newest
  first; ``content`` and ``count`` are in path order.

Where the two can differ: the fallback speaks Python's regex dialect, which agrees with
ripgrep's (Rust) on common syntax but not on everything (Python has look-around and
backreferences, Rust has ``\\p{Greek}``, ``\\z`` and inline flags anywhere); a text file with
a NUL byte after its first 64 KiB; invalid UTF-8 (``.`` matches it in Python only); and the
file types the fallback knows (:data:`FILE_TYPES`, the common ones of ripgrep's list).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import os
import re
import shutil
import tempfile
import threading
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, cast, get_args

from loopwright.sandbox.paths import SecurityError
from loopwright.tools.base import BaseTool, ToolResult, error, ok
from loopwright.tools.files import MAX_LINE_CHARS, GlobError, compile_glob

BACKEND_ENV = "LOOPWRIGHT_GREP_BACKEND"
DEFAULT_HEAD_LIMIT = 1000
MAX_OUTPUT_BYTES = 64 * 1024 * 1024
BINARY_SNIFF_BYTES = 64 * 1024  # ripgrep's first read: a NUL in it makes the file binary
MAX_IGNORE_FILE_BYTES = 1024 * 1024
IGNORE_FILES = (".rgignore", ".ignore", ".gitignore")  # highest precedence first

OutputMode = Literal["content", "files_with_matches", "count"]
Backend = Literal["auto", "ripgrep", "python"]
OUTPUT_MODES: tuple[str, ...] = get_args(OutputMode)

# The common types of ripgrep 14's list (``rg --type-list``), for the Python backend.
FILE_TYPES: dict[str, tuple[str, ...]] = {
    "asm": ("*.asm", "*.s", "*.S"),
    "awk": ("*.awk",),
    "c": ("*.[chH]", "*.[chH].in", "*.cats"),
    "clojure": ("*.clj", "*.cljc", "*.cljs", "*.cljx"),
    "cmake": ("*.cmake", "CMakeLists.txt"),
    "config": ("*.cfg", "*.conf", "*.config", "*.ini"),
    "cpp": (
        *("*.[ChH]", "*.cc", "*.[ch]pp", "*.[ch]xx", "*.hh", "*.inl"),
        *("*.[ChH].in", "*.cc.in", "*.[ch]pp.in", "*.[ch]xx.in", "*.hh.in"),
    ),
    "cs": ("*.cs",),
    "csharp": ("*.cs",),
    "css": ("*.css", "*.scss"),
    "csv": ("*.csv",),
    "cuda": ("*.cu", "*.cuh"),
    "cython": ("*.pyx", "*.pxi", "*.pxd"),
    "dart": ("*.dart",),
    "diff": ("*.patch", "*.diff"),
    "docker": ("*Dockerfile*",),
    "elixir": ("*.ex", "*.eex", "*.exs"),
    "elm": ("*.elm",),
    "erlang": ("*.erl", "*.hrl"),
    "fish": ("*.fish",),
    "fsharp": ("*.fs", "*.fsx", "*.fsi"),
    "go": ("*.go",),
    "gradle": ("*.gradle",),
    "groovy": ("*.groovy", "*.gradle"),
    "h": ("*.h", "*.hh", "*.hpp"),
    "haskell": ("*.hs", "*.lhs", "*.cpphs", "*.c2hs", "*.hsc"),
    "hs": ("*.hs", "*.lhs"),
    "html": ("*.htm", "*.html", "*.ejs"),
    "java": ("*.java", "*.jsp", "*.jspx", "*.properties"),
    "jinja": ("*.j2", "*.jinja", "*.jinja2"),
    "jl": ("*.jl",),
    "js": ("*.js", "*.jsx", "*.vue", "*.cjs", "*.mjs"),
    "json": ("*.json", "composer.lock"),
    "jsonl": ("*.jsonl",),
    "julia": ("*.jl",),
    "jupyter": ("*.ipynb", "*.jpynb"),
    "kotlin": ("*.kt", "*.kts"),
    "less": ("*.less",),
    "lock": ("*.lock", "package-lock.json"),
    "log": ("*.log",),
    "lua": ("*.lua",),
    "make": (
        *("[Gg][Nn][Uu]makefile", "[Mm]akefile", "[Gg][Nn][Uu]makefile.am"),
        *("[Mm]akefile.am", "[Gg][Nn][Uu]makefile.in", "[Mm]akefile.in", "*.mk", "*.mak"),
    ),
    "markdown": ("*.markdown", "*.md", "*.mdown", "*.mdwn", "*.mkd", "*.mkdn"),
    "md": ("*.markdown", "*.md", "*.mdown", "*.mdwn", "*.mkd", "*.mkdn"),
    "matlab": ("*.m",),
    "nim": ("*.nim", "*.nimf", "*.nimble", "*.nims"),
    "nix": ("*.nix",),
    "objc": ("*.h", "*.m"),
    "objcpp": ("*.h", "*.mm"),
    "ocaml": ("*.ml", "*.mli", "*.mll", "*.mly"),
    "org": ("*.org", "*.org_archive"),
    "perl": ("*.perl", "*.pl", "*.PL", "*.plh", "*.plx", "*.pm", "*.t"),
    "php": ("*.php", "*.php3", "*.php4", "*.php5", "*.php7", "*.php8", "*.pht", "*.phtml"),
    "protobuf": ("*.proto",),
    "ps": ("*.cdxml", "*.ps1", "*.ps1xml", "*.psd1", "*.psm1"),
    "py": ("*.py",),
    "r": ("*.R", "*.r", "*.Rmd", "*.Rnw"),
    "readme": ("README*", "*README"),
    "rst": ("*.rst",),
    "ruby": ("config.ru", "Gemfile", ".irbrc", "Rakefile", "*.gemspec", "*.rb", "*.rbw"),
    "rust": ("*.rs",),
    "sass": ("*.sass", "*.scss"),
    "scala": ("*.scala", "*.sbt"),
    "sh": (
        *(".login", ".logout", ".profile", "profile", ".bash_login", "bash_login"),
        *(".bash_logout", "bash_logout", ".bash_profile", "bash_profile", ".bashrc"),
        *("bashrc", "*.bashrc", ".cshrc", "*.cshrc", ".kshrc", "*.kshrc", ".tcshrc"),
        *(".zshenv", "zshenv", ".zlogin", "zlogin", ".zlogout", "zlogout", ".zprofile"),
        *("zprofile", ".zshrc", "zshrc", "*.bash", "*.csh", "*.ksh", "*.sh", "*.tcsh", "*.zsh"),
    ),
    "sql": ("*.sql", "*.psql"),
    "svg": ("*.svg",),
    "swift": ("*.swift",),
    "tex": ("*.tex", "*.ltx", "*.cls", "*.sty", "*.bib", "*.dtx", "*.ins"),
    "toml": ("*.toml", "Cargo.lock"),
    "ts": ("*.ts", "*.tsx", "*.cts", "*.mts"),
    "txt": ("*.txt",),
    "vim": ("*.vim", ".vimrc", ".gvimrc", "vimrc", "gvimrc", "_vimrc", "_gvimrc"),
    "xml": (
        *("*.xml", "*.xml.dist", "*.dtd", "*.xsl", "*.xslt", "*.xsd", "*.xjb", "*.rng"),
        *("*.sch", "*.xhtml"),
    ),
    "yaml": ("*.yaml", "*.yml"),
    "zig": ("*.zig",),
}


class GrepError(Exception):
    """A search that cannot run as asked; the message says what to change."""


@dataclass(frozen=True, slots=True)
class GrepQuery:
    """One search, as both backends receive it (paths relative to the workspace)."""

    pattern: str
    root: str  # "" for the workspace itself
    root_is_file: bool
    globs: tuple[str, ...] = ()
    file_type: str | None = None
    ignore_case: bool = False
    multiline: bool = False
    mode: OutputMode = "files_with_matches"
    before: int = 0
    after: int = 0
    parent_ignore_lines: tuple[str, ...] = ()  # rules of directories above ``root``


@dataclass(slots=True)
class FileMatches:
    """What one file contributed: its matching lines (``content``) or their count."""

    path: str
    count: int = 0
    lines: list[tuple[int, bool, str]] = field(default_factory=list)  # (number, is_match, text)
    binary: bool = False  # a binary file given as ``path``: matches, but not shown as text


@dataclass(slots=True)
class SearchOutcome:
    """The raw result of a search, before sorting, capping and rendering."""

    files: list[FileMatches]
    unreadable: bool = False  # some files could not be read
    stopped: bool = False  # the output cap was reached


class GrepTool(BaseTool):
    """Search file contents in the workspace with a regular expression.

    ripgrep when it is installed, a pure-Python search with the same results otherwise
    (see the module documentation for exactly what is searched and how to choose).
    """

    path_params = ("path",)

    def __init__(
        self,
        workspace_dir: str | os.PathLike[str],
        *,
        backend: Backend | None = None,
        head_limit: int = DEFAULT_HEAD_LIMIT,
    ) -> None:
        super().__init__(workspace_dir)
        choice = backend or os.environ.get(BACKEND_ENV, "").strip().lower() or "auto"
        if choice not in get_args(Backend):
            raise ValueError(
                f"Grep backend must be 'auto', 'ripgrep' or 'python', not {choice!r} "
                f"(from the backend argument or {BACKEND_ENV})."
            )
        rg = shutil.which("rg") if choice != "python" else None
        if choice == "ripgrep" and rg is None:
            raise ValueError(
                "The Grep backend 'ripgrep' was asked for but `rg` is not on PATH; install "
                "ripgrep (e.g. apt install ripgrep) or use backend='python'."
            )
        self.rg_path: str | None = rg
        self.head_limit = head_limit

    @property
    def backend(self) -> Literal["ripgrep", "python"]:
        """The backend this tool searches with."""
        return "ripgrep" if self.rg_path else "python"

    @property
    def name(self) -> str:
        return "Grep"

    @property
    def schema(self) -> dict[str, Any]:
        return {
            "name": "Grep",
            "description": (
                "Search file contents with a regular expression (ripgrep syntax, e.g. "
                "`def \\w+\\(`; escape literal braces: `interface\\{\\}`). Skips hidden, "
                "binary and .gitignore'd files. output_mode `files_with_matches` (default) "
                "lists matching files newest first; `content` shows matching lines "
                "(`path:line:text`, with -A/-B/-C context); `count` shows matching lines per "
                f"file. At most head_limit lines/entries (default {self.head_limit:,}). "
                "Paths are relative to the workspace. To find files by name use Glob."
            ),
            "input_schema": {
                "type": "object",
                "properties": {
                    "pattern": {
                        "type": "string",
                        "minLength": 1,
                        "description": "The regular expression to search for",
                    },
                    "path": {
                        "type": "string",
                        "description": "File or directory to search (default: the workspace)",
                    },
                    "glob": {
                        "type": "string",
                        "description": (
                            'Only files matching these globs, e.g. "*.py", "*.{ts,tsx}", '
                            '"src/**/*.md"; several separated by spaces; "!" excludes'
                        ),
                    },
                    "type": {
                        "type": "string",
                        "description": "Only files of this type: py, js, ts, rust, go, md, ...",
                    },
                    "output_mode": {
                        "type": "string",
                        "enum": list(OUTPUT_MODES),
                        "default": "files_with_matches",
                        "description": "content, files_with_matches (default) or count",
                    },
                    "-i": {"type": "boolean", "description": "Case-insensitive search"},
                    "-n": {
                        "type": "boolean",
                        "description": "Show line numbers (content mode; default true)",
                    },
                    "-A": {
                        "type": "integer",
                        "minimum": 0,
                        "description": "Lines to show after each match (content mode)",
                    },
                    "-B": {
                        "type": "integer",
                        "minimum": 0,
                        "description": "Lines to show before each match (content mode)",
                    },
                    "-C": {
                        "type": "integer",
                        "minimum": 0,
                        "description": "Lines to show before and after each match (content)",
                    },
                    "multiline": {
                        "type": "boolean",
                        "description": "Let the pattern span lines; `.` then matches newlines",
                    },
                    "head_limit": {
                        "type": "integer",
                        "minimum": 1,
                        "description": "Show at most this many output lines or entries",
                    },
                },
                "required": ["pattern"],
                "additionalProperties": False,
            },
        }

    async def execute(self, input: dict[str, Any]) -> ToolResult:
        try:
            query = await asyncio.to_thread(self.query_for, input)
            workspace = self.path_validator.workspace_dir
            if self.rg_path is not None:
                outcome = await search_ripgrep(self.rg_path, workspace, query)
            else:
                outcome = await search_python(workspace, query)
        except SecurityError as exc:
            return error(str(exc))
        except GrepError as exc:
            return error(str(exc))
        head_limit = input.get("head_limit") or self.head_limit
        line_numbers = bool(input.get("-n", True))
        text = await asyncio.to_thread(
            render, outcome, query, workspace, head_limit=head_limit, line_numbers=line_numbers
        )
        return ok(text, metadata={"backend": self.backend})

    def query_for(self, input: dict[str, Any]) -> GrepQuery:
        """The query a tool input stands for: the path validated and resolved inside the
        workspace, globs checked. Raises :class:`SecurityError` or :class:`GrepError`."""
        # already done by the registry; repeated so a direct call is just as safe
        root = self.path_validator.validate(input.get("path") or ".", "Grep path")
        shown = self.relative(root)
        if not os.path.exists(root):
            raise GrepError(f"Path not found: {shown}. Give an existing file or directory.")
        root_is_file = os.path.isfile(root)
        if not root_is_file and not os.path.isdir(root):
            raise GrepError(f"{shown} is not a regular file or a directory; nothing to search.")
        relative = "" if shown == "." else shown
        globs = tuple(split_globs(input.get("glob")))
        Overrides(globs)  # raises GrepError on a bad glob, for both backends alike
        mode = input.get("output_mode") or "files_with_matches"
        if mode not in OUTPUT_MODES:
            raise GrepError(f"output_mode must be one of {', '.join(OUTPUT_MODES)}, not {mode!r}.")
        context = int(input.get("-C") or 0)
        before = input.get("-B")
        after = input.get("-A")
        content = mode == "content"
        parents = () if root_is_file else tuple(parent_ignore_lines(self._workspace(), relative))
        return GrepQuery(
            pattern=input["pattern"],
            root=relative,
            root_is_file=root_is_file,
            globs=globs,
            file_type=input.get("type") or None,
            ignore_case=bool(input.get("-i", False)),
            multiline=bool(input.get("multiline", False)),
            mode=cast(OutputMode, mode),
            before=int(before if before is not None else context) if content else 0,
            after=int(after if after is not None else context) if content else 0,
            parent_ignore_lines=parents,
        )

    def _workspace(self) -> str:
        return self.path_validator.workspace_dir


# --- messages both backends share ------------------------------------------------------


def _invalid_regex(pattern: str, detail: str) -> GrepError:
    return GrepError(
        f"Grep pattern {pattern!r} is not a valid regular expression ({detail}); escape "
        "characters such as ( [ { * + ? with a backslash to match them literally."
    )


def _newline_in_pattern(pattern: str) -> GrepError:
    return GrepError(
        f"Grep pattern {pattern!r} contains a line break, which can only match with "
        "multiline set to true."
    )


def _unknown_type(file_type: str) -> GrepError:
    return GrepError(
        f"Unknown file type {file_type!r} for Grep's type filter; use a glob instead (e.g. "
        f'"*.{file_type}"), or a known type such as py, js, ts, rust, go, java, md, json, yaml.'
    )


# --- ignore rules, globs and types (ripgrep's semantics) -------------------------------

_NONE, _IGNORE, _WHITELIST = 0, 1, 2
#: what ``IgnoreRules`` decides for a path (public names for other indexers, e.g. Search)
UNDECIDED, IGNORED, WHITELISTED = _NONE, _IGNORE, _WHITELIST


def _parse_ignore_line(line: str) -> tuple[str, bool, bool] | None:
    """``(glob, whitelist, dir_only)`` of one gitignore line, the way ripgrep reads it."""
    if line.startswith("#"):
        return None
    if not line.endswith("\\ "):
        line = line.rstrip()
    if not line:
        return None
    whitelist = anchored = False
    if line.startswith(("\\!", "\\#")):
        line = line[1:]
    else:
        if line.startswith("!"):
            whitelist, line = True, line[1:]
        if line.startswith("/"):
            anchored, line = True, line[1:]
    dir_only = False
    if line.endswith("/"):
        dir_only, line = True, line[:-1]
        if line.endswith("\\"):
            line = line[:-1]
    if not line:
        return None
    glob = line
    if not anchored and "/" not in line and not (glob.startswith("**/") or glob == "**"):
        glob = "**/" + glob  # no slash: the name matches at any depth
    if glob.endswith("/**"):
        glob += "/*"  # "dir/**" matches what is inside, not dir itself
    return glob, whitelist, dir_only


class IgnoreRules:
    """The rules of one ignore file (or of ``--glob``s), relative to a directory."""

    def __init__(self, base: str, lines: Iterable[str], *, strict: bool = False) -> None:
        self.base = base
        self.rules: list[tuple[re.Pattern[str], bool, bool]] = []
        self.whitelists = 0
        for line in lines:
            parsed = _parse_ignore_line(line)
            if parsed is None:
                continue
            glob, whitelist, dir_only = parsed
            try:
                regex = compile_glob(glob)
            except GlobError as exc:
                if strict:
                    raise GrepError(f"Invalid glob {line!r}: {exc}.") from None
                continue  # ripgrep skips a bad line of an ignore file too
            self.rules.append((regex, whitelist, dir_only))
            self.whitelists += whitelist

    def __bool__(self) -> bool:
        return bool(self.rules)

    def match(self, path: str, is_dir: bool) -> int:
        """The last rule matching ``path`` (relative to the workspace) decides."""
        relative = path[len(self.base) + 1 :] if self.base else path
        for regex, whitelist, dir_only in reversed(self.rules):
            if (is_dir or not dir_only) and regex.fullmatch(relative):
                return _WHITELIST if whitelist else _IGNORE
        return _NONE


class Overrides:
    """``glob`` filters: a match includes a file whatever the ignore rules say; ``!`` excludes."""

    def __init__(self, globs: Iterable[str]) -> None:
        self.rules = IgnoreRules("", globs, strict=True)
        # In gitignore terms a plain glob is an ignore rule and "!glob" a whitelist; the
        # meanings are swapped below.
        self.selecting = len(self.rules.rules) - self.rules.whitelists

    def __bool__(self) -> bool:
        return bool(self.rules)

    def match(self, path: str, is_dir: bool) -> int:
        found = self.rules.match(path, is_dir)
        if found == _IGNORE:
            return _WHITELIST
        if found == _WHITELIST:
            return _IGNORE
        if self.selecting and not is_dir:
            return _IGNORE  # globs select files and this one is not selected
        return _NONE


def _type_regex(file_type: str) -> re.Pattern[str]:
    globs = FILE_TYPES.get(file_type)
    if globs is None:
        raise _unknown_type(file_type)
    return re.compile("|".join(compile_glob(glob).pattern for glob in globs))


def split_globs(value: str | None) -> list[str]:
    """``"*.py *.md"`` or ``"*.py,*.md"`` as separate globs (commas inside braces kept)."""
    if not value:
        return []
    globs: list[str] = []
    for word in value.split():
        depth = 0
        start = 0
        for index, char in enumerate(word):
            if char == "{":
                depth += 1
            elif char == "}":
                depth = max(depth - 1, 0)
            elif char == "," and depth == 0:
                globs.append(word[start:index])
                start = index + 1
        globs.append(word[start:])
    return [glob for glob in globs if glob]


_GLOB_META = re.compile(r"([*?\[\]{}\\])")


def parent_ignore_lines(workspace: str, root: str) -> list[str]:
    """The ignore rules of the directories from the workspace down to ``root``'s parent,
    rewritten relative to the workspace (deepest last, so it wins).

    ripgrep is told not to look above the directory it searches (or it would read ignore
    files outside the workspace), so these are handed to it as one ``--ignore-file``.
    """
    if not root:
        return []
    parts = root.split("/")
    lines: list[str] = []
    for depth in range(len(parts)):
        directory = "/".join(parts[:depth])
        for name in reversed(IGNORE_FILES):  # lowest precedence first
            for line in _read_ignore_file(os.path.join(workspace, directory, name)):
                rebased = _rebase_ignore_line(line, directory)
                if rebased is not None:
                    lines.append(rebased)
    return lines


def _rebase_ignore_line(line: str, directory: str) -> str | None:
    parsed = _parse_ignore_line(line)
    if parsed is None:
        return None
    glob, whitelist, dir_only = parsed
    prefix = "/" + _GLOB_META.sub(r"\\\1", directory) + "/" if directory else "/"
    return ("!" if whitelist else "") + prefix + glob + ("/" if dir_only else "")


def _read_ignore_file(path: str) -> list[str]:
    try:
        if not os.path.isfile(path):  # not a FIFO or a device that would block
            return []
        with open(path, "rb") as handle:
            data = handle.read(MAX_IGNORE_FILE_BYTES)
    except OSError:
        return []
    return data.decode("utf-8", errors="replace").splitlines()


# --- ripgrep backend -------------------------------------------------------------------


def ripgrep_argv(rg: str, query: GrepQuery, ignore_file: str | None) -> list[str]:
    """The ripgrep command line for a query (run with the workspace as working directory)."""
    argv = [
        rg,
        *("--no-config", "--no-require-git", "--no-ignore-parent", "--no-ignore-global"),
        *("--no-ignore-exclude", "--no-messages", "--color", "never"),
        *("--null", "--with-filename", "--no-heading"),
    ]
    if query.ignore_case:
        argv.append("--ignore-case")
    if query.multiline:
        argv += ["--multiline", "--multiline-dotall"]
    for glob in query.globs:
        argv += ["--glob", glob]
    if query.file_type:
        argv += ["--type", query.file_type]
    if ignore_file is not None:
        argv += ["--ignore-file", ignore_file]
    if query.mode == "files_with_matches":
        argv.append("--files-with-matches")
    elif query.mode == "count" and not query.multiline:
        argv.append("--count")
    else:  # content; and multiline counts, which ripgrep's --count gets wrong
        argv.append("--line-number")
        if query.before:
            argv += ["--before-context", str(query.before)]
        if query.after:
            argv += ["--after-context", str(query.after)]
    argv += ["-e", query.pattern, "--", query.root or "."]
    return argv


async def search_ripgrep(rg: str, workspace: str, query: GrepQuery) -> SearchOutcome:
    """Run ripgrep (never through a shell) and parse what it prints."""
    ignore_file = None
    if query.parent_ignore_lines:
        descriptor, ignore_file = tempfile.mkstemp(prefix="loopwright-grep-", suffix=".ignore")
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write("\n".join(query.parent_ignore_lines) + "\n")
    try:
        argv = ripgrep_argv(rg, query, ignore_file)
        returncode, stdout, stderr, stopped = await _run(argv, workspace)
    finally:
        if ignore_file is not None:
            with contextlib.suppress(OSError):
                os.unlink(ignore_file)
    message = stderr.decode("utf-8", errors="replace").strip()
    if returncode == 2 and message:
        raise _ripgrep_error(query, message)
    if returncode not in (0, 1, 2) and not stopped:
        raise GrepError(f"ripgrep failed (exit status {returncode}): {message or 'no message'}")
    files = await asyncio.to_thread(parse_ripgrep_output, stdout, query, stopped)
    return SearchOutcome(files, unreadable=returncode == 2, stopped=stopped)


async def _run(argv: list[str], cwd: str) -> tuple[int, bytes, bytes, bool]:
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    errors = asyncio.ensure_future(process.stderr.read())
    chunks: list[bytes] = []
    size = 0
    stopped = False
    try:
        while chunk := await process.stdout.read(1 << 20):
            size += len(chunk)
            chunks.append(chunk)
            if size > MAX_OUTPUT_BYTES:
                stopped = True
                process.kill()
                break
        returncode = await process.wait()
        stderr = await errors
    finally:
        if process.returncode is None:  # cancelled (a timeout): stop ripgrep too
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
        errors.cancel()
    return returncode, b"".join(chunks), stderr, stopped


def _ripgrep_error(query: GrepQuery, message: str) -> GrepError:
    if "regex parse error" in message or "error parsing regex" in message:
        detail = message.splitlines()[-1].strip().removeprefix("error:").strip()
        return _invalid_regex(query.pattern, detail)
    if "is not allowed in a regex" in message:
        return _newline_in_pattern(query.pattern)
    if "unrecognized file type" in message and query.file_type:
        return _unknown_type(query.file_type)
    first = message.splitlines()[0]
    return GrepError(f"ripgrep could not run the search: {first}")


_BINARY_NOTICE = re.compile(rb"^(.*): binary file matches \(")


def parse_ripgrep_output(stdout: bytes, query: GrepQuery, stopped: bool) -> list[FileMatches]:
    """ripgrep's ``--null`` output as :class:`FileMatches` (paths relative to the workspace)."""
    strip_dot = not query.root

    def path_of(raw: bytes) -> str:
        path = os.fsdecode(raw)
        return path[2:] if strip_dot and path.startswith("./") else path

    if query.mode == "files_with_matches":
        entries = stdout.split(b"\0")
        entries.pop()  # after the last NUL: nothing, or a cut entry
        return [FileMatches(path_of(entry), count=1) for entry in entries]
    lines = stdout.split(b"\n")
    lines.pop()  # after the last newline: nothing, or a cut line
    if query.mode == "count" and not query.multiline:
        counted = []
        for line in lines:
            raw, _, number = line.rpartition(b"\0")
            if raw and number.isdigit():
                counted.append(FileMatches(path_of(raw), count=int(number)))
        return counted
    files: dict[str, FileMatches] = {}
    for line in lines:
        separator = line.find(b"\0")
        if separator < 0:
            notice = _BINARY_NOTICE.match(line)  # a binary file given as path
            if notice:
                path = path_of(notice.group(1))
                files.setdefault(path, FileMatches(path)).binary = True
            continue  # "--" between groups, or a warning
        rest = line[separator + 1 :]
        digits = 0
        while digits < len(rest) and 48 <= rest[digits] <= 57:
            digits += 1
        if not digits or digits >= len(rest):
            continue
        path = path_of(line[:separator])
        entry = files.get(path)
        if entry is None:
            entry = files[path] = FileMatches(path)
        is_match = rest[digits] == 58  # ":" a match, "-" context
        text = rest[digits + 1 :].decode("utf-8", errors="replace")
        entry.lines.append((int(rest[:digits]), is_match, text))
        entry.count += is_match
    if query.mode == "count":
        return [FileMatches(f.path, count=f.count) for f in files.values() if f.count]
    return list(files.values())


# --- pure-Python backend ---------------------------------------------------------------


async def search_python(workspace: str, query: GrepQuery) -> SearchOutcome:
    """The same search in Python (``re``), in a worker thread that stops if cancelled."""
    cancel = threading.Event()
    try:
        return await asyncio.to_thread(_PythonSearch(workspace, query, cancel).run)
    finally:
        cancel.set()


@dataclass(slots=True)
class _DirectoryRules:
    """The ignore files found in one directory, highest precedence first."""

    custom: IgnoreRules  # .rgignore
    ignore: IgnoreRules  # .ignore
    git: IgnoreRules  # .gitignore
    has_git: bool  # a repository root: .gitignore files above it do not apply below


class _PythonSearch:
    def __init__(self, workspace: str, query: GrepQuery, cancel: threading.Event) -> None:
        self.workspace = workspace
        self.query = query
        self.cancel = cancel
        self.overrides = Overrides(query.globs)
        self.types = _type_regex(query.file_type) if query.file_type else None
        self.explicit = IgnoreRules("", query.parent_ignore_lines)
        self.unreadable = False
        self.output_bytes = 0
        self._compile()

    def _compile(self) -> None:
        pattern = self.query.pattern
        flags = re.IGNORECASE if self.query.ignore_case else 0
        self.whole: re.Pattern[str] | None = None
        self.prefilter: re.Pattern[str] | None = None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # FutureWarning on "[[" and the like
                if self.query.multiline:
                    self.whole = re.compile(pattern, flags | re.MULTILINE | re.DOTALL)
                    self.line = self.whole
                    return
                if _has_newline(pattern):
                    raise _newline_in_pattern(pattern)
                self.line = re.compile(pattern, flags)
                # A match in one line is a match in the whole text (in MULTILINE mode)
                # unless the pattern looks beyond its line; then every line is tried.
                if not _LOOKS_BEYOND_LINE.search(pattern):
                    self.prefilter = re.compile(pattern, flags | re.MULTILINE)
        except re.error as exc:
            raise _invalid_regex(pattern, exc.msg) from None

    def run(self) -> SearchOutcome:
        files: list[FileMatches] = []
        stopped = False
        for path, explicit in self._candidates():
            if self.cancel.is_set():
                break
            found = self._search(path, explicit)
            if found is not None:
                files.append(found)
                if self.output_bytes > MAX_OUTPUT_BYTES:
                    stopped = True
                    break
        return SearchOutcome(files, unreadable=self.unreadable, stopped=stopped)

    # which files

    def _candidates(self) -> Iterator[tuple[str, bool]]:
        query = self.query
        if query.root_is_file:
            yield query.root, True
            return
        pending: list[tuple[str, tuple[_DirectoryRules, ...]]] = [(query.root, ())]
        while pending:
            if self.cancel.is_set():
                return
            directory, chain = pending.pop()
            absolute = os.path.join(self.workspace, directory)
            try:
                with os.scandir(absolute) as scan:
                    entries = list(scan)
            except OSError:
                self.unreadable = True
                continue
            names = {entry.name for entry in entries}
            chain = (*chain, self._rules_of(absolute, directory, names))
            for entry in sorted(entries, key=lambda e: e.name):
                path = f"{directory}/{entry.name}" if directory else entry.name
                try:
                    if entry.is_symlink():
                        continue  # links are not followed
                    is_dir = entry.is_dir(follow_symlinks=False)
                    if not is_dir and not entry.is_file(follow_symlinks=False):
                        continue  # a FIFO, socket or device
                except OSError:
                    continue
                if not self._included(path, entry.name, is_dir, chain):
                    continue
                if is_dir:
                    pending.append((path, chain))
                else:
                    yield path, False

    def _rules_of(self, absolute: str, directory: str, names: set[str]) -> _DirectoryRules:
        def rules(name: str) -> IgnoreRules:
            if name not in names:
                return IgnoreRules(directory, ())
            return IgnoreRules(directory, _read_ignore_file(os.path.join(absolute, name)))

        return _DirectoryRules(
            custom=rules(".rgignore"),
            ignore=rules(".ignore"),
            git=rules(".gitignore"),
            has_git=".git" in names,
        )

    def _included(
        self, path: str, name: str, is_dir: bool, chain: tuple[_DirectoryRules, ...]
    ) -> bool:
        # ripgrep's order: globs, then ignore files, then types, then hidden names
        if self.overrides:
            decided = self.overrides.match(path, is_dir)
            if decided != _NONE:
                return decided == _WHITELIST
        whitelisted = False
        decided = self._ignore_match(path, is_dir, chain)
        if decided == _IGNORE:
            return False
        whitelisted = decided == _WHITELIST
        if self.types is not None and not is_dir:
            if not self.types.fullmatch(name):
                return False
            whitelisted = True
        return whitelisted or not name.startswith(".")

    def _ignore_match(self, path: str, is_dir: bool, chain: tuple[_DirectoryRules, ...]) -> int:
        custom = ignore = git = _NONE
        saw_git = False
        for level in reversed(chain):  # the deepest directory's rules first
            if custom == _NONE and level.custom:
                custom = level.custom.match(path, is_dir)
            if ignore == _NONE and level.ignore:
                ignore = level.ignore.match(path, is_dir)
            if git == _NONE and not saw_git and level.git:
                git = level.git.match(path, is_dir)
            saw_git = saw_git or level.has_git
        for decided in (custom, ignore, git):
            if decided != _NONE:
                return decided
        return self.explicit.match(path, is_dir) if self.explicit else _NONE

    # what is in them

    def _search(self, path: str, explicit: bool) -> FileMatches | None:
        query = self.query
        try:
            with open(os.path.join(self.workspace, path), "rb") as handle:
                data = handle.read()
        except OSError:
            self.unreadable = True
            return None
        binary = False
        if data.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16 with a BOM, as ripgrep reads it
            text = data.decode("utf-16", errors="replace")
        else:
            data = data.removeprefix(b"\xef\xbb\xbf")
            nul = data.find(b"\0")
            if nul >= 0:
                if explicit:  # ripgrep searches it, NULs read as line breaks
                    binary = True
                    data = data.replace(b"\0", b"\n")
                elif nul < BINARY_SNIFF_BYTES or query.mode == "count":
                    return None
                else:  # a late NUL: what comes before it
                    data = data[: data.rfind(b"\n", 0, nul) + 1]
            text = data.decode("utf-8", errors="replace")
        lines = text.split("\n")
        if lines[-1] == "":
            lines.pop()  # the final newline ends the last line
        matched = self._matching_lines(text, lines, first_only=query.mode == "files_with_matches")
        if not matched:
            return None
        result = FileMatches(path, count=len(matched), binary=binary)
        if query.mode == "content" and not binary:
            wanted: dict[int, bool] = {}
            for number in matched:
                low = max(number - query.before, 1)
                for near in range(low, min(number + query.after, len(lines)) + 1):
                    wanted.setdefault(near, False)
            for number in matched:
                wanted[number] = True
            result.lines = [(n, wanted[n], lines[n - 1]) for n in sorted(wanted)]
            self.output_bytes += sum(len(line) + len(path) + 8 for _, _, line in result.lines)
        return result

    def _matching_lines(self, text: str, lines: list[str], first_only: bool) -> list[int]:
        if self.whole is not None:  # multiline: the pattern runs over the whole text
            breaks = [found.start() for found in _LINE_BREAK.finditer(text)]
            matched: set[int] = set()
            for found in self.whole.finditer(text):
                start, end = found.span()
                if start == len(text) and (not text or text.endswith("\n")):
                    continue  # the empty end of the file is not a line
                first = bisect.bisect_left(breaks, start)
                last = bisect.bisect_left(breaks, end - 1) if end > start else first
                matched.update(range(first + 1, last + 2))
                if first_only:
                    break
            return sorted(matched)
        if self.prefilter is not None and not self.prefilter.search(text):
            return []
        search = self.line.search
        numbers = []
        for number, line in enumerate(lines, start=1):
            if search(line):
                numbers.append(number)
                if first_only:
                    break
        return numbers


# Escapes and groups that can see past the end of a line, or that mean something else
# when the pattern runs over a whole text: no prefilter for these.
_LINE_BREAK = re.compile("\n")
_LOOKS_BEYOND_LINE = re.compile(r"\\[AZ]|\(\?<?[=!]")
_NEWLINE_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\(?:n|x0[aA]|x\{0*[aA]\}|u000[aA])")


def _has_newline(pattern: str) -> bool:
    """Whether the pattern names a line break (ripgrep refuses that without multiline)."""
    return "\n" in pattern or _NEWLINE_ESCAPE.search(pattern) is not None


# --- rendering -------------------------------------------------------------------------


def render(
    outcome: SearchOutcome,
    query: GrepQuery,
    workspace: str,
    *,
    head_limit: int,
    line_numbers: bool = True,
) -> str:
    """The text the model reads: sorted, capped at ``head_limit``, with notes."""
    notes: list[str] = []
    if outcome.stopped:
        notes.append(
            f"[The search produced over {MAX_OUTPUT_BYTES // (1024 * 1024)} MiB of output and "
            "was stopped, so results are incomplete; narrow the pattern, path, glob or type.]"
        )
    if outcome.unreadable:
        notes.append("[Some files or directories could not be read and were skipped.]")
    files = outcome.files
    if not files:
        return "\n\n".join(["No matches found", *notes])
    narrow = "set head_limit higher, or narrow the search with path, glob or type, to see more"
    if query.mode == "files_with_matches":
        ordered = sorted(files, key=lambda f: (-_mtime(workspace, f.path), f.path))
        total = len(ordered)
        body = [f"Found {total:,} file{_s(total)}"]
        body += [_shown(f.path) for f in ordered[:head_limit]]
        if total > head_limit:
            notes.insert(
                0, f"[Showing the {head_limit:,} most recently modified of {total:,}; {narrow}.]"
            )
    elif query.mode == "count":
        ordered = sorted(files, key=lambda f: f.path)
        total_lines = sum(f.count for f in ordered)
        body = [
            f"Found {total_lines:,} matching line{_s(total_lines)} in {len(ordered):,} "
            f"file{_s(len(ordered))}"
        ]
        body += [f"{_shown(f.path)}:{f.count}" for f in ordered[:head_limit]]
        if len(ordered) > head_limit:
            notes.insert(0, f"[Showing {head_limit:,} of {len(ordered):,} files; {narrow}.]")
    else:
        out = _content_lines(sorted(files, key=lambda f: f.path), query, line_numbers)
        body = out[:head_limit]
        if len(out) > head_limit:
            notes.insert(0, f"[Showing the first {head_limit:,} of {len(out):,} lines; {narrow}.]")
    text = "\n".join(body)
    return "\n\n".join([text, *notes]) if notes else text


def _content_lines(files: list[FileMatches], query: GrepQuery, line_numbers: bool) -> list[str]:
    out: list[str] = []
    with_context = bool(query.before or query.after)
    previous: tuple[str, int] | None = None
    for entry in files:
        path = _shown(entry.path)
        if entry.binary:
            out.append(f"{path}: binary file matches (content not shown)")
            previous = None
            continue
        for number, is_match, text in entry.lines:
            if with_context and previous is not None and previous != (entry.path, number - 1):
                out.append("--")
            previous = (entry.path, number)
            text = text.removesuffix("\r")
            if len(text) > MAX_LINE_CHARS:
                text = text[:MAX_LINE_CHARS] + f" [... line cut: {len(text):,} characters]"
            mark = ":" if is_match else "-"
            out.append(
                f"{path}{mark}{number}{mark}{text}" if line_numbers else f"{path}{mark}{text}"
            )
    return out


def _mtime(workspace: str, path: str) -> float:
    try:
        return os.stat(os.path.join(workspace, path)).st_mtime
    except OSError:
        return 0.0


def _shown(path: str) -> str:
    """A path as the model sees it: undecodable bytes as U+FFFD."""
    return path.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")


def _s(count: int) -> str:
    return "" if count == 1 else "s"
