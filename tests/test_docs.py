"""Every code block in the README and docs/ is checked, so the documentation works as written.

A fenced block's info string says what is done with it:

- ```` ```python ````: run as a script (``python -c``); ``python no-run`` is only compiled
  (for code that needs an API key or runs forever); ``python pytest`` is written to a test
  file and run with pytest.
- ```` ```bash run ````: run with ``bash -euo pipefail`` (the CLI on the scripted model);
  other shell blocks are examples for a person and are not run.
- ``file=NAME`` (any language): the block is also written as ``NAME`` into the directory
  where this block and every later block of the same page run, so a page can build a small
  project step by step (``python file=prompt.py``, then ``from prompt import ...``).
  A Python file block is run as a module (its ``if __name__ == "__main__"`` part is not);
  a JSON, TOML or YAML file block must parse.

Each block runs in a fresh temporary directory with its own ``LOOPWRIGHT_HOME``, no API keys,
no observability or config variables from the caller's environment, and
``LOOPWRIGHT_MODEL=scripted``, so nothing leaves the machine and the output is repeatable;
``PORT`` names a free port on 127.0.0.1 for blocks that start a server.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from local_servers import free_port

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]
FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```(?P<info>[^\n`]*)\n(?P<code>.*?)^(?P=indent)```[ \t]*$",
    re.DOTALL | re.MULTILINE,
)
PYTHON = frozenset({"python", "py"})
SHELL = frozenset({"bash", "sh", "shell"})
TIMEOUT_S = 60

#: Variables of the caller's environment that would change what a block does (keys, models,
#: stores, observability switches, a user's config file); removed before every run.
SCRUBBED_PREFIXES = ("LOOPWRIGHT_", "OTEL_", "LANGFUSE_", "EVALS_", "ANTHROPIC_", "OPENAI_")
SCRUBBED = frozenset({"DEBUG", "FORCE_COLOR"})


@dataclass(frozen=True, slots=True)
class Block:
    """One fenced block of a page."""

    doc: Path
    line: int
    lang: str
    attrs: frozenset[str]
    file: str | None
    code: str

    @property
    def where(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"

    @property
    def runs(self) -> bool:
        if self.lang in PYTHON:
            return "no-run" not in self.attrs
        return self.lang in SHELL and "run" in self.attrs


def parse(doc: Path) -> list[Block]:
    """The fenced blocks of a Markdown page, in order."""
    text = doc.read_text(encoding="utf-8")
    blocks = []
    for match in FENCE.finditer(text):
        words = match["info"].split()
        lang = words[0].lower() if words else ""
        file = next((w.removeprefix("file=") for w in words if w.startswith("file=")), None)
        attrs = frozenset(w for w in words[1:] if not w.startswith("file="))
        line = text.count("\n", 0, match.start()) + 2  # the first line of code
        code = textwrap.dedent(match["code"])
        blocks.append(Block(doc, line, lang, attrs, file, code))
    return blocks


def _all_blocks() -> list[Block]:
    return [block for doc in DOCS if doc.exists() for block in parse(doc)]


BLOCKS = _all_blocks()
CHECKED = [b for b in BLOCKS if b.runs or b.file is not None or b.lang in PYTHON]


def files_before(block: Block, blocks: list[Block]) -> list[Block]:
    """The file blocks of ``block``'s page up to and including ``block``, in order."""
    return [b for b in blocks if b.doc == block.doc and b.file is not None and b.line <= block.line]


def environment(tmp_path: Path) -> dict[str, str]:
    """The environment a block runs in: isolated, offline, on the scripted model."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(SCRUBBED_PREFIXES) and name not in SCRUBBED
    }
    home = tmp_path / "user-home"
    home.mkdir(exist_ok=True)
    env.update(
        LOOPWRIGHT_HOME=str(tmp_path / "loopwright-home"),
        LOOPWRIGHT_MODEL="scripted",
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_CACHE_HOME=str(home / ".cache"),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        NO_COLOR="1",
        COLUMNS="100",
        PORT=str(free_port()),  # for blocks that start a server: `--port "$PORT"`
    )
    return env


def run_block(
    block: Block, tmp_path: Path, blocks: list[Block] | None = None
) -> subprocess.CompletedProcess[str]:
    """Lay out the page's files so far in ``tmp_path`` and run ``block`` there (``blocks``:
    the pages' blocks, default every block of the docs)."""
    for earlier in files_before(block, BLOCKS if blocks is None else blocks):
        assert earlier.file is not None
        target = tmp_path / earlier.file
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(earlier.code, encoding="utf-8")
    if block.lang in SHELL:
        command = ["bash", "-euo", "pipefail", "-c", block.code]
    elif "pytest" in block.attrs:
        name = block.file or "test_doc_block.py"
        (tmp_path / name).write_text(block.code, encoding="utf-8")
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", name]
    elif block.file is not None:
        runner = f"import runpy; runpy.run_path({block.file!r}, run_name='docs_check')"
        command = [sys.executable, "-c", runner]
    else:
        command = [sys.executable, "-c", block.code]
    return subprocess.run(
        command,
        cwd=tmp_path,
        env=environment(tmp_path),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )


