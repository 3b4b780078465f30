"""Helpers for loop tests: agents on the scripted model with an in-memory store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loopwright import Agent, MemoryStore
from loopwright.events import Event
from loopwright.models.base import Model


def make_agent(model: Model, tmp_path: Path, **kwargs: Any) -> Agent:
    kwargs.setdefault("store", MemoryStore())
    return Agent(model, workspace_root=str(tmp_path / "ws"), **kwargs)


def types(events: list[Event]) -> list[str]:
    return [e.type for e in events]


def of_type(events: list[Event], kind: str) -> list[Any]:
    return [e for e in events if e.type == kind]
