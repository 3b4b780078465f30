"""deploy/modal_app.py without a Modal account: the App is built offline, and its functions run
here through Modal's ``.local()`` (the same Python a container runs, minus the Volume) on the
scripted model, with SQLite files or a real PostgreSQL as the store."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import modal
import pytest

from loopwright import Agent, ScriptedModel
from loopwright.models.base import ModelRequest
from loopwright.sessions.store import SessionStore, open_store
from postgres_server import PostgresServer, postgres_server  # noqa: F401

from .conftest import REPO
from .dockerfile import Dockerfile

pytestmark = pytest.mark.filterwarnings("ignore:The .* function is executing locally")

ALICE, BOB = "alice-token", "bob-token"


@pytest.fixture(autouse=True)
def modal_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the Modal Secret gives a container: tokens and the model."""
    monkeypatch.setenv("LOOPWRIGHT_TOKENS", f"{ALICE}=alice,{BOB}=bob")
    monkeypatch.setenv("LOOPWRIGHT_MODEL", "scripted")
    monkeypatch.delenv("LOOPWRIGHT_STORE", raising=False)
    for name in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "LOOPWRIGHT_PERMISSION_MODE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Sessions in the per-session SQLite files (no LOOPWRIGHT_STORE), or in PostgreSQL."""
    if request.param == "postgresql":
        server: PostgresServer = request.getfixturevalue("postgres_server")
        monkeypatch.setenv("LOOPWRIGHT_STORE", server.create_database("modal"))
    return request.param


def turn(app: ModuleType, token: str, session_id: str, message: str) -> list[dict[str, Any]]:
    """One call of ``agent_turn``, as a client of ``remote_gen`` would consume it."""

    async def consume() -> list[dict[str, Any]]:
        return [event async for event in app.agent_turn.local(token, session_id, message)]

    return asyncio.run(consume())


def saved(app: ModuleType, session_id: str) -> Any:
    store: SessionStore | None = app.open_session_store(session_id, create=False)
    assert store is not None
    try:
        return store.load(session_id)
    finally:
        store.close()


def test_the_app_is_built_offline_with_its_functions_volume_and_secret(
    modal_app: ModuleType, dockerfile: Dockerfile, pyproject_extras: set[str]
) -> None:
    assert isinstance(modal_app.app, modal.App)
    for name in ("agent_turn", "list_files", "download_file"):
        function = getattr(modal_app, name)
        assert isinstance(function, modal.Function)
        spec = function._spec_  # what Modal will create: mounts and secrets (its own objects)
        assert {k: repr(v) for k, v in spec.volumes.items()} == {
            modal_app.DATA: f"modal.Volume.from_name({modal_app.VOLUME_NAME!r})"
        }
        assert [repr(s) for s in spec.secrets] == [
            f"modal.Secret.from_name({modal_app.SECRET_NAME!r})"
        ]
    assert {"ripgrep", "bubblewrap"} <= set(modal_app.APT_PACKAGES)
    # the same extras as the Docker image, all of them real
    build = dockerfile.stage("build")
    sync = next(c for c in build.commands() if c[:2] == ["uv", "sync"])
    docker_extras = {sync[i + 1] for i, w in enumerate(sync) if w == "--extra"}
    assert set(modal_app.EXTRAS) == docker_extras
    assert set(modal_app.EXTRAS) <= pyproject_extras
    assert (REPO / "uv.lock").exists()  # uv_sync(frozen=True) builds from the lock file


def test_two_turns_in_separate_calls_continue_one_history(
    modal_app: ModuleType, store_kind: str, loopwright_home: Path
) -> None:
    first = turn(modal_app, ALICE, "chat-1", "Write a haiku about tides")
    assert first[-1]["type"] == "done"
    assert first[-1]["stop_reason"] == "end_turn"
    assert {"text_delta", "tool_call", "tool_result"} <= {e["type"] for e in first}
    after_first = saved(modal_app, "chat-1")
    count = len(after_first.messages)

    second = turn(modal_app, ALICE, "chat-1", "Now one about the moon")
    assert second[-1]["stop_reason"] == "end_turn"
    session = saved(modal_app, "chat-1")
    # the second call continued the first call's history instead of starting over
    assert [m.to_dict() for m in session.messages[:count]] == [
        m.to_dict() for m in after_first.messages
    ]
    prompts = [m.text for m in session.messages if m.role == "user" and m.text]
    assert prompts == ["Write a haiku about tides", "Now one about the moon"]
    assert session.metadata[modal_app.OWNER_KEY] == "alice"
    workspace = Path(session.workspace_dir)
    assert (workspace / "task.md").read_text() == "# Task\n\nNow one about the moon\n"
    assert workspace.parent == loopwright_home / "workspaces"
    where = loopwright_home / "modal-sessions" / "chat-1.db"
    assert where.exists() is (store_kind == "sqlite")


