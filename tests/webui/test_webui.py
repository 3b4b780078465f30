"""The web UI in headless Chromium, against a real server on 127.0.0.1.

A person's path through the page: sign in with a token, send a message, watch the text
stream in and a tool card appear, see the todo list and the files, preview a chart, download
a file, approve a tool call. A screenshot of the page is saved as a test artifact.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from loopwright import MemoryStore, ScriptedModel, call
from loopwright.events import TextDelta
from loopwright.healthcare.agent import healthcare_agent
from loopwright.healthcare.data import build_database
from loopwright.models.base import ModelEvent, ModelRequest
from loopwright.models.scripted import ScriptedTurn
from loopwright.policy import Policy
from loopwright.server import create_app
from server.live import (
    CHART_SIZE,
    CHARTS_FILES,
    HTML_NAMED_CSV,
    MARKDOWN_ANSWER,
    LiveServer,
    iter_sse,
    make_agent,
    png_bytes,
    start_live,
    stream_turn,
)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN = "ui-token"

if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
    pytest.skip(
        "chromium is not installed (apt-get install chromium) so the web UI cannot be driven",
        allow_module_level=True,
    )

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")


@pytest.fixture
def browser() -> Iterator[sync_api.Browser]:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium"),
            args=CHROMIUM_ARGS,
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    live = start_live(create_app(make_agent(tmp_path), tokens={TOKEN: "alice"}))
    yield live
    live.stop()


def open_page(browser: sync_api.Browser, url: str) -> sync_api.Page:
    context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(url)
    return page


def sign_in(page: sync_api.Page) -> None:
    dialog = page.locator("#token-dialog")
    sync_api.expect(dialog).to_be_visible()
    page.fill("#token-input", "wrong-token")
    page.click("#token-form button[type=submit]")
    sync_api.expect(page.locator("#token-error")).to_contain_text("not valid")
    page.fill("#token-input", TOKEN)
    page.click("#token-form button[type=submit]")
    sync_api.expect(dialog).to_be_hidden()
    sync_api.expect(page.locator("#user")).to_have_text("signed in as alice")


def send(page: sync_api.Page, text: str) -> None:
    page.fill("#prompt", text)
    page.keyboard.press("Enter")


def test_chat_streams_text_shows_tool_cards_todos_and_files(
    browser: sync_api.Browser, server: LiveServer, tmp_path: Path
) -> None:
    page = open_page(browser, server.base_url + "/")
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    sign_in(page)

    send(page, "write report.txt quarterly numbers look good")
    assistant = page.locator(".msg.assistant")
    sync_api.expect(assistant.last).to_have_text("I wrote report.txt.")
    sync_api.expect(page.locator(".msg.user").first).to_have_text(
        "write report.txt quarterly numbers look good"
    )
    card = page.locator(".tool-card").first
    sync_api.expect(card.locator(".tool-name")).to_have_text("Write")
    sync_api.expect(card.locator(".tool-input")).to_have_text("report.txt")
    sync_api.expect(card.locator(".tool-summary")).to_contain_text("report.txt")
    sync_api.expect(card.locator(".tool-state")).to_contain_text("done")
    sync_api.expect(card).to_have_class("tool-card ok")
    sync_api.expect(page.locator("#send")).to_be_enabled()
    sync_api.expect(page.locator("#usage")).to_contain_text("1 tool calls")

    send(page, "todos")
    todos = page.locator("#todos li")
    sync_api.expect(todos).to_have_count(3)
    sync_api.expect(todos.nth(1)).to_have_text("Plotting it")
    sync_api.expect(todos.nth(1)).to_have_class("in_progress")

    send(page, "chart charts/sales.png")
    chart_row = page.locator("#files li", has_text="charts/sales.png")
    sync_api.expect(chart_row).to_be_visible()
    chart_row.locator(".file-name").click()
    preview = page.locator("#preview-img")
    sync_api.expect(preview).to_be_visible()
    sync_api.expect(page.locator("#preview-caption")).to_have_text("charts/sales.png")
    width = page.evaluate("document.getElementById('preview-img').naturalWidth")
    assert width == CHART_SIZE[0]  # the real PNG was fetched and decoded

    report_row = page.locator("#files li", has_text="report.txt")
    with page.expect_download() as download_info:
        report_row.locator(".download").click()
    download = download_info.value
    assert download.suggested_filename == "report.txt"
    saved = tmp_path / "downloaded-report.txt"
    download.save_as(saved)
    assert saved.read_text() == "quarterly numbers look good"

    screenshot = tmp_path / "webui-chat.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.read_bytes()[:8] == png_bytes(1, 1)[:8]
    print(f"\nweb UI screenshot: {screenshot}")

    # reloading the page shows the same session's history (token kept for the tab)
    page.reload()
    sync_api.expect(page.locator(".tool-card")).to_have_count(3)
    sync_api.expect(page.locator(".msg.assistant").last).to_have_text(
        "The chart is in charts/sales.png."
    )
    assert errors == []


def test_the_page_and_its_icon_load_with_no_failed_request(
    browser: sync_api.Browser, server: LiveServer
) -> None:
    """Every browser asked for ``/favicon.ico`` and got a 404 (in the server's log at every
    page load); the page now names its icon, and ``/favicon.ico`` answers too."""
    failed: list[str] = []  # the page's own files (signing in with a wrong token is a 401)

    def note(response: sync_api.Response) -> None:
        if response.status >= 400 and "/api/" not in response.url:
            failed.append(f"{response.status} {response.url}")

    page = open_page(browser, "about:blank")
    page.on("response", note)
    page.goto(server.base_url + "/")
    sign_in(page)
    icon = page.locator("link[rel=icon]").get_attribute("href")
    assert icon is not None
    with httpx.Client(base_url=server.base_url) as client:
        for path in (icon, "/favicon.ico"):
            response = client.get(path)
            assert response.status_code == 200, path
            assert response.headers["content-type"].startswith("image/svg+xml")
            assert response.text.startswith("<svg")
    assert page.evaluate(f"fetch({icon!r}).then(r => r.status)") == 200
    assert failed == []


def test_answers_render_as_markdown_without_html_or_outside_loads(
    browser: sync_api.Browser, server: LiveServer
) -> None:
    page = open_page(browser, server.base_url + "/")
    errors: list[str] = []
    outside: list[str] = []
    files: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on(
        "request", lambda request: files.append(request.url) if "/files/" in request.url else None
    )
    page.on(
        "request",
        lambda request: (
            outside.append(request.url)
            if not request.url.startswith((server.base_url, "blob:", "data:"))
            else None
        ),
    )
    sign_in(page)
    send(page, "chart charts/top10.png")
    sync_api.expect(page.locator(".msg.assistant").last).to_have_text(
        "The chart is in charts/top10.png."
    )
    send(page, "markdown")

    def check(answer: sync_api.Locator) -> None:
        sync_api.expect(answer.locator("h2")).to_have_text("Top prescribers")
        sync_api.expect(answer.locator("p strong")).to_have_text("top prescriber")
        sync_api.expect(answer.locator("p em")).to_have_text("58")
        sync_api.expect(answer.locator("p code")).to_have_text(
            ["humira_ca.csv", "charts/top10.png"]
        )
        # inline code naming a workspace file opens it; code naming no file stays code
        sync_api.expect(answer.locator("button.file-code code")).to_have_text(["charts/top10.png"])
        page.evaluate("document.getElementById('preview-caption').textContent = ''")
        answer.locator("button.file-code").click()
        sync_api.expect(page.locator("#preview-caption")).to_have_text("charts/top10.png")
        page.evaluate("document.getElementById('preview-caption').textContent = ''")
        table = answer.locator("table")
        sync_api.expect(table.locator("thead th")).to_have_text(["NPI", "claims"])
        sync_api.expect(table.locator("tbody tr")).to_have_count(3)
        sync_api.expect(table.locator("tbody tr").first.locator("td")).to_have_text(
            ["1335437889", "58"]
        )
        sync_api.expect(table.locator("tbody td.align-right")).to_have_count(3)
        sync_api.expect(answer.locator("ol li")).to_have_text(
            ["Filter HUMIRA", "Group by prescriber"]
        )
        sync_api.expect(answer.locator("pre code.language-sql")).to_have_text(
            "SELECT PRESCRIBER_NPI_NBR, COUNT(*) FROM RX_CLAIMS"
        )
        report = answer.locator("a", has_text="the report")
        sync_api.expect(report).to_have_attribute("href", "https://example.org/report")
        sync_api.expect(report).to_have_attribute("rel", "noopener noreferrer nofollow")
        sync_api.expect(report).to_have_attribute("target", "_blank")
        # a javascript: link is left as text; an outside image is a link, never loaded
        sync_api.expect(answer).to_contain_text("[click me](javascript:window.__pwned=3)")
        sync_api.expect(answer.locator("a[href^='javascript']")).to_have_count(0)
        sync_api.expect(answer.locator("a")).to_have_count(2)
        # workspace files: the image is shown in place (fetched with the token), a missing
        # one says so, the link opens the preview
        figure = answer.locator(".md-figure img")
        sync_api.expect(figure).to_have_count(1)
        sync_api.expect(figure).to_have_attribute("alt", "Top 10 chart")
        sync_api.expect(figure).to_have_attribute("src", re.compile(r"^blob:"))
        page.wait_for_function(
            "el => el.complete && el.naturalWidth > 0", arg=figure.element_handle()
        )
        assert figure.evaluate("el => el.naturalWidth") == CHART_SIZE[0]
        sync_api.expect(answer.locator(".md-missing")).to_have_text("[no image at charts/none.png]")
        answer.locator("button.file-link", has_text="the chart").click()
        sync_api.expect(page.locator("#preview-caption")).to_have_text("charts/top10.png")
        sync_api.expect(answer.locator("a.md-image")).to_have_text("image: secret")
        # raw HTML stays text: no element made from it, no script run
        sync_api.expect(answer).to_contain_text('<img src="x" onerror="window.__pwned=1">')
        sync_api.expect(answer).to_contain_text("<script>window.__pwned=2</script>")
        assert (
            answer.locator("script, iframe, [onerror], [style], img:not([src^='blob:'])").count()
            == 0
        )

    answer = page.locator(".msg.assistant").last
    check(answer)
    sync_api.expect(page.locator("#log .hint")).to_have_count(0)  # "no messages yet" went
    # each image was asked for once while the answer streamed in, the missing one too
    assert sum(url.endswith("/files/charts/none.png") for url in files) == 1
    # + the two previews
    assert sum(url.endswith("/files/charts/top10.png") for url in files) == 3
    assert page.evaluate("window.__pwned") is None

    page.reload()  # the history is drawn the same way
    check(page.locator(".msg.assistant").last)
    assert page.evaluate("window.__pwned") is None
    assert outside == []
    assert errors == []
    assert "| 1335437889 | 58 |" in MARKDOWN_ANSWER  # the table came from the scripted answer


def test_approval_buttons_let_the_call_run(browser: sync_api.Browser, tmp_path: Path) -> None:
    agent = make_agent(tmp_path, policy=Policy(mode="ask"))
    live = start_live(create_app(agent))  # authentication off: no sign-in dialog
    try:
        page = open_page(browser, live.base_url + "/")
        sync_api.expect(page.locator("#user")).to_have_text("no authentication (local)")
        send(page, "write allowed.txt yes")
        approval = page.locator(".approval")
        sync_api.expect(approval).to_be_visible()
        sync_api.expect(page.locator(".tool-card.waiting .tool-name")).to_have_text("Write")
        approval.locator("button.allow").click()
        sync_api.expect(page.locator(".msg.assistant").last).to_have_text("I wrote allowed.txt.")
        sync_api.expect(approval).to_have_count(0)
        sync_api.expect(page.locator("#files li", has_text="allowed.txt")).to_be_visible()

        send(page, "write denied.txt no")
        sync_api.expect(page.locator(".approval")).to_be_visible()
        page.fill(".approval input", "not today")
        page.locator(".approval button.deny").click()
        failed = page.locator(".tool-card.error")
        sync_api.expect(failed).to_have_count(1)
        sync_api.expect(failed.locator(".tool-summary")).to_contain_text("not today")
        sync_api.expect(page.locator("#files li", has_text="denied.txt")).to_have_count(0)
        page.screenshot(path=str(tmp_path / "webui-approval.png"))
    finally:
        live.stop()


def test_a_running_turn_shows_progress_and_stop_cancels_it(
    browser: sync_api.Browser, server: LiveServer
) -> None:
    page = open_page(browser, server.base_url + "/")
    sign_in(page)
    send(page, "sleep 30")
    # the text streamed before the tool call is on the page while the tool still runs
    sync_api.expect(page.locator(".msg.assistant").first).to_have_text("Waiting.")
    card = page.locator(".tool-card").first
    sync_api.expect(card.locator(".tool-state")).to_have_text("running\u2026")
    sync_api.expect(page.locator("#status")).to_have_class("status busy")
    sync_api.expect(page.locator("#send")).to_be_disabled()
    page.click("#stop")
    sync_api.expect(page.locator(".notice.stopped")).to_contain_text("Stopped: cancelled")
    sync_api.expect(card).to_have_class("tool-card error")
    sync_api.expect(card.locator(".tool-summary")).to_contain_text("interrupted")
    sync_api.expect(page.locator("#send")).to_be_enabled()
    sync_api.expect(page.locator("#stop")).to_be_hidden()


def test_a_stopped_turn_can_be_continued_from_the_page(
    browser: sync_api.Browser, server: LiveServer
) -> None:
    """The API resumes an interrupted turn (``POST .../resume``), but the page offered no way
    to: after Stop, or on opening a session whose turn the server's shutdown cut short, the
    only way on was a new message."""
    page = open_page(browser, server.base_url + "/")
    sign_in(page)
    resume = page.locator("#resume")
    sync_api.expect(resume).to_be_hidden()
    send(page, "sleep 30")
    sync_api.expect(page.locator(".tool-card .tool-state").first).to_have_text("running\u2026")
    sync_api.expect(resume).to_be_hidden()  # not while the turn runs
    page.click("#stop")
    sync_api.expect(page.locator(".notice.stopped")).to_contain_text("Stopped: cancelled")
    sync_api.expect(resume).to_be_visible()

    page.reload()  # the session opened afresh says the same
    sync_api.expect(resume).to_be_visible()
    resume.click()
    sync_api.expect(page.locator(".msg.assistant").last).to_have_text("I slept.")
    sync_api.expect(resume).to_be_hidden()  # the turn ended: nothing left to continue
    sync_api.expect(page.locator("#send")).to_be_enabled()
    page.reload()
    sync_api.expect(page.locator(".msg.assistant").last).to_have_text("I slept.")
    sync_api.expect(resume).to_be_hidden()


def test_charts_in_an_answer_show_and_a_mangled_address_still_opens_the_page(
    browser: sync_api.Browser, tmp_path: Path
) -> None:
    """What a healthcare answer holds: charts by relative path (one in a directory with a
    space, percent-encoded), images outside the workspace or on another host (never fetched),
    a result file whose name is HTML (shown as text). The page is opened by a link cut short
    in the middle of an escape ("#%E0%A4%A"): it still starts, with the latest session."""
    live = start_live(create_app(make_agent(tmp_path)))  # authentication off
    try:
        with live.client() as client:
            session_id = client.post("/api/sessions").json()["id"]
            _, events = stream_turn(client, session_id, "charts")
            assert events[-1].data["stop_reason"] == "end_turn"
        page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
        page.set_default_timeout(15_000)
        errors: list[str] = []
        fetched: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("request", lambda request: fetched.append(request.url))
        page.goto(live.base_url + "/#%E0%A4%A")

        answer = page.locator(".msg.assistant").last
        sync_api.expect(answer).to_contain_text("The chart:")
        sync_api.expect(page.locator(".notice.error")).to_have_count(0)
        images = answer.locator(".md-figure img")
        sync_api.expect(images).to_have_count(2)
        for index, path in enumerate(CHARTS_FILES):
            sync_api.expect(images.nth(index)).to_have_attribute("title", path)
            page.wait_for_function(
                "el => el.complete && el.naturalWidth > 0", arg=images.nth(index).element_handle()
            )
            assert images.nth(index).evaluate("el => el.naturalWidth") == CHART_SIZE[0]
        sync_api.expect(answer.locator("a.md-image, span.md-image")).to_have_count(5)
        file_name = page.locator("#files li .file-name", has_text="onerror")
        sync_api.expect(file_name).to_have_text(HTML_NAMED_CSV)
        assert page.locator("#files img, #files [onerror]").count() == 0
        assert page.evaluate("window.__pwned") is None

        files = [url for url in fetched if "/files/" in url]
        assert sorted(url.split("/files/", 1)[1] for url in files) == [
            "chart.png",
            "sub/dir/chart%20x.png",
        ]
        assert [url for url in fetched if not url.startswith((live.base_url, "blob:"))] == []
        assert errors == []
    finally:
        live.stop()


# --- a page opened while a healthcare turn runs ------------------------------------------

TOP_PRESCRIBERS = (
    "SELECT PRESCRIBER_NPI_NBR, COUNT(*) AS rx_count FROM RX_CLAIMS "
    "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10"
)
QUESTION = "Who are the top 10 prescribers?"
ANSWER_START = "The top 10 prescribers are in `top10.csv`; "
ANSWER_END = "the leader wrote the most claims."


@pytest.fixture(scope="module")
def claims_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated claims database for the healthcare agent."""
    return build_database(tmp_path_factory.mktemp("claims") / "claims.duckdb", rx_claims=1_000)


