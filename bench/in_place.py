"""History databases built in place, one simulated day at a time (the `xlarge` profile).

The other profiles feed their whole history to the tracker in one stream and keep the held-back
days in memory (one pickle). At 50,000 learners a day is about two million events, and the
histories (30 and 10 days, about 60 and 20 million events) must fit this disk side by side; so
here nothing is ever copied and no more than one day is held at a time:

  * one simulation of `days + held_back_days` days, run as two processes over halves of the
    learners (`SHARDS`), streams its events, sorted by received_at; each process writes a day
    to a file at most two days ahead of the delivery, and the day's files are merged;
  * each history day (the events received in that 24-hour span) goes through the tracker into the
    long history, and for the last `short_days` days into the short one too, and is committed
    before the next day is delivered, as a tracker receives a day of uploads; the progress file
    then lets a build cut short resume after its last delivered day;
  * each held-back day after the history is written to its own file under bench/results/cache,
    in chunks of 50,000 events (`day_events` reads it back one chunk at a time), for the
    measurement to deliver one day at a time into each history;
  * at the cutoff each history gets its first full pipeline run and a VACUUM (ANALYZE), like the
    one-stream build (bench/run.py), and the same state file.

`python -m bench.run --profile xlarge --users 300 --days 6` runs the same code path at a reduced
size; the log line of each day gives its events, seconds and the long history's size, from which
the full build's time and disk are estimated (see `estimate`).
"""

from __future__ import annotations

import heapq
import json
import logging
import math
import multiprocessing as mp
import pickle
import queue
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from python_jobs.ingest.events import Event
from python_jobs.ingest.tracker import Tracker

log = logging.getLogger("bench.in_place")
CHUNK = 50_000  # events per pickled chunk of a held-back day (about 100 MB of objects)


@dataclass(frozen=True)
class DayLoad:
    """One history day delivered: its events (sent to the tracker: a day delivered again after a
    resume counts all of them), seconds and the long history's size after it."""

    day: int
    events: int
    seconds: float
    database_bytes: int


def day_file(cache: Path, profile_name: str, day: int) -> Path:
    return cache / f"bench_{profile_name}.day{day}.pickle"


def day_events(cache: Path, profile_name: str, day: int) -> Iterator[Event]:
    """The events of held-back day `day` (1-based), read back one chunk at a time."""
    return _chunks(day_file(cache, profile_name, day))


def _database_bytes(url: str) -> int:
    with psycopg.connect(url) as conn:
        return int(conn.execute("select pg_database_size(current_database())").fetchone()[0])


class _Days:
    """The simulation's stream cut into days of arrival: `next_day(until)` yields the events
    received up to `until` (and after the previous call's bound), without reading past them."""

    def __init__(self, events: Iterator[Event]) -> None:
        self._events = events
        self._pending: Event | None = None
        self.exhausted = False

    def next_day(self, until: datetime) -> Iterator[Event]:
        if self._pending is not None:
            if self._pending.received_at > until:
                return
            yield self._pending
            self._pending = None
        for event in self._events:
            if event.received_at > until:
                self._pending = event
                return
            yield event
        self.exhausted = True


SHARDS = 2  # simulation processes: learners are independent, and a machine here has two cores


