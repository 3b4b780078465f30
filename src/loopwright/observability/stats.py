"""A small persistent record of every run: the timing and usage of each model and tool call.

A session's history (its messages and usage totals) says which tools were called and which
failed, but not how long anything took, which model answered, or what each run cost.
:class:`StatsRecorder` keeps that, as JSON lines in ``.loopwright/stats.jsonl`` in the
workspace, so reports (``loopwright sessions report ID``) and the HTML transcript can show it
for a session long after its process ended. Three kinds of record::

    {"kind": "model", "session": "3f2a...", "run": "9c1d...", "path": "agent", "ts": 1746094800.1,
     "model": "anthropic:claude-sonnet-4-5", "duration_ms": 1123.4, "message_index": 3,
     "stop_reason": "tool_use", "input_tokens": 1204, "output_tokens": 88,
     "cache_read_tokens": 0, "cache_write_tokens": 0, "cost_usd": 0.0049}
    {"kind": "tool", "session": ..., "run": ..., "path": ..., "ts": ..., "name": "Bash",
     "id": "toolu_01", "duration_ms": 37.2, "is_error": false, "output_chars": 120}
    {"kind": "tool", ..., "name": "SQL", ..., "database": "BigQuery", "bytes_billed": 10485760,
     "bytes_scanned": 81920, "cache_hit": false}
    {"kind": "run", "session": ..., "run": ..., "parent_run": null, "parent_call": null,
     "path": "agent", "agent": "agent", "model": ..., "ts": ..., "duration_ms": 2210.0,
     "stop_reason": "end_turn", "detail": "", "usage": {"input_tokens": ..., ...}}

``message_index`` is where the model's reply sits in the session's messages (absent when the
call failed). A tool call a warehouse billed (a BigQuery query: the SQL tool's
``metadata["bytes_billed"]``) carries what it billed; calls of databases that bill nothing per
query (DuckDB, PostgreSQL) carry nothing more. :class:`WarehouseUsage` adds them up, priced
at :func:`warehouse_price` USD per TiB. A tool call stopped with its run has
``"cancelled": true``. A sub-agent's records go to the file of the top-level run's
workspace, tagged with its own session id and with ``parent_run`` linking its run to the run
that started it.

Records are buffered and written when the run ends (or every ``flush_every`` records), each
batch with one append, so recording costs the loop a few microseconds per step; a process
killed mid-run loses the records of that run's last batch, never the session itself.
Recording is on with ``LOOPWRIGHT_STATS=1`` or ``Agent(instruments=[StatsRecorder()])``; the
recorder also writes ``conversation.json`` (see :mod:`loopwright.observability.transcript`)
when a top-level run ends.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopwright.events import warehouse_bill
from loopwright.instrument import Instrument, call_cancelled
from loopwright.settings import switch

if TYPE_CHECKING:
    from loopwright.events import Done
    from loopwright.messages import ToolUseBlock
    from loopwright.models.base import ModelRequest, ModelResponse
    from loopwright.run_context import RunContext
    from loopwright.sessions.session import Session
    from loopwright.sessions.store import SessionStore

log = logging.getLogger("loopwright.observability")

#: Where the records go, relative to the top-level run's workspace.
STATS_PATH = os.path.join(".loopwright", "stats.jsonl")

#: One encoder for every record (``json.dumps`` with options builds a new one per call).
_ENCODER = json.JSONEncoder(ensure_ascii=False, default=str)


def stats_path(workspace: str | os.PathLike[str]) -> Path:
    """The stats file of a workspace."""
    return Path(workspace) / STATS_PATH


# --- warehouse cost -----------------------------------------------------------------------

#: BigQuery's on-demand compute list price, USD per TiB billed: "On-demand compute ... you
#: incur charges per TiB" (https://cloud.google.com/bigquery/pricing#on_demand_pricing, linked
#: from https://docs.cloud.google.com/bigquery/docs/best-practices-costs), $6.25 per TiB in the
#: US and EU multi-regions since July 2023. Other regions, the monthly free TiB, negotiated
#: discounts and capacity (slot) pricing differ: set :data:`WAREHOUSE_PRICE_ENV`.
DEFAULT_BIGQUERY_USD_PER_TIB = 6.25
#: The environment variable that sets the price per TiB billed (a number of USD, 0 or more).
WAREHOUSE_PRICE_ENV = "LOOPWRIGHT_BIGQUERY_USD_PER_TIB"
TIB = 1024**4


def warehouse_price(usd_per_tib: float | None = None) -> float:
    """The USD per TiB billed that warehouse costs are estimated at: ``usd_per_tib`` when
    given, else :data:`WAREHOUSE_PRICE_ENV`, else :data:`DEFAULT_BIGQUERY_USD_PER_TIB`.
    ``ValueError`` (saying what to set) for a price that is not a finite number of 0 or more."""
    if usd_per_tib is not None:
        where, raw = "the price per TiB", str(usd_per_tib)
    else:
        raw = os.environ.get(WAREHOUSE_PRICE_ENV, "").strip()
        if not raw:
            return DEFAULT_BIGQUERY_USD_PER_TIB
        where = WAREHOUSE_PRICE_ENV
    try:
        price = float(raw.strip().removeprefix("$"))
    except ValueError:
        price = math.nan
    if isinstance(usd_per_tib, bool) or not math.isfinite(price) or price < 0:
        raise ValueError(
            f"{where} must be a number of USD per TiB billed, 0 or more (BigQuery on-demand: "
            f"{DEFAULT_BIGQUERY_USD_PER_TIB:g}), not {raw!r}"
        )
    return price


@dataclass(slots=True)
class WarehouseUsage:
    """What a warehouse billed for a set of queries (BigQuery on-demand), apart from what the
    model cost: queries billed, bytes billed and processed, results served from the cache
    (billed 0), and the databases that billed them."""

    queries: int = 0
    cache_hits: int = 0
    bytes_billed: int = 0
    bytes_processed: int = 0
    databases: list[str] = field(default_factory=list)

    def add_record(self, record: Mapping[str, Any]) -> bool:
        """Count one tool record (or SQL tool metadata) if a warehouse billed it; whether it
        did. Records without ``bytes_billed`` (DuckDB, PostgreSQL, other tools) are skipped."""
        billed = record.get("bytes_billed")
        if isinstance(billed, bool) or not isinstance(billed, int) or billed < 0:
            return False
        self.queries += 1
        self.bytes_billed += billed
        self.cache_hits += record.get("cache_hit") is True
        scanned = record.get("bytes_scanned")
        if isinstance(scanned, int) and not isinstance(scanned, bool) and scanned > 0:
            self.bytes_processed += scanned
        database = str(record.get("database") or "BigQuery")
        if database not in self.databases:
            self.databases.append(database)
        return True

    def add(self, other: WarehouseUsage) -> None:
        self.queries += other.queries
        self.cache_hits += other.cache_hits
        self.bytes_billed += other.bytes_billed
        self.bytes_processed += other.bytes_processed
        self.databases += [d for d in other.databases if d not in self.databases]

    @property
    def database(self) -> str:
        """The billing databases' names (``BigQuery``)."""
        return ", ".join(self.databases) or "BigQuery"

    def cost_usd(self, usd_per_tib: float | None = None) -> float:
        """The estimated cost at ``usd_per_tib`` (default :func:`warehouse_price`)."""
        return self.bytes_billed / TIB * warehouse_price(usd_per_tib)

    def counts(self) -> dict[str, Any]:
        """What was billed, without a price: the database, queries, cache hits, bytes."""
        return {
            "database": self.database,
            "queries": self.queries,
            "cache_hits": self.cache_hits,
            "bytes_billed": self.bytes_billed,
            "bytes_processed": self.bytes_processed,
        }

    def to_dict(self, usd_per_tib: float | None = None) -> dict[str, Any]:
        price = warehouse_price(usd_per_tib)
        return {**self.counts(), "usd_per_tib": price, "cost_usd": round(self.cost_usd(price), 12)}

    @classmethod
    def of(cls, records: Iterable[Mapping[str, Any]]) -> WarehouseUsage | None:
        """The billed queries among tool ``records``, or ``None`` when none was billed."""
        usage = cls()
        for record in records:
            if record.get("kind", "tool") == "tool":
                usage.add_record(record)
        return usage if usage.queries else None


