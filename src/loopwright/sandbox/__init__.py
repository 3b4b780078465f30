"""Keeping agents inside their workspace: path validation, process sandboxes, resource
limits and the network proxy.

``paths`` is imported at once (every tool uses it); the rest is imported on first use, so
``import loopwright`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from loopwright.lazy import lazy_dir, lazy_getattr
from loopwright.sandbox.paths import PathValidator, SecurityError, create_path_validation_prehook

_LAZY = {
    "NetworkPolicy": "loopwright.sandbox.base",
    "OutputBuffer": "loopwright.sandbox.base",
    "RunOutcome": "loopwright.sandbox.base",
    "Sandbox": "loopwright.sandbox.base",
    "SandboxConfig": "loopwright.sandbox.base",
    "SandboxError": "loopwright.sandbox.base",
    "SandboxSession": "loopwright.sandbox.base",
    "SandboxUnavailable": "loopwright.sandbox.base",
    "SandboxedProcess": "loopwright.sandbox.base",
    "create_sandbox": "loopwright.sandbox.base",
    "ResourceLimits": "loopwright.sandbox.limits",
    "BubblewrapSandbox": "loopwright.sandbox.bubblewrap",
    "ProcessSandbox": "loopwright.sandbox.process",
    "DockerSandbox": "loopwright.sandbox.docker",
    "NetworkProxy": "loopwright.sandbox.netproxy",
}

__all__ = [
    "BubblewrapSandbox",
    "DockerSandbox",
    "NetworkPolicy",
    "NetworkProxy",
    "OutputBuffer",
    "PathValidator",
    "ProcessSandbox",
    "ResourceLimits",
    "RunOutcome",
    "Sandbox",
    "SandboxConfig",
    "SandboxError",
    "SandboxSession",
    "SandboxUnavailable",
    "SandboxedProcess",
    "SecurityError",
    "create_path_validation_prehook",
    "create_sandbox",
]

if TYPE_CHECKING:
    from loopwright.sandbox.base import (
        NetworkPolicy,
        OutputBuffer,
        RunOutcome,
        Sandbox,
        SandboxConfig,
        SandboxedProcess,
        SandboxError,
        SandboxSession,
        SandboxUnavailable,
        create_sandbox,
    )
    from loopwright.sandbox.bubblewrap import BubblewrapSandbox
    from loopwright.sandbox.docker import DockerSandbox
    from loopwright.sandbox.limits import ResourceLimits
    from loopwright.sandbox.netproxy import NetworkProxy
    from loopwright.sandbox.process import ProcessSandbox


__getattr__ = lazy_getattr(__name__, _LAZY, globals())

__dir__ = lazy_dir(_LAZY, globals())
