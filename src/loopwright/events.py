"""Typed events streamed by a run, and their JSON wire form.

``Agent.run`` yields these objects. Each has a ``type`` and ``to_dict()`` gives the wire form
(the same dict the CLI's ``--json`` prints and the server sends as SSE). Events also read like
dicts (``event["type"]``, ``event["text"]``), as the design guide's consumers expect.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeAlias

if TYPE_CHECKING:
    from loopwright.observability.stats import WarehouseUsage

StopReason: TypeAlias = Literal[
    "end_turn",
    "max_turns",
    "token_budget",
    "cost_budget",
    "timeout",
    "stuck_loop",
    "cancelled",
    "error",
]


class _WireEvent:
    """Shared behaviour: dict-style access and the wire form."""

    __slots__ = ()
    type: ClassVar[str]

    def __getitem__(self, key: str) -> Any:
        if key == "type":
            return self.type
        # only the wire fields: event["to_dict"] or event["__class__"] is a KeyError too
        if not isinstance(key, str) or key not in _field_names(type(self)):
            raise KeyError(key)
        return getattr(self, key)

    def __contains__(self, key: object) -> bool:
        return key == "type" or (isinstance(key, str) and key in _field_names(type(self)))

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"type": self.type}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if value is None and f.name in _OMITTED_WHEN_NONE:
                continue
            data[f.name] = value.to_dict() if hasattr(value, "to_dict") else value
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, default=str)


#: Optional wire fields left out of the wire form when unset, so the shapes stay as they were
#: for clients that predate them (``agent``: a sub-agent's events; ``warehouse``: a billed query).
_OMITTED_WHEN_NONE = frozenset({"agent", "warehouse"})


def _field_names(cls: type) -> Mapping[str, object]:
    """The wire fields of an event class (the dataclass's own field table: O(1) lookups)."""
    names: Mapping[str, object] = cls.__dataclass_fields__  # type: ignore[attr-defined]
    return names


def warehouse_bill(metadata: object) -> dict[str, Any] | None:
    """What a tool result's ``metadata`` says a warehouse billed for the call (the SQL tool on
    BigQuery: ``bytes_billed``, ``bytes_scanned``, ``cache_hit``, ``database``), or ``None``
    (DuckDB and PostgreSQL bill nothing per query, and other tools say nothing): one lookup
    for a result without a bill."""
    if not isinstance(metadata, Mapping):
        return None
    billed = metadata.get("bytes_billed")
    if billed is None or isinstance(billed, bool) or not isinstance(billed, int) or billed < 0:
        return None
    bill: dict[str, Any] = {"database": str(metadata.get("database") or "BigQuery")}
    bill["bytes_billed"] = billed
    scanned = metadata.get("bytes_scanned")
    if isinstance(scanned, int) and not isinstance(scanned, bool) and scanned >= 0:
        bill["bytes_scanned"] = scanned
    bill["cache_hit"] = metadata.get("cache_hit") is True
    return bill


def warehouse_cost(bytes_billed: int) -> dict[str, Any]:
    """The estimated cost of ``bytes_billed`` at the configured price per TiB, for the wire:
    ``usd_per_tib`` and ``cost_usd``; both ``None`` with ``price_error`` saying what to fix
    when the configured price is not usable (the figures are sent all the same)."""
    from loopwright.observability.stats import TIB, warehouse_price

    try:
        price = warehouse_price()
    except ValueError as exc:
        return {"usd_per_tib": None, "cost_usd": None, "price_error": str(exc)}
    return {"usd_per_tib": price, "cost_usd": round(bytes_billed / TIB * price, 12)}


@dataclass(slots=True)
class Usage:
    """Token and cost accounting for one model call, a run or a whole session.

    ``cost_usd`` is the model's. ``warehouse`` is what a warehouse billed for the queries
    (BigQuery on-demand: bytes billed, queries, cache hits), ``None`` when nothing was billed
    (DuckDB, PostgreSQL, no queries); in the wire form it is a ``warehouse`` object with the
    cost estimated at the configured price per TiB, left out when ``None``.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0
    model_calls: int = 0
    tool_calls: int = 0
    tool_errors: int = 0
    warehouse: WarehouseUsage | None = None

    @property
    def total_tokens(self) -> int:
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_read_tokens
            + self.cache_write_tokens
        )

    def add(self, other: Usage) -> None:
        """Add another usage record into this one."""
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cache_read_tokens += other.cache_read_tokens
        self.cache_write_tokens += other.cache_write_tokens
        self.cost_usd += other.cost_usd
        self.model_calls += other.model_calls
        self.tool_calls += other.tool_calls
        self.tool_errors += other.tool_errors
        if other.warehouse is not None:
            self._warehouse().add(other.warehouse)

    def add_bill(self, bill: Mapping[str, Any]) -> None:
        """Count one query a warehouse billed (a :func:`warehouse_bill`)."""
        self._warehouse().add_record(bill)

    def _warehouse(self) -> WarehouseUsage:
        if self.warehouse is None:
            from loopwright.observability.stats import WarehouseUsage

            self.warehouse = WarehouseUsage()
        return self.warehouse

    def copy(self) -> Usage:
        new = Usage()
        new.add(self)
        return new

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_read_tokens": self.cache_read_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "total_tokens": self.total_tokens,
            "cost_usd": round(self.cost_usd, 8),
            "model_calls": self.model_calls,
            "tool_calls": self.tool_calls,
            "tool_errors": self.tool_errors,
        }
        warehouse = self.warehouse
        if warehouse is not None and warehouse.queries:
            data["warehouse"] = {**warehouse.counts(), **warehouse_cost(warehouse.bytes_billed)}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Usage:
        return cls(
            input_tokens=int(data.get("input_tokens", 0)),
            output_tokens=int(data.get("output_tokens", 0)),
            cache_read_tokens=int(data.get("cache_read_tokens", 0)),
            cache_write_tokens=int(data.get("cache_write_tokens", 0)),
            cost_usd=float(data.get("cost_usd", 0.0)),
            model_calls=int(data.get("model_calls", 0)),
            tool_calls=int(data.get("tool_calls", 0)),
            tool_errors=int(data.get("tool_errors", 0)),
            warehouse=_warehouse_from(data.get("warehouse")),
        )


def _warehouse_from(data: object) -> WarehouseUsage | None:
    """The warehouse use of a usage's wire form (``None`` when absent or empty); its cost is
    not read back: it is estimated again at the configured price."""
    if not isinstance(data, Mapping):
        return None
    from loopwright.observability.stats import WarehouseUsage

    def count(key: str) -> int:
        value = data.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0

    database = data.get("database")
    databases = [d.strip() for d in database.split(",")] if isinstance(database, str) else []
    usage = WarehouseUsage(
        queries=count("queries"),
        cache_hits=count("cache_hits"),
        bytes_billed=count("bytes_billed"),
        bytes_processed=count("bytes_processed"),
        databases=[d for d in databases if d],
    )
    return usage if usage.queries else None


@dataclass(slots=True)
class TextDelta(_WireEvent):
    """A piece of the model's answer, as it streams."""

    text: str
    agent: str | None = None
    type: ClassVar[str] = "text_delta"


@dataclass(slots=True)
class ToolCall(_WireEvent):
    """The model asked for a tool call; it is about to run."""

    id: str
    name: str
    input: dict[str, Any]
    agent: str | None = None
    type: ClassVar[str] = "tool_call"


@dataclass(slots=True)
class ToolResult(_WireEvent):
    """A tool call finished (or failed: ``is_error``)."""

    id: str
    name: str
    content: str
    is_error: bool
    duration_ms: float
    agent: str | None = None
    #: what a warehouse billed for the call (a :func:`warehouse_bill` with its estimated
    #: ``cost_usd``), left out of the wire form when nothing was billed
    warehouse: dict[str, Any] | None = None
    type: ClassVar[str] = "tool_result"


@dataclass(slots=True)
class ApprovalRequest(_WireEvent):
    """A tool call waits for a person to approve or deny it."""

    id: str
    tool_call_id: str
    name: str
    input: dict[str, Any]
    reason: str = ""
    agent: str | None = None
    type: ClassVar[str] = "approval_request"


@dataclass(slots=True)
class UsageUpdate(_WireEvent):
    """Token use after a model call: this call, the run so far, and how full the context is."""

    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: float
    run: Usage = field(default_factory=Usage)
    context_tokens: int = 0
    context_window: int = 0
    agent: str | None = None
    type: ClassVar[str] = "usage"


@dataclass(slots=True)
class Error(_WireEvent):
    """Something went wrong.

    ``retryable``: trying again later may work. ``retrying``: the provider call is being
    retried right now and the run goes on (no ``done`` follows yet); with
    ``discard_partial`` the text streamed since the turn began is void and will be sent again.
    """

    message: str
    retryable: bool = False
    retrying: bool = False
    discard_partial: bool = False
    agent: str | None = None
    type: ClassVar[str] = "error"


@dataclass(slots=True)
class Notice(_WireEvent):
    """Something the person running the agent should know that does not stop the run: the
    model could not summarise older turns, a cost budget cannot hold... ``code`` is a short
    stable identifier (``summary_failed``, ``cost_unpriced``) to filter on; ``message`` says
    what happened and what to do about it."""

    message: str
    code: str
    agent: str | None = None
    type: ClassVar[str] = "notice"


@dataclass(slots=True)
class Done(_WireEvent):
    """The run ended; ``stop_reason`` says why. ``usage`` is the run's, with what a warehouse
    billed for its queries (``usage.warehouse``) when one did."""

    stop_reason: str
    usage: Usage
    session_id: str = ""
    detail: str = ""
    agent: str | None = None
    type: ClassVar[str] = "done"


Event: TypeAlias = (
    TextDelta | ToolCall | ToolResult | ApprovalRequest | UsageUpdate | Error | Notice | Done
)

EVENT_TYPES: dict[str, type[Event]] = {
    cls.type: cls
    for cls in (TextDelta, ToolCall, ToolResult, ApprovalRequest, UsageUpdate, Error, Notice, Done)
}


def event_from_dict(data: dict[str, Any]) -> Event:
    """Rebuild a typed event from its wire form (for clients of the CLI or the server)."""
    if not isinstance(data, dict):
        raise ValueError(f"an event must be a JSON object, got {type(data).__name__}")
    kind = data.get("type")
    cls = EVENT_TYPES.get(str(kind))
    if cls is None:
        raise ValueError(f"unknown event type {kind!r}")
    values = {k: v for k, v in data.items() if k != "type"}
    if cls is Done:
        values["usage"] = Usage.from_dict(values.get("usage") or {})
    elif cls is UsageUpdate and isinstance(values.get("run"), dict):
        values["run"] = Usage.from_dict(values["run"])
    names = _field_names(cls)
    try:
        return cls(**{k: v for k, v in values.items() if k in names})
    except TypeError as exc:  # a required field is missing
        raise ValueError(f"malformed {kind} event: {exc}") from None