def analyst(request: ModelRequest) -> ScriptedTurn:
    """The healthcare analyst: a query, a look at the result in Python, then the answer."""
    done = [b.name for m in request.messages for b in m.tool_uses]
    if "SQL" not in done:
        query = call("SQL", sql=TOP_PRESCRIBERS, dataset_name="top10", description="Top 10")
        return ScriptedTurn("Querying.\n", [query])
    if "Python" not in done:
        code = "import polars as pl\nprint(pl.read_parquet('top10.parquet').height)"
        return ScriptedTurn("Checking it.\n", [call("Python", code=code)])
    return ScriptedTurn(ANSWER_START + ANSWER_END)


class HeldAnswer(ScriptedModel):
    """The analyst, whose answer stops after :data:`ANSWER_START` until ``release`` is set
    (a slow model in the middle of its answer)."""

    def __init__(self) -> None:
        super().__init__(analyst, chunk_size=len(ANSWER_START))
        self.release = threading.Event()

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        async for event in super().stream(request):
            if isinstance(event, TextDelta) and event.text == ANSWER_END:
                await asyncio.to_thread(self.release.wait)
            yield event


def wait_for_event(client: httpx.Client, session_id: str, kind: str, text: str = "") -> None:
    """Follow the session's running turn until an event of ``kind`` (with ``text``, for a
    ``text_delta``) has been streamed."""
    with client.stream("GET", f"/api/sessions/{session_id}/events") as response:
        for event in iter_sse(response):
            if event.event == kind and event.data.get("text", "") == text:
                return
    raise AssertionError(f"the turn ended without a {kind} event")


