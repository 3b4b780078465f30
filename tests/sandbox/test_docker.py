"""The docker backend: the command line it builds, and a real run where an engine answers.

No Docker engine runs on the development VM, so the run test is skipped there with the
reason :meth:`DockerSandbox.unavailable_reason` gives.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from loopwright.sandbox import DockerSandbox, NetworkPolicy, ResourceLimits, SandboxConfig
from loopwright.sandbox.base import SANDBOX_PROXY_SOCKET
from loopwright.sandbox.limits import MIB


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    return ws.resolve()


def option(argv: list[str], name: str) -> list[str]:
    """Every value given to ``name`` on the command line."""
    return [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == name]


def test_command_line_isolates_and_limits(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-canary-docker")
    limits = ResourceLimits(
        memory_bytes=512 * MIB,
        cpus=1.5,
        max_processes=64,
        cpu_seconds=30,
        file_size_bytes=10 * MIB,
        open_files=256,
        tmp_bytes=32 * MIB,
    )
    box = DockerSandbox(SandboxConfig(limits=limits), image="python:3.12-slim")
    prepared = box.prepare(["bash", "-c", "echo hi"], str(workspace), {"EXTRA": "1"}, None)
    argv = prepared.argv
    assert argv[:3] == ["docker", "run", "--rm"]
    assert option(argv, "--network") == ["none"]
    assert "--read-only" in argv
    assert option(argv, "--cap-drop") == ["ALL"]
    assert option(argv, "--security-opt") == ["no-new-privileges"]
    assert option(argv, "--memory") == [str(512 * MIB)]
    assert option(argv, "--memory-swap") == [str(512 * MIB)]  # no swap beyond the limit
    assert option(argv, "--cpus") == ["1.5"]
    assert option(argv, "--pids-limit") == ["64"]
    assert set(option(argv, "--ulimit")) == {
        "cpu=30:30",
        f"fsize={10 * MIB}:{10 * MIB}",
        "nofile=256:256",
        "core=0:0",
    }
    assert option(argv, "--tmpfs") == [f"/tmp:rw,nosuid,nodev,size={32 * MIB}"]
    assert option(argv, "--mount") == [f"type=bind,source={workspace},target={workspace}"]
    assert option(argv, "--workdir") == [str(workspace)]
    assert option(argv, "--user") == [f"{os.getuid()}:{os.getgid()}"]
    assert argv[-4:] == ["python:3.12-slim", "bash", "-c", "echo hi"]
    env = dict(item.split("=", 1) for item in option(argv, "-e"))
    assert env["EXTRA"] == "1"
    assert env["HOME"] == str(workspace / ".loopwright" / "home")
    assert "ANTHROPIC_API_KEY" not in env
    assert "canary" not in " ".join(argv)
    assert "ANTHROPIC_API_KEY" not in prepared.env  # nor in the docker client's own env
    assert prepared.container is not None
    assert option(argv, "--name") == [prepared.container]
    assert not prepared.host_limits  # the engine enforces them


def test_an_allowlist_mounts_the_proxy_and_runs_the_forwarder(workspace: Path) -> None:
    policy = NetworkPolicy(allowed_domains=("pypi.org",))
    box = DockerSandbox(SandboxConfig(network=policy))
    prepared = box.prepare(["pip", "download", "x"], str(workspace), {}, "/run/host/proxy.sock")
    argv = prepared.argv
    assert option(argv, "--network") == ["none"]
    assert f"type=bind,source=/run/host/proxy.sock,target={SANDBOX_PROXY_SOCKET}" in option(
        argv, "--mount"
    )
    image_at = argv.index(box.image)
    assert argv[image_at + 1 : image_at + 4] == ["python3", "-S", "-c"]
    assert argv[-3:] == ["pip", "download", "x"]
    env = dict(item.split("=", 1) for item in option(argv, "-e"))
    assert env["HTTPS_PROXY"] == "http://127.0.0.1:3128"


def test_paths_with_commas_are_quoted_for_docker(tmp_path: Path) -> None:
    workspace = tmp_path / "a,b"
    workspace.mkdir()
    argv = DockerSandbox().prepare(["true"], str(workspace), {}, None).argv
    assert option(argv, "--mount") == [f'type=bind,"source={workspace}","target={workspace}"']


def test_full_network_uses_the_host_network(workspace: Path) -> None:
    box = DockerSandbox(network=NetworkPolicy(allow_all=True))
    argv = box.prepare(["true"], str(workspace), {}, None).argv
    assert option(argv, "--network") == ["host"]


def test_unavailable_reason_is_one_clear_sentence() -> None:
    reason = DockerSandbox.unavailable_reason()
    if reason is None:
        pytest.skip("a Docker engine answers here")
    assert reason.startswith(("the docker program is not installed", "no Docker engine answers"))


@pytest.mark.skipif(
    DockerSandbox.unavailable_reason() is not None,
    reason=f"docker: {DockerSandbox.unavailable_reason()}",
)
async def test_runs_a_command_in_a_container(workspace: Path) -> None:
    box = DockerSandbox(limits=ResourceLimits(memory_bytes=256 * MIB))
    async with box.open(workspace) as session:
        outcome = await session.run(
            ["sh", "-c", "pwd; echo hi > made.txt; touch /etc/x 2>&1; echo $HOME"],
            time_limit=300,
        )
    assert outcome.exit_code == 0, outcome.stderr
    lines = outcome.stdout.splitlines()
    assert lines[0] == str(workspace)
    assert "Read-only file system" in outcome.stdout
    assert (workspace / "made.txt").read_text() == "hi\n"
