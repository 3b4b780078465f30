"""Redaction: each known key format, the host's secret env values, and through a registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from loopwright.messages import ImageBlock, TextBlock
from loopwright.policy import Policy, Redactor
from loopwright.policy.redaction import is_secret_name
from loopwright.tools import ToolRegistry, tool

from .conftest import RegistryFactory, text

# Test values built from pieces, so no real-looking secret sits in the source as one string.
ANTHROPIC = "sk-ant-" + "api03-" + "Ab1_" * 12
OPENAI = "sk-" + "proj-" + "Zx9-" * 12
OPENAI_LEGACY = "sk-" + "T3BlbkFJ" * 5
AWS_ID = "AKIA" + "IOSFODNN7EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/" + "bPxRfiCYEXAMPLEKEY"
GITHUB = "ghp_" + "a1B2" * 9
GITHUB_PAT = "github_pat_" + "11AB" * 8
GITLAB = "glpat-" + "x7Y8" * 5
SLACK = "xoxb-" + "1234567890-" + "abcDEF" * 3
SLACK_HOOK = "https://hooks.slack.com/services/" + "T000/B000/" + "X" * 24
GOOGLE = "AIza" + "Sy" + "D1" * 16 + "x"
STRIPE = "sk_" + "live_" + "4eC39HqLyjWDarjtT1zdp7dc"
HUGGINGFACE = "hf_" + "abcdEFGH" * 4
JWT = "eyJ" + "hbGciOiJIUzI1NiJ9" + "." + "eyJ" + "zdWIiOiIxMjM0NTY3ODkwIn0" + "." + "dBjftJeZ4CVP"
PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIEowIBAAKCAQEA1234567890abcdef\nghijklmnopqrstuvwxyz==\n"
    "-----END RSA PRIVATE KEY-----"
)


@pytest.fixture
def redactor() -> Redactor:
    return Redactor(environ={})


@pytest.mark.parametrize(
    ("secret", "label"),
    [
        (ANTHROPIC, "anthropic_key"),
        (OPENAI, "openai_key"),
        (OPENAI_LEGACY, "openai_key"),
        (AWS_ID, "aws_access_key"),
        (GITHUB, "github_token"),
        (GITHUB_PAT, "github_token"),
        (GITLAB, "gitlab_token"),
        (SLACK, "slack_token"),
        (SLACK_HOOK, "slack_webhook"),
        (GOOGLE, "google_api_key"),
        (STRIPE, "stripe_key"),
        (HUGGINGFACE, "huggingface_token"),
        (JWT, "jwt"),
        (PEM, "private_key"),
    ],
)
def test_each_known_format_is_replaced_whole(redactor: Redactor, secret: str, label: str) -> None:
    text = f"before {secret} after"
    assert redactor.redact(text) == f"before [REDACTED:{label}] after"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            f"aws_secret_access_key = {AWS_SECRET}",
            "aws_secret_access_key = [REDACTED:aws_secret_key]",
        ),
        (
            'AWS_SECRET_ACCESS_KEY="' + AWS_SECRET + '"',
            'AWS_SECRET_ACCESS_KEY="[REDACTED:aws_secret_key]"',
        ),
        (
            "Authorization: Bearer abc123DEF456ghi789",
            "Authorization: Bearer [REDACTED:bearer_token]",
        ),
        ("authorization: basic dXNlcjpwYXNzd29yZA==", "authorization: basic [REDACTED:basic_auth]"),
        (
            "postgres://admin:hunter2hunter2@db:5432/app",
            "postgres://admin:[REDACTED:url_password]@db:5432/app",
        ),
        (f"Bearer {ANTHROPIC}", "Bearer [REDACTED:anthropic_key]"),
    ],
)
def test_contextual_formats_keep_the_context(redactor: Redactor, text: str, expected: str) -> None:
    assert redactor.redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "the bearer responsibilities are listed below",  # English, not a token
        "scikit-learn and sk-learn are fine",
        "AKIA is a prefix; AKIASHORT is not a key",
        "https://example.com/path and ftp://host/file",
        "ghp_short",
        "-----BEGIN PUBLIC KEY-----\nMIIBIjANBg\n-----END PUBLIC KEY-----",
        "basic arithmetic and a basic authorization scheme",
    ],
)
def test_ordinary_text_is_left_alone(redactor: Redactor, text: str) -> None:
    assert redactor.redact(text) == text


def test_an_unterminated_private_key_is_redacted_to_the_end(redactor: Redactor) -> None:
    cut = "key:\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA"
    assert redactor.redact(cut) == "key:\n[REDACTED:private_key]"


def test_several_secrets_in_one_text(redactor: Redactor) -> None:
    text = f"{AWS_ID}\n{GITHUB}\n{SLACK}"
    assert redactor.redact(text) == (
        "[REDACTED:aws_access_key]\n[REDACTED:github_token]\n[REDACTED:slack_token]"
    )


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("OPENAI_API_KEY", True),
        ("GITHUB_TOKEN", True),
        ("AWS_SECRET_ACCESS_KEY", True),
        ("AWS_ACCESS_KEY_ID", True),
        ("DB_PASSWORD", True),
        ("DB_PASS", True),
        ("MYSQL_PWD", True),
        ("SENTRY_DSN", True),
        ("session_cookie", True),
        ("PATH", False),
        ("HOME", False),
        ("PWD", False),
        ("OLDPWD", False),
        ("SSH_AUTH_SOCK", False),
        ("KEYBOARD_LAYOUT", False),
        ("MONKEY", False),
    ],
)
def test_secret_env_names(name: str, secret: bool) -> None:
    assert is_secret_name(name) is secret


def test_env_secrets_are_redacted_by_name() -> None:
    env = {
        "MY_SERVICE_TOKEN": "tok-7f3a9c2e1b",
        "DB_PASSWORD": "correct horse battery",
        "SHORT_KEY": "abc",  # too short to be meaningful
        "EDITOR": "vim-with-a-long-name",  # not a secret name
    }
    redactor = Redactor(environ=env)
    text = "token tok-7f3a9c2e1b, password correct horse battery, abc, vim-with-a-long-name"
    assert redactor.redact(text) == (
        "token [REDACTED:env:MY_SERVICE_TOKEN], password [REDACTED:env:DB_PASSWORD], abc, "
        "vim-with-a-long-name"
    )
    assert redactor.secret_names == ["env:DB_PASSWORD", "env:MY_SERVICE_TOKEN"]


def test_the_process_environment_is_read_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOPWRIGHT_TEST_SECRET", "s3cr3t-value-42")
    assert Redactor().redact("x s3cr3t-value-42 y") == "x [REDACTED:env:LOOPWRIGHT_TEST_SECRET] y"


def test_the_longest_env_value_wins() -> None:
    redactor = Redactor(environ={"A_TOKEN": "abcdefgh", "B_TOKEN": "abcdefgh-ijkl"})
    assert redactor.redact("abcdefgh-ijkl") == "[REDACTED:env:B_TOKEN]"


def test_extra_values_can_be_given() -> None:
    redactor = Redactor(environ={}, values={"customer_id": "CUST-0042-XYZ"})
    assert redactor.redact("id CUST-0042-XYZ") == "id [REDACTED:customer_id]"
    assert Redactor(environ={}, values=["hunter22"]).redact("hunter22") == "[REDACTED:secret]"


def test_values_and_blocks(redactor: Redactor) -> None:
    assert redactor.redact_value({"a": [GITHUB, 1, {"b": GITHUB}]}) == {
        "a": ["[REDACTED:github_token]", 1, {"b": "[REDACTED:github_token]"}]
    }
    image = ImageBlock("aGVsbG8=", "image/png")
    assert redactor.redact_content([TextBlock(GITHUB), image]) == [
        TextBlock("[REDACTED:github_token]"),
        image,
    ]


# --- through a real registry -------------------------------------------------------------


async def test_secrets_in_a_file_never_reach_the_model(
    make_registry: RegistryFactory, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACME_API_KEY", "acme-live-55c1d9e8f7")
    (workspace / "config.txt").write_text(
        f"anthropic={ANTHROPIC}\nacme=acme-live-55c1d9e8f7\nname=demo\n"
    )
    registry = make_registry(Policy(redact=True))
    result = await registry.execute("Read", {"file_path": "config.txt"})
    assert text(result) == (
        "1\tanthropic=[REDACTED:anthropic_key]\n2\tacme=[REDACTED:env:ACME_API_KEY]\n3\tname=demo"
    )


async def test_redaction_is_off_by_default(make_registry: RegistryFactory, workspace: Path) -> None:
    (workspace / "config.txt").write_text(f"key={GITHUB}\n")
    result = await make_registry(Policy()).execute("Read", {"file_path": "config.txt"})
    assert GITHUB in text(result)


async def test_a_secret_across_the_truncation_point_is_still_redacted(workspace: Path) -> None:
    @tool
    def dump() -> str:
        """A long output with a secret in the middle."""
        return "x" * 739 + " " + GITHUB + " " + "y" * 5000

    registry = ToolRegistry(
        workspace, max_output_chars=1000, policy=Policy(redact=Redactor(environ={}))
    )
    registry.register(dump)
    content = text(await registry.execute("dump", {}))
    assert GITHUB[:10] not in content
    assert "output truncated" in content
    saved = next((workspace / ".loopwright" / "tool-outputs").iterdir()).read_text()
    assert GITHUB not in saved  # the full output saved for the model is redacted too
    assert "[REDACTED:github_token]" in saved
