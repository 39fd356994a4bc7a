"""Bytes per stored event: the whole database and each table's heap, TOAST and indexes.

    .venv/bin/python -m bench.storage                         # the database of STUDYIN_* settings
    .venv/bin/python -m bench.storage --database postgresql://.../studyin_demo
    .venv/bin/python -m bench.storage --users 1000 --days 30  # build bench_storage_1000u_30d

The figure is every relation of the database outside the system schemas, the simulator's
``sim`` schema (its latent truth is not stored data of the product) and the benchmark's own
``bench_floor`` scratch tables (bench/floor.py): ``app``, the warehouse schemas and ``ml``,
divided by the events in ``app.study_events``. Partitions are counted under
their partitioned table (and partition indexes under their partitioned index). Per table: heap
(main fork with its free-space and visibility maps), TOAST (table and index) and each index.

With ``--users``/``--days`` the database is built first, reproducibly: the simulator (seed
``--seed``) generates ``days + 1`` days; the first ``days`` go through the tracker's batch path, a
first full ``studyin run`` follows, then the last day is delivered and a nightly ``studyin run``
is timed (so incremental models carry the state a lived-in warehouse has), then VACUUM (ANALYZE),
as autovacuum would, and the sizes are read. ``--reuse`` measures an existing build again.
A JSON of the result goes to bench/results/storage-<database>-<time>.json.

``measure(url)`` and ``build(...)`` are plain functions for other benchmarks to call.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from python_jobs.ingest.events import Event
from python_jobs.warehouse import db, migrate

log = logging.getLogger("bench.storage")
RESULTS = Path(__file__).resolve().parent / "results"
SEED = 2026
EXCLUDED_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast", "sim", "bench_floor")

# One row per table (partitions folded into their root) and kind of storage. Indexes of a
# partition are folded into their partitioned index (pg_partition_root works for both).
SIZES = """
with rels as (
    select
        c.oid,
        c.relkind,
        c.reltoastrelid,
        coalesce(pg_partition_root(c.oid), c.oid) as root
    from pg_class as c
    inner join pg_namespace as n on c.relnamespace = n.oid
    where c.relkind in ('r', 'm', 'i')
        and n.nspname <> all(%s)
        and n.nspname not like 'pg_temp%%'
        and n.nspname not like 'pg_toast_temp%%'
),
sized as (
    select
        r.root,
        case when r.relkind = 'i' then 'index' else 'heap' end as kind,
        case when r.relkind = 'i' then pg_relation_size(r.oid)
            else pg_relation_size(r.oid, 'main') + pg_relation_size(r.oid, 'fsm')
                + pg_relation_size(r.oid, 'vm') end as bytes,
        case when r.reltoastrelid <> 0 then pg_total_relation_size(r.reltoastrelid) else 0 end
            as toast_bytes
    from rels as r
)
select
    n.nspname as schema_name,
    coalesce(t.relname, c.relname) as table_name,
    case when s.kind = 'index' then
        c.relname || ' ' || regexp_replace(pg_get_indexdef(c.oid), '^.* USING ', '')
    end as index_name,
    sum(s.bytes)::bigint as bytes,
    sum(s.toast_bytes)::bigint as toast_bytes
from sized as s
inner join pg_class as c on s.root = c.oid
inner join pg_namespace as n on c.relnamespace = n.oid
left join pg_index as i on s.kind = 'index' and i.indexrelid = s.root
left join pg_class as t on i.indrelid = t.oid
group by 1, 2, 3
"""


@dataclass
class TableSize:
    schema: str
    table: str
    heap: int = 0
    toast: int = 0
    indexes: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.heap + self.toast + sum(self.indexes.values())


@dataclass
class StorageReport:
    database: str
    events: int
    tables: list[TableSize]
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(t.total for t in self.tables)

    def per_event(self, nbytes: int) -> float:
        return nbytes / self.events if self.events else float("nan")

    def schema_totals(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for t in self.tables:
            totals[t.schema] = totals.get(t.schema, 0) + t.total
        return dict(sorted(totals.items(), key=lambda kv: -kv[1]))

    def as_json(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "events": self.events,
            "total_bytes": self.total,
            "bytes_per_event": self.per_event(self.total),
            "schemas": {
                s: {"bytes": b, "bytes_per_event": self.per_event(b)}
                for s, b in self.schema_totals().items()
            },
            "tables": [
                {**asdict(t), "total": t.total, "bytes_per_event": self.per_event(t.total)}
                for t in self.tables
            ],
            **self.extras,
        }


def measure(url: str) -> StorageReport:
    """Sizes of every table and index of the database at ``url`` (see the module docstring)."""
    with psycopg.connect(url, autocommit=True) as conn:
        events = conn.execute("select count(*) from app.study_events").fetchone()[0]
        rows = conn.execute(SIZES, (list(EXCLUDED_SCHEMAS),)).fetchall()
    tables: dict[tuple[str, str], TableSize] = {}
    for schema, table, index, nbytes, toast in rows:
        entry = tables.setdefault((schema, table), TableSize(schema, table))
        if index is None:
            entry.heap += nbytes
            entry.toast += toast
        else:
            entry.indexes[index] = nbytes
    ordered = sorted(tables.values(), key=lambda t: -t.total)
    return StorageReport(db.parse_url(url).dbname, events, ordered)


def render(report: StorageReport, min_share: float = 0.001) -> str:
    """A text table: totals, per schema, then per table and index (parts under ``min_share`` of
    the whole are summed into one line)."""
    per = report.per_event
    lines = [
        f"database {report.database}: {report.events:,} events, "
        f"{report.total / 2**20:,.1f} MiB, {per(report.total):,.1f} B/event",
        "",
        f"{'schema':<14}{'MiB':>10}{'B/event':>10}",
    ]
    for schema, nbytes in report.schema_totals().items():
        lines.append(f"{schema:<14}{nbytes / 2**20:>10.1f}{per(nbytes):>10.1f}")
    lines += ["", f"{'relation':<64}{'MiB':>9}{'B/event':>9}"]
    small = 0
    for t in report.tables:
        if t.total < min_share * report.total:
            small += t.total
            continue
        lines.append(f"{t.schema + '.' + t.table:<64}{t.total / 2**20:>9.1f}{per(t.total):>9.1f}")
        parts = [("heap", t.heap), ("toast", t.toast), *sorted(t.indexes.items())]
        for name, nbytes in parts:
            if nbytes:
                lines.append(f"    {name:<60}{nbytes / 2**20:>9.1f}{per(nbytes):>9.1f}")
    lines.append(f"{'(smaller tables)':<64}{small / 2**20:>9.1f}{per(small):>9.1f}")
    return "\n".join(lines)


# Scans of each index (partition indexes folded into their partitioned index) since the last
# pg_stat_reset(): what the build's nightly run and dashboard queries used.
INDEX_USAGE = """
select
    n.nspname || '.' || c.relname as index_name,
    sum(s.idx_scan)::bigint as scans,
    sum(s.idx_tup_read)::bigint as tuples_read
