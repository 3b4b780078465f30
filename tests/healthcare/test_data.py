"""The claims generator: determinism, keys that join, believable distributions, first-use build."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pytest

from loopwright.healthcare.data import (
    BRANDED_DRUGS,
    SCHEMA,
    STATES,
    DatabaseBuildError,
    Sizes,
    build_database,
    connect_read_only,
    database_schema,
    default_database_path,
    ensure_database,
    is_valid_npi,
    main,
    npi_check_digit,
)

TABLE_KEYS = {
    "RX_CLAIMS": "CLAIM_ID",
    "MED_CLAIMS": "CLAIM_ID",
    "PROVIDER_PAYMENTS": "payment_id",
    "PROVIDERS_BIO": "npi_number",
}


def _rows(path: Path, table: str) -> list[tuple[object, ...]]:
    con = connect_read_only(path)
    try:
        return con.execute(f"SELECT * FROM {table} ORDER BY {TABLE_KEYS[table]}").fetchall()
    finally:
        con.close()


def _one(con: duckdb.DuckDBPyConnection, sql: str) -> Any:
    row = con.execute(sql).fetchone()
    assert row is not None
    return row[0]


# --- determinism ---------------------------------------------------------------------------


def test_same_seed_gives_the_same_rows(tmp_path: Path) -> None:
    first = build_database(tmp_path / "a.duckdb", rx_claims=3_000, seed=11)
    second = build_database(tmp_path / "b.duckdb", rx_claims=3_000, seed=11)
    for table in SCHEMA:
        assert _rows(first, table) == _rows(second, table), table


def test_a_different_seed_gives_different_rows(tmp_path: Path) -> None:
    first = build_database(tmp_path / "a.duckdb", rx_claims=3_000, seed=11)
    other = build_database(tmp_path / "b.duckdb", rx_claims=3_000, seed=12)
    for table in SCHEMA:
        assert _rows(first, table) != _rows(other, table), table


# --- shape and keys ------------------------------------------------------------------------


def test_the_database_has_the_documented_schema_and_sizes(
    claims_db: Path, claims_con: duckdb.DuckDBPyConnection
) -> None:
    assert database_schema(claims_db) == SCHEMA
    sizes = Sizes.for_rx_claims(20_000)
    expected = {
        "RX_CLAIMS": sizes.rx_claims,
        "MED_CLAIMS": sizes.med_claims,
        "PROVIDER_PAYMENTS": sizes.payments,
        "PROVIDERS_BIO": sizes.providers,
    }
    for table, count in expected.items():
        assert _one(claims_con, f"SELECT COUNT(*) FROM {table}") == count
    comments = dict(
        claims_con.execute(
            "SELECT table_name, comment FROM duckdb_tables() WHERE schema_name = 'main'"
        ).fetchall()
    )
    assert all("synthetic" in str(comments[table]).lower() for table in SCHEMA)


def test_npis_are_unique_and_pass_the_luhn_check(claims_con: duckdb.DuckDBPyConnection) -> None:
    npis = [row[0] for row in claims_con.execute("SELECT npi_number FROM PROVIDERS_BIO").fetchall()]
    assert len(npis) == len(set(npis))
    assert all(is_valid_npi(npi, synthetic=True) for npi in npis)
    # none can be a real provider's: CMS issues NPIs beginning with 1 or 2
    assert not any(is_valid_npi(npi) for npi in npis)
    # the CMS worked example: base 123456789 has check digit 3
    assert npi_check_digit("123456789") == 3
    assert is_valid_npi("1234567893")
    assert not is_valid_npi("1234567890")
    assert not is_valid_npi("9234567893", synthetic=False)


def test_every_key_joins(claims_con: duckdb.DuckDBPyConnection) -> None:
    orphans = {
        "rx prescribers": """SELECT COUNT(*) FROM RX_CLAIMS r LEFT JOIN PROVIDERS_BIO b
                             ON b.npi_number = r.PRESCRIBER_NPI_NBR WHERE b.npi_number IS NULL""",
        "medical providers": """SELECT COUNT(*) FROM MED_CLAIMS m LEFT JOIN PROVIDERS_BIO b
                                ON b.npi_number = m.PRIMARY_HCP WHERE b.npi_number IS NULL""",
        "payment recipients": """SELECT COUNT(*) FROM PROVIDER_PAYMENTS p
                                 LEFT JOIN PROVIDERS_BIO b ON b.npi_number = p.npi_number
                                 WHERE b.npi_number IS NULL""",
        "prescriber states": """SELECT COUNT(*) FROM RX_CLAIMS r JOIN PROVIDERS_BIO b
                                ON b.npi_number = r.PRESCRIBER_NPI_NBR
                                WHERE b.state <> r.PRESCRIBER_NPI_STATE_CD""",
        "recipient states": """SELECT COUNT(*) FROM PROVIDER_PAYMENTS p JOIN PROVIDERS_BIO b
                               ON b.npi_number = p.npi_number WHERE b.state <> p.recipient_state""",
    }
    for label, sql in orphans.items():
        assert _one(claims_con, sql) == 0, label
    products = {row[0] for row in claims_con.execute(
        "SELECT DISTINCT associated_product FROM PROVIDER_PAYMENTS").fetchall()}  # fmt: skip
    drugs = {row[0] for row in claims_con.execute(
        "SELECT DISTINCT NDC_DRUG_NM FROM RX_CLAIMS").fetchall()}  # fmt: skip
    assert products
    assert products <= drugs
    assert products <= set(BRANDED_DRUGS)  # nobody promotes generic atorvastatin


def test_a_patient_is_the_same_person_in_both_claim_tables(
    claims_con: duckdb.DuckDBPyConnection,
) -> None:
    inconsistent = _one(
        claims_con,
        """
        WITH people AS (
            SELECT PATIENT_ID, PATIENT_BIRTH_YEAR, PATIENT_GENDER_CD, PAYER_TYPE FROM RX_CLAIMS
            UNION ALL
            SELECT PATIENT_ID, PATIENT_BIRTH_YEAR, PATIENT_GENDER_CD, PAYER_TYPE FROM MED_CLAIMS
        )
        SELECT COUNT(*) FROM (
            SELECT PATIENT_ID FROM people GROUP BY PATIENT_ID
            HAVING COUNT(DISTINCT (PATIENT_BIRTH_YEAR, PATIENT_GENDER_CD, PAYER_TYPE)) > 1
        )""",
    )
    assert inconsistent == 0
    shared = _one(
        claims_con,
        """SELECT COUNT(*) FROM (SELECT DISTINCT PATIENT_ID FROM RX_CLAIMS
                                 INTERSECT SELECT DISTINCT PATIENT_ID FROM MED_CLAIMS)""",
    )
    assert isinstance(shared, int)
    assert shared > 0


# --- distributions -------------------------------------------------------------------------


def test_humira_is_prescribed_mostly_by_the_right_specialties(
    claims_con: duckdb.DuckDBPyConnection,
) -> None:
    rows = claims_con.execute(
        """SELECT b.specialty, COUNT(*) FROM RX_CLAIMS r
           JOIN PROVIDERS_BIO b ON b.npi_number = r.PRESCRIBER_NPI_NBR
           WHERE r.NDC_DRUG_NM = 'HUMIRA' GROUP BY b.specialty"""
    ).fetchall()
    counts = Counter({specialty: n for specialty, n in rows})
    expected = counts["Rheumatology"] + counts["Dermatology"] + counts["Gastroenterology"]
    assert expected / sum(counts.values()) > 0.85
    oncology = claims_con.execute(
        """SELECT b.specialty, COUNT(*) AS n FROM RX_CLAIMS r
           JOIN PROVIDERS_BIO b ON b.npi_number = r.PRESCRIBER_NPI_NBR
           WHERE r.NDC_DRUG_NM = 'KEYTRUDA' GROUP BY b.specialty ORDER BY n DESC"""
    ).fetchall()
    assert oncology[0][0] == "Hematology/Oncology"


def test_real_drug_names_all_states_and_population_weighting(
    claims_con: duckdb.DuckDBPyConnection,
) -> None:
    drugs = {row[0] for row in claims_con.execute(
        "SELECT DISTINCT NDC_DRUG_NM FROM RX_CLAIMS").fetchall()}  # fmt: skip
    assert {"HUMIRA", "ELIQUIS", "OZEMPIC", "JARDIANCE", "KEYTRUDA"} <= drugs
    states = dict(
        claims_con.execute("SELECT state, COUNT(*) FROM PROVIDERS_BIO GROUP BY state").fetchall()
    )
    assert set(states) == {state.code for state in STATES}
    assert len(states) == 51
    assert states["CA"] > states["TX"] > states["WY"]


def test_a_few_prescribers_write_a_large_share(claims_con: duckdb.DuckDBPyConnection) -> None:
    counts = sorted(
        (row[0] for row in claims_con.execute(
            "SELECT COUNT(*) FROM RX_CLAIMS GROUP BY PRESCRIBER_NPI_NBR").fetchall()),
        reverse=True,
    )  # fmt: skip
    top_decile = sum(counts[: len(counts) // 10]) / sum(counts)
    assert top_decile > 0.3  # uniform prescribing would give 0.1
    assert counts[0] > 20 * counts[len(counts) // 2]


def test_dates_span_two_years_with_trends_and_weekly_rhythm(
    claims_con: duckdb.DuckDBPyConnection,
) -> None:
    first, last = claims_con.execute(
        "SELECT MIN(SERVICE_DATE_DD), MAX(SERVICE_DATE_DD) FROM RX_CLAIMS"
    ).fetchall()[0]
    assert date(2023, 1, 1) <= first < date(2023, 1, 15)
    assert date(2024, 12, 15) < last <= date(2024, 12, 31)
    by_year = dict(
        claims_con.execute(
            """SELECT NDC_DRUG_NM || year(SERVICE_DATE_DD), COUNT(*) FROM RX_CLAIMS
               WHERE NDC_DRUG_NM IN ('OZEMPIC', 'HUMIRA') GROUP BY ALL"""
        ).fetchall()
    )
    assert by_year["OZEMPIC2024"] > 1.2 * by_year["OZEMPIC2023"]  # GLP-1s are growing
    assert by_year["HUMIRA2024"] < by_year["HUMIRA2023"]  # biosimilars arrived in 2023
    weekdays = dict(
        claims_con.execute(
            "SELECT dayofweek(SERVICE_DATE_DD), COUNT(*) FROM RX_CLAIMS GROUP BY 1"
        ).fetchall()
    )
    assert weekdays[0] < weekdays[3] / 2  # Sunday vs Wednesday


def test_amounts_are_positive_and_90_day_fills_exist(
    claims_con: duckdb.DuckDBPyConnection,
) -> None:
    row = claims_con.execute(
        """SELECT MIN(PAID_AMT), MIN(DISPENSED_QUANTITY_VAL), MIN(PATIENT_PAY_AMT),
                  COUNT(*) FILTER (WHERE PATIENT_PAY_AMT > PAID_AMT),
                  COUNT(*) FILTER (WHERE DAYS_SUPPLY_CNT >= 84)
           FROM RX_CLAIMS"""
    ).fetchone()
    assert row is not None
    min_paid, min_quantity, min_copay, overpaid, long_fills = row
    assert min_paid > 0
    assert min_quantity > 0
    assert min_copay >= 0
    assert overpaid == 0
    assert long_fills > 0
    assert _one(claims_con, "SELECT MIN(CLAIM_CHARGE_AMT) FROM MED_CLAIMS") > 0
    backwards = "SELECT COUNT(*) FROM MED_CLAIMS WHERE STATEMENT_TO_DD < STATEMENT_FROM_DD"
    assert _one(claims_con, backwards) == 0
    assert _one(claims_con, "SELECT MIN(total_payment_amount) FROM PROVIDER_PAYMENTS") > 0


# --- building on first use -----------------------------------------------------------------


def test_ensure_database_builds_into_the_data_directory_once(loopwright_home: Path) -> None:
    calls: list[tuple[float, str]] = []
    path = ensure_database(rx_claims=2_000, seed=3, progress=lambda f, m: calls.append((f, m)))
    assert path == loopwright_home / "data" / "healthcare" / "claims-v2-2000-3.duckdb"
    assert path == default_database_path(2_000, 3)
    assert path.is_file()
    fractions = [fraction for fraction, _ in calls]
    assert fractions == sorted(fractions)
    assert fractions[-1] == 1.0
    assert any("pharmacy claims" in message for _, message in calls)
    stamp = path.stat().st_mtime_ns

    again: list[tuple[float, str]] = []
    assert ensure_database(rx_claims=2_000, seed=3, progress=lambda f, m: again.append((f, m)))
    assert again == []
    assert path.stat().st_mtime_ns == stamp
    leftovers = [p.name for p in path.parent.iterdir() if p.suffix == ".tmp" or ".wal" in p.name]
    assert leftovers == []


def test_concurrent_callers_share_one_build(tmp_path: Path) -> None:
    target = tmp_path / "shared.duckdb"
    barrier = threading.Barrier(2)
    builds: list[int] = []
    waits: list[list[tuple[float, str]]] = []
    results: list[Path] = []
    errors: list[BaseException] = []

    def caller(index: int) -> None:
        reported: list[tuple[float, str]] = []
        try:
            barrier.wait()
            results.append(
                ensure_database(
                    rx_claims=2_000,
                    seed=5,
                    path=target,
                    progress=lambda f, m: reported.append((f, m)),
                )
            )
        except BaseException as error:  # surfaced below
            errors.append(error)
        if reported and reported[0][1].startswith("waiting"):
            waits.append(reported)
        elif reported:
            builds.append(index)

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert results == [target, target]
    assert len(builds) == 1  # the second caller waited and reused the file
    for reported in waits:
        assert reported == [WAITING, REUSED]
    assert _rows(target, "PROVIDERS_BIO")


WAITING = (0.0, "waiting for another build")
REUSED = (1.0, "built by another process")


def test_a_caller_waiting_for_another_build_says_so(tmp_path: Path) -> None:
    """A second `loopwright healthcare` waiting for the first one's build showed nothing until
    that build was done: it looked hung."""
    import fcntl

    target = tmp_path / "shared.duckdb"
    reported: list[tuple[float, str]] = []
    waiting = threading.Event()
    results: list[Path] = []

    def progress(fraction: float, message: str) -> None:
        reported.append((fraction, message))
        waiting.set()

    with open(tmp_path / "shared.duckdb.lock", "a+b") as lock:  # another build holds the lock
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        caller = threading.Thread(
            target=lambda: results.append(
                ensure_database(rx_claims=1_000, seed=5, path=target, progress=progress)
            )
        )
        caller.start()
        assert waiting.wait(timeout=60)
        assert reported == [WAITING]
        build_database(target, rx_claims=1_000, seed=5)  # the other build finishes
        fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
    caller.join(timeout=60)
    assert results == [target]
    assert reported == [WAITING, REUSED]


def test_a_failed_build_leaves_nothing_behind(tmp_path: Path) -> None:
    target = tmp_path / "broken.duckdb"

    def explode(fraction: float, message: str) -> None:
        if "medical" in message:
            raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        build_database(target, rx_claims=2_000, seed=1, progress=explode)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["claims.duckdb", "claims[1].duckdb", "claims*.duckdb"])
def test_the_leftovers_of_a_killed_build_are_removed_by_the_next(tmp_path: Path, name: str) -> None:
    """A build killed by SIGKILL leaves its temporary files; the next ``ensure_database`` of
    that file deletes them, whatever characters the file name holds."""
    dead_pid = 2**22 + 12_345  # above Linux's largest pid: no such process
    leftovers = [tmp_path / f".{name}.{dead_pid}.0badc0de.tmp{wal}" for wal in ("", ".wal")]
    other = tmp_path / f".claims-other.duckdb.{dead_pid}.0badc0de.tmp"  # another file's build
    for leftover in (*leftovers, other):
        leftover.write_bytes(b"half a database")
    path = ensure_database(rx_claims=1_000, seed=2, path=tmp_path / name)
    assert path.is_file()
    assert not any(leftover.exists() for leftover in leftovers)
    assert other.exists()


def test_the_spill_directory_of_a_killed_build_is_removed_by_the_next(tmp_path: Path) -> None:
    """A build that ran short of memory spills to ``<temp>.tmp/``, a directory; killed, it
    left that directory, and every later build failed with "Is a directory"."""
    dead_pid = 2**22 + 12_345  # above Linux's largest pid: no such process
    spill = tmp_path / f".claims.duckdb.{dead_pid}.0badc0de.tmp.tmp"
    spill.mkdir()
    (spill / f"duckdb_temp_{dead_pid}_0_storage_DEFAULT-0.tmp").write_bytes(b"spilled rows")
    path = ensure_database(rx_claims=1_000, seed=2, path=tmp_path / "claims.duckdb")
    assert path.is_file()
    assert not spill.exists()


def test_a_path_starting_with_a_tilde_is_in_the_home_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DuckDB expanded the "~" of the temporary file, the rename did not: the build failed
    at its end, left a hidden temporary file in the home directory and a "~" folder here."""
    home = tmp_path / "home"
    home.mkdir()
    here = tmp_path / "cwd"
    here.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(here)
    assert ensure_database(rx_claims=1_000, seed=2, path="~/a.duckdb") == home / "a.duckdb"
    assert build_database("~/b.duckdb", rx_claims=1_000, seed=2) == home / "b.duckdb"
    assert main(["--rows", "1000", "--seed", "2", "--out", "~/c.duckdb"]) == 0
    assert sorted(p.name for p in home.iterdir() if not p.name.endswith(".lock")) == [
        "a.duckdb",
        "b.duckdb",
        "c.duckdb",
    ]
    assert list(here.iterdir()) == []
    assert _rows(home / "a.duckdb", "PROVIDERS_BIO") == _rows(home / "b.duckdb", "PROVIDERS_BIO")


