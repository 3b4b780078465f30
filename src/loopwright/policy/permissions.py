"""Permission modes and rules: whether a tool call may run, must be approved, or is refused.

**Tool kinds** (:mod:`loopwright.policy.kinds`): ``read``, ``write``, ``execute``,
``network``, ``internal`` or ``other``. Built-in tools are classified by name
(:data:`~loopwright.policy.kinds.BUILTIN_KINDS`); a tool may declare a ``kind`` attribute;
the policy's ``kinds`` table (exact names or globs such as ``mcp__github__*``) overrides
both. Anything unclassified is ``other`` and treated as possibly changing things.

**Modes** set the default for each kind (:data:`MODE_DEFAULTS`):

=========  =====  =====  =======  =======  ========  =====
mode       read   write  execute  network  internal  other
=========  =====  =====  =======  =======  ========  =====
auto       allow  allow  allow    allow    allow     allow
ask        allow  ask    ask      ask      allow     ask
read-only  allow  deny   deny     deny     allow     deny
=========  =====  =====  =======  =======  ========  =====

**Rules** refine the mode: ``Tool`` (every call of the tool; the name may be a glob,
``mcp__github__*``) or ``Tool(pattern)``, where the pattern is matched against the call's
primary argument (:data:`PRIMARY_ARGUMENTS`: the command for ``Bash``, the code for
``Python``, the path for file tools, the URL for ``HTTP``...):

- **paths** are matched relative to the workspace, gitignore-style: a pattern without ``/``
  matches any component (``*.env`` matches ``.env`` and ``config/prod.env``; ``.git`` matches
  everything inside ``.git/``), a pattern with ``/`` matches from the workspace root
  (``src/*.py``; ``*`` stops at ``/``, ``**`` crosses it; ``docs/private`` also covers what is
  inside it), a pattern starting with ``/`` is absolute. ``Read(...)`` rules cover every
  read-kind file tool (``Glob``, ``Grep``), ``Write(...)`` and ``Edit(...)`` rules every
  write-kind file tool, so ``Write(*.env)`` also stops an ``Edit`` of ``.env``. Paths are
  judged after ``..`` and symlinks are resolved, so a link named ``notes.txt`` pointing at
  ``.env`` is judged as ``.env``. A search tool is judged by the directory it searches (the
  workspace root when it has no ``path``), so ``Read(secrets)`` stops ``Grep`` in
  ``secrets/`` but not a ``Grep`` over the whole workspace; and path rules do not see
  inside shell commands (``cat .env``): deny ``Bash`` too, or rely on the sandbox.
- **shell commands** (``Bash``) are split at ``;``, ``&&``, ``||``, ``|``, ``&`` and line
  breaks. An allow rule covers a command only if *every* part is allowed (``Bash(git *)``
  does not allow ``git status && rm -rf /``), and never a command with ``$(...)``, backticks
  or process substitution; a deny or ask rule applies if *any* part matches. ``*`` matches
  anything, and ``Bash(npm run test:*)`` (a trailing ``:*``) matches ``npm run test`` with
  or without arguments. A deny rule on Bash is a guard, not a wall: a determined command can
  be spelled in ways no pattern foresees (``bash -c``, variables); the sandbox is the wall.
- **SQL** (``SQL``) is matched whole as a glob, but without regard to case and with every
  run of whitespace (line breaks, indentation) read as one space, as the database reads it:
  ``SQL(*PROVIDER_PAYMENTS*)`` covers ``select * from provider_payments`` and a query that
  names the table on a line of its own. It sees only the SQL tool's text: ``DefineCohort``
  queries the claims tables too (deny or ask ``DefineCohort`` as well).
- any other argument is matched whole as a glob (``HTTP(https://api.github.com/*)``). A call
  without the argument is matched as if it were empty, so ``Tool(*)`` covers every call of
  the tool, like ``Tool``.

**Evaluation order**, the same for every call; the first step that answers wins:

1. deny rules → ``deny``;
2. ask rules → ``ask``;
3. the PreToolUse hooks' decision, if any (``deny``, ``ask`` or ``allow``);
4. allow rules → ``allow``;
5. the mode's default for the tool's kind.

Restrictions come before grants: a deny rule beats everything, an ask rule beats an allow
rule, and a hook can tighten any decision but loosen only the mode's default.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from loopwright.policy.kinds import TOOL_KINDS, ToolKind, declared_kind

if TYPE_CHECKING:
    from loopwright.tools.base import BaseTool

PermissionMode: TypeAlias = Literal["auto", "ask", "read-only"]
Behavior: TypeAlias = Literal["allow", "deny", "ask"]

MODES: tuple[PermissionMode, ...] = ("auto", "ask", "read-only")

#: What each mode answers for each kind when no rule or hook decided.
MODE_DEFAULTS: Mapping[PermissionMode, Mapping[ToolKind, Behavior]] = {
    "auto": dict.fromkeys(TOOL_KINDS, "allow"),
    "ask": {
        "read": "allow",
        "write": "ask",
        "execute": "ask",
        "network": "ask",
        "internal": "allow",
        "other": "ask",
    },
    "read-only": {
        "read": "allow",
        "write": "deny",
        "execute": "deny",
        "network": "deny",
        "internal": "allow",
        "other": "deny",
    },
}

#: The argument a rule's pattern is matched against, per tool.
PRIMARY_ARGUMENTS: Mapping[str, str] = {
    "Bash": "command",
    "Python": "code",
    "Read": "file_path",
    "Write": "file_path",
    "Edit": "file_path",
    "Glob": "path",
    "Grep": "path",
    "HTTP": "url",
    "SQL": "sql",
    "DefineCohort": "name",
    "Memory": "text",
    "Search": "query",
    "Delegate": "task",
    "Consult": "question",
}
#: For other tools, the first of these present in the input is the primary argument.
FALLBACK_ARGUMENTS = ("file_path", "path", "command", "url", "code", "query")
#: Argument names that hold a path even when the tool does not list them in ``path_params``.
PATH_ARGUMENTS = frozenset({"file_path", "path", "notebook_path"})
#: Tools whose primary argument is a shell command (split at ``;``, ``&&``, ``|``...).
SHELL_TOOLS = frozenset({"Bash"})
#: Tools whose primary argument is SQL (matched without regard to case or line breaks).
SQL_TOOLS = frozenset({"SQL"})
#: Rule tool names that cover a family of file tools when they carry a path pattern.
FILE_FAMILIES: Mapping[str, ToolKind] = {"Read": "read", "Write": "write", "Edit": "write"}

_KIND_PHRASES: Mapping[ToolKind, str] = {
    "read": "reads",
    "write": "changes files",
    "execute": "runs commands or code",
    "network": "uses the network",
    "internal": "changes the session's own state",
    "other": "is not known to be read-only",
}


class InvalidRuleError(ValueError):
    """A permission rule that cannot be parsed."""


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer for one call: ``allow``, ``deny`` or ``ask``, why, and what decided it.

    ``source`` names the deciding step: ``rule:deny:Write(*.env)``, ``hook:<name>``,
    ``mode:ask``, ``approval:<who answered>``, ``rate_limit``, ``no_approver``...
    """

    behavior: Behavior
    reason: str = ""
    source: str = ""


