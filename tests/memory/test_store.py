"""MemoryBank on real SQLite files: ranking, scopes, dedupe, forget, persistence, vectors."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from loopwright.memory import MemoryBank, default_memory_path, sqlite_vec_available
from loopwright.memory.vectors import VectorTable, connect

from .conftest import AsyncConceptEmbedder, ConceptEmbedder
from .corpus import TARGETS, memories
from .test_fts import HOSTILE

SCOPE = "user:team"


@pytest.fixture
async def bank(tmp_path: Path) -> MemoryBank:
    return MemoryBank(tmp_path / "memory.db")


async def fill(bank: MemoryBank, texts: list[str], scope: str = SCOPE) -> None:
    for text in texts:
        assert (await bank.remember(text, scope=scope)).created, text


def rows(db_path: Path, sql: str, *params: object) -> list[tuple[object, ...]]:
    db = connect(db_path, vectors=True)
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()


async def test_recall_ranks_the_relevant_memory_first_among_1000() -> None:
    bank = MemoryBank()  # the default file in this test's LOOPWRIGHT_HOME
    texts = memories(1000)
    await fill(bank, texts)
    assert await bank.count(scope=SCOPE) == 1000
    misses = []
    for target in TARGETS:
        hits = await bank.recall(target.query, scope=SCOPE, limit=3)
        if not hits or hits[0].memory.text != target.text:
            misses.append((target.query, [hit.memory.text for hit in hits]))
    assert not misses, misses
    bank.close()


async def test_a_memory_keeps_its_fields(bank: MemoryBank) -> None:
    result = await bank.remember(
        "  Ada takes her coffee black.  ",
        scope="user:ada",
        kind="Preference",
        tags=["Drinks", "drinks", " morning  routine "],
        session_id="s-1",
    )
    memory = result.memory
    assert result.created
    assert memory.text == "Ada takes her coffee black."
    assert (memory.kind, memory.tags, memory.session_id) == (
        "preference",
        ("drinks", "morning routine"),
        "s-1",
    )
    assert memory.created_at == memory.updated_at > 0
    assert await bank.get(memory.id, scope="user:ada") == memory
    assert (await bank.recall("coffee", scope="user:ada"))[0].memory == memory


async def test_scopes_never_leak(bank: MemoryBank) -> None:
    ada = await bank.remember("The wifi password is hunter2.", scope="user:ada")
    bob = await bank.remember("The wifi password is hunter2.", scope="user:bob")
    assert ada.created  # no dedupe across scopes
    assert bob.created
    assert ada.memory.id != bob.memory.id
    await bank.remember("Bob's locker code is 4471.", scope="user:bob")

    assert [h.memory.id for h in await bank.recall("wifi password", scope="user:ada")] == [
        ada.memory.id
    ]
    assert await bank.recall("locker code", scope="user:ada") == []
    assert await bank.recall("locker code", scope="project:x") == []
    assert await bank.get(bob.memory.id, scope="user:ada") is None
    assert [m.id for m in await bank.recent(scope="user:ada")] == [ada.memory.id]
    assert await bank.count(scope="user:bob") == 2
    # forgetting another scope's id does nothing
    assert await bank.forget([bob.memory.id], scope="user:ada") == []
    assert await bank.count(scope="user:bob") == 2
    assert await bank.clear(scope="user:bob") == 2
    assert await bank.scopes() == ["user:ada"]


async def test_near_identical_memories_are_merged(bank: MemoryBank) -> None:
    first = await bank.remember("The user's timezone is CET.", scope="u", tags=["time"])
    same = await bank.remember("the user's   timezone is CET", scope="u")
    reworded = await bank.remember("User timezone was CET!", scope="u", tags=["settings"])
    assert not same.created
    assert same.memory.id == first.memory.id
    assert same.previous_text is None  # only case, spacing and punctuation differed...
    assert same.memory.text == "The user's timezone is CET."  # ...so the text stays
    assert not reworded.created
    assert reworded.memory.id == first.memory.id
    assert reworded.previous_text == "The user's timezone is CET."
    assert reworded.memory.text == "User timezone was CET!"  # the newer wording wins
    assert reworded.memory.tags == ("time", "settings")
    assert reworded.memory.created_at == first.memory.created_at
    assert reworded.memory.updated_at >= first.memory.updated_at
    assert await bank.count(scope="u") == 1
    assert [h.memory.text for h in await bank.recall("timezone", scope="u")] == [
        "User timezone was CET!"
    ]


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Katherine's favourite language is Zig.", "Joan's favourite language is Zig."),
        ("Room 5 is booked.", "Room 6 is booked."),
        ("Ada likes tea.", "Ada does not like tea."),
        ("Ada prefers tea over coffee.", "Ada prefers coffee over tea."),
    ],
)
async def test_different_facts_are_not_merged(bank: MemoryBank, a: str, b: str) -> None:
    assert (await bank.remember(a, scope="u")).created
    assert (await bank.remember(b, scope="u")).created
    assert await bank.count(scope="u") == 2


async def test_dedupe_can_be_turned_off(tmp_path: Path) -> None:
    bank = MemoryBank(tmp_path / "m.db", dedupe=False)
    await bank.remember("Standup is at 9.", scope="u")
    assert (await bank.remember("Standup is at 9.", scope="u")).created
    assert await bank.count(scope="u") == 2


async def test_stemming_prefixes_and_accents(bank: MemoryBank) -> None:
    await fill(
        bank,
        [
            "She runs marathons every spring.",
            "The staging server uses PostgreSQL 15.",
            "Zoë's café opens at 8.",
        ],
        scope="u",
    )

    async def first(query: str) -> str:
        return (await bank.recall(query, scope="u"))[0].memory.text

    assert await first("running") == "She runs marathons every spring."
    assert await first("postgres") == "The staging server uses PostgreSQL 15."
    assert await first("zoe cafe") == "Zoë's café opens at 8."


async def test_any_query_text_is_safe(bank: MemoryBank) -> None:
    for text in HOSTILE[:8]:
        await bank.remember(f"note with {text}", scope="u")
    for query in HOSTILE:
        hits = await bank.recall(query, scope="u")
        assert all(hit.memory.scope == "u" for hit in hits)
    # a column filter would look for "secret" in the (empty) tags; as words, it is found
    hits = await bank.recall("tags:secret", scope="u")
    assert [hit.memory.text for hit in hits] == ["note with text:secret"]


async def test_recall_narrows_by_kind_and_tags(bank: MemoryBank) -> None:
    await bank.remember("Deploys happen on Tuesday.", scope="u", kind="fact", tags=["ops"])
    await bank.remember("Always ask before deploys.", scope="u", kind="instruction")
    await bank.remember("Deploys of the API need two reviews.", scope="u", tags=["api", "ops"])
    assert [h.memory.text for h in await bank.recall("deploys", scope="u", kind="instruction")] == [
        "Always ask before deploys."
    ]
    tagged = await bank.recall("deploys", scope="u", tags=["API"])
    assert [h.memory.text for h in tagged] == ["Deploys of the API need two reviews."]
    assert len(await bank.recall("deploys", scope="u", tags=["ops"])) == 2
    assert [m.kind for m in await bank.recent(scope="u", kind="fact")] == ["fact"]


async def test_forget_deletes_the_row_its_text_index_and_its_vector(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    bank = MemoryBank(path, embedder=ConceptEmbedder())
    keep = await bank.remember("Alan has a cat named Turing.", scope="u")
    gone = await bank.remember("The zebracorn password is swordfish.", scope="u")
    gone_id = gone.memory.id
    assert rows(path, "SELECT rowid FROM memory_vectors WHERE rowid = ?", gone_id)

    assert await bank.forget([gone_id, 999], scope="u") == [gone_id]
    recalled = [hit.memory.id for hit in await bank.recall("zebracorn password", scope="u")]
    assert gone_id not in recalled
    assert await bank.get(gone_id, scope="u") is None
    bank.close()

    assert rows(path, "SELECT id FROM memories WHERE id = ?", gone_id) == []
    assert rows(path, "SELECT rowid FROM memories_fts WHERE rowid = ?", gone_id) == []
    assert rows(path, "SELECT rowid FROM memory_vectors WHERE rowid = ?", gone_id) == []
    assert rows(path, "SELECT rowid FROM memory_vectors") == [(keep.memory.id,)]
    db = sqlite3.connect(path)
    db.execute("CREATE VIRTUAL TABLE temp.vocab USING fts5vocab(main, memories_fts, 'row')")
    assert db.execute("SELECT term FROM temp.vocab WHERE term LIKE 'zebra%'").fetchall() == []
    assert db.execute("SELECT term FROM temp.vocab WHERE term = 'ture'").fetchall()  # "turing"
    db.close()

    # a bank opened later without an embedder still deletes vectors
    again = MemoryBank(path)
    assert await again.forget([keep.memory.id], scope="u") == [keep.memory.id]
    assert rows(path, "SELECT count(*) FROM memory_vectors") == [(0,)]
    again.close()


async def test_memories_persist_across_banks(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    async with MemoryBank(path) as first:
        stored = await first.remember("The VPN config lives in ~/vpn/office.ovpn.", scope="p")
    async with MemoryBank(path) as second:
        hits = await second.recall("where is the vpn config", scope="p")
        assert [hit.memory for hit in hits] == [stored.memory]


def test_the_default_file_is_in_the_loopwright_home(loopwright_home: Path) -> None:
    bank = MemoryBank()
    assert bank.path == default_memory_path() == loopwright_home / "memory.db"
    assert bank.path.is_file()
    bank.close()


async def test_concurrent_use_from_tasks_and_threads(bank: MemoryBank) -> None:
    async def task_writes(n: int) -> None:
        await bank.remember(f"Task fact number {n} about llamas.", scope="u")

    def thread_writes(n: int) -> None:
        asyncio.run(bank.remember(f"Thread fact number {n} about alpacas.", scope="u"))

    threads = [threading.Thread(target=thread_writes, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    await asyncio.gather(*(task_writes(n) for n in range(40)))
    await asyncio.gather(*(bank.recall("llamas", scope="u") for _ in range(10)))
    for thread in threads:
        thread.join()
    assert await bank.count(scope="u") == 60
    assert len(await bank.recall("alpacas", scope="u", limit=100)) == 20


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda b: b.remember("   ", scope="u"), "needs some text"),
        (lambda b: b.remember("x" * 5000, scope="u"), "Split it"),
        (lambda b: b.remember("fact", scope=""), "non-empty string"),
        (lambda b: b.remember("fact", scope="u", tags=["x" * 60]), "too long"),
        (lambda b: b.remember("fact", scope="u", kind=" "), "one short word"),
        (lambda b: b.recall("fact", scope="u", limit=0), "from 1 to 100"),
        (lambda b: b.recent(scope="u", limit=1000), "from 1 to 100"),
    ],
)
async def test_bad_input_is_refused_clearly(bank: MemoryBank, call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        await call(bank)  # type: ignore[operator]
    assert await bank.count() == 0


def test_a_file_that_is_not_a_database_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "memory.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(sqlite3.DatabaseError, match="move it away"):
        MemoryBank(path)
    assert path.read_bytes() == b"this is not sqlite" * 100  # nothing lost


# --- vectors -----------------------------------------------------------------------------------


def test_sqlite_vec_loads_in_this_python() -> None:
    assert sqlite_vec_available()


def test_vector_table_partitions_and_deletes(tmp_path: Path) -> None:
    db = connect(tmp_path / "v.db", vectors=True)
    table = VectorTable("vectors", partitioned=True)
    assert table.ensure(db, "model-a", 3)
    assert not table.ensure(db, "model-a", 3)  # kept
    table.insert(db, [(1, [1, 0, 0], "a"), (2, [0.9, 0.1, 0], "b"), (3, [0, 1, 0], "a")])
    assert [rowid for rowid, _ in table.nearest(db, [1, 0, 0], 5, partition="a")] == [1, 3]
    assert [rowid for rowid, _ in table.nearest(db, [1, 0, 0], 5, partition="b")] == [2]
    table.insert(db, [(3, [1, 0, 0], "a")])  # replaced, not duplicated
    assert table.count(db) == 3
    table.delete(db, [1, 3])
    assert table.nearest(db, [1, 0, 0], 5, partition="a") == []
    assert table.ensure(db, "model-b", 2)  # another model: a new, empty table
    assert table.count(db) == 0
    assert table.dimensions(db) == 2
    db.close()


def test_vector_table_match_fits_the_embedder_once(tmp_path: Path) -> None:
    db = connect(tmp_path / "m.db", vectors=True)
    table = VectorTable("vectors")
    assert not table.usable(db, 3)
    assert table.match(db, "model-a", 3)  # created: every row must be embedded
    assert table.usable(db, 3)
    assert not table.usable(db, 4)
    assert not table.match(db, "model-a", 3)  # already fits
    assert table.match(db, "model-b", 3)  # another embedder: created anew
    assert table.made_by(db) == ("model-b", 3)
    other = VectorTable("vectors")  # another store on the same file finds it fitting
    assert not other.match(db, "model-b", 3)
    assert other.usable(db, 3)
    db.close()


async def test_hybrid_recall_finds_what_the_words_do_not_say(tmp_path: Path) -> None:
    embedder = ConceptEmbedder()
    bank = MemoryBank(tmp_path / "m.db", embedder=embedder)
    await fill(bank, memories(300))
    await bank.remember("Ivan keeps a puppy called Waffles at the office.", scope=SCOPE)
    hits = await bank.recall("Which pet does Ivan own?", scope=SCOPE)
    assert hits[0].memory.text == "Ivan keeps a puppy called Waffles at the office."
    assert rows(tmp_path / "m.db", "SELECT count(*) FROM memory_vectors") == [(301,)]
    # exact words still win where they exist
    for target in TARGETS[:3]:
        if target.text in memories(300):
            assert (await bank.recall(target.query, scope=SCOPE))[0].memory.text == target.text
    bank.close()


async def test_async_embedders_work_too(tmp_path: Path) -> None:
    embedder = AsyncConceptEmbedder()
    bank = MemoryBank(tmp_path / "m.db", embedder=embedder)
    await bank.remember("Sophie has a parrot named Pixel.", scope="u")
    await bank.remember("Sophie's invoice is due Friday.", scope="u")
    hits = await bank.recall("animal", scope="u")  # no memory has the word
    assert hits[0].memory.text == "Sophie has a parrot named Pixel."
    assert embedder.calls == 3


async def test_sync_embedders_run_off_the_event_loop(tmp_path: Path) -> None:
    embedder = ConceptEmbedder()
    bank = MemoryBank(tmp_path / "m.db", embedder=embedder)
    await bank.remember("A fact.", scope="u")
    assert threading.get_ident() not in embedder.threads


async def test_a_failing_embedder_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    embedder = ConceptEmbedder()
    bank = MemoryBank(path, embedder=embedder)
    await bank.remember("Hedy has a dog named Luna.", scope="u")
    embedder.fail = True
    result = await bank.remember("Hedy's invoice INV-7 is due in May.", scope="u")
    assert result.created
    assert "unreachable" in (result.vector_error or "")
    assert [h.memory.id for h in await bank.recall("invoice INV-7", scope="u")] == [
        result.memory.id
    ]  # full-text recall works meanwhile
    assert rows(path, "SELECT count(*) FROM memory_vectors") == [(1,)]
    embedder.fail = False
    await bank.recall("anything", scope="u")  # embeds what was left behind
    assert rows(path, "SELECT count(*) FROM memory_vectors") == [(2,)]


async def test_a_new_embedder_re_embeds_everything(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    async with MemoryBank(path, embedder=ConceptEmbedder(32, "model-a")) as bank:
        await fill(bank, memories(20), scope="u")
    async with MemoryBank(path, embedder=ConceptEmbedder(16, "model-b")) as bank:
        await bank.recall("Falcon database", scope="u")  # noticed here: all embedded again
        assert await bank.embed_pending() == 0


async def test_embed_pending_embeds_everything_at_once(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    async with MemoryBank(path, embedder=ConceptEmbedder(32, "model-a")) as bank:
        await fill(bank, memories(20), scope="u")
    async with MemoryBank(path, embedder=ConceptEmbedder(16, "model-b")) as bank:
        assert await bank.embed_pending() == 20
        assert await bank.embed_pending() == 0
        table = VectorTable("memory_vectors", partitioned=True)
        db = connect(path, vectors=True)
        assert table.made_by(db) == ("model-b", 16)
        assert table.count(db) == 20
        db.close()
