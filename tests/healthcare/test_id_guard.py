"""Patient ids the model prints from the saved files, with Python, Bash, Read or Grep.

The SQL tool's preview masks direct patient identifiers, but the saved CSV and Parquet files
keep them, and the model could print them: ``print(pl.read_parquet(...))`` in Python, ``cat``
in Bash, ``Read``, ``Grep``. Those outputs went to the model's provider unmasked. Now the
healthcare agent's identifier guard (a PostToolUse hook) masks, in those outputs, the values the
session's SQL previews masked and its cohorts list, with the preview's markers; the files keep
every value and NPIs stay visible. The real agent on the generated claims database, real
sandboxed Python and Bash, driven by scripted models.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import duckdb

from loopwright import MemoryStore
from loopwright.healthcare.agent import healthcare_agent
from loopwright.healthcare.id_guard import IdentifierGuard
from loopwright.models.scripted import ScriptedModel, call
from loopwright.policy.hooks import PostToolUse

ROWS = "SELECT PATIENT_ID, PRIMARY_HCP, ICD10_CD FROM MED_CLAIMS ORDER BY CLAIM_ID LIMIT 40"

PRINT_ROWS = """\
import polars as pl
pl.Config.set_tbl_rows(100)
df = pl.read_parquet("rows.parquet")
print(df)
print(df.row(0))
print(open("rows.csv").read()[:4000])
"""


def _sql(sql: str, name: str) -> dict[str, str]:
    return {"sql": sql, "dataset_name": name, "description": name}


def _sent(model: ScriptedModel) -> str:
    """Everything the model's provider was sent."""
    return json.dumps([m.to_dict() for r in model.requests for m in r.messages])


def _outputs(messages: list[Any]) -> dict[str, str]:
    """Each tool result's text by its tool name (the last one of each)."""
    names = {use.id: use.name for message in messages for use in message.tool_uses}
    return {
        names[result.tool_use_id]: result.text
        for message in messages
        for result in message.tool_results
    }


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _run(claims_db: Path, turns: list[Any], **options: Any) -> tuple[ScriptedModel, Any]:
    model = ScriptedModel([*turns, "Done."])
    agent = healthcare_agent(model, database=claims_db, store=MemoryStore(), **options)
    result = agent.run_sync("Show me some patients' claims")
    assert result.stop_reason == "end_turn"
    return model, result


def test_printed_catted_read_and_grepped_rows_show_no_patient_id(
    claims_db: Path, claims_con: duckdb.DuckDBPyConnection
) -> None:
    """The model prints a saved result with Python, cats its CSV with Bash, Reads it and
    Greps it: the provider-bound text held every patient id; now each shows them as the
    preview's markers (the first row's id is [masked #1] in the preview and in Python's
    output), with a note, the NPIs and codes stay, and the files are unchanged."""
    rows = claims_con.execute(ROWS).fetchall()
    ids = sorted({str(r[0]) for r in rows})
    npis = {str(r[1]) for r in rows}
    model, result = _run(
        claims_db,
        [
            [call("SQL", _sql(ROWS, "rows"))],
            [
                call("Python", code=PRINT_ROWS),
                call("Bash", command="cat rows.csv; echo; grep -c PT rows.csv"),
                call("Read", file_path="rows.csv"),
                call("Grep", pattern="^PT", path="rows.csv", output_mode="content"),
            ],
        ],
    )
    workspace = Path(result.session.workspace_dir)
    before = {name: _digest(workspace / name) for name in ("rows.csv", "rows.parquet")}
    sent = _sent(model)
    assert [i for i in ids if i in sent] == []  # no patient id reached the provider
    outputs = _outputs(result.session.messages)
    first_id = str(rows[0][0])
    for tool in ("Python", "Bash", "Read"):
        text = outputs[tool]
        assert "[masked #1]" in text, (tool, text)
        assert "patient privacy" in text, (tool, text)
        assert any(npi in text for npi in npis), (tool, text)  # NPIs: still shown
        assert rows[0][2] in text, (tool, text)  # and the other columns
    assert "[masked #" in outputs["Grep"]
    # the preview and Python's print agree on the first row's marker
    assert "| [masked #1] |" in outputs["SQL"]
    assert re.search(r"\(\s*'\[masked #1\]'", outputs["Python"]), outputs["Python"]
    # one marker per patient: the rows of one patient still line up
    markers = set(re.findall(r"\[masked #\d+\]", outputs["Bash"]))
    assert len(markers) == len(ids)
    # the analyst's files are unchanged and hold the ids
    assert {name: _digest(workspace / name) for name in before} == before
    assert first_id in (workspace / "rows.csv").read_text()


