"""``DefineCohort``'s rough edges: the members also as Parquet with their column types (an
empty cohort's too), a redefinition says what it replaced, a sex that matches nothing says
what the data holds, and ICD-10 codes match with or without their dot."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest

from loopwright.healthcare.cohort import (
    BIGQUERY,
    DUCKDB,
    POSTGRES,
    CohortSchema,
    Criteria,
    DefineCohort,
    Dialect,
    build_cohort_query,
)
from loopwright.healthcare.data import SCHEMA
from loopwright.sql import DuckDBBackend
from loopwright.tools.base import BaseTool


@asynccontextmanager
async def _tool(database: Path, workspace: Path) -> AsyncIterator[BaseTool]:
    """A DefineCohort tool on ``database``, bound to ``workspace``."""
    backend = DuckDBBackend(database)
    toolset = DefineCohort(backend)
    os.makedirs(workspace, exist_ok=True)
    (tool,) = toolset.bind(str(workspace))
    try:
        yield tool
    finally:
        await toolset.aclose()
        await backend.aclose()


async def _define(tool: BaseTool, name: str, **criteria: Any) -> dict[str, Any]:
    result = await tool.execute({"name": name, **criteria})
    assert result["is_error"] is False, result["content"]
    return result


def _rx_warehouse(
    path: Path, rows: list[tuple[Any, ...]], *, patient_type: str = "VARCHAR"
) -> Path:
    """A DuckDB file with RX_CLAIMS only: ``(patient, date, drug, sex)`` rows."""
    with duckdb.connect(str(path)) as con:
        con.execute(
            f"CREATE TABLE RX_CLAIMS (PATIENT_ID {patient_type}, SERVICE_DATE_DD DATE, "
            "NDC_DRUG_NM VARCHAR, PATIENT_GENDER_CD VARCHAR)"
        )
        con.executemany("INSERT INTO RX_CLAIMS VALUES (?, ?, ?, ?)", rows)
    return path


# --- the members as Parquet --------------------------------------------------------------------


async def test_an_empty_cohorts_members_keep_their_types_in_parquet(
    claims_db: Path, tmp_path: Path
) -> None:
    """The members were saved as CSV only: an empty cohort's file is a header, which Polars
    reads as text columns, and a full one's types are Polars' guesses."""
    async with _tool(claims_db, tmp_path / "ws") as tool:
        empty = await _define(tool, "none", drugs=["NO SUCH DRUG"])
        full = await _define(tool, "both", drugs=["HUMIRA"], conditions=["M06"])
    cohorts = tmp_path / "ws" / "cohorts"
    assert pl.read_csv(cohorts / "none.csv").schema == dict.fromkeys(
        ["patient_id", "pharmacy_claims", "first_claim_date", "last_claim_date"], pl.String
    )  # what the CSV alone gave
    members = pl.read_parquet(cohorts / "none.parquet")
    assert members.height == 0
    assert members.schema == {
        "patient_id": pl.String,
        "pharmacy_claims": pl.Int64,
        "first_claim_date": pl.Date,
        "last_claim_date": pl.Date,
    }
    assert "to cohorts/none.csv and cohorts/none.parquet (which keeps" in empty["content"]
    assert empty["metadata"]["parquet_path"] == str(cohorts / "none.parquet")
    definition = json.loads((cohorts / "none.json").read_text())
    assert definition["members_parquet"] == "cohorts/none.parquet"

    both = pl.read_parquet(cohorts / "both.parquet")
    assert both.schema == {
        "patient_id": pl.String,
        "pharmacy_claims": pl.Int64,
        "medical_claims": pl.Int64,
        "first_claim_date": pl.Date,
        "last_claim_date": pl.Date,
    }
    assert both.height == full["metadata"]["patients"] > 0
    assert both.equals(pl.read_csv(cohorts / "both.csv", schema=both.schema))
    assert both["pharmacy_claims"].sum() == full["metadata"]["claims_by_kind"]["pharmacy"]


async def test_patient_ids_keep_the_databases_type_in_parquet(tmp_path: Path) -> None:
    """Text ids stay text (``007`` is not the number 7, as a CSV reader guesses); whole-number
    ids stay numbers, in an empty cohort too."""
    text = _rx_warehouse(
        tmp_path / "text.duckdb",
        [("007", "2024-01-02", "HUMIRA", "F"), ("010", "2024-01-03", "HUMIRA", "F")],
    )
    numbers = _rx_warehouse(
        tmp_path / "numbers.duckdb",
        [(7, "2024-01-02", "HUMIRA", "F"), (3_000_000_000, "2024-01-03", "HUMIRA", "M")],
        patient_type="BIGINT",
    )
    async with _tool(text, tmp_path / "text") as tool:
        await _define(tool, "h", drugs=["HUMIRA"])
    async with _tool(numbers, tmp_path / "numbers") as tool:
        await _define(tool, "h", drugs=["HUMIRA"])
        await _define(tool, "none", drugs=["ENBREL"])
    assert pl.read_parquet(tmp_path / "text/cohorts/h.parquet")["patient_id"].to_list() == [
        "007",
        "010",
    ]
    assert pl.read_csv(tmp_path / "text/cohorts/h.csv")["patient_id"].to_list() == [7, 10]
    ids = pl.read_parquet(tmp_path / "numbers/cohorts/h.parquet")["patient_id"]
    assert ids.dtype == pl.Int64
    assert ids.to_list() == [7, 3_000_000_000]
    assert pl.read_parquet(tmp_path / "numbers/cohorts/none.parquet").schema["patient_id"] == (
        pl.Int64
    )


# --- redefining a cohort -----------------------------------------------------------------------


async def test_redefining_a_cohort_says_what_it_replaced(claims_db: Path, tmp_path: Path) -> None:
    """A second definition under the same name silently replaced the first one's files."""
    async with _tool(claims_db, tmp_path / "ws") as tool:
        first = await _define(tool, "r", drugs=["HUMIRA"])
        second = await _define(tool, "r", drugs=["ENBREL"])
        other = await _define(tool, "s", drugs=["ENBREL"])
    assert "replaced" not in first["content"]
    assert first["metadata"]["replaced"] is None
    assert "replaced" not in other["content"]
    patients = first["metadata"]["patients"]
    assert patients > 0
    created = second["metadata"]["replaced"]["created_at"]
    assert second["metadata"]["replaced"] == {"patients": patients, "created_at": created}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", created)
    assert (
        f"This replaced the earlier cohort r ({patients:,} patients, defined {created}): its "
        "files now hold the new definition." in second["content"]
    )
    definition = json.loads((tmp_path / "ws/cohorts/r.json").read_text())
    assert definition["criteria"]["include"]["drugs"] == ["ENBREL"]


