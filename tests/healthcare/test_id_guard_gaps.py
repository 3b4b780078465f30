"""Patient ids the identifier guard missed: results of sub-agents, and results whose call never
said it saved them.

The guard learnt a result's ids when its ``SQL`` call's PostToolUse hook ran, under that
call's session id. A ``Delegate`` sub-agent works in the parent's workspace (or a folder inside
it) under a session of its own, so the parent's Read of the sub-agent's CSV sent every id; a
call that timed out after its files were in place, or a run cancelled meanwhile, left files no
hook read, served raw later. Now the ids belong to the workspace, and a ``SQL`` or
``DefineCohort`` call is noted before it runs, so files it leaves unannounced are read before
the next output. The real agent on the generated claims database, driven by scripted models;
sub-agents through the real ``Delegate`` tool.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest

import loopwright.sql.base as sql_base
import loopwright.sql.output as sql_output
from loopwright import Agent, MemoryStore
from loopwright.healthcare.agent import healthcare_agent
from loopwright.healthcare.id_guard import IdentifierGuard
from loopwright.models.base import ModelRequest
from loopwright.models.scripted import ScriptedModel, call
from loopwright.policy.hooks import PostToolUse, PreToolUse
from loopwright.tools.delegate import Delegate, SubAgent

#: The id renamed: only what the guard learnt from the call (or the record) tells it is one.
WHO = "SELECT PATIENT_ID AS who, PRIMARY_HCP FROM MED_CLAIMS ORDER BY CLAIM_ID LIMIT 30"


def _sql(sql: str, name: str) -> dict[str, str]:
    return {"sql": sql, "dataset_name": name, "description": name}


def _sent(model: ScriptedModel) -> str:
    """Everything the model's provider was sent."""
    return json.dumps([m.to_dict() for r in model.requests for m in r.messages])


def _ids(csv_file: Path) -> set[str]:
    ids = {line.split(",")[0] for line in csv_file.read_text().splitlines()[1:]}
    assert len(ids) > 5
    assert all(i.startswith("PT") for i in ids)
    return ids


def _leaked(text: str, ids: set[str]) -> list[str]:
    return sorted(i for i in ids if i in text)


def _with_delegate(
    model: ScriptedModel, claims_db: Path, *sub_agents: SubAgent, **options: Any
) -> Agent:
    agent = healthcare_agent(model, database=claims_db, **options)
    agent.tools.append(Delegate(list(sub_agents)))
    return agent


@pytest.mark.parametrize("workspace", ["shared", "child"])
def test_the_parent_reads_a_sub_agents_result_masked(claims_db: Path, workspace: str) -> None:
    """A sub-agent saves a result (its id column renamed); the parent, which had looked at the
    workspace before, then Reads, Greps and prints the sub-agent's CSV: each sent every id
    (learnt under the sub-agent's session only); now none, and the NPIs stay."""
    folder = "" if workspace == "shared" else "subagents/fetcher-1/"
    child = ScriptedModel([call("SQL", _sql(WHO, "sub")), "Saved sub.csv."])
    parent = ScriptedModel(
        [
            call("Bash", command="ls"),
            call("Delegate", agent="fetcher", task="Save the first claims' patients."),
            [
                call("Read", file_path=f"{folder}sub.csv"),
                call("Grep", pattern="PT", path=f"{folder}sub.csv", output_mode="content"),
                call("Python", code=f"print(open('{folder}sub.csv').read())"),
            ],
            "Done.",
        ]
    )
    fetcher = SubAgent("fetcher", "Saves rows.", model=child, workspace=workspace)  # type: ignore[arg-type]
    agent = _with_delegate(parent, claims_db, fetcher, store=MemoryStore())
    result = agent.run_sync("Who had the first claims?")
    assert result.stop_reason == "end_turn"
    saved = Path(result.session.workspace_dir) / folder / "sub.csv"
    ids = _ids(saved)
    sent = _sent(parent)
    assert _leaked(sent, ids) == []
    assert sent.count("[masked #") >= 3 * len(ids)  # Read, Grep and Python each
    npi = saved.read_text().splitlines()[1].split(",")[1]
    assert npi in sent
    assert _leaked(_sent(child), ids) == []


