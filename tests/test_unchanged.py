"""Nightly runs leave alone the dbt nodes whose definition and inputs have not changed since the
last successful run (python_jobs/warehouse/unchanged.py), and run them again as soon as one has."""

from __future__ import annotations

import psycopg
import pytest

from python_jobs.simulation.simulator import simulate
from python_jobs.warehouse.pipeline import RunContext, run_pipeline

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built(database_factory, tmp_path_factory) -> tuple[str, str]:
    url = database_factory("studyin_unchanged")
    with psycopg.connect(url) as conn:
        simulate(conn, users=20, days=10, seed=5, progress=False)
    target = str(tmp_path_factory.mktemp("dbt_target"))
    run_pipeline(RunContext(url=url, target_path=target))
    return url, target


def _nightly(url: str, target: str) -> RunContext:
    ctx = RunContext(url=url, target_path=target)
    run_pipeline(ctx)
    return ctx


def _names(ids: set[str]) -> set[str]:
    return {uid.split(".")[2] for uid in ids}


def test_second_night_skips_views_reference_tables_seeds_and_their_tests(built):
    url, target = built
    ctx = _nightly(url, target)
    assert ctx.skips is not None
    skipped = set(ctx.skips.skipped)
    ran = set(ctx.dbt.node_seconds)
    assert not skipped & ran
    assert {"topic_catalog", "stg_app__topics", "stg_app__study_events", "topics"} <= _names(
        skipped
    )
    # what reads the events runs, and so do the tests of a skipped view over the events
    assert {"daily_user_stats", "user_learning_metrics"} <= _names(ran)
    assert "test.studyin.not_null_stg_app__users_user_id.66c3a91d26" in skipped
    assert any(uid.startswith("test.studyin.not_null_daily_user_stats") for uid in ran)
    assert not any(uid.startswith("test.studyin.not_null_topic_catalog") for uid in ran)


def test_a_changed_reference_row_rebuilds_what_reads_it(built):
    url, target = built
    _nightly(url, target)  # a baseline where the reference subgraph is skipped
    with psycopg.connect(url) as conn:
        topic_id = conn.execute(
            "select id from app.topics where parent_id is not null order by id limit 1"
        ).fetchone()[0]
        conn.execute("update app.topics set name = name || ' (renamed)' where id = %s", (topic_id,))
    ctx = _nightly(url, target)
    ran = _names(set(ctx.dbt.node_seconds))
    assert "topic_catalog" in ran
    assert any(name.startswith("not_null_topic_catalog") for name in ran)
    with psycopg.connect(url) as conn:
        name = conn.execute(
            "select topic_name from marts.topic_catalog where topic_id = %s", (topic_id,)
        ).fetchone()[0]
    assert name.endswith(" (renamed)")
    # and the night after, it is skipped again
    assert "model.studyin.topic_catalog" in _nightly(url, target).skips.skipped


def test_a_dropped_view_is_built_again(built):
    url, target = built
    _nightly(url, target)
    with psycopg.connect(url) as conn:
        conn.execute("drop view staging.stg_app__event_types")
    ctx = _nightly(url, target)
    assert "model.studyin.stg_app__event_types" not in ctx.skips.skipped
    with psycopg.connect(url) as conn:
        assert conn.execute("select count(*) from staging.stg_app__event_types").fetchone()[0] > 0


def test_full_checks_skip_nothing_and_the_next_nights_skip_again(built):
    url, target = built
    ctx = RunContext(url=url, target_path=target, full_checks=True)
    run_pipeline(ctx)
    assert ctx.skips is not None and ctx.skips.skipped == []
    assert "model.studyin.topic_catalog" in ctx.dbt.node_seconds
    # the full run's --vars differ from a nightly run's (no test window): the first night after it
    # runs every node, and records the baseline the following nights skip from
    assert _nightly(url, target).skips.skipped == []
    assert "model.studyin.topic_catalog" in _nightly(url, target).skips.skipped
