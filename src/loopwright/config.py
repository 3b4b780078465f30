"""Where loopwright keeps its files, from constructor arguments, then environment variables.

- ``LOOPWRIGHT_HOME``: the data directory (default ``$XDG_DATA_HOME/loopwright`` or
  ``~/.local/share/loopwright``); holds ``sessions.db``, ``memory.db`` (long-term memory),
  ``workspaces/`` and ``data/`` (generated datasets).
- ``LOOPWRIGHT_WORKSPACES``: where session workspaces are created (default ``<home>/workspaces``).
- ``LOOPWRIGHT_STORE``: where sessions are saved: ``sqlite:///PATH``, ``postgresql://...`` or
  ``memory`` (default: SQLite at ``<home>/sessions.db``).
- ``LOOPWRIGHT_MODEL``: the model used when none is given (see ``loopwright.models``).
- ``LOOPWRIGHT_SANDBOX``: ``auto`` (default: bubblewrap when it works here, else the process
  sandbox with a warning), ``bubblewrap``, ``process`` or ``docker``.
- ``LOOPWRIGHT_CACHE``: rebuildable files, e.g. model files joined from packages (default
  ``$XDG_CACHE_HOME/loopwright`` or ``~/.cache/loopwright``).
- ``LOOPWRIGHT_GREP_BACKEND``: ``auto`` (default: ripgrep when ``rg`` is on PATH), ``ripgrep``
  or ``python``.
"""

from __future__ import annotations

import os
from pathlib import Path


def loopwright_home() -> Path:
    """The data directory."""
    explicit = os.environ.get("LOOPWRIGHT_HOME")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "loopwright"


def workspace_root() -> Path:
    """The directory under which each session gets ``<session_id>/``."""
    explicit = os.environ.get("LOOPWRIGHT_WORKSPACES")
    return Path(explicit).expanduser() if explicit else loopwright_home() / "workspaces"


def cache_dir() -> Path:
    """Where rebuildable files are kept (nothing in it is precious)."""
    explicit = os.environ.get("LOOPWRIGHT_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "loopwright"


def memory_db_path() -> Path:
    """The long-term memory shared by every session of this user."""
    return loopwright_home() / "memory.db"


def sessions_db_path() -> Path:
    """The default SQLite session store."""
    return loopwright_home() / "sessions.db"
