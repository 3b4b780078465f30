"""Redaction of secret values from tool output before it reaches the model or a log.

Two sources of secrets are recognised:

- **known key formats** (:data:`DEFAULT_PATTERNS`): Anthropic, OpenAI, AWS, GitHub, GitLab,
  Slack, Google, Stripe and Hugging Face keys, JSON Web Tokens, private-key PEM blocks,
  ``Bearer``/``Basic`` authorization values and passwords in URLs;
- **the host's secret environment values**: every variable whose name looks secret (``KEY``,
  ``TOKEN``, ``SECRET``, ``PASSWORD``... see :func:`is_secret_name`) and whose value is at
  least :data:`MIN_SECRET_LENGTH` characters long, read when the :class:`Redactor` is made.

Each secret is replaced by a marker naming what it was, such as ``[REDACTED:anthropic_key]``
or ``[REDACTED:env:GITHUB_TOKEN]``, so the model knows a value was there and why it cannot
see it. Redaction is a safety net for output, not a way to give a tool a secret safely:
encoded forms of a value (base64, URL-encoded) are not recognised.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from loopwright.messages import TextBlock

#: Environment values shorter than this are not treated as secrets ("1", "true", "dev").
MIN_SECRET_LENGTH = 8

_SECRET_WORDS = ("TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "APIKEY", "API_KEY")
_SECRET_PARTS = frozenset({"KEY", "PASS", "PWD", "AUTH", "DSN", "COOKIE", "PRIVATE"})
_NOT_SECRET = frozenset({"PWD", "OLDPWD", "SSH_AUTH_SOCK", "GPG_AGENT_INFO"})


def is_secret_name(name: str) -> bool:
    """Whether an environment variable's name says it holds a secret.

    True when the name contains ``TOKEN``, ``SECRET``, ``PASSWORD``, ``PASSWD``,
    ``CREDENTIAL`` or ``API_KEY``, or has ``KEY``, ``PASS``, ``PWD``, ``AUTH``, ``DSN``,
    ``COOKIE`` or ``PRIVATE`` as one of its ``_``-separated parts (``AWS_ACCESS_KEY_ID``,
    ``DB_PASS``); ``PWD``, ``OLDPWD`` and ``SSH_AUTH_SOCK`` are not secrets.
    """
    upper = name.upper()
    if upper in _NOT_SECRET:
        return False
    if any(word in upper for word in _SECRET_WORDS):
        return True
    return any(part in _SECRET_PARTS for part in upper.split("_"))


@dataclass(frozen=True, slots=True)
class SecretPattern:
    """One known secret format.

    ``regex`` finds it; when the regex has a group named ``secret``, only that group is
    replaced (``Bearer [REDACTED:bearer_token]``), otherwise the whole match. ``hints`` are
    literal strings one of which appears in every match: when none is in the text the regex
    is not run at all (most outputs contain no secret, so most checks end there).
    """

    name: str
    regex: re.Pattern[str]
    hints: tuple[str, ...] = ()


def _pattern(name: str, regex: str, *hints: str, flags: int = 0) -> SecretPattern:
    return SecretPattern(name, re.compile(regex, flags), hints)


#: Known secret formats, most specific first (an Anthropic key also looks like an OpenAI one).
DEFAULT_PATTERNS: tuple[SecretPattern, ...] = (
    _pattern(
        "private_key",
        r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----.*?"
        r"(?:-----END[A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----|\Z)",
        "PRIVATE KEY",
        flags=re.DOTALL,
    ),
    _pattern("anthropic_key", r"sk-ant-[A-Za-z0-9_-]{20,}", "sk-ant-"),
    _pattern(
        "openai_key",
        r"(?<![A-Za-z0-9_-])sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}",
        "sk-",
    ),
    _pattern(
        "aws_access_key",
        r"(?<![A-Z0-9])(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}(?![A-Z0-9])",
        "AKIA",
        "ASIA",
        "ABIA",
        "ACCA",
    ),
    _pattern(
        "aws_secret_key",
        r"(?i:aws_?secret_?(?:access_?)?key)[\"']?\s*[:=]\s*[\"']?"
        r"(?P<secret>[A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])",
        "ecret",
        "ECRET",
    ),
    _pattern(
        "github_token",
        r"(?<![A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})",
        "ghp_",
        "gho_",
        "ghu_",
        "ghs_",
        "ghr_",
        "github_pat_",
    ),
    _pattern("gitlab_token", r"glpat-[A-Za-z0-9_-]{20,}", "glpat-"),
    _pattern("slack_token", r"xox[abposre]-[A-Za-z0-9-]{10,}", "xox"),
    _pattern(
        "slack_webhook",
        r"https://hooks\.slack\.com/services/[A-Za-z0-9_/-]{20,}",
        "hooks.slack.com",
    ),
    _pattern("google_api_key", r"AIza[0-9A-Za-z_-]{35}", "AIza"),
    _pattern("stripe_key", r"(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}", "_live_", "_test_"),
    _pattern("huggingface_token", r"(?<![A-Za-z0-9_])hf_[A-Za-z0-9]{30,}", "hf_"),
    _pattern(
        "jwt",
        r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
        "eyJ",
    ),
    # "Bearer <token>": a token that is only lower-case letters is English ("bearer bonds")
    _pattern(
        "bearer_token",
        r"(?i:\bbearer)\s+(?P<secret>(?![a-z]+(?![A-Za-z0-9._~+/=-]))"
        r"[A-Za-z0-9._~+/-]{16,}=*)",
        "earer",
        "EARER",
    ),
    _pattern(
        "basic_auth",
        r"(?i:authorization)[\"']?\s*[:=]\s*[\"']?(?i:basic)\s+(?P<secret>[A-Za-z0-9+/]{8,}=*)",
        "asic",
        "ASIC",
    ),
    _pattern(
        "url_password",
        r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]+:(?P<secret>(?!\[REDACTED)[^\s@/]+)@",
        "://",
    ),
)


class Redactor:
    """Replaces secrets in text with ``[REDACTED:<what>]`` markers.

    ``environ`` is the environment whose secret-looking values are redacted (``None``: the
    process's environment, read now; ``{}``: none); ``values`` adds secrets of your own, as a
    mapping of label to value or a list of values; ``patterns`` are the known formats
    (:data:`DEFAULT_PATTERNS` unless given).
    """

    def __init__(
        self,
        *,
        environ: Mapping[str, str] | None = None,
        values: Mapping[str, str] | Iterable[str] = (),
        patterns: Iterable[SecretPattern] = DEFAULT_PATTERNS,
    ) -> None:
        self.patterns = tuple(patterns)
        env = os.environ if environ is None else environ
        labelled: dict[str, str] = {}
        for name, value in env.items():
            if len(value) >= MIN_SECRET_LENGTH and is_secret_name(name):
                labelled.setdefault(value, f"env:{name}")
        extra = values.items() if isinstance(values, Mapping) else ((None, v) for v in values)
        for label, value in extra:
            if value:
                labelled.setdefault(value, label or "secret")
        self._labels = labelled
        #: the literal values, longest first, so a value containing another wins
        self._values_regex = (
            re.compile("|".join(re.escape(v) for v in sorted(labelled, key=len, reverse=True)))
            if labelled
            else None
        )

    @property
    def secret_names(self) -> list[str]:
        """Labels of the literal secrets known (``env:NAME`` for environment values)."""
        return sorted(set(self._labels.values()))

    def redact(self, text: str) -> str:
        """``text`` with every recognised secret replaced by its marker."""
        if self._values_regex is not None:
            labels = self._labels
            text = self._values_regex.sub(lambda m: f"[REDACTED:{labels[m.group(0)]}]", text)
        for pattern in self.patterns:
            if pattern.hints and not any(hint in text for hint in pattern.hints):
                continue
            marker = f"[REDACTED:{pattern.name}]"
            if "secret" in pattern.regex.groupindex:
                text = pattern.regex.sub(functools.partial(_replace_group, marker=marker), text)
            else:
                text = pattern.regex.sub(marker, text)
        return text

    def redact_content(self, content: Any) -> Any:
        """A tool result's ``content`` (text or blocks) with secrets redacted."""
        if isinstance(content, str):
            return self.redact(content)
        if isinstance(content, list):
            return [
                TextBlock(self.redact(block.text)) if isinstance(block, TextBlock) else block
                for block in content
            ]
        return content

    def redact_value(self, value: Any) -> Any:
        """A JSON-like value (a tool input) with every string in it redacted."""
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, dict):
            return {key: self.redact_value(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self.redact_value(item) for item in value]
        return value


def _replace_group(match: re.Match[str], marker: str) -> str:
    start, end = match.span("secret")
    whole = match.group(0)
    offset = match.start()
    return whole[: start - offset] + marker + whole[end - offset :]
