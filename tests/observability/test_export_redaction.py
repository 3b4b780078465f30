"""``loopwright sessions export`` redacts secrets: a transcript is made to be shared, and
the session holds prompts, commands and database URLs as they were typed."""

from __future__ import annotations

import json
from pathlib import Path

from loopwright.messages import ImageBlock, Message, TextBlock, ToolResultBlock, ToolUseBlock
from loopwright.policy.redaction import Redactor
from loopwright.sessions import Session, SQLiteStore

from .test_cli import cli

ANTHROPIC_KEY = "sk-ant-api03-" + "A1b2C3d4E5f6G7h8I9j0" * 4
GITHUB_TOKEN = "ghp_" + "Zy9Xw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0FeDcBa"
DB_PASSWORD = "hunter2-but-longer"
ENV_SECRET = "s3cr3t-value-from-the-environment"
PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQ"
    "AAAABJRU5ErkJggg=="
)


def _secret_session(home: Path) -> Session:
    """A saved session ``leaky`` with a secret in each place a transcript shows."""
    store = SQLiteStore(home / "sessions.db")
    try:
        session = Session.create(
            "leaky",
            root=home / "workspaces",
            store=store,
            metadata={"database": f"postgresql://analyst:{DB_PASSWORD}@db.internal:5432/claims"},
        )
        session.messages += [
            Message.user(f"Use the key {ANTHROPIC_KEY} to call the API"),
            Message(
                "assistant",
                [
                    TextBlock("Calling it."),
                    ToolUseBlock(
                        "call-1",
                        "Bash",
                        {"command": f"curl -H 'Authorization: token {GITHUB_TOKEN}' api"},
                    ),
                ],
            ),
            Message(
                "user",
                [
                    ToolResultBlock(
                        "call-1",
                        [TextBlock(f"echoed {ENV_SECRET}"), ImageBlock(PNG)],
                    )
                ],
            ),
            Message.assistant("Done."),
        ]
        session.summary = f"The user gave the key {ANTHROPIC_KEY}."
        session.save()
    finally:
        store.close()
    return session


def _assert_no_secret(text: str) -> None:
    for secret in (ANTHROPIC_KEY, GITHUB_TOKEN, DB_PASSWORD, ENV_SECRET):
        assert secret not in text, secret


def test_export_redacts_secrets_in_html_and_json(loopwright_home: Path) -> None:
    _secret_session(loopwright_home)
    env = {"MY_SERVICE_TOKEN": ENV_SECRET}

    page = cli(loopwright_home, "sessions", "export", "leaky", "-o", "-", **env)
    assert page.returncode == 0, page.stderr
    _assert_no_secret(page.stdout)
    assert "[REDACTED:anthropic_key]" in page.stdout
    assert "[REDACTED:env:MY_SERVICE_TOKEN]" in page.stdout
    assert f"data:image/png;base64,{PNG}" in page.stdout  # images are not touched

    printed = cli(loopwright_home, "sessions", "export", "leaky", "--json", "-o", "-", **env)
    assert printed.returncode == 0, printed.stderr
    _assert_no_secret(printed.stdout)
    data = json.loads(printed.stdout)
    assert data["messages"][0]["content"][0]["text"].startswith("Use the key [REDACTED:")
    command = data["messages"][1]["content"][1]["input"]["command"]
    assert GITHUB_TOKEN not in command
    assert "curl -H" in command
    assert "[REDACTED" in data["metadata"]["database"]
    assert data["metadata"]["database"].endswith("@db.internal:5432/claims")
    assert "[REDACTED:" in data["summary"]
    # conversation.json still reads back as messages
    assert [Message.from_dict(m).role for m in data["messages"]] == [
        "user",
        "assistant",
        "user",
        "assistant",
    ]


def test_no_redact_exports_the_session_as_stored_and_the_store_is_untouched(
    loopwright_home: Path,
) -> None:
    _secret_session(loopwright_home)
    raw = cli(loopwright_home, "sessions", "export", "leaky", "--json", "--no-redact", "-o", "-")
    assert raw.returncode == 0, raw.stderr
    assert ANTHROPIC_KEY in raw.stdout
    assert DB_PASSWORD in raw.stdout

    assert cli(loopwright_home, "sessions", "export", "leaky").returncode == 0
    store = SQLiteStore(loopwright_home / "sessions.db")
    try:
        kept = store.load("leaky")
    finally:
        store.close()
    assert kept is not None
    assert ANTHROPIC_KEY in kept.messages[0].text  # the export redacted a copy
    assert kept.metadata["database"].endswith(f":{DB_PASSWORD}@db.internal:5432/claims")


def test_redact_session_is_a_copy_with_every_part_redacted(tmp_path: Path) -> None:
    from loopwright.observability.transcript import redact_records, redact_session

    session = _secret_session(tmp_path)
    redactor = Redactor(environ={"MY_SERVICE_TOKEN": ENV_SECRET})
    copy = redact_session(session, redactor)
    assert copy.store is None
    assert copy.id == session.id
    assert copy.workspace_dir == session.workspace_dir
    _assert_no_secret(json.dumps([m.to_dict() for m in copy.messages]))
    _assert_no_secret(copy.summary + json.dumps(copy.metadata))
    assert ANTHROPIC_KEY in session.messages[0].text  # the original is unchanged
    records = [{"kind": "run", "detail": f"connect failed: {ANTHROPIC_KEY}", "duration_ms": 3}]
    assert redact_records(records, redactor) == [
        {"kind": "run", "detail": "connect failed: [REDACTED:anthropic_key]", "duration_ms": 3}
    ]
