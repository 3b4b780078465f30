"""``DefineCohort``: criteria become a parameterised query on allowlisted columns; injection
attempts stay values; the definition and members are saved; counts match direct SQL."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from loopwright import Agent, MemoryStore, ScriptedModel, call
from loopwright.healthcare.cohort import (
    BIGQUERY,
    DUCKDB,
    POSTGRES,
    CohortError,
    CohortSchema,
    Criteria,
    DefineCohort,
    build_cohort_query,
)
from loopwright.healthcare.data import SCHEMA
from loopwright.sql import DuckDBBackend, connect
from loopwright.tools.base import BaseTool
from postgres_server import PostgresServer, postgres_server  # noqa: F401


@pytest.fixture
async def cohort(claims_db: Path, tmp_path: Path) -> AsyncIterator[BaseTool]:
    """A DefineCohort tool on the small claims database, bound to a fresh workspace."""
    backend = DuckDBBackend(claims_db)
    toolset = DefineCohort(backend)
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (tool,) = toolset.bind(str(workspace))
    yield tool
    await toolset.aclose()
    await backend.aclose()


def _rows(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[int, int]:
    """(patients, claims) of a direct query listing one row per qualifying claim."""
    row = con.execute(f"SELECT COUNT(DISTINCT pid), COUNT(*) FROM ({sql})").fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


# --- the query ----------------------------------------------------------------------------


def test_values_are_parameters_and_identifiers_come_from_the_schema() -> None:
    criteria = Criteria.from_input(
        {
            "drugs": ["HUMIRA", "Enbrel"],
            "conditions": ["Rheumatoid arthritis", "L40"],
            "states": ["California", "tx"],
            "specialties": ["Rheumatology"],
            "start_date": "2024-01-01",
            "end_date": "2024-12-31",
            "min_age": 18,
            "max_age": 64,
            "sex": "female",
            "min_claims": 2,
            "exclude_drugs": ["STELARA"],
            "exclude_conditions": ["C50"],
        }
    )
    query = build_cohort_query(criteria, CohortSchema.from_schema(SCHEMA), DUCKDB)

    assert "'" not in query.sql  # no string literal at all: every value is a parameter
    assert re.search(r"\b(18|64|2024)\b", query.sql) is None
    assert "$drug_1" in query.sql
    assert "$start_date_1" in query.sql
    assert query.parameters["drug_1"] == "humira"
    assert query.parameters["state_1"] == "CA"  # a state name becomes its code
    assert query.parameters["sex_1"] == "F"
    assert query.parameters["condition_code_1"] == "L40"  # an ICD-10 prefix
    identifiers = set(re.findall(r'"([^"]+)"', query.sql))  # every quoted name
    allowed = set(SCHEMA) | {column for columns in SCHEMA.values() for column, _ in columns}
    assert identifiers <= allowed
    assert {"RX_CLAIMS", "MED_CLAIMS", "PROVIDERS_BIO", "ICD10_CD"} <= identifiers

    postgres = build_cohort_query(criteria, CohortSchema.from_schema(SCHEMA), POSTGRES)
    assert "%(drug_1)s" in postgres.sql
    assert "$drug_1" not in postgres.sql


def test_one_state_named_several_ways_is_one_state() -> None:
    """It was described as "states CA, CA" and bound twice."""
    criteria = Criteria.from_input({"states": ["ca", "CA", "California", "tx"]})
    assert criteria.states == ("CA", "TX")
    assert "states CA, TX;" in criteria.describe()
    query = build_cohort_query(criteria, CohortSchema.from_schema(SCHEMA), DUCKDB)
    assert sorted(v for k, v in query.parameters.items() if k.startswith("state_")) == [
        "CA",
        "TX",
    ]


def test_the_schema_allowlist_follows_the_database() -> None:
    lower = {t.lower(): [(c.lower(), k) for c, k in cols] for t, cols in SCHEMA.items()}
    schema = CohortSchema.from_schema(lower)
    assert schema.pharmacy is not None
    assert schema.pharmacy.table == "rx_claims"
    query = build_cohort_query(Criteria.from_input({"drugs": ["HUMIRA"]}), schema)
    assert '"rx_claims"' in query.sql
    assert '"ndc_drug_nm"' in query.sql

    no_providers = {t: c for t, c in SCHEMA.items() if t != "PROVIDERS_BIO"}
    with pytest.raises(CohortError, match="PROVIDERS_BIO"):
        build_cohort_query(
            Criteria.from_input({"drugs": ["HUMIRA"], "specialties": ["Rheumatology"]}),
            CohortSchema.from_schema(no_providers),
        )
    no_age = {
        t: [(c, k) for c, k in cols if c != "PATIENT_BIRTH_YEAR"] for t, cols in SCHEMA.items()
    }
    with pytest.raises(CohortError, match="min_age/max_age"):
        build_cohort_query(
            Criteria.from_input({"drugs": ["HUMIRA"], "min_age": 65}),
            CohortSchema.from_schema(no_age),
        )


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({}, "No criteria given"),
        ({"start_date": "2024-05-01", "end_date": "2024-01-01"}, "after end_date"),
        ({"start_date": "May 2024"}, "YYYY-MM-DD"),
        ({"drugs": ["HUMIRA"], "sex": "x"}, "'F' or 'M'"),
        ({"min_age": 70, "max_age": 20}, "above max_age"),
        ({"drugs": "HUMIRA", "min_claims": 0}, "min_claims 0 is out of range"),
        ({"drugs": [""]}, "non-empty strings"),
        ({"drugs": ["HUMIRA\x00x"]}, "U\\+0000 at position 7"),  # PostgreSQL has no NUL
        ({"states": ["C\udc80A"]}, "U\\+DC80 at position 2"),  # no UTF-8 for it
        ({"drugs": ["HUMIRA"], "min_age": 40.5}, "whole number"),
    ],
)
def test_bad_criteria_get_a_clear_message(given: dict[str, Any], message: str) -> None:
    with pytest.raises(CohortError, match=message):
        Criteria.from_input(given)


async def test_the_tools_schema_takes_the_words_criteria_take(cohort: BaseTool) -> None:
    """Criteria took "female" from Python, but the tool's schema only "F"/"M": a model that
    wrote the word lost a turn to the registry's refusal."""
    from loopwright.tools.registry import ToolRegistry

    registry = ToolRegistry(cohort.workspace_dir)
    registry.register(cohort)
    women = await registry.execute("DefineCohort", {"name": "w", "sex": "female"})
    assert women["is_error"] is False, women["content"]
    assert women["metadata"]["patients"] > 0
    letter = await registry.execute("DefineCohort", {"name": "f", "sex": "F"})
    assert letter["metadata"]["patients"] == women["metadata"]["patients"]
    unknown = await registry.execute("DefineCohort", {"name": "x", "sex": "x"})
    assert unknown["is_error"] is True
    assert "female" in str(unknown["content"])