def test_the_model_sees_the_earlier_turns(modal_app: ModuleType) -> None:
    def remember(request: ModelRequest) -> str:
        said = [m.text for m in request.messages if m.role == "user" and m.text]
        return "You said: " + " | ".join(said)

    def factory(store: SessionStore) -> Agent:
        return Agent(ScriptedModel(remember), store=store)

    async def one(message: str) -> list[dict[str, Any]]:
        run = modal_app.run_turn("alice", "memory-1", message, agent_factory=factory)
        return [event async for event in run]

    asyncio.run(one("my name is Ada"))
    events = asyncio.run(one("what is my name?"))
    text = "".join(e["text"] for e in events if e["type"] == "text_delta")
    assert text == "You said: my name is Ada | what is my name?"


def test_a_turn_running_in_one_container_holds_the_session_for_others(
    modal_app: ModuleType, store_kind: str
) -> None:
    """Two containers (each its own store connection and lease owner), one session."""
    from loopwright.sessions.lease import SessionLeased

    entered, release = asyncio.Event(), asyncio.Event()

    async def slow(request: ModelRequest) -> str:
        if request.messages[-1].text == "slow":
            entered.set()
            await release.wait()
        return "done"

    def factory(store: SessionStore) -> Agent:
        return Agent(ScriptedModel(slow), store=store)

    async def scenario() -> list[str]:
        async def consume(message: str) -> list[dict[str, Any]]:
            run = modal_app.run_turn("alice", "busy-1", message, agent_factory=factory)
            return [event async for event in run]

        first = asyncio.create_task(consume("slow"))
        await entered.wait()  # the first container is inside its turn
        with pytest.raises(SessionLeased, match="already running in session 'busy-1'"):
            await consume("meanwhile")
        release.set()
        events = await first
        assert events[-1]["stop_reason"] == "end_turn"
        after = await consume("next")  # the lease was given back with the done event
        return [e["type"] for e in after]

    assert asyncio.run(scenario())[-1] == "done"


def test_another_users_session_is_refused_and_left_alone(modal_app: ModuleType) -> None:
    turn(modal_app, ALICE, "alices", "Remember the launch code")
    before = saved(modal_app, "alices")

    with pytest.raises(LookupError, match="no session 'alices' for this user"):
        turn(modal_app, BOB, "alices", "What did alice say?")
    with pytest.raises(LookupError):
        asyncio.run(modal_app.list_files.local(BOB, "alices"))
    with pytest.raises(LookupError):
        asyncio.run(modal_app.download_file.local(BOB, "alices", "task.md"))

    after = saved(modal_app, "alices")
    assert len(after.messages) == len(before.messages)
    assert after.metadata[modal_app.OWNER_KEY] == "alice"
    # the owner still has it
    assert "task.md" in [
        f["path"] for f in asyncio.run(modal_app.list_files.local(ALICE, "alices"))
    ]


def test_looking_up_an_unknown_session_creates_nothing(
    modal_app: ModuleType, loopwright_home: Path
) -> None:
    for call in (
        modal_app.list_files.local(ALICE, "never-made"),
        modal_app.download_file.local(ALICE, "never-made", "x.txt"),
        modal_app.list_files.local(ALICE, "../escape"),
    ):
        with pytest.raises(LookupError):
            asyncio.run(call)
    assert not (loopwright_home / "modal-sessions").exists()


def test_tokens_are_checked_before_anything_runs(
    modal_app: ModuleType, monkeypatch: pytest.MonkeyPatch, loopwright_home: Path
) -> None:
    with pytest.raises(PermissionError, match="not valid"):
        turn(modal_app, "guess", "chat-x", "hello")
    with pytest.raises(PermissionError):
        turn(modal_app, "", "chat-x", "hello")
    monkeypatch.delenv("LOOPWRIGHT_TOKENS")
    with pytest.raises(PermissionError, match="LOOPWRIGHT_TOKENS"):
        asyncio.run(modal_app.list_files.local(ALICE, "chat-x"))
    assert not loopwright_home.exists() or not any(loopwright_home.rglob("*.db"))


