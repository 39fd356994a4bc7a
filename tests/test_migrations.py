"""Alembic owns app and ml: upgrade, downgrade to base and upgrade again on a real server."""

from __future__ import annotations

import psycopg

from python_jobs.warehouse import migrate


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "select table_schema || '.' || table_name from information_schema.tables "
            "where table_schema in ('app', 'ml')"
        ).fetchall()
    return {r[0] for r in rows}


def test_upgrade_downgrade_upgrade(database_factory):
    url = database_factory(migrated=False)
    migrate.upgrade(url)
    first = _tables(url)
    assert {
        "app.study_events",
        "app.question_attempts",
        "app.users",
        "ml.model_runs",
        "ml.exam_readiness_scores",
        "ml.gap_recommendations",
    } <= first
    migrate.downgrade(url, "base")
    assert _tables(url) == set()
    with psycopg.connect(url) as conn:
        version = conn.execute("select count(*) from public.alembic_version").fetchone()
    assert version == (0,)
    migrate.upgrade(url)
    assert _tables(url) == first


def test_roles_exist_with_least_privilege(migrated_db):
    with psycopg.connect(migrated_db) as conn:
        roles = {
            r[0]
            for r in conn.execute(
                "select rolname from pg_roles where rolname in "
                "('loader', 'transformer', 'ml_writer', 'reporter')"
            )
        }
        assert roles == {"loader", "transformer", "ml_writer", "reporter"}
        can = conn.execute(
            "select has_table_privilege('loader', 'app.study_events', 'INSERT'), "
            "has_table_privilege('loader', 'app.study_events', 'DELETE'), "
            "has_schema_privilege('reporter', 'app', 'USAGE'), "
            "has_table_privilege('ml_writer', 'ml.exam_readiness_scores', 'INSERT')"
        ).fetchone()
    assert can == (True, False, False, True)
