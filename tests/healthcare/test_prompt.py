"""The system prompt's schema: what it may list of the database's values."""

from __future__ import annotations

from pathlib import Path

import duckdb

from loopwright.healthcare.prompt import profile_backend, render_schema
from loopwright.sql.duckdb import DuckDBBackend

PATIENTS = """
CREATE TABLE PATIENTS AS
SELECT 'P' || lpad(i::VARCHAR, 6, '0') AS PATIENT_ID,
       'Name' || i AS patient_name,
       (DATE '1950-01-01' + INTERVAL (i * 97) DAY)::DATE AS date_of_birth,
       strftime(DATE '1960-03-01' + INTERVAL (i * 31) DAY, '%Y%m%d') AS BIRTH_DT,
       lpad((10000 + i % 30)::VARCHAR, 5, '0') AS zip,
       CASE WHEN i % 2 = 0 THEN 'F' ELSE 'M' END AS sex,
       ['CA', 'NY', 'TX'][1 + i % 3] AS state,
       (DATE '2024-01-01' + INTERVAL (i) DAY)::DATE AS enrolled_on
FROM range(40) AS t(i)
"""


async def test_patient_identifiers_are_never_listed_in_the_prompt(tmp_path: Path) -> None:
    path = tmp_path / "patients.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute(PATIENTS)
        con.execute("CREATE SCHEMA claims")
        con.execute(
            "CREATE TABLE claims.members AS SELECT 'M' || i AS MBR_ID, "
            "'Last' || i AS MBR_LAST_NM FROM range(12) AS t(i)"
        )
        rows = con.execute("SELECT * FROM PATIENTS").fetchall()

    profile = await profile_backend(DuckDBBackend(path))
    text = render_schema(profile)

    for patient_id, name, born, born_text, zip_code, *_ in rows:
        for value in (patient_id, name, born.isoformat(), born_text, zip_code):
            assert value not in text, value
    patients = profile.table("PATIENTS")
    assert patients is not None
    for column in ("PATIENT_ID", "patient_name", "date_of_birth", "BIRTH_DT", "zip"):
        described = patients.column(column)
        assert described is not None
        assert (described.values, described.range) == ((), None), column
        assert f"- {described.name} {described.type}" in text  # name and type still shown
    members = profile.table("claims.members")
    assert members is not None
    assert all(not c.values for c in members.columns)
    assert "Last1" not in text

    # what names no one is still listed: a short code list, categories, dates of care
    listed = {c.name: c for c in patients.columns}
    assert set(listed["sex"].values) == {"F", "M"}
    assert set(listed["state"].values) == {"CA", "NY", "TX"}
    assert listed["enrolled_on"].range == ("2024-01-01", "2024-02-09")
