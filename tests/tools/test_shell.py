"""Bash, BashOutput and KillShell, run the way the agent runs them: through a ToolRegistry,
in the real sandbox (bubblewrap here, the process backend where parametrized)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from loopwright import Agent, MemoryStore, ScriptedModel, call
from loopwright.sandbox import BubblewrapSandbox, ProcessSandbox, Sandbox
from loopwright.tools import ToolRegistry, ToolResult
from loopwright.tools.shell import (
    DEFAULT_TIMEOUT_MS,
    MAX_TIMEOUT_MS,
    BashTool,
    ShellSession,
    ShellTools,
)

_NO_BWRAP = BubblewrapSandbox.unavailable_reason()
BACKENDS = [
    pytest.param(
        "bubblewrap",
        id="bubblewrap",
        marks=pytest.mark.skipif(_NO_BWRAP is not None, reason=f"bubblewrap: {_NO_BWRAP}"),
    ),
    pytest.param("process", id="process"),
]


VENV_BIN = os.path.dirname(os.path.abspath(sys.executable))


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    return ws.resolve()


@pytest.fixture(params=BACKENDS)
async def registry(request: pytest.FixtureRequest, workspace: Path) -> AsyncIterator[ToolRegistry]:
    registry = ToolRegistry(workspace)
    registry.register_all([ShellTools(request.param)])
    yield registry
    await registry.aclose()


def text(result: ToolResult) -> str:
    content = result["content"]
    assert isinstance(content, str), content
    return content


async def bash(registry: ToolRegistry, command: str, **extra: Any) -> ToolResult:
    return await registry.execute("Bash", {"command": command, **extra})


def live(marker: str) -> list[int]:
    """Pids of live (not zombie) processes whose command line contains ``marker``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{entry}/stat") as handle:
                state = handle.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in cmdline and state != "Z":
            found.append(int(entry))
    return found


async def read_until(registry: ToolRegistry, shell_id: str, wanted: str, **extra: Any) -> list[str]:
    """Call BashOutput until ``wanted`` shows up (bounded by pytest's timeout); every
    answer, in order."""
    answers: list[str] = []
    while True:
        answers.append(text(await registry.execute("BashOutput", {"shell_id": shell_id, **extra})))
        if wanted in answers[-1]:
            return answers
        await asyncio.sleep(0.02)


async def started(marker: str, count: int = 1) -> None:
    """Wait until ``count`` processes carry the marker (bounded by pytest's timeout)."""
    while True:
        if len(live(marker)) >= count:
            return
        await asyncio.sleep(0.01)


# --- like a terminal ---------------------------------------------------------------------


async def test_quotes_inside_quotes(registry: ToolRegistry) -> None:
    result = await bash(registry, """echo "it's a 'test'"; echo 'say "hi"'; echo "a\\"b" """)
    assert text(result) == "it's a 'test'\nsay \"hi\"\na\"b"
    assert not result["is_error"]


async def test_variables_and_substitutions(registry: ToolRegistry) -> None:
    result = await bash(
        registry, "name=world; echo \"hello $name\" '$name' $((6*7)) $(echo sub) ${name^^}"
    )
    assert text(result) == "hello world $name 42 sub WORLD"


async def test_last_exit_status_variable(registry: ToolRegistry) -> None:
    result = await bash(registry, "false; echo $?; true; echo $?")
    assert text(result) == "1\n0"
    assert not result["is_error"]  # the command as a whole exited 0


async def test_non_zero_exit_is_an_error_with_its_code(registry: ToolRegistry) -> None:
    result = await bash(registry, "echo partial; exit 3")
    assert result["is_error"]
    assert text(result) == "partial\n[exit code 3]"
    assert result["metadata"]["exit_code"] == 3


async def test_set_e_stops_at_the_first_failure(registry: ToolRegistry) -> None:
    result = await bash(registry, "set -e\necho one\nfalse\necho never")
    assert text(result) == "one\n[exit code 1]"


async def test_heredoc(registry: ToolRegistry, workspace: Path) -> None:
    command = "cat > notes.txt <<'EOF'\nline $HOME stays literal\n  indented\nEOF\ncat notes.txt"
    result = await bash(registry, command)
    assert text(result) == "line $HOME stays literal\n  indented"
    assert (workspace / "notes.txt").read_text() == "line $HOME stays literal\n  indented\n"


