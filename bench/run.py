"""Every benchmark of the warehouse in one command, with a JSON result and a markdown table.

    .venv/bin/python -m bench.run --profile small            # smoke run, a few minutes
    .venv/bin/python -m bench.run --profile large            # 10,000 learners x 90 days
    .venv/bin/python -m bench.run --profile large --only nightly,dashboards

Figures (issue 6), each the median of ``--repeat`` runs where it is cheap enough to repeat:
  ingest       tracker batch path, events/s                        target >= 50,000
  nightly      `studyin run` after one new day of events, s        target < 60
  cost_ratio   the same increment on `days` vs `short_days` history target <= 1.3
  full_rebuild `dbt build --full-refresh` of everything, s          target < 900 (and events/s)
  dashboards   analyses/ queries, 8 concurrent clients, p95 ms      target < 20 per query
  job_memory   peak RSS of each python job, MB                       target < 2,048

History databases are built once per profile (the simulator through the tracker, then a first
full pipeline run) and kept as templates; each nightly measurement copies the template and
delivers the held-back last day into the copy, so every repeat measures the same increment.
Results go to bench/results/<profile>-<time>.json and .md (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pickle
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from python_jobs import db, migrate
from python_jobs.dbt import run_dbt
from python_jobs.pipeline import RunContext, run_pipeline

log = logging.getLogger("bench")
RESULTS = Path(__file__).resolve().parent / "results"
SEED = 2026


@dataclass(frozen=True)
class Profile:
    name: str
    users: int
    days: int
    short_days: int
    ingest_events: int
    dashboard_calls: int  # per client per query


PROFILES = {
    "small": Profile(
        "small", users=200, days=30, short_days=10, ingest_events=200_000, dashboard_calls=50
    ),
    "large": Profile(
        "large", users=10_000, days=90, short_days=30, ingest_events=1_000_000, dashboard_calls=200
    ),
}

TARGETS = {
    "ingest_events_per_s": (">=", 50_000),
    "nightly_run_s": ("<", 60),
    "cost_ratio": ("<=", 1.3),
    "full_rebuild_s": ("<", 900),
    "dashboard_p95_ms": ("<", 20),
    "job_peak_rss_mb": ("<", 2048),
}


def _admin() -> str:
    return db.with_database(db.ensure_server(), "postgres")


def _exists(name: str) -> bool:
    with psycopg.connect(_admin(), autocommit=True) as conn:
        return bool(
            conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone()
        )


def _copy_database(template: str, name: str) -> str:
    with psycopg.connect(_admin(), autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')
        conn.execute(f'create database "{name}" template "{template}"')
    return db.with_database(_admin(), name)


def _drop_database(name: str) -> None:
    with psycopg.connect(_admin(), autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')


def _cache_file(name: str) -> Path:
    return RESULTS / "cache" / f"{name}.increment.pickle"


def build_history(profile: Profile, days: int, target: Path) -> str:
    """Template database with `days` of history built, plus the held-back next day on disk."""
    from python_jobs.simulator import generate, prepare
    from python_jobs.tracker import Tracker

    name = f"bench_{profile.name}_{days}d"
    if _exists(name) and _cache_file(name).exists():
        log.info("history %s: reusing the template database", name)
        return name
    _drop_database(name)
    with psycopg.connect(_admin(), autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    url = db.with_database(_admin(), name)
    migrate.upgrade(url)
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    cutoff = end - timedelta(days=1)
    sim = generate(profile.users, days + 1, SEED, end=end)
    held_back = []

    def history():
        for event in sim.events():
            if event.received_at <= cutoff:
                yield event
            elif event.received_at <= end:
                held_back.append(event)

    started = time.monotonic()
    with psycopg.connect(url) as conn:
        prepare(conn, sim)
        result = Tracker(conn, trust_received_at=True).track_batch(history())
    log.info("history %s: %s events in %.0fs", name, result.accepted, time.monotonic() - started)
    _cache_file(name).parent.mkdir(parents=True, exist_ok=True)
    _cache_file(name).write_bytes(pickle.dumps(held_back))
    started = time.monotonic()
    run_pipeline(RunContext(url=url, target_path=target))
    log.info("history %s: first full pipeline in %.0fs", name, time.monotonic() - started)
    return name


def measure_nightly(template: str, target: Path, repeat: int) -> dict[str, Any]:
    from python_jobs.tracker import Tracker

    increment = pickle.loads(_cache_file(template).read_bytes())
    seconds = []
    for i in range(repeat):
        url = _copy_database(template, f"{template}_run{i}")
        with psycopg.connect(url) as conn:
            Tracker(conn, trust_received_at=True).track_batch(increment)
        started = time.monotonic()
        run_pipeline(RunContext(url=url, target_path=target))
        seconds.append(time.monotonic() - started)
        _drop_database(f"{template}_run{i}")
    return {
        "increment_events": len(increment),
        "runs_s": seconds,
        "median_s": statistics.median(seconds),
    }


def measure_full_rebuild(template: str, target: Path, repeat: int) -> dict[str, Any]:
    url = _copy_database(template, f"{template}_full")
    with psycopg.connect(url) as conn:
        events = conn.execute("select count(*) from app.study_events").fetchone()[0]
    seconds = []
    for _ in range(repeat):
        started = time.monotonic()
        run_dbt(["build", "--full-refresh"], url=url, target_path=target)
        seconds.append(time.monotonic() - started)
    _drop_database(f"{template}_full")
    median = statistics.median(seconds)
    return {
        "events": events,
        "runs_s": seconds,
        "median_s": median,
        "events_per_s": events / median,
    }


def measure_dashboards(template: str, target: Path, calls: int) -> list[dict[str, Any]]:
    from bench.dashboards import compile_analyses, measure

    url = db.with_database(_admin(), template)
    queries = compile_analyses(url, target)
    return [asdict(q) for q in measure(url, queries, clients=8, calls_per_client=calls)]


def measure_jobs(template: str, target: Path) -> list[dict[str, Any]]:
    from bench.jobs import run_job

    url = _copy_database(template, f"{template}_jobs")
    try:
        return [run_job(job, url, target / "plots") for job in ("readiness", "gaps")]
    finally:
        _drop_database(f"{template}_jobs")


def machine() -> dict[str, Any]:
    with psycopg.connect(_admin()) as conn:
        server = conn.execute("show server_version").fetchone()[0]
    memory_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(memory_kb / 2**20, 1),
        "python": platform.python_version(),
        "postgres": server,
        "platform": platform.platform(),
        "load_avg_at_start": os.getloadavg(),
    }


def verdict(key: str, value: float) -> str:
    op, limit = TARGETS[key]
    ok = {"<": value < limit, "<=": value <= limit, ">=": value >= limit}[op]
    return "met" if ok else "MISSED"


def table(profile: Profile, figures: dict[str, Any], info: dict[str, Any]) -> str:
    rows = ["| figure | target | measured | verdict |", "| --- | --- | --- | --- |"]

    def add(label: str, key: str, value: float, fmt: str) -> None:
        op, limit = TARGETS[key]
        rows.append(f"| {label} | {op} {limit:,} | {value:{fmt}} | {verdict(key, value)} |")

    if "ingest" in figures:
        add("ingest, events/s", "ingest_events_per_s", figures["ingest"]["events_per_s"], ",.0f")
    if "nightly" in figures:
        add(
            f"nightly run after 1 day, {profile.days} d history, s",
            "nightly_run_s",
            figures["nightly"]["median_s"],
            ".1f",
        )
    if "cost_ratio" in figures:
        add(
            f"cost ratio {profile.days} d / {profile.short_days} d",
            "cost_ratio",
            figures["cost_ratio"]["ratio"],
            ".2f",
        )
    if "full_rebuild" in figures:
        fr = figures["full_rebuild"]
        add(
            f"full rebuild, s ({fr['events_per_s']:,.0f} events/s)",
            "full_rebuild_s",
            fr["median_s"],
            ".1f",
        )
    for q in figures.get("dashboards", []):
        add(
            f"dashboard `{q['name']}` p95 ms (p50 {q['p50_ms']:.1f}, p99 {q['p99_ms']:.1f})",
            "dashboard_p95_ms",
            q["p95_ms"],
            ".1f",
        )
    for job in figures.get("job_memory", []):
        add(
            f"job `{job['job']}` peak RSS MB ({job['wall_s']:.1f} s)",
            "job_peak_rss_mb",
            job["peak_rss_mb"],
            ",.0f",
        )
    head = (
        f"Profile `{profile.name}` ({profile.users:,} learners x {profile.days} days), "
        f"{info['cpus']} CPUs, {info['memory_gib']} GiB, PostgreSQL {info['postgres']}, "
        f"Python {info['python']}\n\n"
    )
    return head + "\n".join(rows) + "\n"


ALL = ("ingest", "nightly", "cost_ratio", "full_rebuild", "dashboards", "job_memory")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profile", choices=sorted(PROFILES), default="small")
    parser.add_argument(
        "--only", default=",".join(ALL), help=f"comma-separated subset of {', '.join(ALL)}"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per median (default 3)")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S"
    )
    profile = PROFILES[args.profile]
    wanted = [w for w in args.only.split(",") if w]
    unknown = set(wanted) - set(ALL)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    target = RESULTS / f"target-{profile.name}"
    info = machine()
    figures: dict[str, Any] = {}

    if "ingest" in wanted:
        from bench.ingest import run as ingest_run

        rate = ingest_run(
            events=profile.ingest_events, chunk_size=50_000, users=2_000, connections=2, keep=False
        )
        figures["ingest"] = {"events": profile.ingest_events, "events_per_s": rate}
    needs_long = {"nightly", "cost_ratio", "full_rebuild", "dashboards", "job_memory"}
    if needs_long & set(wanted):
        long_history = build_history(profile, profile.days, target)
        if "nightly" in wanted or "cost_ratio" in wanted:
            figures["nightly"] = measure_nightly(long_history, target, args.repeat)
        if "cost_ratio" in wanted:
            short_history = build_history(profile, profile.short_days, target)
            short = measure_nightly(short_history, target, args.repeat)
            figures["cost_ratio"] = {
                "long_median_s": figures["nightly"]["median_s"],
                "short_median_s": short["median_s"],
                "ratio": figures["nightly"]["median_s"] / short["median_s"],
            }
        if "full_rebuild" in wanted:
            figures["full_rebuild"] = measure_full_rebuild(
                long_history, target, max(1, args.repeat // 2)
            )
        if "dashboards" in wanted:
            figures["dashboards"] = measure_dashboards(
                long_history, target, profile.dashboard_calls
            )
        if "job_memory" in wanted:
            figures["job_memory"] = measure_jobs(long_history, target)

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = {"profile": asdict(profile), "machine": info, "figures": figures, "at": stamp}
    (RESULTS / f"{profile.name}-{stamp}.json").write_text(json.dumps(result, indent=2, default=str))
    markdown = table(profile, figures, info)
    (RESULTS / f"{profile.name}-{stamp}.md").write_text(markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