ALLOWED = Decision("allow", "", "mode:auto")


@dataclass(slots=True)
class CallInfo:
    """What a permission check looks at: the tool, its kind and the (validated) input.

    ``workspace_dir`` is the workspace's resolved path (``os.path.realpath``), against which
    the resolved path arguments are made relative.
    """

    tool_name: str
    input: Mapping[str, Any]
    kind: ToolKind
    workspace_dir: str
    path_params: tuple[str, ...] = ()
    primary_argument: str | None = None


# --- rules -------------------------------------------------------------------------------

_TOOL_NAME = re.compile(r"[A-Za-z0-9_.*?\[\]!-]+")
_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True, slots=True)
class Rule:
    """A parsed permission rule: ``Tool`` or ``Tool(pattern)``; see the module docs."""

    text: str
    tool: str
    pattern: str | None = None

    @classmethod
    def parse(cls, text: str | Rule) -> Rule:
        """Parse ``Tool`` or ``Tool(pattern)``; raises :class:`InvalidRuleError` if malformed."""
        if isinstance(text, Rule):
            return text
        example = "write Tool or Tool(pattern), e.g. Read, Bash(git *) or Write(*.env)"
        if not isinstance(text, str):
            raise InvalidRuleError(
                f"Invalid permission rule {text!r}: a rule is a string; {example}."
            )
        stripped = text.strip()
        if not stripped:
            raise InvalidRuleError(f"Invalid permission rule {text!r}: it is empty; {example}.")
        opening = stripped.find("(")
        if opening == -1:
            if ")" in stripped:
                raise InvalidRuleError(
                    f"Invalid permission rule {text!r}: a ')' without an opening '('; {example}."
                )
            tool, pattern = stripped, None
        else:
            tool = stripped[:opening].strip()
            if not stripped.endswith(")"):
                problem = (
                    "text follows the closing ')'"
                    if ")" in stripped[opening:]
                    else "the '(' has no closing ')'"
                )
                raise InvalidRuleError(f"Invalid permission rule {text!r}: {problem}; {example}.")
            pattern = stripped[opening + 1 : -1].strip()
            if not tool:
                raise InvalidRuleError(
                    f"Invalid permission rule {text!r}: the tool name before '(' is missing; "
                    f"{example}."
                )
            if not pattern:
                raise InvalidRuleError(
                    f"Invalid permission rule {text!r}: the pattern in parentheses is empty; "
                    f"write just {tool} to match every call of the tool."
                )
        if not _TOOL_NAME.fullmatch(tool):
            raise InvalidRuleError(
                f"Invalid permission rule {text!r}: {tool!r} is not a tool name (letters, digits, "
                f"'_', '-', '.', or a glob such as mcp__github__*); {example}."
            )
        return cls(stripped, tool, pattern)

    def covers_tool(self, call: CallInfo) -> bool:
        """Whether the rule's tool part names this call's tool (ignoring the pattern)."""
        if _name_matches(self.tool, call.tool_name):
            return True
        family = FILE_FAMILIES.get(self.tool)
        return (
            self.pattern is not None
            and family is not None
            and call.kind == family
            and call.primary_argument is not None
            and _is_path_argument(call, call.primary_argument)
        )

    def matches(self, call: CallInfo) -> bool:
        """Whether the rule applies to ``call`` (for a shell tool: to the command as a whole)."""
        if not self.covers_tool(call):
            return False
        if self.pattern is None:
            return True
        value = _primary_value(call)
        argument = call.primary_argument
        if argument is not None and _is_path_argument(call, argument):
            return value is not None and _path_matches(self.pattern, value, call.workspace_dir)
        if value is None:  # no such argument: matched as empty text, so Tool(*) covers it
            value = ""
        if call.tool_name in SQL_TOOLS:
            return _sql_regex(self.pattern).fullmatch(_sql_words(value)) is not None
        return _text_regex(self.pattern).fullmatch(value) is not None

    def matches_text(self, text: str) -> bool:
        """Whether the pattern matches one piece of text (a single shell command)."""
        return self.pattern is None or _text_regex(self.pattern).fullmatch(text) is not None

    def __str__(self) -> str:
        return self.text


