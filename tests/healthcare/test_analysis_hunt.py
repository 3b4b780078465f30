"""The analyst's path after a query, through the real healthcare agent and a scripted model:
DefineCohort on warehouses unlike the generated one (providers listed more than once,
timestamps for dates, names outside ASCII), and the Python tool's analysis of the files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb

from loopwright import MemoryStore, ScriptedModel, call
from loopwright.healthcare.agent import healthcare_agent
from loopwright.models.scripted import ScriptedToolCall

RX_COLUMNS = (
    "PATIENT_ID VARCHAR, SERVICE_DATE_DD {date}, NDC_DRUG_NM VARCHAR, "
    "PRESCRIBER_NPI_NBR VARCHAR, PRESCRIBER_NPI_STATE_CD VARCHAR, "
    "PATIENT_BIRTH_YEAR INTEGER, PATIENT_GENDER_CD VARCHAR"
)


def _warehouse(path: Path, rows: list[tuple[Any, ...]], *, date: str = "DATE") -> Path:
    """A small DuckDB warehouse of our own: RX_CLAIMS with ``rows`` and PROVIDERS_BIO where
    NPI N1 is listed under two specialties (as in NPPES, one row per taxonomy)."""
    with duckdb.connect(str(path)) as con:
        con.execute(f"CREATE TABLE RX_CLAIMS ({RX_COLUMNS.format(date=date)})")
        con.executemany("INSERT INTO RX_CLAIMS VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        con.execute("CREATE TABLE PROVIDERS_BIO (npi_number VARCHAR, specialty VARCHAR)")
        con.execute(
            "INSERT INTO PROVIDERS_BIO VALUES ('N1', 'Rheumatology'), "
            "('N1', 'Internal Medicine'), ('N2', 'Rheumatology')"
        )
    return path


def _cohorts(database: Path, turns: list[ScriptedToolCall]) -> tuple[list[dict[str, Any]], Path]:
    agent = healthcare_agent(
        ScriptedModel([*turns, "Done."]), database=database, store=MemoryStore()
    )
    result = agent.run_sync("Define the cohorts")
    results = [e for e in result.events if e["type"] == "tool_result"]
    return results, Path(result.session.workspace_dir)


def _counts(workspace: Path, name: str) -> tuple[int, int]:
    """(patients, claims) of a saved cohort, as its definition records them."""
    counts = json.loads((workspace / "cohorts" / f"{name}.json").read_text())["counts"]
    return counts["patients"], counts["claims"]


def test_a_provider_with_two_specialties_counts_each_claim_once(tmp_path: Path) -> None:
    """The specialty filter JOINed PROVIDERS_BIO: a prescriber listed under both specialties
    asked for counted each of their claims twice, so a patient with one fill passed
    ``min_claims: 2`` and the claim counts were inflated."""
    database = _warehouse(
        tmp_path / "providers.duckdb",
        [
            ("P1", "2024-03-01", "HUMIRA", "N1", "CA", 1970, "F"),
            ("P2", "2024-03-01", "HUMIRA", "N2", "CA", 1970, "F"),
            ("P2", "2024-04-01", "HUMIRA", "N2", "CA", 1970, "F"),
        ],
    )
    specialties = ["Rheumatology", "Internal Medicine"]
    results, workspace = _cohorts(
        database,
        [
            call("DefineCohort", name="any", drugs=["HUMIRA"], specialties=specialties),
            call(
                "DefineCohort", name="two", drugs=["HUMIRA"], specialties=specialties, min_claims=2
            ),
            call(
                "Python",
                code="import polars as pl\n"
                "members = pl.read_csv('cohorts/any.csv')\n"
                "print(members.select('patient_id', 'pharmacy_claims').rows())",
            ),
        ],
    )
    assert [r["is_error"] for r in results] == [False] * 3, [r["content"] for r in results]
    assert _counts(workspace, "any") == (2, 3)
    assert _counts(workspace, "two") == (1, 2)
    assert results[1]["content"].startswith("Cohort two: 1 patient, 2 qualifying")
    members = (workspace / "cohorts" / "two.csv").read_text().splitlines()
    assert [line.split(",")[:2] for line in members[1:]] == [["P2", "2"]]
    assert results[2]["content"] == "[('P1', 1), ('P2', 2)]"


def test_dates_held_as_timestamps_keep_the_end_dates_claims(tmp_path: Path) -> None:
    """The date range compared a TIMESTAMP column with the bound date: a claim at 10:30 on
    end_date was after ``2024-12-31 00:00`` and left out of a range that says "on or
    before"."""
    database = _warehouse(
        tmp_path / "timestamps.duckdb",
        [
            ("P1", "2024-12-31 10:30:00", "HUMIRA", "N2", "CA", 1970, "F"),
            ("P2", "2024-12-01 00:00:00", "HUMIRA", "N2", "CA", 1970, "M"),
            ("P3", "2025-01-01 00:00:00", "HUMIRA", "N2", "CA", 1970, "M"),
        ],
        date="TIMESTAMP",
    )
    results, workspace = _cohorts(
        database,
        [
            call(
                "DefineCohort",
                name="december",
                drugs=["HUMIRA"],
                start_date="2024-12-01",
                end_date="2024-12-31",
            ),
            call(
                "DefineCohort",
                name="new_year",
                drugs=["HUMIRA"],
                start_date="2024-12-31",
                end_date="2024-12-31",
                min_age=54,
                max_age=54,
            ),
        ],
    )
    assert [r["is_error"] for r in results] == [False, False], [r["content"] for r in results]
    assert _counts(workspace, "december") == (2, 2)
    assert _counts(workspace, "new_year") == (1, 1)
    members = (workspace / "cohorts" / "december.csv").read_text().splitlines()
    assert members[1:] == ["P1,1,2024-12-31,2024-12-31", "P2,1,2024-12-01,2024-12-01"]
    # the saved SQL, run again with the saved parameters, gives the same members
    definition = json.loads((workspace / "cohorts" / "december.json").read_text())
    with duckdb.connect(str(database), read_only=True) as con:
        rerun = con.execute(definition["sql"], definition["parameters"]).fetchall()
    assert [row[0] for row in rerun] == ["P1", "P2"]


