"""The nightly pipeline end to end on a small simulation: rerun stability, failure reporting,
the overlap lock, and erasure of a learner from every relation."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from warehouse_relations import relations_holding, relations_with_user_id

from python_jobs.simulation.simulator import simulate
from python_jobs.warehouse.deletion import request_deletion
from python_jobs.warehouse.pipeline import (
    LOCK_KEY,
    PipelineError,
    RunContext,
    default_steps,
    run_pipeline,
)

pytestmark = pytest.mark.slow

ERASABLE_SCHEMAS = ["app", "staging", "intermediate", "marts", "ml"]
# "Today" pinned for every run of the module's database: unpinned, each learner's today is their
# local date, and a learner's midnight between two runs (18:00 UTC in Asia/Dhaka) changes the
# marts evaluated at it, so a rerun would legitimately differ.
TODAY = datetime.now(UTC).date().isoformat()
PINNED_TODAY = {"mastery_as_of_date": TODAY, "metrics_as_of_date": TODAY}


def pinned_run(url: str, target: str | Path) -> dict[str, object]:
    return run_pipeline(RunContext(url=url, target_path=Path(target), dbt_vars=PINNED_TODAY))


@pytest.fixture(scope="module")
def pipeline_db(database_factory, tmp_path_factory) -> tuple[str, str]:
    url = database_factory("studyin_pipeline")
    with psycopg.connect(url) as conn:
        simulate(conn, users=60, days=30, seed=11, progress=False)
    target = tmp_path_factory.mktemp("dbt_target")
    pinned_run(url, target)
    return url, str(target)


def mart_checksums(url: str) -> dict[str, str]:
    """An order-independent checksum of every mart's full content."""
    with psycopg.connect(url) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "select table_name from information_schema.tables "
                "where table_schema = 'marts' and table_type = 'BASE TABLE'"
                " and table_name <> 'warehouse_freshness' order by 1"  # records the run's time
            )
        ]
        sums = {}
        for table in tables:
            query = sql.SQL(
                "select count(*) || ':' || coalesce(md5(string_agg(md5(t::text), '' "
                "order by md5(t::text))), '') from marts.{} as t"
            ).format(sql.Identifier(table))
            sums[table] = conn.execute(query).fetchone()[0]
    return sums


def test_second_run_changes_no_mart_row_and_keeps_one_set_of_recommendations(pipeline_db):
    url, target = pipeline_db
    before = mart_checksums(url)
    assert {"daily_user_stats", "topic_mastery", "user_learning_metrics"} <= set(before)
    pinned_run(url, target)
    assert mart_checksums(url) == before
    with psycopg.connect(url) as conn:
        days, duplicates = conn.execute(
            "select count(distinct generated_on), count(*) - count(distinct (user_id, rank)) "
            "from ml.gap_recommendations where generated_on = current_date"
        ).fetchone()
    assert (days, duplicates) == (1, 0)


def _studyin(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STUDYIN_DATABASE_URL": url}
    return subprocess.run(
        [sys.executable, "-m", "python_jobs.cli", *args],
        env=env,
        text=True,
        capture_output=True,
        timeout=600,
    )


def test_broken_step_exits_non_zero_naming_it(database_factory):
    url = database_factory("studyin_broken")
    with psycopg.connect(url) as conn:
        # A column the staging layer needs is gone: dbt's build must fail, and say so.
        conn.execute("alter table app.users rename column cohort to cohort_renamed")
        conn.commit()
    result = _studyin(url, "run")
    assert result.returncode == 1
    assert "step 'dbt_build_upstream' failed" in result.stderr
    assert 'column "cohort" does not exist' in result.stderr  # dbt's error, passed on
    assert "step migrate: done" in result.stderr  # the steps before it ran


def test_overlapping_run_is_refused(database_factory):
    url = database_factory("studyin_locked")
    with psycopg.connect(url, autocommit=True) as holder:
        holder.execute("select pg_advisory_lock(%s)", (LOCK_KEY,))
        result = _studyin(url, "run")
    assert result.returncode == 75
    assert "another studyin run holds the pipeline lock" in result.stderr


def test_erased_learner_appears_in_no_relation(pipeline_db):
    url, target = pipeline_db
    with psycopg.connect(url) as conn:
        victim = conn.execute(
            "select user_id from marts.daily_user_stats group by user_id "
            "order by count(*) desc, user_id limit 1"
        ).fetchone()[0]
        request_deletion(conn, victim)
    pinned_run(url, target)
    with psycopg.connect(url) as conn:
        relations = relations_with_user_id(conn, ERASABLE_SCHEMAS)
        schemas = {schema for schema, _ in relations}
        assert {"app", "staging", "marts", "ml"} <= schemas
        assert relations_holding(conn, relations, victim) == []
        request = conn.execute(
            "select user_id, completed_at is not null, affected_from is not null "
            "from app.deletion_requests"
        ).fetchall()
        assert request == [(None, True, True)]
        # nor in any text: rejected payloads and the request's hash do not spell the id
        text_hits = conn.execute(
            "select count(*) from app.rejected_events where payload like %s",
            (f"%{victim}%",),
        ).fetchone()[0]
        assert text_hits == 0


def test_failing_python_jobs_are_named_after_both_have_run(database_factory, caplog):
    # migrated, but dbt has never built the marts both jobs read: both fail, and the step's
    # error names the first job while the second job's failure is logged, not lost
    url = database_factory("studyin_jobs_fail")
    steps = [step for step in default_steps() if step[0] == "python_jobs"]
    with pytest.raises(PipelineError) as raised:
        run_pipeline(RunContext(url=url), steps)
    assert raised.value.step == "python_jobs"
    assert "job exam_readiness failed" in str(raised.value)
    assert "intermediate.int_topic_reviews_scheduled does not exist" in str(raised.value)
    assert "job gap_recommendations also failed: marts.knowledge_gaps does not exist" in caplog.text
