"""Grep on real trees in tmp_path, with real ripgrep and with the pure-Python fallback.

Most tests run once per backend (the ``backend`` fixture); the parity tests run the same
inputs through both on the same tree and require identical output.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from loopwright.tools import GrepTool, ToolRegistry, ToolResult
from loopwright.tools import grep as grep_module
from loopwright.tools.files import MAX_LINE_CHARS
from loopwright.tools.grep import BACKEND_ENV

HAVE_RG = shutil.which("rg") is not None
needs_rg = pytest.mark.skipif(not HAVE_RG, reason="ripgrep (rg) is not installed")
BACKENDS = [pytest.param("ripgrep", marks=needs_rg), "python"]


def text(result: ToolResult) -> str:
    content = result["content"]
    assert isinstance(content, str), content
    return content


def make(root: Path, files: dict[str, str | bytes]) -> None:
    """Create files; the n-th is the n-th oldest (mtime 1000 + n seconds)."""
    for age, (name, content) in enumerate(files.items()):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        os.utime(path, (1000 + age, 1000 + age))


MAIN_PY = """\
import sys


def main():
    # TODO: parse the arguments
    verbose = "-v" in sys.argv
    return verbose


class Foo:
    pass
"""

TREE: dict[str, str | bytes] = {
    ".gitignore": "build/\n*.log\n!keep.log\nnode_modules/\n",
    "README.md": "# Demo\n\nTODO: write the docs\nfoo and FOO and Foo\n",
    "app.log": "TODO in an ignored log\n",
    "keep.log": "TODO in a kept log\n",
    "build/gen.py": "TODO generated\n",
    "src/main.py": MAIN_PY,
    "src/util.py": "def helper():\n    return 'todo later'\n",
    "src/.hidden.py": "TODO hidden file\n",
    "src/node_modules/dep/index.js": "TODO in a dependency\n",
    "src/notes.txt": "first\nsecond TODO\nthird\nfourth\nfifth\nsixth TODO\nseventh\n",
    "docs/guide.md": "Guide\n-v shows more\nTODO: examples\n",
    "docs/.ignore": "draft.md\n",
    "docs/draft.md": "TODO draft\n",
    ".git/config": "TODO in git internals\n",
    ".env": "TODO=secret\n",
    "data/blob.bin": b"TODO\x00\x01\x02binary",
    "lib/app.rs": "fn main() {\n    todo!()\n}\n",
    "crlf.txt": b"TODO one\r\nTODO two\r\n",
    "sub/.rgignore": "*.txt\n",
    "sub/skip.txt": "TODO skipped by rgignore\n",
    "sub/take.md": "TODO taken\n",
}


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    return ws


@pytest.fixture
def tree(workspace: Path) -> Path:
    make(workspace, TREE)
    return workspace


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def registry(workspace: Path, backend: str) -> ToolRegistry:
    registry = ToolRegistry(workspace)
    tool = registry.register(GrepTool(workspace, backend=backend))  # type: ignore[arg-type]
    assert isinstance(tool, GrepTool)
    assert tool.backend == backend
    return registry


async def grep(registry: ToolRegistry, **input: Any) -> str:
    result = await registry.execute("Grep", input)
    assert result["is_error"] is False, result["content"]
    return text(result)


# --- parity: the same inputs, the same tree, both backends ------------------------------

PARITY_CASES: list[dict[str, Any]] = [
    {"pattern": "TODO"},
    {"pattern": "TODO", "output_mode": "content"},
    {"pattern": "TODO", "output_mode": "count"},
    {"pattern": "todo", "-i": True, "output_mode": "content"},
    {"pattern": "todo", "-i": True, "output_mode": "count"},
    {"pattern": "TODO", "output_mode": "content", "-C": 1},
    {"pattern": "TODO", "output_mode": "content", "-A": 2},
    {"pattern": "TODO", "output_mode": "content", "-B": 1, "-A": 0, "-C": 3},
    {"pattern": "TODO", "output_mode": "content", "-n": False},
    {"pattern": "TODO", "glob": "*.py"},
    {"pattern": "TODO", "glob": "*.md *.txt", "output_mode": "count"},
    {"pattern": "TODO", "glob": "*.{md,rs}"},
    {"pattern": "TODO", "glob": "!src/**"},
    {"pattern": "TODO", "glob": "src/**/*.txt", "output_mode": "content"},
    {"pattern": "TODO", "glob": "*.log"},
    {"pattern": "TODO", "type": "py"},
    {"pattern": "TODO", "type": "md", "output_mode": "count"},
    {"pattern": "todo", "type": "rust", "output_mode": "content"},
    {"pattern": "TODO", "path": "src"},
    {"pattern": "TODO", "path": "src", "output_mode": "content"},
    {"pattern": "TODO", "path": "src/notes.txt", "output_mode": "content", "-B": 1},
    {"pattern": "TODO", "path": "docs"},
    {"pattern": "TODO", "path": "data/blob.bin"},
    {"pattern": "TODO", "path": "data/blob.bin", "output_mode": "count"},
    {"pattern": "TODO", "path": "data/blob.bin", "output_mode": "content"},
    {"pattern": r"def main\(\):\n\s+# TODO", "multiline": True, "output_mode": "content"},
    {"pattern": r"def main\(\):\n\s+# TODO", "multiline": True, "output_mode": "count"},
    {"pattern": r"class Foo:.+pass", "multiline": True},
    {"pattern": "-v", "output_mode": "content"},
    {"pattern": "--help"},
    {"pattern": "zzz-no-such-text"},
    {"pattern": r"^TODO", "output_mode": "content"},
    {"pattern": r"two$", "output_mode": "content"},
    {"pattern": r"\bmain\b", "output_mode": "count"},
    {"pattern": "TODO", "output_mode": "content", "head_limit": 3},
    {"pattern": "TODO", "head_limit": 2},
    {"pattern": "TODO", "output_mode": "count", "head_limit": 1},
]


def case_id(case: dict[str, Any]) -> str:
    return ",".join(f"{key}={value!r}" for key, value in case.items())


@needs_rg
@pytest.mark.parametrize("case", PARITY_CASES, ids=[case_id(c) for c in PARITY_CASES])
async def test_both_backends_give_identical_results(tree: Path, case: dict[str, Any]) -> None:
    rg = await GrepTool(tree, backend="ripgrep").execute(dict(case))
    python = await GrepTool(tree, backend="python").execute(dict(case))
    assert rg["is_error"] is False, rg["content"]
    assert python["is_error"] is False, python["content"]
    assert text(python) == text(rg)
    assert ".git/" not in text(rg)  # a hidden directory is never entered here
    assert "node_modules" not in text(rg)  # the root .gitignore applies below src/ too
    assert str(tree) not in text(rg)  # paths are relative to the workspace


ERROR_CASES: list[tuple[dict[str, Any], str]] = [
    ({"pattern": "(unclosed"}, "Grep pattern '(unclosed' is not a valid regular expression"),
    ({"pattern": "a[b"}, "Grep pattern 'a[b' is not a valid regular expression"),
    ({"pattern": "one\ntwo"}, "contains a line break, which can only match with multiline"),
    ({"pattern": r"one\ntwo"}, "contains a line break, which can only match with multiline"),
    ({"pattern": "x", "type": "nosuchtype"}, "Unknown file type 'nosuchtype'"),
    ({"pattern": "x", "glob": "[abc"}, "Invalid glob '[abc': unclosed character class"),
    ({"pattern": "x", "glob": "{a,{b}}"}, "nested alternate groups are not allowed"),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("case", "message"), ERROR_CASES, ids=[c[1][:40] for c in ERROR_CASES])
async def test_errors_are_the_same_on_both_backends(
    tree: Path, backend: str, case: dict[str, Any], message: str
) -> None:
    result = await GrepTool(tree, backend=backend).execute(dict(case))  # type: ignore[arg-type]
    assert result["is_error"] is True
    assert message in text(result)
    assert "\n" not in text(result).replace(case["pattern"], "")  # one sentence, one line


@needs_rg
async def test_parity_on_tricky_ignore_rules(workspace: Path) -> None:
    make(
        workspace,
        {
            ".gitignore": "*.log\n/root-only.txt\nlogs/\n!important.log\n",
            "root-only.txt": "hit",
            "a/root-only.txt": "hit",
            "a/x.log": "hit",
            "a/important.log": "hit",
            "logs/today.txt": "hit",
            "a/logs/today.txt": "hit",
            "a/.gitignore": "!x.log\n*.md\n",
            "a/readme.md": "hit",
            "a/b/readme.md": "hit",
            "nested/.git/HEAD": "hit",
            "nested/x.log": "hit",  # a repository root: the outer .gitignore stops here
            ".ignore": "!.keepme\n",
            ".keepme": "hit",
            "w[ei]rd/{dir}/f.txt": "hit",
            "w[ei]rd/.gitignore": "*.skip\n",
            "w[ei]rd/{dir}/g.skip": "hit",
        },
    )
    for path in (None, "a", "a/b", "w[ei]rd/{dir}", "nested", "logs"):
        for extra in ({}, {"glob": "*.log"}, {"glob": "!a"}, {"type": "md"}):
            case: dict[str, Any] = {"pattern": "hit", **extra}
            if path is not None:
                case["path"] = path
            rg = await GrepTool(workspace, backend="ripgrep").execute(dict(case))
            python = await GrepTool(workspace, backend="python").execute(dict(case))
            assert (rg["is_error"], text(rg)) == (python["is_error"], text(python)), case


# --- behaviour, on each backend ---------------------------------------------------------


async def test_files_with_matches_is_the_default_newest_first(
    registry: ToolRegistry, tree: Path
) -> None:
    os.utime(tree / "docs/guide.md", (5000, 5000))
    assert (await grep(registry, pattern="TODO")).split("\n") == [
        "Found 7 files",
        "docs/guide.md",  # touched last
        "sub/take.md",
        "crlf.txt",
        "src/notes.txt",
        "src/main.py",
        "keep.log",
        "README.md",
    ]


async def test_what_is_searched_by_default(registry: ToolRegistry, tree: Path) -> None:
    found = set((await grep(registry, pattern="TODO")).split("\n")[1:])
    assert found == {
        "README.md",
        "keep.log",  # *.log is ignored but !keep.log brings it back
        "src/main.py",
        "src/notes.txt",
        "docs/guide.md",
        "crlf.txt",
        "sub/take.md",
    }
    # not: build/ and app.log (.gitignore), src/node_modules (the root .gitignore),
    # docs/draft.md (.ignore), sub/skip.txt (.rgignore), .env, src/.hidden.py and .git/
    # (hidden), data/blob.bin (binary)


async def test_content_mode_shows_path_line_and_text(registry: ToolRegistry, tree: Path) -> None:
    output = await grep(registry, pattern="TODO", path="src", output_mode="content")
    assert output.split("\n") == [
        "src/main.py:5:    # TODO: parse the arguments",
        "src/notes.txt:2:second TODO",
        "src/notes.txt:6:sixth TODO",
    ]


async def test_content_without_line_numbers(registry: ToolRegistry, tree: Path) -> None:
    options = {"-n": False}
    output = await grep(registry, pattern="TODO", path="src", output_mode="content", **options)
    assert output.split("\n") == [
        "src/main.py:    # TODO: parse the arguments",
        "src/notes.txt:second TODO",
        "src/notes.txt:sixth TODO",
    ]


async def test_context_lines_and_group_separators(registry: ToolRegistry, tree: Path) -> None:
    output = await grep(
        registry, pattern="TODO", path="src/notes.txt", output_mode="content", **{"-C": 1}
    )
    assert output.split("\n") == [
        "src/notes.txt-1-first",
        "src/notes.txt:2:second TODO",
        "src/notes.txt-3-third",
        "--",
        "src/notes.txt-5-fifth",
        "src/notes.txt:6:sixth TODO",
        "src/notes.txt-7-seventh",
    ]
    merged = await grep(
        registry, pattern="TODO", path="src/notes.txt", output_mode="content", **{"-A": 3}
    )
    assert "--" not in merged.split("\n")  # the two groups touch: one block
    before = await grep(
        registry,
        pattern="sixth",
        path="src/notes.txt",
        output_mode="content",
        **{"-B": 2, "-C": 9},  # -B wins over -C for the lines before
    )
    assert before.split("\n")[:3] == [
        "src/notes.txt-4-fourth",
        "src/notes.txt-5-fifth",
        "src/notes.txt:6:sixth TODO",
    ]
    assert before.split("\n")[-1] == "src/notes.txt-7-seventh"


async def test_count_mode(registry: ToolRegistry, tree: Path) -> None:
    output = await grep(registry, pattern="TODO", output_mode="count", path="src")
    assert output.split("\n") == [
        "Found 3 matching lines in 2 files",
        "src/main.py:1",
        "src/notes.txt:2",
    ]


async def test_case_insensitive(registry: ToolRegistry, tree: Path) -> None:
    sensitive = await grep(registry, pattern="foo", path="README.md", output_mode="count")
    assert sensitive.split("\n")[1] == "README.md:1"
    output = await grep(registry, pattern="todo", path="src", **{"-i": True})
    assert output.split("\n") == ["Found 3 files", "src/notes.txt", "src/util.py", "src/main.py"]


async def test_glob_filters(registry: ToolRegistry, tree: Path) -> None:
    # a glob that names a file overrides hidden and ignore rules, as in ripgrep
    assert (await grep(registry, pattern="TODO", glob="*.py")).split("\n") == [
        "Found 2 files",
        "src/.hidden.py",
        "src/main.py",
    ]
    several = set((await grep(registry, pattern="TODO", glob="*.md,*.rs")).split("\n")[1:])
    assert several == {"README.md", "docs/guide.md", "docs/draft.md", "sub/take.md"}
    excluded = set((await grep(registry, pattern="TODO", glob="!src/** !docs")).split("\n")[1:])
    assert excluded == {"README.md", "keep.log", "crlf.txt", "sub/take.md"}


async def test_type_filter(registry: ToolRegistry, tree: Path) -> None:
    output = await grep(registry, pattern="todo", type="rust", output_mode="content")
    assert output == "lib/app.rs:2:    todo!()"
    result = await registry.execute("Grep", {"pattern": "x", "type": "cobol-ish"})
    assert result["is_error"] is True
    assert "Unknown file type 'cobol-ish'" in text(result)


async def test_multiline(registry: ToolRegistry, tree: Path) -> None:
    output = await grep(
        registry,
        pattern=r"def main\(\):\n\s+# TODO",
        multiline=True,
        output_mode="content",
    )
    assert output.split("\n") == [
        "src/main.py:4:def main():",
        "src/main.py:5:    # TODO: parse the arguments",
    ]
    dotall = await grep(registry, pattern="class Foo:.+pass", multiline=True)
    assert dotall == "Found 1 file\nsrc/main.py"
    single_line = await grep(registry, pattern="class Foo:.+pass")
    assert single_line == "No matches found"


async def test_a_pattern_starting_with_a_dash_is_a_pattern(
    registry: ToolRegistry, tree: Path
) -> None:
    output = await grep(registry, pattern="-v", output_mode="content")
    assert output.split("\n") == [
        "docs/guide.md:2:-v shows more",
        'src/main.py:6:    verbose = "-v" in sys.argv',
    ]
    assert await grep(registry, pattern="--files") == "No matches found"


async def test_shell_syntax_in_a_pattern_is_just_text(
    registry: ToolRegistry, workspace: Path
) -> None:
    make(workspace, {"a.txt": "price: $(cat x); `id` | rm\n"})
    output = await grep(registry, pattern="$(touch pwned)", output_mode="content")
    assert output == "No matches found"
    output = await grep(registry, pattern=r"\$\(cat x\); `id` \| rm", output_mode="content")
    assert output == "a.txt:1:price: $(cat x); `id` | rm"
    assert not (workspace / "pwned").exists()


async def test_no_matches_is_not_an_error(registry: ToolRegistry, tree: Path) -> None:
    for mode in ("files_with_matches", "content", "count"):
        result = await registry.execute("Grep", {"pattern": "zzz-nothing", "output_mode": mode})
        assert result["is_error"] is False
        assert result["content"] == "No matches found"


async def test_a_bad_regex_is_an_error_with_the_reason(registry: ToolRegistry, tree: Path) -> None:
    result = await registry.execute("Grep", {"pattern": "foo(bar"})
    assert result["is_error"] is True
    message = text(result)
    assert message.startswith("Grep pattern 'foo(bar' is not a valid regular expression (")
    assert "unclosed group" in message or "missing )" in message
    assert "escape characters" in message


async def test_head_limit_caps_the_output_with_a_note(registry: ToolRegistry, tree: Path) -> None:
    output = await grep(registry, pattern="TODO", output_mode="content", head_limit=2)
    body, note = output.split("\n\n")
    assert len(body.split("\n")) == 2
    assert note.startswith("[Showing the first 2 of 9 lines; set head_limit higher")
    files = await grep(registry, pattern="TODO", head_limit=3)
    body, note = files.split("\n\n")
    assert body.split("\n")[0] == "Found 7 files"
    assert len(body.split("\n")) == 4
    assert "[Showing the 3 most recently modified of 7;" in note


async def test_the_default_head_limit(workspace: Path, backend: str) -> None:
    make(workspace, {"many.txt": "hit\n" * 30})
    tool = GrepTool(workspace, backend=backend, head_limit=10)  # type: ignore[arg-type]
    result = await tool.execute({"pattern": "hit", "output_mode": "content"})
    body, note = text(result).split("\n\n")
    assert body.split("\n") == [f"many.txt:{n}:hit" for n in range(1, 11)]
    assert "[Showing the first 10 of 30 lines" in note


async def test_a_runaway_search_is_stopped_with_a_note(
    registry: ToolRegistry, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make(workspace, {f"big{n}.txt": "hit and more text\n" * 2000 for n in range(20)})
    monkeypatch.setattr(grep_module, "MAX_OUTPUT_BYTES", 10_000)  # 64 MiB normally
    output = await grep(registry, pattern="hit", output_mode="content", head_limit=5)
    first_lines = output.split("\n\n")[0].split("\n")
    assert len(first_lines) == 5  # which files came first is up to ripgrep's threads
    assert all(re.fullmatch(r"big\d+\.txt:\d+:hit and more text", line) for line in first_lines)
    assert "was stopped, so results are incomplete; narrow the pattern" in output


async def test_input_outside_the_schema_is_refused(registry: ToolRegistry, tree: Path) -> None:
    result = await registry.execute("Grep", {"pattern": "x", "output_mode": "lines"})
    assert result["is_error"] is True
    assert "Invalid input for tool 'Grep'" in text(result)
    result = await registry.execute("Grep", {"pattern": "x", "-C": -1})
    assert result["is_error"] is True


async def test_windows_line_endings_are_not_shown(registry: ToolRegistry, tree: Path) -> None:
    output = await grep(registry, pattern="TODO", path="crlf.txt", output_mode="content")
    assert output == "crlf.txt:1:TODO one\ncrlf.txt:2:TODO two"


async def test_long_lines_are_cut(registry: ToolRegistry, workspace: Path) -> None:
    make(workspace, {"wide.txt": "needle " + "x" * (MAX_LINE_CHARS * 2) + "\n"})
    output = await grep(registry, pattern="needle", output_mode="content")
    assert output.startswith("wide.txt:1:needle xxx")
    assert output.endswith(f" [... line cut: {MAX_LINE_CHARS * 2 + 7:,} characters]")
    assert len(output) < MAX_LINE_CHARS + 100


async def test_binary_files_are_skipped_unless_named(registry: ToolRegistry, tree: Path) -> None:
    assert "blob.bin" not in await grep(registry, pattern="TODO", path="data")
    named = await grep(registry, pattern="TODO", path="data/blob.bin", output_mode="content")
    assert named == "data/blob.bin: binary file matches (content not shown)"


async def test_unicode_and_utf16_files(registry: ToolRegistry, workspace: Path) -> None:
    make(
        workspace,
        {
            "u8.txt": "naïve café → 世界\n",
            "u16.txt": "\ufeffneedle in utf-16\n".encode("utf-16-le"),
            "bom.txt": b"\xef\xbb\xbfneedle after a bom\n",
        },
    )
    assert await grep(registry, pattern="caf.", output_mode="content") == (
        "u8.txt:1:naïve café → 世界"
    )
    assert (await grep(registry, pattern="^needle", output_mode="content")).split("\n") == [
        "bom.txt:1:needle after a bom",
        "u16.txt:1:needle in utf-16",
    ]


async def test_a_single_file_path_is_searched_even_if_ignored_or_hidden(
    registry: ToolRegistry, tree: Path
) -> None:
    assert await grep(registry, pattern="TODO", path="app.log") == "Found 1 file\napp.log"
    assert await grep(registry, pattern="TODO", path=".env") == "Found 1 file\n.env"


async def test_symlinks_are_not_followed(
    registry: ToolRegistry, workspace: Path, tmp_path: Path
) -> None:
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text("TODO top secret\n")
    make(workspace, {"inside.txt": "TODO inside\n"})
    (workspace / "escape").symlink_to(tmp_path / "outside")
    (workspace / "leak.txt").symlink_to(tmp_path / "outside" / "secret.txt")
    output = await grep(registry, pattern="TODO", output_mode="content")
    assert output == "inside.txt:1:TODO inside"


# --- the design guide's attacks --------------------------------------------------------


@pytest.mark.parametrize("path", ["../../../etc/passwd", "/etc/passwd", "../../secrets.txt", "/"])
async def test_paths_outside_the_workspace_are_denied(
    registry: ToolRegistry, tree: Path, tmp_path: Path, path: str
) -> None:
    (tmp_path / "secrets.txt").write_text("TODO secret\n")
    result = await registry.execute("Grep", {"pattern": "root|TODO", "path": path})
    assert result["is_error"] is True
    assert text(result).startswith("Access denied")
    assert "root:" not in text(result)


async def test_a_symlink_pointing_outside_is_denied(
    registry: ToolRegistry, workspace: Path, tmp_path: Path
) -> None:
    (tmp_path / "secret.txt").write_text("TODO secret\n")
    (workspace / "link.txt").symlink_to(tmp_path / "secret.txt")
    (workspace / "up").symlink_to(tmp_path)
    for path in ("link.txt", "up", "up/secret.txt"):
        result = await registry.execute(
            "Grep", {"pattern": "TODO", "path": path, "output_mode": "content"}
        )
        assert result["is_error"] is True
        assert text(result).startswith("Access denied")
        assert "TODO secret" not in text(result)


async def test_grep_called_directly_still_validates(
    workspace: Path, tmp_path: Path, backend: str
) -> None:
    (tmp_path / "secret.txt").write_text("TODO secret\n")
    tool = GrepTool(workspace, backend=backend)  # type: ignore[arg-type]
    result = await tool.execute({"pattern": "TODO", "path": str(tmp_path)})
    assert result["is_error"] is True
    assert "Access denied" in text(result)


async def test_a_missing_path_is_a_clear_error(registry: ToolRegistry, tree: Path) -> None:
    result = await registry.execute("Grep", {"pattern": "x", "path": "nope/here"})
    assert result["is_error"] is True
    assert text(result) == "Path not found: nope/here. Give an existing file or directory."


# --- choosing the backend --------------------------------------------------------------


def test_the_backend_can_be_forced_by_argument_or_environment(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert GrepTool(workspace, backend="python").backend == "python"
    monkeypatch.setenv(BACKEND_ENV, "python")
    assert GrepTool(workspace).backend == "python"
    monkeypatch.setenv(BACKEND_ENV, "auto")
    assert GrepTool(workspace).backend == ("ripgrep" if HAVE_RG else "python")
    monkeypatch.setenv(BACKEND_ENV, "grep")
    with pytest.raises(ValueError, match="must be 'auto', 'ripgrep' or 'python', not 'grep'"):
        GrepTool(workspace)


def test_the_python_backend_is_used_when_rg_is_missing(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(BACKEND_ENV, raising=False)
    monkeypatch.setenv("PATH", str(workspace))  # no rg here
    assert GrepTool(workspace).backend == "python"
    with pytest.raises(ValueError, match="`rg` is not on PATH"):
        GrepTool(workspace, backend="ripgrep")


async def test_the_result_says_which_backend_ran(registry: ToolRegistry, backend: str) -> None:
    result = await registry.execute("Grep", {"pattern": "x"})
    assert result.get("metadata") == {"backend": backend}


def test_grep_schema(workspace: Path) -> None:
    tool = GrepTool(workspace, backend="python")
    assert tool.sequential is False
    assert tool.path_params == ("path",)
    schema = tool.schema
    assert schema["name"] == "Grep"
    assert schema["input_schema"]["required"] == ["pattern"]
    assert set(schema["input_schema"]["properties"]) == {
        *("pattern", "path", "glob", "type", "output_mode", "-i", "-n"),
        *("-A", "-B", "-C", "multiline", "head_limit"),
    }
    assert schema["input_schema"]["properties"]["output_mode"]["enum"] == [
        "content",
        "files_with_matches",
        "count",
    ]