def test_names_outside_ascii_match_as_the_database_spells_them(tmp_path: Path) -> None:
    """Values were lower-cased by Python (full case mappings) and the column by the
    database's ``lower()`` (simple ones): a drug written exactly as in the data, ``ΟΔΟΣ``
    or ``İNSULIN``, matched nothing and was reported as misspelt."""
    database = _warehouse(
        tmp_path / "unicode.duckdb",
        [
            ("P1", "2024-03-01", "ΟΔΟΣ", "N1", "CA", 1970, "F"),
            ("P2", "2024-03-01", "İNSULIN", "N2", "CA", 1970, "F"),
            ("P3", "2024-03-01", "HUMIRA", "N2", "CA", 1970, "F"),
        ],
    )
    results, workspace = _cohorts(
        database,
        [
            call("DefineCohort", name="greek", drugs=["ΟΔΟΣ"]),
            call("DefineCohort", name="dotted", drugs=["İNSULIN"]),
            call("DefineCohort", name="without", drugs=["HUMIRA"], exclude_drugs=["ΟΔΟΣ"]),
            call("DefineCohort", name="mixed", drugs=["οδοσ", "İnsulin"]),
        ],
    )
    assert [r["is_error"] for r in results] == [False] * 4, [r["content"] for r in results]
    assert _counts(workspace, "greek") == (1, 1)
    assert _counts(workspace, "dotted") == (1, 1)
    assert _counts(workspace, "without") == (1, 1)
    assert _counts(workspace, "mixed") == (2, 2)
    for result in results:
        assert "No claims match" not in result["content"], result["content"]


def test_criteria_that_exclude_all_they_include_are_refused(claims_db: Path) -> None:
    """Including HUMIRA and excluding it (or including E11.9 and excluding all of E11) gave
    0 patients and "No patient meets all the criteria", with no word of why, where a
    reversed date or age range is refused with a message."""
    results, workspace = _cohorts(
        claims_db,
        [
            call("DefineCohort", name="c1", drugs=["HUMIRA"], exclude_drugs=["humira"]),
            call("DefineCohort", name="c2", conditions=["E11.9"], exclude_conditions=["E11"]),
            call(
                "DefineCohort",
                name="c3",
                conditions=["Type 2 diabetes", "I48"],
                exclude_conditions=["type 2 DIABETES", "I48.0", "I48"],
            ),
            # excluding a part of what is included is a real cohort
            call(
                "DefineCohort", name="ok", conditions=["E11", "I48"], exclude_conditions=["E11.9"]
            ),
            call("DefineCohort", name="ok2", drugs=["HUMIRA", "ENBREL"], exclude_drugs=["HUMIRA"]),
        ],
    )
    assert [r["is_error"] for r in results] == [True, True, True, False, False]
    drugs, codes, labels, _, _ = results
    assert "Every value of drugs ('HUMIRA') is also excluded by exclude_drugs" in drugs["content"]
    assert "Every value of conditions ('E11.9') is also excluded" in codes["content"]
    assert "conditions ('Type 2 diabetes', 'I48') is also excluded" in labels["content"]
    assert "the cohort would be empty" in labels["content"]
    assert sorted(p.name for p in (workspace / "cohorts").iterdir()) == [
        "ok.csv",
        "ok.json",
        "ok.parquet",
        "ok2.csv",
        "ok2.json",
        "ok2.parquet",
    ]
    assert _counts(workspace, "ok")[0] > 0
    assert _counts(workspace, "ok2")[0] > 0


def test_running_out_of_memory_in_python_says_so_and_what_to_do(claims_db: Path) -> None:
    """A bare ``MemoryError``, or Polars' "memory allocation of N bytes failed" and a SIGABRT,
    was all the model saw: nothing said a sandbox limit was hit, which one, or what to do."""
    from loopwright.sandbox.limits import ResourceLimits, format_size

    results, _ = _cohorts(
        claims_db,
        [
            call("Python", code="data = bytearray(1 << 40)"),
            call(
                "Python",
                code="import polars as pl\npl.select(pl.repeat(1.0, 1 << 37, eager=True))",
            ),
            call("Python", code="raise ValueError('no such column')"),
        ],
    )
    assert [r["is_error"] for r in results] == [True, True, True]
    python_error, polars_abort, other = results
    assert "MemoryError" in python_error["content"]
    assert "memory allocation of" in polars_abort["content"]
    limit = ResourceLimits().memory_bytes
    assert limit is not None
    for result in (python_error, polars_abort):
        assert (
            f"ran out of memory (each process may use at most {format_size(limit)} here)"
            in (result["content"])
        )
        assert "pl.scan_parquet" in result["content"]
    assert "out of memory" not in other["content"]