async def test_pipes_and_pipefail_off_like_a_terminal(registry: ToolRegistry) -> None:
    result = await bash(registry, "printf 'b\\na\\nc\\n' | sort | head -2")
    assert text(result) == "a\nb"
    failing_first = await bash(registry, "false | true")
    assert not failing_first["is_error"]  # pipefail is off by default, as in a terminal
    with_pipefail = await bash(registry, "set -o pipefail; false | true")
    assert with_pipefail["is_error"]


async def test_stderr_is_shown_after_stdout(registry: ToolRegistry) -> None:
    result = await bash(registry, "echo out; echo err >&2; ls /no/such/path")
    assert result["is_error"]
    content = text(result)
    assert content.startswith("out\n[stderr]\nerr\nls: cannot access '/no/such/path'")
    assert content.endswith("[exit code 2]")


async def test_unicode_output(registry: ToolRegistry) -> None:
    result = await bash(registry, "echo 'héllo wörld ✓ 日本語 🙂'; printf 'bad \\xff byte\\n'")
    assert text(result) == "héllo wörld ✓ 日本語 🙂\nbad \ufffd byte"


async def test_stdin_is_empty_so_reading_it_does_not_hang(registry: ToolRegistry) -> None:
    result = await bash(registry, 'cat; read -r line; echo "read=$? [$line]"')
    assert text(result) == "read=1 []"


async def test_huge_output_is_capped_with_a_note(registry: ToolRegistry) -> None:
    result = await bash(registry, "seq 1 2000000")
    content = text(result)
    assert content.startswith("1\n2\n3\n")
    assert "[output too long: stdout 14,888,896 bytes (" in content
    assert "Redirect it to a file (> out.txt) and read the file in parts" in content
    assert "2000000" in content  # the end is kept
    assert "bytes cut here" in content
    assert "output truncated" not in content  # the registry had nothing left to cut
    assert len(content) < 100_000


async def test_commands_run_in_the_workspace(registry: ToolRegistry, workspace: Path) -> None:
    (workspace / "data.csv").write_text("a,b\n")
    result = await bash(registry, "pwd; ls; cd /; pwd")
    assert text(result) == f"{workspace}\ndata.csv\n/"
    again = await bash(registry, "pwd")  # every call starts in the workspace again
    assert text(again) == str(workspace)


async def test_empty_command_is_refused(registry: ToolRegistry) -> None:
    result = await bash(registry, "   ")
    assert result["is_error"]
    assert text(result) == "The command is empty; give the shell command to run."


async def test_no_output_is_said(registry: ToolRegistry) -> None:
    assert text(await bash(registry, "true")) == "(no output)"


# --- environment -------------------------------------------------------------------------


async def test_host_secrets_never_reach_the_command(
    registry: ToolRegistry, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-api03-fake-canary-key")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-fake-openai-canary")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_fakecanary")
    result = await bash(registry, 'env; echo "[$ANTHROPIC_API_KEY]"')
    content = text(result)
    assert "canary" not in content
    assert "[]" in content
    env = dict(line.split("=", 1) for line in content.splitlines() if "=" in line)
    assert env["HOME"] == str(workspace / ".loopwright" / "home")
    assert env["TERM"] == "dumb"
    assert "TMPDIR" in env
    assert env["PATH"].startswith(VENV_BIN)


# --- timeouts and killing ----------------------------------------------------------------


async def test_timeout_kills_the_whole_process_group(registry: ToolRegistry) -> None:
    marker = "987.801"
    command = f"(sleep {marker}; echo late) & sleep {marker} & echo started; wait"
    result = await bash(registry, command, timeout=500)
    assert result["is_error"]
    content = text(result)
    assert content.startswith("started\n")
    assert "timed out after 0.5s and was killed, with every process it started" in content
    assert result["metadata"]["timed_out"]
    assert live(marker) == []


async def test_timeout_bounds_are_in_the_schema(registry: ToolRegistry) -> None:
    result = await bash(registry, "true", timeout=MAX_TIMEOUT_MS + 1)
    assert result["is_error"]
    assert "Invalid input for tool 'Bash'" in text(result)
    tool = registry.get("Bash")
    assert tool is not None
    assert (tool.timeout or 0) > MAX_TIMEOUT_MS / 1000  # the registry never cuts it first
    assert DEFAULT_TIMEOUT_MS == 120_000