@dataclass(slots=True, eq=False)
class _RunRecords:
    key: str
    path: Path
    started_wall: float
    started: float
    records: list[dict[str, Any]] = field(default_factory=list)


class StatsRecorder(Instrument):
    """Records the timing and usage of every model and tool call of every run (see the
    module docstring). ``conversation``: also write ``conversation.json`` into the workspace
    when a top-level run ends. Writing never breaks a run: a failure is logged once."""

    def __init__(self, *, conversation: bool = True, flush_every: int = 64) -> None:
        self.conversation = conversation
        self.flush_every = max(1, flush_every)
        self._warned = False

    def run_started(self, run: RunContext) -> None:
        root = run
        while root.parent is not None:
            root = root.parent
        run.data[self] = _RunRecords(
            uuid.uuid4().hex[:16],
            stats_path(root.session.workspace_dir),
            time.time(),
            time.perf_counter(),
        )

    def model_call_finished(
        self,
        run: RunContext,
        request: ModelRequest,
        response: ModelResponse | None,
        error: BaseException | None,
        duration_s: float,
    ) -> None:
        state = run.data.get(self)
        if not isinstance(state, _RunRecords):
            return
        record: dict[str, Any] = {
            "kind": "model",
            "session": run.session.id,
            "run": state.key,
            "path": run.path,
            "ts": round(time.time() - duration_s, 6),
            "model": run.agent.model.name,
            "duration_ms": round(duration_s * 1000, 3),
        }
        if response is not None:
            usage = response.usage
            cost = usage.cost_usd
            pricing = run.agent.model.pricing
            if cost == 0.0 and pricing is not None:
                cost = pricing.cost(usage)  # the loop prices the call just after this hook
            # the loop appends the reply right after this hook: this is its index
            record["message_index"] = len(run.session.messages)
            record["stop_reason"] = response.stop_reason
            record["input_tokens"] = usage.input_tokens
            record["output_tokens"] = usage.output_tokens
            record["cache_read_tokens"] = usage.cache_read_tokens
            record["cache_write_tokens"] = usage.cache_write_tokens
            record["cost_usd"] = cost
        elif isinstance(error, Exception):
            record["error"] = f"{type(error).__name__}: {error}"[:500]
        else:
            record["error"] = "cancelled"
        self._add(state, record)

    def tool_call_finished(
        self, run: RunContext, call: ToolUseBlock, result: dict[str, Any], duration_s: float
    ) -> None:
        state = run.data.get(self)
        if not isinstance(state, _RunRecords):
            return
        content = result.get("content", "")
        if isinstance(content, str):
            size = len(content)
        else:
            size = sum(len(getattr(b, "text", "") or "") for b in content or ())
        record: dict[str, Any] = {
            "kind": "tool",
            "session": run.session.id,
            "run": state.key,
            "path": run.path,
            "ts": round(time.time() - duration_s, 6),
            "name": call.name,
            "id": call.id,
            "duration_ms": round(duration_s * 1000, 3),
            "is_error": bool(result.get("is_error")),
            "output_chars": size,
        }
        if call_cancelled():  # stopped with its run: no result of the tool's
            record["cancelled"] = True
        bill = warehouse_bill(result.get("metadata"))
        if bill is not None:
            record.update(bill)
        self._add(state, record)

    def run_finished(self, run: RunContext, done: Done) -> None:
        state = run.data.pop(self, None)
        if not isinstance(state, _RunRecords):
            return
        parent = run.parent.data.get(self) if run.parent is not None else None
        state.records.append(
            {
                "kind": "run",
                "session": run.session.id,
                "run": state.key,
                "parent_run": parent.key if isinstance(parent, _RunRecords) else None,
                "parent_call": run.parent_call.id if run.parent_call is not None else None,
                "path": run.path,
                "agent": run.agent.name,
                "model": run.agent.model.name,
                "ts": round(state.started_wall, 6),
                "duration_ms": round((time.perf_counter() - state.started) * 1000, 3),
                "stop_reason": done.stop_reason,
                "detail": done.detail,
                "usage": done.usage.to_dict(),
            }
        )
        self._flush(state)
        if self.conversation and run.parent is None:
            from loopwright.observability.transcript import write_conversation

            try:
                write_conversation(run.session)
            except (OSError, ValueError) as exc:
                self._warn(f"cannot write conversation.json ({exc})")

    def _add(self, state: _RunRecords, record: dict[str, Any]) -> None:
        state.records.append(record)
        if len(state.records) >= self.flush_every:
            self._flush(state)

    def _flush(self, state: _RunRecords) -> None:
        if not state.records:
            return
        records, state.records = state.records, []
        try:
            append_records(state.path, records)
        except (OSError, TypeError, ValueError) as exc:
            self._warn(f"cannot write the run stats to {state.path} ({exc})")

    def _warn(self, message: str) -> None:
        if not self._warned:
            self._warned = True
            log.warning("%s; runs go on without it.", message)