def test_a_page_opened_mid_turn_shows_the_call_waiting_for_approval(
    browser: sync_api.Browser, tmp_path: Path, claims_db: Path
) -> None:
    """The analyst reloads the page (or opens it elsewhere) while the agent's Python call
    waits for approval: the call is shown waiting, with the buttons to answer it."""
    agent = healthcare_agent(
        ScriptedModel(analyst, chunk_size=8),
        database=claims_db,
        store=MemoryStore(),
        workspace_root=str(tmp_path / "workspaces"),
        policy=Policy(mode="ask"),
    )
    live = start_live(create_app(agent, shutdown_grace=0))  # authentication off
    try:
        with live.client() as client:
            session_id = client.post("/api/sessions").json()["id"]
            started = client.post(
                f"/api/sessions/{session_id}/messages",
                params={"stream": "false"},
                json={"content": QUESTION},
            )
            assert started.status_code == 202
            wait_for_event(client, session_id, "approval_request")

        page = open_page(browser, f"{live.base_url}/#{session_id}")
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        cards = page.locator(".tool-card")
        sync_api.expect(cards).to_have_count(2)
        sync_api.expect(cards.nth(0)).to_have_class("tool-card ok")  # SQL asks no approval
        sync_api.expect(cards.nth(1)).to_have_class("tool-card running waiting")
        sync_api.expect(cards.nth(1).locator(".tool-state")).to_have_text("waiting for approval")
        approval = page.locator(".approval")
        sync_api.expect(approval).to_have_count(1)
        # the code to approve is shown whole, its lines as lines (not one JSON string)
        shown = approval.locator("pre.approval-input")
        sync_api.expect(shown).to_be_visible()
        assert shown.inner_text() == (
            "code:\n  import polars as pl\n  print(pl.read_parquet('top10.parquet').height)"
        )
        # a right-to-left override or a zero-width space would make the code read otherwise
        tricky = page.evaluate("approvalInput({code: 'x = 1 #\u202e)\"cod\" ,cba(\u200b', n: 2})")
        assert tricky == 'code: x = 1 #\\u202e)"cod" ,cba(\\u200b\nn: 2'
        approval.locator("button.allow").click()

        answer = page.locator(".msg.assistant").last
        sync_api.expect(answer).to_have_text((ANSWER_START + ANSWER_END).replace("`", ""))
        sync_api.expect(approval).to_have_count(0)
        sync_api.expect(cards).to_have_count(2)
        sync_api.expect(cards.nth(1)).to_have_class("tool-card ok")
        sync_api.expect(cards.nth(1).locator(".tool-summary")).to_have_text("10")
        sync_api.expect(page.locator(".msg.user")).to_have_text([QUESTION])
        sync_api.expect(page.locator(".notice")).to_have_count(0)
        assert errors == []
    finally:
        live.stop()


