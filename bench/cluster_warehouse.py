"""The whole warehouse on the local Citus cluster beside the single server, in the same run.

    .venv/bin/python -m bench.cluster_warehouse --users 200 --days 30

One simulated world of ``--users`` learners over ``--days`` days plus one more day is delivered to
a database on each server (the single embedded server, then a coordinator with ``--workers``
workers from the cluster mode, where 0015 distributes the learner tables): every event received
before the last day through the tracker, then a first ``studyin run`` (timed: the first build);
then the last day's events and a second ``studyin run`` (timed: the nightly run after one new day),
with each step's seconds; then the BI queries of analyses/ with 8 concurrent clients (p95 per
query, bench.dashboards) as a BI login on both servers: a login made as `studyin bi-login` makes it
(a member of reporter, reading marts only; on Citus the coordinator is given its password, since
the shards' queries run on the workers as the session's user), dropped afterwards. On Citus every
mart is a table (the view marts are built as tables there, macros/citus_materialization.sql), and
each dashboard query is planned for the one shard of its learner. Two figures per query: with
new connections (on Citus each client's first call that reaches a worker also opens the
coordinator's connection to it, tens of milliseconds here: with 20 calls a client and 2 workers,
those calls are the slowest 10 %) and with pooled connections (each client first runs one untimed
query over every shard, as a BI tool's pool of open connections would have long before). Every
node runs on this machine, so the cluster shares the single server's cores: the figures show what
distribution costs here, not what more machines give; for the same reason each run's CPU
seconds are reported per node (coordinator, each worker; bench/node_cpu.py) and for the client
(the pipeline, dbt and the jobs), which is how the nightly splits between them. The databases are
dropped afterwards; a cluster this run started is stopped again.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from bench import node_cpu
from bench.dashboards import compile_analyses, measure
from python_jobs.ingest.events import Event
from python_jobs.ingest.tracker import Tracker
from python_jobs.simulation.simulator import Simulation, generate, prepare
from python_jobs.warehouse import cluster, db, migrate
from python_jobs.warehouse.bi import create_bi_login
from python_jobs.warehouse.pipeline import RunContext, run_pipeline

SEED = 2026
DATABASE = "bench_cluster_warehouse"
BI_LOGIN = "bench_bi_reader"
CLIENTS = 8
# Read by each dashboard client once before its timed calls: a query over every shard, so that on
# Citus the session's connections to all workers are open, as in a BI tool's connection pool.
WARMUP = "select count(*) from marts.user_learning_metrics"


def _deliver(url: str, events: list[Event], received_from: datetime, received_to: datetime) -> int:
    events = [e for e in events if received_from <= e.received_at < received_to]
    with psycopg.connect(url) as conn:
        result = Tracker(conn, trust_received_at=True).track_batch(events)
    return result.accepted


def measure_server(
    url: str, sim: Simulation, events: list[Event], calls: int, servers: dict[str, Path]
) -> dict[str, Any]:
    """Deliver, build, deliver one more day, run the nightly, then time the dashboards; the CPU
    seconds each of `servers` (name: data folder) and the client spent in each run beside them."""
    migrate.upgrade(url)
    with psycopg.connect(url) as conn:
        prepare(conn, sim)
    cut = sim.end - timedelta(days=1)
    since_ever = datetime.min.replace(tzinfo=UTC)
    figures: dict[str, Any] = {"history_events": _deliver(url, events, since_ever, cut)}
    with tempfile.TemporaryDirectory() as target:
        for label in ("first_build", "nightly"):
            if label == "nightly":
                figures["new_day_events"] = _deliver(url, events, cut, sim.end + timedelta(days=1))
            cpu = node_cpu.snapshot(servers)
            started = time.perf_counter()
            steps = run_pipeline(RunContext(url=url, target_path=Path(target)))
            figures[f"{label}_s"] = time.perf_counter() - started
            figures[f"{label}_steps_s"] = steps
            figures[f"{label}_cpu_s"] = node_cpu.spent(cpu, node_cpu.snapshot(servers))
        queries = compile_analyses(url, Path(target))
        with bi_login(url) as bi_url:
            cold = measure(url, queries, CLIENTS, calls, bi_url=bi_url)
            pooled = measure(url, queries, CLIENTS, calls, bi_url=bi_url, warmup=WARMUP)
    figures["dashboards_p95_ms"] = {q.name: q.p95_ms for q in pooled}
    figures["dashboards_new_connections_p95_ms"] = {q.name: q.p95_ms for q in cold}
    return figures


@contextmanager
def bi_login(url: str) -> Iterator[str]:
    """A BI login (member of reporter, reads marts only) on `url`'s server for the time of the
    block, as `studyin bi-login` makes it (on Citus the coordinator is given its password to reach
    the workers); its URL. Dropped afterwards (roles outlive the bench's database)."""
    with psycopg.connect(url) as conn:
        login = create_bi_login(conn, url, BI_LOGIN)
    try:
        yield login.sqlalchemy_url
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(BI_LOGIN)))


def run(users: int, days: int, workers: int, calls: int) -> dict[str, dict[str, Any]]:
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    sim = generate(users, days + 1, SEED, end=end)
    events = sorted(sim.events(), key=lambda e: (e.received_at, str(e.event_id)))
    results: dict[str, dict[str, Any]] = {}
    admin = db.with_database(db.start_embedded(), "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{DATABASE}" with (force)')
        conn.execute(f'create database "{DATABASE}"')
    try:
        results["single"] = measure_server(
            db.with_database(admin, DATABASE), sim, events, calls, {"server": db.PGDATA}
        )
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'drop database if exists "{DATABASE}" with (force)')
    started_here = not all(up for _, up in cluster.status(workers))
    cluster.start_cluster(workers)
    try:
        cluster.drop_database(DATABASE, workers)
        url = cluster.prepare_database(DATABASE, workers)
        servers = {node.name: node.pgdata for node in cluster.nodes(workers)}
        results["cluster"] = measure_server(url, sim, events, calls, servers)
        cluster.drop_database(DATABASE, workers)
    finally:
        if started_here:
            cluster.stop_cluster()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--calls", type=int, default=50, help="calls per client per query")
    args = parser.parse_args(argv)
    results = run(args.users, args.days, args.workers, args.calls)
    print(json.dumps(results, indent=2, default=str))
    for server, figures in results.items():
        worst = max(figures["dashboards_p95_ms"].values())
        worst_new = max(figures["dashboards_new_connections_p95_ms"].values())
        print(
            f"{server:8} first build {figures['first_build_s']:6.1f} s  nightly "
            f"{figures['nightly_s']:6.1f} s  dashboards worst p95 {worst:7.1f} ms"
            f" (new connections {worst_new:7.1f} ms)"
        )
        print(f"{'':8} nightly CPU seconds: {figures['nightly_cpu_s']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
