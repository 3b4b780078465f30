"""A CLI command run as a process and interrupted (Ctrl-C) once it has printed a given line."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path


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