def test_cohort_members_renamed_ids_and_whole_rows_are_masked(
    claims_db: Path, claims_con: duckdb.DuckDBPyConnection
) -> None:
    """A cohort's member list (cohorts/<name>.csv), a result with the id renamed and one with
    whole rows (a struct holding PATIENT_ID) printed in Python: no patient id shown; the
    struct's other fields (NPIs) are."""
    renamed = "SELECT PATIENT_ID AS who, CLAIM_ID FROM MED_CLAIMS ORDER BY CLAIM_ID LIMIT 10"
    whole = "SELECT m FROM MED_CLAIMS m ORDER BY CLAIM_ID LIMIT 3"
    model, result = _run(
        claims_db,
        [
            [
                call("DefineCohort", name="humira", drugs=["HUMIRA"]),
                call("SQL", _sql(renamed, "renamed")),
                call("SQL", _sql(whole, "whole")),
            ],
            [
                call("Bash", command="head -n 30 cohorts/humira.csv"),
                call(
                    "Python",
                    code="import polars as pl\nprint(pl.read_parquet('renamed.parquet'))\n"
                    "for r in pl.read_parquet('whole.parquet').to_dicts(): print(r)",
                ),
            ],
        ],
    )
    workspace = Path(result.session.workspace_dir)
    members = (workspace / "cohorts" / "humira.csv").read_text().splitlines()[1:30]
    member_ids = [line.split(",")[0] for line in members]
    assert member_ids
    assert all(i.startswith("PT") for i in member_ids)
    row_ids = [
        str(r[0])
        for r in claims_con.execute(
            "SELECT PATIENT_ID FROM MED_CLAIMS ORDER BY CLAIM_ID LIMIT 10"
        ).fetchall()
    ]
    sent = _sent(model)
    assert [i for i in member_ids + row_ids if i in sent] == []
    outputs = _outputs(result.session.messages)
    assert len(re.findall(r"\[masked #\d+\]", outputs["Bash"])) == len(members)
    top = claims_con.execute("SELECT PRIMARY_HCP FROM MED_CLAIMS ORDER BY CLAIM_ID").fetchone()
    assert top is not None
    assert str(top[0]) in outputs["Python"]  # the struct's NPI field is shown


def test_summarize_masks_only_the_identifiers_statistics(claims_db: Path) -> None:
    """SUMMARIZE's min and max of PATIENT_ID printed by Python are masked; the other columns'
    statistics (amounts, codes) are not."""
    model, result = _run(
        claims_db,
        [
            [call("SQL", _sql("SUMMARIZE MED_CLAIMS", "summary"))],
            [
                call(
                    "Python",
                    code="import polars as pl\npl.Config.set_tbl_rows(100)\n"
                    "pl.Config.set_tbl_cols(100)\n"
                    "df = pl.read_parquet('summary.parquet')\n"
                    "for r in df.select('column_name', 'min', 'max').rows(): print(r)",
                )
            ],
        ],
    )
    workspace = Path(result.session.workspace_dir)
    with duckdb.connect() as con:
        stats = {
            name: (low, high)
            for name, low, high in con.execute(
                "SELECT column_name, min, max FROM read_parquet(?)",
                [str(workspace / "summary.parquet")],
            ).fetchall()
        }
    low, high = stats["PATIENT_ID"]
    sent = _sent(model)
    assert low not in sent
    assert high not in sent
    python = _outputs(result.session.messages)["Python"]
    assert "('PATIENT_ID', '[masked #" in python
    assert f"'{stats['ICD10_CD'][0]}'" in python  # another column's minimum: shown
    assert f"'{stats['CLAIM_ID'][1]}'" in python


def test_an_unreadable_result_withholds_the_outputs_until_it_is_gone(tmp_path: Path) -> None:
    """Fail closed: when a masked result's file cannot be read, the guarded tools' outputs
    are withheld, saying which file and why (it is tried again each time); once the file is
    gone they flow again."""
    broken = tmp_path / "broken.parquet"
    broken.write_text("not parquet")
    guard = IdentifierGuard()
    saved = {
        "content": "Saved 1 row",
        "is_error": False,
        "metadata": {"masked_columns": ["PATIENT_ID"], "parquet_path": str(broken)},
    }

    def event(tool: str, result: dict[str, Any]) -> PostToolUse:
        return PostToolUse(tool, {}, "read", result, 1.0, "c", "s1", str(tmp_path))

    assert asyncio.run(guard(event("SQL", saved))) is None
    answer = asyncio.run(guard(event("Python", {"content": "PT0001", "is_error": False})))
    assert answer is not None
    assert answer["is_error"] is True
    assert "withheld" in answer["content"]
    assert "broken.parquet" in answer["content"]
    broken.unlink()
    assert asyncio.run(guard(event("Python", {"content": "PT0001", "is_error": False}))) is None


