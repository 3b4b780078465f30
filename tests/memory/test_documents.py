"""DocumentIndex on real workspaces: passages, ranking, incremental updates, what is skipped."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from loopwright.memory import DocumentIndex, split_passages
from loopwright.memory.documents import INDEX_PATH
from loopwright.memory.vectors import VectorTable

from .conftest import ConceptEmbedder

TOPICS = (
    "billing invoices payments refunds currency",
    "authentication login passwords tokens sessions",
    "caching redis eviction latency memory",
    "logging metrics tracing dashboards alerts",
    "database migrations schema indexes queries",
    "frontend components styling layout accessibility",
    "testing fixtures coverage mocks integration",
    "deployment containers kubernetes rollout staging",
)
FILLER = (
    "This section describes how the service behaves under normal load and what the team "
    "agreed on during the last planning meeting."
)


def age_every_file(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            os.utime(path, (1_600_000_000, 1_600_000_000))


def write(root: Path, path: str, text: str) -> Path:
    target = root / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    return target


def make_workspace(root: Path, files: int = 120, seed: int = 3) -> None:
    """Many markdown and Python files on overlapping topics, each several passages long."""
    rng = random.Random(seed)
    for n in range(files):
        topic = rng.choice(TOPICS).split()
        sections = []
        for s in range(4):
            words = " ".join(rng.choice(topic) for _ in range(12))
            sections.append(f"## Part {s}\n\n{FILLER} {words}.\n\n{FILLER}\n")
        if n % 3:
            write(root, f"docs/area{n % 7}/note{n}.md", f"# Note {n}\n\n" + "\n".join(sections))
        else:
            body = "\n\n".join(
                f"def handler_{s}(request):\n    # {' '.join(rng.sample(topic, 3))}\n"
                f"    return process(request, '{FILLER}')"
                for s in range(8)
            )
            write(root, f"src/module{n}.py", body + "\n")


NEEDLE = (
    "## Rotating the signing key\n\n"
    "To rotate the JWT signing key, run `vault write transit/keys/jwt/rotate`, then restart the "
    "auth gateway so it picks up the new key version. Tokens signed with the old key stay valid "
    "for 24 hours.\n"
)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    make_workspace(root)
    write(root, "docs/security/keys.md", f"# Keys\n\n{FILLER}\n\n{NEEDLE}\n{FILLER}\n")
    return root


async def test_the_right_passage_comes_first_in_a_workspace_of_many_files(
    workspace: Path,
) -> None:
    index = DocumentIndex(workspace)
    passages = await index.search("how do I rotate the JWT signing key?")
    best = passages[0]
    assert best.path == "docs/security/keys.md"
    assert "vault write transit/keys/jwt/rotate" in best.text
    lines = (workspace / best.path).read_text().split("\n")
    assert "\n".join(lines[best.start_line - 1 : best.end_line]) == best.text  # exact lines
    assert index.stats.files == 121
    assert index.stats.passages > 121 * 2
    index.close()


async def test_the_index_follows_changes(workspace: Path) -> None:
    index = DocumentIndex(workspace)
    assert (await index.search("signing key"))[0].path == "docs/security/keys.md"
    first = index.stats
    assert first.added == 121

    # the same size, written right after indexing: found by content, not by size or mtime
    keys = workspace / "docs/security/keys.md"
    keys.write_text(keys.read_text().replace("signing key", "sealing key"))
    passages = await index.search("sealing key")
    assert passages[0].path == "docs/security/keys.md"
    assert index.stats.updated == 1
    assert index.stats.added == 0
    assert not any("signing key" in p.text for p in await index.search("signing key"))

    write(workspace, "docs/new/runbook.md", "# Runbook\n\nPage the on-call zookeeper first.\n")
    assert (await index.search("zookeeper"))[0].path == "docs/new/runbook.md"
    assert index.stats.added == 1

    keys.unlink()
    assert all(p.path != "docs/security/keys.md" for p in await index.search("sealing key"))
    assert index.stats.removed == 1
    index.close()


async def test_an_unchanged_workspace_is_not_read_again(workspace: Path) -> None:
    index = DocumentIndex(workspace)
    await index.refresh()
    age_every_file(workspace)  # files written long ago are trusted by size and time
    await index.refresh()  # notes the new times (content unchanged: nothing re-indexed)
    assert (index.stats.added, index.stats.updated) == (0, 0)
    index.close()
    again = DocumentIndex(workspace)  # another session, another process: the same file
    stats = await again.refresh()
    assert (stats.added, stats.updated, stats.removed) == (0, 0, 0)
    assert stats.files == 121
    again.close()


async def test_what_is_not_indexed(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    outside = tmp_path / "outside"
    write(outside, "secret.md", "the launch code is zebracorn")
    write(root, "visible.md", "zebracorn sightings are rare")
    write(root, ".hidden/notes.md", "zebracorn in a hidden directory")
    write(root, ".env", "ZEBRACORN=1")
    write(root, "node_modules/lib/readme.md", "zebracorn package")
    write(root, "build/out.md", "zebracorn build output")
    write(root, ".gitignore", "build/\n*.log\n")
    write(root, "app.log", "zebracorn log line")
    write(root, ".loopwright/todos.json", '{"zebracorn": true}')
    (root / "image.png").write_bytes(b"\x89PNG\r\n\x1a\nzebracorn")
    (root / "data.dat").write_bytes(b"zebracorn\x00\x01\x02")
    write(root, "big.md", "zebracorn " * 200_000)
    os.symlink(outside / "secret.md", root / "link.md")
    os.symlink(outside, root / "linked-dir")
    os.mkfifo(root / "pipe.md")

    index = DocumentIndex(root)
    passages = await index.search("zebracorn launch code", limit=20)
    assert [p.path for p in passages] == ["visible.md"]
    assert index.stats.skipped == {"binary": 2, "too_large": 1}
    index.close()
    assert (root / INDEX_PATH).is_file()  # the index lives in the workspace's .loopwright/


async def test_a_gitignore_can_bring_hidden_files_back(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    write(root, ".github/workflows/ci.md", "the release pipeline runs on tags")
    write(root, ".gitignore", "!.github/\n")
    index = DocumentIndex(root)
    assert [p.path for p in await index.search("release pipeline")] == [".github/workflows/ci.md"]
    index.close()


async def test_size_caps(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    for n in range(10):
        write(root, f"f{n}.txt", f"common words and the number {n}\n" * 10)
    index = DocumentIndex(root, max_files=4)
    stats = await index.refresh()
    assert stats.files == 4
    assert stats.skipped == {"too_many": 6}
    index.close()
    budget = DocumentIndex(root, index_path=tmp_path / "other.db", max_total_bytes=700)
    stats = await budget.refresh()
    assert stats.files == 2
    assert stats.skipped == {"over_budget": 8}
    budget.close()


async def test_path_filters(workspace: Path) -> None:
    index = DocumentIndex(workspace)
    everywhere = await index.search("process the request in the handler", limit=20)
    assert {p.path.split("/")[0] for p in everywhere} == {"src"}
    passages = await index.search("signing key", path_filter=lambda p: p.startswith("src/"))
    assert passages == []  # the only passage about it is in docs/
    in_docs = await index.search("signing key", path_filter=lambda p: p.startswith("docs/sec"))
    assert [p.path for p in in_docs] == ["docs/security/keys.md"]
    assert await index.search("signing key", path_filter=lambda p: False) == []
    index.close()


async def test_a_damaged_index_is_rebuilt(workspace: Path) -> None:
    (workspace / ".loopwright").mkdir()
    (workspace / INDEX_PATH).write_bytes(b"not a database" * 100)
    index = DocumentIndex(workspace)
    assert (await index.search("signing key"))[0].path == "docs/security/keys.md"
    index.close()


async def test_hybrid_search_with_an_embedding_function(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    write(root, "pets.md", "# Pets\n\nOur office has a kitten called Miso.\n")
    write(root, "money.md", "# Money\n\nEvery invoice is paid within 30 days.\n")
    write(root, "misc.md", "# Misc\n\nThe printer is on the second floor.\n")
    embedder = ConceptEmbedder()
    index = DocumentIndex(root, embedder=embedder)
    passages = await index.search("animal")  # no file has the word
    assert passages[0].path == "pets.md"
    assert index.stats.unembedded == 0
    # an edited file gets new vectors; the old ones go
    write(root, "pets.md", "# Pets\n\nThe office dog is a beagle.\n")
    assert (await index.search("puppy"))[0].path == "pets.md"
    db = index.db
    assert db.execute("SELECT count(*) FROM passage_vectors").fetchone()[0] == 3
    assert any("beagle" in text for text in embedder.texts)
    index.close()


async def test_a_failing_embedder_falls_back_to_keywords(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    write(root, "notes.md", "The backup runs at midnight.\n")
    embedder = ConceptEmbedder()
    embedder.fail = True
    index = DocumentIndex(root, embedder=embedder)
    passages = await index.search("backup")
    assert [p.path for p in passages] == ["notes.md"]
    assert "unreachable" in (index.stats.embedding_error or "")
    assert index.stats.unembedded == 1
    embedder.fail = False
    await index.search("backup")
    assert index.stats.unembedded == 0
    index.close()


def test_passages_keep_exact_line_ranges() -> None:
    text = "\r\n".join(
        ["# Title", "", "intro line", ""]
        + [f"para {n} " + "word " * 30 for n in range(40)]
        + ["", "## Section two", "", "closing", "x" * 5000, "tail"]
    )
    chunks = split_passages(text, 400, headings=True)
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    long_line = lines.index("x" * 5000) + 1
    for chunk in chunks:
        assert chunk.text.strip()
        assert len(chunk.text) <= 800
        if chunk.start_line == long_line:  # cut in pieces, each on the line it comes from
            assert chunk.end_line == long_line
            assert chunk.text == "x" * len(chunk.text)
        else:
            assert chunk.text == "\n".join(lines[chunk.start_line - 1 : chunk.end_line])
    starts = [chunk.start_line for chunk in chunks]
    assert starts == sorted(starts)
    assert chunks[0].start_line == 1
    assert chunks[-1].text == "tail"
    assert sum(len(c.text) for c in chunks if c.start_line == long_line) == 5000
    assert any(c.heading == "Section two" for c in chunks)
    covered = {n for c in chunks for n in range(c.start_line, c.end_line + 1)}
    assert {n for n, line in enumerate(lines, 1) if line.strip()} <= covered  # nothing lost


async def test_a_new_embedder_remakes_the_vectors(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    write(root, "pets.md", "Our office has a kitten called Miso.\n")
    write(root, "money.md", "Every invoice is paid within 30 days.\n")
    first = DocumentIndex(root, embedder=ConceptEmbedder(32, "model-a"))
    await first.refresh()
    first.close()
    second = DocumentIndex(root, embedder=ConceptEmbedder(16, "model-b"))
    assert (await second.search("animal"))[0].path == "pets.md"
    assert VectorTable("passage_vectors").made_by(second.db) == ("model-b", 16)
    assert second.stats.unembedded == 0
    second.close()
