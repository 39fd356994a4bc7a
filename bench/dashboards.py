"""Latency of the BI queries in analyses/ under concurrent clients.

Each analysis is compiled by dbt (refs resolved) and run with parameters drawn from the data
(a random learner, cohort or topic per call), as a dashboard would. Clients are threads, each with
its own connection; the figures are per query: p50, p95, p99 in milliseconds.
"""

from __future__ import annotations

import random
import re
import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from python_jobs.dbt import run_dbt

PARAM = re.compile(r"%\((\w+)\)s")


@dataclass(frozen=True)
class QueryLatency:
    name: str
    calls: int
    p50_ms: float
    p95_ms: float
    p99_ms: float


def compile_analyses(url: str, target_path: Path) -> dict[str, str]:
    run_dbt(["compile", "--select", "path:analyses"], url=url, target_path=target_path)
    compiled = target_path / "compiled" / "studyin" / "analyses"
    return {p.stem: p.read_text() for p in sorted(compiled.glob("*.sql"))}


def parameter_pools(conn: psycopg.Connection) -> dict[str, list[object]]:
    """Values dashboards would pass: real learners, cohorts and topics."""
    return {
        "user_id": [r[0] for r in conn.execute("select id from app.users order by id")],
        "cohort": [r[0] for r in conn.execute("select distinct cohort from app.users order by 1")],
        "topic_id": [
            r[0] for r in conn.execute("select id from app.topics where level = 'subtopic'")
        ],
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def measure(
    url: str, queries: dict[str, str], clients: int = 8, calls_per_client: int = 50, seed: int = 0
) -> list[QueryLatency]:
    with psycopg.connect(url) as conn:
        pools = parameter_pools(conn)
    results: list[QueryLatency] = []
    for name, text in queries.items():
        needed = sorted(set(PARAM.findall(text)))
        timings: list[float] = []
        lock = threading.Lock()

        def client(index: int, text: str = text, needed: list[str] = needed) -> None:
            rng = random.Random(seed * 1000 + index)
            local: list[float] = []
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("select 1")
                for _ in range(calls_per_client):
                    params = {key: rng.choice(pools[key]) for key in needed}
                    started = time.perf_counter()
                    conn.execute(text, params).fetchall()
                    local.append((time.perf_counter() - started) * 1000)
            with lock:
                timings.extend(local)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        results.append(
            QueryLatency(
                name=name,
                calls=len(timings),
                p50_ms=statistics.median(timings),
                p95_ms=percentile(timings, 0.95),
                p99_ms=percentile(timings, 0.99),
            )
        )
    return results
