"""Masking patient identifiers in what the model reads from the saved files.

The SQL tool's preview masks direct patient identifiers (:class:`~loopwright.healthcare.
sqlcheck.IdentifierMask`), but the saved CSV and Parquet files keep them for the analyst, and
the model can print them: ``print(pl.read_parquet("x.parquet"))`` with ``Python``, ``cat
x.csv`` with ``Bash``, ``Read x.csv``, ``Grep PT00 .``. Those outputs went to the model's
provider as they were.

:class:`IdentifierGuard` is a PostToolUse hook that closes that gap for one agent's sessions:

- after a ``SQL`` call whose metadata names ``masked_columns``, it reads the values of those
  columns from the saved Parquet (or CSV) file (only those columns; for a preview withheld
  because the columns could not be told apart, the columns named like a direct identifier,
  else the text and date columns not known to be something else), and after a
  ``DefineCohort`` call the patient ids of the saved member list;
- in the text output of every other tool (``Python``, ``Bash``, ``BashOutput``, ``Read``,
  ``Grep``, ``Edit``'s snippet, ``Delegate``'s answer...) it replaces each of the
  known values by ``[masked #n]`` (numbered in the order they were read, so the first masked
  result's values carry the numbers its preview showed) and adds a note saying what was
  masked and why.

The values learnt belong to the workspace the files are in, not to one session: every
session working there (a sub-agent of ``Delegate`` in the parent's workspace, or in its
``subagents/<name>-<n>/`` folder inside it, and its parent) masks the values any of them
read. A call that may write a result (``SQL``, ``DefineCohort``) is noted before it runs
(:meth:`IdentifierGuard.before`, a PreToolUse hook): when its files change but it never
says what it saved (it failed or timed out after the files were in place, or the run was
cancelled meanwhile), the guard reads them itself before the next output, their text and
date columns not known to be something else (as for a withheld preview), and says so in
the workspace's :data:`MASKED_RECORD` for a later process.

Matching is one pass over the word runs of the output with a dictionary lookup, fast for
outputs that hold no identifier; case is ignored and values are matched whole (``PT001`` is
not found inside ``PT0012``). Limits: values shorter than :data:`MIN_VALUE_CHARS` characters
are not masked (they would hide ordinary numbers and words); values the code derived from an
identifier (hashed, split, re-cased beyond case folding, truncated by a table printer with
``…``) are not recognized; a workspace first seen by this process (a session resumed in a
new one) has its saved results and cohorts read once (in its folders too, sub-agents'
included), for the schema's direct identifier columns and the columns the guard masked in
each result before (it keeps them in the workspace, :data:`MASKED_RECORD`, so a renamed
identifier column is found too, also in a copy of that result); the model's own tool calls
(ids it wrote in code or commands) are not changed. Past
:data:`MAX_VALUES` values a workspace masks any word shaped like the known ids (letters and
digits in the same places) too.
A file that cannot be read (or not within :data:`READ_TIMEOUT_S`) fails closed: the outputs of
those tools are withheld, saying why, until it is readable or gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import datetime as dt
import itertools
import json
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from loopwright.healthcare.sqlcheck import MASK_MARKER, SUMMARY_VALUE_COLUMNS, classify_identifier

if TYPE_CHECKING:
    import pyarrow as pa  # type: ignore[import-untyped]

    from loopwright.policy.hooks import PostToolUse, PreToolUse

#: The tools whose saved files tell which values to mask; the text output of every other
#: tool is masked (``Python``, ``Bash``, ``BashOutput``, ``Read``, ``Grep``, ``Edit``'s
#: snippet, tools of your own).
SOURCE_TOOLS = ("SQL", "DefineCohort")
#: The hook's matcher: every tool.
MATCHER = "*"
#: The matcher of :meth:`IdentifierGuard.before`, the PreToolUse hook that notes the files a
#: call may write: the :data:`SOURCE_TOOLS`.
PENDING_MATCHER = "|".join(SOURCE_TOOLS)
#: Values shorter than this are not masked (an id of 3 characters would hide every "123").
MIN_VALUE_CHARS = 4
#: Distinct values a workspace remembers; past it, words shaped like the known ids are masked.
MAX_VALUES = 500_000
#: Seconds reading the identifier values of one result may take; past it, fail closed.
READ_TIMEOUT_S = 30.0
#: Saved files read for a workspace first seen in this process (see ``_scan_workspace``).
MAX_SCANNED_FILES = 200
#: Folders of a workspace looked in for them.
MAX_SCANNED_FOLDERS = 1_000
#: Workspaces remembered at once (the least recently used are forgotten).
MAX_SESSIONS = 256
#: Where ``Delegate`` puts a sub-agent that works in a folder of its own
#: (``subagents/<name>-<n>``, inside the parent's workspace).
SUBAGENTS_DIR = "subagents"
#: Where, in a workspace, the guard keeps which columns of each saved result it masked
#: (``{dataset: {"columns": [...], "how": ...}}``, a sub-agent's by its path in the workspace:
#: ``subagents/<name>-<n>/<dataset>``): a session resumed in a new process reads those columns
#: again, though a renamed one (``PATIENT_ID AS who``) is not the schema's. ``"withheld"``
#: with no columns: a result no call told of (read as a withheld preview's).
MASKED_RECORD = os.path.join(".loopwright", "masked_columns.json")
#: Shapes (``PT9999999999``) used past :data:`MAX_VALUES` must be at least this long.
_MIN_SHAPE_CHARS = 6

_WORD = re.compile(r"\w+")
_SUBAGENT = re.compile(r"[A-Za-z0-9_-]{1,64}-[0-9]+")
#: A dataset or cohort name the tools save under (they refuse any other: nothing written).
_STEM = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")
_SHAPE = str.maketrans(
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "9" * 10 + "a" * 26 + "A" * 26,
)


@dataclass(slots=True)
class _Value:
    offset: int  # where the value's first word run starts in it
    length: int
    folded: str
    number: int
    word_start: bool  # whether the value starts / ends with a word character
    word_end: bool


#: The state of a result's files (inode, modification time, size; None: no such file).
_Signature = tuple[tuple[int, int, int] | None, ...]


@dataclass
class _Pending:
    """A result a call may be writing, or may have written without saying so."""

    paths: tuple[str, ...]  # its files, the one to read first (the Parquet) first
    how: str  # how to read it, when it changed: "withheld" (a query's), "cohort"
    seen: _Signature  # its files when the call started, or when they were read since
    #: the record's entry for it before the call (put back when the call wrote nothing)
    earlier: dict[str, Any] | None = None
    read: bool = False  # whether the guard read a version the call did not tell of


@dataclass
class _Known:
    """The identifier values the results of one workspace (its sessions', its sub-agents')
    hold, the results being written, and files that could not be read."""

    root: str  # the workspace ("" for a session without one)
    numbers: dict[str, int] = field(default_factory=dict)  # folded value -> its number
    count: int = 0  # the values numbered
    by_word: dict[str, list[_Value]] = field(default_factory=dict)  # folded first word run
    shapes: set[str] = field(default_factory=set)  # shapes of the one-word values
    overflowed: bool = False
    #: whether the workspace's saved files were read (once per process)
    scanned: bool = False
    unreadable: dict[str, tuple[str, tuple[str, ...], str]] = field(default_factory=dict)
    pending: OrderedDict[str, _Pending] = field(default_factory=OrderedDict)  # by CSV path
    lock: threading.Lock = field(default_factory=threading.Lock)

    def learn(self, values: Iterable[tuple[str, ...]]) -> None:
        """Remember ``values``, each the text forms of one value, which share a number (in a
        worker thread: many values take a while)."""
        with self.lock:
            self._learn(values)

    def _learn(self, values: Iterable[tuple[str, ...]]) -> None:
        for forms in values:
            folded = [form.casefold() for form in forms]
            number = next((self.numbers[f] for f in folded if f in self.numbers), None)
            if number is None:
                if self.count >= MAX_VALUES:
                    self.overflowed = True
                    break
                # numbered even when too short to mask: the numbers follow the preview's
                self.count += 1
                number = self.count
            for form, key in zip(forms, folded, strict=True):
                if key not in self.numbers:
                    self.numbers[key] = number
                    self._index(form, key, number)

    def _index(self, value: str, folded: str, number: int) -> None:
        first = _WORD.search(value)
        if first is None or len(value) < MIN_VALUE_CHARS:
            return
        entry = _Value(
            first.start(), len(value), folded, number, _is_word(value[0]), _is_word(value[-1])
        )
        candidates = self.by_word.setdefault(first.group().casefold(), [])
        candidates.append(entry)
        candidates.sort(key=lambda v: -v.length)  # the longest match first
        if first.group() == value and len(value) >= _MIN_SHAPE_CHARS and _has_digit(value):
            self.shapes.add(value.translate(_SHAPE))

    def mask(self, text: str) -> tuple[str, int]:
        """``text`` with the known values replaced by their markers, and how many were."""
        if not self.numbers or not text:
            return text, 0
        parts: list[str] = []
        done = 0  # text[:done] is in parts
        count = 0
        for match in _WORD.finditer(text):
            if match.start() < done:
                continue
            word = match.group()
            found = self._at(text, match.start(), word)
            if found is None and self.overflowed and word.translate(_SHAPE) in self.shapes:
                folded = word.casefold()
                if folded not in self.numbers:
                    self.count += 1
                    self.numbers[folded] = self.count
                found = (match.start(), match.end(), self.numbers[folded])
            if found is None:
                continue
            start, end, number = found
            parts += [text[done:start], MASK_MARKER.format(n=number)]
            done = end
            count += 1
        if not count:
            return text, 0
        parts.append(text[done:])
        return "".join(parts), count

    def _at(self, text: str, position: int, word: str) -> tuple[int, int, int] | None:
        candidates = self.by_word.get(word.casefold())
        if not candidates:
            return None
        for value in candidates:
            start = position - value.offset
            end = start + value.length
            if start < 0 or end > len(text):
                continue
            if value.word_start and start > 0 and _is_word(text[start - 1]):
                continue
            if value.word_end and end < len(text) and _is_word(text[end]):
                continue
            if text[start:end].casefold() == value.folded:
                return start, end, value.number
        return None


def _is_word(char: str) -> bool:
    return char.isalnum() or char == "_"


def _has_digit(text: str) -> bool:
    return any(c.isdigit() for c in text)


class IdentifierGuard:
    """The healthcare agent's PostToolUse hook (matcher :data:`MATCHER`) that masks, in the
    text output of the other tools (``Python``, ``Bash``, ``Read``, ``Grep``...), the patient
    identifier values the workspace's ``SQL`` previews masked and its cohorts list (see the
    module's doc). Its :meth:`before` is a PreToolUse hook (matcher :data:`PENDING_MATCHER`)
    that notes the files a call may write, so that they are read even if the call never says
    it wrote them.

    ``schema`` (``{table: [(column, type)]}``, default: the generated claims schema) and
    ``identifiers`` are
    :class:`~loopwright.healthcare.sqlcheck.IdentifierMask`'s: they tell which fields of a
    struct or a JSON row, and which rows of a SUMMARIZE, are direct identifiers."""

    def __init__(
        self,
        schema: Mapping[str, Sequence[tuple[str, str]]] | None = None,
        *,
        identifiers: Mapping[tuple[str, str], Any] | None = None,
    ) -> None:
        from loopwright.healthcare.data import SCHEMA

        tables = SCHEMA if schema is None else schema
        self.schema = {t: [c for c, _ in cols] for t, cols in tables.items()}
        self.identifiers = identifiers
        self._known: OrderedDict[str, _Known] = OrderedDict()

    def known(self, session_id: str | None, workspace: str) -> _Known:
        """What is known of the files of ``workspace`` (made on first use): one record for a
        workspace and the sub-agents' folders inside it (:func:`workspace_root`), whichever
        session works there; by ``session_id`` for a session without a workspace."""
        root = workspace_root(workspace) if workspace else ""
        key = root or f"\0{session_id or ''}"
        found = self._known.get(key)
        if found is None:
            found = self._known[key] = _Known(root)
            while len(self._known) > MAX_SESSIONS:
                self._known.popitem(last=False)
        else:
            self._known.move_to_end(key)
        return found

    async def before(self, event: PreToolUse) -> None:
        """Note the result files a ``SQL`` or ``DefineCohort`` call may write (and, for a
        query, mark them in :data:`MASKED_RECORD` to be read as a withheld preview's until
        the call says what it saved), so a version it leaves without saying so (it failed,
        timed out or was cancelled after the files were in place) is read before the next
        output. Never refuses the call."""
        paths = _targets(event.tool_name, event.input, event.workspace_dir)
        if paths is None:
            return None
        known = self.known(event.session_id, event.workspace_dir)
        await self._check_pending(known)  # a version an earlier call left: read it first
        how = "cohort" if event.tool_name == "DefineCohort" else "withheld"
        seen = await asyncio.to_thread(_signature, paths)
        earlier = None
        if how != "cohort" and known.root:
            with contextlib.suppress(OSError):
                earlier = await asyncio.to_thread(
                    _record_entry, known.root, paths[-1], {"columns": [], "how": how}
                )
        known.pending.pop(paths[-1], None)
        known.pending[paths[-1]] = _Pending(paths, how, seen, earlier)
        while len(known.pending) > MAX_SCANNED_FILES:
            known.pending.popitem(last=False)
        return None

    async def __call__(self, event: PostToolUse) -> dict[str, Any] | None:
        if event.tool_name in SOURCE_TOOLS:
            await self._learn(event)
            return None
        known = self.known(event.session_id, event.workspace_dir)
        if not known.scanned:
            await self._scan_workspace(known)
        await self._check_pending(known)
        withheld = await self._still_unreadable(known)
        if withheld is not None:
            return {**event.result, "content": withheld, "is_error": True}
        content = event.result.get("content")
        count = 0
        if isinstance(content, str):
            content, count = known.mask(content)
        elif isinstance(content, list):
            from loopwright.messages import TextBlock

            blocks: list[Any] = []
            for block in content:
                if isinstance(block, TextBlock):
                    text, n = known.mask(block.text)
                    count += n
                    block = TextBlock(text) if n else block
                blocks.append(block)
            content = blocks
        if not count:
            return None
        note = (
            f"({count} patient identifier value{'s were' if count > 1 else ' was'} shown as "
            "[masked #n] (patient privacy): they are values of the direct identifier columns "
            "of this workspace's results and cohorts, which the files keep. Equal values share "
            "a number. Work with them in code or SQL and report counts, not patient ids.)"
        )
        if isinstance(content, list):
            from loopwright.messages import TextBlock

            content = [*content, TextBlock(note)]
        else:
            content = f"{content}\n\n{note}" if content else note
        return {**event.result, "content": content}

    # --- learning the values -----------------------------------------------------------

    async def _learn(self, event: PostToolUse) -> None:
        known = self.known(event.session_id, event.workspace_dir)
        targets = _targets(event.tool_name, event.input, event.workspace_dir)
        pending = known.pending.get(targets[-1]) if targets is not None else None
        result = event.result
        metadata = result.get("metadata")
        if result.get("is_error") or not isinstance(metadata, dict):
            if pending is not None and result.get("is_error"):
                await self._check_pending(known)  # what it left: read now
                if not pending.read and pending.how != "cohort" and known.root:
                    # it wrote nothing: the record's entry for the earlier file, back
                    with contextlib.suppress(OSError):
                        await asyncio.to_thread(
                            _record_entry, known.root, pending.paths[-1], pending.earlier
                        )
            return
        path = self._file(event.workspace_dir, metadata)
        if event.tool_name == "SQL":
            masked = metadata.get("masked_columns")
            if not masked:  # nothing masked: no identifier to learn, and no entry to keep
                if pending is not None:
                    del known.pending[pending.paths[-1]]
                    if known.root and path is not None:
                        with contextlib.suppress(OSError):
                            await asyncio.to_thread(_record_entry, known.root, path, None)
                return
            columns = tuple(str(c) for c in masked)
            how = "withheld" if metadata.get("preview_withheld") else "columns"
        else:
            columns, how = (), "cohort"
        if path is None:
            return
        if pending is not None:  # told: no need to guess
            del known.pending[pending.paths[-1]]
        await self._read_into(known, path, columns, how)
        if how != "cohort" and known.root:  # a cohort's member list is found by its folder
            with contextlib.suppress(OSError):
                await asyncio.to_thread(_remember, known.root, path, columns, how)

    async def _check_pending(self, known: _Known) -> None:
        """Read the results being written whose files changed since the call began (or since
        they were read): a version no call told of. Read as a withheld preview's (the columns
        named like a direct identifier, else the text and date columns not known to be
        something else), and marked so in :data:`MASKED_RECORD`."""
        if not known.pending:
            return
        pending = list(known.pending.values())
        now = await asyncio.to_thread(lambda: [_signature(p.paths) for p in pending])
        for entry, signature in zip(pending, now, strict=True):
            if signature == entry.seen:
                continue
            entry.seen = signature
            path = next((p for p, s in zip(entry.paths, signature, strict=True) if s), None)
            if path is None:  # gone
                continue
            entry.read = True
            await self._read_into(known, path, (), entry.how)
            if entry.how != "cohort" and known.root:
                with contextlib.suppress(OSError):
                    await asyncio.to_thread(_remember, known.root, path, (), entry.how)

    async def _scan_workspace(self, known: _Known) -> None:
        """Learn the identifier values the workspace's saved files already hold, the first
        time this process sees the workspace: a session resumed in a new process (each
        one-shot ``loopwright healthcare --session`` question is one) had results and cohorts
        of earlier turns that no call of this process read. The results (``*.parquet``, or
        ``*.csv`` without one) in the workspace and its folders (sub-agents' too) are read for
        the schema's direct identifier columns and the columns :data:`MASKED_RECORD` names
        (renamed ones), the cohorts' member lists (in a ``cohorts`` folder) for their patient
        ids; at most :data:`MAX_SCANNED_FILES`, in :data:`MAX_SCANNED_FOLDERS` folders."""
        known.scanned = True
        workspace = known.root
        if not workspace:
            return

        def listed() -> list[tuple[str, tuple[str, ...], str]]:
            found: list[tuple[str, tuple[str, ...], str]] = []
            remembered = _remembered(workspace)
            walked = os.walk(workspace)
            for folder, subfolders, names in itertools.islice(walked, MAX_SCANNED_FOLDERS):
                subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
                if folder != workspace:  # an earlier version kept a sub-agent's record in it
                    inside = os.path.relpath(folder, workspace)
                    for stem, entry in _remembered(folder).items():
                        remembered.setdefault(os.path.join(inside, stem), entry)
                how = "cohort" if os.path.basename(folder) == "cohorts" else "columns"
                for name in sorted(names):
                    if len(found) >= MAX_SCANNED_FILES:
                        return found
                    file = self._scanned(workspace, folder, name, names, how, remembered)
                    if file is not None:
                        found.append(file)
            return found

        try:
            files = await asyncio.wait_for(asyncio.to_thread(listed), READ_TIMEOUT_S)
        except (TimeoutError, OSError):
            files = []
        for path, columns, how in files:
            await self._read_into(known, path, columns, how)

    def _scanned(
        self,
        workspace: str,
        folder: str,
        name: str,
        names: Sequence[str],
        how: str,
        remembered: Mapping[str, tuple[tuple[str, ...], str]],
    ) -> tuple[str, tuple[str, ...], str] | None:
        """How the scan of ``workspace`` reads the file ``name`` of ``folder`` (whose files
        are ``names``): its path, columns and how, or None for a file it leaves."""
        stem, dot, ending = name.rpartition(".")
        if not dot or ending not in ("parquet", "csv"):
            return None
        if ending == "csv" and f"{stem}.parquet" in names:
            return None
        path = os.path.join(folder, name)
        if how == "cohort":
            return path, (), how
        try:
            names_in = _column_names(path)
        except Exception:  # not a result file loopwright can read: not ours
            return None
        lowered = {n.lower() for n in names_in}
        earlier = remembered.get(os.path.relpath(os.path.join(folder, stem), workspace))
        if earlier is not None and set(earlier[0]) <= set(names_in):
            # the columns masked when it was saved (renamed ones too), and how
            return path, earlier[0], earlier[1]
        if {"column_name", "column_type"} <= lowered:
            # a SUMMARIZE/DESCRIBE result: the statistics of identifier rows
            columns = tuple(n for n in names_in if n.lower() in SUMMARY_VALUE_COLUMNS)
        else:  # only the schema's own identifier columns, and the renamed ones masked
            # before (a copy of that result): a file's "drug_name" or an
            # information_schema listing's "column_name" are not patients' names
            renamed = {c for cs, h in remembered.values() if h == "columns" for c in cs}
            columns = tuple(n for n in names_in if self.schema_direct(n) or n in renamed)
        return (path, columns, how) if columns else None

    @staticmethod
    def _file(workspace: str, metadata: Mapping[str, Any]) -> str | None:
        for key in ("parquet_path", "csv_path", "members_path"):
            value = metadata.get(key)
            if isinstance(value, str) and value:
                return os.path.join(workspace, value)
        return None

    async def _read_into(
        self, known: _Known, path: str, columns: tuple[str, ...], how: str
    ) -> bool:
        def load() -> None:
            known.learn(self.values(path, columns, how))

        try:
            await asyncio.wait_for(asyncio.to_thread(load), READ_TIMEOUT_S)
        except FileNotFoundError:
            known.unreadable.pop(path, None)  # gone: nothing left to print
            return True
        except Exception as exc:
            why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if isinstance(exc, TimeoutError):
                why = f"reading it took over {READ_TIMEOUT_S:g}s"
            known.unreadable[path] = (how, columns, why)
            return False
        known.unreadable.pop(path, None)
        return True

    async def _still_unreadable(self, known: _Known) -> str | None:
        """The message withholding an output while a result's identifiers cannot be read
        (each is tried again first), or None."""
        for path, (how, columns, _) in list(known.unreadable.items()):
            await self._read_into(known, path, columns, how)
        if not known.unreadable:
            return None
        told = "; ".join(
            f"{os.path.basename(p)} ({why})" for p, (_, _, why) in known.unreadable.items()
        )
        return (
            "This output was withheld (patient privacy): the patient identifiers of "
            f"{told} could not be read, so they cannot be masked in what this tool shows. "
            "Summarize in SQL instead (counts, COUNT(DISTINCT ...)), or remove or re-create "
            "that file."
        )

    def values(self, path: str, columns: Sequence[str], how: str) -> list[tuple[str, ...]]:
        """The text forms of the identifier values in the saved result ``path``: of the
        ``columns`` (``how="columns"``), SUMMARIZE's statistics of identifier rows, the text
        and date columns of a withheld preview (``"withheld"``), a cohort's patient ids
        (``"cohort"``, the first column)."""
        table = _read(path)
        names = list(table.column_names)
        lowered = [n.lower() for n in names]
        picked: list[pa.Array] = []
        if how == "cohort":
            if names:
                picked.append(_whole(table.column(0)))
        elif (
            how == "columns"
            and "column_name" in lowered
            and columns
            and all(c.lower() in SUMMARY_VALUE_COLUMNS for c in columns)
        ):
            import pyarrow.compute as pc  # type: ignore[import-untyped]

            described = _whole(table.column(lowered.index("column_name"))).to_pylist()
            rows = [i for i, name in enumerate(described) if self.direct(str(name))]
            wanted = {c.lower() for c in columns}
            for index, name in enumerate(lowered):
                if name in wanted:
                    picked.append(pc.take(_whole(table.column(index)), rows))
        elif how == "withheld":
            direct = [i for i, n in enumerate(names) if self.direct(n)]
            for index in direct or range(len(names)):
                array = _whole(table.column(index))
                if direct or (_texty(array.type) and not self.harmless(names[index])):
                    picked.append(array)
        else:
            wanted = set(columns)
            for index, name in enumerate(names):
                if name in wanted:
                    picked.append(_whole(table.column(index)))
            if not picked:  # the file's names differ from the metadata's: fail closed
                raise ValueError(f"the masked columns {', '.join(columns)} are not in the file")
        found: dict[tuple[str, ...], None] = {}  # ordered: the numbering follows the file
        for array in picked:
            for leaf in self._leaves(array, top=True):
                for value in leaf.unique().to_pylist():
                    forms = tuple(self._texts(value))
                    if forms:
                        found.setdefault(forms, None)
                    if len(found) > MAX_VALUES:
                        return list(found)
        return list(found)

    def _in_schema(self, name: str) -> list[tuple[str, str]]:
        """``(table, column)`` of the schema's columns called ``name`` (ignoring case)."""
        wanted = name.lower()
        return [(t, c) for t, cols in self.schema.items() for c in cols if c.lower() == wanted]

    def direct(self, name: str) -> bool:
        """Whether a column or field called ``name`` is a direct patient identifier."""
        tables = [table for table, _ in self._in_schema(name)]
        for table in tables or ["", "patients"]:
            if classify_identifier(table, name, self.identifiers) == "direct":
                return True
        return False

    def schema_direct(self, name: str) -> bool:
        """Whether ``name`` is a column of the schema that is a direct patient identifier
        there (not judged by its name alone)."""
        return any(
            classify_identifier(table, column, self.identifiers) == "direct"
            for table, column in self._in_schema(name)
        )

    def harmless(self, name: str) -> bool:
        """Whether a column called ``name`` is known not to be a direct patient identifier: a
        column of the schema that is none, or one named like an NPI or a quasi-identifier."""
        if classify_identifier("", name, self.identifiers) in ("provider", "quasi"):
            return True
        return bool(self._in_schema(name)) and not self.direct(name)

    def _leaves(self, array: pa.Array, *, top: bool = False) -> Iterator[pa.Array]:
        """The scalar arrays of ``array``: itself, or a struct's identifier fields, a list's
        items; a JSON object held as text is read for its identifier fields."""
        import pyarrow as pa
        import pyarrow.compute as pc

        kind = array.type
        if pa.types.is_struct(kind):
            for index in range(kind.num_fields):
                child = kind.field(index)
                values = pc.struct_field(array, [index])
                if _nested(child.type):
                    yield from self._leaves(values)
                elif self.direct(child.name):
                    yield values
        elif pa.types.is_list(kind) or pa.types.is_large_list(kind):
            yield from self._leaves(pc.list_flatten(array), top=top)
        elif top and _texty(kind) and not pa.types.is_temporal(kind) and _json_objects(array):
            found = [v for text in array.unique().to_pylist() for v in self._json_values(text)]
            yield pa.array(found, pa.string())
        else:
            yield array

    def _json_values(self, text: Any) -> Iterator[str]:
        try:
            data = json.loads(text) if isinstance(text, str) else None
        except ValueError:
            return
        stack = [data]
        while stack:
            item = stack.pop()
            if isinstance(item, dict):
                for key, value in item.items():
                    if isinstance(value, dict | list):
                        stack.append(value)
                    elif value is not None and self.direct(str(key)):
                        yield from self._texts(value)
            elif isinstance(item, list):
                stack.extend(item)

    @staticmethod
    def _texts(value: Any) -> Iterator[str]:
        """How ``value`` shows in printed output."""
        if value is None or isinstance(value, bool | bytes | dict | list):
            return
        if isinstance(value, dt.datetime):
            yield value.date().isoformat()
        elif isinstance(value, dt.date):
            yield value.isoformat()
        elif isinstance(value, float):
            yield repr(value)
            if value.is_integer():
                yield str(int(value))
        elif isinstance(value, int | Decimal):
            yield str(value)
        else:
            text = str(value)
            yield text
            if text.strip() != text:
                yield text.strip()


def workspace_root(workspace: str) -> str:
    """The workspace whose files ``workspace``'s are: itself, or for the folder of a
    sub-agent working inside its parent's (``subagents/<name>-<n>``, at any depth), the
    outermost parent's."""
    path = os.path.abspath(workspace)
    while True:
        parent, name = os.path.split(path)
        above, folder = os.path.split(parent)
        if folder != SUBAGENTS_DIR or not _SUBAGENT.fullmatch(name) or above == parent:
            return path
        path = above


def _targets(tool: str, input: Mapping[str, Any], workspace: str) -> tuple[str, ...] | None:
    """The files a ``SQL`` or ``DefineCohort`` call with ``input`` writes in ``workspace``
    (the Parquet first, then the CSV), or None for a call that writes none."""
    name = input.get("name" if tool == "DefineCohort" else "dataset_name")
    if tool not in SOURCE_TOOLS or not isinstance(name, str) or not _STEM.fullmatch(name):
        return None
    if not workspace:
        return None
    folder = os.path.join(workspace, "cohorts") if tool == "DefineCohort" else workspace
    return (os.path.join(folder, f"{name}.parquet"), os.path.join(folder, f"{name}.csv"))


def _signature(paths: Iterable[str]) -> _Signature:
    found: list[tuple[int, int, int] | None] = []
    for path in paths:
        try:
            stat = os.stat(path)
        except OSError:
            found.append(None)
        else:
            found.append((stat.st_ino, stat.st_mtime_ns, stat.st_size))
    return tuple(found)


#: Held while this process changes a workspace's record (calls run side by side).
_RECORDING = threading.Lock()


def _remember(workspace: str, path: str, columns: Sequence[str], how: str) -> None:
    """Record in ``workspace``'s :data:`MASKED_RECORD` that the saved result ``path`` had
    ``columns`` masked (``how`` as :meth:`IdentifierGuard.values` takes it; no columns with
    ``"withheld"``: its text and date columns not known to be something else)."""
    _record_entry(workspace, path, {"columns": list(columns), "how": how})


def _record_entry(workspace: str, path: str, entry: dict[str, Any] | None) -> dict[str, Any] | None:
    """Set the entry of the saved result ``path`` in ``workspace``'s :data:`MASKED_RECORD`
    (None: remove it), and return the one it replaces: the latest :data:`MAX_SCANNED_FILES`
    results, written whole and then renamed into place."""
    record = os.path.join(workspace, MASKED_RECORD)
    stem = os.path.splitext(os.path.relpath(path, workspace))[0]
    with _RECORDING:
        entries = _record_entries(record)
        earlier = entries.pop(stem, None)  # the latest last: the oldest are dropped first
        if entry is None and earlier is None:
            return None
        if entry is not None:
            entries[stem] = entry
        while len(entries) > MAX_SCANNED_FILES:
            del entries[next(iter(entries))]
        os.makedirs(os.path.dirname(record), exist_ok=True)
        partial = f"{record}.{os.getpid()}.{threading.get_ident()}.tmp"
        with open(partial, "w", encoding="utf-8") as handle:
            json.dump(entries, handle)
        os.replace(partial, record)
    return earlier


def _remembered(workspace: str) -> dict[str, tuple[tuple[str, ...], str]]:
    """What :func:`_remember` recorded in ``workspace``: dataset -> (columns, how); empty
    when there is no record, or it is not one (a damaged record is ignored, not trusted)."""
    found: dict[str, tuple[tuple[str, ...], str]] = {}
    for stem, entry in _record_entries(os.path.join(workspace, MASKED_RECORD)).items():
        columns, how = entry.get("columns"), entry.get("how")
        if (
            isinstance(columns, list)
            and (columns or how == "withheld")
            and all(isinstance(c, str) for c in columns)
            and how in ("columns", "withheld")
        ):
            found[stem] = (tuple(columns), how)
    return found


def _record_entries(record: str) -> dict[str, dict[str, Any]]:
    try:
        with open(record, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, dict)}


