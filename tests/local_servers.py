"""Servers the tests start themselves on 127.0.0.1: a free port, and a process that is
waited for until it answers and stopped afterwards (llama.cpp's server, Arize Phoenix...)."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def server_process(
    command: list[str],
    *,
    name: str,
    ready_url: str,
    log_path: Path,
    timeout: float,
    poll: float = 0.1,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    stop_timeout: float = 15.0,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``command`` (output to ``log_path``), wait until ``ready_url`` answers 200,
    and stop it when done. A process that exits or does not answer within ``timeout``
    fails the test with the end of its log."""
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                pytest.fail(
                    f"{name} exited with status {process.returncode} at start:\n"
                    f"{log_path.read_text(errors='replace')[-3000:]}"
                )
            try:
                if httpx.get(ready_url, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"{name} did not start within {timeout:.0f} s:\n"
                    f"{log_path.read_text(errors='replace')[-3000:]}"
                )
            time.sleep(poll)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=stop_timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
