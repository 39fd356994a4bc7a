"""Every benchmark of the warehouse in one command, with a JSON result and a markdown table.

    .venv/bin/python -m bench.run --profile small            # smoke run, a few minutes
    .venv/bin/python -m bench.run --profile large            # 10,000 learners x 90 days
    .venv/bin/python -m bench.run --profile large --only nightly,dashboards
    .venv/bin/python -m bench.run --profile xlarge --users 300 --days 6   # its path, reduced

Figures (issue 6):
  ingest       tracker batch path, events/s (median of --ingest-runs) target >= 50,000
               and over a plain binary COPY of the same rows, same run  target >= 1/3
  nightly      `studyin run` after one new day of events, s        target < 60 (xlarge: < 120)
               and over the plain-SQL floor of the same day (issue 18) target <= 5
  cost_ratio   the same increments on `days` vs `short_days` history target <= 1.3
  full_rebuild `dbt run --full-refresh` of every model, s           target < 900 (and events/s)
               its events/s over a single-pass GROUP BY's (issue 18) target >= 1/3
  dashboards   analyses/ queries, 8 concurrent clients, p95 ms      target < 20 per query
  job_memory   peak RSS of each python job, MB                       target < 2,048
  storage      bytes per stored event, whole database (bench/storage.py)  target <= 250

The floor and the GROUP BY are plain SQL of bench/floor.py (its docstring says exactly what each
does), run on the same database in the same run: after each timed nightly run, the floor reads the
rows received since the newest received_at before that day's delivery and rewrites every key they
touch (learner x local day, learner x topic, topic x UTC day, session) into scratch tables of
schema bench_floor, in one transaction; the nightly figure's multiple is the median of each day's
run / floor. Before each full rebuild, the GROUP BY reads the whole log joined to its typed rows.
Each nightly result also lists dbt's parse time and slowest nodes, each full rebuild its slowest
models (run_results.json).

The xlarge profile (50,000 learners x 30 days) builds its histories in place one simulated day at
a time and keeps each held-back day in a file of its own (bench/in_place.py); `--users`/`--days`
run a profile's code path at a reduced size.

One simulation of `days + held_back_days` days builds the history databases (through the
tracker, then a first full pipeline run and a vacuum): `bench_<profile>_<days>d` and, for the
cost ratio, `bench_<profile>_<short_days>d` holding only the last `short_days` days of the same
events. The held-back days are then delivered one at a time into each history, in place (one
history after the other), and `studyin run` is timed after each: the nightly figure is the median
over `--nightly-runs` days, and both histories get exactly the same increments. (Copying a
history per measurement, as a template, would need about 30 GB per copy at the large profile.) A
later run reuses the histories and delivers the next held-back days; when too few are left, the
histories are built again (`--histories-only` does just that, ahead of a measurement).
Full rebuild, dashboards and job memory run in place on the long history.
Results go to bench/results/<profile>-<time>.json and .md (git-ignored).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import math
import os
import pickle
import platform
import queue
import statistics
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from bench.ingest import IngestFigures
from python_jobs.ingest.events import Event
from python_jobs.ingest.tracker import BatchResult, Tracker
from python_jobs.warehouse import db, migrate
from python_jobs.warehouse.dbt import run_dbt
from python_jobs.warehouse.pipeline import RunContext, run_pipeline

log = logging.getLogger("bench")
RESULTS = Path(__file__).resolve().parent / "results"
CACHE = RESULTS / "cache"  # history state and held-back days, kept between runs
SEED = 2026
SLOWEST_NODES = 12  # dbt nodes listed per nightly run, slowest first


@dataclass(frozen=True)
class Profile:
    name: str
    users: int
    days: int
    short_days: int
    ingest_events: int
    dashboard_calls: int  # per client per query
    held_back_days: int  # days simulated after the history, delivered one per nightly run
    # built in place one day at a time, held-back days kept one file per day (bench/in_place.py)
    by_day: bool = False
    base: str | None = None  # a reduced run (--users, --days): the name of its full profile
    nightly_limit_s: float = 60  # the nightly run's target, s


PROFILES = {
    "small": Profile(
        "small",
        users=200,
        days=30,
        short_days=10,
        ingest_events=200_000,
        dashboard_calls=50,
        held_back_days=6,
    ),
    "large": Profile(
        "large",
        users=10_000,
        days=90,
        short_days=30,
        ingest_events=1_000_000,
        dashboard_calls=200,
        held_back_days=9,
    ),
    # 50,000 learners x 30 days (about 60M events): built day by day so that both histories fit
    # this disk and no more than one day of events is in memory (bench/in_place.py)
    "xlarge": Profile(
        "xlarge",
        users=50_000,
        days=30,
        short_days=10,
        ingest_events=1_000_000,
        dashboard_calls=200,
        held_back_days=3,
        by_day=True,
        nightly_limit_s=120,  # issue 18 at 50,000 learners
    ),
}

TARGETS = {
    "ingest_events_per_s": (">=", 50_000),
    "ingest_copy_ratio": (">=", 1 / 3),
    "nightly_run_s": ("<", 60),
    "cost_ratio": ("<=", 1.3),
    "full_rebuild_s": ("<", 900),
    "full_rebuild_group_by_ratio": (">=", 1 / 3),
    "nightly_floor_multiple": ("<=", 5),
    "dashboard_p95_ms": ("<", 20),
    "job_peak_rss_mb": ("<", 2048),
    "storage_bytes_per_event": ("<=", 250),
}


def targets(profile: Profile) -> dict[str, tuple[str, float]]:
    """TARGETS with the profile's own nightly limit."""
    return {**TARGETS, "nightly_run_s": ("<", profile.nightly_limit_s)}


