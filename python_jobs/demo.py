"""`studyin demo`: the whole product on the embedded database, from nothing to docs.

Starts PostgreSQL, recreates the demo database, migrates, loads simulated learners through the
tracker, runs the nightly pipeline (dbt build, python jobs, docs) and prints where to look next.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import psycopg

from python_jobs.paths import PROJECT_ROOT
from python_jobs.warehouse import cluster, db, migrate

log = logging.getLogger("studyin.demo")


@dataclass(frozen=True)
class DemoOptions:
    users: int = 200
    days: int = 30
    seed: int = 42
    late_share: float = 0.03


def prepare_database(fresh: bool) -> str:
    """Start the server; on the embedded server, start from an empty demo database."""
    url = db.ensure_server()
    if fresh and db.uses_embedded():
        name = db.parse_url(url).dbname
        workers = db.cluster_workers()
        if workers:  # every node's copy, made again with Citus and the workers registered
            cluster.drop_database(name, workers)
            url = cluster.prepare_database(name, workers)
        else:
            with psycopg.connect(db.with_database(url, "postgres"), autocommit=True) as conn:
                conn.execute(f'drop database if exists "{name}" with (force)')
                conn.execute(f'create database "{name}"')
        log.info("recreated database %s", name)
    return url


def headline(url: str) -> list[str]:
    """A few numbers that show the warehouse is alive, read from the marts and ml tables."""
    queries = {
        "learners": "select count(*) from app.users",
        "events stored": "select count(*) from app.study_events",
        "rejected events": "select count(*) from app.rejected_events",
        "daily_user_stats rows": "select count(*) from marts.daily_user_stats",
        "mean mastery (studied)": "select round(avg(mastery), 3) from marts.topic_mastery_current",
        "knowledge gaps": "select count(*) from marts.knowledge_gaps",
        "recommendations today": (
            "select count(*) from ml.gap_recommendations where generated_on = current_date"
        ),
        "readiness model": (
            "select format('%s (AUC %s, Brier %s)', model_version, round(auc::numeric, 3),"
            " round(brier::numeric, 3)) from ml.model_runs order by trained_at desc limit 1"
        ),
        "mean pass probability": (
            "select round(avg(pass_probability)::numeric, 3) from ml.exam_readiness_scores"
            " where scored_at::date = current_date"
        ),
    }
    lines = []
    with psycopg.connect(url, autocommit=True) as conn:
        for label, query in queries.items():
            try:
                value = conn.execute(query).fetchone()[0]
            except psycopg.Error as err:
                value = f"unavailable ({err.diag.message_primary})"
            lines.append(f"  {label:<24} {value}")
    return lines


def plot_path(url: str) -> str | None:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "select plot_path from ml.model_runs order by trained_at desc limit 1"
        ).fetchone()
    return row[0] if row else None


# The README section that shows how to point Superset or Metabase at the warehouse.
BI_README_SECTION = "Connecting a BI tool"


def where_next(plot: str | None) -> list[str]:
    """Where the docs are, how to connect a BI tool, and the calibration plot."""
    return [
        f"  dbt docs:          {PROJECT_ROOT / 'target' / 'index.html'}",
        "                     serve them: .venv/bin/studyin dbt docs serve",
        "  BI tool:           .venv/bin/studyin bi-login NAME (a login that reads the marts only),",
        f"                     then README.md, '{BI_README_SECTION}'",
        f"  calibration plot:  {plot}",
    ]


def run_demo(options: DemoOptions, fresh: bool = True) -> int:
    from python_jobs.simulation.simulator import simulate
    from python_jobs.warehouse.pipeline import RunContext, run_pipeline

    started = time.monotonic()
    url = prepare_database(fresh)
    migrate.upgrade(url)
    with psycopg.connect(url) as conn:
        summary = simulate(
            conn,
            users=options.users,
            days=options.days,
            seed=options.seed,
            late_share=options.late_share,
        )
    print(summary)
    # every data test, and docs with each model's compiled SQL: a weekly run's checks
    run_pipeline(RunContext(url=url, full_checks=True))
    print(f"\nStudyin demo done in {time.monotonic() - started:.0f}s on {url}")
    print("\n".join(headline(url)))
    print("\n" + "\n".join(where_next(plot_path(url))))
    return 0