def parse_rules(rules: Iterable[str | Rule]) -> tuple[Rule, ...]:
    """Parse several rules; the first malformed one raises :class:`InvalidRuleError`."""
    if isinstance(rules, str):  # a single rule given where a list was expected
        rules = [rules]
    return tuple(Rule.parse(rule) for rule in rules)


def _name_matches(pattern: str, name: str) -> bool:
    if _GLOB_CHARS.isdisjoint(pattern):
        return pattern == name
    return fnmatch.fnmatchcase(name, pattern)


@functools.lru_cache(maxsize=1024)
def _text_regex(pattern: str) -> re.Pattern[str]:
    """A glob over free text: ``*`` matches anything; a trailing ``:*`` means "and any
    arguments" (``npm run test:*`` matches ``npm run test`` and ``npm run test --watch``)."""
    if pattern.endswith(":*"):
        return re.compile(_glob_regex(pattern[:-2], path=False) + r"(?:\s.*)?", re.DOTALL)
    return re.compile(_glob_regex(pattern, path=False), re.DOTALL)


_WHITESPACE = re.compile(r"\s+")


def _sql_words(text: str) -> str:
    """SQL with each run of whitespace made one space, and none at either end."""
    return _WHITESPACE.sub(" ", text).strip()


@functools.lru_cache(maxsize=1024)
def _sql_regex(pattern: str) -> re.Pattern[str]:
    """A glob over SQL: as :func:`_text_regex`, without regard to case or line breaks."""
    return re.compile(_glob_regex(_sql_words(pattern), path=False), re.DOTALL | re.IGNORECASE)


