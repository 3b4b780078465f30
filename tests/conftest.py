"""Shared fixtures: every test gets its own loopwright home (store + workspaces)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def loopwright_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "lw-home"
    monkeypatch.setenv("LOOPWRIGHT_HOME", str(home))
    monkeypatch.delenv("LOOPWRIGHT_WORKSPACES", raising=False)
    return home
