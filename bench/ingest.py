"""Throughput of the tracker's batch path (``Tracker.track_batch``) in events per second, against
the floor of a plain binary COPY of the same rows into the same tables, measured in the same run.

    .venv/bin/python -m bench.ingest --events 1000000
    .venv/bin/python -m bench.ingest --events 200000 --runs 3

Creates a database of its own on the configured server (STUDYIN_DATABASE_URL, else the embedded
one), migrates it, seeds a small reference set (learners, topics, questions, materials), generates
a realistic event mix in memory (sessions of a start, ~70 % question attempts, some material
interactions, page views and searches, heartbeats and an end; client IPs, a few properties;
random v4 event ids), runs a CHECKPOINT, then times ``track_batch`` over all of it, checks the row
counts, and drops the database. Event generation is not timed; everything the tracker does is
(validation, IP anonymising, COPY, the set-based inserts, session upkeep, commits).

Besides the wall-clock figure it prints the CPU the run cost per event: this process (all threads)
and, when the server runs on this machine and /proc is readable, every PostgreSQL backend the
tracker used. On a shared machine the wall-clock figure depends on what else is running (the load
average is printed); the CPU cost depends on it less, but on this virtual machine it still moves by
10-20 % between back-to-back runs of the same code.

The floor (``copy_floor``): what the tracker wrote is read back (every row of app.event_receipts,
app.study_events, app.question_attempts, app.material_interactions, app.exam_results and
app.study_sessions, as binary COPY data; not timed) and written unchanged with psycopg's binary
COPY (``copy ... from stdin (format binary)``) into a second database that was cloned from the
first one before the tracker ran (same schema, indexes, constraints, triggers and reference data;
empty event tables), after the same monthly partitions were made and a CHECKPOINT. The rows are
split by a hash of their key over as many connections as the tracker used (each copies its share
of every table in one transaction), so both sides have the same parallelism. The data is encoded
ahead, so the floor is the server's cost of storing the rows and nothing else: no client work
counts on its side, where the tracker's figure includes its Python work.
The ratio printed is the tracker's events/s over the floor's events/s (events whose rows the
COPY wrote per second; its rows/s is printed beside it): 1 would mean the tracker costs no more
than writing its output. On a machine shared with other work, take the median of several runs
(``--runs``): each run measures both sides back to back, so their ratio moves less than either
figure.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg

from python_jobs.ingest.events import (
    Event,
    GenericEvent,
    MaterialInteraction,
    QuestionAttempt,
    SessionEnd,
    SessionHeartbeat,
    SessionStart,
)
from python_jobs.ingest.tracker import Tracker
from python_jobs.warehouse import db, migrate

N_TOPICS = 12
N_QUESTIONS = 3000
N_MATERIALS = 600


@dataclass(frozen=True)
class Reference:
    users: list[uuid.UUID]
    questions: list[int]
    materials: list[int]


def seed_reference(conn: psycopg.Connection, n_users: int, seed: int = 7) -> Reference:
    """A minimal reference set: one system topic with subjects, questions, materials, learners."""
    rng = random.Random(seed)
    conn.execute(
        "insert into app.topics (id, parent_id, level, name, path, board_exam_weight) "
        "values (1, null, 'system', 'Cardiology', 'cardiology', 1)"
    )
    with conn.cursor() as cur:
        cur.executemany(
            "insert into app.topics (id, parent_id, level, name, path, board_exam_weight) "
            "values (%s, 1, 'subject', %s, %s, %s)",
            [(t, f"Subject {t}", f"cardiology/subject_{t}", 0.05) for t in range(2, N_TOPICS + 2)],
        )
        with cur.copy(
            "copy app.questions (id, topic_id, difficulty, correct_answer) from stdin"
        ) as cp:
            for q in range(1, N_QUESTIONS + 1):
                cp.write_row((q, 2 + q % N_TOPICS, round(rng.random(), 3), rng.choice("ABCDE")))
        with cur.copy("copy app.materials (id, topic_id, kind, est_minutes) from stdin") as cp:
            for m in range(1, N_MATERIALS + 1):
                cp.write_row((m, 2 + m % N_TOPICS, rng.choice(["chapter", "video"]), 12.5))
        users = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(n_users)]
        with cur.copy("copy app.users (id, timezone, cohort, exam_target) from stdin") as cp:
            for u in users:
                cp.write_row((u, "Europe/Berlin", "2026-fall", "step1"))
    conn.commit()
    return Reference(users, list(range(1, N_QUESTIONS + 1)), list(range(1, N_MATERIALS + 1)))


def generate_events(ref: Reference, n: int, seed: int = 11, days: int = 45) -> Iterator[Event]:
    """``n`` events: study sessions of real-looking learners over the last ``days`` days."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    start = now - timedelta(days=days)
    ips: dict[uuid.UUID, str] = {}
    for u in ref.users:
        if rng.random() < 0.8:
            octets = (
                rng.randrange(1, 224),
                rng.randrange(256),
                rng.randrange(256),
                rng.randrange(1, 255),
            )
            ips[u] = ".".join(map(str, octets))
        else:
            groups = (rng.randrange(65536), rng.randrange(65536), rng.randrange(1, 65536))
            ips[u] = "2001:db8:{:x}:{:x}::{:x}".format(*groups)
    produced = 0
    uuid4 = uuid.uuid4
    while produced < n:
        user = rng.choice(ref.users)
        ip = ips[user]
        session = uuid4()
        t = start + timedelta(seconds=rng.randrange(days * 86400 - 7200))
        length = rng.randint(10, 60)
        yield SessionStart(event_id=uuid4(), user_id=user, occurred_at=t, session_id=session, ip=ip)
        produced += 1
        for _ in range(length):
            if produced >= n - 1:
                break
            t += timedelta(seconds=rng.randint(5, 120))
            r = rng.random()
            if r < 0.78:
                selected = rng.choice("ABCDE") if rng.random() < 0.97 else None
                yield QuestionAttempt(
                    event_id=uuid4(),
                    user_id=user,
                    occurred_at=t,
                    session_id=session,
                    ip=ip,
                    question_id=rng.choice(ref.questions),
                    selected_answer=selected,
                    attempt_number=1 if rng.random() < 0.85 else 2,
                    time_to_answer_ms=rng.randint(3000, 180000),
                    confidence_level=rng.randint(1, 5) if rng.random() < 0.6 else None,
                    hint_used=rng.random() < 0.1,
                )
            elif r < 0.89:
                kind = rng.choice(["open", "progress", "progress", "complete", "highlight", "note"])
                yield MaterialInteraction(
                    event_id=uuid4(),
                    user_id=user,
                    occurred_at=t,
                    session_id=session,
                    ip=ip,
                    material_id=rng.choice(ref.materials),
                    interaction_type=kind,
                    progress=round(rng.random(), 4) if kind == "progress" else None,
                    active_seconds=rng.randint(0, 900),
                )
            elif r < 0.95:
                yield SessionHeartbeat(
                    event_id=uuid4(), user_id=user, occurred_at=t, session_id=session, ip=ip
                )
            else:
                event_type = rng.choice(["page_view", "search", "ai_coach_message"])
                # Keys declared for each type (seeds/event_type_properties.csv).
                if event_type == "page_view":
                    props = {"screen": rng.choice(["dashboard", "reader", "question_block"])}
                elif event_type == "search":
                    props = {"query": f"topic {rng.randrange(100)}", "results": rng.randrange(30)}
                else:
                    props = {"topic_id": rng.randrange(100), "chars": rng.randint(20, 400)}
                yield GenericEvent(
                    event_type=event_type,
                    event_id=uuid4(),
                    user_id=user,
                    occurred_at=t,
                    session_id=session,
                    ip=ip,
                    properties=props,
                )
            produced += 1
        t += timedelta(seconds=rng.randint(5, 60))
        yield SessionEnd(event_id=uuid4(), user_id=user, occurred_at=t, session_id=session, ip=ip)
        produced += 1


