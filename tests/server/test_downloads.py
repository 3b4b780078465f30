"""Downloads of workspace files: HEAD, media types and dispositions, and file names holding
control characters (listed, so fetchable, with a header that cannot be broken)."""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from urllib.parse import quote, unquote

import httpx
import pytest

from loopwright.server import create_app
from loopwright.server import files as files_module

from .conftest import StartServer
from .live import CHART_SIZE, make_agent, png_bytes, stream_turn

TOKENS = {"tok-alice": "alice", "tok-bob": "bob"}
FILE_ROUTE = "/api/sessions/{session_id}/files/{path}"
PARQUET = "application/vnd.apache.parquet"
#: bytes a Parquet file starts and ends with (the content does not matter to the server)
PARQUET_BYTES = b"PAR1" + bytes(range(256)) + b"PAR1"


def new_session(client: httpx.Client) -> str:
    return str(client.post("/api/sessions").json()["id"])


def file_url(session_id: str, path: str) -> str:
    """The download URL of a listed path, each segment percent-encoded (as the web UI does
    with ``encodeURIComponent``)."""
    return f"/api/sessions/{session_id}/files/" + "/".join(
        quote(part, safe="") for part in path.split("/")
    )


def without_date(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k != "date"}


def filename_of(disposition: str) -> str:
    """The file name a Content-Disposition gives: ``filename*`` (RFC 8187) over ``filename``."""
    extended = re.search(r"filename\*=UTF-8''([^;\s]*)", disposition, re.IGNORECASE)
    if extended:
        return unquote(extended.group(1), errors="strict")
    plain = re.search(r'filename="([^"]*)"', disposition)
    assert plain, disposition
    return plain.group(1)


def assert_safe_header_block(response: httpx.Response) -> None:
    """No header value holds a control character, and no header came from a file name."""
    for name, value in response.headers.raw:
        assert not re.search(rb"[\x00-\x1f\x7f]", value), (name, value)
    assert "set-cookie" not in response.headers


# --- HEAD ----------------------------------------------------------------------------------


def test_head_answers_like_get_without_the_body(live: StartServer, tmp_path: Path) -> None:
    server = live(tokens=TOKENS)
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    with (
        server.client("tok-alice") as alice,
        server.client("tok-bob") as bob,
        server.client() as anonymous,
    ):
        session_id = new_session(alice)
        stream_turn(alice, session_id, "chart plots/sales.png")
        stream_turn(alice, session_id, "write notes.md # Notes")
        stream_turn(alice, session_id, "todos")
        workspace = tmp_path / "workspaces" / session_id
        (workspace / "result.parquet").write_bytes(PARQUET_BYTES)
        os.symlink(secret, workspace / "link.txt")

        for path, params in (
            ("plots/sales.png", {}),
            ("plots/sales.png", {"download": "true"}),
            ("notes.md", {}),
            ("result.parquet", {}),
            (".loopwright/todos.json", {}),
        ):
            url = file_url(session_id, path)
            got = alice.get(url, params=params)
            head = alice.head(url, params=params)
            assert got.status_code == 200, (path, got.text)
            assert head.status_code == 200, (path, head.text)
            assert head.content == b""
            assert without_date(head) == without_date(got), path
            assert head.headers["content-length"] == str(len(got.content))
            assert head.headers["etag"]
            assert head.headers["last-modified"]
        chart = alice.head(file_url(session_id, "plots/sales.png"))
        assert chart.headers["content-length"] == str(len(png_bytes(*CHART_SIZE)))

        base = f"/api/sessions/{session_id}/files"
        for client, url, status in (
            (alice, f"{base}/nope.txt", 404),
            (alice, f"{base}/plots", 404),  # a directory is not a file
            (alice, f"{base}/..%2F..%2Fsecret.txt", 400),
            (alice, f"{base}/link.txt", 400),  # a link out of the workspace
            (alice, f"{base}/notes.md?download=maybe", 422),
            (bob, f"{base}/notes.md", 404),  # another user's session
            (anonymous, f"{base}/notes.md", 401),
        ):
            got = client.get(url)
            head = client.head(url)
            assert got.status_code == status, (url, got.text)
            assert head.status_code == status, (url, head.status_code)
            assert head.content == b""
            assert "top secret" not in got.text