def _admin() -> str:
    return db.with_database(db.ensure_server(), "postgres")


def _exists(name: str) -> bool:
    with psycopg.connect(_admin(), autocommit=True) as conn:
        return bool(
            conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone()
        )


def _drop_database(name: str) -> None:
    with psycopg.connect(_admin(), autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')


def _state_file(name: str) -> Path:
    return CACHE / f"{name}.json"


def _increments_file(profile: Profile) -> Path:
    return CACHE / f"bench_{profile.name}.increments.pickle"


def _increments_ready(profile: Profile, delivered: int, nightly_runs: int) -> bool:
    if not profile.by_day:
        return _increments_file(profile).exists()
    from bench.in_place import day_file

    wanted = range(delivered + 1, delivered + nightly_runs + 1)
    return all(day_file(CACHE, profile.name, day).exists() for day in wanted)


class _Increments:
    """The held-back days' events: one pickle of every day, or one file per day (by_day)."""

    def __init__(self, profile: Profile) -> None:
        self._profile = profile
        self._all = None if profile.by_day else pickle.loads(_increments_file(profile).read_bytes())

    def day(self, day: int) -> list[Event]:
        if self._all is not None:
            return self._all[day - 1]
        from bench.in_place import day_events

        return list(day_events(CACHE, self._profile.name, day))


def _create_database(name: str) -> str:
    _drop_database(name)
    with psycopg.connect(_admin(), autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    url = db.with_database(_admin(), name)
    migrate.upgrade(url)
    return url


class _Feed:
    """Events handed from the simulator's thread to a tracker running in a thread of its own."""

    def __init__(self, url: str) -> None:
        self._queue: queue.Queue[list[Event] | None] = queue.Queue(maxsize=16)
        self._buffer: list[Event] = []
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="feed")
        self._future = self._pool.submit(self._load, url)

    def _load(self, url: str) -> BatchResult:
        def events() -> Iterator[Event]:
            while (chunk := self._queue.get()) is not None:
                yield from chunk

        with psycopg.connect(url) as conn:
            return Tracker(conn, trust_received_at=True).track_batch(events())

    def _put(self, item: list[Event] | None) -> None:
        while True:
            if self._future.done():  # the loader failed: surface its error here
                self._future.result()
                raise RuntimeError("the history loader stopped early")
            try:
                self._queue.put(item, timeout=1)
                return
            except queue.Full:
                continue

    def add(self, event: Event) -> None:
        self._buffer.append(event)
        if len(self._buffer) >= 10_000:
            self._put(self._buffer)
            self._buffer = []

    def close(self) -> BatchResult:
        self._put(self._buffer)
        self._put(None)
        try:
            return self._future.result()
        finally:
            self._pool.shutdown()


def build_histories(
    profile: Profile, target: Path, short: bool, nightly_runs: int
) -> tuple[str, str | None]:
    """History databases of `days` (and `short_days`) before the held-back days.

    One simulation of `days + held_back_days` days feeds both: events received before the cutoff
    go through the tracker into the long history (and, for the last `short_days` days, into the
    short one too); events of each held-back day are kept on disk to be delivered one day at a
    time, so both histories receive exactly the same increments. Each history then gets its
    first full pipeline run and a VACUUM (ANALYZE). Reused while both have received the same
    held-back days and `nightly_runs` more are left.
    """
    from tqdm import tqdm

    from python_jobs.simulation.simulator import generate, prepare

    long_name = f"bench_{profile.name}_{profile.days}d"
    short_name = f"bench_{profile.name}_{profile.short_days}d" if short else None
    names = [n for n in (long_name, short_name) if n]
    states = [_state(n) if _exists(n) else {} for n in names]
    delivered = [s.get("delivered") for s in states]
    if None not in delivered and _reusable(profile, states, nightly_runs):
        log.info("histories %s: reusing, held-back days delivered: %s", ", ".join(names), delivered)
        return long_name, short_name
    if profile.by_day and any(d is not None for d in delivered):
        # hours of building: never dropped behind the user's back
        held = ", ".join(
            f"{n}: {'missing' if d is None else d}" for n, d in zip(names, delivered, strict=True)
        )
        raise SystemExit(
            f"held-back days delivered ({held}) of {profile.held_back_days}: these histories "
            f"cannot serve {nightly_runs} more timed nights; drop the databases to build them "
            f"again (hours)"
        )

    # before the hour-long load, not after it: the held-back days are written here at its end
    CACHE.mkdir(parents=True, exist_ok=True)
    if profile.by_day:
        _build_by_day(profile, target, long_name, short_name)
        return long_name, short_name
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    cutoff = end - timedelta(days=profile.held_back_days)
    short_from = cutoff - timedelta(days=profile.short_days)
    sim = generate(profile.users, profile.days + profile.held_back_days, SEED, end=end)
    long_url = _create_database(long_name)
    short_url = _create_database(short_name) if short_name else None
    for url in (long_url, short_url):
        if url:
            with psycopg.connect(url) as conn:
                prepare(conn, sim)
    increments: list[list[Event]] = [[] for _ in range(profile.held_back_days)]
    feed = _Feed(short_url) if short_url else None
    bar = tqdm(desc="history: events", unit="ev", unit_scale=True)

    def history() -> Iterator[Event]:
        for event in sim.events():
            if event.received_at <= cutoff:
                if feed and event.received_at > short_from:
                    feed.add(event)
                yield event
            elif event.received_at <= end:
                day = math.ceil((event.received_at - cutoff) / timedelta(days=1)) - 1
                increments[day].append(event)

    started = time.monotonic()
    try:
        with psycopg.connect(long_url) as conn:
            result = Tracker(conn, trust_received_at=True).track_batch(
                history(), progress=bar.update
            )
    finally:
        bar.close()
        short_result = feed.close() if feed else None
    log.info(
        "history %s: %s events in %.0fs%s",
        long_name,
        f"{result.accepted:,}",
        time.monotonic() - started,
        f"; {short_name}: {short_result.accepted:,}" if short_result else "",
    )
    _increments_file(profile).write_bytes(pickle.dumps(increments))
    for name in names:
        _first_run(name, target)
    return long_name, short_name


def _reusable(profile: Profile, states: list[dict[str, Any]], nightly_runs: int) -> bool:
    """The histories (their state files) serve `nightly_runs` more timed nights: the series
    starts after the fewest held-back days any of them received (a measurement cut short between
    histories resumes, keeping the nights it measured), enough days are left, and their files are
    there."""
    first = min(s["delivered"] for s in states)
    kept = all(
        str(day) in s.get("nights", {})
        for s in states
        for day in range(first + 1, min(s["delivered"], first + nightly_runs) + 1)
    )
    return (
        kept
        and first + nightly_runs <= profile.held_back_days
        and _increments_ready(profile, first, nightly_runs)
    )


def _first_run(name: str, target: Path) -> None:
    """A history's first full pipeline run and VACUUM (ANALYZE), recorded in its state file."""
    started = time.monotonic()
    url = db.with_database(_admin(), name)
    step_s = run_pipeline(RunContext(url=url, target_path=target))
    seconds = time.monotonic() - started
    log.info("history %s: first full pipeline in %.0fs", name, seconds)
    vacuum_s = _vacuum(url)
    log.info("history %s: vacuum (analyze) in %.0fs", name, vacuum_s)
    state = {
        "delivered": 0,
        "first_run_s": seconds,
        "first_run_step_s": step_s,
        "vacuum_s": vacuum_s,
    }
    _state_file(name).write_text(json.dumps(state))


def _build_by_day(profile: Profile, target: Path, long_name: str, short_name: str | None) -> None:
    """The histories built in place one day at a time (bench/in_place.py), then their first run;
    the per-day loads and the full profile's estimated build time and disk go to the log and to
    the long history's state file. A build interrupted (its progress file names the simulation's
    end and the days delivered) resumes where it stopped, when its databases are still there."""
    from bench.in_place import build_by_day, estimate, resumable

    names = [n for n in (long_name, short_name) if n]
    progress = CACHE / f"bench_{profile.name}.build.json"
    resuming = progress.exists() and all(_exists(n) for n in names)
    if resuming:
        end, done = resumable(progress)
        log.info("histories by day: resuming after day %d of %d", len(done), profile.days)
    else:
        end, done = datetime.now(UTC).replace(second=0, microsecond=0), []

    def open_db(name: str) -> str:
        return db.with_database(_admin(), name) if resuming else _create_database(name)

    urls: dict[str, str | None] = {"long": open_db(long_name)}
    if short_name:
        urls["short"] = open_db(short_name)
    started = time.monotonic()
    loads = build_by_day(profile, urls, end, CACHE, SEED, progress, done)
    log.info("histories by day: %.0fs", time.monotonic() - started)
    for name in names:
        _first_run(name, target)
    full = PROFILES[profile.base or profile.name]
    guess = estimate(loads, profile.users, full.days, full.users, full.short_days)
    log.info("estimated full %s build: %s", full.name, json.dumps(guess))
    state = {**_state(long_name), "day_loads": [asdict(d) for d in loads], "estimate": guess}
    _state_file(long_name).write_text(json.dumps(state))
    progress.unlink()


def _vacuum(url: str) -> float:
    """VACUUM (ANALYZE) a history just built: loaded in one go, it has never been vacuumed, and
    autovacuum would spend the first measured nights catching up on the whole load (the long
    history's three times longer), where a lived-in database is vacuumed as its data arrives."""
    started = time.monotonic()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("vacuum (analyze)")
    return time.monotonic() - started


def _state(name: str) -> dict[str, Any]:
    path = _state_file(name)
    return json.loads(path.read_text()) if path.exists() else {}


def measure_nightly(
    names: list[str], profile: Profile, target: Path, nightly_runs: int
) -> dict[str, Any]:
    """Deliver the next `nightly_runs` held-back days into each history, timing `studyin run`
    after each day, then the plain-SQL floor of the same day (bench/floor.py: the rows received
    since the newest received_at before the delivery, their touched keys rewritten) on the same
    database: the run as a multiple of the floor is the median of each day's own ratio. The
    floor runs after the nightly, so it finds the day's pages as warm as the run left them (a
    floor favoured by the cache makes the multiple larger, not smaller). One history is measured
    after the other, as a server holds one warehouse: alternating them day by day made each evict
    the other's pages from the OS cache (together they are larger than this machine's memory)."""
    from bench.floor import newest_received_at, prepare_floor

    increments = _Increments(profile)
    # The held-back days are about 11 million Python objects; a full garbage collection walking
    # them takes 5 s, and one fell inside a timed run at random. Frozen, the collector skips them
    # (`studyin run` from cron holds no such objects).
    gc.freeze()
    first = min(_state(n)["delivered"] for n in names)
    days = range(first + 1, first + nightly_runs + 1)
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        url = db.with_database(_admin(), name)
        if not _floor_prepared(url):
            log.info("floor %s: scratch tables built in %.0fs", name, prepare_floor(url))
        nights = []
        for day in days:
            state = _state(name)
            if day <= state["delivered"]:  # measured before the run was cut short
                nights.append(state["nights"][str(day)])
                log.info("nightly %s day %d: measured earlier, kept", name, day)
                continue
            since = newest_received_at(url)
            events = increments.day(day)
            with psycopg.connect(url) as conn:
                Tracker(conn, trust_received_at=True).track_batch(events)
            nights.append({**_night(url, target, since), "events": len(events)})
            del events
            stored = {**state.get("nights", {}), str(day): nights[-1]}
            _state_file(name).write_text(json.dumps({**state, "delivered": day, "nights": stored}))
            log.info(
                "nightly %s day %d: %s events, run %.1fs, floor %.2fs (x%.1f)",
                name,
                day,
                nights[-1]["events"],
                nights[-1]["run_s"],
                nights[-1]["floor"]["seconds"],
                nights[-1]["floor_multiple"],
            )
        results[name] = _nightly_figures(list(days), [n["events"] for n in nights], nights)
    return results


def _floor_prepared(url: str) -> bool:
    from bench.floor import prepared

    with psycopg.connect(url) as conn:
        return prepared(conn)


def _night(url: str, target: Path, since: datetime | None) -> dict[str, Any]:
    """One timed `studyin run` (its steps, dbt's parse and slowest nodes), then the day's floor."""
    from bench.floor import measure_floor

    ctx = RunContext(url=url, target_path=target)
    started = time.monotonic()
    steps = run_pipeline(ctx)
    run_s = time.monotonic() - started
    floor = asdict(measure_floor(url, since or datetime.min.replace(tzinfo=UTC)))
    nodes = ctx.dbt.node_seconds if ctx.dbt else {}
    slowest = dict(sorted(nodes.items(), key=lambda kv: -kv[1])[:SLOWEST_NODES])
    return {
        "run_s": run_s,
        "step_s": steps,
        "dbt_parse_s": ctx.dbt.parse_seconds if ctx.dbt else None,
        "dbt_nodes": len(nodes),
        "dbt_node_s_total": sum(nodes.values()),
        "slowest_nodes_s": slowest,
        "floor": floor,
        "floor_multiple": run_s / floor["seconds"],
    }


def _nightly_figures(
    days: list[int], sizes: list[int], nights: list[dict[str, Any]]
) -> dict[str, Any]:
    seconds = [n["run_s"] for n in nights]
    return {
        "held_back_days": days,
        "increment_events": sizes,
        "runs_s": seconds,
        "median_s": statistics.median(seconds),
        "step_s": [n["step_s"] for n in nights],
        "floor_runs_s": [n["floor"]["seconds"] for n in nights],
        "floor_median_s": statistics.median(n["floor"]["seconds"] for n in nights),
        "floor_multiples": [n["floor_multiple"] for n in nights],
        "floor_multiple": statistics.median(n["floor_multiple"] for n in nights),
        "nights": nights,
    }


def measure_full_rebuild(name: str, target: Path, repeat: int) -> dict[str, Any]:
    """`dbt run --full-refresh`: every model rebuilt from the whole history, in place (the same
    rows), beside the single-pass GROUP BY of bench/floor.py over the same events, alternated in
    the same run: the ratio of the two rates is the median of each repeat's own ratio. Data tests
    are not part of the figure: the nightly run and --full-checks time them. The slowest models
    of the last rebuild come from dbt's run_results.json."""
    from bench.floor import measure_group_by

    url = db.with_database(_admin(), name)
    with psycopg.connect(url) as conn:
        events = conn.execute("select count(*) from app.study_events").fetchone()[0]
    # a folder of its own: run without the nightly --vars, it would void the nightly runs'
    # partial parse in the shared target (their next parse would be a full one)
    target = target / "full_rebuild"
    seconds, group_by, ratios = [], [], []
    for _ in range(repeat):
        group_by.append(measure_group_by(url))
        started = time.monotonic()
        run_dbt(["run", "--full-refresh"], url=url, target_path=target)
        seconds.append(time.monotonic() - started)
        ratios.append(group_by[-1]["seconds"] / seconds[-1])
        log.info(
            "full rebuild %s: %.0fs; GROUP BY %.1fs; rebuild rate / GROUP BY rate %.3f",
            name,
            seconds[-1],
            group_by[-1]["seconds"],
            ratios[-1],
        )
    median = statistics.median(seconds)
    return {
        "events": events,
        "runs_s": seconds,
        "median_s": median,
        "events_per_s": events / median,
        "group_by_runs_s": [g["seconds"] for g in group_by],
        "group_by_events_per_s": statistics.median(g["events_per_s"] for g in group_by),
        "group_by_ratios": ratios,
        "group_by_ratio": statistics.median(ratios),
        "slowest_models_s": _slowest_models(target),
    }


def _slowest_models(target: Path) -> dict[str, float]:
    results = json.loads((target / "run_results.json").read_text())["results"]
    timed = sorted(results, key=lambda r: -r["execution_time"])[:SLOWEST_NODES]
    return {r["unique_id"]: r["execution_time"] for r in timed}


def measure_storage(name: str) -> dict[str, Any]:
    """Bytes per stored event of the long history, per schema, table and index."""
    from bench import storage

    return storage.measure(db.with_database(_admin(), name)).as_json()


def measure_dashboards(template: str, target: Path, calls: int) -> list[dict[str, Any]]:
    from bench.dashboards import compile_analyses, measure

    url = db.with_database(_admin(), template)
    queries = compile_analyses(url, target)
    return [asdict(q) for q in measure(url, queries, clients=8, calls_per_client=calls)]


def measure_jobs(name: str, target: Path) -> list[dict[str, Any]]:
    from bench.jobs import run_job

    url = db.with_database(_admin(), name)
    return [run_job(job, url, target / "plots") for job in ("readiness", "gaps")]


def ingest_figures(events: int, runs: list[IngestFigures]) -> dict[str, Any]:
    """The medians of the ingest runs; the ratio is the median of each run's own ratio."""
    return {
        "events": events,
        "runs_events_per_s": [r.events_per_s for r in runs],
        "runs_copy_rows_per_s": [r.copy_rows_per_s for r in runs],
        "runs_copy_ratio": [r.ratio for r in runs],
        "events_per_s": statistics.median(r.events_per_s for r in runs),
        "copy_rows_per_s": statistics.median(r.copy_rows_per_s for r in runs),
        "copy_events_per_s": statistics.median(r.copy_events_per_s for r in runs),
        "copy_ratio": statistics.median(r.ratio for r in runs),
        "runs_cpu_ratio": [r.cpu_ratio for r in runs],
    }


def machine() -> dict[str, Any]:
    with psycopg.connect(_admin()) as conn:
        server = conn.execute("show server_version").fetchone()[0]
        # the values of the settings the project chooses, as this server has them: a server
        # started before a change to db.SERVER_SETTINGS keeps its old values until restarted
        settings = dict(
            conn.execute(
                "select name, current_setting(name) from pg_settings where name = any(%s)",
                (list(db.SERVER_SETTINGS),),
            ).fetchall()
        )
    memory_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(memory_kb / 2**20, 1),
        "python": platform.python_version(),
        "postgres": server,
        "postgres_settings": settings,
        "platform": platform.platform(),
        "load_avg_at_start": os.getloadavg(),
    }