def _backend_cpu(pid: int) -> float | None:
    """Seconds of CPU a local backend has used, or None when it cannot be read."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


class MeteredTracker(Tracker):
    """A Tracker that adds up the CPU its worker backends used (read just before they close)."""

    backend_seconds: float = 0.0
    metered: bool = True

    def _open_worker(self) -> psycopg.Connection:
        conn = super()._open_worker()
        pid = conn.info.backend_pid
        start = _backend_cpu(pid)
        close = conn.close

        def metered_close() -> None:
            end = _backend_cpu(pid)
            if start is None or end is None:
                self.metered = False
            else:
                self.backend_seconds += end - start
            close()

        conn.close = metered_close  # type: ignore[method-assign]
        return conn


def checkpoint(conn: psycopg.Connection) -> None:
    """Write out every dirty buffer before the timed run, so that each run starts from the same
    state and pays for its own writes, not for what earlier work on the server (a history just
    built) left in shared buffers for the run's backends to evict. Needs superuser or
    pg_checkpoint; without either the run goes on and says so."""
    try:
        conn.execute("checkpoint")
    except psycopg.errors.InsufficientPrivilege:
        conn.rollback()
        print("note: no CHECKPOINT before the timed run (needs superuser or pg_checkpoint)")
    else:
        conn.commit()


FLOOR_TABLES = (
    "event_receipts",
    "study_events",
    "question_attempts",
    "material_interactions",
    "exam_results",
    "study_sessions",
)
"""Every table the tracker writes for accepted events (rejected_events stays empty here)."""


@dataclass
class TableData:
    """What the tracker wrote into one table, as binary COPY data: one block per connection of
    the floor (rows split by a hash of their key)."""

    table: str
    columns: list[str]
    rows: int
    shares: list[bytes]


@dataclass(frozen=True)
class IngestFigures:
    """One run: the tracker's throughput, the COPY floor of the same rows, and their ratio."""

    events: int
    events_per_s: float
    copy_rows: int
    copy_rows_per_s: float
    copy_events_per_s: float
    cpu_us_per_event: float | None = None  # the tracker: client and server backends
    copy_cpu_us_per_event: float | None = None  # the floor: server backends (no client work)

    @property
    def ratio(self) -> float:
        """The tracker's events/s over the floor's: 1/3 is issue 18's target."""
        return self.events_per_s / self.copy_events_per_s

    @property
    def cpu_ratio(self) -> float | None:
        """The floor's CPU per event over the tracker's: what the ratio would be with the
        machine to themselves (less moved by other work on a shared machine)."""
        if self.cpu_us_per_event is None or self.copy_cpu_us_per_event is None:
            return None
        return self.copy_cpu_us_per_event / self.cpu_us_per_event


