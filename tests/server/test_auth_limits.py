"""Who may do what: bearer tokens, isolation between users, rate and size limits."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from loopwright import MemoryStore, Session
from loopwright.server import InsecureBindError, RequestRate, TokenConfigError, TokenMap, check_bind
from loopwright.server.auth import parse_token_list
from loopwright.server.limits import RateLimiter

from .conftest import StartServer
from .live import iter_sse, make_agent, stream_turn

TOKENS = {"tok-alice": "alice", "tok-alice-2": "alice", "tok-bob": "bob"}


def test_requests_need_a_valid_bearer_token(live: StartServer) -> None:
    server = live(tokens=TOKENS)
    with server.client() as anonymous:
        for path in ("/api/sessions", "/api/me"):
            response = anonymous.get(path)
            assert response.status_code == 401
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert "Authorization: Bearer" in response.json()["detail"]
        wrong = anonymous.get("/api/me", headers={"Authorization": "Bearer tok-mallory"})
        assert wrong.status_code == 401
        assert "not valid" in wrong.json()["detail"]
        basic = anonymous.get("/api/me", headers={"Authorization": "Basic dG9rLWFsaWNl"})
        assert basic.status_code == 401
        # what a client needs before signing in is public
        assert anonymous.get("/api/info").json()["auth_required"] is True
        assert anonymous.get("/healthz").status_code == 200
        assert anonymous.get("/").status_code == 200
    with server.client("tok-alice-2") as alice:
        assert alice.get("/api/me").json() == {"user": "alice", "auth": True}


def test_users_see_only_their_own_sessions_and_files(live: StartServer) -> None:
    server = live(tokens=TOKENS)
    with (
        server.client("tok-alice") as alice,
        server.client("tok-alice-2") as alice_phone,
        server.client("tok-bob") as bob,
    ):
        session_id = alice.post("/api/sessions").json()["id"]
        stream_turn(alice, session_id, "write diary.txt dear diary")
        run_id = alice.get(f"/api/sessions/{session_id}").json()["run"]["id"]
        bob_session = bob.post("/api/sessions").json()["id"]

        base = f"/api/sessions/{session_id}"
        requests = [
            ("GET", base, None),
            ("GET", f"{base}/messages", None),
            ("GET", f"{base}/usage", None),
            ("GET", f"{base}/files", None),
            ("GET", f"{base}/files/diary.txt", None),
            ("GET", f"{base}/todos", None),
            ("GET", f"{base}/events", None),
            ("GET", f"{base}/runs/{run_id}", None),
            ("GET", f"{base}/runs/{run_id}/events", None),
            ("POST", f"{base}/messages", {"content": "write x.txt pwned"}),
            ("POST", f"{base}/resume", None),
            ("POST", f"{base}/cancel", None),
            ("POST", f"{base}/approvals/apr_x", {"allow": True}),
        ]
        for method, path, body in requests:
            theirs = bob.request(method, path, json=body)
            assert theirs.status_code == 404, (method, path, theirs.text)
            # exactly what a session that does not exist answers: nothing leaks
            unknown = bob.request(method, path.replace(session_id, "nosuchsession"), json=body)
            assert unknown.status_code == 404
            assert theirs.json()["detail"] == unknown.json()["detail"].replace(
                "nosuchsession", session_id
            )
        assert [s["id"] for s in bob.get("/api/sessions").json()["sessions"]] == [bob_session]
        assert [s["id"] for s in alice.get("/api/sessions").json()["sessions"]] == [session_id]
        # bob's turn did not run and his write did not happen
        files = alice.get(f"{base}/files").json()["files"]
        assert [f["path"] for f in files] == ["diary.txt"]
        # the same user with another token sees the session
        assert alice_phone.get(f"{base}/files/diary.txt").text == "dear diary"


def test_sessions_record_the_servers_metadata_beside_their_owner(
    live: StartServer, tmp_path: Path
) -> None:
    store = MemoryStore()
    server = live(make_agent(tmp_path, store=store), tokens=TOKENS, session_metadata={"rows": 5})
    with server.client("tok-bob") as bob:
        session_id = bob.post("/api/sessions").json()["id"]
    session = store.load(session_id)
    assert session is not None
    assert session.metadata == {"rows": 5, "owner": "bob"}


def test_session_metadata_the_server_cannot_keep_is_refused_at_once(tmp_path: Path) -> None:
    from loopwright.server import create_app

    agent = make_agent(tmp_path)
    with pytest.raises(ValueError, match="may not set 'owner'"):
        create_app(agent, session_metadata={"owner": "mallory"})
    with pytest.raises(ValueError, match="must hold JSON values"):
        create_app(agent, session_metadata={"rows": object()})


def test_without_tokens_everyone_is_local_and_sees_ownerless_sessions(
    live: StartServer, tmp_path: Path
) -> None:
    store = MemoryStore()
    agent = make_agent(tmp_path, store=store)
    cli_session = Session.create(root=tmp_path / "workspaces", store=store)  # like `run`
    server = live(agent)
    with server.client() as client:
        assert client.get("/api/info").json()["auth_required"] is False
        assert client.get("/api/me").json() == {"user": "local", "auth": False}
        created = client.post("/api/sessions").json()["id"]
        listed = {s["id"] for s in client.get("/api/sessions").json()["sessions"]}
        assert listed == {created, cli_session.id}
        _, events = stream_turn(client, cli_session.id, "hello")
        assert events[-1].data["stop_reason"] == "end_turn"
    assert store.load(created) is not None
    assert store.load(created).metadata["owner"] == "local"  # type: ignore[union-attr]


def test_each_token_has_its_own_rate_limit(live: StartServer) -> None:
    server = live(tokens=TOKENS, rate_limit=RequestRate(3, per=60))
    with server.client("tok-alice") as alice, server.client("tok-bob") as bob:
        assert [alice.get("/api/me").status_code for _ in range(3)] == [200, 200, 200]
        limited = alice.get("/api/me")
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1
        assert "3 requests per 60s" in limited.json()["detail"]
        # another token (even of another device of the same user) is not affected
        assert bob.get("/api/me").status_code == 200
        with server.client("tok-alice-2") as phone:
            assert phone.get("/api/me").status_code == 200
        # health checks are not limited
        assert all(alice.get("/healthz").status_code == 200 for _ in range(5))


def test_request_bodies_over_the_limit_get_413(live: StartServer) -> None:
    server = live(tokens=TOKENS, max_body_bytes=2_000)
    with server.client("tok-alice") as alice:
        session_id = alice.post("/api/sessions").json()["id"]
        path = f"/api/sessions/{session_id}/messages"
        too_big = alice.post(path, json={"content": "x" * 5_000})
        assert too_big.status_code == 413
        assert "2,000 bytes" in too_big.json()["detail"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
            yield b'{"content": "'
            for _ in range(10):
                yield b"y" * 500
            yield b'"}'

        chunked = alice.post(path, content=chunks(), headers={"Content-Type": "application/json"})
        assert chunked.status_code == 413
        # nothing was started; a message within the limit works
        assert alice.get(f"/api/sessions/{session_id}").json()["message_count"] == 0
        with alice.stream("POST", path, json={"content": "hello"}) as response:
            assert list(iter_sse(response))[-1].data["stop_reason"] == "end_turn"


def test_tokens_come_from_the_environment_and_files(tmp_path: Path) -> None:
    assert parse_token_list(" t1=alice, t2 = bob ,") == {"t1": "alice", "t2": "bob"}
    toml_file = tmp_path / "tokens.toml"
    toml_file.write_text('[tokens]\nt3 = "carol"\n')
    json_file = tmp_path / "tokens.json"
    json_file.write_text(json.dumps({"tokens": {"t4": "dave"}}))
    tokens = TokenMap.from_sources(env={"LOOPWRIGHT_TOKENS": "t1=alice"}, file=toml_file)
    assert tokens.enabled
    assert tokens.users == {"alice", "carol"}
    assert tokens.user_for("t3") is not None
    assert tokens.user_for("t3").name == "carol"
    assert tokens.user_for("t") is None
    from_env_file = TokenMap.from_sources(env={"LOOPWRIGHT_TOKENS_FILE": str(json_file)})
    assert from_env_file.users == {"dave"}
    assert not TokenMap.from_sources(env={}).enabled


@pytest.mark.parametrize(
    ("env", "content", "suffix", "message"),
    [
        ({"LOOPWRIGHT_TOKENS": "t1"}, None, "", "has no '='"),
        ({"LOOPWRIGHT_TOKENS": "t1=alice,t1=bob"}, None, "", "two users"),
        ({"LOOPWRIGHT_TOKENS": "t1=al ice"}, None, "", "not valid"),
        ({"LOOPWRIGHT_TOKENS": "=alice"}, None, "", "empty"),
        ({}, "tokens = [1, 2]", ".toml", "must map each token"),
        ({}, "{not json", ".json", "not valid JSON"),
        ({"LOOPWRIGHT_TOKENS": "t1=alice"}, '{"t1": "bob"}', ".json", "another user"),
    ],
)
def test_bad_token_configuration_says_how_to_fix_it(
    tmp_path: Path, env: dict[str, str], content: str | None, suffix: str, message: str
) -> None:
    file = None
    if content is not None:
        file = tmp_path / f"tokens{suffix}"
        file.write_text(content)
    with pytest.raises(TokenConfigError, match=message):
        TokenMap.from_sources(env=env, file=file)
    with pytest.raises(TokenConfigError, match="cannot read the tokens file"):
        TokenMap.from_sources(env={}, file=tmp_path / "missing.toml")


def test_without_tokens_only_loopback_is_allowed() -> None:
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        check_bind(host, auth_enabled=False)
    for host in ("0.0.0.0", "192.168.1.10", "::", "example.org"):
        with pytest.raises(InsecureBindError, match="--insecure-no-auth"):
            check_bind(host, auth_enabled=False)
        check_bind(host, auth_enabled=True)
        check_bind(host, auth_enabled=False, insecure_no_auth=True)


def test_the_bucket_refills_at_the_steady_rate() -> None:
    now = [100.0]
    limiter = RateLimiter(RequestRate(2, per=10), clock=lambda: now[0])
    assert [limiter.take("a"), limiter.take("a")] == [0.0, 0.0]  # a burst of 2
    assert limiter.take("a") == pytest.approx(5.0)  # one request per 5 s after that
    now[0] += 2.5
    assert limiter.take("a") == pytest.approx(2.5)
    now[0] += 2.5
    assert limiter.take("a") == 0.0
    assert limiter.take("b") == 0.0  # callers do not share a bucket
    now[0] += 1_000
    assert [limiter.take("a"), limiter.take("a"), limiter.take("a") > 0] == [0.0, 0.0, True]
    assert RequestRate.parse("30/15") == RequestRate(30, 15.0)
    assert RequestRate.parse("30") == RequestRate(30, 60.0)
    with pytest.raises(ValueError, match="REQUESTS/SECONDS"):
        RequestRate.parse("fast")
    with pytest.raises(ValueError, match="at least 1 request"):
        RequestRate(0, 10)
