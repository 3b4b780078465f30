"""The ``docker`` sandbox (optional): every command in a throwaway container.

``docker run --rm`` with no network (``--network none``; with an allowlist the filtering
proxy's socket is mounted in and the image's ``python3`` runs the forwarder), a read-only
root filesystem, no capabilities, ``no-new-privileges``, memory, CPU and process limits
enforced by the engine, rlimits as ``--ulimit``, a size-limited private ``/tmp`` and the
workspace mounted read-write at its host path. The container runs as the host user, so
files it writes in the workspace belong to that user. Only the variables of the sandbox's
environment allowlist are passed (``-e``); the docker client itself gets only what it needs
to reach the engine.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import subprocess
import uuid
from typing import Final

from loopwright.sandbox.base import (
    SANDBOX_PROXY_SOCKET,
    SYSTEM_PATH,
    NetworkPolicy,
    PreparedCommand,
    Sandbox,
    SandboxConfig,
)
from loopwright.sandbox.limits import ResourceLimits

DEFAULT_IMAGE: Final = "python:3.11-slim"
#: Variables the docker client needs to find and talk to the engine.
CLIENT_ENV: Final = (
    "PATH",
    "HOME",
    "DOCKER_HOST",
    "DOCKER_CONFIG",
    "DOCKER_CONTEXT",
    "DOCKER_CERT_PATH",
    "DOCKER_TLS_VERIFY",
    "XDG_RUNTIME_DIR",
)


@functools.cache
def _engine_problem(docker: str) -> str | None:
    try:
        result = subprocess.run(
            [docker, "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=20,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"the docker client could not run ({exc})"
    if result.returncode != 0 or not result.stdout.strip():
        lines = result.stderr.strip().splitlines()
        return "no Docker engine answers" + (f" ({lines[-1]})" if lines else "")
    return None


def _bind(source: str, target: str, *, read_only: bool = False) -> str:
    """A ``--mount`` value; fields are CSV, so a path with a comma or quote is quoted."""

    def field(name: str, value: str) -> str:
        text = f"{name}={value}"
        if "," in text or '"' in text:
            return '"' + text.replace('"', '""') + '"'
        return text

    parts = ["type=bind", field("source", source), field("target", target)]
    if read_only:
        parts.append("readonly")
    return ",".join(parts)


class DockerSandbox(Sandbox):
    """Commands run in ``docker run --rm`` containers of ``image``."""

    name = "docker"
    adopts_orphans = True

    def __init__(
        self,
        config: SandboxConfig | None = None,
        *,
        limits: ResourceLimits | None = None,
        network: NetworkPolicy | None = None,
        image: str = DEFAULT_IMAGE,
        docker: str = "docker",
    ) -> None:
        super().__init__(config, limits=limits, network=network)
        self.image = image
        self.docker = docker

    @classmethod
    def unavailable_reason(cls) -> str | None:
        docker = shutil.which("docker")
        if docker is None:
            return "the docker program is not installed"
        return _engine_problem(docker)

    @property
    def python(self) -> str:
        """The image's interpreter (the host's virtualenv is not inside the container)."""
        return self.config.python or "python3"

    def python_user_site(self) -> tuple[str, str] | None:
        """None: the image's interpreter has no user site-packages of the host's."""
        return None

    def prepare(
        self,
        argv: list[str],
        workspace: str,
        env: dict[str, str],
        proxy_socket: str | None,
    ) -> PreparedCommand:
        limits = self.config.limits
        network = self.config.network
        name = f"loopwright-{uuid.uuid4().hex[:16]}"
        os.makedirs(self.home_dir(workspace), exist_ok=True)
        args = [self.docker, "run", "--rm", "--name", name, "--init"]
        args += ["--network", "host" if network.allow_all else "none"]
        args += ["--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"]
        args += ["--user", f"{os.getuid()}:{os.getgid()}"]
        if limits.memory_bytes is not None:
            args += [
                "--memory",
                str(limits.memory_bytes),
                "--memory-swap",
                str(limits.memory_bytes),
            ]
        if limits.cpus is not None:
            args += ["--cpus", f"{limits.cpus:g}"]
        if limits.max_processes is not None:
            args += ["--pids-limit", str(limits.max_processes)]
        ulimits = {
            "cpu": limits.cpu_seconds,
            "fsize": limits.file_size_bytes,
            "nofile": limits.open_files,
        }
        for flag, value in ulimits.items():
            if value is not None:
                args += ["--ulimit", f"{flag}={value}:{value}"]
        args += ["--ulimit", "core=0:0"]
        tmp_size = f",size={limits.tmp_bytes}" if limits.tmp_bytes is not None else ""
        args += ["--tmpfs", f"/tmp:rw,nosuid,nodev{tmp_size}"]
        args += ["--mount", _bind(workspace, workspace)]
        for path in self.config.read_only_paths:
            real = os.path.realpath(path)
            args += ["--mount", _bind(real, real, read_only=True)]
        if proxy_socket is not None:
            args += ["--mount", _bind(proxy_socket, SANDBOX_PROXY_SOCKET)]
            argv = self.forwarded(argv, SANDBOX_PROXY_SOCKET)
        args += ["--workdir", workspace]
        environment = self.environment(
            workspace, tmpdir="/tmp", extra=env, proxy=proxy_socket is not None
        )
        # the image's own PATH layout, not the host's virtualenv
        environment["PATH"] = ":".join(SYSTEM_PATH)
        for key, text in sorted(environment.items()):
            args += ["-e", f"{key}={text}"]
        args += [self.image, *argv]
        client_env = {k: v for k, v in os.environ.items() if k in CLIENT_ENV}
        return PreparedCommand(args, client_env, workspace, host_limits=False, container=name)

    def kill_container(self, name: str) -> None:
        """``docker kill`` the container, without waiting for the engine's answer."""
        with contextlib.suppress(OSError):
            subprocess.Popen(
                [self.docker, "kill", name],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )


__all__ = ["DEFAULT_IMAGE", "DockerSandbox"]