def test_download_returns_workspace_files_and_refuses_paths_outside(
    modal_app: ModuleType, tmp_path: Path
) -> None:
    turn(modal_app, ALICE, "files-1", "Keep this")
    turn(modal_app, ALICE, "files-2", "Another session")
    workspace = Path(saved(modal_app, "files-1").workspace_dir)
    outside = tmp_path / "secret.txt"
    outside.write_text("not yours")
    os.symlink(outside, workspace / "link.txt")

    def download(path: str) -> bytes:
        result: bytes = asyncio.run(modal_app.download_file.local(ALICE, "files-1", path))
        return result

    assert download("task.md") == (workspace / "task.md").read_bytes()
    for path in (
        "../files-2/task.md",  # a sibling session's workspace
        "sub/../../files-2/task.md",
        str(outside),
        "/etc/passwd",
        "link.txt",  # a symlink out of the workspace
    ):
        with pytest.raises(ValueError, match="outside the session's workspace"):
            download(path)
    with pytest.raises(FileNotFoundError):
        download("missing.txt")
    listed = [f["path"] for f in asyncio.run(modal_app.list_files.local(ALICE, "files-1"))]
    assert "task.md" in listed
    assert "link.txt" not in listed


def test_an_empty_message_is_refused(modal_app: ModuleType) -> None:
    with pytest.raises(ValueError, match="empty"):
        turn(modal_app, ALICE, "chat-e", "   ")


def test_the_chat_loop_runs_turns_and_lists_files(modal_app: ModuleType) -> None:
    lines = iter(["Plan a picnic", "/files", "", "And a backup plan", "exit", "never read"])
    shown: list[str] = []

    def files(token: str, session_id: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = asyncio.run(modal_app.list_files.local(token, session_id))
        return result

    modal_app.chat_loop(
        lambda token, sid, text: turn(modal_app, token, sid, text),
        files,
        token=ALICE,
        session_id="chat-loop",
        read=lambda prompt: next(lines),
        write=shown.append,
    )
    output = "\n".join(shown)
    assert output.startswith("session chat-loop")
    assert "[Write]" in output
    assert "[Read]" in output
    assert "task.md" in output
    assert "And a backup plan" in output  # the second turn's answer quotes its task
    assert next(lines) == "never read"  # 'exit' ended the loop
    prompts = [m.text for m in saved(modal_app, "chat-loop").messages if m.role == "user"]
    assert [p for p in prompts if p] == ["Plan a picnic", "And a backup plan"]


def test_sessions_made_on_modal_are_the_http_servers_sessions(
    modal_app: ModuleType,
    postgres_server: PostgresServer,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With a PostgreSQL store, a session a Modal turn made belongs to the same user for
    ``loopwright serve`` (the owner is recorded the way the server records it)."""
    from loopwright.server.auth import User
    from loopwright.server.sessions import OWNER_KEY, SessionAccess

    dsn = postgres_server.create_database("modal_http")
    monkeypatch.setenv("LOOPWRIGHT_STORE", dsn)
    turn(modal_app, ALICE, "shared-1", "Started on Modal")
    store = open_store(dsn)
    try:
        agent = Agent("scripted", store=store)
        access = SessionAccess(agent, store, auth_enabled=True, is_running=lambda _: False)
        assert modal_app.OWNER_KEY == OWNER_KEY
        assert [i.id for i in access.list(User("alice"))] == ["shared-1"]
        assert access.list(User("bob")) == []

        async def continue_on_the_server() -> list[dict[str, Any]]:
            session = access.for_run(User("alice"), "shared-1")
            try:
                return [e.to_dict() async for e in agent.run("Continued over HTTP", session)]
            finally:
                await agent.aclose()

        assert asyncio.run(continue_on_the_server())[-1]["stop_reason"] == "end_turn"
    finally:
        store.close()
    prompts = [m.text for m in saved(modal_app, "shared-1").messages if m.role == "user"]
    assert [p for p in prompts if p] == ["Started on Modal", "Continued over HTTP"]
