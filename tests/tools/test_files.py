"""Read and Write, run the way the agent runs them: through a real ToolRegistry."""

from __future__ import annotations

import base64
import os
import stat
import struct
import zlib
from pathlib import Path

import pytest

from loopwright.messages import ImageBlock, TextBlock
from loopwright.tools import ReadTool, ToolRegistry, ToolResult, WriteTool
from loopwright.tools.files import DEFAULT_LINE_LIMIT, MAX_LINE_CHARS


def text(result: ToolResult) -> str:
    """The content of a result that must be text."""
    content = result["content"]
    assert isinstance(content, str), content
    return content


def tiny_png() -> bytes:
    """A valid 1x1 red PNG, built by hand."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)  # 1x1, 8-bit RGB
    pixels = zlib.compress(b"\x00\xff\x00\x00")  # filter byte + one RGB pixel
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    return ws


@pytest.fixture
def registry(workspace: Path) -> ToolRegistry:
    registry = ToolRegistry(workspace)
    registry.register(ReadTool)
    registry.register(WriteTool(str(workspace)))
    return registry


def listing(directory: Path) -> set[str]:
    return {str(p.relative_to(directory)) for p in directory.rglob("*")}


# --- Write -----------------------------------------------------------------------------


async def test_write_creates_file_and_parent_directories(
    registry: ToolRegistry, workspace: Path
) -> None:
    result = await registry.execute("Write", {"file_path": "a/b/c.txt", "content": "hi\nthere\n"})
    assert result["is_error"] is False
    assert "Created a/b/c.txt" in result["content"]
    assert "2 lines" in result["content"]
    assert (workspace / "a" / "b" / "c.txt").read_text() == "hi\nthere\n"


async def test_write_absolute_path_inside(registry: ToolRegistry, workspace: Path) -> None:
    target = workspace / "abs.txt"
    result = await registry.execute("Write", {"file_path": str(target), "content": "x"})
    assert result["is_error"] is False
    assert target.read_text() == "x"


async def test_write_is_atomic_and_leaves_no_temp_files(
    registry: ToolRegistry, workspace: Path
) -> None:
    for round_ in range(3):
        await registry.execute("Write", {"file_path": "f.txt", "content": f"v{round_}"})
    assert (workspace / "f.txt").read_text() == "v2"
    assert listing(workspace) == {"f.txt"}


async def test_overwrite_keeps_the_file_mode(registry: ToolRegistry, workspace: Path) -> None:
    script = workspace / "run.sh"
    script.write_text("echo old\n")
    script.chmod(0o750)
    result = await registry.execute("Write", {"file_path": "run.sh", "content": "echo new\n"})
    assert result["is_error"] is False
    assert "Overwrote run.sh" in result["content"]
    assert script.read_text() == "echo new\n"
    assert stat.S_IMODE(script.stat().st_mode) == 0o750


async def test_write_unicode_content(registry: ToolRegistry, workspace: Path) -> None:
    await registry.execute("Write", {"file_path": "u.txt", "content": "héllo → 世界\n"})
    assert (workspace / "u.txt").read_text(encoding="utf-8") == "héllo → 世界\n"


async def test_write_through_a_symlink_inside_updates_the_target(
    registry: ToolRegistry, workspace: Path
) -> None:
    (workspace / "real.txt").write_text("old")
    (workspace / "alias.txt").symlink_to(workspace / "real.txt")
    await registry.execute("Write", {"file_path": "alias.txt", "content": "new"})
    assert (workspace / "real.txt").read_text() == "new"
    assert (workspace / "alias.txt").is_symlink()


async def test_write_to_a_directory_is_a_clear_error(
    registry: ToolRegistry, workspace: Path
) -> None:
    (workspace / "d").mkdir()
    result = await registry.execute("Write", {"file_path": "d", "content": "x"})
    assert result["is_error"] is True
    assert "is a directory" in result["content"]


async def test_write_below_a_file_is_a_clear_error(registry: ToolRegistry, workspace: Path) -> None:
    (workspace / "plain").write_text("x")
    result = await registry.execute("Write", {"file_path": "plain/child.txt", "content": "x"})
    assert result["is_error"] is True
    assert "is a file, not a directory" in result["content"]


@pytest.mark.parametrize("path", ["../outside.txt", "../../tmp-escape.txt", "sub/../../x.txt"])
async def test_write_outside_via_dotdot_is_denied(
    registry: ToolRegistry, workspace: Path, tmp_path: Path, path: str
) -> None:
    before = listing(tmp_path)
    result = await registry.execute("Write", {"file_path": path, "content": "pwned"})
    assert result["is_error"] is True
    assert "Access denied" in result["content"]
    assert listing(tmp_path) == before
    assert not (tmp_path / "outside.txt").exists()


async def test_write_outside_via_absolute_path_is_denied(
    registry: ToolRegistry, tmp_path: Path
) -> None:
    target = tmp_path / "abs-outside.txt"
    result = await registry.execute("Write", {"file_path": str(target), "content": "pwned"})
    assert result["is_error"] is True
    assert "Access denied" in result["content"]
    assert not target.exists()


async def test_write_outside_via_symlink_is_denied_and_target_untouched(
    registry: ToolRegistry, workspace: Path, tmp_path: Path
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("original")
    (workspace / "link.txt").symlink_to(victim)
    (workspace / "linkdir").symlink_to(tmp_path)
    result = await registry.execute("Write", {"file_path": "link.txt", "content": "pwned"})
    assert result["is_error"] is True
    assert "Access denied" in result["content"]
    result = await registry.execute("Write", {"file_path": "linkdir/new.txt", "content": "x"})
    assert result["is_error"] is True
    assert "Access denied" in result["content"]
    assert victim.read_text() == "original"
    assert not (tmp_path / "new.txt").exists()
    assert (workspace / "link.txt").is_symlink()


async def test_write_tool_called_directly_still_validates(workspace: Path, tmp_path: Path) -> None:
    result = await WriteTool(workspace).execute(
        {"file_path": str(tmp_path / "direct.txt"), "content": "x"}
    )
    assert result["is_error"] is True
    assert "Access denied" in result["content"]
    assert not (tmp_path / "direct.txt").exists()


async def test_write_requires_content(registry: ToolRegistry, workspace: Path) -> None:
    result = await registry.execute("Write", {"file_path": "x.txt"})
    assert result["is_error"] is True
    assert "content" in result["content"]
    assert not (workspace / "x.txt").exists()


def test_write_is_sequential_and_read_is_not(workspace: Path) -> None:
    assert WriteTool(workspace).sequential is True
    assert ReadTool(workspace).sequential is False


# --- Read ------------------------------------------------------------------------------


async def test_read_returns_numbered_lines(registry: ToolRegistry, workspace: Path) -> None:
    (workspace / "poem.txt").write_text("roses\nviolets\nsugar\n")
    result = await registry.execute("Read", {"file_path": "poem.txt"})
    assert result["is_error"] is False
    assert result["content"] == "1\troses\n2\tviolets\n3\tsugar"


async def test_read_line_numbers_are_right_aligned(registry: ToolRegistry, workspace: Path) -> None:
    (workspace / "f.txt").write_text("".join(f"l{i}\n" for i in range(1, 13)))
    lines = text(await registry.execute("Read", {"file_path": "f.txt"})).split("\n")
    assert lines[0] == " 1\tl1"
    assert lines[11] == "12\tl12"


async def test_read_after_write_round_trip(registry: ToolRegistry) -> None:
    await registry.execute("Write", {"file_path": "n/x.py", "content": "a = 1\nb = 2"})
    result = await registry.execute("Read", {"file_path": "n/x.py"})
    assert result["content"] == "1\ta = 1\n2\tb = 2"


async def test_read_windows_line_endings_are_not_shown(
    registry: ToolRegistry, workspace: Path
) -> None:
    (workspace / "crlf.txt").write_bytes(b"one\r\ntwo\r\n")
    result = await registry.execute("Read", {"file_path": "crlf.txt"})
    assert result["content"] == "1\tone\n2\ttwo"


async def test_read_counts_lines_like_grep(registry: ToolRegistry, workspace: Path) -> None:
    # form feed and other exotic separators are not line breaks for Grep/Edit/wc -l
    (workspace / "ff.txt").write_text("a\x0cb\nc\n")
    result = await registry.execute("Read", {"file_path": "ff.txt"})
    assert result["content"] == "1\ta\x0cb\n2\tc"


async def test_read_offset_and_limit_page_with_a_continuation_note(
    registry: ToolRegistry, workspace: Path
) -> None:
    (workspace / "big.txt").write_text("".join(f"line {i}\n" for i in range(1, 101)))
    result = await registry.execute("Read", {"file_path": "big.txt", "offset": 10, "limit": 5})
    assert result["is_error"] is False
    body, note = text(result).split("\n\n")
    assert body.splitlines() == [f"{i}\tline {i}" for i in range(10, 15)]
    assert "Showing lines 10-14 of 100" in note
    assert "offset=15" in note
    last = await registry.execute("Read", {"file_path": "big.txt", "offset": 96})
    assert text(last).splitlines()[-1] == "100\tline 100"
    assert "Showing" not in last["content"]


async def test_read_default_limit(registry: ToolRegistry, workspace: Path) -> None:
    total = DEFAULT_LINE_LIMIT + 5
    (workspace / "long.txt").write_text("x\n" * total)
    content = (await registry.execute("Read", {"file_path": "long.txt"}))["content"]
    assert f"Showing lines 1-{DEFAULT_LINE_LIMIT} of {total}" in content
    assert f"offset={DEFAULT_LINE_LIMIT + 1}" in content


async def test_read_offset_past_the_end(registry: ToolRegistry, workspace: Path) -> None:
    (workspace / "short.txt").write_text("a\nb\n")
    result = await registry.execute("Read", {"file_path": "short.txt", "offset": 5})
    assert result["is_error"] is True
    assert "has 2 lines" in result["content"]
    assert "offset 5" in result["content"]


@pytest.mark.parametrize("bad", [{"offset": 0}, {"limit": 0}, {"offset": "3"}])
async def test_read_rejects_bad_paging_values(
    registry: ToolRegistry, workspace: Path, bad: dict[str, object]
) -> None:
    (workspace / "f.txt").write_text("a\n")
    result = await registry.execute("Read", {"file_path": "f.txt", **bad})
    assert result["is_error"] is True
    assert "Invalid input for tool 'Read'" in result["content"]


async def test_read_cuts_long_lines_with_a_note(registry: ToolRegistry, workspace: Path) -> None:
    (workspace / "wide.txt").write_text("short\n" + "y" * (MAX_LINE_CHARS + 500) + "\n")
    content = text(await registry.execute("Read", {"file_path": "wide.txt"}))
    first, second, *notes = content.split("\n")
    assert first == "1\tshort"
    assert second.startswith("2\t" + "y" * MAX_LINE_CHARS + " [... line cut:")
    assert "y" * (MAX_LINE_CHARS + 1) not in second
    assert f"{MAX_LINE_CHARS + 500:,} characters" in second
    assert notes == [f"[1 long line(s) were cut at {MAX_LINE_CHARS} characters.]"]


async def test_read_binary_file_is_refused_clearly(registry: ToolRegistry, workspace: Path) -> None:
    (workspace / "blob.bin").write_bytes(b"\x7fELF\x00\x01\x02" + bytes(range(256)))
    result = await registry.execute("Read", {"file_path": "blob.bin"})
    assert result["is_error"] is True
    assert "binary file" in result["content"]
    assert "cannot be shown as text" in result["content"]


async def test_read_invalid_utf8_text_is_shown_with_replacements(
    registry: ToolRegistry, workspace: Path
) -> None:
    (workspace / "latin1.txt").write_bytes("café\n".encode("latin-1"))
    result = await registry.execute("Read", {"file_path": "latin1.txt"})
    assert result["is_error"] is False
    assert result["content"] == "1\tcaf\ufffd"


async def test_read_empty_file_says_so(registry: ToolRegistry, workspace: Path) -> None:
    (workspace / "empty.txt").write_text("")
    result = await registry.execute("Read", {"file_path": "empty.txt"})
    assert result["is_error"] is False
    assert result["content"] == "empty.txt exists but is empty."


async def test_read_missing_file_is_a_clear_error(registry: ToolRegistry) -> None:
    result = await registry.execute("Read", {"file_path": "nope/missing.txt"})
    assert result["is_error"] is True
    assert text(result).startswith("File not found: nope/missing.txt.")


async def test_read_directory_is_a_clear_error(registry: ToolRegistry, workspace: Path) -> None:
    (workspace / "folder").mkdir()
    result = await registry.execute("Read", {"file_path": "folder"})
    assert result["is_error"] is True
    assert "folder is a directory, not a file" in result["content"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
async def test_read_named_pipe_is_refused_instead_of_hanging(
    registry: ToolRegistry, workspace: Path
) -> None:
    os.mkfifo(workspace / "pipe")
    result = await registry.execute("Read", {"file_path": "pipe"})
    assert result["is_error"] is True
    assert "not a regular file" in result["content"]


async def test_read_image_comes_back_as_an_image_block(
    registry: ToolRegistry, workspace: Path
) -> None:
    png = tiny_png()
    (workspace / "dot.png").write_bytes(png)
    result = await registry.execute("Read", {"file_path": "dot.png"})
    assert result["is_error"] is False
    content = result["content"]
    assert isinstance(content, list)
    text, image = content
    assert isinstance(text, TextBlock)
    assert "dot.png" in text.text
    assert isinstance(image, ImageBlock)
    assert image.media_type == "image/png"
    assert base64.b64decode(image.data) == png


async def test_read_image_media_type_comes_from_the_bytes(
    registry: ToolRegistry, workspace: Path
) -> None:
    (workspace / "misnamed.jpg").write_bytes(tiny_png())
    result = await registry.execute("Read", {"file_path": "misnamed.jpg"})
    image = result["content"][1]
    assert isinstance(image, ImageBlock)
    assert image.media_type == "image/png"


async def test_read_fake_image_is_refused(registry: ToolRegistry, workspace: Path) -> None:
    (workspace / "fake.png").write_text("I am not a picture")
    result = await registry.execute("Read", {"file_path": "fake.png"})
    assert result["is_error"] is True
    assert "not a PNG, JPEG, GIF or WebP image" in result["content"]


@pytest.mark.parametrize("path", ["../secret.txt", "../../etc/passwd", "/etc/passwd"])
async def test_read_outside_is_denied(registry: ToolRegistry, tmp_path: Path, path: str) -> None:
    (tmp_path / "secret.txt").write_text("top secret")
    result = await registry.execute("Read", {"file_path": path})
    assert result["is_error"] is True
    assert "Access denied" in result["content"]
    assert "top secret" not in result["content"]
    assert "root:" not in result["content"]


async def test_read_outside_via_symlink_is_denied(
    registry: ToolRegistry, workspace: Path, tmp_path: Path
) -> None:
    (tmp_path / "secret.txt").write_text("top secret")
    (workspace / "link.txt").symlink_to(tmp_path / "secret.txt")
    (workspace / "up").symlink_to(tmp_path)
    for path in ("link.txt", "up/secret.txt"):
        result = await registry.execute("Read", {"file_path": path})
        assert result["is_error"] is True
        assert "Access denied" in result["content"]
        assert "top secret" not in result["content"]


async def test_read_tool_called_directly_still_validates(workspace: Path, tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("top secret")
    result = await ReadTool(workspace).execute({"file_path": str(tmp_path / "secret.txt")})
    assert result["is_error"] is True
    assert "Access denied" in result["content"]


async def test_read_rejects_unknown_parameters(registry: ToolRegistry, workspace: Path) -> None:
    (workspace / "f.txt").write_text("a\n")
    result = await registry.execute("Read", {"file_path": "f.txt", "encoding": "utf-8"})
    assert result["is_error"] is True
    assert "encoding" in result["content"]


def test_file_tool_schemas(registry: ToolRegistry) -> None:
    schemas = {s["name"]: s for s in registry.get_schemas()}
    assert set(schemas) == {"Read", "Write"}
    for schema in schemas.values():
        assert set(schema) == {"name", "description", "input_schema"}
        assert schema["input_schema"]["type"] == "object"
        assert "file_path" in schema["input_schema"]["required"]
    assert schemas["Write"]["input_schema"]["required"] == ["file_path", "content"]
