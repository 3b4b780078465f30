"""deploy/Dockerfile, read as a structure (no Docker daemon here): what each stage installs,
who the server runs as, where data lives, and that its command and health check work against
the real server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

from local_servers import free_port

from .conftest import REPO
from .dockerfile import Dockerfile, Stage

REQUIRED_EXTRAS = {"anthropic", "openai", "sql", "mcp", "memory", "tracing", "server"}
SYSTEM_TOOLS = {"bubblewrap", "ripgrep", "git"}
ProbeStatus = Callable[[str], int]


def apt_installs(stage: Stage) -> list[list[str]]:
    return [c for c in stage.commands() if c[:2] == ["apt-get", "install"]]


def uv_syncs(stage: Stage) -> list[list[str]]:
    return [c for c in stage.commands() if c[:2] == ["uv", "sync"]]


def extras_of(command: list[str]) -> set[str]:
    return {command[i + 1] for i, word in enumerate(command) if word == "--extra"}


def healthcheck_command(dockerfile: Dockerfile) -> list[str]:
    args = dockerfile.final.last("HEALTHCHECK").args
    _, _, command = args.partition(" CMD ")
    from .dockerfile import Instruction

    return Instruction("CMD", command).exec_form()


def test_every_stage_starts_from_python_311_slim_bookworm(dockerfile: Dockerfile) -> None:
    assert [s.base for s in dockerfile.stages] == ["python:3.11-slim-bookworm"] * 2
    assert [s.name for s in dockerfile.stages] == ["build", "runtime"]


def test_the_runtime_installs_bubblewrap_ripgrep_and_git_and_nothing_recommended(
    dockerfile: Dockerfile,
) -> None:
    runtime = dockerfile.final
    installs = apt_installs(runtime)
    assert len(installs) == 1
    assert set(installs[0]) >= SYSTEM_TOOLS
    # no compiler or build tools in the image that runs
    assert not {"build-essential", "cmake", "gcc"} & set(installs[0])


@pytest.mark.parametrize("stage_name", ["build", "runtime"])
def test_apt_runs_lean_and_cleans_its_lists_in_the_same_layer(
    dockerfile: Dockerfile, stage_name: str
) -> None:
    stage = dockerfile.stage(stage_name)
    runs = [r for r in stage.all("RUN") if "apt-get install" in r.args]
    assert runs
    for run in runs:
        commands = stage.commands_of(run)
        update = commands.index(["apt-get", "update"])
        install = next(i for i, c in enumerate(commands) if c[:2] == ["apt-get", "install"])
        clean = commands.index(["rm", "-rf", "/var/lib/apt/lists/*"])
        assert update < install < clean
        assert {"-y", "--no-install-recommends"} <= set(commands[install])


def test_uv_comes_from_pypi_pinned_and_syncs_the_locked_extras(
    dockerfile: Dockerfile, pyproject_extras: set[str]
) -> None:
    build = dockerfile.stage("build")
    pip = [c for c in build.commands() if c[:2] == ["pip", "install"]]
    assert len(pip) == 1
    pinned = [w for w in pip[0] if w.startswith("uv==")]
    assert pinned == [f"uv=={build.variables['UV_VERSION']}"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", build.variables["UV_VERSION"])

    syncs = uv_syncs(build)
    assert len(syncs) == 2  # the dependencies (cached layer), then the project
    for sync in syncs:
        assert {"--frozen", "--no-dev"} <= set(sync)
        assert extras_of(sync) == REQUIRED_EXTRAS
    assert "--no-install-project" in syncs[0]
    assert "--no-editable" in syncs[1]  # a package in the venv: the image needs no src/
    assert pyproject_extras >= REQUIRED_EXTRAS
    # the local model is a build argument (it compiles llama.cpp), off by default
    assert "local" in pyproject_extras
    assert build.variables["LOCAL_MODEL"] == "0"
    assert all("--extra local" in r.args for r in build.all("RUN") if "uv sync" in r.args)


def test_the_environment_is_copied_to_the_runtime_where_its_path_is(
    dockerfile: Dockerfile,
) -> None:
    venv = dockerfile.stage("build").env()["UV_PROJECT_ENVIRONMENT"]
    copies = [c.args.split() for c in dockerfile.final.all("COPY")]
    assert ["--from=build", venv, venv] in copies
    assert dockerfile.final.env()["PATH"].startswith(f"{venv}/bin:")


def test_the_server_runs_as_an_unprivileged_user_that_owns_its_data(
    dockerfile: Dockerfile,
) -> None:
    runtime = dockerfile.final
    user = runtime.last("USER").args.strip()
    assert user not in ("root", "0", "")
    useradd = next(c for c in runtime.commands() if c[0] == "useradd")
    assert useradd[-1] == user
    uid = int(useradd[useradd.index("--uid") + 1])
    assert uid >= 1000
    keywords = [i.keyword for i in runtime.instructions]
    assert keywords.index("USER") < keywords.index("CMD")
    chown = next(c for c in runtime.commands() if c[0] == "chown")
    env = runtime.env()
    assert chown[1] == f"{user}:{user}"
    assert {env["LOOPWRIGHT_HOME"], env["LOOPWRIGHT_WORKSPACES"]} <= set(chown[2:])


def test_sessions_and_workspaces_live_on_volumes(dockerfile: Dockerfile) -> None:
    env = dockerfile.final.env()
    volumes = dockerfile.final.last("VOLUME").exec_form()
    assert env["LOOPWRIGHT_HOME"] in volumes
    assert env["LOOPWRIGHT_WORKSPACES"] in volumes
    assert env["LOOPWRIGHT_CACHE"].startswith(env["LOOPWRIGHT_HOME"] + "/")


def test_the_command_serves_the_exposed_port_and_the_health_check_probes_it(
    dockerfile: Dockerfile, probe_status: ProbeStatus
) -> None:
    runtime = dockerfile.final
    command = runtime.last("CMD").exec_form()
    assert command[:2] == ["loopwright", "serve"]
    host = command[command.index("--host") + 1]
    port = command[command.index("--port") + 1]
    assert host == "0.0.0.0"
    assert runtime.last("EXPOSE").args.split() == [port]
    check = healthcheck_command(dockerfile)
    found = re.search(r"http://[^'\"]+", " ".join(check))
    assert found is not None
    url = urlparse(found.group(0))
    assert (url.hostname, str(url.port), url.path) == ("127.0.0.1", port, "/healthz")
    assert probe_status(url.path) == 200


# --- the real command and health check, on 127.0.0.1 --------------------------------------


@pytest.fixture
def served(dockerfile: Dockerfile, tmp_path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """The image's CMD with its environment, listening on 127.0.0.1 (never beyond), its
    data directories under tmp_path."""
    runtime = dockerfile.final
    image_env = runtime.env()
    port = free_port()
    command = runtime.last("CMD").exec_form()
    command[command.index("--host") + 1] = "127.0.0.1"
    command[command.index("--port") + 1] = str(port)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC", "OPENAI"))}
    env.update(
        LOOPWRIGHT_HOME=str(tmp_path / "data"),
        LOOPWRIGHT_WORKSPACES=str(tmp_path / "workspaces"),
        LOOPWRIGHT_CACHE=str(tmp_path / "data" / "cache"),
        PYTHONUNBUFFERED=image_env["PYTHONUNBUFFERED"],
        LOOPWRIGHT_MODEL="scripted",
        LOOPWRIGHT_TOKENS="t0ken=alice",
    )
    env.pop("LOOPWRIGHT_STORE", None)
    executable = Path(sys.executable).parent / command[0]
    log = (tmp_path / "server.log").open("w")
    process = subprocess.Popen(
        [str(executable), *command[1:]],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        for _ in range(300):
            if process.poll() is not None:
                pytest.fail(f"the server exited: {(tmp_path / 'server.log').read_text()}")
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        yield port, env
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def test_the_health_check_command_passes_against_the_running_server(
    dockerfile: Dockerfile, served: tuple[int, dict[str, str]]
) -> None:
    port, env = served
    check = [part.replace(":8000/", f":{port}/") for part in healthcheck_command(dockerfile)]
    check[0] = str(Path(sys.executable).parent / check[0])
    result = subprocess.run(check, env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    # and the probes of the Kubernetes manifests: ready means the store answers
    assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200


def test_the_health_check_fails_when_nothing_answers(dockerfile: Dockerfile) -> None:
    port = free_port()
    check = [part.replace(":8000/", f":{port}/") for part in healthcheck_command(dockerfile)]
    check[0] = str(Path(sys.executable).parent / check[0])
    result = subprocess.run(check, capture_output=True, text=True, timeout=30)
    assert result.returncode != 0


# --- the build context ---------------------------------------------------------------------


def _regex(pattern: str) -> str:
    """A .dockerignore pattern as a regular expression (Go's filepath.Match, plus ``**``)."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return out


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule (the last matching pattern wins, ``!`` re-includes); a
    path is also left out when one of its parent directories is."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        regex = _regex(pattern.removeprefix("!").strip("/"))
        if any(re.fullmatch(regex, c) for c in candidates):
            ignored = not negate
    return ignored


def test_the_build_context_holds_what_the_build_copies_and_no_local_state(
    dockerfile: Dockerfile,
) -> None:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    copied = [
        word
        for stage in dockerfile.stages
        for copy in stage.all("COPY")
        if not copy.args.startswith("--from")
        for word in copy.args.split()[:-1]
    ]
    assert set(copied) == {"pyproject.toml", "uv.lock", "README.md", "src"}
    for source in copied:
        assert (REPO / source).exists()
        assert not _ignored(source, patterns), f"{source} is excluded by .dockerignore"
    assert not _ignored("src/loopwright/server/static/index.html", patterns)
    for local in (".git", ".venv", "tests/conftest.py", "src/loopwright/__pycache__/x.pyc"):
        assert _ignored(local, patterns), f"{local} would be sent to the build"
