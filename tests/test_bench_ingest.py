"""The ingest benchmark's floor: a plain binary COPY of exactly the rows the tracker wrote.

The floor is only a fair yardstick if it writes the same rows into the same tables: every row of
every event table, once, with the same values. These tests check that against a real server, and
that the reported ratio is the median of each run's own ratio.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import psycopg
import pytest

from bench.ingest import (
    FLOOR_TABLES,
    IngestFigures,
    _prepare_floor_database,
    copy_floor,
    generate_events,
    seed_reference,
    written_rows,
)
from bench.run import ingest_figures
from python_jobs.ingest.events import ExamResult
from python_jobs.ingest.tracker import Tracker


def _table_digest(conn: psycopg.Connection, table: str) -> tuple[int, str]:
    """Row count and an order-independent digest of every value of ``table``."""
    row = conn.execute(
        f"select count(*), md5(coalesce(string_agg(t::text, '|' order by t::text), '')) "
        f"from app.{table} as t"
    ).fetchone()
    assert row is not None
    return row[0], row[1]


@pytest.mark.parametrize("connections", [1, 3])
def test_the_floor_copies_exactly_the_rows_the_tracker_wrote(
    database_factory: Callable[..., str], connections: int
) -> None:
    source, floor = database_factory(), database_factory()
    with psycopg.connect(floor) as conn:
        seed_reference(conn, 40)  # the same reference data (seeded), the event tables empty
    with psycopg.connect(source) as conn:
        ref = seed_reference(conn, 40)
        events = list(generate_events(ref, 3000))
        events.append(
            ExamResult(
                event_id=uuid.uuid4(),
                user_id=ref.users[0],
                occurred_at=events[0].occurred_at,
                exam_kind="board",
                scaled_score=215,
                passed=True,
            )
        )
        result = Tracker(conn, parallel_from=1).track_batch(events, chunk_size=1000)
        assert result.accepted == len(events)
        tables = written_rows(conn, connections)
        expected = {t: _table_digest(conn, t) for t in FLOOR_TABLES}
        conn.commit()
    assert [t.table for t in tables] == list(FLOOR_TABLES)
    assert all(len(t.shares) == connections for t in tables)
    assert {t.table: t.rows for t in tables} == {t: n for t, (n, _) in expected.items()}
    assert expected["study_events"][0] == len(events)
    assert expected["exam_results"][0] == 1

    _prepare_floor_database(floor, min(e.occurred_at for e in events))
    seconds, _ = copy_floor(floor, tables)
    assert seconds > 0
    with psycopg.connect(floor) as conn:
        assert {t: _table_digest(conn, t) for t in FLOOR_TABLES} == expected


def test_the_reported_ratio_is_the_median_of_each_runs_ratio() -> None:
    runs = [
        IngestFigures(1000, 100.0, 3000, 900.0, 300.0, 20.0, 10.0),  # ratio 1/3
        IngestFigures(1000, 50.0, 3000, 300.0, 100.0, 25.0, 10.0),  # ratio 1/2
        IngestFigures(1000, 40.0, 3000, 600.0, 200.0, None, 10.0),  # ratio 1/5
    ]
    assert [r.ratio for r in runs] == pytest.approx([1 / 3, 1 / 2, 1 / 5])
    assert [r.cpu_ratio for r in runs] == [0.5, 0.4, None]
    figures = ingest_figures(1000, runs)
    assert figures["copy_ratio"] == pytest.approx(1 / 3)  # not 50 / 200, the ratio of medians
    assert figures["events_per_s"] == 50.0
    assert figures["copy_events_per_s"] == 200.0
