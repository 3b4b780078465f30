"""Settings: flags, then environment variables, then loopwright.toml, then defaults."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from loopwright.settings import SETTINGS, apply_config, config_path, markdown_table, read_config


def test_the_file_fills_only_what_the_environment_leaves_unset(tmp_path: Path) -> None:
    path = tmp_path / "loopwright.toml"
    path.write_text(
        'model = "scripted"\nmax_turns = 7\ndebug = true\n'
        '[server]\ntokens = ["t1=alice", "t2=bob"]\n'
    )
    env = {"LOOPWRIGHT_CONFIG": str(path), "LOOPWRIGHT_MAX_TURNS": "3"}
    assert apply_config(env) == path
    assert env["LOOPWRIGHT_MODEL"] == "scripted"
    assert env["LOOPWRIGHT_MAX_TURNS"] == "3"  # the environment wins over the file
    assert env["DEBUG"] == "1"
    assert env["LOOPWRIGHT_TOKENS"] == "t1=alice,t2=bob"


def test_bad_files_say_what_is_wrong(tmp_path: Path) -> None:
    path = tmp_path / "loopwright.toml"
    path.write_text("modle = 'x'\n")
    with pytest.raises(ValueError, match=r"unknown setting 'modle'; the settings are: .*model"):
        read_config(path)
    path.write_text("model = \n")
    with pytest.raises(ValueError, match="not valid TOML"):
        read_config(path)
    with pytest.raises(ValueError, match="not a file"):
        config_path({"LOOPWRIGHT_CONFIG": str(tmp_path / "missing.toml")})


def test_api_keys_are_never_read_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "loopwright.toml"
    path.write_text('model = "scripted"\n')
    env = {"LOOPWRIGHT_CONFIG": str(path)}
    apply_config(env)
    assert "ANTHROPIC_API_KEY" not in env
    assert all("API_KEY" not in s.env for s in SETTINGS)


def test_the_cli_honours_flags_then_env_then_file(tmp_path: Path) -> None:
    (tmp_path / "loopwright.toml").write_text('model = "scripted"\nmax_turns = 1\n')
    exe = [sys.executable, "-m", "loopwright.cli.app"]
    env = {
        "PATH": "/usr/bin:/bin",
        "LOOPWRIGHT_HOME": str(tmp_path / "home"),
        "HOME": str(tmp_path),
    }
    # the file's max_turns=1 stops the demo script (which calls a tool first) at the limit
    limited = subprocess.run(
        [*exe, "run", "write hello.txt"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert limited.returncode == 2, limited.stderr
    assert "max_turns" in limited.stdout
    # a flag wins over the file
    flagged = subprocess.run(
        [*exe, "run", "--max-turns", "10", "write hello.txt"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert flagged.returncode == 0, flagged.stdout + flagged.stderr
    shown = subprocess.run([*exe, "config"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert shown.returncode == 0
    assert "loopwright.toml" in shown.stdout
    line = next(x for x in shown.stdout.splitlines() if x.startswith("model "))
    assert "scripted" in line
    assert "loopwright.toml" in line


def test_the_documented_table_lists_every_setting() -> None:
    table = markdown_table()
    for setting in SETTINGS:
        assert f"`{setting.env}`" in table
    docs = Path(__file__).parent.parent / "docs" / "configuration.md"
    if docs.exists():
        assert table in docs.read_text(), "docs/configuration.md: paste settings.markdown_table()"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1", True), (" TRUE ", True), ("yes", True), ("On", True),
        ("0", False), ("false", False), (" NO", False), ("off", False),
        ("", None), (None, None), ("auto", None), ("2", None), ("/tmp/audit.jsonl", None),
    ],
)  # fmt: skip
def test_one_reading_of_on_and_off_for_every_switch(raw: str | None, expected: bool | None) -> None:
    from loopwright.settings import switch

    assert switch(raw) is expected


def test_true_and_false_are_for_the_switches(tmp_path: Path) -> None:
    """A TOML false meant "the default" for every setting (stats = false left stats on);
    then "0" for any setting whose default was not empty, which made home = false a
    directory named 0. A switch takes true/false as 1/0; another setting refuses them."""
    from loopwright.settings import SETTINGS, SWITCHES, read_config

    assert {s.key for s in SETTINGS} >= SWITCHES
    config = tmp_path / "loopwright.toml"
    config.write_text("stats = false\ndebug = true\nmask_identifiers = false\n")
    assert read_config(config) == {
        "LOOPWRIGHT_STATS": "0",
        "DEBUG": "1",
        "LOOPWRIGHT_MASK_IDENTIFIERS": "0",
    }
    config.write_text("[evals]\nenabled = false\n")
    assert read_config(config) == {"EVALS_ENABLED": "0"}
    for line in ("home = false", "model = true", "max_turns = false"):
        config.write_text(line + "\n")
        key = line.split()[0]
        with pytest.raises(ValueError, match=rf"{key} takes a value .*not true or false"):
            read_config(config)
