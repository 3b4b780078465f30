"""PathValidator: every path a tool touches must resolve inside the workspace."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from loopwright.sandbox import PathValidator, SecurityError, create_path_validation_prehook


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    return ws


def test_relative_path_is_resolved_inside_the_workspace(workspace: Path) -> None:
    validator = PathValidator(workspace)
    assert validator.validate("notes/a.txt") == str(workspace / "notes" / "a.txt")
    assert validator.validate("./a.txt") == str(workspace / "a.txt")
    assert validator.validate("sub/../a.txt") == str(workspace / "a.txt")


def test_absolute_path_inside_passes(workspace: Path) -> None:
    validator = PathValidator(str(workspace))
    target = workspace / "data.csv"
    assert validator.validate(str(target)) == str(target)
    assert validator.validate(target) == str(target)  # PathLike accepted too


def test_workspace_itself_is_allowed(workspace: Path) -> None:
    validator = PathValidator(workspace)
    assert validator.validate(".") == str(workspace)
    assert validator.validate(str(workspace)) == str(workspace)


def test_workspace_given_through_a_symlink_is_resolved(tmp_path: Path, workspace: Path) -> None:
    link = tmp_path / "ws-link"
    link.symlink_to(workspace)
    validator = PathValidator(link)
    assert validator.workspace_dir == str(workspace)
    assert validator.validate(str(link / "a.txt")) == str(workspace / "a.txt")


@pytest.mark.parametrize(
    "path",
    ["../../etc/passwd", "../secret.txt", "/etc/passwd", "a/../../outside", "/"],
)
def test_escapes_are_refused(workspace: Path, path: str) -> None:
    with pytest.raises(SecurityError, match="Access denied"):
        PathValidator(workspace).validate(path)


def test_error_names_the_operation_and_says_what_to_do(workspace: Path) -> None:
    with pytest.raises(SecurityError) as caught:
        PathValidator(workspace).validate("/etc/passwd", "read")
    message = str(caught.value)
    assert "read outside the workspace" in message
    assert "/etc/passwd" in message
    assert str(workspace) in message


def test_symlink_inside_pointing_outside_is_refused(tmp_path: Path, workspace: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    (workspace / "innocent.txt").symlink_to(secret)
    (workspace / "dirlink").symlink_to(tmp_path)
    validator = PathValidator(workspace)
    with pytest.raises(SecurityError):
        validator.validate("innocent.txt")
    with pytest.raises(SecurityError):
        validator.validate("dirlink/secret.txt")
    with pytest.raises(SecurityError):
        validator.validate("dirlink/new-file.txt")  # even a file that does not exist yet


def test_symlink_inside_pointing_inside_is_allowed(workspace: Path) -> None:
    (workspace / "real.txt").write_text("x")
    (workspace / "alias.txt").symlink_to(workspace / "real.txt")
    assert PathValidator(workspace).validate("alias.txt") == str(workspace / "real.txt")


def test_sibling_directory_sharing_the_prefix_is_refused(tmp_path: Path) -> None:
    ws = tmp_path / "x" / "ws"
    sibling = tmp_path / "x" / "ws2"
    ws.mkdir(parents=True)
    sibling.mkdir()
    (sibling / "file").write_text("not yours")
    validator = PathValidator(ws)
    with pytest.raises(SecurityError):
        validator.validate(str(sibling / "file"))
    with pytest.raises(SecurityError):
        validator.validate("../ws2/file")
    assert not validator.is_inside(str(sibling / "file"))


@pytest.mark.parametrize("path", ["a\x00b.txt", "\x00", "/etc/passwd\x00.txt"])
def test_nul_byte_is_refused(workspace: Path, path: str) -> None:
    with pytest.raises(SecurityError, match="NUL"):
        PathValidator(workspace).validate(path)


@pytest.mark.parametrize("path", ["", None, 42, b"a.txt"])
def test_empty_or_non_string_path_is_refused(workspace: Path, path: object) -> None:
    with pytest.raises(SecurityError, match="Access denied"):
        PathValidator(workspace).validate(path)  # type: ignore[arg-type]


def test_is_inside(workspace: Path) -> None:
    validator = PathValidator(workspace)
    assert validator.is_inside("a/b/c.txt")
    assert not validator.is_inside("../x")
    assert not validator.is_inside("/etc")


def test_root_workspace_accepts_everything_below_it() -> None:
    validator = PathValidator("/")
    assert validator.validate("/etc/passwd") == os.path.realpath("/etc/passwd")
    assert validator.validate("tmp") == os.path.realpath("/tmp")


async def test_prehook_normalises_path_parameters_in_place(tmp_path: Path, workspace: Path) -> None:
    hook = create_path_validation_prehook(workspace)
    data = {"file_path": "a/../b.txt", "path": "sub", "other": "../not-a-path"}
    await hook(data)
    assert data == {
        "file_path": str(workspace / "b.txt"),
        "path": str(workspace / "sub"),
        "other": "../not-a-path",
    }


async def test_prehook_refuses_an_escape(workspace: Path) -> None:
    hook = create_path_validation_prehook(workspace)
    with pytest.raises(SecurityError):
        await hook({"file_path": "../../etc/passwd"})
    with pytest.raises(SecurityError):
        await hook({"path": "/etc"})


async def test_prehook_with_custom_parameter_names(workspace: Path) -> None:
    hook = create_path_validation_prehook(workspace, params=["source", "target"])
    data = {"source": "in.txt", "target": "out/x.txt", "file_path": "/etc/passwd"}
    await hook(data)
    assert data["source"] == str(workspace / "in.txt")
    assert data["target"] == str(workspace / "out" / "x.txt")
    assert data["file_path"] == "/etc/passwd"  # not one of the named parameters
    with pytest.raises(SecurityError):
        await hook({"target": "../x"})


async def test_prehook_ignores_missing_and_non_string_values(workspace: Path) -> None:
    hook = create_path_validation_prehook(workspace)
    data: dict[str, object] = {"path": None, "pattern": "*.py"}
    await hook(data)
    assert data == {"path": None, "pattern": "*.py"}
