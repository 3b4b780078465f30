"""Approvals answered over HTTP, and the workspace's files: listing, downloads, traversal."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from loopwright.policy import Policy
from loopwright.server import files as files_module

from .conftest import StartServer
from .live import CHART_SIZE, SSE, iter_sse, make_agent, png_bytes, stream_turn

TOKENS = {"tok-alice": "alice", "tok-bob": "bob"}


def new_session(client: httpx.Client) -> str:
    return str(client.post("/api/sessions").json()["id"])


def answer_while_streaming(
    client: httpx.Client, session_id: str, content: str, allow: bool, reason: str = ""
) -> list[SSE]:
    """Run a turn; answer its approval request while the stream stays open."""
    events: list[SSE] = []
    with client.stream(
        "POST", f"/api/sessions/{session_id}/messages", json={"content": content}
    ) as response:
        for event in iter_sse(response):
            events.append(event)
            if event.event == "approval_request":
                pending = client.get(f"/api/sessions/{session_id}").json()["run"]
                assert [r["id"] for r in pending["pending_approvals"]] == [event.data["id"]]
                answer = client.post(
                    f"/api/sessions/{session_id}/approvals/{event.data['id']}",
                    json={"allow": allow, "reason": reason},
                )
                assert answer.status_code == 200, answer.text
                assert answer.json()["by"] == "alice"
                again = client.post(
                    f"/api/sessions/{session_id}/approvals/{event.data['id']}",
                    json={"allow": allow},
                )
                assert again.status_code == 404  # answered already
    return events


def test_an_approved_call_runs(live: StartServer, tmp_path: Path) -> None:
    agent = make_agent(tmp_path, policy=Policy(mode="ask"))
    server = live(agent, tokens=TOKENS)
    with server.client("tok-alice") as alice:
        session_id = new_session(alice)
        events = answer_while_streaming(alice, session_id, "write ok.txt fine", allow=True)
        types = [e.event for e in events]
        assert types.index("tool_call") < types.index("approval_request")
        assert types.index("approval_request") < types.index("tool_result")
        request = events[types.index("approval_request")].data
        assert request["name"] == "Write"
        assert request["tool_call_id"] == events[types.index("tool_call")].data["id"]
        assert not events[types.index("tool_result")].data["is_error"]
        assert events[-1].data["stop_reason"] == "end_turn"
        assert alice.get(f"/api/sessions/{session_id}/files/ok.txt").text == "fine"


def test_a_denied_call_is_not_run_and_the_model_hears_why(
    live: StartServer, tmp_path: Path
) -> None:
    agent = make_agent(tmp_path, policy=Policy(mode="ask"))
    server = live(agent, tokens=TOKENS)
    with server.client("tok-alice") as alice, server.client("tok-bob") as bob:
        session_id = new_session(alice)
        run = alice.post(
            f"/api/sessions/{session_id}/messages",
            params={"stream": "false"},
            json={"content": "write no.txt nope"},
        ).json()
        with alice.stream("GET", run["events_url"]) as response:
            for event in iter_sse(response):
                if event.event == "approval_request":
                    request_id = event.data["id"]
                    break
        # another user cannot answer it (the session is not theirs), nor can a wrong id
        path = f"/api/sessions/{session_id}/approvals/{request_id}"
        assert bob.post(path, json={"allow": True}).status_code == 404
        wrong = alice.post(f"/api/sessions/{session_id}/approvals/apr_nope", json={"allow": True})
        assert wrong.status_code == 404
        assert "no approval request" in wrong.json()["detail"]
        bad = alice.post(path, json={"allow": "maybe"})
        assert bad.status_code == 422

        denied = alice.post(path, json={"allow": False, "reason": "not that file"})
        assert denied.status_code == 200
        with alice.stream("GET", run["events_url"]) as response:
            events = list(iter_sse(response))
        result = next(e.data for e in events if e.event == "tool_result")
        assert result["is_error"]
        assert "not that file" in result["content"]
        assert events[-1].data["stop_reason"] == "end_turn"
        files = alice.get(f"/api/sessions/{session_id}/files").json()["files"]
        assert "no.txt" not in [f["path"] for f in files]


def test_files_are_listed_and_downloaded_with_their_type(live: StartServer) -> None:
    server = live(tokens=TOKENS)
    with server.client("tok-alice") as alice:
        session_id = new_session(alice)
        stream_turn(alice, session_id, "chart plots/sales.png")
        stream_turn(alice, session_id, "write notes.md # Notes")
        stream_turn(alice, session_id, "write page.html <script>alert(1)</script>")

        listing = alice.get(f"/api/sessions/{session_id}/files").json()
        by_path = {f["path"]: f for f in listing["files"]}
        assert sorted(by_path) == ["notes.md", "page.html", "plots/sales.png"]
        assert listing["truncated"] is False
        chart = by_path["plots/sales.png"]
        assert chart["image"] is True
        assert chart["content_type"] == "image/png"
        assert chart["size"] == len(png_bytes(*CHART_SIZE))
        assert by_path["notes.md"]["image"] is False
        only_plots = alice.get(f"/api/sessions/{session_id}/files", params={"path": "plots"})
        assert [f["path"] for f in only_plots.json()["files"]] == ["plots/sales.png"]

        image = alice.get(f"/api/sessions/{session_id}/files/plots/sales.png")
        assert image.status_code == 200
        assert image.headers["content-type"] == "image/png"
        assert image.content == png_bytes(*CHART_SIZE)
        assert image.headers["content-disposition"].startswith("inline")
        assert image.headers["x-content-type-options"] == "nosniff"
        forced = alice.get(
            f"/api/sessions/{session_id}/files/plots/sales.png", params={"download": "true"}
        )
        assert forced.headers["content-disposition"].startswith("attachment")
        assert 'filename="sales.png"' in forced.headers["content-disposition"]

        # an HTML file the agent wrote is never rendered in the UI's origin
        page = alice.get(f"/api/sessions/{session_id}/files/page.html")
        assert page.headers["content-disposition"].startswith("attachment")
        assert "sandbox" in page.headers["content-security-policy"]

        missing = alice.get(f"/api/sessions/{session_id}/files/nope.txt")
        assert missing.status_code == 404
        assert "GET /api/sessions/{id}/files" in missing.json()["detail"]
        directory = alice.get(f"/api/sessions/{session_id}/files/plots")
        assert directory.status_code == 404


def test_paths_outside_the_workspace_are_refused(live: StartServer, tmp_path: Path) -> None:
    server = live(tokens=TOKENS)
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    with server.client("tok-alice") as alice:
        session_id = new_session(alice)
        stream_turn(alice, session_id, "write inside.txt ok")
        workspace = tmp_path / "workspaces" / session_id
        os.symlink(secret, workspace / "link.txt")
        os.symlink(tmp_path, workspace / "linkdir")

        base = f"/api/sessions/{session_id}/files"
        for attempt in (
            f"{base}/..%2F..%2Fsecret.txt",
            f"{base}/%2E%2E/%2E%2E/secret.txt",
            f"{base}/%2F{str(secret).lstrip('/').replace('/', '%2F')}",
            f"{base}/link.txt",
            f"{base}/linkdir/secret.txt",
        ):
            response = alice.get(attempt)
            assert response.status_code == 400, (attempt, response.text)
            assert "outside the session's workspace" in response.json()["detail"]
            assert "top secret" not in response.text
        listing = alice.get(base).json()["files"]
        assert [f["path"] for f in listing] == ["inside.txt"]  # links out are not listed
        assert alice.get(base, params={"path": "../"}).status_code == 400
        assert alice.get(base, params={"path": "inside.txt"}).status_code == 404


def test_a_link_swapped_in_after_the_check_is_not_followed(
    live: StartServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tool running meanwhile (``ln -sf`` in Bash) can replace a checked file, or a
    directory on its path, with a link out of the workspace: the server must not read
    through it (another session's files, the server's own secrets)."""
    server = live(tokens=TOKENS)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "data.csv").write_text("top secret")
    swaps: dict[str, Callable[[Path], None]] = {}

    def file_to_link(checked: Path) -> None:
        checked.unlink()
        checked.symlink_to(outside / "data.csv")

    def directory_to_link(checked: Path) -> None:
        directory = checked.parent
        directory.rename(directory.with_name("moved"))
        directory.symlink_to(outside)

    class SwappingValidator(files_module.PathValidator):
        def validate(self, path: str | os.PathLike[str], operation: str = "access") -> str:
            resolved = super().validate(path, operation)
            swap = swaps.pop(os.fspath(path), None)
            if swap is not None:  # the tool's swap lands right after the check
                swap(Path(resolved))
            return resolved

    monkeypatch.setattr(files_module, "PathValidator", SwappingValidator)
    with server.client("tok-alice") as alice:
        session_id = new_session(alice)
        stream_turn(alice, session_id, "write result.csv ok")
        stream_turn(alice, session_id, "write sub/data.csv ok")
        base = f"/api/sessions/{session_id}/files"
        assert alice.get(f"{base}/result.csv").text == "ok"
        assert alice.get(f"{base}/sub/data.csv").text == "ok"

        swaps["result.csv"] = file_to_link
        swaps["sub/data.csv"] = directory_to_link
        for path in ("result.csv", "sub/data.csv"):
            response = alice.get(f"{base}/{path}")
            assert "top secret" not in response.text, path
            assert response.status_code == 400, (path, response.text)
            assert "outside the session's workspace" in response.json()["detail"]
        assert swaps == {}  # both swaps happened


