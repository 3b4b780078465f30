"""The loopwright CLI run as a process by the tests: its environment, one run to the end, and
a run interrupted (Ctrl-C) once it has printed a given line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

#: What a test's CLI process must not inherit: provider keys, and a model, store or workspace
#: root chosen outside the test.
NOT_INHERITED = (
    "ANTHROPIC_API_KEY",
    "OPENAI_API_KEY",
    "EVALS_MODEL",
    "LOOPWRIGHT_MODEL",
    "LOOPWRIGHT_STORE",
    "LOOPWRIGHT_WORKSPACES",
)


def cli_env(loopwright_home: Path) -> dict[str, str]:
    """The environment of a ``loopwright`` process: this home, none of :data:`NOT_INHERITED`,
    plain wide output."""
    env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
    env.update(
        LOOPWRIGHT_HOME=str(loopwright_home), NO_COLOR="1", COLUMNS="160", PYTHONIOENCODING="utf-8"
    )
    return env


def run_cli(
    args: list[str],
    *,
    env: dict[str, str],
    cwd: Path,
    input: str | None = None,
    timeout: float = 240,
) -> subprocess.CompletedProcess[str]:
    """``python -m loopwright.cli.app ARGS`` to the end, its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "loopwright.cli.app", *args],
        input=input,
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        cwd=cwd,
        timeout=timeout,
    )


def interrupt_after(
    args: list[str],
    *,
    line: str,
    env: dict[str, str],
    cwd: Path,
    pause: float = 0.0,
    timeout: float = 60,
) -> tuple[int, str]:
    """Run ``python -m loopwright.cli.app ARGS``; once a line of its stderr starts with
    ``line`` (and ``pause`` seconds more), send SIGINT. Return the exit status and the rest
    of stderr."""
    process = subprocess.Popen(
        [sys.executable, "-m", "loopwright.cli.app", *args],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        encoding="utf-8",
        env=env,
        cwd=cwd,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert process.stderr is not None
    for printed in process.stderr:
        if printed.startswith(line):
            break
    time.sleep(pause)
    process.send_signal(signal.SIGINT)
    rest = process.stderr.read()
    return process.wait(timeout=timeout), rest
