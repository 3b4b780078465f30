"""An answer naming a chart that is not in the workspace is sent back to the model once or
twice (the healthcare agent's Stop hook), with the charts that are there."""

from __future__ import annotations

import base64
from pathlib import Path

from loopwright import MemoryStore, ScriptedModel, call
from loopwright.healthcare import healthcare_agent
from loopwright.healthcare.named_charts import (
    MAX_NUDGES,
    ChartCheck,
    image_problems,
    named_images,
)
from loopwright.models.base import ModelRequest
from loopwright.models.scripted import ScriptedTurn
from loopwright.policy import Policy
from loopwright.policy.hooks import Stop

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQ"
    "AAAABJRU5ErkJggg=="
)
QUESTION = "Find the top 10 prescribers of HUMIRA in California"
TOP10 = (
    "SELECT PRESCRIBER_NPI_NBR, COUNT(*) AS claims FROM RX_CLAIMS "
    "WHERE NDC_DRUG_NM = 'HUMIRA' AND PRESCRIBER_NPI_STATE_CD = 'CA' "
    "GROUP BY 1 ORDER BY 2 DESC LIMIT 10"
)


def test_the_images_an_answer_names() -> None:
    text = (
        "See ![Top 10](charts/top%2010.png) and [the trend](./trend.svg 'monthly').\n"
        "Also `share.PNG`, /abs/path/pie.jpeg, and https://example.org/logo.png or "
        "data:image/png;base64,AAAA. Not top10.csv, not version 1.png2, twice: share.PNG."
    )
    assert named_images(text) == [
        "charts/top 10.png",
        "trend.svg",
        "share.PNG",
        "/abs/path/pie.jpeg",
    ]


def test_problems_name_missing_broken_and_outside_images(tmp_path: Path) -> None:
    (tmp_path / "charts").mkdir()
    (tmp_path / "charts" / "top10.png").write_bytes(PNG)
    (tmp_path / "cut.png").write_bytes(PNG[:30])
    (tmp_path / "empty.png").write_bytes(b"")
    text = (
        f"![a](charts/top10.png) ![b]({tmp_path / 'charts' / 'top10.png'}) top10.png "
        "cut.png empty.png ../other/x.png /etc/x.png"
    )
    assert image_problems(text, tmp_path) == [
        ("top10.png", "no such file"),
        ("cut.png", "cut short: not a whole PNG image"),
        ("empty.png", "empty"),
        ("../other/x.png", "outside the workspace"),
        ("/etc/x.png", "outside the workspace"),
    ]


def test_the_check_nudges_at_most_twice_in_a_row_per_session(tmp_path: Path) -> None:
    check = ChartCheck()
    (tmp_path / "saved.png").write_bytes(PNG)
    missing = Stop("s1", "end_turn", "See chart.png", str(tmp_path))
    notes = [check(missing) for _ in range(MAX_NUDGES + 1)]
    assert all(notes[:MAX_NUDGES])
    assert "chart.png (no such file)" in str(notes[0])
    assert "Charts in the workspace: saved.png." in str(notes[0])
    assert notes[MAX_NUDGES] is None  # it could not fix it: the answer goes out
    assert check(missing) is not None  # a later turn is checked again
    assert check(Stop("s1", "end_turn", "See saved.png", str(tmp_path))) is None
    assert check(Stop("s2", "end_turn", "no charts here", str(tmp_path))) is None


def test_an_answer_naming_a_chart_never_drawn_goes_back_to_the_model(claims_db: Path) -> None:
    """The model answers naming top10.png, which it never saved; told so, it answers again
    without it. The scripted answers are the model's; the note is the agent's."""

    def script(request: ModelRequest) -> ScriptedTurn:
        last = request.messages[-1]
        if not last.tool_results and "[Check of your answer]" in last.text:
            return ScriptedTurn("The top prescriber has the most claims (no chart was drawn).")
        if last.tool_results:
            return ScriptedTurn("Top 10 saved to top10.csv; see the chart top10.png.")
        return ScriptedTurn("", [call("SQL", sql=TOP10, dataset_name="top10")])

    model = ScriptedModel(script)
    agent = healthcare_agent(model, database=claims_db, store=MemoryStore())
    result = agent.run_sync(QUESTION)

    assert result.stop_reason == "end_turn"
    assert result.text.endswith("(no chart was drawn).")
    note = model.requests[-1].messages[-1].text
    assert "top10.png (no such file)" in note
    assert "There is no chart in the workspace." in note
    assert len(model.requests) == 3


def test_a_model_that_keeps_naming_it_still_answers_and_a_users_policy_keeps_its_hooks(
    claims_db: Path,
) -> None:
    policy = Policy(mode="ask")
    model = ScriptedModel(lambda request: ScriptedTurn("See the chart ghost.png."))
    agent = healthcare_agent(model, database=claims_db, store=MemoryStore(), policy=policy)
    assert agent.policy is policy
    result = agent.run_sync("chart it")
    assert result.stop_reason == "end_turn"
    assert len(model.requests) == 1 + MAX_NUDGES
    again = healthcare_agent(model, database=claims_db, store=MemoryStore(), policy=policy)
    assert again.policy is policy
    assert sum(isinstance(h, ChartCheck) for h in policy.hooks.stop_hooks) == 1


def test_a_stop_hook_alone_leaves_tool_calls_on_the_fast_path(tmp_path: Path) -> None:
    """The agent's default policy carries only the Stop hook: calls skip the policy's
    per-call work (audit, permissions, hooks) as with no policy."""
    policy = Policy()
    policy.hooks.stop(ChartCheck())
    assert policy.bind(str(tmp_path)).inert
    policy.hooks.pre_tool_use("Bash", lambda event: None)
    assert not policy.bind(str(tmp_path)).inert