def test_the_listing_leaves_out_the_agents_own_files_and_unfinished_results(
    live: StartServer, tmp_path: Path
) -> None:
    server = live(tokens=TOKENS)
    with server.client("tok-alice") as alice:
        session_id = new_session(alice)
        stream_turn(alice, session_id, "todos")
        stream_turn(alice, session_id, "write top10.csv a,b")
        workspace = tmp_path / "workspaces" / session_id
        cache = workspace / ".loopwright" / "home" / ".cache" / "matplotlib"
        cache.mkdir(parents=True)
        (cache / "fontlist.json").write_text("{}")
        # the SQL tool's result being written, and an old result not yet freed
        (workspace / ".top10.csv.0a1b2c3d.partial").write_text("a,")
        (workspace / "sub").mkdir()
        (workspace / "sub" / ".top10.parquet.deadbeef.old").write_text("PAR1")
        (workspace / ".env").write_text("KEY=1")

        base = f"/api/sessions/{session_id}/files"
        listed = [f["path"] for f in alice.get(base).json()["files"]]
        assert listed == [".env", "top10.csv"]
        # the agent's own directory is there when asked for, and its files can be read
        inner = alice.get(base, params={"path": ".loopwright"}).json()["files"]
        assert [f["path"] for f in inner] == [
            ".loopwright/home/.cache/matplotlib/fontlist.json",
            ".loopwright/todos.json",
        ]
        assert alice.get(f"{base}/.loopwright/todos.json").status_code == 200
        # what is not listed is not there: half a result is no file to download
        for unfinished in (".top10.csv.0a1b2c3d.partial", "sub/.top10.parquet.deadbeef.old"):
            fetched = alice.get(f"{base}/{unfinished}")
            assert fetched.status_code == 404
            assert "still being written" in fetched.json()["detail"]


def test_the_todo_list_is_served_when_present(live: StartServer, tmp_path: Path) -> None:
    server = live(tokens=TOKENS)
    with server.client("tok-alice") as alice:
        session_id = new_session(alice)
        empty = alice.get(f"/api/sessions/{session_id}/todos").json()
        assert empty == {"todos": [], "problem": ""}
        stream_turn(alice, session_id, "todos")
        todos = alice.get(f"/api/sessions/{session_id}/todos").json()
        assert [t["status"] for t in todos["todos"]] == ["completed", "in_progress", "pending"]
        assert todos["todos"][1]["activeForm"] == "Plotting it"
        assert todos["problem"] == ""

        todo_file = tmp_path / "workspaces" / session_id / ".loopwright" / "todos.json"
        todo_file.write_text('[{"content": "ok", "status": "pending"}, {"status": "odd"}]')
        partial = alice.get(f"/api/sessions/{session_id}/todos").json()
        assert [t["content"] for t in partial["todos"]] == ["ok"]
        assert "1 malformed item" in partial["problem"]
        todo_file.write_text("not json")
        broken = alice.get(f"/api/sessions/{session_id}/todos").json()
        assert broken["todos"] == []
        assert "cannot be read" in broken["problem"]