def test_a_page_opened_mid_answer_shows_the_whole_answer(
    browser: sync_api.Browser, tmp_path: Path, claims_db: Path
) -> None:
    """The page is opened while the model is in the middle of its answer: the answer shows
    from its first word (not only what streams after the page opened), every step once,
    and the usage counted once."""
    model = HeldAnswer()
    agent = healthcare_agent(
        model,
        database=claims_db,
        store=MemoryStore(),
        workspace_root=str(tmp_path / "workspaces"),
    )
    live = start_live(create_app(agent, shutdown_grace=0))  # authentication off
    try:
        with live.client() as client:
            session_id = client.post("/api/sessions").json()["id"]
            client.post(
                f"/api/sessions/{session_id}/messages",
                params={"stream": "false"},
                json={"content": QUESTION},
            )
            wait_for_event(client, session_id, "text_delta", ANSWER_START)
            usage = client.get(f"/api/sessions/{session_id}/usage").json()["usage"]

            page = open_page(browser, f"{live.base_url}/#{session_id}")
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            answer = page.locator(".msg.assistant").last
            sync_api.expect(answer).to_have_text(ANSWER_START.replace("`", "").rstrip())
            sync_api.expect(page.locator("#status")).to_have_class("status busy")
            sync_api.expect(page.locator("#usage")).to_contain_text(
                f"{usage['model_calls']} model calls \u00b7 2 tool calls"
            )
            sync_api.expect(page.locator("#usage")).to_contain_text(
                f"in {usage['input_tokens']:,} "
            )

            model.release.set()
            sync_api.expect(answer).to_have_text((ANSWER_START + ANSWER_END).replace("`", ""))
            sync_api.expect(page.locator("#send")).to_be_enabled()
        messages = page.locator(".msg")
        sync_api.expect(messages).to_have_count(4)  # the question, two steps, the answer
        sync_api.expect(page.locator(".msg.user")).to_have_text([QUESTION])
        sync_api.expect(page.locator(".tool-card.ok")).to_have_count(2)
        sync_api.expect(page.locator(".tool-card")).to_have_count(2)
        assert errors == []
    finally:
        model.release.set()
        live.stop()


