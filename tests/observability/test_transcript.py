"""conversation.json and the HTML transcript viewer (escaping checked in a real browser)."""

from __future__ import annotations

import base64
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from loopwright import BaseTool, ReadTool, ScriptedModel, ToolResult, WriteTool, call
from loopwright.messages import ImageBlock, Message, TextBlock
from loopwright.observability.stats import StatsRecorder
from loopwright.observability.transcript import (
    CONVERSATION_FILE,
    conversation_record,
    render_html,
    write_conversation,
)

from .conftest import make_agent

CHROMIUM = "/usr/bin/chromium"
HOSTILE = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
#: a 2x2 red PNG
PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000002000000020802000000fdd49a73"
        "0000001649444154789c63f8cfc0c0f01f8401481000009e1e0bf56e7b76f20000"
        "000049454e44ae426082"
    )
).decode()


class Screenshot(BaseTool):
    """Returns a page's text (hostile markup) and a picture."""

    @property
    def name(self) -> str:
        return "Screenshot"

    @property
    def schema(self) -> dict[str, Any]:
        return {
            "name": "Screenshot",
            "description": "Take a screenshot of a page.",
            "input_schema": {"type": "object", "properties": {"url": {"type": "string"}}},
        }

    async def execute(self, input: dict[str, Any]) -> ToolResult:
        return {
            "content": [TextBlock(f"page text: {HOSTILE}"), ImageBlock(PNG, "image/png")],
            "is_error": False,
        }


async def recorded_session(tmp_path: Path) -> Any:
    model = ScriptedModel(
        [
            ["I will look.", call("Screenshot", url="http://example.test/<b>")],
            [call("Write", file_path="page.html", content=HOSTILE)],
            call("Read", file_path="missing.txt"),
            f"Finished. The page said {HOSTILE}",
        ]
    )
    agent = make_agent(
        model, tmp_path, tools=[Screenshot, WriteTool, ReadTool], instruments=[StatsRecorder()]
    )
    result = await agent.collect(f"inspect the page {HOSTILE}")
    assert result.stop_reason == "end_turn"
    return result.session


async def test_conversation_json_holds_messages_usage_and_timings(tmp_path: Path) -> None:
    session = await recorded_session(tmp_path)
    # the recorder wrote it when the run ended
    path = Path(session.workspace_dir) / CONVERSATION_FILE
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data == json.loads(json.dumps(conversation_record(session)))
    assert data["session_id"] == session.id
    assert data["usage"]["tool_calls"] == 3
    assert data["timings_recorded"] is True
    assert [r["stop_reason"] for r in data["runs"]] == ["end_turn"]

    messages = [Message.from_dict(m) for m in data["messages"]]
    assert messages == session.messages  # the messages read back unchanged
    assistant = data["messages"][1]
    assert assistant["model_call"]["model"] == "scripted"
    assert assistant["model_call"]["duration_ms"] >= 0
    assert assistant["model_call"]["stop_reason"] == "tool_use"
    result_block = data["messages"][2]["content"][0]
    assert result_block["type"] == "tool_result"
    assert result_block["duration_ms"] >= 0

    elsewhere = write_conversation(session, tmp_path / "out" / "c.json")
    assert json.loads(elsewhere.read_text(encoding="utf-8"))["messages"] == data["messages"]


class Structure(HTMLParser):
    """Counts the elements and attributes that matter in the transcript page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def all(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for name, attrs in self.tags if name == tag]


async def test_the_html_transcript_has_every_call_escaped(tmp_path: Path) -> None:
    session = await recorded_session(tmp_path)
    page = render_html(session)

    parser = Structure()
    parser.feed(page)
    assert parser.all("script") == []  # the hostile markup is text, never an element
    assert all("onerror" not in attrs for _, attrs in parser.tags)
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in page
    csp = [a for a in parser.all("meta") if a.get("http-equiv") == "Content-Security-Policy"]
    assert csp
    assert "default-src 'none'" in (csp[0]["content"] or "")
    assert not re.search(r"(src|href)=\"https?:", page)  # nothing loaded from outside

    tools = [a for a in parser.all("details") if "tool" in (a.get("class") or "")]
    assert [a["class"] for a in tools] == ["tool ok", "tool ok", "tool error"]
    images = parser.all("img")
    assert [a["src"] for a in images] == [f"data:image/png;base64,{PNG}"]
    assert page.count('class="msg user"') == 1
    assert page.count('class="msg assistant"') == 4
    assert "Screenshot" in page
    assert "missing.txt" in page
    assert "<h2>Tools</h2>" in page
    assert "<h2>Runs</h2>" in page


def test_an_image_of_an_unknown_type_is_not_embedded(tmp_path: Path) -> None:
    from loopwright.sessions.session import Session

    session = Session("images", tmp_path)
    session.append(Message("user", [ImageBlock('x" onload="alert(1)', "image/svg+xml")]))
    page = render_html(session, [])
    assert "data:image/svg" not in page
    assert "onload" not in page.split("<main>")[1].replace("&quot;", "")


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium is not installed")
async def test_the_page_renders_in_chromium_and_runs_no_script(tmp_path: Path) -> None:
    from playwright.async_api import async_playwright

    session = await recorded_session(tmp_path)
    target = tmp_path / "transcript.html"
    target.write_text(render_html(session), encoding="utf-8")

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = await browser.new_page()
            dialogs: list[str] = []
            page.on("dialog", lambda d: dialogs.append(d.message))
            await page.goto(target.as_uri())
            assert await page.evaluate("window.__pwned === undefined")
            assert dialogs == []
            assert await page.locator("script").count() == 0
            # the hostile text is shown as text
            body = await page.inner_text("main")
            assert "<script>window.__pwned = 1</script>" in body
            # tool calls are collapsed, and open on a click
            calls = page.locator("details.tool")
            assert await calls.count() == 3
            first = calls.nth(0)
            assert await first.get_attribute("open") is None
            assert not await first.locator("pre").first.is_visible()
            await first.locator("summary").click()
            assert await first.get_attribute("open") == ""
            assert await first.locator("pre").first.is_visible()
            # the image is decoded from its data URI
            width = await page.locator("img.inline").evaluate("img => img.naturalWidth")
            assert width == 2
            assert await page.locator(".card").count() == 5
            await page.screenshot(path=str(tmp_path / "transcript.png"), full_page=True)
        finally:
            await browser.close()
    assert (tmp_path / "transcript.png").stat().st_size > 0
