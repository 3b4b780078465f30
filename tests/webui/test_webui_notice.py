"""A ``notice`` event in the web UI: a small line in the conversation, apart from the answer
and unlike an error (headless Chromium against a real server on 127.0.0.1)."""

from __future__ import annotations

from pathlib import Path

from loopwright import Agent, MemoryStore
from loopwright.models.scripted import ScriptedModel
from loopwright.server import create_app
from server.live import start_live
from webui.test_webui import browser, open_page, send, sign_in, sync_api

__all__ = ["browser"]  # the fixture, shared with the other web UI tests

#: a model no price table knows, so a cost budget cannot hold: the run sends a notice
UNPRICED = "openai:mystery-model"


def test_a_notice_shows_as_a_small_line_apart_from_the_answer(
    browser: sync_api.Browser, tmp_path: Path
) -> None:
    agent = Agent(
        ScriptedModel(["The answer is 42."], name=UNPRICED),
        store=MemoryStore(),
        workspace_root=str(tmp_path / "ws"),
        max_cost_usd=0.5,
    )
    live = start_live(create_app(agent, tokens={"ui-token": "alice"}))
    try:
        page = open_page(browser, live.base_url + "/")
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        sign_in(page)
        send(page, "What is the answer?")
        sync_api.expect(page.locator(".msg.assistant").last).to_have_text("The answer is 42.")
        line = page.locator("#log .notice.info")
        sync_api.expect(line).to_have_count(1)
        sync_api.expect(line).to_contain_text(f"{UNPRICED} has no known price")
        sync_api.expect(line).to_have_attribute("data-code", "cost_unpriced")
        sync_api.expect(page.locator("#log .notice.error")).to_have_count(0)
        sync_api.expect(page.locator("#send")).to_be_enabled()
        assert "no known price" not in page.locator(".msg.assistant").last.inner_text()
        # smaller than an error's line would be: it does not compete with the answer
        sizes = page.evaluate(
            "[getComputedStyle(document.querySelector('#log .notice.info')).fontSize,"
            " getComputedStyle(document.querySelector('.msg.assistant')).fontSize]"
        )
        assert float(sizes[0].removesuffix("px")) < float(sizes[1].removesuffix("px"))
        assert errors == []
    finally:
        live.stop()