@functools.lru_cache(maxsize=1024)
def _path_regex(pattern: str) -> re.Pattern[str]:
    return re.compile(_glob_regex(pattern, path=True), re.DOTALL)


def _glob_regex(pattern: str, *, path: bool) -> str:
    """Translate a glob; with ``path``, ``*`` and ``?`` stop at ``/`` and ``**`` crosses it."""
    out: list[str] = []
    i, n = 0, len(pattern)
    star = "[^/]*" if path else ".*"
    one = "[^/]" if path else "."
    while i < n:
        char = pattern[i]
        if char == "*":
            if path and pattern.startswith("**", i):
                i += 2
                if pattern.startswith("/", i):  # "**/" = any number of directories, even none
                    out.append("(?:.*/)?")
                    i += 1
                else:
                    out.append(".*")
                continue
            out.append(star)
        elif char == "?":
            out.append(one)
        elif char == "[":
            end = pattern.find("]", i + 2 if pattern.startswith("[!", i) else i + 1)
            if end == -1:
                out.append(re.escape(char))
            else:
                body = pattern[i + 1 : end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = end
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out)


def _path_matches(pattern: str, path: str, workspace_dir: str) -> bool:
    """Match a gitignore-style pattern against a path (made relative to the workspace)."""
    root = workspace_dir
    absolute = path if os.path.isabs(path) else os.path.join(root, path)
    absolute = os.path.normpath(absolute)
    if pattern.startswith("/"):
        return _prefix_matches(_path_regex(pattern.rstrip("/") or "/"), absolute, absolute=True)
    relative = os.path.relpath(absolute, root)
    if relative == os.curdir:
        relative = ""
    elif relative.startswith(os.pardir + os.sep):
        return False  # outside the workspace: only absolute patterns speak about it
    pattern = pattern.removeprefix("./").rstrip("/")
    if not pattern:
        return False
    regex = _path_regex(pattern)
    if "/" not in pattern:  # matches any component, and with it everything inside
        return any(regex.fullmatch(part) for part in relative.split("/") if part)
    return _prefix_matches(regex, relative, absolute=False)


def _prefix_matches(regex: re.Pattern[str], path: str, *, absolute: bool) -> bool:
    """Whether ``path`` or one of its parent directories matches."""
    parts = path.split("/")
    for end in range(len(parts), 0, -1):
        candidate = "/".join(parts[:end])
        if absolute and not candidate:
            candidate = "/"
        if candidate and regex.fullmatch(candidate):
            return True
    return False


def _is_path_argument(call: CallInfo, argument: str) -> bool:
    return argument in call.path_params or argument in PATH_ARGUMENTS


def _primary_value(call: CallInfo) -> str | None:
    argument = call.primary_argument
    if argument is None:
        return None
    value = call.input.get(argument)
    if value is None and _is_path_argument(call, argument):
        return "."  # a search tool without a path searches the whole workspace
    return value if isinstance(value, str) else None


# --- shell commands ----------------------------------------------------------------------

_REDIRECTIONS = frozenset({">", ">>", "<", "<<", "<<<", ">&", "&>", "&>>", "<&", ">|", "<>"})
_SUBSTITUTION = re.compile(r"\$\(|`|<\(|>\(")
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")


@functools.lru_cache(maxsize=256)
def shell_commands(command: str) -> tuple[str, ...] | None:
    """The simple commands in a shell command line, each normalised to its words joined by
    single spaces; ``None`` when the line cannot be analysed (unbalanced quotes, command or
    process substitution)."""
    if _SUBSTITUTION.search(command):
        return None
    lexer = shlex.shlex(command, posix=True, punctuation_chars="();<>|&\n")
    lexer.whitespace_split = True
    lexer.whitespace = " \t\r"
    lexer.commenters = ""  # '#' inside a word is not a comment; a real one just adds words
    try:
        tokens = list(lexer)
    except ValueError:
        return None
    commands: list[str] = []
    words: list[str] = []
    for token in tokens:
        if token and set(token) <= set("();<>|&\n") and token not in _REDIRECTIONS:
            if words:
                commands.append(" ".join(words))
            words = []
        else:
            words.append(token)
    if words:
        commands.append(" ".join(words))
    return tuple(commands)


