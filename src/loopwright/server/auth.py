"""Who is calling: bearer tokens mapped to users, and where the mapping comes from.

A token map is ``{token: user}``. It is read from ``LOOPWRIGHT_TOKENS``
(``"token1=alice,token2=bob"``) and/or a file (``--tokens-file``): TOML (``[tokens]`` table of
``token = "user"``) or JSON (``{"tokens": {"token": "user"}}`` or the bare object). Several
tokens may map to one user (one per device, say); the user is what owns sessions.

With no tokens at all, authentication is off and every caller is the user ``local``: the
server then refuses to listen anywhere but loopback unless told ``--insecure-no-auth``
(see :mod:`loopwright.server.serving`).
"""

from __future__ import annotations

import hmac
import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

#: the user every caller is when authentication is off
LOCAL_USER = "local"
TOKENS_ENV = "LOOPWRIGHT_TOKENS"
TOKENS_FILE_ENV = "LOOPWRIGHT_TOKENS_FILE"

_USER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}")


class TokenConfigError(ValueError):
    """The token configuration cannot be used; the message says how to fix it."""


@dataclass(frozen=True, slots=True)
class User:
    """The caller of a request: a user name, and the token they used (``None``: no auth)."""

    name: str
    token: str | None = None


class TokenMap:
    """Bearer tokens and the users they stand for; empty means authentication is off."""

    def __init__(self, tokens: Mapping[str, str] | None = None) -> None:
        checked: dict[str, str] = {}
        for token, user in (tokens or {}).items():
            checked[_check_token(token)] = _check_user(user, token)
        self._tokens = checked

    @property
    def enabled(self) -> bool:
        """Whether requests must carry a token."""
        return bool(self._tokens)

    @property
    def users(self) -> set[str]:
        return set(self._tokens.values())

    def __len__(self) -> int:
        return len(self._tokens)

    def user_for(self, token: str) -> User | None:
        """The user a token stands for, or ``None``; compares in constant time per token."""
        found: User | None = None
        given = token.encode()
        for known, user in self._tokens.items():
            # check every token, so timing does not say how close a guess was
            if hmac.compare_digest(known.encode(), given):
                found = User(user, known)
        return found

    @classmethod
    def from_sources(
        cls,
        *,
        env: Mapping[str, str] | None = None,
        file: str | os.PathLike[str] | None = None,
    ) -> TokenMap:
        """Tokens from ``LOOPWRIGHT_TOKENS`` and from ``file`` (or ``LOOPWRIGHT_TOKENS_FILE``)."""
        env = os.environ if env is None else env
        tokens: dict[str, str] = {}
        text = env.get(TOKENS_ENV, "").strip()
        if text:
            tokens.update(parse_token_list(text))
        path = file if file is not None else (env.get(TOKENS_FILE_ENV, "").strip() or None)
        if path is not None:
            for token, user in load_token_file(path).items():
                if tokens.get(token, user) != user:
                    raise TokenConfigError(
                        f"a token in {path} is also in {TOKENS_ENV} for another user; give "
                        "each token one user"
                    )
                tokens[token] = user
        return cls(tokens)


def parse_token_list(text: str) -> dict[str, str]:
    """``"token1=alice,token2=bob"`` as ``{"token1": "alice", "token2": "bob"}``."""
    tokens: dict[str, str] = {}
    for index, item in enumerate(text.split(","), start=1):
        item = item.strip()
        if not item:
            continue
        token, sep, user = item.partition("=")
        if not sep:
            raise TokenConfigError(
                f"{TOKENS_ENV} item {index} has no '='; write it as "
                '"token1=alice,token2=bob" (token, then the user it stands for)'
            )
        token, user = token.strip(), user.strip()
        if token in tokens and tokens[token] != user:
            raise TokenConfigError(
                f"{TOKENS_ENV} gives item {index}'s token to two users; give each token one user"
            )
        tokens[token] = user
    return tokens


def load_token_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """Tokens from a TOML or JSON file (chosen by the extension; TOML otherwise)."""
    file = Path(path).expanduser()
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise TokenConfigError(
            f"cannot read the tokens file {file} ({exc.strerror or exc}); check the path given "
            f"with --tokens-file or {TOKENS_FILE_ENV}"
        ) from None
    example = (
        '{"tokens": {"TOKEN": "alice"}}'
        if file.suffix.lower() == ".json"
        else '[tokens]\nTOKEN = "alice"'
    )
    try:
        if file.suffix.lower() == ".json":
            data = json.loads(raw)
        else:
            data = tomllib.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise TokenConfigError(
            f"the tokens file {file} is not valid {file.suffix.lstrip('.').upper() or 'TOML'} "
            f"({exc}); write it like: {example}"
        ) from None
    if isinstance(data, dict) and isinstance(data.get("tokens"), dict):
        data = data["tokens"]
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise TokenConfigError(
            f"the tokens file {file} must map each token to a user name; write it like: {example}"
        )
    return dict(data)


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or ``None``."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _check_token(token: object) -> str:
    if not isinstance(token, str) or not token or token != token.strip() or " " in token:
        raise TokenConfigError(
            "a token is empty or has spaces; use tokens of letters, digits and punctuation "
            "(e.g. from `python -c 'import secrets; print(secrets.token_urlsafe())'`)"
        )
    return token


def _check_user(user: object, token: str) -> str:
    if not isinstance(user, str) or not _USER.fullmatch(user):
        raise TokenConfigError(
            f"the user name {user!r} for token {token[:4]}... is not valid; use 1-128 letters, "
            "digits, '_', '.', '@' or '-'"
        )
    return user
