"""Fixtures for the deployment files: their paths, parsed forms, the Modal app module, and
the real server app whose routes the health checks and probes call."""

from __future__ import annotations

import importlib.util
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from .dockerfile import Dockerfile, parse

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


@pytest.fixture(scope="session")
def dockerfile() -> Dockerfile:
    return parse(DEPLOY / "Dockerfile")


@pytest.fixture(scope="session")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="session")
def pyproject_extras() -> set[str]:
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    return set(data["project"]["optional-dependencies"])


@pytest.fixture(scope="session")
def modal_app() -> Iterator[ModuleType]:
    """deploy/modal_app.py, imported as Modal's CLI would (no Modal account or network)."""
    name = "loopwright_modal_app"
    spec = importlib.util.spec_from_file_location(name, DEPLOY / "modal_app.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(name, None)


@pytest.fixture(scope="session")
def probe_status() -> Iterator[Any]:
    """``probe_status(path)``: the status code the real server app answers a GET with."""
    from fastapi.testclient import TestClient

    from loopwright import Agent, MemoryStore
    from loopwright.server import create_app

    store = MemoryStore()
    app = create_app(Agent("scripted", store=store), store=store, tokens={"t0ken": "alice"})
    with TestClient(app) as client:
        yield lambda path: client.get(path).status_code
