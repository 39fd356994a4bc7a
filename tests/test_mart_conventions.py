"""What an analyst relies on across the marts: per-day marts place their day on the UTC clock,
as_of_date is each learner's own today (and is_current says so), warehouse_freshness tells how
new the data is, and every mart has a primary-key test (the rollup's left to full checks)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest

from python_jobs.simulation.simulator import simulate
from python_jobs.warehouse.dbt import run_dbt
from python_jobs.warehouse.pipeline import (
    FULL_CHECKS_TESTS,
    RunContext,
    default_steps,
    run_pipeline,
)

pytestmark = pytest.mark.slow

# 25 hours apart: their local dates differ at every moment, and one of them differs from UTC's
FAR_EAST, FAR_WEST = "Pacific/Kiritimati", "Pacific/Pago_Pago"
PK_TESTS = {"unique", "unique_combination"}


@pytest.fixture(scope="module")
def warehouse(database_factory, tmp_path_factory) -> tuple[str, Path, dict[str, str]]:
    """A built warehouse whose two first learners live at UTC+14 and UTC-11."""
    url = database_factory("studyin_conventions")
    with psycopg.connect(url) as conn:
        simulate(conn, users=12, days=10, seed=8, progress=False)
        learners = [
            r[0]
            for r in conn.execute(
                "select user_id from app.question_attempts"
                " group by 1 order by count(*) desc limit 2"
            )
        ]
        zones = {str(learners[0]): FAR_EAST, str(learners[1]): FAR_WEST}
        for learner, zone in zones.items():
            conn.execute("update app.users set timezone = %s where id = %s", (zone, learner))
    target = tmp_path_factory.mktemp("dbt_conventions")
    steps = [s for s in default_steps() if s[0] != "dbt_docs"]
    run_pipeline(RunContext(url=url, target_path=target), steps)
    return url, target, zones


def _midnight(day: date, zone: str) -> datetime:
    return datetime.combine(day, time(), ZoneInfo(zone))


def test_local_days_and_weeks_carry_their_utc_span(warehouse):
    url, _, zones = warehouse
    with psycopg.connect(url) as conn:
        for learner, zone in zones.items():
            rows = conn.execute(
                "select local_date, timezone, day_starts_at, day_ends_at, questions_attempted"
                " from marts.daily_user_stats where user_id = %s",
                (learner,),
            ).fetchall()
            assert rows
            for local_date, timezone, starts, ends, attempted in rows:
                assert timezone == zone
                assert starts == _midnight(local_date, zone)
                assert ends == _midnight(local_date + timedelta(days=1), zone)
                (answered,) = conn.execute(
                    "select count(*) from app.question_attempts where user_id = %s"
                    " and answered_at >= %s and answered_at < %s",
                    (learner, starts, ends),
                ).fetchone()
                assert attempted == answered
            for week_start, starts, ends in conn.execute(
                "select week_start, week_starts_at, week_ends_at from marts.weekly_user_stats"
                " where user_id = %s",
                (learner,),
            ):
                assert week_start.isoweekday() == 1
                assert (starts, ends) == (
                    _midnight(week_start, zone),
                    _midnight(week_start + timedelta(days=7), zone),
                )


def test_topic_days_are_utc_dates(warehouse):
    url, _, _ = warehouse
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "select topic_id, activity_date, day_starts_at, day_ends_at, attempts"
            " from marts.topic_daily_stats order by attempts desc limit 20"
        ).fetchall()
        for topic_id, activity_date, starts, ends, attempts in rows:
            assert starts == datetime.combine(activity_date, time(), UTC)
            assert ends - starts == timedelta(days=1)
            (counted,) = conn.execute(
                "select count(*) from app.question_attempts where topic_id = %s"
                " and answered_at >= %s and answered_at < %s",
                (topic_id, starts, ends),
            ).fetchone()
            assert attempts == counted


def test_as_of_date_is_each_learners_today_and_is_current_keeps_them_all(warehouse):
    url, _, zones = warehouse
    learners = list(zones)
    with psycopg.connect(url) as conn:
        for mart in ("topic_mastery_current", "knowledge_gaps", "user_learning_metrics"):
            rows = conn.execute(
                f"select user_id::text, as_of_date, is_current, current_date"
                f" from marts.{mart} where user_id = any(%s::uuid[])",
                (learners,),
            ).fetchall()
            today = {u: datetime.now(ZoneInfo(zone)).date() for u, zone in zones.items()}
            assert {(u, d) for u, d, _, _ in rows} == set(today.items()), mart
            assert all(current for _, _, current, _ in rows), mart
            utc_today = rows[0][3]
            assert len({d for _, d, _, _ in rows}) == 2, mart  # never one date for both
            # the filter an analyst might write drops at least one of them; is_current none
            assert {u for u, d, _, _ in rows if d == utc_today} != set(learners), mart


def test_a_fixed_as_of_date_makes_is_current_false(warehouse, tmp_path):
    url, _, _ = warehouse
    pinned = {"mastery_as_of_date": "2026-01-15"}
    try:
        run_dbt(
            [
                "run",
                "--select",
                "fct_topic_schedule_current",
                "topic_mastery_current",
                "--vars",
                json.dumps(pinned),
            ],
            url=url,
            target_path=tmp_path,
        )
        with psycopg.connect(url) as conn:
            values = conn.execute(
                "select distinct as_of_date, is_current from marts.topic_mastery_current"
            ).fetchall()
        assert values == [(date(2026, 1, 15), False)]
    finally:
        # replacing the view drops the view over it (dbt drops the old one with cascade)
        views = ["fct_topic_schedule_current", "topic_mastery_current", "topic_mastery_rollup"]
        run_dbt(["run", "--select", *views], url=url, target_path=tmp_path)


def _newest(conn: psycopg.Connection) -> dict[str, tuple[datetime, datetime]]:
    columns = {
        "app.study_events": "occurred_at",
        "app.question_attempts": "answered_at",
        "app.material_interactions": "occurred_at",
        "app.exam_results": "taken_at",
    }
    return {
        table: conn.execute(f"select max(received_at), max({column}) from {table}").fetchone()
        for table, column in columns.items()
    }


def test_warehouse_freshness_lists_every_mart_and_the_newest_events(warehouse, tmp_path):
    url, _, _ = warehouse
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "select object_name, object_type, materialization, refreshed_at,"
            " newest_received_at, newest_occurred_at from marts.warehouse_freshness"
        ).fetchall()
        marts = {
            f"marts.{name}": kind
            for name, kind in conn.execute(
                "select table_name, table_type from information_schema.tables"
                " where table_schema = 'marts' and table_name <> 'warehouse_freshness'"
            )
        }
        newest = _newest(conn)
    sources = {r[0]: (r[4], r[5]) for r in rows if r[1] == "source"}
    assert sources == newest
    by_mart = {r[0]: r for r in rows if r[1] == "mart"}
    assert set(by_mart) == set(marts)
    for name, kind in marts.items():
        _, _, materialization, refreshed_at, _, _ = by_mart[name]
        assert (materialization == "view") == (kind == "VIEW"), name
        assert (refreshed_at is None) == (kind == "VIEW"), name
    event_received = max(newest[t][0] for t in newest if t != "app.exam_results")
    assert by_mart["marts.daily_user_stats"][4] == event_received
    assert by_mart["marts.topic_catalog"][4] is None


def test_warehouse_freshness_reads_the_whole_table_when_nothing_is_recent(warehouse, tmp_path):
    """Exam results received 5 days ago are outside the 2-day look-up: the whole table is read."""
    url, _, _ = warehouse
    with psycopg.connect(url) as conn:
        conn.execute("alter table app.exam_results disable trigger user")
        conn.execute("update app.exam_results set received_at = received_at - interval '5 days'")
        conn.execute("alter table app.exam_results enable trigger user")
        want = _newest(conn)["app.exam_results"]
    assert want[0] is not None and want[0] < datetime.now(UTC) - timedelta(days=2)
    run_dbt(["run", "--select", "warehouse_freshness"], url=url, target_path=tmp_path)
    with psycopg.connect(url) as conn:
        got = conn.execute(
            "select newest_received_at, newest_occurred_at from marts.warehouse_freshness"
            " where object_name = 'app.exam_results'"
        ).fetchone()
    assert got == want


def test_every_mart_has_a_primary_key_test_and_learner_wide_views_wait_for_full_checks(warehouse):
    url, target, _ = warehouse
    manifest = json.loads((target / "manifest.json").read_text())
    nodes = manifest["nodes"].values()
    marts = {
        n["unique_id"]: n["name"]
        for n in nodes
        if n["resource_type"] == "model" and n["config"]["schema"] == "marts"
    }
    keyed: set[str] = set()
    by_mart: dict[str, set[str]] = {}
    for test in (n for n in nodes if n["resource_type"] == "test"):
        model = test.get("attached_node")
        if model in marts:
            by_mart.setdefault(marts[model], set()).add(test["name"])
            if (test.get("test_metadata") or {}).get("name") in PK_TESTS:
                keyed.add(marts[model])
    assert sorted(set(marts.values()) - keyed) == []
    # the nightly run excludes these: exactly the tests of the two views of every learner
    listed = run_dbt(
        ["ls", "--select", FULL_CHECKS_TESTS, "--output", "name", "--quiet"],
        url=url,
        target_path=target / "ls",
    ).stdout.split()
    views = by_mart["topic_mastery_rollup"] | by_mart["topic_mastery_current"]
    assert set(listed) == views and len(by_mart["topic_mastery_current"]) >= 4
    schedule = next(n for n in nodes if n.get("name") == "fct_topic_schedule_current")
    assert schedule["config"]["meta"]["test_window_column"] == "last_review_date"