def verdict(op: str, limit: float, value: float) -> str:
    ok = {"<": value < limit, "<=": value <= limit, ">=": value >= limit}[op]
    return "met" if ok else "MISSED"


def table(profile: Profile, figures: dict[str, Any], info: dict[str, Any]) -> str:
    """The markdown of a run: the machine, each figure beside its target and verdict, and the
    nightly run's median seconds per step."""
    limits = targets(profile)
    rows = ["| figure | target | measured | verdict |", "| --- | --- | --- | --- |"]
    for label, key, value, fmt in _judged_figures(profile, figures):
        op, limit = limits[key]
        shown = f"{limit:,.0f}" if float(limit).is_integer() else f"{limit:.3f}"
        rows.append(f"| {label} | {op} {shown} | {value:{fmt}} | {verdict(op, limit, value)} |")
    head = (
        f"Profile `{profile.name}` ({profile.users:,} learners x {profile.days} days), "
        f"{info['cpus']} CPUs, {info['memory_gib']} GiB, PostgreSQL {info['postgres']}, "
        f"Python {info['python']}\n"
        + " ".join(f"{k}={v}" for k, v in info["postgres_settings"].items())
        + "\n\n"
    )
    notes = ""
    for key, label in (
        ("nightly", f"{profile.days} d"),
        ("nightly_short", f"{profile.short_days} d"),
    ):
        runs = figures.get(key, {}).get("step_s")
        if runs:
            medians = {step: statistics.median(r[step] for r in runs) for step in runs[0]}
            parts = " · ".join(f"{step} {sec:.1f}" for step, sec in medians.items())
            notes += f"\nNightly steps on {label} history, median s: {parts}\n"
    return head + "\n".join(rows) + "\n" + notes