def test_without_masking_the_outputs_are_as_printed(
    claims_db: Path, claims_con: duckdb.DuckDBPyConnection
) -> None:
    """mask_identifiers=False: no guard, the ids are shown as the tools print them."""
    rows = claims_con.execute(ROWS).fetchall()
    _, result = _run(
        claims_db,
        [[call("SQL", _sql(ROWS, "rows"))], [call("Bash", command="cat rows.csv")]],
        mask_identifiers=False,
    )
    assert str(rows[0][0]) in _outputs(result.session.messages)["Bash"]


def test_names_dates_of_birth_and_ids_match_whole_and_ignoring_case(tmp_path: Path) -> None:
    """A result saved as CSV alone with a name, a date of birth and an id masked: each is
    found in printed text whole (not inside a longer id), ignoring case, a date also with a
    time; values too short to tell from ordinary numbers, and other columns, are left."""
    saved = tmp_path / "people.csv"
    saved.write_text(
        "PATIENT_NAME,DATE_OF_BIRTH,MEMBER_ID,STATE\n"
        "Maria Lopez,1980-02-03,MB001234,CA\n"
        "Li,1975-12-31,MB001235,NY\n"
    )
    guard = IdentifierGuard()
    metadata = {
        "masked_columns": ["PATIENT_NAME", "DATE_OF_BIRTH", "MEMBER_ID"],
        "csv_path": "people.csv",
        "parquet_path": None,
    }

    def event(tool: str, content: str) -> PostToolUse:
        result = {"content": content, "is_error": False, "metadata": metadata}
        return PostToolUse(tool, {}, "read", result, 1.0, "c", "s2", str(tmp_path))

    assert asyncio.run(guard(event("SQL", "Saved 2 rows"))) is None
    printed = (
        "MARIA LOPEZ born 1980-02-03 00:00:00 id mb001234 (not MB0012345), "
        "Li from CA, 1975-12-31; MB001235."
    )
    answer = asyncio.run(guard(event("Bash", printed)))
    assert answer is not None
    text = answer["content"]
    assert text.startswith(
        "[masked #1] born [masked #3] 00:00:00 id [masked #5] (not MB0012345), "
        "Li from CA, [masked #4]; [masked #6]."
    ), text
    assert "patient privacy" in text
    # another session knows none of them
    other = PostToolUse("Bash", {}, "read", {"content": printed}, 1.0, "c", "s3", "")  # type: ignore[arg-type]
    assert asyncio.run(guard(other)) is None


def test_a_withheld_preview_masks_its_unknown_columns_not_the_known_ones(tmp_path: Path) -> None:
    """A preview withheld because the identifier's columns could not be told apart: the
    guard masks the values of the result's columns not known to be something else (a derived
    ``x``), while a claims code and an NPI column of the schema stay readable."""
    saved = tmp_path / "mixed.csv"
    saved.write_text("x,ICD10_CD,PRIMARY_HCP\nPT0000000042,E11.9,9535334475\n")
    metadata = {
        "masked_columns": ["x", "ICD10_CD", "PRIMARY_HCP"],
        "preview_withheld": True,
        "csv_path": str(saved),
    }
    guard = IdentifierGuard()

    def event(tool: str, content: str) -> PostToolUse:
        result = {"content": content, "is_error": False, "metadata": metadata}
        return PostToolUse(tool, {}, "read", result, 1.0, "c", "s4", str(tmp_path))

    asyncio.run(guard(event("SQL", "Saved 1 row")))
    answer = asyncio.run(guard(event("Read", saved.read_text())))
    assert answer is not None
    assert answer["content"].startswith("x,ICD10_CD,PRIMARY_HCP\n[masked #1],E11.9,9535334475\n")


