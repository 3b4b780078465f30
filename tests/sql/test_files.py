"""Result files put in place atomically, the replaced file freed in the background."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from loopwright.sql import files
from loopwright.sql.files import (
    Reclaimer,
    open_beside,
    replace,
    replace_together,
    temp_beside,
)

#: A result file of a few hundred kilobytes.
LARGE = 256 * 1024


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def wait_until_gone(directory: Path, timeout: float = 10.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while (left := leftovers(directory)) and time.monotonic() < deadline:
        time.sleep(0.01)
    return left


def write_temp(target: Path, data: bytes) -> str:
    temp = temp_beside(str(target))
    Path(temp).write_bytes(data)
    return temp


@pytest.fixture
def linked(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The second names ``replace`` gives old files (``os.link`` still runs)."""
    names: list[str] = []
    real_link = os.link
    monkeypatch.setattr(files.os, "link", lambda *a, **k: names.append(a[1]) or real_link(*a, **k))
    return names


def test_temp_files_are_hidden_new_and_beside_the_target(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "result.csv"
    first, second = temp_beside(str(target)), temp_beside(str(target))
    assert first != second
    for temp in (first, second):
        assert Path(temp).parent == target.parent  # the directory was created
        assert Path(temp).name.startswith(".result.csv.")
        assert temp.endswith(".partial")
        assert Path(temp).stat().st_size == 0


def test_a_temp_name_that_exists_is_never_written_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first name drawn is taken (by a symlink to a file elsewhere): a second is drawn,
    and the file the symlink points to is left alone."""
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"keep")
    target = tmp_path / "ws" / "result.csv"
    target.parent.mkdir()
    (target.parent / ".result.csv.aaaa.partial").symlink_to(outside)
    names = iter(["aaaa", "bbbb"])
    monkeypatch.setattr("loopwright.sql.files.secrets.token_hex", lambda n: next(names))
    temp, handle = open_beside(str(target))
    with handle:
        handle.write(b"new")
    assert Path(temp).name == ".result.csv.bbbb.partial"
    assert Path(temp).read_bytes() == b"new"
    assert outside.read_bytes() == b"keep"


@pytest.mark.parametrize("old", [b"old\n", b"old," * (LARGE // 2)], ids=["ten bytes", "large"])
def test_a_replaced_file_is_freed_in_the_background(
    tmp_path: Path, linked: list[str], old: bytes
) -> None:
    """Small or large: freeing a file whose blocks are on disk costs the rename tens of
    microseconds on ext4 even for a few bytes."""
    target = tmp_path / "result.csv"
    target.write_bytes(old)
    with open(target, "rb") as reader:  # a reader of the old file keeps reading it
        replace(write_temp(target, b"new\n"), str(target))
        assert reader.read() == old
    assert target.read_bytes() == b"new\n"
    assert len(linked) == 1  # the old file got a second name, removed later
    assert wait_until_gone(tmp_path) == []


def test_a_new_file_is_renamed_into_place_without_a_link(tmp_path: Path, linked: list[str]) -> None:
    target = tmp_path / "result.csv"
    replace(write_temp(target, b"new\n"), str(target))
    assert target.read_bytes() == b"new\n"
    assert linked == []
    assert leftovers(tmp_path) == []


def test_a_failed_rename_keeps_the_old_file_and_leaves_no_link(tmp_path: Path) -> None:
    target = tmp_path / "result.csv"
    old = b"x" * LARGE
    target.write_bytes(old)
    with pytest.raises(FileNotFoundError):
        replace(str(tmp_path / ".gone.partial"), str(target))
    assert target.read_bytes() == old
    assert leftovers(tmp_path) == []


def test_a_symlink_at_the_target_is_replaced_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside.csv"
    outside.write_bytes(b"y" * LARGE)
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "result.csv").symlink_to(outside)
    replace(write_temp(workspace / "result.csv", b"new\n"), str(workspace / "result.csv"))
    assert not (workspace / "result.csv").is_symlink()
    assert (workspace / "result.csv").read_bytes() == b"new\n"
    assert outside.read_bytes() == b"y" * LARGE
    assert leftovers(workspace) == []


def test_files_still_waiting_are_removed_at_exit(tmp_path: Path) -> None:
    reclaimer = Reclaimer()
    waiting = [tmp_path / f".{n}.old" for n in range(3)]
    for path in waiting:
        path.write_bytes(b"z")
        reclaimer._paths.put(str(path))  # queued, no thread started: as if exiting now
    reclaimer.drain()
    assert leftovers(tmp_path) == []


def test_a_process_that_exits_right_away_leaves_no_link(tmp_path: Path) -> None:
    target = tmp_path / "result.csv"
    target.write_bytes(b"o" * (4 * LARGE))
    code = (
        "import sys; from pathlib import Path\n"
        "from loopwright.sql.files import replace, temp_beside\n"
        "temp = temp_beside(sys.argv[1]); Path(temp).write_bytes(b'new')\n"
        "replace(temp, sys.argv[1])\n"
    )
    subprocess.run([sys.executable, "-c", code, str(target)], check=True, timeout=60)
    assert target.read_bytes() == b"new"
    assert leftovers(tmp_path) == []


def test_files_saved_together_are_all_put_back_when_one_rename_fails(tmp_path: Path) -> None:
    """A result's CSV and Parquet: the Parquet file was replaced and then the CSV's rename
    failed, which left the new Parquet file beside the old CSV."""
    kept, fresh, blocked = tmp_path / "kept.parquet", tmp_path / "fresh.txt", tmp_path / "d.csv"
    kept.write_bytes(b"old parquet")
    blocked.mkdir()  # a directory where the CSV goes: its rename fails
    moves = [
        (write_temp(kept, b"new parquet"), str(kept)),
        (write_temp(fresh, b"new"), str(fresh)),
        (write_temp(blocked, b"new csv"), str(blocked)),
    ]
    with pytest.raises(IsADirectoryError):
        replace_together(moves)
    assert kept.read_bytes() == b"old parquet"
    assert not fresh.exists()  # there was none before
    assert blocked.is_dir()
    assert [name for name in leftovers(tmp_path) if not name.endswith(".partial")] == []


def test_two_writers_of_the_same_files_never_mix_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writer A has renamed its CSV and not yet its Parquet file when writer B saves under
    the same names: B waits for A, so the pair ends up all B's (it was B's CSV beside A's
    Parquet file)."""
    csv, parquet = tmp_path / "same.csv", tmp_path / "same.parquet"
    a_moves = [(write_temp(csv, b"A"), str(csv)), (write_temp(parquet, b"A"), str(parquet))]
    b_moves = [(write_temp(csv, b"B"), str(csv)), (write_temp(parquet, b"B"), str(parquet))]
    a_half_done, b_done = threading.Event(), threading.Event()
    real_replace = os.replace

    def pausing_replace(source: str, target: str) -> None:
        real_replace(source, target)
        if threading.current_thread().name == "writer-a" and target == str(csv):
            a_half_done.set()
            b_done.wait(0.5)  # B finishes meanwhile unless it waits for A

    monkeypatch.setattr(files.os, "replace", pausing_replace)
    a = threading.Thread(target=replace_together, args=(a_moves,), name="writer-a")
    a.start()
    assert a_half_done.wait(10)
    b = threading.Thread(target=lambda: (replace_together(b_moves), b_done.set()))
    b.start()
    a.join(10)
    b.join(10)
    assert (csv.read_bytes(), parquet.read_bytes()) == (b"B", b"B")
