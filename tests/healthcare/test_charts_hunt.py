"""Charts, end to end, through the real healthcare agent: matplotlib in the sandbox, what the
Python tool says about the images a script saved (or did not), and the charts of a session
listed and downloaded over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from loopwright import MemoryStore, ScriptedModel, call
from loopwright.healthcare.agent import healthcare_agent
from loopwright.tools import ToolRegistry
from server.live import start_live, stream_turn

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

#: a bar chart of the rx claims per drug, from the .parquet file the SQL tool saved
BAR_CHART = """\
import matplotlib.pyplot as plt
import polars as pl

counts = pl.read_parquet("by_drug.parquet")
fig, ax = plt.subplots(figsize=(6, 3))
ax.bar(counts["NDC_DRUG_NM"].to_list(), counts["n"].to_list())
ax.set_title("Rx claims per drug")
"""

#: a whole chart saved to memory, of which only a part reaches the file: the script is
#: killed (or crashes) while writing it
CUT_SHORT = """\
import io, os
data = io.BytesIO()
fig.savefig(data, format="{kind}")
with open("{name}", "wb") as handle:
    handle.write(data.getvalue()[: len(data.getvalue()) // 2])
    handle.flush()
    os._exit(9)
"""

BY_DRUG = (
    "SELECT NDC_DRUG_NM, COUNT(*) AS n FROM RX_CLAIMS GROUP BY NDC_DRUG_NM ORDER BY n DESC LIMIT 5"
)


@pytest.fixture
async def registry(claims_db: Path) -> AsyncIterator[ToolRegistry]:
    """The healthcare agent's tools for one session, with the per-drug counts saved."""
    agent = healthcare_agent(ScriptedModel(["ok"]), database=claims_db, store=MemoryStore())
    registry = agent.registry_for(agent.new_session())
    try:
        saved = await registry.execute(
            "SQL", {"sql": BY_DRUG, "dataset_name": "by_drug", "description": "per drug"}
        )
        assert not saved["is_error"], saved
        yield registry
    finally:
        await registry.aclose()


async def _python(registry: ToolRegistry, code: str) -> dict[str, Any]:
    result = dict(await registry.execute("Python", {"code": code}))
    assert isinstance(result["content"], str)
    return result


async def test_a_chart_cut_short_by_a_crash_is_named_as_broken_not_only_listed(
    registry: ToolRegistry,
) -> None:
    """A script that crashed (or was killed) while saving left an empty or half-written PNG:
    the result listed it like any chart ("chart.png (5.2 KiB)"), so the answer showed it as
    the chart, a picture that does not open."""
    workspace = Path(registry.workspace_dir)
    empty = await _python(
        registry, BAR_CHART + 'open("empty.png", "wb").close()\nraise RuntimeError("boom")'
    )
    cut = await _python(registry, BAR_CHART + CUT_SHORT.format(kind="png", name="cut.png"))
    cut_svg = await _python(
        registry, BAR_CHART + CUT_SHORT.format(kind="svg", name="charts cut.svg")
    )
    whole = await _python(
        registry,
        BAR_CHART + 'import os\nos.makedirs("plots/by drug", exist_ok=True)\n'
        'for name in ("whole.png", "plots/by drug/Señor 北京.png", "whole.svg", "whole.jpg"):\n'
        "    fig.savefig(name)\n",
    )
    assert (workspace / "cut.png").read_bytes().startswith(PNG_SIGNATURE)  # half a PNG

    assert [r["is_error"] for r in (empty, cut, cut_svg)] == [True, True, True]
    assert (
        "[Images that will not open: empty.png (empty). Save them again, whole and in the "
        "format their names say, before naming them in the answer.]"
    ) in empty["content"]
    assert (
        "[Images that will not open: cut.png (cut short: not a whole PNG image)."
        in (cut["content"])
    )
    assert (
        "[Images that will not open: charts cut.svg (cut short: not a whole SVG image)."
        in (cut_svg["content"])
    )
    for result, name in ((empty, "empty.png"), (cut, "cut.png"), (cut_svg, "charts cut.svg")):
        # still listed as written (it is there), and named in the metadata too
        assert result["metadata"]["files_written"] == [name]
        assert result["metadata"]["broken_images"] == [name]
        assert result["content"].splitlines()[-1].startswith("[Files written in the workspace:")
    # whole charts (in a directory, names outside ASCII, other formats) are only listed
    assert not whole["is_error"], whole["content"]
    assert "will not open" not in whole["content"]
    assert "broken_images" not in whole["metadata"]
    assert sorted(whole["metadata"]["files_written"]) == [
        "plots/by drug/Señor 北京.png",
        "whole.jpg",
        "whole.png",
        "whole.svg",
    ]


async def test_plt_show_without_a_saved_chart_says_that_no_chart_was_made(
    registry: ToolRegistry,
) -> None:
    """In the sandbox matplotlib has no display (Agg): ``plt.show()`` does nothing, silently,
    and no file is saved. The result was the script's output alone ("(no output)"), and the
    model went on to describe a chart that was never made."""
    shown = await _python(registry, BAR_CHART + "plt.show()\n")
    assert not shown["is_error"], shown["content"]
    assert "plt.show() shows nothing here" in shown["content"]
    assert 'plt.savefig("name.png", dpi=120, bbox_inches="tight")' in shown["content"]
    assert "files_written" not in shown.get("metadata", {})  # nothing saved

    # shown and saved: the chart is there, no word about show()
    saved = await _python(registry, BAR_CHART + 'fig.savefig("drugs.png")\nfig.show()\n')
    assert not saved["is_error"], saved["content"]
    assert "shows nothing" not in saved["content"]
    assert saved["metadata"]["files_written"] == ["drugs.png"]


async def test_a_figure_too_large_to_draw_says_to_draw_it_smaller(
    registry: ToolRegistry,
) -> None:
    """A 60,000-pixel-square figure fails in the Agg renderer with ``MemoryError:
    std::bad_alloc``: the note said to aggregate with SQL and read fewer columns, advice
    about data for a problem of figure size."""
    result = await _python(
        registry, BAR_CHART + "fig.set_size_inches(600, 600)\nfig.savefig('huge.png', dpi=100)\n"
    )
    assert result["is_error"]
    content = result["content"]
    assert "bad_alloc" in content
    assert "[The figure is too large to draw in memory (each process may use at most" in content
    assert "its size in pixels is figsize (inches) times dpi" in content
    assert "pl.scan_parquet" not in content  # not the advice about data
    # a script short of memory for its data still gets the advice about data
    data = await _python(registry, "import numpy\nnumpy.ones(1 << 40)")
    assert data["is_error"]
    assert "pl.scan_parquet" in data["content"]
    assert "figure is too large" not in data["content"]


def test_charts_over_http_only_pictures_a_browser_shows_are_listed_as_images(
    claims_db: Path, tmp_path: Path
) -> None:
    """The web UI previews a file the listing calls an image: a TIFF chart (matplotlib saves
    .tif) was listed as one, so clicking it showed a broken picture, while its download was
    an attachment. Charts drawn in the sandbox, served over loopback."""
    from loopwright.server import create_app

    turns = [
        call("SQL", sql=BY_DRUG, dataset_name="by_drug", description="per drug"),
        call(
            "Python",
            code=BAR_CHART
            + 'fig.savefig("by drug.png")\nfig.savefig("by_drug.tif")\nfig.savefig("by_drug.svg")',
        ),
        "Here: ![per drug](by%20drug.png)",
    ]
    agent = healthcare_agent(
        ScriptedModel(turns),
        database=claims_db,
        store=MemoryStore(),
        workspace_root=str(tmp_path / "workspaces"),
    )
    server = start_live(create_app(agent, tokens={"tok-dana": "dana"}))
    try:
        with server.client("tok-dana") as client:
            session_id = client.post("/api/sessions").json()["id"]
            response, events = stream_turn(client, session_id, "Chart the claims per drug")
            assert response.status_code == 200
            results = [e.data for e in events if e.event == "tool_result"]
            assert [r["is_error"] for r in results] == [False, False], results
            listed = {
                f["path"]: f
                for f in client.get(f"/api/sessions/{session_id}/files").json()["files"]
            }
            assert listed["by drug.png"]["image"] is True
            assert listed["by_drug.svg"]["image"] is True
            assert listed["by_drug.tif"]["content_type"] == "image/tiff"
            assert listed["by_drug.tif"]["image"] is False  # a file to download
            workspace = tmp_path / "workspaces" / session_id
            for path, kind, disposition in (
                ("by drug.png", "image/png", "inline"),
                ("by_drug.svg", "image/svg+xml", "inline"),
                ("by_drug.tif", "image/tiff", "attachment"),
            ):
                got = client.get(f"/api/sessions/{session_id}/files/{path.replace(' ', '%20')}")
                assert got.status_code == 200, got.text
                assert got.headers["content-type"].split(";")[0] == kind
                assert got.headers["content-disposition"].startswith(disposition + ";")
                assert got.content == (workspace / path).read_bytes()
            assert (workspace / "by drug.png").read_bytes().startswith(PNG_SIGNATURE)
    finally:
        server.stop()
