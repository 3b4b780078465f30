"""Session store conformance: the same behaviour from the in-memory, SQLite and PostgreSQL
stores (PostgreSQL is a real server on 127.0.0.1, started by the tests)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from loopwright import MemoryStore, ScriptedModel, Session, SessionStore, SQLiteStore, call
from loopwright.agent import Agent
from loopwright.messages import Message, TextBlock, ThinkingBlock, ToolUseBlock
from loopwright.sessions.postgres import PostgresStore
from loopwright.sessions.store import default_store, open_store
from loopwright.tools.files import WriteTool
from postgres_server import PostgresServer, postgres_server  # noqa: F401

#: opens another store on the same data, as a second process would
Opener = Callable[[], SessionStore]


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    opened: list[SessionStore] = []
    if request.param == "memory":
        shared = MemoryStore()

        def make() -> SessionStore:
            return shared
    elif request.param == "sqlite":

        def make() -> SessionStore:
            opened.append(SQLiteStore(tmp_path / "sessions.db"))
            return opened[-1]
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        dsn = server.create_database("store")

        def make() -> SessionStore:
            opened.append(PostgresStore(dsn))
            return opened[-1]

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(opener: Opener) -> SessionStore:
    return opener()


def test_create_save_load_roundtrip(store: SessionStore, tmp_path: Path) -> None:
    session = Session.create("s1", root=tmp_path / "ws", store=store, metadata={"user": "ada"})
    assert store.list()[0].metadata == {"user": "ada"}
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
    assert infos[0].metadata == {}
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


def test_state_and_shrinking_histories_round_trip(store: SessionStore, tmp_path: Path) -> None:
    session = Session.create("st", root=tmp_path, store=store)
    for i in range(5):
        session.append(Message.user(f"m{i}"))
    session.summary = "earlier turns, condensed"
    session.context_start = 2
    session.trimmed = {"t1", "t2"}
    session.save()
    del session.messages[3:]  # a history rewritten shorter (e.g. a rolled-back turn)
    session.touch(len(session.messages))
    session.save()
    loaded = store.load("st")
    assert loaded is not None
    assert [m.text for m in loaded.messages] == ["m0", "m1", "m2"]
    assert loaded.summary == "earlier turns, condensed"
    assert loaded.context_start == 2
    assert loaded.trimmed == {"t1", "t2"}


def test_a_session_started_by_one_process_continues_in_another(
    opener: Opener, tmp_path: Path
) -> None:
    first = opener()
    agent = Agent(
        ScriptedModel([[call("Write", file_path="a.txt", content="a")], "wrote a"]),
        tools=[WriteTool],
        store=first,
        workspace_root=str(tmp_path / "ws"),
    )
    assert agent.run_sync("write a", "shared").stop_reason == "end_turn"
    second = opener()  # another process (or machine) with the same store
    other = Agent(
        ScriptedModel(["I see a.txt from before"]),
        store=second,
        workspace_root=str(tmp_path / "ws"),
    )
    result = other.run_sync("what did you do?", "shared")
    assert result.text == "I see a.txt from before"
    roles = [m.role for m in result.session.messages]
    assert roles == ["user", "assistant", "user", "assistant", "user", "assistant"]
    assert result.session.usage.model_calls == 3
    # and the first process sees the continuation
    again = first.load("shared")
    assert again is not None
    assert len(again.messages) == 6


def test_store_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(open_store("memory"), MemoryStore)
    sqlite_store = open_store(f"sqlite://{tmp_path / 'x.db'}")
    assert isinstance(sqlite_store, SQLiteStore)
    with pytest.raises(ValueError, match="absolute path"):
        open_store("sqlite://relative.db")
    with pytest.raises(ValueError, match="postgresql://USER@HOST/DB"):
        open_store("mysql://nope")
    monkeypatch.setenv("LOOPWRIGHT_STORE", f"sqlite://{tmp_path / 'env.db'}")
    chosen = default_store()
    assert isinstance(chosen, SQLiteStore)
    assert chosen.path == tmp_path / "env.db"


def test_postgres_store_from_the_environment(
    postgres_server: PostgresServer,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dsn = postgres_server.create_database("env")
    monkeypatch.setenv("LOOPWRIGHT_STORE", dsn)
    agent = Agent(ScriptedModel(["hi"]), workspace_root=str(tmp_path / "ws"))
    assert isinstance(agent.store, PostgresStore)
    assert agent.run_sync("hello", "pg").text == "hi"
    assert PostgresStore(dsn).load("pg") is not None
    assert "127.0.0.1" in agent.store.describe()


def test_postgres_unreachable_says_what_to_check() -> None:
    with pytest.raises(ConnectionError, match="check the DSN"):
        PostgresStore("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2")


def test_many_processes_can_open_a_new_sqlite_store_at_once(tmp_path: Path) -> None:
    """Parallel eval workers each open the same new database file at the same moment."""
    import subprocess
    import sys

    db = tmp_path / "fresh.db"
    code = (
        "import sys; from loopwright import SQLiteStore, Session\n"
        "store = SQLiteStore(sys.argv[1])\n"
        "Session.create(root=sys.argv[2], store=store)\n"
    )
    workers = [
        subprocess.Popen([sys.executable, "-c", code, str(db), str(tmp_path / "ws")])
        for _ in range(8)
    ]
    assert [w.wait(timeout=60) for w in workers] == [0] * 8
    assert len(SQLiteStore(db).list()) == 8


def test_many_servers_can_open_a_new_postgres_store_at_once(
    postgres_server: PostgresServer,  # noqa: F811
) -> None:
    """Two ``loopwright serve`` processes starting together both create the tables."""
    import threading

    for _ in range(3):
        dsn = postgres_server.create_database("race")
        barrier = threading.Barrier(8)
        failures: list[BaseException] = []

        def open_store_now(
            dsn: str = dsn,
            barrier: threading.Barrier = barrier,
            failures: list[BaseException] = failures,
        ) -> None:
            barrier.wait()
            try:
                PostgresStore(dsn).close()
            except BaseException as exc:
                failures.append(exc)

        threads = [threading.Thread(target=open_store_now) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert failures == []
        assert PostgresStore(dsn).list() == []


def test_a_turn_lease_is_held_by_one_owner_at_a_time(opener: Opener, tmp_path: Path) -> None:
    """What two servers sharing the store (here: two store objects on its data) go by."""
    one, two = opener(), opener()
    assert one.claim("s1", "server-a", ttl=60)
    assert one.claim("s1", "server-a", ttl=60)  # renewed by its owner
    assert not two.claim("s1", "server-b", ttl=60)
    assert two.claim("s2", "server-b", ttl=60)  # other sessions are free
    two.release("s1", "server-b")  # not its lease: nothing happens
    assert not two.claim("s1", "server-b", ttl=60)
    one.release("s1", "server-a")
    assert two.claim("s1", "server-b", ttl=60)
    assert not one.claim("s1", "server-a", ttl=60)


def test_an_expired_lease_can_be_taken_over(opener: Opener) -> None:
    """A server that died mid-turn holds its sessions only until its lease runs out."""
    import time

    one, two = opener(), opener()
    assert one.claim("s1", "crashed", ttl=0.2)
    assert not two.claim("s1", "alive", ttl=60)
    time.sleep(0.3)
    assert two.claim("s1", "alive", ttl=60)
    assert not one.claim("s1", "crashed", ttl=60)


def test_deleting_a_session_ends_its_lease(store: SessionStore, tmp_path: Path) -> None:
    session = Session.create(root=tmp_path / "ws", store=store)
    assert store.claim(session.id, "server-a", ttl=60)
    assert store.delete(session.id)
    assert store.claim(session.id, "server-b", ttl=60)