def written_rows(conn: psycopg.Connection, parts: int) -> list[TableData]:
    """Every row the tracker wrote into ``FLOOR_TABLES``, as binary COPY data in ``parts``
    blocks per table."""
    tables = []
    for table in FLOOR_TABLES:
        columns = [
            r[0]
            for r in conn.execute(
                "select attname from pg_attribute where attrelid = %s::regclass "
                "and attnum > 0 and not attisdropped order by attnum",
                (f"app.{table}",),
            )
        ]
        key = "id" if table == "study_sessions" else "event_id"
        shares = []
        rows = 0
        with conn.cursor() as cur:
            for part in range(parts):
                query = (
                    f"select {', '.join(columns)} from app.{table} "
                    f"where abs(hashtext({key}::text) % {parts}) = {part}"
                )
                with cur.copy(f"copy ({query}) to stdout (format binary)") as copy:
                    shares.append(b"".join(bytes(block) for block in copy))
                rows += cur.rowcount
        tables.append(TableData(table, columns, rows, shares))
    conn.commit()
    return tables


def _copy_share(conn: psycopg.Connection, tables: list[TableData], part: int) -> None:
    """One connection's share of the floor: one COPY per table, all in one transaction."""
    with conn.cursor() as cur:
        for t in tables:
            statement = f"copy app.{t.table} ({', '.join(t.columns)}) from stdin (format binary)"
            with cur.copy(statement) as copy:
                copy.write(t.shares[part])
    conn.commit()


