"""The healthcare agent through an analyst's sessions, driven by scripted models: one tool's
files used by the next, charts, resumed and separate sessions, tool errors the session
survives, and the system prompt read from databases unlike the generated one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest

from loopwright import MemoryStore, ScriptedModel, call
from loopwright.healthcare.agent import healthcare_agent
from loopwright.healthcare.prompt import DatabaseProfile, TableProfile
from loopwright.models.scripted import ScriptedToolCall
from loopwright.sessions.sqlite import SQLiteStore

PNG = b"\x89PNG\r\n\x1a\n"
UNICODE_CHART = "charts/ünï/Top drugs – 2024.png"

CHARTS = f"""\
import os
import duckdb
import matplotlib.pyplot as plt
import polars as pl
import pyarrow.parquet as pq

top = pl.read_csv("top_drugs.csv")
assert pq.read_table("top_drugs.parquet").num_rows == top.height
print("rows", duckdb.sql("SELECT COUNT(*) FROM 'top_drugs.parquet'").fetchall()[0][0])
fig, ax = plt.subplots(figsize=(6, 3))
ax.barh(top["NDC_DRUG_NM"].to_list()[::-1], top["fills"].to_list()[::-1])
fig.savefig("plain.png")
fig.savefig("top drugs.png", dpi=120, bbox_inches="tight")
os.makedirs(os.path.dirname({UNICODE_CHART!r}), exist_ok=True)
fig.savefig({UNICODE_CHART!r}, dpi=72)
"""

BASH_CHART = (
    "python -c \"import matplotlib.pyplot as plt; plt.plot([1, 3, 2]); plt.savefig('bash.png')\""
)


def _results(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == "tool_result"]


def _run(
    database: Path, store: Any, turns: list[ScriptedToolCall], session: str | None = None
) -> Any:
    agent = healthcare_agent(ScriptedModel([*turns, "Done."]), database=database, store=store)
    return agent.run_sync("Which drugs are filled most?", session)


def test_an_analysts_session_chains_sql_python_charts_and_files(
    claims_db: Path, tmp_path: Path
) -> None:
    store = SQLiteStore(tmp_path / "sessions.db")
    first = _run(
        claims_db,
        store,
        [
            call(
                "SQL",
                sql="SELECT NDC_DRUG_NM, COUNT(*) AS fills FROM RX_CLAIMS GROUP BY 1 "
                "ORDER BY fills DESC, 1 LIMIT 10",
                dataset_name="top_drugs",
                description="Drugs by fills",
            ),
            call("Python", code=CHARTS),
            call("Bash", command=BASH_CHART),
            call("Read", file_path=UNICODE_CHART),
            call("Glob", pattern="**/*.png"),
            call("Write", file_path="report.md", content="# Top drugs\n\n![Fills](plain.png)\n"),
            call("Edit", file_path="top_drugs.csv", old_string="NDC_DRUG_NM,", new_string="drug,"),
            call("Grep", pattern="^drug,fills$"),
        ],
    )
    results = _results(first.events)
    assert [r["is_error"] for r in results] == [False] * 8, [r["content"] for r in results]
    assert "rows 10" in results[1]["content"]
    assert results[3]["content"].startswith(f"Image {UNICODE_CHART}")
    assert set(results[4]["content"].splitlines()) == {
        "plain.png",
        "top drugs.png",
        UNICODE_CHART,
        "bash.png",
    }
    assert "top_drugs.csv" in results[7]["content"]
    workspace = Path(first.session.workspace_dir)
    for chart in ("plain.png", "top drugs.png", UNICODE_CHART, "bash.png"):
        assert (workspace / chart).read_bytes()[:8] == PNG, chart

    # the next question in the same session, by a new agent (as `--session` does): same files
    again = _run(
        claims_db,
        store,
        [call("Python", code="import os; print(sorted(os.listdir('.')))")],
        session=first.session.id,
    )
    (listing,) = _results(again.events)
    assert Path(again.session.workspace_dir) == workspace
    for name in ("plain.png", "report.md", "top_drugs.csv", "top_drugs.parquet", "charts"):
        assert repr(name) in listing["content"]

    # another session sees none of them, by any tool
    other = _run(
        claims_db,
        store,
        [
            call("Glob", pattern="**/*"),
            call("Read", file_path=str(workspace / "top_drugs.csv")),
            call("Bash", command=f"cat '{workspace}/top_drugs.csv'"),
        ],
    )
    glob, read, bash = _results(other.events)
    assert glob["content"].startswith("No files found")
    assert read["is_error"]
    assert "outside the workspace" in read["content"]
    assert bash["is_error"]
    assert "No such file" in bash["content"]


def test_tool_errors_are_clear_and_the_session_goes_on(claims_db: Path) -> None:
    turns = [
        call("Python", code="raise ValueError('no such drug')"),
        call("Python", code="while True:\n    pass", timeout=1000),
        call("Python", code="print('x' * 3_000_000)"),
        call(
            "Python",
            code="import matplotlib.pyplot as plt\nplt.plot([1])\nplt.savefig('no/dir.png')",
        ),
        call("Python", script="print(1)"),
        call("SQL", sql="SELECT * FROM RX_CLAIM", dataset_name="x", description="typo"),
        call("DefineCohort", name="ra", drugs=["HUMIRA"], start_date="2024-13-01"),
    ]
    agent = healthcare_agent(
        ScriptedModel([*turns, "Done."]), database=claims_db, store=MemoryStore()
    )
    result = agent.run_sync("Try things")
    assert result.stop_reason == "end_turn"
    raised, looped, loud, unsaved, bad, typo, cohort = _results(result.events)
    assert raised["is_error"]
    assert "ValueError: no such drug" in raised["content"]
    assert looped["is_error"]
    assert "timed out after 1s" in looped["content"]
    assert not loud["is_error"]
    assert "output too long" in loud["content"]
    assert len(loud["content"]) < 100_000
    assert unsaved["is_error"]
    assert "FileNotFoundError" in unsaved["content"]
    assert bad["is_error"]
    assert "must contain ['code']" in bad["content"]
    assert typo["is_error"]
    assert "Tables in the database: " in typo["content"]
    assert cohort["is_error"]
    assert "write it as YYYY-MM-DD" in cohort["content"]


# --- the prompt read from other databases ------------------------------------------------


def _database(path: Path, *statements: str) -> Path:
    with duckdb.connect(str(path)) as con:
        for statement in statements:
            con.execute(statement)
    return path


def test_views_and_tables_of_other_schemas_are_in_the_prompt(tmp_path: Path) -> None:
    """The prompt listed the default schema's base tables only: a view or a table in another
    schema, which the SQL tool queries (and names when a table is not found), was missing,
    and a table whose name needs quotes had no row count or values."""
    database = _database(
        tmp_path / "warehouse.duckdb",
        "CREATE TABLE RX_CLAIMS (NDC_DRUG_NM VARCHAR, SERVICE_DATE_DD DATE, PAID DOUBLE)",
        "INSERT INTO RX_CLAIMS VALUES ('HUMIRA', '2024-01-05', 10), ('ENBREL', '2024-02-01', 5)",
        "CREATE VIEW drug_totals AS SELECT NDC_DRUG_NM, SUM(PAID) AS paid FROM RX_CLAIMS "
        "GROUP BY 1",
        "COMMENT ON VIEW drug_totals IS 'Paid amounts per drug. Derived.'",
        "CREATE SCHEMA archive",
        "CREATE TABLE archive.old_claims (NDC_DRUG_NM VARCHAR, note VARCHAR)",
        "INSERT INTO archive.old_claims VALUES ('OZEMPIC', NULL), ('HUMIRA', NULL), "
        "('OZEMPIC', NULL)",
        'CREATE TABLE "Claims 2023" ("Drug Name" VARCHAR)',
        """INSERT INTO "Claims 2023" VALUES ('HUMIRA'), ('ELIQUIS')""",
        "CREATE TABLE empty_claims (NDC_DRUG_NM VARCHAR, SERVICE_DATE_DD DATE)",
    )
    model = ScriptedModel(
        [
            call("SQL", sql="SELECT * FROM drug_totals", dataset_name="v", description="view"),
            call("SQL", sql="SELECT * FROM archive.old_claims", dataset_name="a", description="a"),
            "Done.",
        ]
    )
    agent = healthcare_agent(model, database=database, store=MemoryStore())
    result = agent.run_sync("What is there?")
    prompt = model.requests[0].system

    assert "drug_totals (view): Paid amounts per drug." in prompt
    assert "   - paid DOUBLE" in prompt
    assert "archive.old_claims (3 rows)" in prompt
    assert "   - NDC_DRUG_NM VARCHAR [2 values: OZEMPIC, HUMIRA]" in prompt
    assert "   - note VARCHAR\n" in prompt  # only NULLs: no values
    assert '"Claims 2023" (2 rows)' in prompt
    assert '   - "Drug Name" VARCHAR [2 values: ELIQUIS, HUMIRA]' in prompt
    assert "empty_claims (0 rows)" in prompt
    assert "RX_CLAIMS (2 rows)" in prompt
    assert "(from 2024-01-05 to 2024-02-01)" in prompt
    # the default schema's tables come first, then the other schemas'
    assert prompt.index("RX_CLAIMS (2 rows)") < prompt.index("archive.old_claims")
    # every name the prompt gives is one the SQL tool can query
    assert [r["is_error"] for r in _results(result.events)] == [False, False]


def test_a_table_in_the_default_schema_wins_over_a_namesake_elsewhere() -> None:
    """``table("RX_CLAIMS")`` returned the first table whose last part matched, so a copy in
    another schema listed first (``archive.rx_claims`` sorts before ``rx_claims``) was taken
    for the real one."""
    archive = TableProfile("archive.rx_claims", ())
    current = TableProfile("rx_claims", ())
    profile = DatabaseProfile("PostgreSQL", (archive, current))
    assert profile.table("RX_CLAIMS") is current
    assert profile.table("archive.RX_CLAIMS") is archive
    assert DatabaseProfile("PostgreSQL", (archive,)).table("rx_claims") is archive


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("max_rows", 0, "max_rows must be a whole number of at least 1"),
        ("max_rows", 2.5, "max_rows must be a whole number of at least 1"),
        ("query_timeout", 0, "query_timeout must be a positive number of seconds"),
        ("query_timeout", -5, "query_timeout must be a positive number of seconds"),
        ("query_timeout", float("nan"), "query_timeout must be a positive number of seconds"),
    ],
)
def test_sql_limits_are_checked_when_the_agent_is_made(
    claims_db: Path, option: str, value: Any, message: str
) -> None:
    """They were taken as given: the first run then stopped with "the tools could not be set
    up" (or, for a NaN timeout, every query "timed out after nans")."""
    options: dict[str, Any] = {option: value}
    with pytest.raises(ValueError, match=message):
        healthcare_agent(ScriptedModel(["ok"]), database=claims_db, **options)
    agent = healthcare_agent(
        ScriptedModel(
            [call("SQL", sql="SELECT 1 AS one", dataset_name="one", description="1"), "ok"]
        ),
        database=claims_db,
        store=MemoryStore(),
        max_rows=5,
        query_timeout=30,
    )
    result = agent.run_sync("one")
    assert [r["is_error"] for r in _results(result.events)] == [False]


def test_query_timeout_also_limits_define_cohort(claims_db: Path) -> None:
    """DefineCohort kept its own 60 s whatever query_timeout said."""
    from loopwright.healthcare.cohort import DefineCohort
    from loopwright.tools.sql import SQL

    agent = healthcare_agent(ScriptedModel(["ok"]), database=claims_db, query_timeout=7)
    (cohort,) = [t for t in agent.tools if isinstance(t, DefineCohort)]
    (sql,) = [t for t in agent.tools if isinstance(t, SQL)]
    assert cohort.query_timeout == 7
    assert sql.options["timeout"] == 7
    default = healthcare_agent(ScriptedModel(["ok"]), database=claims_db)
    (cohort,) = [t for t in default.tools if isinstance(t, DefineCohort)]
    assert cohort.query_timeout == 60