def _judged_figures(
    profile: Profile, figures: dict[str, Any]
) -> Iterator[tuple[str, str, float, str]]:
    """(label, key in TARGETS, value, format) of every figure measured."""
    if "ingest" in figures:
        ingest = figures["ingest"]
        yield "ingest, events/s", "ingest_events_per_s", ingest["events_per_s"], ",.0f"
        yield (
            f"ingest / COPY floor of the same rows ({ingest['copy_rows_per_s']:,.0f} rows/s "
            f"= {ingest['copy_events_per_s']:,.0f} events/s)",
            "ingest_copy_ratio",
            ingest["copy_ratio"],
            ".3f",
        )
    if "nightly" in figures:
        night = figures["nightly"]
        yield (
            f"nightly run after 1 day, {profile.days} d history, s",
            "nightly_run_s",
            night["median_s"],
            ".1f",
        )
        yield (
            f"nightly / plain-SQL floor of the same day (floor {night['floor_median_s']:.2f} s)",
            "nightly_floor_multiple",
            night["floor_multiple"],
            ".1f",
        )
    if "cost_ratio" in figures:
        label = f"cost ratio {profile.days} d / {profile.short_days} d"
        yield label, "cost_ratio", figures["cost_ratio"]["ratio"], ".2f"
    if "full_rebuild" in figures:
        fr = figures["full_rebuild"]
        label = f"full rebuild, s ({fr['events_per_s']:,.0f} events/s)"
        yield label, "full_rebuild_s", fr["median_s"], ".1f"
        yield (
            f"full rebuild rate / single-pass GROUP BY rate "
            f"({fr['group_by_events_per_s']:,.0f} events/s)",
            "full_rebuild_group_by_ratio",
            fr["group_by_ratio"],
            ".3f",
        )
    for q in figures.get("dashboards", []):
        label = f"dashboard `{q['name']}` p95 ms (p50 {q['p50_ms']:.1f}, p99 {q['p99_ms']:.1f})"
        yield label, "dashboard_p95_ms", q["p95_ms"], ".1f"
    for job in figures.get("job_memory", []):
        label = f"job `{job['job']}` peak RSS MB ({job['wall_s']:.1f} s)"
        yield label, "job_peak_rss_mb", job["peak_rss_mb"], ",.0f"
    if "storage" in figures:
        storage = figures["storage"]
        label = f"bytes per stored event, whole database ({storage['events']:,} events)"
        yield label, "storage_bytes_per_event", storage["bytes_per_event"], ".1f"