def test_a_session_continued_by_another_agent_masks_its_earlier_results(
    tmp_path: Path, claims_db: Path
) -> None:
    """Each one-shot ``loopwright healthcare --session`` question is a new process, whose
    guard never saw the earlier turns' queries: ``Read rows.csv`` in the second turn sent
    the first turn's patient ids. A session first seen reads its workspace's saved results
    (by their identifier columns) and cohorts once."""
    store = MemoryStore()
    first_model = ScriptedModel(
        [
            call("SQL", **_sql(ROWS, "rows")),
            call("DefineCohort", name="humira", drugs=["HUMIRA"]),
            "Saved.",
        ]
    )
    first = healthcare_agent(first_model, database=claims_db, store=store)
    session = first.new_session()
    assert first.run_sync("Save some patients' claims", session).stop_reason == "end_turn"
    files = Path(session.workspace_dir)
    ids = {line.split(",")[0] for line in (files / "rows.csv").read_text().splitlines()[1:]}
    members = (files / "cohorts" / "humira.csv").read_text().splitlines()[1:6]
    ids |= {line.split(",")[0] for line in members}
    assert ids

    second_model = ScriptedModel(
        [call("Read", file_path="rows.csv"), call("Read", file_path="cohorts/humira.csv"), "Done."]
    )
    second = healthcare_agent(second_model, database=claims_db, store=store)  # a new guard
    assert second.run_sync("Show me the rows", session).stop_reason == "end_turn"
    sent = json.dumps([m.to_dict() for m in second_model.requests[-1].messages[-4:]])
    assert [i for i in ids if i in sent] == []
    assert "[masked #" in sent
    npi = (files / "rows.csv").read_text().splitlines()[1].split(",")[1]
    assert npi in sent  # NPIs (PRIMARY_HCP) stay visible


def test_a_renamed_identifier_column_is_masked_in_a_session_continued_elsewhere(
    claims_db: Path,
) -> None:
    """``PATIENT_ID AS who`` is masked in its preview, and the guard that saw it masks it in
    Read; a guard of another process (a new agent) read the workspace for the schema's own
    identifier columns only, so ``Read who.csv`` there sent every id. The guard now keeps
    the columns it masked in the workspace, and reads them again."""
    renamed = "SELECT PATIENT_ID AS who, PRIMARY_HCP FROM MED_CLAIMS ORDER BY CLAIM_ID LIMIT 30"
    store = MemoryStore()
    first_model = ScriptedModel([call("SQL", **_sql(renamed, "who")), "Saved."])
    first = healthcare_agent(first_model, database=claims_db, store=store)
    session = first.new_session()
    assert first.run_sync("Save some patients", session).stop_reason == "end_turn"
    files = Path(session.workspace_dir)
    ids = {line.split(",")[0] for line in (files / "who.csv").read_text().splitlines()[1:]}
    assert len(ids) > 5
    record = json.loads((files / ".loopwright" / "masked_columns.json").read_text())
    assert record == {"who": {"columns": ["who"], "how": "columns"}}

    second_model = ScriptedModel([call("Read", file_path="who.csv"), "Done."])
    second = healthcare_agent(second_model, database=claims_db, store=store)  # a new guard
    assert second.run_sync("Show me them", session).stop_reason == "end_turn"
    sent = json.dumps([m.to_dict() for m in second_model.requests[-1].messages[-2:]])
    assert [i for i in ids if i in sent] == []
    assert "[masked #" in sent


def test_a_workspace_read_for_a_resumed_session_takes_only_the_schemas_identifiers(
    tmp_path: Path,
) -> None:
    """The files a resumed session finds are read for the schema's identifier columns only:
    a listing of columns (``column_name``) or a file's ``drug_name`` are not patient names,
    and masking their values would hide ordinary words from the model."""
    (tmp_path / "rows.csv").write_text("PATIENT_ID,PRIMARY_HCP\nPT0000000042,9535334475\n")
    (tmp_path / "columns.csv").write_text("column_name,data_type\nPATIENT_ID,VARCHAR\n")
    (tmp_path / "drugs.csv").write_text("drug_name,fills\nHUMIRA,12\n")
    guard = IdentifierGuard()
    shown = "PT0000000042 9535334475 PATIENT_ID VARCHAR HUMIRA"
    event = PostToolUse(
        "Bash", {}, "execute", {"content": shown, "is_error": False}, 1.0, "c", "s9", str(tmp_path)
    )
    answer = asyncio.run(guard(event))
    assert answer is not None
    assert answer["content"].startswith("[masked #1] 9535334475 PATIENT_ID VARCHAR HUMIRA")