from pg_stat_user_indexes as s
inner join pg_class as c on coalesce(pg_partition_root(s.indexrelid), s.indexrelid) = c.oid
inner join pg_namespace as n on c.relnamespace = n.oid
where n.nspname <> all(%s)
group by 1
order by 1
"""


def index_usage(url: str) -> dict[str, dict[str, int]]:
    """Scans and tuples read per index since the statistics were last reset."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(INDEX_USAGE, (list(EXCLUDED_SCHEMAS),)).fetchall()
    return {name: {"scans": scans, "tuples_read": tuples} for name, scans, tuples in rows}


def _admin_url() -> str:
    return db.with_database(db.ensure_server(), "postgres")


def _create_database(name: str) -> str:
    admin = _admin_url()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')
        conn.execute(f'create database "{name}"')
    url = db.with_database(admin, name)
    migrate.upgrade(url)
    return url


def _timed_run(url: str, target: Path) -> tuple[float, dict[str, float]]:
    from python_jobs.warehouse.pipeline import RunContext, run_pipeline

    started = time.monotonic()
    steps = run_pipeline(RunContext(url=url, target_path=target))
    return time.monotonic() - started, steps


def _dashboards(url: str, target: Path) -> dict[str, float]:
    """The analyses/ queries, a few calls each (p50 ms): their index use is counted too."""
    from bench.dashboards import compile_analyses
    from bench.dashboards import measure as measure_dashboards

    queries = compile_analyses(url, target)
    latencies = measure_dashboards(url, queries, clients=2, calls_per_client=10)
    return {q.name: q.p50_ms for q in latencies}


def build(users: int, days: int, seed: int = SEED, name: str | None = None) -> tuple[str, dict]:
    """Build ``name`` (default ``bench_storage_<users>u_<days>d``) as the module docstring says;
    returns its URL and what the build measured (events, seconds of each phase)."""
    from python_jobs.ingest.tracker import Tracker
    from python_jobs.simulation.simulator import generate, prepare

    name = name or f"bench_storage_{users}u_{days}d"
    url = _create_database(name)
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    cutoff = end - timedelta(days=1)
    sim = generate(users, days + 1, seed, end=end, attempt_truth=False)
    with psycopg.connect(url) as conn:
        prepare(conn, sim)
    last_day: list[Event] = []

    def history() -> Iterator[Event]:
        """Events received before the cutoff; the last day's are kept for the nightly run."""
        for event in sim.events():
            if event.received_at <= cutoff:
                yield event
            elif event.received_at <= end:
                last_day.append(event)

    target = RESULTS / f"target-{name}"
    info: dict[str, Any] = {"users": users, "days": days, "seed": seed}
    started = time.monotonic()
    with psycopg.connect(url) as conn:
        loaded = Tracker(conn, trust_received_at=True).track_batch(history())
    info["history_events"] = loaded.accepted
    info["load_s"] = time.monotonic() - started
    info["first_run_s"], _ = _timed_run(url, target)
    with psycopg.connect(url) as conn:
        info["night_events"] = Tracker(conn, trust_received_at=True).track_batch(last_day).accepted
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("select pg_stat_reset()")
    info["nightly_s"], info["nightly_step_s"] = _timed_run(url, target)
    info["dashboards"] = _dashboards(url, target)
    time.sleep(1)  # let the closed sessions' statistics reach the cumulative views
    info["index_usage"] = index_usage(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("vacuum (analyze)")
    log.info("built %s: %s", name, info)
    return url, info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database", help="URL of the database to measure (default: settings)")
    parser.add_argument("--users", type=int, help="build a database of this many learners")
    parser.add_argument("--days", type=int, default=30, help="days of history of a build")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--reuse", action="store_true", help="measure an earlier build again")
    parser.add_argument("--json", type=Path, help="where to write the JSON (default: results/)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    extras: dict[str, Any] = {}
    if args.users and args.database:
        parser.error("--users builds its own database: give --database or --users, not both")
    if args.users:
        name = f"bench_storage_{args.users}u_{args.days}d"
        if args.reuse:
            url = db.with_database(_admin_url(), name)
        else:
            url, extras["build"] = build(args.users, args.days, args.seed, name)
    else:
        url = args.database or db.ensure_server()
    report = measure(url)
    report.extras.update(extras)
    print(render(report))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = args.json or RESULTS / f"storage-{report.database}-{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.as_json(), indent=2, default=str))
    print(f"\nwritten {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
