"""Source freshness in the nightly run: every event table of app is checked (`dbt source
freshness`); a late or stale one is logged as a warning, and fails the run with fail_on_stale."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from python_jobs.simulation.simulator import simulate
from python_jobs.warehouse.dbt import DbtSession, run_dbt
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


def _received_earlier(conn: psycopg.Connection, tables: tuple[str, ...], by: str) -> None:
    """Move every row of the app `tables` back in arrival time by the interval `by` (the log's
    append-only trigger is set aside for it)."""
    for table in tables:
        conn.execute(f"alter table app.{table} disable trigger user")
        conn.execute(f"update app.{table} set received_at = received_at - interval '{by}'")
        conn.execute(f"alter table app.{table} enable trigger user")


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
        _received_earlier(
            conn, ("study_events", "question_attempts", "material_interactions"), "30 hours"
        )
    expected = _expected(url)
    assert expected["app.study_events"][0] == "warn"
    checked = check_source_freshness(DbtSession(url, tmp_path))
    assert {c.source: (c.status, c.newest_at) for c in checked} == expected
    _freshness_step(RunContext(url=url, target_path=tmp_path, fail_on_stale=True))

    # Ten days older, as a copy of older data or the benchmark's simulated days are: stale. With
    # the warehouse's watermark at the newest arrival it has read, the newest rows are found among
    # the arrivals just before it (and exam_results, with nothing that recent, in its whole table).
    with psycopg.connect(url) as conn:
        tables = ("study_events", "question_attempts", "material_interactions", "exam_results")
        _received_earlier(conn, tables, "10 days")
        conn.execute(
            "insert into intermediate.incremental_watermarks (model_name, received_at)"
            " select 'daily_user_stats', max(received_at) from app.study_events"
        )
    expected = _expected(url)
    assert expected["app.study_events"][0] == "error"
    checked = check_source_freshness(DbtSession(url, tmp_path))
    assert {c.source: (c.status, c.newest_at) for c in checked} == expected


def _recent_arrivals_since(url: str, target: Path) -> datetime:
    result = run_dbt(
        ["show", "--inline", "select {{ recent_arrivals_since() }} as since", "--output", "json"],
        url=url,
        target_path=target,
    )
    shown = json.loads(result.stdout[result.stdout.index("{") :])
    return datetime.fromisoformat(shown["show"][0]["since"])


def test_recent_arrivals_are_anchored_on_the_newest_model_watermark(database_factory, tmp_path):
    """The freshness checks look first at the 2 days before the newest arrival a model has read
    (not before now: a copy of older data would make every check read its whole table); the
    `<model>__<clock>` rows, which keep other clocks, do not count; before any watermark, now."""
    url = database_factory("studyin_freshness_anchor")
    with psycopg.connect(url) as conn:
        now = conn.execute("select now()").fetchone()[0]
    check_source_freshness(DbtSession(url, tmp_path))  # its hooks create the watermark table
    since = _recent_arrivals_since(url, tmp_path)
    assert timedelta(days=2) - timedelta(minutes=5) < now - since <= timedelta(days=2)

    with psycopg.connect(url) as conn:
        conn.execute(
            "insert into intermediate.incremental_watermarks (model_name, received_at) values"
            " ('daily_user_stats', '2026-01-10 12:00+00'),"
            " ('topic_mastery', '2026-01-09 08:00+00'),"
            " ('fct_readiness_predictions__scores', now() - interval '1 hour')"
        )
    assert _recent_arrivals_since(url, tmp_path) == datetime(2026, 1, 8, 12, tzinfo=UTC)
