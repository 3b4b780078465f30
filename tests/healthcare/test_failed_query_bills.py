"""A BigQuery query billed but ended in a tool error is on the bill: the CLI's closing line of
the turn and ``sessions report`` count it with the queries that succeeded.

Real runs: the ``loopwright healthcare`` CLI as a process with a scripted model, against the
BigQuery stand-in (:mod:`sql.bigquery_server`), one of whose finished jobs' rows cannot all
be read (BigQuery's ``responseTooLarge``): that job was billed, and its SQL call failed.
"""

from __future__ import annotations

from pathlib import Path

from sql.bigquery_server import BigQueryServer

from .test_warehouse_cost import (  # noqa: F401 - bigquery: the fixture
    JOINED,
    MB,
    _footer,
    _lw,
    _query,
    _report,
    _script,
    _url,
    bigquery,
)

#: Every claim's id: 20,000 rows, read in pages; the stand-in fails the page of row 15,000.
ALL_IDS = "SELECT CLAIM_ID FROM RX_CLAIMS"


def test_a_billed_query_whose_call_failed_is_on_the_bill(
    bigquery: BigQueryServer,  # noqa: F811
    loopwright_home: Path,
    tmp_path: Path,
) -> None:
    """Two queries: the first one's job finished and billed 10 MB, then its rows could not
    all be read, so its call failed; the second succeeded and billed 20 MB. The turn's line,
    the session's history and ``sessions report`` count both: 30 MB, 2 queries."""
    bigquery.failing_row = 15_000
    script = _script(
        tmp_path,
        "failing",
        [_query(ALL_IDS, "claim_ids"), _query(JOINED, "by_state"), "Counted."],
    )
    ran = _lw(
        loopwright_home, tmp_path, "healthcare", "--database", _url(bigquery),
        "-m", script, "--session", "fq1", "List the claims, then count them by state.",
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert "Response too large to return" in ran.stdout  # the first call's error, shown
    assert "BigQuery 30 MB billed (2 queries)" in _footer(ran.stdout), _footer(ran.stdout)
    billed = sorted(job.bytes_billed for job in bigquery.jobs.values())
    assert billed == [10 * MB, 20 * MB]  # the stand-in's own figures for the two jobs

    report = _report(loopwright_home, tmp_path, "fq1")
    assert report["warehouse"]["queries"] == 2
    assert report["warehouse"]["bytes_billed"] == 30 * MB
    assert report["usage"]["tool_errors"] == 1
    shown = _lw(loopwright_home, tmp_path, "sessions", "show", "fq1")
    usage_line = next(line for line in shown.stdout.splitlines() if line.startswith("usage "))
    assert "BigQuery 30 MB billed (2 queries)" in usage_line, usage_line
