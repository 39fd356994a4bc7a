"""Latency of the BI queries in analyses/ under concurrent clients.

Each analysis is compiled by dbt (refs resolved) and run with parameters drawn from the data
(a random learner, cohort or topic per call), as a dashboard would. Clients are threads, each with
its own connection; the figures are per query: p50, p95, p99 in milliseconds.
"""

from __future__ import annotations

import random
import re
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psycopg

from python_jobs.warehouse.dbt import run_dbt

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


def _client(
    url: str,
    text: str,
    pools: dict[str, list[object]],
    calls: int,
    seed: int,
    set_role: bool,
    warmup: str | None = None,
) -> list[float]:
    """One dashboard user: its own connection as reporter (SET ROLE, or a BI login of `url`),
    `warmup` run once untimed when given, then `calls` timed calls in a row."""
    needed = sorted(set(PARAM.findall(text)))
    rng = random.Random(seed)
    timings: list[float] = []
    with psycopg.connect(url, autocommit=True) as conn:
        if set_role:
            conn.execute("set role reporter")  # as a BI tool: marts only
        if warmup:
            conn.execute(warmup).fetchall()
        for _ in range(calls):
            params = {key: rng.choice(pools[key]) for key in needed}
            started = time.perf_counter()
            conn.execute(text, params).fetchall()
            timings.append((time.perf_counter() - started) * 1000)
    return timings


def measure(
    url: str,
    queries: dict[str, str],
    clients: int = 8,
    calls_per_client: int = 50,
    seed: int = 0,
    bi_url: str | None = None,
    warmup: str | None = None,
) -> list[QueryLatency]:
    """Per query, `clients` threads of `calls_per_client` calls: as `bi_url` (a BI login) when
    given, else as `url`'s user after SET ROLE reporter. `url` draws the parameters. `warmup`, a
    statement each client runs once untimed on its new connection, stands for a BI tool's pool of
    open connections (on Citus: the coordinator's connections to the workers, opened by a
    session's first query that reaches each worker and kept for the session)."""
    with psycopg.connect(url) as conn:
        pools = parameter_pools(conn)
    results: list[QueryLatency] = []
    with ThreadPoolExecutor(max_workers=clients) as pool:
        for name, text in queries.items():
            futures = [
                pool.submit(
                    _client,
                    bi_url or url,
                    text,
                    pools,
                    calls_per_client,
                    seed * 1000 + i,
                    bi_url is None,
                    warmup,
                )
                for i in range(clients)
            ]
            timings = [t for future in futures for t in future.result()]
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
