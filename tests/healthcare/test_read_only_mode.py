"""The healthcare agent in the read-only permission mode: Python, Bash, Write and Edit are
not offered at all (they were listed in the prompt and refused call by call, so the model
spent its turns on refusals), and the prompt's workflow says to analyse in SQL."""

from __future__ import annotations

from pathlib import Path

from loopwright import MemoryStore, ScriptedModel
from loopwright.healthcare import healthcare_agent
from loopwright.policy import Policy


def _agent(claims_db: Path, policy: Policy | None):  # type: ignore[no-untyped-def]
    return healthcare_agent(
        ScriptedModel(["ok"]), database=claims_db, store=MemoryStore(), policy=policy
    )


def test_read_only_offers_only_the_tools_it_allows(claims_db: Path) -> None:
    agent = _agent(claims_db, Policy(mode="read-only"))
    session = agent.new_session()
    names = set(agent.registry_for(session).names)
    assert {"SQL", "DefineCohort", "Read", "Glob", "Grep", "TodoWrite"} <= names
    assert not names & {"Python", "Bash", "BashOutput", "KillShell", "Write", "Edit"}
    prompt = agent.system_prompt(session)
    assert "This session is read-only" in prompt
    assert "- Python:" not in prompt
    assert "- Bash:" not in prompt
    assert "plt.savefig" not in prompt


def test_other_modes_and_rules_that_allow_a_tool_keep_it(claims_db: Path) -> None:
    for policy in (None, Policy(mode="ask"), Policy(mode="auto")):
        agent = _agent(claims_db, policy)
        session = agent.new_session()
        assert {"Python", "Bash", "Write", "Edit"} <= set(agent.registry_for(session).names)
        assert "This session is read-only" not in agent.system_prompt(session)
    allowed = _agent(claims_db, Policy(mode="read-only", allow=["Bash(ls *)"], ask=["Write"]))
    session = allowed.new_session()
    names = set(allowed.registry_for(session).names)
    assert {"Bash", "Write", "Edit"} <= names
    assert "Python" not in names