@pytest.mark.parametrize("earlier", ["symlink", "not json", "members only", "no count"])
async def test_what_a_replaced_cohort_was_is_read_with_care(
    claims_db: Path, tmp_path: Path, earlier: str
) -> None:
    """The earlier definition is read only as a regular file of the tool's own shape: a
    symlink is replaced, not followed (its target's contents are not shown)."""
    cohorts = tmp_path / "ws" / "cohorts"
    cohorts.mkdir(parents=True)
    outside = tmp_path / "elsewhere.json"
    outside.write_text('{"counts": {"patients": 999}, "created_at": "2020-01-01T00:00:00"}')
    if earlier == "symlink":
        (cohorts / "r.json").symlink_to(outside)
    elif earlier == "not json":
        (cohorts / "r.json").write_text("{ not json")
    elif earlier == "members only":
        (cohorts / "r.csv").write_text("patient_id\n")
    else:
        (cohorts / "r.json").write_text('{"counts": {"patients": "many"}, "created_at": "soon"}')
    async with _tool(claims_db, tmp_path / "ws") as tool:
        result = await _define(tool, "r", drugs=["HUMIRA"])
    assert "This replaced the earlier cohort r: its files now hold" in result["content"]
    assert result["metadata"]["replaced"] == {"patients": None, "created_at": None}
    assert "999" not in result["content"]
    assert outside.read_text().startswith('{"counts": {"patients": 999}')
    assert not (cohorts / "r.json").is_symlink()


# --- a sex that matches nothing ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("codes", "hint"),
    [
        (
            ["FEMALE", "MALE"],
            "No claims match sex 'F': RX_CLAIMS.PATIENT_GENDER_CD holds only 'FEMALE', 'MALE'. "
            "The sex filter matches F or M",
        ),
        (["M", None], "No claims match sex 'F': RX_CLAIMS.PATIENT_GENDER_CD holds only 'M'."),
        ([None, None], "RX_CLAIMS.PATIENT_GENDER_CD is empty on every claim"),
        (["1", "2", "3", "4", "5", "6"], "RX_CLAIMS.PATIENT_GENDER_CD holds other codes"),
    ],
)
async def test_a_sex_that_matches_nothing_is_pointed_out_with_the_codes_held(
    tmp_path: Path, codes: list[str | None], hint: str
) -> None:
    """Drugs, states, specialties and conditions that matched nothing were pointed out;
    a sex did not: a database coding it FEMALE/MALE gave 0 patients without a word why."""
    rows = [(f"P{i}", "2024-01-02", "HUMIRA", code) for i, code in enumerate(codes)]
    database = _rx_warehouse(tmp_path / "sex.duckdb", rows)
    async with _tool(database, tmp_path / "ws") as tool:
        result = await _define(tool, "women", drugs=["HUMIRA"], sex="female")
    assert result["metadata"]["patients"] == 0
    assert hint in result["content"]
    definition = json.loads((tmp_path / "ws/cohorts/women.json").read_text())
    assert definition["unmatched_values"] == {"sex": ["F"]}


async def test_a_sex_the_data_holds_is_not_pointed_out(claims_db: Path, tmp_path: Path) -> None:
    async with _tool(claims_db, tmp_path / "ws") as tool:
        women = await _define(tool, "w", drugs=["HUMIRA"], sex="F")
        men = await _define(tool, "m", conditions=["E11"], sex="m")
    for result in (women, men):
        assert result["metadata"]["patients"] > 0
        assert "No claims match" not in result["content"]