def copy_floor(url: str, tables: list[TableData]) -> tuple[float, float | None]:
    """Seconds to write ``tables`` into the (empty) event tables of ``url`` with binary COPY, one
    connection per share, all at once; and the CPU seconds their backends used (None when not
    readable)."""
    n = len(tables[0].shares)
    conns = [psycopg.connect(url) for _ in range(n)]
    try:
        pids = [c.info.backend_pid for c in conns]
        cpu_before = [_backend_cpu(p) for p in pids]
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=n) as pool:
            for future in [pool.submit(_copy_share, c, tables, i) for i, c in enumerate(conns)]:
                future.result()
        elapsed = time.perf_counter() - started
        cpu_after = [_backend_cpu(p) for p in pids]
    finally:
        for c in conns:
            c.close()
    if None in cpu_before or None in cpu_after:
        return elapsed, None
    return elapsed, sum(cpu_after) - sum(cpu_before)  # type: ignore[arg-type]


def _prepare_floor_database(url: str, earliest: datetime) -> None:
    """Make the monthly partitions the tracker made (it makes them as it goes), then CHECKPOINT."""
    with psycopg.connect(url) as conn:
        conn.execute("select app.ensure_study_event_partitions(%s, 3)", (earliest,))
        conn.commit()
        checkpoint(conn)


def _clone_database(server: str, source: str, name: str) -> None:
    """``name`` as an exact copy of ``source`` (nobody may be connected to ``source``)."""
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'create database "{name}" template "{source}"')


def run(events: int, chunk_size: int, users: int, connections: int, keep: bool) -> IngestFigures:
    server = db.with_database(db.ensure_server(), "postgres")
    name = f"studyin_bench_ingest_{os.getpid()}"
    floor_name = f"{name}_copy"
    url = db.with_database(server, name)
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'create database "{name}"')
    try:
        migrate.upgrade(url)
        with psycopg.connect(url) as conn:
            ref = seed_reference(conn, users)
        _clone_database(server, name, floor_name)  # the floor's database: the same state
        with psycopg.connect(url) as conn:
            print(f"generating {events:,} events ...", flush=True)
            batch = list(generate_events(ref, events))
            mix: dict[str, int] = {}
            for e in batch:
                mix[e.event_type] = mix.get(e.event_type, 0) + 1
            print("mix: " + ", ".join(f"{k} {v / len(batch):.1%}" for k, v in sorted(mix.items())))
            rate, cpu = _time_tracker(conn, batch, chunk_size, connections)
            tables = written_rows(conn, max(1, connections))
        earliest = min(e.occurred_at for e in batch)
        del batch
        floor_url = db.with_database(server, floor_name)
        _prepare_floor_database(floor_url, earliest)
        floor_seconds, floor_cpu = copy_floor(floor_url, tables)
        rows = sum(t.rows for t in tables)
        figures = IngestFigures(
            events=events,
            events_per_s=rate,
            copy_rows=rows,
            copy_rows_per_s=rows / floor_seconds,
            copy_events_per_s=events / floor_seconds,
            cpu_us_per_event=cpu,
            copy_cpu_us_per_event=None if floor_cpu is None else floor_cpu / events * 1e6,
        )
        print(
            f"COPY FLOOR: {figures.copy_rows_per_s:,.0f} rows/s = "
            f"{figures.copy_events_per_s:,.0f} events/s ({rows:,} rows: "
            + ", ".join(f"{t.table} {t.rows:,}" for t in tables)
            + f"; {floor_seconds:.2f} s on {max(1, connections)} connection(s))"
        )
        if figures.copy_cpu_us_per_event is not None:
            print(
                "COPY FLOOR CPU per event: PostgreSQL backends "
                f"{figures.copy_cpu_us_per_event:.1f} us"
            )
        line = f"TRACKER / COPY FLOOR: {figures.ratio:.3f} (target >= 1/3)"
        if figures.cpu_ratio is not None:
            line += f"; by CPU per event {figures.cpu_ratio:.3f}"
        print(line)
        return figures
    finally:
        if keep:
            print(f"kept databases {url} and {floor_name}")
        else:
            with psycopg.connect(server, autocommit=True) as admin:
                admin.execute(f'drop database if exists "{name}" with (force)')
                admin.execute(f'drop database if exists "{floor_name}" with (force)')