def test_whole_numbers_may_come_as_json_floats() -> None:
    """JSON Schema's integer (which the registry checks) takes 40.0; so does the tool."""
    criteria = Criteria.from_input({"drugs": ["HUMIRA"], "min_age": 40.0, "min_claims": 3.0})
    assert (criteria.min_age, criteria.min_claims) == (40, 3)


def test_a_long_list_is_refused_at_once() -> None:
    """Duplicates were found in quadratic time and the count checked at the end: 20,000
    values took 11-15 s on the event loop before the refusal."""
    many = [f"NDC{i:011d}" for i in range(20_000)]
    with pytest.raises(CohortError, match="give at most 100"):
        Criteria.from_input({"drugs": many})
    with pytest.raises(CohortError, match="more than 100 values"):
        Criteria.from_input({"drugs": many[:150]})
    repeated = Criteria.from_input({"drugs": ["HUMIRA", "humira"] * 300})  # repeats: one value
    assert repeated.drugs == ("HUMIRA",)


# --- running it ------------------------------------------------------------------------------


async def test_counts_match_a_direct_query(
    cohort: BaseTool, claims_con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    result = await cohort.execute(
        {
            "name": "humira_ca_2024",
            "description": "HUMIRA in California, 2024, two fills or more",
            "drugs": ["humira"],
            "states": ["CA"],
            "start_date": "2024-01-01",
            "end_date": "2024-12-31",
            "min_claims": 2,
        }
    )
    assert result["is_error"] is False, result["content"]
    patients, claims = _rows(
        claims_con,
        """SELECT PATIENT_ID AS pid FROM RX_CLAIMS
           WHERE NDC_DRUG_NM = 'HUMIRA' AND PRESCRIBER_NPI_STATE_CD = 'CA'
             AND SERVICE_DATE_DD BETWEEN DATE '2024-01-01' AND DATE '2024-12-31'
             AND PATIENT_ID IN (
                 SELECT PATIENT_ID FROM RX_CLAIMS
                 WHERE NDC_DRUG_NM = 'HUMIRA' AND PRESCRIBER_NPI_STATE_CD = 'CA'
                   AND SERVICE_DATE_DD BETWEEN DATE '2024-01-01' AND DATE '2024-12-31'
                 GROUP BY PATIENT_ID HAVING COUNT(*) >= 2)""",
    )
    assert patients > 0
    metadata = result["metadata"]
    assert (metadata["patients"], metadata["claims"]) == (patients, claims)
    assert f"{patients:,} patients, {claims:,} qualifying pharmacy claims" in result["content"]
    assert "$drug_1" in result["content"]  # the SQL, with placeholders
    assert "HUMIRA'" not in result["content"]

    workspace = Path(cohort.workspace_dir)
    definition = json.loads((workspace / "cohorts" / "humira_ca_2024.json").read_text())
    assert definition["criteria"]["include"] == {
        "drugs": ["humira"],
        "states": ["CA"],
        "start_date": "2024-01-01",
        "end_date": "2024-12-31",
        "min_claims": 2,
    }
    assert definition["parameters"]["drug_1"] == "humira"
    assert "$drug_1" in definition["sql"]
    assert definition["counts"]["patients"] == patients
    assert definition["counts"]["claims"] == claims
    assert definition["created_at"].endswith("+00:00")
    assert definition["members_file"] == "cohorts/humira_ca_2024.csv"
    members = (workspace / "cohorts" / "humira_ca_2024.csv").read_text().splitlines()
    assert members[0] == "patient_id,pharmacy_claims,first_claim_date,last_claim_date"
    assert len(members) - 1 == patients
    assert sum(int(line.split(",")[1]) for line in members[1:]) == claims
    # the saved SQL, run again with the saved parameters, gives the same members
    rerun = claims_con.execute(definition["sql"], definition["parameters"]).fetchall()
    assert [r[0] for r in rerun] == [line.split(",")[0] for line in members[1:]]


async def test_conditions_specialties_age_and_exclusions(
    cohort: BaseTool, claims_con: duckdb.DuckDBPyConnection
) -> None:
    result = await cohort.execute(
        {
            "name": "ra_on_tnf",
            "drugs": ["HUMIRA", "ENBREL"],
            "conditions": ["M06"],
            "specialties": ["rheumatology"],
            "min_age": 40,
            "exclude_drugs": ["STELARA"],
        }
    )
    assert result["is_error"] is False, result["content"]
    direct = claims_con.execute(
        """
        WITH rx AS (
            SELECT r.PATIENT_ID AS pid, COUNT(*) AS n FROM RX_CLAIMS r
            JOIN PROVIDERS_BIO b ON b.npi_number = r.PRESCRIBER_NPI_NBR
            WHERE r.NDC_DRUG_NM IN ('HUMIRA', 'ENBREL') AND b.specialty = 'Rheumatology'
              AND year(r.SERVICE_DATE_DD) - r.PATIENT_BIRTH_YEAR >= 40
            GROUP BY 1),
        med AS (
            SELECT m.PATIENT_ID AS pid, COUNT(*) AS n FROM MED_CLAIMS m
            JOIN PROVIDERS_BIO b ON b.npi_number = m.PRIMARY_HCP
            WHERE m.ICD10_CD LIKE 'M06%' AND b.specialty = 'Rheumatology'
              AND year(m.STATEMENT_FROM_DD) - m.PATIENT_BIRTH_YEAR >= 40
            GROUP BY 1)
        SELECT COUNT(*), SUM(rx.n), SUM(med.n) FROM rx JOIN med USING (pid)
        WHERE pid NOT IN (SELECT PATIENT_ID FROM RX_CLAIMS WHERE NDC_DRUG_NM = 'STELARA')
        """
    ).fetchone()
    assert direct is not None
    patients, rx_claims, med_claims = (int(v or 0) for v in direct)
    assert patients > 0
    assert result["metadata"]["patients"] == patients
    assert result["metadata"]["claims_by_kind"] == {"pharmacy": rx_claims, "medical": med_claims}


async def test_an_injection_attempt_is_a_value_that_matches_nothing(
    cohort: BaseTool, claims_con: duckdb.DuckDBPyConnection, claims_db: Path
) -> None:
    (before,) = claims_con.execute("SELECT COUNT(*) FROM RX_CLAIMS").fetchone() or (0,)
    attempts = [
        "HUMIRA' OR '1'='1",
        "HUMIRA'); DROP TABLE RX_CLAIMS; --",
        'x" OR 1=1 --',
    ]
    for index, attempt in enumerate(attempts):
        result = await cohort.execute(
            {"name": f"attempt{index}", "drugs": [attempt], "states": ["CA' OR 'x'='x"]}
        )
        assert result["is_error"] is False, result["content"]
        assert result["metadata"]["patients"] == 0
        assert "No claims match drug" in result["content"]
        assert attempt not in result["metadata"]["sql"]
        assert result["metadata"]["parameters"]["drug_1"] == attempt.lower()
    (after,) = claims_con.execute("SELECT COUNT(*) FROM RX_CLAIMS").fetchone() or (0,)
    assert after == before > 0
    tables = {t for (t,) in claims_con.execute("SHOW TABLES").fetchall()}
    assert {"RX_CLAIMS", "MED_CLAIMS", "PROVIDERS_BIO", "PROVIDER_PAYMENTS"} <= tables


async def test_misspelt_values_are_pointed_out(cohort: BaseTool) -> None:
    result = await cohort.execute(
        {"name": "typos", "drugs": ["HUMIRA", "HUMRA"], "conditions": ["Rheumatoid arthritis"]}
    )
    assert result["is_error"] is False
    assert "No claims match drug 'HUMRA'" in result["content"]
    assert "No claims match condition" not in result["content"]


async def test_names_and_paths_are_checked(cohort: BaseTool, tmp_path: Path) -> None:
    bad = await cohort.execute({"name": "../escape", "drugs": ["HUMIRA"]})
    assert bad["is_error"] is True
    assert "not a plain file name" in bad["content"]
    outside = tmp_path / "outside"
    outside.mkdir()
    (Path(cohort.workspace_dir) / "cohorts").symlink_to(outside)
    refused = await cohort.execute({"name": "ok", "drugs": ["HUMIRA"]})
    assert refused["is_error"] is True
    assert "Access denied" in refused["content"]
    assert list(outside.iterdir()) == []


async def test_a_symlink_named_like_a_cohort_file_is_replaced_not_followed(
    cohort: BaseTool,
) -> None:
    workspace = Path(cohort.workspace_dir)
    notes = workspace / "notes.txt"
    notes.write_text("my notes\n")
    (workspace / "cohorts").mkdir()
    (workspace / "cohorts" / "b.csv").symlink_to("../notes.txt")
    result = await cohort.execute({"name": "b", "drugs": ["HUMIRA"]})
    assert result["is_error"] is False, result["content"]
    assert notes.read_text() == "my notes\n"
    assert not (workspace / "cohorts" / "b.csv").is_symlink()
    assert json.loads((workspace / "cohorts" / "b.json").read_text())["members_file"] == (
        "cohorts/b.csv"
    )


@pytest.mark.parametrize("blocked", ["json", "parquet"])
@pytest.mark.parametrize("old_members", ["file", "symlink", "none"])
async def test_a_failed_save_changes_no_file(
    cohort: BaseTool, old_members: str, blocked: str
) -> None:
    """The members file used to be replaced before the definition was written: a failure
    there left a new member list beside the old definition. The CSV, the Parquet file and
    the definition change together or not at all."""
    cohorts = Path(cohort.workspace_dir) / "cohorts"
    first = await cohort.execute({"name": "s", "drugs": ["HUMIRA"]})
    assert first["is_error"] is False
    members = cohorts / "s.csv"
    files = [members, cohorts / "s.parquet", cohorts / "s.json"]
    if old_members == "symlink":
        members.rename(cohorts / "kept.csv")
        members.symlink_to("kept.csv")
    elif old_members == "none":
        members.unlink()
    stuck = cohorts / f"s.{blocked}"
    stuck.unlink()
    stuck.mkdir()  # this file cannot be renamed into place
    before = {p.name: (p.is_symlink(), p.read_bytes() if p.is_file() else None) for p in files}
    failed = await cohort.execute({"name": "s", "drugs": ["ENBREL"]})
    assert failed["is_error"] is True
    assert failed["content"].startswith("Could not save the cohort in the workspace")
    after = {p.name: (p.is_symlink(), p.read_bytes() if p.is_file() else None) for p in files}
    assert after == before
    assert not members.exists() or members.is_symlink() == (old_members == "symlink")
    assert stuck.is_dir()
    assert sorted(p.name for p in cohorts.iterdir() if p.name.startswith(".")) == []


async def test_a_description_with_a_lone_surrogate_is_refused_before_anything_runs(
    cohort: BaseTool,
) -> None:
    result = await cohort.execute({"name": "d", "drugs": ["HUMIRA"], "description": "x \ud800"})
    assert result["is_error"] is True
    assert "description holds the character U+D800" in result["content"]
    assert not (Path(cohort.workspace_dir) / "cohorts").exists()


async def test_the_default_schemas_table_is_chosen_over_another_schemas(
    claims_db: Path, tmp_path: Path
) -> None:
    """A same-named table in another schema came first in the schema's keys and was used."""
    database = tmp_path / "two-schemas.duckdb"
    shutil.copyfile(claims_db, database)
    with duckdb.connect(str(database)) as connection:
        connection.execute("CREATE SCHEMA archive")
        connection.execute("CREATE TABLE archive.RX_CLAIMS AS SELECT * FROM RX_CLAIMS LIMIT 0")
        expected = connection.execute(
            "SELECT COUNT(DISTINCT PATIENT_ID) FROM RX_CLAIMS WHERE NDC_DRUG_NM = 'HUMIRA'"
        ).fetchone()
    backend = DuckDBBackend(database)
    toolset = DefineCohort(backend)
    (tool,) = toolset.bind(str(tmp_path / "ws"))
    try:
        assert next(iter(await backend.schema())) == "archive.RX_CLAIMS"  # listed first
        result = await tool.execute({"name": "h", "drugs": ["HUMIRA"]})
    finally:
        await toolset.aclose()
        await backend.aclose()
    assert result["is_error"] is False, result["content"]
    assert "archive" not in json.loads((tmp_path / "ws/cohorts/h.json").read_text())["sql"]
    assert expected is not None
    assert f"Cohort h: {expected[0]:,} patients" in result["content"]


def test_a_table_only_in_other_schemas_is_used_when_it_is_the_only_one() -> None:
    moved = {f"claims.{t}": cols for t, cols in SCHEMA.items()}
    query = build_cohort_query(
        Criteria.from_input({"drugs": ["HUMIRA"]}), CohortSchema.from_schema(moved), DUCKDB
    )
    assert '"claims"."RX_CLAIMS"' in query.sql
    twice = {**moved, **{f"old.{t}": cols for t, cols in SCHEMA.items()}}
    with pytest.raises(CohortError, match=r"2 RX_CLAIMS tables \(claims.RX_CLAIMS, old.RX"):
        CohortSchema.from_schema(twice)


async def test_an_agent_defines_a_cohort(claims_db: Path) -> None:
    backend = connect(f"duckdb://{claims_db}")
    model = ScriptedModel(
        [
            call("DefineCohort", name="ozempic", drugs=["OZEMPIC"], min_claims=3),
            "Defined the cohort.",
        ]
    )
    agent = Agent(model, tools=[DefineCohort(backend)], store=MemoryStore())
    result = await agent.collect("Patients with 3+ OZEMPIC fills?")
    await agent.aclose()
    await backend.aclose()
    (tool_result,) = [e for e in result.events if e["type"] == "tool_result"]
    assert tool_result["is_error"] is False, tool_result["content"]
    assert (Path(result.session.workspace_dir) / "cohorts" / "ozempic.json").is_file()


async def test_on_postgresql_the_same_cohort_has_the_same_counts(
    postgres_server: PostgresServer,  # noqa: F811
    claims_con: duckdb.DuckDBPyConnection,
    cohort: BaseTool,
    tmp_path: Path,
) -> None:
    import psycopg

    dsn = postgres_server.create_database("hc_cohort")
    copies = {
        "rx_claims": "SELECT PATIENT_ID, PATIENT_BIRTH_YEAR, PATIENT_GENDER_CD, "
        "PRESCRIBER_NPI_NBR, PRESCRIBER_NPI_STATE_CD, NDC_DRUG_NM, SERVICE_DATE_DD FROM RX_CLAIMS",
        "med_claims": "SELECT PATIENT_ID, PATIENT_BIRTH_YEAR, PATIENT_GENDER_CD, PRIMARY_HCP, "
        "SERVICE_STATE_CD, condition_label, ICD10_CD, STATEMENT_FROM_DD FROM MED_CLAIMS",
        "providers_bio": "SELECT npi_number, specialty FROM PROVIDERS_BIO",
    }
    with psycopg.connect(dsn, autocommit=True) as conn:
        for table, select in copies.items():
            relation = claims_con.execute(select)
            names = [d[0].lower() for d in relation.description or ()]
            types = ["integer" if n == "patient_birth_year" else "date" if n.endswith("_dd")
                     else "text" for n in names]  # fmt: skip
            columns = ", ".join(f"{n} {t}" for n, t in zip(names, types, strict=True))
            conn.execute(f"CREATE TABLE {table} ({columns})".encode())
            with conn.cursor().copy(f"COPY {table} FROM STDIN".encode()) as copy:
                for row in relation.fetchall():
                    copy.write_row(row)

    criteria = {
        "drugs": ["HUMIRA"],
        "conditions": ["Rheumatoid arthritis", "L40"],
        "specialties": ["Rheumatology", "Dermatology"],
        "start_date": "2023-06-01",
        "sex": "F",
        "exclude_drugs": ["ENBREL"],
    }
    backend = connect(dsn)
    toolset = DefineCohort(backend)
    workspace = tmp_path / "pg"
    workspace.mkdir()
    (pg_tool,) = toolset.bind(str(workspace))
    try:
        on_postgres = await pg_tool.execute({"name": "pg", **criteria})
        on_duckdb = await cohort.execute({"name": "dd", **criteria})
        injected = await pg_tool.execute({"name": "inj", "drugs": ["HUMIRA' OR '1'='1"]})
    finally:
        await toolset.aclose()
        await backend.aclose()
    assert on_postgres["is_error"] is False, on_postgres["content"]
    assert "%(drug_1)s" in on_postgres["metadata"]["sql"]
    assert on_postgres["metadata"]["patients"] > 0
    for key in ("patients", "claims", "claims_by_kind"):
        assert on_postgres["metadata"][key] == on_duckdb["metadata"][key]
    pg_members = (workspace / "cohorts" / "pg.csv").read_text()
    dd_members = (Path(cohort.workspace_dir) / "cohorts" / "dd.csv").read_text()
    assert pg_members == dd_members
    assert injected["metadata"]["patients"] == 0


# --- on BigQuery (the real client against the loopback stand-in) -----------------------------


def test_bigquery_identifiers_are_quoted_with_backslash_escapes() -> None:
    assert BIGQUERY.quote("claims.RX_CLAIMS") == "`claims`.`RX_CLAIMS`"
    assert BIGQUERY.quote("odd`name\\") == "`odd\\`name\\\\`"
    assert BIGQUERY.placeholder("drug_1") == "@drug_1"


@pytest.fixture
def bigquery_claims(claims_con: duckdb.DuckDBPyConnection) -> Iterator[Any]:
    """The BigQuery stand-in holding the small database's tables as dataset ``claims``."""
    from sql.bigquery_server import BigQueryServer

    with BigQueryServer(project="test-project") as server:
        server.load_from("claims", claims_con)
        yield server


async def test_on_bigquery_the_same_cohort_has_the_same_counts(
    bigquery_claims: Any, cohort: BaseTool, tmp_path: Path
) -> None:
    criteria = {
        "drugs": ["HUMIRA"],
        "conditions": ["Rheumatoid arthritis", "L40"],
        "specialties": ["Rheumatology", "Dermatology"],
        "start_date": "2023-06-01",
        "min_age": 30,
        "sex": "F",
        "exclude_drugs": ["ENBREL"],
    }
    url = f"bigquery://test-project/claims?api_endpoint={bigquery_claims.base_url}"
    backend = connect(url)
    toolset = DefineCohort(backend)
    workspace = tmp_path / "bq"
    workspace.mkdir()
    (bq_tool,) = toolset.bind(str(workspace))
    try:
        on_bigquery = await bq_tool.execute({"name": "bq", **criteria})
        on_duckdb = await cohort.execute({"name": "dd", **criteria})
        injected = await bq_tool.execute(
            {"name": "inj", "drugs": ["HUMIRA' OR '1'='1"], "states": ["CA` OR 1=1 --"]}
        )
    finally:
        await toolset.aclose()
        await backend.aclose()
    assert on_bigquery["is_error"] is False, on_bigquery["content"]
    sql = on_bigquery["metadata"]["sql"]
    assert "@drug_1" in sql
    assert "`RX_CLAIMS`" in sql
    assert "'" not in sql
    assert on_bigquery["metadata"]["patients"] > 0
    for key in ("patients", "claims", "claims_by_kind"):
        assert on_bigquery["metadata"][key] == on_duckdb["metadata"][key]
    bq_members = (workspace / "cohorts" / "bq.csv").read_text()
    dd_members = (Path(cohort.workspace_dir) / "cohorts" / "dd.csv").read_text()
    assert bq_members == dd_members
    assert "SQL (BigQuery; the values are bound as parameters)" in on_bigquery["content"]
    assert injected["is_error"] is False, injected["content"]
    assert injected["metadata"]["patients"] == 0
    assert "No claims match drug" in injected["content"]

    # what went over the wire: typed parameters, a dry run before each job, the tool's labels
    jobs = bigquery_claims.job_bodies()
    member_jobs = [j for j in jobs if j["configuration"]["query"]["query"] == sql]
    assert [j["configuration"].get("dryRun", False) for j in member_jobs] == [True, False]
    parameters = {
        p["name"]: (p["parameterType"]["type"], p["parameterValue"]["value"])
        for p in member_jobs[1]["configuration"]["query"]["queryParameters"]
    }
    assert parameters["drug_1"] == ("STRING", "humira")
    assert parameters["start_date_1"] == ("DATE", "2023-06-01")
    assert parameters["min_age_1"] == ("INT64", "30")
    assert member_jobs[1]["configuration"]["labels"] == {"loopwright": "sql-tool"}
    assert member_jobs[1]["jobReference"]["jobId"].startswith("loopwright_cohort_")


async def test_on_bigquery_the_bytes_cap_refuses_before_the_job_runs(
    bigquery_claims: Any, tmp_path: Path
) -> None:
    url = (
        f"bigquery://test-project/claims?api_endpoint={bigquery_claims.base_url}"
        "&maximum_bytes_billed=1000"
    )
    backend = connect(url)
    toolset = DefineCohort(backend)
    (tool,) = toolset.bind(str(tmp_path))
    try:
        result = await tool.execute({"name": "big", "drugs": ["HUMIRA"]})
    finally:
        await toolset.aclose()
        await backend.aclose()
    assert result["is_error"] is True
    assert "over the maximum_bytes_billed cap of 1,000 bytes" in result["content"]
    jobs = bigquery_claims.job_bodies()
    assert jobs
    assert all(j["configuration"].get("dryRun") for j in jobs)  # nothing ran
    assert not (tmp_path / "cohorts").exists()
