"""The tracker on the local Citus cluster beside the single server, measured in the same run.

    .venv/bin/python -m bench.cluster --events 50000
    .venv/bin/python -m bench.cluster --events 50000 --workers 2 --runs 3

For each server (the single embedded server, then a coordinator with ``--workers`` workers started
by the cluster mode) it makes a database of its own, migrates it (on the cluster 0015 distributes
the learner tables), seeds bench.ingest's reference set and times, on the same generated events:
  * ingest: ``track_batch`` over all of them (bench.ingest's event mix and chunking);
  * repeats: the same batch again (every event a duplicate: the receipts insert finds them all
    stored and the tracker compares each with the stored version);
  * erasure: ``app.delete_user`` of 20 learners, one transaction each (their events, typed rows,
    receipts and sessions).
Every node runs on this machine, so the cluster shares the same cores as the single server: the
figures show what distribution costs per event (two-phase commits, the coordinator's routing),
not what more machines would give. Both databases are dropped; a cluster this run started is
stopped again.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg

from bench.ingest import checkpoint, generate_events, seed_reference
from python_jobs.ingest.tracker import Tracker
from python_jobs.warehouse import cluster, db, migrate

ERASED_LEARNERS = 20


@dataclass(frozen=True)
class Figures:
    server: str
    ingest_per_s: float
    repeats_per_s: float
    erasure_ms: float  # median per learner


def _measure(label: str, url: str, events: int, users: int, chunk_size: int) -> Figures:
    migrate.upgrade(url)
    with psycopg.connect(url) as conn:
        ref = seed_reference(conn, users)
        batch = list(generate_events(ref, events))
        checkpoint(conn)
        tracker = Tracker(conn)
        started = time.perf_counter()
        result = tracker.track_batch(batch, chunk_size=chunk_size)
        ingest = time.perf_counter() - started
        assert result.accepted == len(batch), result
        started = time.perf_counter()
        again = tracker.track_batch(batch, chunk_size=chunk_size)
        repeats = time.perf_counter() - started
        assert again.duplicates == len(batch), again
        erasures = []
        for user in ref.users[:ERASED_LEARNERS]:
            started = time.perf_counter()
            with conn.transaction():
                conn.execute("select app.delete_user(%s)", (user,))
            erasures.append(time.perf_counter() - started)
        left = conn.execute(
            "select count(*) from app.study_events where user_id = any(%s)",
            (ref.users[:ERASED_LEARNERS],),
        ).fetchone()
        assert left == (0,), left
    figures = Figures(label, events / ingest, events / repeats, statistics.median(erasures) * 1000)
    print(
        f"{label}: ingest {figures.ingest_per_s:,.0f} events/s ({ingest:.1f} s), repeats "
        f"{figures.repeats_per_s:,.0f} events/s, erasure {figures.erasure_ms:.0f} ms per learner",
        flush=True,
    )
    return figures


def _in_database(
    make: Callable[[str], str],
    drop: Callable[[str], None],
    name: str,
    run: Callable[[str], Figures],
) -> Figures:
    url = make(name)
    try:
        return run(url)
    finally:
        drop(name)


def run(events: int, users: int, workers: int, chunk_size: int) -> tuple[Figures, Figures]:
    name = f"studyin_bench_cluster_{os.getpid()}"
    single_admin = db.with_database(db.start_embedded(), "postgres")

    def make_single(dbname: str) -> str:
        with psycopg.connect(single_admin, autocommit=True) as admin:
            admin.execute(f'create database "{dbname}"')
        return db.with_database(single_admin, dbname)

    def drop_single(dbname: str) -> None:
        with psycopg.connect(single_admin, autocommit=True) as admin:
            admin.execute(f'drop database if exists "{dbname}" with (force)')

    single = _in_database(
        make_single,
        drop_single,
        name,
        lambda url: _measure("single server", url, events, users, chunk_size),
    )
    started_here = not any(running for _, running in cluster.status(workers))
    cluster.start_cluster(workers)
    try:
        distributed = _in_database(
            lambda dbname: cluster.prepare_database(dbname, workers),
            lambda dbname: cluster.drop_database(dbname, workers),
            name,
            lambda url: _measure(
                f"cluster (1 coordinator, {workers} workers)", url, events, users, chunk_size
            ),
        )
    finally:
        if started_here:
            cluster.stop_cluster()
    print(
        f"CLUSTER / SINGLE: ingest {distributed.ingest_per_s / single.ingest_per_s:.2f}, "
        f"repeats {distributed.repeats_per_s / single.repeats_per_s:.2f}, "
        f"erasure time {distributed.erasure_ms / single.erasure_ms:.1f}x"
    )
    return single, distributed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chunk-size", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=1, help="runs (default 1); medians printed")
    args = parser.parse_args(argv)
    runs = [run(args.events, args.users, args.workers, args.chunk_size) for _ in range(args.runs)]
    if len(runs) > 1:
        ratio = statistics.median(c.ingest_per_s / s.ingest_per_s for s, c in runs)
        print(f"MEDIAN of {len(runs)} runs: cluster / single ingest {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