def _read(path: str) -> pa.Table:
    """The saved result at ``path``: Parquet, else CSV read as text (as it was written)."""
    if not os.path.exists(path):
        raise FileNotFoundError(path)
    if path.lower().endswith(".parquet"):
        import pyarrow.parquet as pq  # type: ignore[import-untyped]

        return pq.read_table(path)
    import pyarrow as pa
    import pyarrow.csv as pcsv  # type: ignore[import-untyped]

    names = _column_names(path)
    return pcsv.read_csv(
        path,
        convert_options=pcsv.ConvertOptions(column_types={n: pa.string() for n in names}),
    )


def _column_names(path: str) -> list[str]:
    """The column names of a saved result (the Parquet schema, or the CSV's header)."""
    if path.lower().endswith(".parquet"):
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names)
    with open(path, encoding="utf-8", errors="replace", newline="") as handle:
        return next(csv.reader([handle.readline()]), [])


def _whole(column: Any) -> pa.Array:
    """A chunked column as one array."""
    import pyarrow as pa

    if isinstance(column, pa.ChunkedArray):
        return column.combine_chunks()
    return column


def _nested(kind: Any) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_nested(kind))


def _texty(kind: Any) -> bool:
    import pyarrow as pa

    return bool(
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_temporal(kind)
        or pa.types.is_nested(kind)
    )


def _json_objects(array: pa.Array) -> bool:
    """Whether a text column holds JSON objects (its first value that is not NULL)."""
    for value in array.drop_null().slice(0, 1).to_pylist():
        return isinstance(value, str) and value.lstrip().startswith("{")
    return False


__all__ = [
    "MATCHER",
    "MAX_VALUES",
    "MIN_VALUE_CHARS",
    "PENDING_MATCHER",
    "READ_TIMEOUT_S",
    "SOURCE_TOOLS",
    "IdentifierGuard",
    "workspace_root",
]
