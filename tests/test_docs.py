"""Every Python code block in the README and docs/ runs as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def _blocks() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        if doc.exists():
            for index, code in enumerate(BLOCK.findall(doc.read_text())):
                found.append((f"{doc.relative_to(ROOT)}#{index + 1}", code))
    return found


@pytest.mark.parametrize(("where", "code"), _blocks(), ids=[w for w, _ in _blocks()])
def test_code_block_runs(where: str, code: str, tmp_path: Path) -> None:
    env = {**os.environ, "LOOPWRIGHT_HOME": str(tmp_path / "home")}
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"{where} failed:\n{done.stderr}"


def test_readme_example_does_what_it_says(tmp_path: Path) -> None:
    code = _blocks()[0][1]
    env = {**os.environ, "LOOPWRIGHT_HOME": str(tmp_path / "home")}
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "[shout] HELLO WORLD" in done.stdout
    assert "saved it to hello.txt" in done.stdout
    written = list((tmp_path / "home" / "workspaces").glob("*/hello.txt"))
    assert [p.read_text() for p in written] == ["HELLO WORLD"]