def check_data(block: Block) -> None:
    """A data file block must parse in its language."""
    if block.lang == "json":
        json.loads(block.code)
    elif block.lang == "toml":
        tomllib.loads(block.code)
    elif block.lang in ("yaml", "yml"):
        yaml.safe_load(block.code)


@pytest.mark.parametrize("block", CHECKED, ids=[b.where for b in CHECKED])
def test_code_block(block: Block, tmp_path: Path) -> None:
    if block.lang in PYTHON:
        compile(block.code, block.where, "exec")  # even blocks that are not run
    if not block.runs:
        check_data(block)
        return
    done = run_block(block, tmp_path)
    assert done.returncode == 0, (
        f"{block.where} failed (exit status {done.returncode}):\n{done.stdout}\n{done.stderr}"
    )


def test_readme_example_does_what_it_says(tmp_path: Path) -> None:
    example = next(b for b in BLOCKS if b.doc.name == "README.md" and b.lang in PYTHON)
    done = run_block(example, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "[shout] HELLO WORLD" in done.stdout
    assert "saved it to hello.txt" in done.stdout
    written = list((tmp_path / "loopwright-home" / "workspaces").glob("*/hello.txt"))
    assert [p.read_text() for p in written] == ["HELLO WORLD"]


# --- the checker itself --------------------------------------------------------------------


def test_info_strings_are_read_as_documented(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "Text.\n\n```python no-run\nraise SystemExit(1)\n```\n\n"
        "1. a step\n\n   ```bash run\n   echo hi\n   ```\n\n"
        '```json file=conf/a.json\n{"a": 1}\n```\n\n```bash\nrm -rf /\n```\n'
    )
    blocks = parse(page)
    assert [(b.lang, sorted(b.attrs), b.file, b.runs) for b in blocks] == [
        ("python", ["no-run"], None, False),
        ("bash", ["run"], None, True),
        ("json", [], "conf/a.json", False),
        ("bash", [], None, False),
    ]
    assert blocks[1].code == "echo hi\n"  # an indented block is dedented
    assert blocks[1].line == 10


def test_file_blocks_reach_later_blocks_of_the_same_page(tmp_path: Path) -> None:
    page = ROOT / "docs" / "_test_page.md"  # never written: the blocks are built by hand
    made = Block(page, 1, "python", frozenset(), "helper.py", "VALUE = 41\n")
    user = Block(
        page, 5, "python", frozenset(), None, "from helper import VALUE\nprint(VALUE + 1)\n"
    )
    done = run_block(user, tmp_path, [made, user])
    assert done.returncode == 0, done.stderr
    assert done.stdout == "42\n"


def test_blocks_run_without_the_callers_keys_or_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-not-for-docs")
    monkeypatch.setenv("LOOPWRIGHT_STORE", "postgresql://nowhere/db")
    monkeypatch.setenv("DEBUG", "1")
    script = (
        "import os; print(sorted(k for k in ('ANTHROPIC_API_KEY', 'LOOPWRIGHT_STORE', 'DEBUG') "
        "if k in os.environ), os.environ['LOOPWRIGHT_MODEL'])"
    )
    block = Block(ROOT / "docs" / "_test_page.md", 1, "python", frozenset(), None, script)
    done = run_block(block, tmp_path, [block])
    assert done.stdout.strip() == "[] scripted"


# --- coverage: the reference pages name everything there is ---------------------------------


def _section(text: str, heading: str) -> str:
    """The text under ``heading`` up to the next heading of the same or a higher level."""
    start = text.index(heading)
    level = len(heading) - len(heading.lstrip("#"))
    rest = text[start + len(heading) :]
    stop = re.search(rf"^#{{1,{level}}} ", rest, re.MULTILINE)
    return rest[: stop.start()] if stop else rest


def test_the_tool_reference_covers_every_builtin_tool(tmp_path: Path) -> None:
    from loopwright import Consult, Delegate, ScriptedModel
    from loopwright.policy.kinds import BUILTIN_KINDS, declared_kind
    from loopwright.tools import (
        HTTP,
        EditTool,
        GlobTool,
        GrepTool,
        MemoryTools,
        PythonTools,
        ReadTool,
        SearchTools,
        ShellTools,
        TodoWriteTool,
        ToolRegistry,
        WriteTool,
    )
    from loopwright.tools.sql import SQL

    registry = ToolRegistry(tmp_path)
    registry.register_all(
        [
            ReadTool,
            WriteTool,
            EditTool,
            GlobTool,
            GrepTool,
            ShellTools("process"),
            PythonTools("process"),
            TodoWriteTool,
            SearchTools(),
            MemoryTools(":memory:"),
            HTTP(allow_domains=["example.com"]),
            SQL("duckdb://:memory:"),
            Consult(ScriptedModel(["ok"])),
            Delegate(allow_custom=True),
        ]
    )
    assert set(registry.names) == set(BUILTIN_KINDS), "a built-in tool is missing here"
    text = (ROOT / "docs" / "tools.md").read_text()
    for name, tool in registry.tools.items():
        section = _section(text, f"### `{name}`")
        kind = declared_kind(name, tool)
        assert f"kind **{kind}**" in section.lower(), f"docs/tools.md: {name} is kind **{kind}**"
        for parameter in tool.schema["input_schema"].get("properties", {}):
            assert f"`{parameter}`" in section, f"docs/tools.md: {name} lacks `{parameter}`"


def test_the_cli_page_covers_every_command() -> None:
    import typer.main

    from loopwright.cli.app import app

    text = (ROOT / "docs" / "cli.md").read_text()
    group = typer.main.get_group(app)
    for name, command in group.commands.items():
        assert f"loopwright {name}" in text, f"docs/cli.md does not show `loopwright {name}`"
        for sub in getattr(command, "commands", {}):
            shown = f"loopwright {name} {sub}"
            assert shown in text, f"docs/cli.md does not show `{shown}`"
        for parameter in command.params:
            for option in parameter.opts:
                if option.startswith("--") and option != "--help":
                    assert option in text, f"docs/cli.md: `loopwright {name}` lacks {option}"


def anchors(doc: Path) -> set[str]:
    """The anchors of a page's headings, as GitHub makes them (code blocks left out)."""
    text = FENCE.sub("", doc.read_text(encoding="utf-8"))
    found = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *#*$", text, re.MULTILINE):
        found.add(re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-"))
    return found


def test_links_point_at_files_and_headings_that_exist() -> None:
    link = re.compile(r"\]\((?!https?://|mailto:)([^)#\s]*)(?:#([^)\s]*))?\)")
    broken = []
    for doc in DOCS:
        if not doc.exists():
            continue
        for target, anchor in link.findall(doc.read_text(encoding="utf-8")):
            path = doc.parent / target if target else doc
            if not path.exists():
                broken.append(f"{doc.relative_to(ROOT)} -> {target}")
            elif anchor and path.suffix == ".md" and anchor not in anchors(path):
                broken.append(f"{doc.relative_to(ROOT)} -> {target}#{anchor}")
    assert not broken, "broken links: " + ", ".join(broken)


def test_anchors_are_made_as_on_github(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n\n## 4. Add security hooks\n\n### `loopwright mcp serve`\n\n"
        "## `loopwright.toml` from Python\n\n```bash\n# not a heading\n```\n"
    )
    assert anchors(page) == {
        "title",
        "4-add-security-hooks",
        "loopwright-mcp-serve",
        "loopwrighttoml-from-python",
    }


def test_shell_examples_name_real_commands() -> None:
    """Shell blocks that are not run still name loopwright commands that exist."""
    import typer.main

    from loopwright.cli.app import app

    commands = set(typer.main.get_group(app).commands)
    unknown = []
    for block in BLOCKS:
        if block.lang not in SHELL:
            continue
        for line in block.code.splitlines():
            try:
                words = shlex.split(line, comments=True)
            except ValueError:  # a quote that continues on the next line
                continue
            while words and "=" in words[0] and not words[0].startswith("-"):
                words = words[1:]  # VAR=value prefixes
            named = words[1] if len(words) >= 2 and words[0] == "loopwright" else "-"
            if not named.startswith("-") and named not in commands:
                unknown.append(f"{block.where}: loopwright {named}")
    assert not unknown, "unknown commands in the docs: " + ", ".join(unknown)
