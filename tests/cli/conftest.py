"""Fixtures that drive the real ``loopwright`` command as a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

SLOW_CLI = Path(__file__).with_name("slow_cli.py")

CliRunner = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def cli_env(loopwright_home: Path) -> dict[str, str]:
    """The environment of a CLI subprocess: its own data dir, no colours, no provider keys,
    and the scripted demo as the default model (``LOOPWRIGHT_MODEL``), so no test reaches a
    real API; tests of the default model choice change these."""
    env = dict(os.environ)
    env["LOOPWRIGHT_HOME"] = str(loopwright_home)
    env.pop("LOOPWRIGHT_WORKSPACES", None)
    for name in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "ANTHROPIC_BASE_URL", "OPENAI_BASE_URL"):
        env.pop(name, None)
    env["LOOPWRIGHT_MODEL"] = "scripted"
    env.pop("FORCE_COLOR", None)
    env["NO_COLOR"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    return env


@pytest.fixture
def cli(cli_env: dict[str, str]) -> CliRunner:
    """Run ``python -m loopwright.cli.app ARGS`` to the end and return the result."""

    def run(*args: str, input: str | None = None, timeout: float = 60) -> Any:
        return subprocess.run(
            [sys.executable, "-m", "loopwright.cli.app", *args],
            input=input if input is not None else "",
            capture_output=True,
            text=True,
            encoding="utf-8",
            env=cli_env,
            timeout=timeout,
        )

    return run


@pytest.fixture
def slow_cli(cli_env: dict[str, str]) -> Callable[..., subprocess.Popen[str]]:
    """Start the CLI with a slowed-down demo model, pipes open, ready for signals."""

    def start(delay: float, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, str(SLOW_CLI), str(delay), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            env=cli_env,
            # a shell's background job may ignore SIGINT; the child must see Ctrl-C
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )

    return start