def test_the_parent_reads_a_sub_agents_cohort_masked(claims_db: Path) -> None:
    """A sub-agent in a folder of its own defines a cohort; the parent's ``head`` of the
    member list (subagents/definer-1/cohorts/humira.csv) sent every patient id."""
    child = ScriptedModel([call("DefineCohort", name="humira", drugs=["HUMIRA"]), "Defined."])
    parent = ScriptedModel(
        [
            call("Delegate", agent="definer", task="Define the HUMIRA cohort."),
            call("Bash", command="head -n 20 subagents/definer-1/cohorts/humira.csv"),
            "Done.",
        ]
    )
    definer = SubAgent("definer", "Defines cohorts.", model=child, workspace="child")
    agent = _with_delegate(parent, claims_db, definer, store=MemoryStore())
    result = agent.run_sync("How many patients are on HUMIRA?")
    assert result.stop_reason == "end_turn"
    members = Path(result.session.workspace_dir) / "subagents/definer-1/cohorts/humira.csv"
    sent = _sent(parent)
    assert _leaked(sent, _ids(members)) == []
    assert sent.count("[masked #") >= 19  # the members head shows


def test_a_sub_agents_result_is_masked_when_the_session_goes_on_in_a_new_process(
    claims_db: Path,
) -> None:
    """The parent's session continued by a new agent (each one-shot CLI question is a new
    process): its guard read the workspace's own files alone, and the record of masked columns
    was in the sub-agent's folder, so ``Read subagents/fetcher-1/sub.csv`` sent every id."""
    store = MemoryStore()
    child = ScriptedModel([call("SQL", _sql(WHO, "sub")), "Saved."])
    parent = ScriptedModel([call("Delegate", agent="fetcher", task="Save rows."), "Saved."])
    fetcher = SubAgent("fetcher", "Saves rows.", model=child, workspace="child")
    first = _with_delegate(parent, claims_db, fetcher, store=store)
    session = first.new_session()
    assert first.run_sync("Save some patients", session).stop_reason == "end_turn"
    ids = _ids(Path(session.workspace_dir) / "subagents" / "fetcher-1" / "sub.csv")

    later = ScriptedModel([call("Read", file_path="subagents/fetcher-1/sub.csv"), "Done."])
    second = healthcare_agent(later, database=claims_db, store=store)  # a new guard
    assert second.run_sync("Show them", session).stop_reason == "end_turn"
    sent = _sent(later)
    assert _leaked(sent, ids) == []
    assert "[masked #" in sent


def test_a_sub_agent_masks_what_its_parent_saved_after_it_started(tmp_path: Path) -> None:
    """The reverse: a sub-agent in the shared workspace had shown something (its session
    first seen) when the parent saved a result (parallel calls); the sub-agent's later
    output of that result is masked, and so is the parent's own Read of it."""
    (tmp_path / "who.csv").write_text("who,PRIMARY_HCP\nPT0000000042,9535334475\n")
    guard = IdentifierGuard()
    workspace = str(tmp_path)

    def event(tool: str, session: str, result: dict[str, Any]) -> PostToolUse:
        return PostToolUse(tool, {}, "read", result, 1.0, "c", session, workspace)

    shown = {"content": "PT0000000042 9535334475", "is_error": False}
    assert (
        asyncio.run(guard(event("Bash", "p.reader-1", {"content": "", "is_error": False}))) is None
    )
    saved = {
        "content": "Saved 1 row",
        "is_error": False,
        "metadata": {"masked_columns": ["who"], "csv_path": "who.csv", "parquet_path": None},
    }
    assert asyncio.run(guard(event("SQL", "p", saved))) is None
    for session in ("p.reader-1", "p"):
        answer = asyncio.run(guard(event("Read", session, shown)))
        assert answer is not None
        assert answer["content"].startswith("[masked #1] 9535334475"), session


def test_a_sub_agents_folder_belongs_to_its_parents_workspace(tmp_path: Path) -> None:
    """``subagents/<name>-<n>`` (at any depth) is the parent's; other folders are their own."""
    from loopwright.healthcare.id_guard import workspace_root  # new: imported here, so the
    # other tests fail on their own assertions where it does not exist

    root = str(tmp_path)
    assert workspace_root(f"{root}/subagents/fetcher-1") == root
    assert workspace_root(f"{root}/subagents/a-1/subagents/b_2-3") == root
    assert workspace_root(f"{root}/subagents/notes") == f"{root}/subagents/notes"
    assert workspace_root(f"{root}/out/fetcher-1") == f"{root}/out/fetcher-1"


