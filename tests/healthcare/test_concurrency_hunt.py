"""The healthcare claims database shared by several processes: builds killed while another
waits, leftovers whose process id is another process's now, a write-ahead log a killed
writer left beside the file, and a ``loopwright healthcare`` interrupted while another
process builds. Real processes throughout (a builder held mid-build by its progress
callback, a DuckDB writer killed with SIGKILL, the CLI with a scripted model).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from cli_process import cli_env
from loopwright.healthcare.data import connect_read_only, ensure_database

from .test_sessions_hunt import ROWS, _lw, _script

#: A process that builds ``argv[1]`` (``ensure`` or ``build``: with or without the build
#: lock) and stops, its temporary database open, once it generates pharmacy claims: it says
#: "building" and waits for a line on stdin.
_BUILDER = """
import sys
from loopwright.healthcare import data

def hold(fraction, message):
    if "pharmacy" in message:
        print("building", flush=True)
        sys.stdin.readline()

if sys.argv[2] == "ensure":
    data.ensure_database(rx_claims=1000, path=sys.argv[1], progress=hold)
else:
    data.build_database(sys.argv[1], rx_claims=1000, progress=hold)
"""


def _builder(target: Path, how: str) -> subprocess.Popen[str]:
    """A process held in the middle of its build of ``target`` (see :data:`_BUILDER`)."""
    process = subprocess.Popen(
        [sys.executable, "-c", _BUILDER, str(target), how],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "building"
    return process


def _builds_of(directory: Path, pid: int) -> list[str]:
    """The temporary files of builds started by process ``pid``."""
    return sorted(p.name for p in directory.iterdir() if f".{pid}." in p.name)


def test_a_build_killed_while_another_waits_leaves_nothing_behind(tmp_path: Path) -> None:
    """A `loopwright healthcare` killed mid-build (SIGKILL, the OOM killer) while a second
    one waited for it: the second woke as soon as the first one's lock went, while the dead
    process still had its id (not yet reaped by its parent), took its half-built database
    (hundreds of MB at the default size) for a live build's and kept it. Then the database
    was there, no later call looked again, and the files stayed for good. A build that is
    really running (a direct ``build_database`` of the same file) keeps its files."""
    target = tmp_path / "claims.duckdb"
    live = _builder(target, "build")  # no build lock: runs beside the others
    dead = _builder(target, "ensure")
    try:
        assert _builds_of(tmp_path, dead.pid)  # its half-built database
        os.kill(dead.pid, signal.SIGKILL)  # not reaped: its id stays taken for now
        # waits for the killed build's lock, then builds the file itself
        assert ensure_database(rx_claims=ROWS, path=target) == target
        os.kill(dead.pid, 0)  # unreaped: its id was still taken when the files were judged
        assert _builds_of(tmp_path, dead.pid) == []
        assert _builds_of(tmp_path, live.pid)  # a running build's files are its own
        con = connect_read_only(target)
        try:
            assert con.sql("SELECT count(*) FROM RX_CLAIMS").fetchall() == [(ROWS,)]
        finally:
            con.close()
    finally:
        for process in (live, dead):
            process.kill()
            process.communicate()


@contextmanager
def _other_process() -> Iterator[int]:
    """The id of a live process that builds nothing."""
    process = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    try:
        yield process.pid
    finally:
        process.communicate(b"")


@pytest.mark.parametrize("owner", ["this process", "another process"])
def test_leftovers_under_a_process_id_now_in_use_are_removed(tmp_path: Path, owner: str) -> None:
    """A build killed in a container left files named with its process id, which the next
    run had again (every container's first process is PID 1), or which another process has
    now: that id was alive, so the half-built files were kept, for good."""
    with _other_process() as other:
        pid = os.getpid() if owner == "this process" else other
        leftovers = [tmp_path / f".claims.duckdb.{pid}.0badc0de.tmp{end}" for end in ("", ".wal")]
        for leftover in leftovers:
            leftover.write_bytes(b"half a database")
        spill = tmp_path / f".claims.duckdb.{pid}.0badc0de.tmp.tmp"
        spill.mkdir()
        (spill / "duckdb_temp_storage-0.tmp").write_bytes(b"spilled rows")
        path = ensure_database(rx_claims=ROWS, path=tmp_path / "claims.duckdb")
    assert path.is_file()
    assert _builds_of(tmp_path, pid) == []


_WRITER = """
import sys, duckdb
con = duckdb.connect(sys.argv[1])
con.execute("SET checkpoint_threshold = '1TB'")  # the change stays in the write-ahead log
con.execute("CREATE TABLE notes AS SELECT 'mine' AS note")
print("written", flush=True)
sys.stdin.readline()
"""


def _killed_writer(database: Path) -> None:
    """Open ``database`` for writing in another process, change it, and kill that process
    (SIGKILL): its write-ahead log stays beside the file."""
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(database)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None
    assert writer.stdout.readline().strip() == "written"
    writer.kill()
    writer.communicate()
    assert database.with_name(database.name + ".wal").exists()


@pytest.mark.parametrize("how", ["deleted", "rebuilt"])
def test_a_killed_writers_log_does_not_break_the_next_build(
    loopwright_home: Path, tmp_path: Path, how: str
) -> None:
    """A program that had the generated database open for writing was killed and left its
    write-ahead log beside it. Deleting the file, as the error said ("delete that file to
    have it built again"), or rebuilding it (``python -m loopwright.healthcare.data
    --force``) made a new database beside that old log, which DuckDB refuses ("WAL does not
    match database file"): every run failed the same way, however often it was rebuilt."""
    generated = ensure_database(rx_claims=ROWS)
    _killed_writer(generated)
    env = cli_env(loopwright_home)
    if how == "deleted":
        generated.unlink()
    else:
        rebuilt = subprocess.run(
            [sys.executable, "-m", "loopwright.healthcare.data", "--rows", str(ROWS), "--force"],
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert rebuilt.returncode == 0, rebuilt.stderr
    count = {"sql": "SELECT COUNT(*) AS n FROM rx_claims", "description": "c", "dataset_name": "n"}
    script = _script(tmp_path, "count", [{"call": "SQL", "input": count}, "Counted."])
    result = _lw(loopwright_home, tmp_path, "healthcare", "-m", script, "--rows", str(ROWS), "Hi")
    assert result.returncode == 0, result.stderr
    assert "WAL" not in result.stderr
    assert "Saved 1 row" in result.stdout
    assert not generated.with_name(generated.name + ".wal").exists()


def _waiting_on_lock(pid: int) -> bool:
    """Whether process ``pid`` waits for a ``flock`` (Linux's /proc/locks lists a blocked
    request as ``-> FLOCK ...``)."""
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if "->" in fields and "FLOCK" in fields and str(pid) in fields:
            return True
    return False


@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="needs Linux's /proc/locks")
def test_interrupted_while_another_process_builds_says_that_build_goes_on(
    loopwright_home: Path, tmp_path: Path
) -> None:
    """Ctrl-C on a `loopwright healthcare` that waited for another process's build said
    "the claims database was not built (nothing was kept)", while the other build went on
    and its file was kept."""
    import fcntl

    data = loopwright_home / "data" / "healthcare"
    data.mkdir(parents=True)
    target = data / f"claims-v2-{ROWS}-42.duckdb"
    script = _script(tmp_path, "answer", ["Answer."])
    args = ["healthcare", "-m", script, "--rows", str(ROWS), "Hi"]
    with open(target.with_name(target.name + ".lock"), "a+b") as lock:  # another build
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        process = subprocess.Popen(
            [sys.executable, "-m", "loopwright.cli.app", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(loopwright_home),
            cwd=tmp_path,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        try:
            while not _waiting_on_lock(process.pid):
                assert process.poll() is None
                time.sleep(0.05)
            process.send_signal(signal.SIGINT)
            _, stderr = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert process.returncode == 130
    said = stderr.strip().splitlines()[-1]
    assert said == (
        "error: interrupted while another process was building the claims database; that "
        "build goes on, and the next run uses its file"
    )
    assert not target.exists()