_ROUGH_SEPARATORS = re.compile(r"[;&|\n()`]|\$\(|<\(|>\(")


def rough_commands(command: str) -> tuple[str, ...]:
    """The command line cut at every separator and substitution, without parsing quotes: a
    second opinion for deny and ask rules when quoting or substitution defeats the parser
    (``echo $(rm -rf x)`` contains ``rm -rf x``)."""
    pieces = (" ".join(piece.split()) for piece in _ROUGH_SEPARATORS.split(command))
    return tuple(piece for piece in pieces if piece)


def _without_assignments(command: str) -> str:
    """``FOO=1 BAR=2 rm x`` -> ``rm x`` (what the command runs, for deny rules)."""
    words = command.split(" ")
    start = 0
    while start < len(words) - 1 and _ASSIGNMENT.match(words[start]):
        start += 1
    return " ".join(words[start:])


# --- the evaluator -----------------------------------------------------------------------


def normalize_mode(mode: str) -> PermissionMode:
    """``mode`` checked and spelled canonically (``read_only`` -> ``read-only``)."""
    canonical = str(mode).strip().lower().replace("_", "-")
    if canonical == "readonly":
        canonical = "read-only"
    if canonical not in MODES:
        raise ValueError(f"Unknown permission mode {mode!r}: use 'auto', 'ask' or 'read-only'.")
    return canonical


def _check_kind(kind: str, where: str) -> ToolKind:
    if kind not in TOOL_KINDS:
        raise ValueError(
            f"Unknown tool kind {kind!r} for {where}: use one of {', '.join(TOOL_KINDS)}."
        )
    return kind