def test_a_query_that_timed_out_after_its_files_were_in_place(
    claims_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The query's worker was past its last check for a stop when the timeout struck: the
    call said it was stopped (an error, so the guard learnt nothing), and the worker then put
    the files in place. ``Read who.csv`` sent every id; now the guard reads the files the
    call left before the next output. The worker's last step is held until the call has
    answered (the timing of a slow disk)."""
    release, landed = threading.Event(), threading.Event()
    rename = sql_output.replace_together

    def late(moves: list[tuple[str, str]]) -> None:
        release.wait(120)
        rename(moves)
        landed.set()

    monkeypatch.setattr(sql_output, "replace_together", late)
    monkeypatch.setattr(sql_base, "STOP_GRACE_S", 0.05)  # do not wait for the held worker
    turns = iter([call("SQL", _sql(WHO, "who")), None, "Done."])

    def script(request: ModelRequest) -> Any:
        turn = next(turns)
        if turn is None:  # the SQL call has answered: let its worker finish, then read
            release.set()
            assert landed.wait(120)
            return call("Read", file_path="who.csv")
        return turn

    model = ScriptedModel(script)
    agent = healthcare_agent(model, database=claims_db, store=MemoryStore(), query_timeout=1.0)
    result = agent.run_sync("Save the first claims' patients")
    assert result.stop_reason == "end_turn"
    messages = result.session.messages
    (sql_result,) = [r for m in messages for r in m.tool_results if "stopped" in r.text]
    assert sql_result.is_error
    ids = _ids(Path(result.session.workspace_dir) / "who.csv")
    sent = _sent(model)
    assert _leaked(sent, ids) == []
    assert "[masked #" in sent


def test_a_run_cancelled_as_the_files_landed(
    claims_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run was cancelled (Ctrl-C, its time limit) while the query's files were being put
    in place: no PostToolUse hook ran. The session went on, in the same process and in a new
    one: each ``Read who.csv`` sent every id; now both are masked."""
    landed, release = threading.Event(), threading.Event()
    rename = sql_output.replace_together

    def held(moves: list[tuple[str, str]]) -> None:
        rename(moves)
        landed.set()
        release.wait(120)

    monkeypatch.setattr(sql_output, "replace_together", held)
    store = MemoryStore()
    model = ScriptedModel(
        [call("SQL", _sql(WHO, "who")), call("Read", file_path="who.csv"), "Done."]
    )
    agent = healthcare_agent(model, database=claims_db, store=store)
    session = agent.new_session()

    later = ScriptedModel([call("Read", file_path="who.csv"), "Done."])
    again = healthcare_agent(later, database=claims_db, store=store)  # a new process's guard

    async def cancelled_then_continued() -> None:
        run = asyncio.create_task(agent.collect("Save the patients", session))
        assert await asyncio.to_thread(landed.wait, 120)
        run.cancel()
        release.set()
        with contextlib.suppress(asyncio.CancelledError):
            await run
        assert run.cancelled()
        assert (await agent.collect("Show them", session)).stop_reason == "end_turn"
        assert (await again.collect("Show them again", session)).stop_reason == "end_turn"

    asyncio.run(cancelled_then_continued())
    ids = _ids(Path(session.workspace_dir) / "who.csv")
    for sent in (_sent(model), _sent(later)):  # the same process's guard, a new one's
        assert "[masked #" in sent
        assert _leaked(sent, ids) == []


def test_a_cohort_written_without_its_call_answering(tmp_path: Path, claims_db: Path) -> None:
    """A DefineCohort call noted before it ran (the guard's PreToolUse hook), whose member
    list (a real one, copied) is in place but whose PostToolUse never came (the run was
    cancelled as it ended): the next output masks its patient ids, though the workspace had
    been read already."""
    model = ScriptedModel([call("DefineCohort", name="humira", drugs=["HUMIRA"]), "Saved."])
    agent = healthcare_agent(model, database=claims_db, store=MemoryStore())
    result = agent.run_sync("Define the HUMIRA cohort")
    members = Path(result.session.workspace_dir) / "cohorts" / "humira.csv"
    ids = _ids(members)
    workspace = tmp_path / "w"
    workspace.mkdir()
    guard = IdentifierGuard()
    shown = {"content": "", "is_error": False}
    read = PostToolUse("Bash", {}, "read", shown, 1.0, "c", "s", str(workspace))
    assert asyncio.run(guard(read)) is None  # the workspace is read: nothing in it yet
    asyncio.run(
        guard.before(
            PreToolUse("DefineCohort", {"name": "humira"}, "read", "d", "s", str(workspace))
        )
    )
    (workspace / "cohorts").mkdir()
    shutil.copy(members, workspace / "cohorts" / "humira.csv")  # the call's files, no answer
    text = members.read_text()
    read.result = {"content": text, "is_error": False}
    answer = asyncio.run(guard(read))
    assert answer is not None
    assert _leaked(answer["content"], ids) == []
    assert "[masked #" in answer["content"]


def test_a_failed_call_that_wrote_nothing_keeps_the_earlier_files_record(tmp_path: Path) -> None:
    """A call noted before it ran marks its dataset to be read conservatively; one that then
    fails without writing puts the earlier result's record back, and one that succeeds
    with nothing masked drops it (an aggregate's words are not hidden in a later process)."""
    (tmp_path / "who.csv").write_text("who,n\nPT0000000042,3\n")
    record = tmp_path / ".loopwright" / "masked_columns.json"
    guard = IdentifierGuard()
    workspace = str(tmp_path)
    earlier = {"who": {"columns": ["who"], "how": "columns"}}
    record.parent.mkdir()
    record.write_text(json.dumps(earlier))
    asked = {"sql": "SELECT 1", "dataset_name": "who", "description": ""}

    def before() -> None:
        asyncio.run(guard.before(PreToolUse("SQL", asked, "read", "c", "s", workspace)))

    before()
    assert json.loads(record.read_text()) == {"who": {"columns": [], "how": "withheld"}}
    failed = {"content": "The query failed.", "is_error": True}
    asyncio.run(guard(PostToolUse("SQL", asked, "read", failed, 1.0, "c", "s", workspace)))
    assert json.loads(record.read_text()) == earlier

    before()
    (tmp_path / "who.csv").write_text("drug,n\nHUMIRA,3\n")
    (tmp_path / "who.parquet").unlink(missing_ok=True)
    counted = {
        "content": "Saved 1 row",
        "is_error": False,
        "metadata": {"csv_path": "who.csv", "parquet_path": None},
    }
    asyncio.run(guard(PostToolUse("SQL", asked, "read", counted, 1.0, "c", "s", workspace)))
    assert json.loads(record.read_text()) == {}
    shown = {"content": "HUMIRA 3", "is_error": False}
    fresh = IdentifierGuard()  # a later process
    assert (
        asyncio.run(fresh(PostToolUse("Read", {}, "read", shown, 1.0, "c", "s", workspace))) is None
    )


def test_a_result_moved_by_bash_is_masked_in_a_new_process(claims_db: Path) -> None:
    """``mv who.csv out/people.csv`` and the Parquet removed: a new process's guard read the
    workspace's own folder for the schema's identifier columns, so the renamed ``who`` of the
    moved file was shown whole. Now it looks in folders too, for the columns it masked
    before."""
    store = MemoryStore()
    first = ScriptedModel(
        [
            call("SQL", _sql(WHO, "who")),
            call("Bash", command="mkdir out && mv who.csv out/people.csv && rm who.parquet"),
            "Saved.",
        ]
    )
    agent = healthcare_agent(first, database=claims_db, store=store)
    session = agent.new_session()
    assert agent.run_sync("Save them", session).stop_reason == "end_turn"
    ids = _ids(Path(session.workspace_dir) / "out" / "people.csv")

    later = ScriptedModel([call("Read", file_path="out/people.csv"), "Done."])
    again = healthcare_agent(later, database=claims_db, store=store)
    assert again.run_sync("Show them", session).stop_reason == "end_turn"
    sent = _sent(later)
    assert "[masked #" in sent
    assert _leaked(sent, ids) == []