def test_the_open_session_can_be_deleted_from_the_page(
    browser: sync_api.Browser, server: LiveServer, tmp_path: Path
) -> None:
    """The page could make sessions but never remove one. Delete asks first, removes the
    open session with its files, and opens the latest one left; a running turn is stopped
    first (the server refuses, and the page says so)."""
    page = open_page(browser, server.base_url + "/")
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    sign_in(page)
    select = page.locator("#session-select")
    sync_api.expect(page.locator("#delete-session")).to_be_disabled()  # nothing open

    send(page, "write kept.md to keep")
    sync_api.expect(page.locator("#files li", has_text="kept.md")).to_be_visible()
    kept = select.input_value()
    page.click("#new-session")
    sync_api.expect(select.locator("option")).to_have_count(2)  # the new one is open
    sync_api.expect(page.locator(".msg")).to_have_count(0)
    send(page, "write gone.md to delete")
    sync_api.expect(page.locator("#files li", has_text="gone.md")).to_be_visible()
    doomed = select.input_value()
    assert doomed != kept
    workspace = tmp_path / "workspaces" / doomed
    assert (workspace / "gone.md").is_file()

    page.once("dialog", lambda dialog: dialog.dismiss())  # changed their mind
    page.click("#delete-session")
    sync_api.expect(select.locator("option")).to_have_count(2)
    assert workspace.is_dir()

    send(page, "sleep 30")
    sync_api.expect(page.locator("#stop")).to_be_visible()
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#delete-session")
    sync_api.expect(page.locator(".notice.error")).to_contain_text("Not deleted")
    sync_api.expect(page.locator(".notice.error")).to_contain_text("already running")
    page.click("#stop")
    sync_api.expect(page.locator("#send")).to_be_enabled()

    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#delete-session")
    sync_api.expect(select.locator("option")).to_have_count(1)
    sync_api.expect(select).to_have_value(kept)
    sync_api.expect(page.locator("#files li", has_text="kept.md")).to_be_visible()
    assert not workspace.exists()

    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#delete-session")
    sync_api.expect(select.locator("option")).to_have_text("(no sessions yet)")
    sync_api.expect(page.locator("#delete-session")).to_be_disabled()
    sync_api.expect(page.locator("#files li")).to_have_count(0)
    sync_api.expect(page.locator(".msg")).to_have_count(0)
    send(page, "write fresh.md a new start")  # the page goes on with a new session
    sync_api.expect(page.locator("#files li", has_text="fresh.md")).to_be_visible()
    assert errors == []