def _time_tracker(
    conn: psycopg.Connection, batch: list[Event], chunk_size: int, connections: int
) -> tuple[float, float | None]:
    """Events per second of ``track_batch`` over ``batch`` and its CPU per event in us (client
    and server; None when the server's is not readable); prints them."""
    checkpoint(conn)
    tracker = MeteredTracker(conn, batch_connections=connections)
    own_pid = conn.info.backend_pid
    own_start = _backend_cpu(own_pid)
    load_before = os.getloadavg()[0]
    cpu_started = time.process_time()
    started = time.perf_counter()
    result = tracker.track_batch(batch, chunk_size=chunk_size)
    elapsed = time.perf_counter() - started
    client_seconds = time.process_time() - cpu_started
    own_end = _backend_cpu(own_pid)
    load_after = os.getloadavg()[0]
    counts = conn.execute(
        "select (select count(*) from app.study_events), "
        "(select count(*) from app.question_attempts), "
        "(select count(*) from app.study_sessions)"
    ).fetchone()
    conn.commit()
    assert counts is not None
    assert result.accepted == len(batch) == counts[0], (result, counts)
    n = len(batch)
    rate = n / elapsed
    print(
        f"stored {counts[0]:,} events ({counts[1]:,} question attempts, "
        f"{counts[2]:,} sessions); duplicates {result.duplicates}, rejected {result.rejected}"
    )
    print(
        f"TRACKER BATCH THROUGHPUT: {rate:,.0f} events/s "
        f"({n:,} events in {elapsed:.1f} s; chunk {chunk_size:,}, "
        f"{connections} worker connection(s); "
        f"load average {load_before:.2f} -> {load_after:.2f} on {os.cpu_count()} CPUs)"
    )
    line = f"CPU per event: client {client_seconds / n * 1e6:.1f} us"
    cpu = None
    if tracker.metered and own_start is not None and own_end is not None:
        server_seconds = tracker.backend_seconds + own_end - own_start
        cpu = (client_seconds + server_seconds) / n * 1e6
        line += f", PostgreSQL backends {server_seconds / n * 1e6:.1f} us (total {cpu:.1f} us)"
    else:
        line += " (server CPU not readable from here)"
    print(line)
    return rate, cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--chunk-size", type=int, default=50_000)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument(
        "--connections", type=int, default=2, help="Tracker(batch_connections=...): 0 = inline"
    )
    parser.add_argument("--runs", type=int, default=1, help="runs (default 1); medians printed")
    parser.add_argument("--keep", action="store_true", help="keep the databases for inspection")
    args = parser.parse_args(argv)
    runs = [
        run(args.events, args.chunk_size, args.users, args.connections, args.keep)
        for _ in range(args.runs)
    ]
    if len(runs) > 1:
        print(
            f"MEDIANS of {len(runs)} runs: tracker "
            f"{statistics.median(r.events_per_s for r in runs):,.0f} events/s, COPY floor "
            f"{statistics.median(r.copy_rows_per_s for r in runs):,.0f} rows/s "
            f"({statistics.median(r.copy_events_per_s for r in runs):,.0f} events/s), ratio "
            f"{statistics.median(r.ratio for r in runs):.3f} "
            f"(runs: {', '.join(f'{r.ratio:.3f}' for r in runs)})"
        )
        cpu_ratios = [r.cpu_ratio for r in runs if r.cpu_ratio is not None]
        if cpu_ratios:
            print(f"median ratio by CPU per event: {statistics.median(cpu_ratios):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
