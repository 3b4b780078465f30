"""Edit, run the way the agent runs it: through a real ToolRegistry, on real files."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from loopwright.tools import EditTool, ReadTool, ToolRegistry, ToolResult


def text(result: ToolResult) -> str:
    content = result["content"]
    assert isinstance(content, str), content
    return content


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    return ws


@pytest.fixture
def registry(workspace: Path) -> ToolRegistry:
    registry = ToolRegistry(workspace)
    registry.register(EditTool)
    registry.register(ReadTool)
    return registry


def listing(directory: Path) -> set[str]:
    return {str(p.relative_to(directory)) for p in directory.rglob("*")}


PROGRAM = "".join(f"line {i}\n" for i in range(1, 21))


async def test_edit_replaces_a_unique_string_and_shows_the_changed_lines(
    registry: ToolRegistry, workspace: Path
) -> None:
    (workspace / "prog.txt").write_text(PROGRAM)
    result = await registry.execute(
        "Edit", {"file_path": "prog.txt", "old_string": "line 10\n", "new_string": "TEN\n"}
    )
    assert result["is_error"] is False
    assert (workspace / "prog.txt").read_text() == PROGRAM.replace("line 10\n", "TEN\n")
    header, *snippet = text(result).split("\n")
    assert header == "Edited prog.txt: replaced 1 occurrence. The file now reads:"
    # three lines of context either side, numbered like Read
    assert snippet == [
        " 7\tline 7",
        " 8\tline 8",
        " 9\tline 9",
        "10\tTEN",
        "11\tline 11",
        "12\tline 12",
        "13\tline 13",
    ]


async def test_edit_snippet_at_the_start_of_a_file(registry: ToolRegistry, workspace: Path) -> None:
    (workspace / "f.py").write_text("import os\nimport sys\n\nprint(1)\n")
    result = await registry.execute(
        "Edit", {"file_path": "f.py", "old_string": "import os", "new_string": "import re"}
    )
    assert text(result).split("\n")[1:] == ["1\timport re", "2\timport sys", "3\t", "4\tprint(1)"]


async def test_edit_a_multiline_block(registry: ToolRegistry, workspace: Path) -> None:
    source = "def f():\n    a = 1\n    return a\n\n\ndef g():\n    return 2\n"
    (workspace / "m.py").write_text(source)
    result = await registry.execute(
        "Edit",
        {
            "file_path": "m.py",
            "old_string": "    a = 1\n    return a\n",
            "new_string": "    return 1\n",
        },
    )
    assert result["is_error"] is False
    expected = "def f():\n    return 1\n\n\ndef g():\n    return 2\n"
    assert (workspace / "m.py").read_text() == expected
    assert "2\t    return 1" in text(result)


async def test_edit_deleting_text(registry: ToolRegistry, workspace: Path) -> None:
    (workspace / "d.txt").write_text("keep\ndrop me\nkeep too\n")
    result = await registry.execute(
        "Edit", {"file_path": "d.txt", "old_string": "drop me\n", "new_string": ""}
    )
    assert result["is_error"] is False
    assert (workspace / "d.txt").read_text() == "keep\nkeep too\n"
    assert text(result).split("\n")[1:] == ["1\tkeep", "2\tkeep too"]


async def test_zero_matches_is_a_clear_error_and_the_file_is_untouched(
    registry: ToolRegistry, workspace: Path
) -> None:
    (workspace / "f.txt").write_text("    indented\n")
    result = await registry.execute(
        "Edit", {"file_path": "f.txt", "old_string": "\tindented", "new_string": "x"}
    )
    assert result["is_error"] is True
    assert text(result).startswith("old_string was not found in f.txt;")
    assert "copy the text exactly" in text(result)
    assert (workspace / "f.txt").read_text() == "    indented\n"


async def test_several_matches_without_replace_all_say_how_many_and_where(
    registry: ToolRegistry, workspace: Path
) -> None:
    (workspace / "dup.py").write_text("x = 1\ny = 2\nx = 1\nz = 3\nx = 1\n")
    result = await registry.execute(
        "Edit", {"file_path": "dup.py", "old_string": "x = 1", "new_string": "x = 9"}
    )
    assert result["is_error"] is True
    message = text(result)
    assert "occurs 3 times in dup.py (at lines 1, 3, 5)" in message
    assert "add surrounding lines" in message
    assert "replace_all" in message
    assert (workspace / "dup.py").read_text() == "x = 1\ny = 2\nx = 1\nz = 3\nx = 1\n"


async def test_adding_context_makes_the_match_unique(
    registry: ToolRegistry, workspace: Path
) -> None:
    (workspace / "dup.py").write_text("x = 1\ny = 2\nx = 1\nz = 3\n")
    result = await registry.execute(
        "Edit", {"file_path": "dup.py", "old_string": "x = 1\nz", "new_string": "x = 7\nz"}
    )
    assert result["is_error"] is False
    assert (workspace / "dup.py").read_text() == "x = 1\ny = 2\nx = 7\nz = 3\n"


async def test_replace_all_replaces_every_occurrence(
    registry: ToolRegistry, workspace: Path
) -> None:
    (workspace / "dup.py").write_text("x = 1\ny = 2\nx = 1\n")
    result = await registry.execute(
        "Edit",
        {"file_path": "dup.py", "old_string": "x", "new_string": "value", "replace_all": True},
    )
    assert result["is_error"] is False
    assert (workspace / "dup.py").read_text() == "value = 1\ny = 2\nvalue = 1\n"
    assert text(result).startswith("Edited dup.py: replaced 2 occurrences.")


async def test_replace_all_with_many_occurrences_keeps_the_snippet_short(
    registry: ToolRegistry, workspace: Path
) -> None:
    (workspace / "many.txt").write_text("".join(f"item {i}\n\n\n\n\n\n\n\n" for i in range(50)))
    result = await registry.execute(
        "Edit",
        {"file_path": "many.txt", "old_string": "item", "new_string": "ITEM", "replace_all": True},
    )
    assert result["is_error"] is False
    assert "item" not in (workspace / "many.txt").read_text()
    content = text(result)
    assert "replaced 50 occurrences" in content
    assert "[... and 45 more replacements.]" in content
    assert content.count("\n...\n") == 4  # five separate regions
    assert len(content.split("\n")) < 60


async def test_replace_all_of_a_unique_string_is_fine(
    registry: ToolRegistry, workspace: Path
) -> None:
    (workspace / "one.txt").write_text("alpha\n")
    result = await registry.execute(
        "Edit",
        {"file_path": "one.txt", "old_string": "alpha", "new_string": "beta", "replace_all": True},
    )
    assert result["is_error"] is False
    assert (workspace / "one.txt").read_text() == "beta\n"


async def test_identical_strings_are_an_error(registry: ToolRegistry, workspace: Path) -> None:
    (workspace / "f.txt").write_text("same\n")
    result = await registry.execute(
        "Edit", {"file_path": "f.txt", "old_string": "same", "new_string": "same"}
    )
    assert result["is_error"] is True
    assert "identical" in text(result)


async def test_empty_old_string_is_an_error(registry: ToolRegistry, workspace: Path) -> None:
    (workspace / "f.txt").write_text("content\n")
    result = await registry.execute(
        "Edit", {"file_path": "f.txt", "old_string": "", "new_string": "x"}
    )
    assert result["is_error"] is True
    assert "old_string is empty" in text(result)
    assert "Write" in text(result)
    assert (workspace / "f.txt").read_text() == "content\n"


async def test_missing_file_is_a_clear_error(registry: ToolRegistry, workspace: Path) -> None:
    result = await registry.execute(
        "Edit", {"file_path": "nope.txt", "old_string": "a", "new_string": "b"}
    )
    assert result["is_error"] is True
    assert text(result).startswith("File not found: nope.txt.")
    assert not (workspace / "nope.txt").exists()


async def test_directory_and_binary_files_are_refused(
    registry: ToolRegistry, workspace: Path
) -> None:
    (workspace / "folder").mkdir()
    result = await registry.execute(
        "Edit", {"file_path": "folder", "old_string": "a", "new_string": "b"}
    )
    assert result["is_error"] is True
    assert "is a directory" in text(result)
    (workspace / "blob.bin").write_bytes(b"abc\x00def")
    result = await registry.execute(
        "Edit", {"file_path": "blob.bin", "old_string": "abc", "new_string": "xyz"}
    )
    assert result["is_error"] is True
    assert "binary file" in text(result)
    assert (workspace / "blob.bin").read_bytes() == b"abc\x00def"


async def test_edit_keeps_the_mode_and_leaves_no_temporary_files(
    registry: ToolRegistry, workspace: Path
) -> None:
    script = workspace / "run.sh"
    script.write_text("#!/bin/sh\necho old\n")
    script.chmod(0o751)
    result = await registry.execute(
        "Edit", {"file_path": "run.sh", "old_string": "old", "new_string": "new"}
    )
    assert result["is_error"] is False
    assert script.read_text() == "#!/bin/sh\necho new\n"
    assert stat.S_IMODE(script.stat().st_mode) == 0o751
    assert listing(workspace) == {"run.sh"}


async def test_edit_replaces_the_file_rather_than_writing_in_place(
    registry: ToolRegistry, workspace: Path
) -> None:
    target = workspace / "f.txt"
    target.write_text("before\n")
    inode = target.stat().st_ino
    await registry.execute(
        "Edit", {"file_path": "f.txt", "old_string": "before", "new_string": "after"}
    )
    assert target.stat().st_ino != inode  # a new file renamed over the old one: atomic


async def test_windows_line_endings_match_the_text_read_shows(
    registry: ToolRegistry, workspace: Path
) -> None:
    (workspace / "win.txt").write_bytes(b"one\r\ntwo\r\nthree\r\n")
    read = await registry.execute("Read", {"file_path": "win.txt"})
    assert text(read) == "1\tone\n2\ttwo\n3\tthree"
    result = await registry.execute(
        "Edit", {"file_path": "win.txt", "old_string": "one\ntwo", "new_string": "1\n2\n2.5"}
    )
    assert result["is_error"] is False
    assert (workspace / "win.txt").read_bytes() == b"1\r\n2\r\n2.5\r\nthree\r\n"
    assert text(result).split("\n")[1:] == ["1\t1", "2\t2", "3\t2.5", "4\tthree"]


async def test_bytes_that_are_not_utf8_survive_an_edit_elsewhere(
    registry: ToolRegistry, workspace: Path
) -> None:
    (workspace / "latin1.txt").write_bytes(b"caf\xe9\nname = old\n")
    result = await registry.execute(
        "Edit", {"file_path": "latin1.txt", "old_string": "old", "new_string": "new"}
    )
    assert result["is_error"] is False
    assert (workspace / "latin1.txt").read_bytes() == b"caf\xe9\nname = new\n"
    assert "1\tcaf\ufffd" in text(result)


async def test_unicode_text(registry: ToolRegistry, workspace: Path) -> None:
    (workspace / "u.txt").write_text("héllo → 世界\n", encoding="utf-8")
    result = await registry.execute(
        "Edit", {"file_path": "u.txt", "old_string": "世界", "new_string": "мир"}
    )
    assert result["is_error"] is False
    assert (workspace / "u.txt").read_text(encoding="utf-8") == "héllo → мир\n"


async def test_edit_through_a_symlink_inside_updates_the_target(
    registry: ToolRegistry, workspace: Path
) -> None:
    (workspace / "real.txt").write_text("old\n")
    (workspace / "alias.txt").symlink_to(workspace / "real.txt")
    result = await registry.execute(
        "Edit", {"file_path": "alias.txt", "old_string": "old", "new_string": "new"}
    )
    assert result["is_error"] is False
    assert (workspace / "real.txt").read_text() == "new\n"
    assert (workspace / "alias.txt").is_symlink()


@pytest.mark.parametrize("path", ["../../../etc/passwd", "/etc/passwd", "../../secrets.txt"])
async def test_paths_outside_the_workspace_are_denied(
    registry: ToolRegistry, tmp_path: Path, path: str
) -> None:
    secrets = tmp_path / "secrets.txt"
    secrets.write_text("root:x:0:0\n")
    result = await registry.execute(
        "Edit", {"file_path": path, "old_string": "root", "new_string": "pwned"}
    )
    assert result["is_error"] is True
    assert "Access denied" in text(result)
    assert secrets.read_text() == "root:x:0:0\n"


async def test_a_symlink_pointing_outside_is_denied(
    registry: ToolRegistry, workspace: Path, tmp_path: Path
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("original\n")
    (workspace / "link.txt").symlink_to(victim)
    (workspace / "up").symlink_to(tmp_path)
    for path in ("link.txt", "up/victim.txt"):
        result = await registry.execute(
            "Edit", {"file_path": path, "old_string": "original", "new_string": "pwned"}
        )
        assert result["is_error"] is True
        assert "Access denied" in text(result)
    assert victim.read_text() == "original\n"


async def test_edit_called_directly_still_validates(workspace: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("original\n")
    result = await EditTool(workspace).execute(
        {"file_path": str(victim), "old_string": "original", "new_string": "pwned"}
    )
    assert result["is_error"] is True
    assert "Access denied" in text(result)
    assert victim.read_text() == "original\n"


async def test_missing_new_string_is_refused_by_the_schema(
    registry: ToolRegistry, workspace: Path
) -> None:
    (workspace / "f.txt").write_text("a\n")
    result = await registry.execute("Edit", {"file_path": "f.txt", "old_string": "a"})
    assert result["is_error"] is True
    assert "new_string" in text(result)
    assert (workspace / "f.txt").read_text() == "a\n"


def test_edit_schema_and_scheduling(workspace: Path) -> None:
    tool = EditTool(workspace)
    assert tool.sequential is True
    assert tool.path_params == ("file_path",)
    schema = tool.schema
    assert schema["name"] == "Edit"
    assert schema["input_schema"]["required"] == ["file_path", "old_string", "new_string"]
    assert set(schema["input_schema"]["properties"]) == {
        "file_path",
        "old_string",
        "new_string",
        "replace_all",
    }