# --- ICD-10 codes with or without the dot ------------------------------------------------------


@pytest.mark.parametrize(
    ("dialect", "placeholder"), [(DUCKDB, "$"), (POSTGRES, "%("), (BIGQUERY, "@")]
)
def test_a_code_is_matched_in_both_spellings_as_bound_parameters(
    dialect: Dialect, placeholder: str
) -> None:
    criteria = Criteria.from_input({"conditions": ["E11.9", "l40", "E119"]})
    query = build_cohort_query(criteria, CohortSchema.from_schema(SCHEMA), dialect)
    assert query.parameters == {
        "condition_code_1": "E11.9",
        "condition_code_2": "E119",
        "condition_code_3": "L40",
        "min_claims_1": 1,
    }
    assert "'" not in query.sql  # no literal: every spelling is a parameter
    assert "E11" not in query.sql
    assert "replace" not in query.sql.lower()
    assert query.sql.count("starts_with(") == 3  # the column itself is not rewritten
    assert f"{placeholder}condition_code_2" in query.sql

    # a category has one spelling: the query is the one it always was
    category = build_cohort_query(
        Criteria.from_input({"conditions": ["E11"]}), CohortSchema.from_schema(SCHEMA), DUCKDB
    )
    assert 'AND starts_with(upper(c."ICD10_CD"), $condition_code_1)\n' in category.sql
    assert category.sql.count("starts_with(") == 1


@pytest.fixture(scope="module")
def undotted_db(claims_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small database with its diagnosis codes stored without dots (``E119``)."""
    path = tmp_path_factory.mktemp("undotted") / "claims.duckdb"
    shutil.copyfile(claims_db, path)
    with duckdb.connect(str(path)) as con:
        con.execute("UPDATE MED_CLAIMS SET ICD10_CD = replace(ICD10_CD, '.', '')")
        assert con.execute("SELECT COUNT(*) FROM MED_CLAIMS WHERE ICD10_CD = 'E119'").fetchone()
    return path


async def test_codes_match_with_or_without_the_dot_whichever_the_database_stores(
    claims_db: Path, undotted_db: Path, claims_con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    """A database storing E119 matched no claim for E11.9, and E119 was taken for a
    condition label on one storing E11.9: both reported as unmatched, 0 patients."""
    expected = claims_con.execute(
        "SELECT COUNT(DISTINCT PATIENT_ID), COUNT(*) FROM MED_CLAIMS WHERE ICD10_CD = 'E11.9'"
    ).fetchone()
    assert expected is not None
    assert expected[0] > 0
    for database in (claims_db, undotted_db):
        async with _tool(database, tmp_path / database.parent.name) as tool:
            for index, code in enumerate(["E11.9", "E119", "e11.9", "e119"]):
                result = await _define(tool, f"c{index}", conditions=[code])
                counts = (result["metadata"]["patients"], result["metadata"]["claims"])
                assert counts == expected, (database, code)
                assert "No claims match" not in result["content"], (database, code)
            missing = await _define(tool, "missing", conditions=["E11.8", "E118"])
            assert "No claims match condition 'E11.8', 'E118'" in missing["content"]


async def test_exclusions_and_their_check_ignore_the_dot_too(
    claims_db: Path, undotted_db: Path, tmp_path: Path
) -> None:
    results: dict[str, list[dict[str, Any]]] = {}
    for database in (claims_db, undotted_db):
        async with _tool(database, tmp_path / database.parent.name) as tool:
            refused = await tool.execute(
                {"name": "x", "conditions": ["E119"], "exclude_conditions": ["E11.9"]}
            )
            assert refused["is_error"] is True
            assert "Every value of conditions ('E119') is also excluded" in refused["content"]
            results[database.parent.name] = [
                await _define(tool, f"e{index}", conditions=["I10"], exclude_conditions=[code])
                for index, code in enumerate(["E11.9", "E119"])
            ]
    counts = {
        (result["metadata"]["patients"], result["metadata"]["claims"])
        for outcomes in results.values()
        for result in outcomes
    }
    assert len(counts) == 1  # one cohort, however the codes are written
    (patients, _) = counts.pop()
    async with _tool(claims_db, tmp_path / "all") as tool:
        everyone = await _define(tool, "i10", conditions=["I10"])
    assert 0 < patients < everyone["metadata"]["patients"]  # some, not all, were excluded


async def test_cohort_files_follow_the_umask_as_query_results_do(
    claims_db: Path, tmp_path: Path
) -> None:
    """The cohort's files were made by mkstemp, so 0600 whatever the umask, beside query
    results that the analyst's group can read."""
    previous = os.umask(0o022)
    try:
        async with _tool(claims_db, tmp_path / "ws") as tool:
            await _define(tool, "ra", drugs=["HUMIRA"])
    finally:
        os.umask(previous)
    cohorts = tmp_path / "ws" / "cohorts"
    modes = {p.name: p.stat().st_mode & 0o777 for p in cohorts.iterdir()}
    assert modes == dict.fromkeys(["ra.csv", "ra.parquet", "ra.json"], 0o644)
