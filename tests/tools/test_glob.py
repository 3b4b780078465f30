"""Glob, run through a real ToolRegistry on real trees in tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from loopwright.tools import GlobTool, ToolRegistry, ToolResult


def text(result: ToolResult) -> str:
    content = result["content"]
    assert isinstance(content, str), content
    return content


def lines(result: ToolResult) -> list[str]:
    assert result["is_error"] is False, result["content"]
    return text(result).split("\n")


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    return ws


@pytest.fixture
def registry(workspace: Path) -> ToolRegistry:
    registry = ToolRegistry(workspace)
    registry.register(GlobTool)
    return registry


def make(root: Path, files: dict[str, str]) -> None:
    """Create files; the n-th is the n-th oldest (mtime 1000 + n seconds)."""
    for age, (name, content) in enumerate(files.items()):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        os.utime(path, (1000 + age, 1000 + age))


TREE = {
    "README.md": "",
    "setup.py": "",
    "src/app.py": "",
    "src/util.py": "",
    "src/pkg/deep/mod.py": "",
    "src/pkg/data.json": "",
    "src/.private.py": "",
    "tests/test_app.py": "",
    "build/generated.py": "",
    ".gitignore": "build/\n",
    ".env": "SECRET=1",
    ".github/workflows/ci.yml": "",
    ".git/config": "",
}


@pytest.fixture
def tree(workspace: Path) -> Path:
    make(workspace, TREE)
    return workspace


async def test_double_star_finds_files_at_any_depth_newest_first(
    registry: ToolRegistry, tree: Path
) -> None:
    result = await registry.execute("Glob", {"pattern": "**/*.py"})
    # newest first; hidden names skipped; .gitignore not applied (build/ is listed)
    assert lines(result) == [
        "build/generated.py",
        "tests/test_app.py",
        "src/pkg/deep/mod.py",
        "src/util.py",
        "src/app.py",
        "setup.py",
    ]


async def test_order_follows_modification_time(registry: ToolRegistry, tree: Path) -> None:
    os.utime(tree / "setup.py", (9999, 9999))
    result = await registry.execute("Glob", {"pattern": "**/*.py"})
    assert lines(result)[0] == "setup.py"


async def test_single_star_stays_in_one_directory(registry: ToolRegistry, tree: Path) -> None:
    assert lines(await registry.execute("Glob", {"pattern": "*.py"})) == ["setup.py"]
    assert lines(await registry.execute("Glob", {"pattern": "src/*.py"})) == [
        "src/util.py",
        "src/app.py",
    ]
    assert lines(await registry.execute("Glob", {"pattern": "src/*/*/*.py"})) == [
        "src/pkg/deep/mod.py"
    ]


async def test_double_star_in_the_middle_matches_zero_or_more_directories(
    registry: ToolRegistry, tree: Path
) -> None:
    result = await registry.execute("Glob", {"pattern": "src/**/*.py"})
    assert lines(result) == ["src/pkg/deep/mod.py", "src/util.py", "src/app.py"]
    result = await registry.execute("Glob", {"pattern": "src/**"})
    assert lines(result) == [
        "src/pkg/data.json",
        "src/pkg/deep/mod.py",
        "src/util.py",
        "src/app.py",
    ]


async def test_braces_classes_and_question_marks(registry: ToolRegistry, tree: Path) -> None:
    result = await registry.execute("Glob", {"pattern": "**/*.{md,json}"})
    assert lines(result) == ["src/pkg/data.json", "README.md"]
    result = await registry.execute("Glob", {"pattern": "{src,tests}/*.py"})
    assert lines(result) == ["tests/test_app.py", "src/util.py", "src/app.py"]
    result = await registry.execute("Glob", {"pattern": "src/[a-f]pp.py"})
    assert lines(result) == ["src/app.py"]
    result = await registry.execute("Glob", {"pattern": "src/[!a]*.py"})
    assert lines(result) == ["src/util.py"]
    result = await registry.execute("Glob", {"pattern": "src/ut?l.py"})
    assert lines(result) == ["src/util.py"]


async def test_a_literal_pattern_finds_one_file(registry: ToolRegistry, tree: Path) -> None:
    assert lines(await registry.execute("Glob", {"pattern": "src/app.py"})) == ["src/app.py"]


async def test_directories_are_not_listed(registry: ToolRegistry, tree: Path) -> None:
    result = await registry.execute("Glob", {"pattern": "src/*"})
    assert lines(result) == ["src/util.py", "src/app.py"]


async def test_hidden_names_need_a_pattern_part_starting_with_a_dot(
    registry: ToolRegistry, tree: Path
) -> None:
    everything = lines(await registry.execute("Glob", {"pattern": "**/*"}))
    assert not [path for path in everything if "/." in "/" + path]
    assert lines(await registry.execute("Glob", {"pattern": "**/.env"})) == [".env"]
    assert lines(await registry.execute("Glob", {"pattern": "src/.*.py"})) == ["src/.private.py"]
    result = await registry.execute("Glob", {"pattern": ".github/**/*.yml"})
    assert lines(result) == [".github/workflows/ci.yml"]
    assert lines(await registry.execute("Glob", {"pattern": ".git/*"})) == [".git/config"]


async def test_path_narrows_the_search_and_results_stay_workspace_relative(
    registry: ToolRegistry, tree: Path
) -> None:
    result = await registry.execute("Glob", {"pattern": "**/*.py", "path": "src"})
    assert lines(result) == ["src/pkg/deep/mod.py", "src/util.py", "src/app.py"]
    result = await registry.execute("Glob", {"pattern": "*.json", "path": str(tree / "src/pkg")})
    assert lines(result) == ["src/pkg/data.json"]


async def test_an_absolute_pattern_inside_the_workspace_is_fine(
    registry: ToolRegistry, tree: Path
) -> None:
    result = await registry.execute("Glob", {"pattern": f"{tree}/src/*.py"})
    assert lines(result) == ["src/util.py", "src/app.py"]


async def test_no_matches_is_not_an_error(registry: ToolRegistry, tree: Path) -> None:
    result = await registry.execute("Glob", {"pattern": "**/*.rs"})
    assert result["is_error"] is False
    assert text(result) == "No files found matching '**/*.rs' in the workspace."
    result = await registry.execute("Glob", {"pattern": "*.rs", "path": "src"})
    assert text(result) == "No files found matching '*.rs' in src."


async def test_results_are_capped_with_a_note(workspace: Path) -> None:
    make(workspace, {f"f{i:02}.txt": "" for i in range(10)})
    registry = ToolRegistry(workspace)
    registry.register(GlobTool(workspace, max_results=3))
    result = await registry.execute("Glob", {"pattern": "*.txt"})
    shown, note = text(result).split("\n\n")
    assert shown.split("\n") == ["f09.txt", "f08.txt", "f07.txt"]
    assert "Showing the 3 most recently modified of 10 matching files; 7 were left out" in note


async def test_path_must_be_an_existing_directory(registry: ToolRegistry, tree: Path) -> None:
    result = await registry.execute("Glob", {"pattern": "*", "path": "missing"})
    assert result["is_error"] is True
    assert text(result).startswith("Path not found: missing.")
    result = await registry.execute("Glob", {"pattern": "*", "path": "setup.py"})
    assert result["is_error"] is True
    assert "is a file, not a directory" in text(result)


async def test_an_invalid_pattern_is_a_clear_error(registry: ToolRegistry, tree: Path) -> None:
    result = await registry.execute("Glob", {"pattern": "src/[abc.py"})
    assert result["is_error"] is True
    assert text(result) == (
        "Invalid glob pattern 'src/[abc.py': unclosed character class; missing ']'."
    )


async def test_a_symlinked_directory_loop_does_not_hang(
    registry: ToolRegistry, workspace: Path
) -> None:
    make(workspace, {"a/x.txt": ""})
    (workspace / "a" / "loop").symlink_to(workspace / "a")
    result = await registry.execute("Glob", {"pattern": "**/*.txt"})
    assert lines(result) == ["a/x.txt"]  # ** does not follow directory links
    result = await registry.execute("Glob", {"pattern": "a/loop/*.txt"})
    assert lines(result) == ["a/x.txt"]  # a named link inside is fine (shown resolved)


async def test_a_symlinked_file_inside_is_listed_by_its_own_name(
    registry: ToolRegistry, workspace: Path
) -> None:
    make(workspace, {"real.txt": ""})
    (workspace / "alias.txt").symlink_to(workspace / "real.txt")
    result = await registry.execute("Glob", {"pattern": "*.txt"})
    assert sorted(lines(result)) == ["alias.txt", "real.txt"]


# --- the design guide's attacks --------------------------------------------------------


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """Files next to the workspace that must stay out of reach."""
    (tmp_path / "secrets.txt").write_text("top secret")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "private.txt").write_text("private")
    return tmp_path


@pytest.mark.parametrize(
    "pattern",
    [
        "../../../etc/passwd",
        "../../secrets.txt",
        "../secrets.txt",
        "../*",
        "../**/*.txt",
        "src/../../*",
        "**/../../*",
        "{src,..}/*",
        "/etc/passwd",
        "/etc/*",
        "/*/passwd",
    ],
)
async def test_patterns_reaching_outside_are_denied(
    registry: ToolRegistry, tree: Path, outside: Path, pattern: str
) -> None:
    result = await registry.execute("Glob", {"pattern": pattern})
    assert result["is_error"] is True
    assert text(result).startswith("Access denied")
    assert "secrets.txt" not in text(result).replace(pattern, "")


async def test_an_absolute_pattern_into_a_neighbouring_directory_is_denied(
    registry: ToolRegistry, tree: Path, outside: Path
) -> None:
    result = await registry.execute("Glob", {"pattern": f"{outside}/other/*.txt"})
    assert result["is_error"] is True
    assert text(result).startswith("Access denied")
    assert "private.txt" not in text(result)


@pytest.mark.parametrize("path", ["../../../etc", "/etc", "../..", "..", "/"])
async def test_paths_outside_are_denied(
    registry: ToolRegistry, tree: Path, outside: Path, path: str
) -> None:
    result = await registry.execute("Glob", {"pattern": "**/*", "path": path})
    assert result["is_error"] is True
    assert "Access denied" in text(result)


async def test_symlinks_pointing_outside_are_neither_followed_nor_listed(
    registry: ToolRegistry, workspace: Path, outside: Path
) -> None:
    make(workspace, {"inside.txt": ""})
    (workspace / "leak.txt").symlink_to(outside / "secrets.txt")
    (workspace / "escape").symlink_to(outside / "other")
    result = await registry.execute("Glob", {"pattern": "**/*.txt"})
    assert lines(result) == ["inside.txt"]
    result = await registry.execute("Glob", {"pattern": "*"})
    assert lines(result) == ["inside.txt"]
    result = await registry.execute("Glob", {"pattern": "*/*.txt"})
    assert text(result) == "No files found matching '*/*.txt' in the workspace."
    for pattern in ("escape/*.txt", "escape/private.txt", "leak.txt"):
        result = await registry.execute("Glob", {"pattern": pattern})
        assert result["is_error"] is True, pattern
        assert text(result).startswith("Access denied")
    result = await registry.execute("Glob", {"pattern": "*.txt", "path": "escape"})
    assert result["is_error"] is True
    assert "Access denied" in text(result)


async def test_glob_called_directly_still_validates(workspace: Path, outside: Path) -> None:
    tool = GlobTool(workspace)
    result = await tool.execute({"pattern": "*.txt", "path": str(outside)})
    assert result["is_error"] is True
    assert "Access denied" in text(result)
    result = await tool.execute({"pattern": "../*.txt"})
    assert result["is_error"] is True
    assert "Access denied" in text(result)


def test_glob_schema(workspace: Path) -> None:
    tool = GlobTool(workspace)
    assert tool.sequential is False
    assert tool.path_params == ("path",)
    schema = tool.schema
    assert schema["name"] == "Glob"
    assert schema["input_schema"]["required"] == ["pattern"]
    assert set(schema["input_schema"]["properties"]) == {"pattern", "path"}