def test_a_data_directory_that_cannot_be_made_is_a_clear_error(
    loopwright_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file where the data directory should be was a bare "[Errno 17] File exists"."""
    loopwright_home.mkdir()
    blocker = loopwright_home / "data"
    blocker.write_text("not a directory")
    expected = f"{blocker} is a file, where the directory {blocker / 'healthcare'} should be"
    with pytest.raises(DatabaseBuildError, match="move that file away") as raised:
        ensure_database(rx_claims=1_000)
    assert str(raised.value).startswith(expected)
    assert "LOOPWRIGHT_HOME" in str(raised.value)
    with pytest.raises(DatabaseBuildError, match="is a file, where the directory"):
        build_database(blocker / "claims.duckdb", rx_claims=1_000)
    with pytest.raises(SystemExit) as exited:
        main(["--rows", "1000", "--out", str(blocker / "claims.duckdb")])
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert f"error: {blocker} is a file, where the directory" in err
    assert "Traceback" not in err
    assert blocker.read_text() == "not a directory"


def test_a_too_small_size_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 1,000"):
        ensure_database(rx_claims=10, path=tmp_path / "x.duckdb")
    assert not (tmp_path / "x.duckdb").exists()


@pytest.mark.parametrize("seed", [1.5, "7", None, True, 2**64 + 7, -(2**63) - 1])
def test_a_bad_seed_is_refused_with_a_clear_message(tmp_path: Path, seed: Any) -> None:
    """Not a crash deep in the generator (1.5, "7", None), nor a silent alias: True is seed 1
    under another file name, and 2**64 + 7 draws what seed 7 draws."""
    for build in (
        lambda: build_database(tmp_path / "x.duckdb", rx_claims=1_000, seed=seed),
        lambda: ensure_database(rx_claims=1_000, seed=seed, path=tmp_path / "x.duckdb"),
    ):
        with pytest.raises(ValueError, match="seed must be a whole number"):
            build()
    assert list(tmp_path.iterdir()) == []


def test_a_directory_is_not_taken_for_the_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "claims.duckdb"
    folder.mkdir()
    with pytest.raises(IsADirectoryError, match="is a directory, not a database file"):
        ensure_database(rx_claims=1_000, path=folder)
    with pytest.raises(IsADirectoryError, match="is a directory, not a database file"):
        build_database(folder, rx_claims=1_000)
    with pytest.raises(SystemExit):
        main(["--rows", "1000", "--out", str(folder)])
    assert "is a directory" in capsys.readouterr().err
    assert folder.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["claims.duckdb"]


def test_the_command_line_refuses_a_seed_out_of_range(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(["--rows", "1000", "--seed", str(2**64), "--out", str(tmp_path / "x.duckdb")])
    assert "--seed must be from" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_the_command_line_builds_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli.duckdb"
    assert main(["--rows", "1000", "--seed", "2", "--out", str(out)]) == 0
    assert out.is_file()
    assert "rx claims/s" in capsys.readouterr().out
    assert main(["--rows", "1000", "--seed", "2", "--out", str(out)]) == 0
    assert "already exists" in capsys.readouterr().out


def test_running_out_of_memory_says_so_not_to_check_the_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A build DuckDB could neither hold in memory nor spill said to check the free disk space
    and the data directory's permissions, whatever the cause."""
    real_connect = duckdb.connect

    def tight(database: str, *args: Any, **kwargs: Any) -> duckdb.DuckDBPyConnection:
        con = real_connect(database, *args, **kwargs)
        for setting in ("memory_limit = '30MB'", "max_temp_directory_size = '0KB'", "threads = 1"):
            con.execute(f"SET {setting}")
        return con

    monkeypatch.setattr(duckdb, "connect", tight)
    target = tmp_path / "claims.duckdb"
    with pytest.raises(DatabaseBuildError) as raised:
        build_database(target, rx_claims=200_000)
    message = str(raised.value)
    assert "Out of Memory" in message
    assert "build a smaller one (fewer rx claims), or free memory and disk space" in message
    assert "writable" not in message
    assert list(tmp_path.iterdir()) == []