def build_by_day(
    profile: Any,
    urls: dict[str, str | None],
    end: datetime,
    cache: Path,
    seed: int,
    progress: Path,
    done: list[DayLoad] | None = None,
) -> list[DayLoad]:
    """Deliver the history into urls["long"] (and urls["short"], when given) one day at a time,
    and write each held-back day to its file; the per-day loads of the long history.

    The simulation runs in SHARDS processes, each over a share of the learners, a day ahead of
    the delivery; each hands its day to the delivery as a file (`_shard_file`), and the day's
    shards are merged by received_at. After each day the loads so far are written to `progress`
    (with `end`), and a build given them (`done`) resumes after the last one: the shards simulate
    the delivered days again without writing them, and the day a crash interrupted is delivered
    again (the tracker ignores the events it already stored)."""
    loads = list(done or [])
    held_back = [day_file(cache, profile.name, d) for d in range(1, profile.held_back_days + 1)]
    if len(loads) == profile.days and all(f.exists() for f in held_back):
        return loads  # cut short after the simulation: the first runs are what is left
    if not loads:
        from python_jobs.simulation.simulator import generate, prepare

        sim = generate(profile.users, profile.days + profile.held_back_days, seed, end=end)
        for url in urls.values():
            if url:
                with psycopg.connect(url) as conn:
                    prepare(conn, sim)
        del sim
    cutoff = end - timedelta(days=profile.held_back_days)
    short_from = cutoff - timedelta(days=profile.short_days)
    first = len(loads) + 1
    context = mp.get_context("spawn")
    handoffs = [context.Queue(maxsize=1) for _ in range(SHARDS)]
    workers = [
        context.Process(
            target=_simulate_shard,
            args=(profile, end, seed, (k, SHARDS), cache, first, handoffs[k]),
            name=f"simulation-{k}",
        )
        for k in range(SHARDS)
    ]
    for worker in workers:
        worker.start()
    try:
        for day in range(first, profile.days + 1):
            started = time.monotonic()
            files = _handed(workers, handoffs, day, cache, profile.name)
            if day == first and done:  # the wait was the delivered days simulated again
                started = time.monotonic()
            loads.append(_deliver_day(day, _merged(files), urls, short_from, started))
            for f in files:
                f.unlink()
            _write_progress(progress, end, loads)
            log.info(
                "history day %d/%d: %s events in %.1fs, long history %.2f GB",
                day,
                profile.days,
                f"{loads[-1].events:,}",
                loads[-1].seconds,
                loads[-1].database_bytes / 1e9,
            )
        for day in range(1, profile.held_back_days + 1):
            files = _handed(workers, handoffs, -day, cache, profile.name)
            _write_day(day_file(cache, profile.name, day), _merged(files))
            for f in files:
                f.unlink()
        for worker in workers:
            worker.join()
            if worker.exitcode:
                raise RuntimeError(f"{worker.name} failed (exit {worker.exitcode})")
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.terminate()
    return loads


def _write_progress(progress: Path, end: datetime, loads: list[DayLoad]) -> None:
    written = progress.with_suffix(".partial")
    written.write_text(json.dumps({"end": end.isoformat(), "loads": [asdict(d) for d in loads]}))
    written.replace(progress)


def resumable(progress: Path) -> tuple[datetime, list[DayLoad]]:
    """The `end` and the delivered days' loads of an interrupted build's progress file."""
    state = json.loads(progress.read_text())
    return datetime.fromisoformat(state["end"]), [DayLoad(**row) for row in state["loads"]]


def _shard_file(cache: Path, profile_name: str, day: int, shard: int) -> Path:
    """A shard's events of history day `day`, or of held-back day -`day`."""
    kind = f"history{day}" if day > 0 else f"held{-day}"
    return cache / f"bench_{profile_name}.{kind}.shard{shard}.pickle"


def _simulate_shard(
    profile: Any,
    end: datetime,
    seed: int,
    shard: tuple[int, int],
    cache: Path,
    first: int,
    handoff: Any,
) -> None:
    """One simulation process: its learners' events, cut into days of arrival; each day from
    `first` on written to its shard file and its number handed over (one waits in the queue)."""
    from python_jobs.simulation.simulator import generate

    sim = generate(
        profile.users,
        profile.days + profile.held_back_days,
        seed,
        end=end,
        attempt_truth=False,
        shard=shard,
    )
    cutoff = end - timedelta(days=profile.held_back_days)
    days = _Days(sim.events())
    bounds = [(d, cutoff - timedelta(days=profile.days - d)) for d in range(1, profile.days + 1)]
    bounds += [(-d, cutoff + timedelta(days=d)) for d in range(1, profile.held_back_days + 1)]
    for day, until in bounds:
        events = days.next_day(until)
        if 0 < day < first:
            for _ in events:  # delivered before a resume: simulated again, not written
                pass
            continue
        _write_day(_shard_file(cache, profile.name, day, shard[0]), events)
        while True:  # the delivery takes it when done with the day before
            try:
                handoff.put(day, timeout=5)
                break
            except queue.Full:
                if not _parent_alive():
                    return


def _parent_alive() -> bool:
    parent = mp.parent_process()
    return parent is None or parent.is_alive()


