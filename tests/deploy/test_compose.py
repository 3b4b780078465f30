"""deploy/compose.yaml: the server and PostgreSQL agree on names, ports, users and volumes,
the server is published on 127.0.0.1 only by default, and the values it gets work."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from loopwright.server.app import DEFAULT_SHUTDOWN_GRACE_S
from loopwright.sessions.store import open_store
from postgres_server import PostgresServer, postgres_server  # noqa: F401

from .conftest import DEPLOY
from .dockerfile import Dockerfile

_VARIABLE = re.compile(r"\$\$|\$\{(\w+)(?:(:?[-?])([^}]*))?\}|\$(\w+)")
REQUIRED = {"POSTGRES_PASSWORD": "pw", "LOOPWRIGHT_TOKENS": "t0ken=alice"}


class MissingVariable(ValueError):
    pass


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Compose's variable interpolation: ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``,
    ``${VAR:?error}``, ``${VAR?error}``, ``$VAR``, ``$$``; through lists and mappings."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(4)
        operator, argument = match.group(2), match.group(3) or ""
        present = name in env
        empty_counts = operator is not None and operator.startswith(":")
        unset = not present or (empty_counts and env[name] == "")
        if operator in (":-", "-") and unset:
            return argument
        if operator in (":?", "?") and unset:
            raise MissingVariable(f"{name}: {argument}")
        return env.get(name, "")

    return _VARIABLE.sub(one, value)


def resolved(compose: dict[str, Any], env: Mapping[str, str] | None = None) -> dict[str, Any]:
    result = interpolate(compose, {**REQUIRED, **(env or {})})
    assert isinstance(result, dict)
    return result


def test_postgres_is_the_official_image_with_a_health_check_and_a_named_volume(
    compose: dict[str, Any],
) -> None:
    postgres = resolved(compose)["services"]["postgres"]
    assert re.fullmatch(r"postgres:\d+(-bookworm)?", postgres["image"])
    assert postgres["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL")
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    volume, path = postgres["volumes"][0].split(":")
    assert volume in compose["volumes"]
    assert path == "/var/lib/postgresql/data"


def test_the_server_waits_for_a_healthy_postgres_and_uses_it_for_sessions(
    compose: dict[str, Any],
) -> None:
    services = resolved(compose)["services"]
    server, postgres = services["server"], services["postgres"]
    assert server["depends_on"]["postgres"]["condition"] == "service_healthy"
    dsn = urlparse(server["environment"]["LOOPWRIGHT_STORE"])
    assert dsn.scheme == "postgresql"
    assert dsn.hostname == "postgres"  # the service name is its host name on the network
    assert dsn.port == 5432
    assert dsn.username == postgres["environment"]["POSTGRES_USER"]
    assert dsn.path.lstrip("/") == postgres["environment"]["POSTGRES_DB"]
    assert dsn.password is None
    # the password goes by PGPASSWORD (which libpq reads), from the same variable
    raw = compose["services"]
    password_var = re.match(r"\$\{(\w+)", raw["postgres"]["environment"]["POSTGRES_PASSWORD"])
    assert password_var is not None
    assert raw["server"]["environment"]["PGPASSWORD"].startswith(f"${{{password_var.group(1)}")


def test_secrets_come_from_the_environment_and_are_required(compose: dict[str, Any]) -> None:
    for name in REQUIRED:
        env = {k: v for k, v in REQUIRED.items() if k != name}
        with pytest.raises(MissingVariable, match=name) as caught:
            interpolate(compose, env)
        assert "deploy/.env" in str(caught.value)  # the message says where to set it
    server = resolved(compose)["services"]["server"]
    assert server["environment"]["LOOPWRIGHT_TOKENS"] == REQUIRED["LOOPWRIGHT_TOKENS"]
    assert server["environment"]["ANTHROPIC_API_KEY"] == ""  # optional, none by default


def test_the_server_is_published_on_loopback_only_unless_told(
    compose: dict[str, Any], dockerfile: Dockerfile
) -> None:
    exposed = dockerfile.final.last("EXPOSE").args.strip()
    for env, host in (({}, "127.0.0.1"), ({"LOOPWRIGHT_BIND": "0.0.0.0"}, "0.0.0.0")):
        ports = resolved(compose, env)["services"]["server"]["ports"]
        assert [p.rsplit(":", 2) for p in ports] == [[host, "8000", exposed]]
    assert "ports" not in compose["services"]["postgres"]  # the database stays internal


def test_volumes_hold_the_data_directory_and_the_shared_workspaces(
    compose: dict[str, Any], dockerfile: Dockerfile
) -> None:
    server = resolved(compose)["services"]["server"]
    image_env = dockerfile.final.env()
    mounts = dict(reversed(v.split(":")) for v in server["volumes"])
    workspaces = server["environment"]["LOOPWRIGHT_WORKSPACES"]
    assert mounts[workspaces] == "workspaces"
    assert mounts[image_env["LOOPWRIGHT_HOME"]] in compose["volumes"]
    assert workspaces in dockerfile.final.last("VOLUME").exec_form()
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            assert volume.split(":")[0] in compose["volumes"], f"undeclared volume {volume}"


def test_the_build_uses_the_dockerfile_from_the_repository_root(compose: dict[str, Any]) -> None:
    build = compose["services"]["server"]["build"]
    context = (DEPLOY / build["context"]).resolve()
    assert (context / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
    assert (context / "pyproject.toml").exists()


def test_the_bubblewrap_sandbox_gets_the_container_options_it_needs(
    compose: dict[str, Any],
) -> None:
    server = resolved(compose)["services"]["server"]
    assert server["environment"]["LOOPWRIGHT_SANDBOX"] == "bubblewrap"
    assert {"seccomp=unconfined", "apparmor=unconfined", "systempaths=unconfined"} <= set(
        server["security_opt"]
    )
    assert "privileged" not in server
    assert "cap_add" not in server
    fallback = resolved(compose, {"LOOPWRIGHT_SANDBOX": "process"})["services"]["server"]
    assert fallback["environment"]["LOOPWRIGHT_SANDBOX"] == "process"


def test_docker_waits_longer_than_the_server_lets_turns_finish(compose: dict[str, Any]) -> None:
    grace = compose["services"]["server"]["stop_grace_period"]
    seconds = re.fullmatch(r"(\d+)s", grace)
    assert seconds is not None
    assert int(seconds.group(1)) > DEFAULT_SHUTDOWN_GRACE_S


def test_the_store_address_works_against_a_real_postgres(
    compose: dict[str, Any],
    postgres_server: PostgresServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The compose DSN's user owns its database and the store creates its tables there; only
    the host and port are the test server's (no Docker network here)."""
    server_env = resolved(compose)["services"]["server"]["environment"]
    dsn = urlparse(server_env["LOOPWRIGHT_STORE"])
    user, database = dsn.username, dsn.path.lstrip("/")
    postgres_server.execute(
        f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{user}') THEN "
        f"CREATE ROLE {user} LOGIN; END IF; END $$"
    )
    name = f"{database}_{tmp_path.name[-12:]}".replace("-", "_").lower()
    postgres_server.execute(f'CREATE DATABASE "{name}" OWNER {user}')
    local = dsn._replace(netloc=f"{user}@127.0.0.1:{postgres_server.port}", path=f"/{name}")
    store = open_store(local.geturl())
    try:
        assert store.exists("nothing-yet") is False
        assert store.list() == []
    finally:
        store.close()
