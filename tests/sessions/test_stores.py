"""Session stores: the same behaviour from the in-memory and the SQLite store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from loopwright import MemoryStore, ScriptedModel, Session, SessionStore, SQLiteStore, call
from loopwright.agent import Agent
from loopwright.messages import Message, TextBlock, ThinkingBlock, ToolUseBlock
from loopwright.tools.files import WriteTool


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SessionStore]:
    made: SessionStore = (
        MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "sessions.db")
    )
    yield made
    made.close()


def test_create_save_load_roundtrip(store: SessionStore, tmp_path: Path) -> None:
    session = Session.create("s1", root=tmp_path / "ws", store=store, metadata={"user": "ada"})
    assert (tmp_path / "ws" / "s1").is_dir()
    session.append(Message.user("hello"))
    session.append(
        Message(
            "assistant",
            [ThinkingBlock("hmm", "sig"), TextBlock("hi"), ToolUseBlock("t1", "Read", {"a": 1})],
        )
    )
    session.usage.input_tokens = 42
    session.save()
    loaded = store.load("s1")
    assert loaded is not None
    assert [m.to_dict() for m in loaded.messages] == [m.to_dict() for m in session.messages]
    assert loaded.usage.input_tokens == 42
    assert loaded.metadata == {"user": "ada"}
    assert loaded.workspace_dir == tmp_path / "ws" / "s1"
    assert store.exists("s1")
    assert not store.exists("nope")
    assert store.load("nope") is None


def test_incremental_saves_rewrite_changed_messages(store: SessionStore, tmp_path: Path) -> None:
    session = Session.create("s2", root=tmp_path, store=store)
    session.append(Message.user("one"))
    session.save()
    session.append(Message("user", [TextBlock("two")]))
    session.save()
    session.messages[1].content.append(TextBlock(" more"))
    session.touch(1)
    session.save()
    loaded = store.load("s2")
    assert loaded is not None
    assert [m.text for m in loaded.messages] == ["one", "two more"]


def test_list_and_delete(store: SessionStore, tmp_path: Path) -> None:
    first = Session.create("a", root=tmp_path, store=store)
    first.append(Message.user("Plan a trip to Lisbon\nwith details"))
    first.save()
    second = Session.create("b", root=tmp_path, store=store)
    second.save()
    infos = store.list()
    assert [i.id for i in infos] == ["b", "a"]
    assert infos[1].title == "Plan a trip to Lisbon"
    assert infos[1].message_count == 1
    assert store.delete("a")
    assert not store.delete("a")
    assert [i.id for i in store.list()] == ["b"]


def test_creating_an_existing_session_is_refused(store: SessionStore, tmp_path: Path) -> None:
    Session.create("dup", root=tmp_path, store=store)
    with pytest.raises(ValueError, match="already exists"):
        Session.create("dup", root=tmp_path, store=store)


def test_resume_unknown_session_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(LookupError, match="loopwright sessions list"):
        Session.resume("missing", store=SQLiteStore(tmp_path / "x.db"))


def test_every_step_is_persisted_during_a_run(tmp_path: Path) -> None:
    """A second connection sees each step as soon as the run reaches the next one."""
    db = tmp_path / "live.db"
    seen: list[int] = []

    def script(request):  # type: ignore[no-untyped-def]
        other = SQLiteStore(db)
        stored = other.load("live")
        other.close()
        assert stored is not None
        seen.append(len(stored.messages))
        if len(request.messages) < 5:
            return call("Write", file_path=f"f{len(request.messages)}.txt", content="x")
        return "done"

    agent = Agent(
        ScriptedModel(script),
        tools=[WriteTool],
        store=SQLiteStore(db),
        workspace_root=str(tmp_path / "ws"),
    )
    result = agent.run_sync("go", "live")
    assert result.stop_reason == "end_turn"
    # before each model call, everything so far was already on disk
    assert seen == [1, 3, 5]
    final = SQLiteStore(db).load("live")
    assert final is not None
    assert len(final.messages) == 6
    assert final.usage.model_calls == 3
    assert final.usage.tool_calls == 2


def test_default_store_lives_in_loopwright_home(loopwright_home: Path) -> None:
    store = SQLiteStore.default()
    assert store.path == loopwright_home / "sessions.db"
    session = Session.create(store=store)
    assert session.workspace_dir.parent == loopwright_home / "workspaces"
    resumed = Session.resume(session.id)
    assert resumed.id == session.id