def _handed(
    workers: list[Any], handoffs: list[Any], day: int, cache: Path, profile_name: str
) -> list[Path]:
    """Wait for every shard to hand over `day`; their files. Fails if a shard died instead."""
    files = []
    for k, (worker, handoff) in enumerate(zip(workers, handoffs, strict=True)):
        while True:
            try:
                handed = handoff.get(timeout=5)
                break
            except queue.Empty:
                if not worker.is_alive():
                    raise RuntimeError(f"{worker.name} stopped (exit {worker.exitcode})") from None
        if handed != day:
            raise RuntimeError(f"{worker.name} handed day {handed}, expected {day}")
        files.append(_shard_file(cache, profile_name, day, k))
    return files


def _chunks(path: Path) -> Iterator[Event]:
    with path.open("rb") as f:
        while True:
            try:
                chunk: list[Event] = pickle.load(f)
            except EOFError:
                return
            yield from chunk


def _merged(files: list[Path]) -> Iterator[Event]:
    """The shards' events of one day, in order of received_at (each file is in that order)."""
    return heapq.merge(*(_chunks(f) for f in files), key=lambda e: e.received_at)


def _deliver_day(
    day: int,
    events: Iterator[Event],
    urls: dict[str, str | None],
    short_from: datetime,
    started: float,
) -> DayLoad:
    """One day's events through the tracker: into the long history, and the part received after
    short_from into the short one (one day of events held, to feed both); its seconds count from
    `started`, so they include the wait for the simulation."""
    batch = list(events)
    with psycopg.connect(urls["long"]) as conn:
        Tracker(conn, trust_received_at=True).track_batch(batch)
    short_url = urls.get("short")
    recent = [e for e in batch if e.received_at > short_from] if short_url else []
    if short_url and recent:
        with psycopg.connect(short_url) as conn:
            Tracker(conn, trust_received_at=True).track_batch(recent)
    seconds = time.monotonic() - started
    return DayLoad(day, len(batch), seconds, _database_bytes(urls["long"]))


def _write_day(path: Path, events: Iterator[Event]) -> int:
    """Pickle `events` to `path` in chunks; the file appears when complete."""
    count = 0
    partial = path.with_suffix(".partial")
    with partial.open("wb") as f:
        chunk: list[Event] = []
        for event in events:
            chunk.append(event)
            if len(chunk) >= CHUNK:
                pickle.dump(chunk, f, protocol=pickle.HIGHEST_PROTOCOL)
                count += len(chunk)
                chunk = []
        pickle.dump(chunk, f, protocol=pickle.HIGHEST_PROTOCOL)
        count += len(chunk)
    partial.replace(path)
    return count


def estimate(
    loads: list[DayLoad], users: int, days: int, full_users: int, short_days: int = 0
) -> dict[str, Any]:
    """The full profile's build time and disk, scaled from a reduced build's per-day loads: the
    events per learner-day, seconds per event and bytes per event of its last half of days (the
    first days of a simulation start from empty learners and an empty database). The seconds
    include the simulation and the short history's share of each day; the bytes are the event
    tables' (the warehouse is built after the history), for the long history and, when
    `short_days` is given, the short one beside it."""
    steady = loads[len(loads) // 2 :] or loads
    events = sum(d.events for d in steady)
    seconds = sum(d.seconds for d in steady)
    grown = steady[-1].database_bytes - (
        loads[len(loads) // 2 - 1].database_bytes if len(loads) > 1 else 0
    )
    per_learner_day = events / (users * len(steady))
    full_events = per_learner_day * full_users * days
    return {
        "measured_users": users,
        "measured_days": len(loads),
        "events_per_learner_day": per_learner_day,
        "events_per_s": events / seconds if seconds else math.nan,
        "bytes_per_event": grown / events if events else math.nan,
        "full_events": full_events,
        "full_delivery_hours": full_events / (events / seconds) / 3600 if seconds else math.nan,
        "full_database_gb": full_events * grown / events / 1e9 if events else math.nan,
        "full_with_short_gb": (
            full_events * (1 + short_days / days) * grown / events / 1e9 if events else math.nan
        ),
    }


def state_after_build(seconds: float, step_s: dict[str, float], vacuum_s: float) -> str:
    return json.dumps(
        {"delivered": 0, "first_run_s": seconds, "first_run_step_s": step_s, "vacuum_s": vacuum_s}
    )


def now_minute() -> datetime:
    return datetime.now(UTC).replace(second=0, microsecond=0)
