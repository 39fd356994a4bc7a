"""Source freshness in the nightly run: every event table of app is checked (`dbt source
freshness`); a late or stale one is logged as a warning, and fails the run with fail_on_stale."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from python_jobs.simulation.simulator import simulate
from python_jobs.warehouse.dbt import DbtSession
from python_jobs.warehouse.pipeline import (
    PipelineError,
    RunContext,
    check_source_freshness,
    default_steps,
    run_pipeline,
)

pytestmark = pytest.mark.slow

# source: (column read, warn_after hours, error_after hours), as in _app__sources.yml
EVENT_SOURCES = {
    "app.exam_results": ("received_at", 7 * 24, 14 * 24),
    "app.material_interactions": ("received_at", 24, 48),
    "app.question_attempts": ("received_at", 24, 48),
    "app.study_events": ("received_at", 24, 48),
    "app.study_sessions": ("last_activity_at", 24, 48),
}


def _freshness_step(ctx: RunContext) -> None:
    steps = [step for step in default_steps() if step[0] == "source_freshness"]
    run_pipeline(ctx, steps)


def _expected(url: str) -> dict[str, tuple[str, datetime]]:
    """Each source's status and newest row, computed here from the tables and the thresholds."""
    expected = {}
    with psycopg.connect(url) as conn:
        now = conn.execute("select now()").fetchone()[0]
        for source, (column, warn, error) in EVENT_SOURCES.items():
            newest = conn.execute(f"select max({column}) from {source}").fetchone()[0]
            newest = newest or datetime(1970, 1, 1, tzinfo=UTC)
            age = now - newest
            status = "error" if age > timedelta(hours=error) else "pass"
            if status == "pass" and age > timedelta(hours=warn):
                status = "warn"
            expected[source] = (status, newest)
    return expected


def test_empty_event_tables_are_stale_warned_by_default_and_fail_on_option(
    database_factory, tmp_path, caplog
):
    url = database_factory("studyin_freshness_empty")
    checked = check_source_freshness(DbtSession(url, tmp_path))
    assert {c.source: (c.status, c.newest_at.year) for c in checked} == {
        source: ("error", 1970) for source in EVENT_SOURCES
    }

    with caplog.at_level(logging.WARNING, logger="studyin.run"):
        _freshness_step(RunContext(url=url, target_path=tmp_path))
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == len(EVENT_SOURCES)
    assert any("app.study_events is stale (past error_after)" in m for m in warned)

    with pytest.raises(PipelineError) as failed:
        _freshness_step(RunContext(url=url, target_path=tmp_path, fail_on_stale=True))
    assert failed.value.step == "source_freshness"
    assert "app.study_events" in str(failed.value)


def test_statuses_follow_the_newest_rows_and_fresh_data_passes(database_factory, tmp_path):
    url = database_factory("studyin_freshness_data")
    with psycopg.connect(url) as conn:
        simulate(conn, users=12, days=14, seed=5, progress=False)
    expected = _expected(url)
    assert {s for s, _ in expected.values()} == {"pass"}  # a simulation ending now is fresh

    checked = check_source_freshness(DbtSession(url, tmp_path))
    assert {c.source: (c.status, c.newest_at) for c in checked} == expected
    _freshness_step(RunContext(url=url, target_path=tmp_path, fail_on_stale=True))

    # 30 hours later for the high-volume tables: late, not stale; the run passes even on the option
    with psycopg.connect(url) as conn:
        for table in ("study_events", "question_attempts", "material_interactions"):
            conn.execute(f"alter table app.{table} disable trigger user")
            conn.execute(f"update app.{table} set received_at = received_at - interval '30 hours'")
            conn.execute(f"alter table app.{table} enable trigger user")
    expected = _expected(url)
    assert expected["app.study_events"][0] == "warn"
    checked = check_source_freshness(DbtSession(url, tmp_path))
    assert {c.source: (c.status, c.newest_at) for c in checked} == expected
    _freshness_step(RunContext(url=url, target_path=tmp_path, fail_on_stale=True))
