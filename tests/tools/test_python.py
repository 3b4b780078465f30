"""The Python tool through a ToolRegistry, in the real sandbox."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from loopwright.sandbox import BubblewrapSandbox, ProcessSandbox, SandboxConfig
from loopwright.tools import ToolRegistry, ToolResult
from loopwright.tools.python import CODE_DIR, PythonTool, PythonTools

_NO_BWRAP = BubblewrapSandbox.unavailable_reason()
BACKENDS = [
    pytest.param(
        "bubblewrap",
        id="bubblewrap",
        marks=pytest.mark.skipif(_NO_BWRAP is not None, reason=f"bubblewrap: {_NO_BWRAP}"),
    ),
    pytest.param("process", id="process"),
]


SYSTEM_PYTHON = "/usr/bin/python3"


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    return ws.resolve()


@pytest.fixture(params=BACKENDS)
async def registry(request: pytest.FixtureRequest, workspace: Path) -> AsyncIterator[ToolRegistry]:
    registry = ToolRegistry(workspace)
    registry.register_all([PythonTools(request.param)])
    yield registry
    await registry.aclose()


def text(result: ToolResult) -> str:
    content = result["content"]
    assert isinstance(content, str), content
    return content


async def python(registry: ToolRegistry, code: str, **extra: object) -> ToolResult:
    return await registry.execute("Python", {"code": code, **extra})


def leftover_cells(workspace: Path) -> list[str]:
    directory = workspace / CODE_DIR
    return os.listdir(directory) if directory.exists() else []


async def test_prints_come_back(registry: ToolRegistry, workspace: Path) -> None:
    result = await python(registry, "for i in range(3):\n    print('line', i)\nprint('✓ ünï')")
    assert not result["is_error"]
    assert text(result) == "line 0\nline 1\nline 2\n✓ ünï"
    assert leftover_cells(workspace) == []  # the code file is removed afterwards


async def test_an_exception_is_an_error_with_its_traceback(registry: ToolRegistry) -> None:
    result = await python(registry, "print('before')\nx = {}\nx['missing']")
    assert result["is_error"]
    content = text(result)
    assert content.startswith("before\n[stderr]\nTraceback (most recent call last):")
    assert "line 3, in <module>\n    x['missing']" in content  # the source line is shown
    assert "KeyError: 'missing'" in content
    assert content.endswith("[exit code 1]")


async def test_installed_libraries_and_workspace_modules_import(
    registry: ToolRegistry, workspace: Path
) -> None:
    (workspace / "helpers.py").write_text("def double(x):\n    return 2 * x\n")
    code = "import fastjsonschema, sys\nfrom helpers import double\nprint(double(21), sys.prefix)"
    result = await python(registry, code)
    assert text(result) == f"42 {sys.prefix}"


async def test_runs_in_the_workspace_and_writes_files_there(
    registry: ToolRegistry, workspace: Path
) -> None:
    code = "import os, pathlib\nprint(os.getcwd())\npathlib.Path('out.txt').write_text('data')"
    result = await python(registry, code)
    assert text(result) == f"{workspace}\n[Files written in the workspace: out.txt (4 bytes)]"
    assert (workspace / "out.txt").read_text() == "data"


async def test_stdin_is_empty(registry: ToolRegistry) -> None:
    result = await python(registry, "try:\n    input()\nexcept EOFError:\n    print('eof')")
    assert text(result) == "eof"


async def test_timeout_kills_the_code_and_its_children(registry: ToolRegistry) -> None:
    marker = "987.901"
    code = (
        "import subprocess, time\n"
        f"subprocess.Popen(['sleep', '{marker}'])\n"
        "print('started', flush=True)\n"
        "time.sleep(60)"
    )
    result = await python(registry, code, timeout=700)
    assert result["is_error"]
    assert text(result).startswith("started\n[The Python code timed out after 0.7s")
    # the Python tool's own advice: it has no background mode, unlike Bash
    assert "background" not in text(result)
    assert "give a longer timeout (timeout, in ms" in text(result)
    assert not any(marker in _cmdline(pid) for pid in os.listdir("/proc") if pid.isdigit())


def _cmdline(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().decode(errors="replace")
    except OSError:
        return ""


async def test_secrets_of_the_host_are_not_in_its_environment(
    registry: ToolRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-canary-python")
    result = await python(registry, "import os\nprint(sorted(os.environ))\nprint(dict(os.environ))")
    assert "canary" not in text(result)
    assert "ANTHROPIC_API_KEY" not in text(result)


async def test_empty_code_is_refused(registry: ToolRegistry) -> None:
    result = await python(registry, "\n  \n")
    assert result["is_error"]
    assert text(result) == "The code is empty; give the Python code to run."


async def test_nothing_printed_is_said(registry: ToolRegistry) -> None:
    assert text(await python(registry, "x = 1")) == "(no output)"


async def test_cancellation_kills_the_interpreter(registry: ToolRegistry) -> None:
    marker = "987.902"
    code = f"import subprocess\nsubprocess.run(['sleep', '{marker}'])"
    task = asyncio.ensure_future(python(registry, code))
    while True:
        if any(marker in _cmdline(pid) for pid in os.listdir("/proc") if pid.isdigit()):
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not any(marker in _cmdline(pid) for pid in os.listdir("/proc") if pid.isdigit())


@pytest.mark.skipif(_NO_BWRAP is not None, reason=f"bubblewrap: {_NO_BWRAP}")
async def test_isolated_under_bubblewrap(workspace: Path) -> None:
    registry = ToolRegistry(workspace)
    registry.register_all([PythonTools("bubblewrap")])
    code = (
        "import os\n"
        "for path in ('/etc/shadow', os.path.expanduser('~root') + '/.bashrc'):\n"
        "    try:\n"
        "        open(path).read()\n"
        "        print('read', path)\n"
        "    except OSError as exc:\n"
        "        print(type(exc).__name__)\n"
    )
    try:
        result = await python(registry, code)
    finally:
        await registry.aclose()
    assert text(result).split() == ["PermissionError", "FileNotFoundError"]


@pytest.mark.skipif(_NO_BWRAP is not None, reason=f"bubblewrap: {_NO_BWRAP}")
@pytest.mark.skipif(not os.path.exists(SYSTEM_PYTHON), reason=f"no {SYSTEM_PYTHON}")
async def test_a_configured_interpreter_is_exposed_and_used(workspace: Path) -> None:
    system_python = SYSTEM_PYTHON
    sandbox = BubblewrapSandbox(SandboxConfig(python=system_python))
    registry = ToolRegistry(workspace)
    registry.register(PythonTool(workspace, sandbox))
    try:
        result = await python(registry, "import sys\nprint(sys.executable)")
    finally:
        await registry.aclose()
    assert text(result) == system_python


async def test_python_tool_registered_alone_uses_the_default_sandbox(workspace: Path) -> None:
    registry = ToolRegistry(workspace)
    registry.register(PythonTool)
    tool = registry.get("Python")
    assert isinstance(tool, PythonTool)
    assert tool.sequential
    expected = BubblewrapSandbox if _NO_BWRAP is None else ProcessSandbox
    assert type(tool.sandbox) is expected
    try:
        assert text(await python(registry, "print(6 * 7)")) == "42"
    finally:
        await registry.aclose()


async def test_output_too_long_gets_advice_for_python_code(registry: ToolRegistry) -> None:
    """The note said to redirect with `> out.txt`, which is shell, not Python."""
    result = await python(registry, "print('x' * 2_000_000)")
    note = text(result).splitlines()[-1]
    assert note.startswith("[output too long: stdout 2,000,001 bytes")
    assert "Print less (a summary, df.head()), or write the output to a file" in note
    assert "> out.txt" not in note
    assert note.endswith("]")


def user_site_python(user_base: Path) -> tuple[str, Path] | None:
    """An interpreter here that imports from a user site-packages directory (the
    virtualenv's base one, or the system's), and where that directory is under ``user_base``."""
    code = "import site; print(bool(site.ENABLE_USER_SITE)); print(site.getusersitepackages())"
    for candidate in dict.fromkeys((getattr(sys, "_base_executable", ""), SYSTEM_PYTHON)):
        if not candidate or not os.path.exists(candidate):
            continue
        probe = subprocess.run(
            [candidate, "-c", code],
            env={**os.environ, "PYTHONUSERBASE": str(user_base)},
            capture_output=True,
            text=True,
            check=False,
        )
        enabled, _, packages = probe.stdout.partition("\n")
        if probe.returncode == 0 and enabled == "True":
            return candidate, Path(packages.strip())
    return None


@pytest.mark.parametrize("backend", BACKENDS)
async def test_libraries_installed_with_pip_user_import(
    backend: str, workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``pip install --user`` (pip's own choice when site-packages is not writable) puts
    polars and matplotlib in the user site-packages: the sandbox's other HOME hid them, and
    bubblewrap did not show the directory at all, so nothing the analysis needs imported."""
    user_base = tmp_path / "user-base"
    monkeypatch.setenv("PYTHONUSERBASE", str(user_base))
    found = user_site_python(user_base)
    if found is None:
        pytest.skip("no interpreter here reads a user site-packages directory")
    interpreter, packages = found
    packages.mkdir(parents=True)
    (packages / "claims_helpers.py").write_text("VALUE = 'from the user site'\n")
    (user_base / "other.txt").write_text("not a library")
    registry = ToolRegistry(workspace)
    registry.register_all([PythonTools(backend, config=SandboxConfig(python=interpreter))])
    code = (
        "import os, claims_helpers\n"
        "print(claims_helpers.VALUE)\n"
        f"print(os.path.exists({str(user_base / 'other.txt')!r}))"
    )
    try:
        result = await python(registry, code)
    finally:
        await registry.aclose()
    assert not result["is_error"], text(result)
    shown = "True" if backend == "process" else "False"  # bubblewrap: that directory alone
    assert text(result) == f"from the user site\n{shown}"