async def test_cancelling_a_running_command_kills_its_tree(registry: ToolRegistry) -> None:
    marker = "987.802"
    task = asyncio.ensure_future(bash(registry, f"sleep {marker} & sleep {marker}; echo no"))
    await started(marker, 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert live(marker) == []


# --- background shells -------------------------------------------------------------------


async def test_background_shell_output_is_read_incrementally(registry: ToolRegistry) -> None:
    result = await bash(
        registry,
        "echo first; while [ ! -e go ]; do sleep 0.02; done; echo second; echo warn >&2; exit 4",
        background=True,
    )
    assert not result["is_error"]
    shell_id = result["metadata"]["shell_id"]
    assert shell_id in text(result)
    first = (await read_until(registry, shell_id, "first"))[-1]
    assert first.startswith(f"[shell {shell_id}: running, after ")
    nothing_new = text(await registry.execute("BashOutput", {"shell_id": shell_id}))
    assert nothing_new.endswith("(no new output)")
    await bash(registry, "touch go")
    later = await read_until(registry, shell_id, "failed")
    assert later[-1].startswith(f"[shell {shell_id}: failed (exit code 4)")
    everything = "\n".join(later)
    assert "first" not in everything  # only what is new since the last read
    assert everything.count("second") == 1
    assert everything.count("warn") == 1


async def test_bash_output_filter(registry: ToolRegistry) -> None:
    result = await bash(registry, "printf 'ok 1\\nERROR a\\nok 2\\nERROR b\\n'", background=True)
    shell_id = result["metadata"]["shell_id"]
    answers = await read_until(registry, shell_id, "completed", filter="^ERROR")
    lines = [line for answer in answers for line in answer.splitlines()[1:]]
    assert [line for line in lines if line != "(no new output)"] == ["ERROR a", "ERROR b"]
    bad = await registry.execute("BashOutput", {"shell_id": shell_id, "filter": "("})
    assert bad["is_error"]
    assert "not a valid regular expression" in text(bad)


async def test_kill_shell_kills_the_process_group(registry: ToolRegistry) -> None:
    marker = "987.803"
    result = await bash(registry, f"sleep {marker} & sleep {marker}", background=True)
    shell_id = result["metadata"]["shell_id"]
    await started(marker, 2)
    killed = await registry.execute("KillShell", {"shell_id": shell_id})
    assert text(killed) == f"Killed shell {shell_id} and every process it started."
    assert live(marker) == []
    status = await registry.execute("BashOutput", {"shell_id": shell_id})
    assert "killed (by KillShell)" in text(status)
    again = await registry.execute("KillShell", {"shell_id": shell_id})
    assert "had already ended" in text(again)


async def test_unknown_shell_id_is_a_clear_error(registry: ToolRegistry) -> None:
    result = await registry.execute("BashOutput", {"shell_id": "bash_99"})
    assert result["is_error"]
    assert text(result).startswith("No background shell has the id 'bash_99'")
    killed = await registry.execute("KillShell", {"shell_id": "nope"})
    assert killed["is_error"]


async def test_background_timeout_kills_the_shell(registry: ToolRegistry) -> None:
    marker = "987.804"
    result = await bash(registry, f"sleep {marker}", background=True, timeout=200)
    shell_id = result["metadata"]["shell_id"]
    status = await read_until(registry, shell_id, "killed")
    assert "killed (timed out)" in status[-1]
    assert live(marker) == []


async def test_background_shells_per_session_are_limited(workspace: Path) -> None:
    registry = ToolRegistry(workspace)
    registry.register_all([ShellTools("process", max_background=2)])
    try:
        for _ in range(2):
            assert not (await bash(registry, "sleep 987.805", background=True))["is_error"]
        third = await bash(registry, "sleep 987.805", background=True)
        assert third["is_error"]
        assert "2 background shells are already running" in text(third)
    finally:
        await registry.aclose()
    assert live("987.805") == []


async def test_closing_the_registry_kills_background_shells(workspace: Path) -> None:
    marker = "987.806"
    registry = ToolRegistry(workspace)
    registry.register_all([ShellTools()])
    await bash(registry, f"sleep {marker} & sleep {marker}", background=True)
    await started(marker, 2)
    await registry.aclose()
    assert live(marker) == []


# --- wiring ------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_shell_tools_bind_three_tools_sharing_one_session(backend: str, workspace: Path) -> None:
    tools = ShellTools(backend).bind(str(workspace), "s1")
    assert [tool.name for tool in tools] == ["Bash", "BashOutput", "KillShell"]
    shells = {id(tool.shells) for tool in tools}  # type: ignore[attr-defined]
    assert len(shells) == 1
    assert tools[0].sequential
    assert isinstance(tools[0].shells.sandbox, Sandbox)  # type: ignore[attr-defined]


def test_a_sandbox_instance_is_shared_across_sessions(workspace: Path, tmp_path: Path) -> None:
    sandbox = ProcessSandbox()
    toolset = ShellTools(sandbox)
    first = toolset.bind(str(workspace))[0]
    second = toolset.bind(str(tmp_path))[0]
    assert isinstance(first, BashTool)
    assert isinstance(second, BashTool)
    assert first.shells.sandbox is second.shells.sandbox is sandbox
    assert first.shells is not second.shells


def test_bad_default_timeout_is_refused() -> None:
    with pytest.raises(ValueError, match="default_timeout_ms must be between"):
        ShellTools(default_timeout_ms=MAX_TIMEOUT_MS + 1)


async def test_bash_registered_alone_works(workspace: Path) -> None:
    registry = ToolRegistry(workspace)
    registry.register(BashTool)
    try:
        assert text(await bash(registry, "echo alone")) == "alone"
    finally:
        await registry.aclose()


async def test_shell_session_reopens_after_close(workspace: Path) -> None:
    shells = ShellSession(ProcessSandbox(), workspace)
    first = await shells.run("echo one", 30)
    await shells.aclose()
    second = await shells.run("echo two", 30)
    await shells.aclose()
    assert (first.stdout, second.stdout) == ("one\n", "two\n")


async def test_agent_closing_a_session_kills_its_background_shells(tmp_path: Path) -> None:
    marker = "987.807"
    model = ScriptedModel(
        [call("Bash", {"command": f"sleep {marker}", "background": True}), "started it"]
    )
    agent = Agent(model, tools=[ShellTools()], store=MemoryStore(), workspace_root=str(tmp_path))
    result = await agent.collect("start a server")
    assert result.text == "started it"
    await started(marker)
    await agent.close_session(result.session)
    assert live(marker) == []
    await agent.aclose()


async def test_images_a_command_writes_are_named_and_broken_ones_said_to_be(
    registry: ToolRegistry, workspace: Path
) -> None:
    """A chart drawn by a script Bash ran (``python plot.py``) went unmentioned, where the
    Python tool names what it saved, and one cut short by a crash looked like any other.
    The images a command writes are named now, the broken ones said to be; other files
    (a build writes thousands) are not listed."""
    from server.live import png_bytes

    (workspace / "source.png").write_bytes(png_bytes(4, 3))
    result = await bash(
        registry,
        "mkdir -p 'charts/by drug' && cp source.png 'charts/by drug/top 10.png' && "
        "head -c 40 source.png > cut.png && : > empty.svg && echo hi > notes.txt",
    )
    content = text(result)
    assert result["is_error"] is False, content
    assert content.endswith(
        "[Images written in the workspace: charts/by drug/top 10.png (95 bytes), "
        "cut.png (40 bytes), empty.svg (0 bytes)]"
    ), content
    assert (
        "[Images that will not open: cut.png (cut short: not a whole PNG image), empty.svg "
        "(empty)." in content
    )
    assert "notes.txt" not in content
    assert result["metadata"]["images_written"] == [
        "charts/by drug/top 10.png",
        "cut.png",
        "empty.svg",
    ]
    assert result["metadata"]["broken_images"] == ["cut.png", "empty.svg"]

    quiet = await bash(registry, "echo hello > more.txt && echo done")
    assert text(quiet) == "done"  # no image written: nothing added
    assert "images_written" not in quiet.get("metadata", {})