def _sized(profile: Profile, users: int | None, days: int | None) -> Profile:
    """The profile at another size (--users, --days): the same code path, smaller. Its name
    carries the size, so its histories and cached held-back days (named after the profile) never
    replace the full profile's."""
    if users is None and days is None:
        return profile
    users = users or profile.users
    days = days or profile.days
    short_days = min(profile.short_days, max(1, days // 3))
    name = f"{profile.name}_{users}x{days}"
    return replace(
        profile, name=name, users=users, days=days, short_days=short_days, base=profile.name
    )


ALL = ("ingest", "nightly", "cost_ratio", "full_rebuild", "dashboards", "job_memory", "storage")
LONG_HISTORY_FIGURES = ALL[1:]  # every figure but ingest needs the history databases


def measure_on_histories(
    profile: Profile, wanted: list[str], target: Path, nightly_runs: int, repeat: int
) -> dict[str, Any]:
    """The figures measured on the profile's history databases (built or reused first): the
    nights on both histories, then the full rebuild, dashboards, job memory and storage on the
    long one."""
    figures: dict[str, Any] = {}
    if not set(LONG_HISTORY_FIGURES) & set(wanted):
        return figures
    # held-back days are needed only by the nightly figures: a run of the other figures
    # reuses any history (it once rebuilt a 36M-event history because too few days were left)
    timed_nights = nightly_runs if {"nightly", "cost_ratio"} & set(wanted) else 0
    long_history, short_history = build_histories(
        profile, target, "cost_ratio" in wanted, timed_nights
    )
    if "nightly" in wanted or "cost_ratio" in wanted:
        nightly = measure_nightly(
            [n for n in (long_history, short_history) if n], profile, target, nightly_runs
        )
        figures["nightly"] = nightly[long_history]
        if short_history:
            figures["nightly_short"] = nightly[short_history]
            figures["cost_ratio"] = {
                "long_median_s": nightly[long_history]["median_s"],
                "short_median_s": nightly[short_history]["median_s"],
                "ratio": nightly[long_history]["median_s"] / nightly[short_history]["median_s"],
            }
    if "full_rebuild" in wanted:
        figures["full_rebuild"] = measure_full_rebuild(long_history, target, repeat)
    if "dashboards" in wanted:
        figures["dashboards"] = measure_dashboards(long_history, target, profile.dashboard_calls)
    if "job_memory" in wanted:
        figures["job_memory"] = measure_jobs(long_history, target)
    if "storage" in wanted:
        figures["storage"] = measure_storage(long_history)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profile", choices=sorted(PROFILES), default="small")
    parser.add_argument(
        "--only", default=",".join(ALL), help=f"comma-separated subset of {', '.join(ALL)}"
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="full rebuilds per median (default 1)"
    )
    parser.add_argument(
        "--histories-only",
        action="store_true",
        help="build (or reuse) both history databases and stop: the slow part, done ahead",
    )
    parser.add_argument(
        "--ingest-runs", type=int, default=3, help="ingest runs per median (default 3)"
    )
    parser.add_argument(
        "--nightly-runs",
        type=int,
        default=3,
        help="held-back days delivered and timed per nightly median (default 3)",
    )
    parser.add_argument(
        "--users", type=int, help="learners instead of the profile's (a reduced run of its path)"
    )
    parser.add_argument(
        "--days",
        type=int,
        help="history days instead of the profile's; the short history keeps a third of them",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S"
    )
    profile = _sized(PROFILES[args.profile], args.users, args.days)
    wanted = [w for w in args.only.split(",") if w]
    unknown = set(wanted) - set(ALL)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    target = RESULTS / f"target-{profile.name}"
    info = machine()
    figures: dict[str, Any] = {}

    if args.histories_only:
        build_histories(profile, target, True, args.nightly_runs)
        return 0
    if "ingest" in wanted:
        from bench.ingest import run as ingest_run

        runs = [
            ingest_run(
                events=profile.ingest_events,
                chunk_size=50_000,
                users=2_000,
                connections=2,
                keep=False,
            )
            for _ in range(args.ingest_runs)
        ]
        figures["ingest"] = ingest_figures(profile.ingest_events, runs)
    figures.update(measure_on_histories(profile, wanted, target, args.nightly_runs, args.repeat))

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