async def test_a_lone_surrogate_in_the_code_is_a_clear_error(
    registry: ToolRegistry, workspace: Path
) -> None:
    """A model's JSON can hold half of a character (``"\\ud83d"``): the code cannot be written
    as UTF-8. It was the registry's bare ``UnicodeEncodeError``, with nothing to do about it."""
    result = await python(registry, "print('chart \ud83d done')")
    assert result["is_error"]
    assert text(result) == (
        "The code holds '\\ud83d' at character 13: a lone surrogate (half of a character), "
        "which is not valid text. Remove it, or write it as that escape inside a string."
    )
    assert leftover_cells(workspace) == []
    escaped = await python(registry, "print(len('chart \\ud83d done'))")  # as it says
    assert text(escaped) == "12"


async def test_files_the_code_writes_are_listed_with_their_sizes(
    registry: ToolRegistry, workspace: Path
) -> None:
    """A chart saved by the code is named in the result (and its metadata), so the answer
    can list it; files that were there already and did not change are not."""
    (workspace / "claims.csv").write_text("a\n1\n")
    (workspace / "old.txt").write_text("x")
    code = (
        "import os, sys\n"
        "os.makedirs('charts', exist_ok=True)\n"
        "open('charts/trend.png', 'wb').write(b'\\x89PNG' + bytes(2044))\n"
        "open('old.txt', 'w').write('changed')\n"
        "print(open('claims.csv').read().count(chr(10)))\n"
    )
    result = await python(registry, code)
    assert result["is_error"] is False
    content = text(result)
    assert content.startswith("2\n")
    assert content.endswith(
        "[Files written in the workspace: charts/trend.png (2 KiB), old.txt (7 bytes)]"
    )
    assert result["metadata"]["files_written"] == ["charts/trend.png", "old.txt"]
    # nothing written: no note; the code file and caches under .loopwright are never listed
    quiet = await python(registry, "import json\nprint(len(json.dumps({})))")
    assert text(quiet) == "2"
    assert "files_written" not in quiet.get("metadata", {})


async def test_files_written_before_a_failure_are_listed_too(
    registry: ToolRegistry, workspace: Path
) -> None:
    result = await python(registry, "open('partial.csv', 'w').write('a\\n')\nraise SystemExit(3)")
    assert result["is_error"] is True
    assert "[Files written in the workspace: partial.csv (2 bytes)]" in text(result)


def test_a_huge_workspace_is_not_listed(tmp_path: Path) -> None:
    from loopwright.tools.written import MAX_SCANNED, files_written, workspace_files

    for i in range(MAX_SCANNED + 1):
        (tmp_path / f"f{i}").touch()
    assert workspace_files(str(tmp_path)) is None
    assert files_written(None, {"a.png": (1, 2, 3)}) == []