class Permissions:
    """A permission mode plus allow/ask/deny rules, evaluated in one order (module docs).

    ``kinds`` classifies tools (names or globs to kinds), overriding a tool's own ``kind``
    attribute and the built-in classification; ``primary_arguments`` names the argument rules match
    for tools not in :data:`PRIMARY_ARGUMENTS`.
    """

    def __init__(
        self,
        mode: str = "auto",
        *,
        allow: Iterable[str | Rule] = (),
        ask: Iterable[str | Rule] = (),
        deny: Iterable[str | Rule] = (),
        kinds: Mapping[str, str] | None = None,
        primary_arguments: Mapping[str, str] | None = None,
    ) -> None:
        self.mode: PermissionMode = normalize_mode(mode)
        self.allow = parse_rules(allow)
        self.ask = parse_rules(ask)
        self.deny = parse_rules(deny)
        self.kinds: dict[str, ToolKind] = {
            name: _check_kind(kind, repr(name)) for name, kind in (kinds or {}).items()
        }
        self.primary_arguments: dict[str, str] = dict(primary_arguments or {})
        self._kind_cache: dict[str, ToolKind | None] = {}

    @property
    def trivial(self) -> bool:
        """True when every call is allowed without looking at it (``auto``, no rules)."""
        return self.mode == "auto" and not (self.allow or self.ask or self.deny)

    def kind_of(self, tool_name: str, tool: BaseTool | None = None) -> ToolKind:
        """The tool's kind: the ``kinds`` table, then its ``kind`` attribute, then built-ins."""
        kind = self._listed_kind(tool_name)
        return kind if kind is not None else declared_kind(tool_name, tool)

    def _listed_kind(self, tool_name: str) -> ToolKind | None:
        if not self.kinds:
            return None
        if tool_name in self._kind_cache:
            return self._kind_cache[tool_name]
        kind = self.kinds.get(tool_name)
        if kind is None:
            kind = next(
                (
                    listed
                    for pattern, listed in self.kinds.items()
                    if not _GLOB_CHARS.isdisjoint(pattern)
                    and fnmatch.fnmatchcase(tool_name, pattern)
                ),
                None,
            )
        self._kind_cache[tool_name] = kind
        return kind

    def primary_argument(self, tool_name: str, input: Mapping[str, Any]) -> str | None:
        """The name of the argument rule patterns are matched against for this call."""
        argument = self.primary_arguments.get(tool_name) or PRIMARY_ARGUMENTS.get(tool_name)
        if argument is not None:
            return argument
        return next((name for name in FALLBACK_ARGUMENTS if name in input), None)

    def call_info(
        self,
        tool_name: str,
        input: Mapping[str, Any],
        workspace_dir: str,
        tool: BaseTool | None = None,
    ) -> CallInfo:
        """The facts about one call that rules are matched against (``workspace_dir``
        resolved, as :attr:`CallInfo.workspace_dir`)."""
        return CallInfo(
            tool_name,
            input,
            self.kind_of(tool_name, tool),
            workspace_dir,
            tuple(getattr(tool, "path_params", ())),
            self.primary_argument(tool_name, input),
        )

    def evaluate(self, call: CallInfo, hook: Decision | None = None) -> Decision:
        """Decide one call; ``hook`` is the PreToolUse hooks' decision, if they made one."""
        shell = call.tool_name in SHELL_TOOLS and call.primary_argument is not None
        commands = self._commands(call) if shell else None
        for rule in self.deny:
            if self._restricts(rule, call, commands):
                return Decision(
                    "deny",
                    f"the rule {rule} forbids this {call.tool_name} call",
                    f"rule:deny:{rule}",
                )
        for rule in self.ask:
            if self._restricts(rule, call, commands):
                return Decision(
                    "ask", f"the rule {rule} asks for approval of this call", f"rule:ask:{rule}"
                )
        if hook is not None:
            return hook
        granted = self._granting_rule(call, commands)
        if granted is not None:
            return Decision("allow", "", f"rule:allow:{granted}")
        behavior = MODE_DEFAULTS[self.mode][call.kind]
        if behavior == "allow":
            return Decision("allow", "", f"mode:{self.mode}")
        what = f"{call.tool_name} {_KIND_PHRASES[call.kind]}"
        if behavior == "ask":
            return Decision("ask", f"{what}, and the session is in 'ask' mode", f"mode:{self.mode}")
        return Decision(
            "deny",
            f"{what}, and the session is in read-only mode; use read-only tools, or ask the user "
            "to change the permission mode",
            f"mode:{self.mode}",
        )

    def _commands(self, call: CallInfo) -> tuple[str, ...] | None:
        value = _primary_value(call)
        return shell_commands(value) if value is not None else None

    def _restricts(self, rule: Rule, call: CallInfo, commands: tuple[str, ...] | None) -> bool:
        """Deny and ask rules: the whole call, or for a shell command any part of it."""
        if rule.matches(call):
            return True
        if call.tool_name not in SHELL_TOOLS:
            return False
        if rule.pattern is None or not rule.covers_tool(call):
            return False
        value = _primary_value(call)
        pieces = (*(commands or ()), *rough_commands(value)) if value is not None else ()
        return any(
            rule.matches_text(piece) or rule.matches_text(_without_assignments(piece))
            for piece in pieces
        )

    def _granting_rule(self, call: CallInfo, commands: tuple[str, ...] | None) -> Rule | None:
        """The allow rule that covers the call; for a shell command every part must be covered."""
        if call.tool_name not in SHELL_TOOLS or call.primary_argument is None:
            return next((rule for rule in self.allow if rule.matches(call)), None)
        rules = [rule for rule in self.allow if rule.covers_tool(call)]
        whole = next((rule for rule in rules if rule.pattern in (None, "*")), None)
        if whole is not None:
            return whole
        if not commands:  # unparseable, substitution, or empty: no pattern can vouch for it
            return None
        first: Rule | None = None
        for command in commands:
            rule = next((r for r in rules if r.matches_text(command)), None)
            if rule is None:
                return None
            first = first or rule
        return first

    def __repr__(self) -> str:
        return (
            f"Permissions(mode={self.mode!r}, allow={[str(r) for r in self.allow]}, "
            f"ask={[str(r) for r in self.ask]}, deny={[str(r) for r in self.deny]})"
        )