def append_records(path: Path, records: Iterable[dict[str, Any]]) -> None:
    """Append records as JSON lines with one ``write`` (lines of concurrent writers never
    interleave)."""
    encode = _ENCODER.encode
    data = "".join([encode(r) + "\n" for r in records])
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(descriptor, data.encode("utf-8", errors="surrogateescape"))
    finally:
        os.close(descriptor)


def read_records(workspace: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every record in a workspace's stats file, oldest first ([] when there is none).

    Lines that are not JSON objects (a torn last line after a crash) are skipped.
    """
    path = stats_path(workspace)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    records: list[dict[str, Any]] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("kind"), str):
            records.append(record)
    return records


def records_for_session(
    session: Session, store: SessionStore | None = None
) -> list[dict[str, Any]]:
    """The records of ``session`` and of the sub-agents its runs started.

    They are in the session's workspace, or, for a sub-agent's session whose records went
    to the top-level run's workspace, in its parent session's (found through the
    ``parent_session`` metadata and ``store``).
    """
    seen: set[Path] = set()
    pool: list[dict[str, Any]] = []
    current: Session | None = session
    while current is not None:
        workspace = Path(current.workspace_dir)
        if workspace not in seen:
            seen.add(workspace)
            pool.extend(read_records(workspace))
        metadata = current.metadata if isinstance(current.metadata, dict) else {}  # damaged
        parent_id = metadata.get("parent_session")
        if (
            store is None
            or not isinstance(parent_id, str)
            or any(r.get("session") == session.id for r in pool)
        ):
            break
        try:
            current = store.load(parent_id)
        except ValueError:  # a damaged parent record (SessionDamaged): its records unread
            break
    return select_records(pool, session.id)


def select_records(records: list[dict[str, Any]], session_id: str) -> list[dict[str, Any]]:
    """The records of ``session_id``'s own runs and of the runs they started, recursively."""
    runs = {r["run"] for r in records if r.get("session") == session_id and "run" in r}
    children: dict[str, list[str]] = {}
    for record in records:
        parent = record.get("parent_run")
        if record.get("kind") == "run" and isinstance(parent, str):
            children.setdefault(parent, []).append(str(record.get("run")))
    todo = list(runs)
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in runs:
                runs.add(child)
                todo.append(child)
    return [r for r in records if r.get("run") in runs]


def instrument_from_env() -> StatsRecorder | None:
    """A :class:`StatsRecorder` when ``LOOPWRIGHT_STATS`` is on (``1``, ``true``...)."""
    return StatsRecorder() if switch(os.environ.get("LOOPWRIGHT_STATS")) else None