def test_the_openapi_spec_documents_get_and_head_once_each(
    live: StartServer, tmp_path: Path
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. FastAPI's "Duplicate Operation ID"
        spec = create_app(make_agent(tmp_path)).openapi()
    operations = spec["paths"][FILE_ROUTE]
    assert set(operations) == {"get", "head"}
    ids = [op["operationId"] for path in spec["paths"].values() for op in path.values()]
    assert len(ids) == len(set(ids))
    head = operations["head"]["responses"]
    assert "content" not in head["200"]  # no body
    assert {"Content-Length", "Content-Disposition", "ETag"} <= set(head["200"]["headers"])
    assert {"400", "403", "404"} <= set(head)
    assert [p["name"] for p in operations["head"]["parameters"]] == [
        p["name"] for p in operations["get"]["parameters"]
    ]
    server = live(tokens=TOKENS)
    with server.client() as anonymous:
        served = anonymous.get("/openapi.json")
        assert served.status_code == 200
        assert set(served.json()["paths"][FILE_ROUTE]) == {"get", "head"}


# --- media types and dispositions ----------------------------------------------------------


def test_parquet_and_compressed_files_are_served_with_their_media_type(
    live: StartServer, tmp_path: Path
) -> None:
    server = live(tokens=TOKENS)
    with server.client("tok-alice") as alice:
        session_id = new_session(alice)
        stream_turn(alice, session_id, "write top10.csv npi,claims")
        workspace = tmp_path / "workspaces" / session_id
        (workspace / "top10.parquet").write_bytes(PARQUET_BYTES)
        (workspace / "OLD.PARQUET").write_bytes(PARQUET_BYTES)
        (workspace / "top10.csv.gz").write_bytes(b"\x1f\x8b gzip data")
        (workspace / "chart.svg.gz").write_bytes(b"\x1f\x8b gzip data")
        (workspace / "data:x.csv").write_text("a,b")

        listed = {
            f["path"]: f for f in alice.get(f"/api/sessions/{session_id}/files").json()["files"]
        }
        expected = {
            "top10.parquet": (PARQUET, "attachment"),
            "OLD.PARQUET": (PARQUET, "attachment"),
            "top10.csv": ("text/csv", "inline"),
            "top10.csv.gz": ("application/gzip", "attachment"),  # gzip data, not CSV text
            "chart.svg.gz": ("application/gzip", "attachment"),  # not an image to show
            "data:x.csv": ("text/csv", "inline"),  # a file name, not a data: URL
        }
        assert sorted(listed) == sorted(expected)
        for path, (kind, disposition) in expected.items():
            assert listed[path]["content_type"] == kind, path
            assert listed[path]["image"] is False, path
            got = alice.get(file_url(session_id, path))
            assert got.status_code == 200, (path, got.text)
            assert got.headers["content-type"].split(";")[0] == kind, path
            assert got.headers["content-disposition"].startswith(disposition + ";"), path
            assert filename_of(got.headers["content-disposition"]) == path
            assert got.content == (workspace / path).read_bytes()
            assert got.headers["x-content-type-options"] == "nosniff"

        parquet = alice.get(file_url(session_id, "top10.parquet"), params={"download": "true"})
        assert parquet.headers["content-type"] == PARQUET
        assert parquet.headers["content-disposition"] == 'attachment; filename="top10.parquet"'


def test_media_types_and_dispositions_are_decided_in_one_place() -> None:
    content_type_of = files_module.content_type_of
    content_disposition = files_module.content_disposition
    assert content_type_of("out/result.parquet") == PARQUET
    assert content_type_of("notes.md") == "text/markdown"
    assert content_type_of("archive.tar.gz") == "application/gzip"
    assert content_type_of("no-extension") == "application/octet-stream"
    assert content_disposition("inline", "sales.png") == 'inline; filename="sales.png"'
    assert (
        content_disposition("attachment", "a\r\nb é.csv")
        == "attachment; filename=\"a__b _.csv\"; filename*=UTF-8''a%0D%0Ab%20%C3%A9.csv"
    )


# --- file names with control characters -----------------------------------------------------

ODD_NAMES = (
    "two\nlines.txt",
    "cr\r\nSet-Cookie: stolen=1.csv",
    "tab\there.csv",
    "bell\x07 and del\x7f.txt",
    "trailing newline.txt\n",
    'quote" and back\\slash.txt',
    "%41 literal percent.txt",
    "ünïcödé ✓.md",
    "sub dir/new\nline/deep.txt",
)


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_every_listed_file_can_be_fetched_whatever_its_name(
    live: StartServer, tmp_path: Path, method: str
) -> None:
    server = live(tokens=TOKENS)
    with server.client("tok-alice") as alice:
        session_id = new_session(alice)
        stream_turn(alice, session_id, "write plain.txt ok")
        workspace = tmp_path / "workspaces" / session_id
        for number, name in enumerate(ODD_NAMES):
            target = workspace / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(f"file {number}")

        listing = alice.get(f"/api/sessions/{session_id}/files").json()["files"]
        assert sorted(f["path"] for f in listing) == sorted((*ODD_NAMES, "plain.txt"))
        for entry in listing:
            response = alice.request(method, file_url(session_id, entry["path"]))
            assert response.status_code == 200, (entry["path"], response.text)
            assert response.headers["content-length"] == str(entry["size"])
            if method == "GET":
                assert response.content == (workspace / entry["path"]).read_bytes()
            disposition = response.headers["content-disposition"]
            assert filename_of(disposition) == entry["path"].rsplit("/", 1)[-1]
            assert_safe_header_block(response)


def test_a_trailing_newline_names_another_file_and_nul_is_refused_clearly(
    live: StartServer, tmp_path: Path
) -> None:
    server = live(tokens=TOKENS)
    with server.client("tok-alice") as alice:
        session_id = new_session(alice)
        stream_turn(alice, session_id, "write a.csv secret-a")
        # "a.csv\n" is not "a.csv": no such file
        response = alice.get(file_url(session_id, "a.csv\n"))
        assert response.status_code == 404, response.text
        assert "no file 'a.csv\\n'" in response.json()["detail"]
        assert "secret-a" not in response.text

        for url in (file_url(session_id, "a\x00.csv"), f"/api/sessions/{session_id}/files"):
            params = {"path": "sub\x00dir"} if url.endswith("/files") else {}
            refused = alice.get(url, params=params)
            assert refused.status_code == 400, refused.text
            detail = refused.json()["detail"]
            assert "NUL character" in detail
            assert "GET /api/sessions/{id}/files" in detail
