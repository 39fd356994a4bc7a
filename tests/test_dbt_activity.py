"""Activity and learner marts (issue 3) on a real PostgreSQL, built by dbt.

One simulated database is shared by the module. Its events (a small simulation plus hand-made
probe learners) are delivered in batches in arrival order, shuffled inside each batch, with late
uploads more than 7 days old; an incremental ``dbt build`` runs after each batch. The tests then
check: every model and column is documented; a second run changes nothing; the incremental tables
equal a ``--full-refresh`` build row for row; daily and weekly stats recomputed in pandas from the
raw app tables match; learners in Pacific/Auckland and America/Los_Angeles land on the right local
days around midnight UTC and across daylight-saving changes; a 9-learner cohort never shows a
percentile; the reporter role reads marts only; events committed while dbt runs are in the marts
after the next run.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from statistics import median
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import psycopg
import pytest
from psycopg import sql
from warehouse_relations import checksums, warehouse_tables

from python_jobs.ingest.events import Event, QuestionAttempt
from python_jobs.ingest.tracker import Tracker
from python_jobs.simulation.simulator import generate, prepare
from python_jobs.warehouse.dbt import DbtError, run_dbt
from python_jobs.warehouse.deletion import apply_deletions, request_deletion

pytestmark = pytest.mark.slow

# The window 2026-03-01 .. 2026-04-10 holds Los Angeles' spring-forward (2026-03-08) and
# Auckland's fall-back (2026-04-05).
END = datetime(2026, 4, 10, tzinfo=UTC)
DAYS = 40
AS_OF = "2026-04-10"
DBT_VARS = json.dumps({"metrics_as_of_date": AS_OF, "mastery_as_of_date": AS_OF})
BATCHES = 5
LATE = timedelta(days=7)
MARTS_ACTIVITY = [
    "daily_user_stats",
    "weekly_user_stats",
    "topic_daily_stats",
    "session_efficiency",
    "learning_patterns",
    "user_learning_metrics",
    "cohort_benchmarks",
]

# Probe learners with answers at chosen instants: (label, timezone, UTC instants).
AUCKLAND = "Pacific/Auckland"
LOS_ANGELES = "America/Los_Angeles"
TZ_PROBES: dict[str, tuple[str, list[str]]] = {
    "auckland": (
        AUCKLAND,
        [
            "2026-03-20T23:59:00Z",  # midnight UTC straddle: both on local 2026-03-21 (NZDT +13)
            "2026-03-21T00:01:00Z",
            "2026-03-22T10:59:59Z",  # local Sunday 23:59:59 ...
            "2026-03-22T11:00:01Z",  # ... and Monday 00:00:01: another day and ISO week
            "2026-04-03T11:30:00Z",  # still NZDT (+13): local 2026-04-04 00:30
            "2026-04-05T11:30:00Z",  # NZST (+12) after fall-back: local 2026-04-05 23:30
        ],
    ),
    "los_angeles": (
        LOS_ANGELES,
        [
            "2026-03-08T07:30:00Z",  # PST (-8) before spring-forward: local Sat 2026-03-07 23:30
            "2026-03-09T07:30:00Z",  # PDT (-7): local Monday 2026-03-09 00:30 (-8 would say Sunday)
            "2026-03-15T23:50:00Z",  # midnight UTC straddle: both on local 2026-03-15
            "2026-03-16T00:10:00Z",
        ],
    ),
}
TZ_EXPECTED_DAYS = {
    "auckland": {
        date(2026, 3, 21): 2,
        date(2026, 3, 22): 1,
        date(2026, 3, 23): 1,
        date(2026, 4, 4): 1,
        date(2026, 4, 5): 1,
    },
    "los_angeles": {date(2026, 3, 7): 1, date(2026, 3, 9): 1, date(2026, 3, 15): 2},
}
TZ_EXPECTED_WEEKS = {
    "auckland": {date(2026, 3, 16): (3, 2), date(2026, 3, 23): (1, 1), date(2026, 3, 30): (2, 2)},
    "los_angeles": {date(2026, 3, 2): (1, 1), date(2026, 3, 9): (3, 2)},
}
# (local hour, ISO day of week) -> attempts
TZ_EXPECTED_CELLS = {
    "auckland": {(12, 6): 1, (13, 6): 1, (23, 7): 2, (0, 1): 1, (0, 6): 1},
    "los_angeles": {(23, 6): 1, (0, 1): 1, (16, 7): 1, (17, 7): 1},
}
COHORT_PROBES = {"probe-nine": 9, "probe-ten": 10}  # learner i answers i questions
# A learner erased at the end: alone on 2026-02-15 (before the simulated window), with others on
# 2026-03-20; every UTC date in between must be recomputed in topic_daily_stats.
ERASED_INSTANTS = ["2026-02-15T12:00:00Z", "2026-03-20T12:00:00Z"]


@dataclass
class Built:
    url: str
    target: Path
    batch_sizes: list[int]
    late_after_processed: int
    checksums_first: dict[str, str]
    checksums_second: dict[str, str]
    differences: dict[str, tuple[int, int]]
    compared_tables: list[str]
    probes: dict[str, uuid.UUID] = field(default_factory=dict)
    # the incremental watermarks before the full refresh (after the two rewound below) and after it
    watermarks_before: dict[str, datetime] = field(default_factory=dict)
    watermarks_after: dict[str, datetime] = field(default_factory=dict)
    newest_arrival: datetime | None = None


# ----------------------------------------------------------------------------- helpers


# The activity and learner marts and everything upstream of them (mastery included, for
# user_learning_metrics' mean mastery); other marts are left to their own tests.
SELECTION = ["--select", "+marts.activity", "+marts.learners"]


def dbt_build(url: str, target: Path, *extra: str) -> None:
    """`dbt build`: models, data tests and unit tests."""
    selection = [*SELECTION, "--indirect-selection", "cautious"]  # tests of built models only
    run_dbt(["build", "--vars", DBT_VARS, *(extra or selection)], url=url, target_path=target)


def dbt_run(url: str, target: Path, *extra: str) -> None:
    """`dbt run`: the same incremental model runs as a build, without the tests (faster)."""
    run_dbt(["run", "--vars", DBT_VARS, *(extra or SELECTION)], url=url, target_path=target)


def watermarks(url: str) -> dict[str, datetime]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "select model_name, received_at from intermediate.incremental_watermarks"
        )
        return dict(rows.fetchall())


# Before the full refresh, one watermark is set back a month and one removed: the refresh's
# post-hooks read only the rows since the stored watermark and must still end at the newest
# arrival (every typed row arrives with its event, so the log's newest is every source's).
REWOUND_WATERMARK, REMOVED_WATERMARK = "daily_user_stats", "int_session_days_aggregated"


def rewind_watermarks(url: str) -> None:
    with psycopg.connect(url) as conn:
        conn.execute(
            "update intermediate.incremental_watermarks"
            " set received_at = received_at - interval '30 days' where model_name = %s",
            (REWOUND_WATERMARK,),
        )
        conn.execute(
            "delete from intermediate.incremental_watermarks where model_name = %s",
            (REMOVED_WATERMARK,),
        )


def snapshot(url: str) -> list[tuple[str, str]]:
    with psycopg.connect(url) as conn:
        conn.execute("drop schema if exists snap cascade")
        conn.execute("create schema snap")
        tables = warehouse_tables(conn)
        for schema, table in tables:
            conn.execute(
                sql.SQL("create table snap.{} as select * from {}.{}").format(
                    sql.Identifier(f"{schema}__{table}"),
                    sql.Identifier(schema),
                    sql.Identifier(table),
                )
            )
    return tables


def differences(url: str, tables: list[tuple[str, str]]) -> dict[str, tuple[int, int]]:
    """(rows only in the snapshot, rows only in the live table) per table, multiset semantics."""
    out = {}
    with psycopg.connect(url) as conn:
        for schema, table in tables:
            snap = sql.Identifier("snap", f"{schema}__{table}")
            live = sql.Identifier(schema, table)
            only_snap = conn.execute(
                sql.SQL(
                    "select count(*) from (select * from {} except all select * from {}) d"
                ).format(snap, live)
            ).fetchone()[0]
            only_live = conn.execute(
                sql.SQL(
                    "select count(*) from (select * from {} except all select * from {}) d"
                ).format(live, snap)
            ).fetchone()[0]
            out[f"{schema}.{table}"] = (only_snap, only_live)
    return out


def probe_users(conn: psycopg.Connection) -> dict[str, uuid.UUID]:
    """Insert the probe learners; return label -> user_id."""
    ids: dict[str, uuid.UUID] = {}
    rows = []
    for label, (tz, _) in TZ_PROBES.items():
        ids[label] = uuid.uuid5(uuid.NAMESPACE_URL, f"studyin-test/{label}")
        rows.append((ids[label], tz, "probe-tz"))
    for cohort, size in COHORT_PROBES.items():
        for i in range(1, size + 1):
            label = f"{cohort}-{i}"
            ids[label] = uuid.uuid5(uuid.NAMESPACE_URL, f"studyin-test/{label}")
            rows.append((ids[label], "UTC", cohort))
    ids["erased"] = uuid.uuid5(uuid.NAMESPACE_URL, "studyin-test/erased")
    rows.append((ids["erased"], "UTC", "probe-erased"))
    with conn.cursor() as cur:
        cur.executemany(
            "insert into app.users (id, created_at, timezone, cohort, exam_target)"
            " values (%s, '2026-01-01', %s, %s, 'probe')",
            rows,
        )
    conn.commit()
    return ids


def probe_events(conn: psycopg.Connection, ids: dict[str, uuid.UUID]) -> list[Event]:
    question_id, answer = conn.execute(
        "select id, correct_answer from app.questions order by id limit 1"
    ).fetchone()
    events: list[Event] = []

    def attempt(user: uuid.UUID, at: datetime, session: uuid.UUID) -> QuestionAttempt:
        return QuestionAttempt(
            event_id=uuid.uuid4(),
            user_id=user,
            session_id=session,
            occurred_at=at,
            received_at=at + timedelta(seconds=90),
            question_id=question_id,
            selected_answer=answer,
            time_to_answer_ms=20_000,
        )

    for label, (_, instants) in TZ_PROBES.items():
        for instant in instants:
            at = datetime.fromisoformat(instant.replace("Z", "+00:00"))
            events.append(attempt(ids[label], at, uuid.uuid4()))
    for instant in ERASED_INSTANTS:
        at = datetime.fromisoformat(instant.replace("Z", "+00:00"))
        events.append(attempt(ids["erased"], at, uuid.uuid4()))
    for cohort, size in COHORT_PROBES.items():
        for i in range(1, size + 1):
            session = uuid.uuid4()
            start = datetime(2026, 4, 9, 12, tzinfo=UTC)
            for k in range(i):
                events.append(
                    attempt(ids[f"{cohort}-{i}"], start + timedelta(seconds=30 * k), session)
                )
    return events


# ----------------------------------------------------------------------------- the shared build


@pytest.fixture(scope="module")
def built(database_factory, tmp_path_factory) -> Built:
    url = database_factory("studyin_activity")
    target = tmp_path_factory.mktemp("dbt_activity_target")
    sim = generate(users=16, days=DAYS, seed=3, late_share=0.15, end=END)
    with psycopg.connect(url) as conn:
        prepare(conn, sim)
        ids = probe_users(conn)
        events = list(sim.events()) + probe_events(conn, ids)
    events.sort(key=lambda e: (e.received_at, str(e.event_id)))

    # Arrival order, cut into batches; inside a batch the insert order is shuffled.
    size = -(-len(events) // BATCHES)
    batches = [events[i : i + size] for i in range(0, len(events), size)]
    rng = random.Random(3)
    late_after_processed = 0
    processed_until = None
    with psycopg.connect(url) as tracker_conn:
        tracker = Tracker(tracker_conn, trust_received_at=True)
        for batch in batches:
            if processed_until is not None:
                late_after_processed += sum(
                    1
                    for e in batch
                    if e.received_at - e.occurred_at > LATE and e.occurred_at < processed_until
                )
            shuffled = batch[:]
            rng.shuffle(shuffled)
            result = tracker.track_batch(shuffled)
            assert result.rejected == 0, result.rejections[:3]
            # Every data test runs on the incremental state after the last batch.
            (dbt_build if batch is batches[-1] else dbt_run)(url, target)
            processed_until = max(e.received_at for e in batch)

    first = checksums(url)
    dbt_run(url, target)  # no new events
    second = checksums(url)

    tables = snapshot(url)
    rewind_watermarks(url)
    before = watermarks(url)
    dbt_run(url, target, "--full-refresh", *SELECTION)
    diffs = differences(url, tables)
    with psycopg.connect(url) as conn:
        newest = conn.execute("select max(received_at) from app.study_events").fetchone()[0]
    return Built(
        url=url,
        target=target,
        batch_sizes=[len(b) for b in batches],
        late_after_processed=late_after_processed,
        checksums_first=first,
        checksums_second=second,
        differences=diffs,
        compared_tables=[f"{s}.{t}" for s, t in tables],
        probes=ids,
        watermarks_before=before,
        watermarks_after=watermarks(url),
        newest_arrival=newest,
    )


# ----------------------------------------------------------------------------- documentation


def test_every_model_and_column_is_described(built: Built):
    manifest = json.loads((built.target / "manifest.json").read_text())
    undocumented: list[str] = []
    built_models = 0
    with psycopg.connect(built.url) as conn:
        for node in manifest["nodes"].values():
            if node["resource_type"] != "model" or node["package_name"] != "studyin":
                continue
            name = node["name"]
            if not node["description"].strip():
                undocumented.append(name)
            documented = {c for c, spec in node["columns"].items() if spec["description"].strip()}
            actual = {
                r[0]
                for r in conn.execute(
                    "select column_name from information_schema.columns"
                    " where table_schema = %s and table_name = %s",
                    (node["schema"], node["alias"]),
                )
            }
            built_models += bool(actual)
            # Columns the yml does not list have no description either (for the models built here).
            undocumented += [f"{name}.{c}" for c in sorted(actual - documented)]
            undocumented += [f"{name}.{c}" for c in sorted(set(node["columns"]) - documented)]
    for source in manifest["sources"].values():
        if source["package_name"] == "studyin" and not source["description"].strip():
            undocumented.append(source["unique_id"])
    assert built_models >= 20  # staging, activity, learners and the mastery models they read
    assert undocumented == []


def test_docs_overview_explains_delete_insert():
    overview = (Path(__file__).parents[1] / "models" / "overview.md").read_text()
    assert "{% docs __overview__ %}" in overview
    assert "MERGE" in overview and "delete+insert" in overview


# ----------------------------------------------------------------------------- incremental


def test_delivery_was_batched_shuffled_and_late(built: Built):
    assert len(built.batch_sizes) >= 5
    # Late uploads (> 7 days) that arrived after a run had already processed their time.
    assert built.late_after_processed >= 20


def test_incremental_tables_equal_a_full_refresh(built: Built):
    assert {f"marts.{m}" for m in MARTS_ACTIVITY} <= set(built.compared_tables)
    assert "intermediate.int_session_days_aggregated" in built.compared_tables
    with psycopg.connect(built.url) as conn:
        for mart in MARTS_ACTIVITY:
            rows = conn.execute(
                sql.SQL("select count(*) from marts.{}").format(sql.Identifier(mart))
            )
            assert rows.fetchone()[0] > 0, f"{mart} is empty: the comparison would prove nothing"
    assert {t: d for t, d in built.differences.items() if d != (0, 0)} == {}


def test_a_full_refresh_leaves_every_watermark_at_the_newest_arrival(built: Built):
    """A full refresh's post-hooks read only the rows received since the stored watermark: a
    rewound or missing watermark still ends at the newest arrival, and the others stay as the
    incremental runs left them (they already were at it)."""
    after, before = built.watermarks_after, built.watermarks_before
    assert REMOVED_WATERMARK not in before
    assert before[REWOUND_WATERMARK] < built.newest_arrival
    assert after[REWOUND_WATERMARK] == after[REMOVED_WATERMARK] == built.newest_arrival
    unchanged = set(before) - {REWOUND_WATERMARK}
    assert len(unchanged) >= 5
    assert {name: after[name] for name in unchanged} == {name: before[name] for name in unchanged}
    assert set(after) == set(before) | {REMOVED_WATERMARK}


def test_second_run_without_new_events_changes_no_row(built: Built):
    assert built.checksums_first == built.checksums_second
    assert "marts.daily_user_stats" in built.checksums_first


# ----------------------------------------------------------------------------- independent values


def _half_up(value: Decimal, places: str) -> Decimal:
    return value.quantize(Decimal(places), rounding=ROUND_HALF_UP)


def _expected_daily(conn: psycopg.Connection, users: list[uuid.UUID]) -> pd.DataFrame:
    """daily_user_stats recomputed in Python/pandas from the raw app tables."""
    tz = dict(conn.execute("select id, timezone from app.users where id = any(%s)", (users,)))
    events = pd.DataFrame(
        conn.execute(
            "select event_id, user_id, session_id, occurred_at from app.study_events"
            " where user_id = any(%s)",
            (users,),
        ).fetchall(),
        columns=["event_id", "user_id", "session_id", "occurred_at"],
    )
    attempts = pd.DataFrame(
        conn.execute(
            "select user_id, topic_id, is_correct, attempt_number, hint_used, time_to_answer_ms,"
            " answered_at from app.question_attempts where user_id = any(%s)",
            (users,),
        ).fetchall(),
        columns=["user_id", "topic_id", "is_correct", "attempt_number", "hint_used", "ms", "at"],
    )
    interactions = pd.DataFrame(
        conn.execute(
            "select i.user_id, i.material_id, m.topic_id, i.interaction_type, i.active_seconds,"
            " i.occurred_at from app.material_interactions i"
            " join app.materials m on m.id = i.material_id where i.user_id = any(%s)",
            (users,),
        ).fetchall(),
        columns=["user_id", "material_id", "topic_id", "kind", "seconds", "at"],
    )

    def local(frame: pd.DataFrame, column: str) -> pd.Series:
        return pd.Series(
            [
                ts.astimezone(ZoneInfo(tz[u])).date()
                for u, ts in zip(frame.user_id, frame[column], strict=True)
            ],
            index=frame.index,
            dtype=object,
        )

    events["local_date"] = local(events, "occurred_at")
    attempts["local_date"] = local(attempts, "at")
    interactions["local_date"] = local(interactions, "at")

    # Active time: gaps between consecutive events of a session, rounded to the millisecond,
    # active when <= 300 s, counted on the local day of the event ending the gap.
    active: dict[tuple, Decimal] = defaultdict(Decimal)
    in_sessions = events.dropna(subset=["session_id"]).sort_values(["session_id", "occurred_at"])
    for _, session in in_sessions.groupby("session_id"):
        previous = None
        for row in session.itertuples():
            if previous is not None:
                micros = (row.occurred_at - previous) // timedelta(microseconds=1)
                gap = _half_up(Decimal(int(micros)) / Decimal(1_000_000), "0.001")
                if gap <= 300:
                    active[(row.user_id, row.local_date)] += gap
            previous = row.occurred_at

    keys = (
        set(zip(events.user_id, events.local_date, strict=True))
        | set(zip(attempts.user_id, attempts.local_date, strict=True))
        | set(zip(interactions.user_id, interactions.local_date, strict=True))
    )
    by_day_events = dict(tuple(events.groupby(["user_id", "local_date"])))
    by_day_attempts = dict(tuple(attempts.groupby(["user_id", "local_date"])))
    by_day_interactions = dict(tuple(interactions.groupby(["user_id", "local_date"])))
    empty_a = attempts.iloc[0:0]
    empty_i = interactions.iloc[0:0]
    rows = []
    for key in keys:
        ev = by_day_events.get(key, events.iloc[0:0])
        at = by_day_attempts.get(key, empty_a)
        it = by_day_interactions.get(key, empty_i)
        n = len(at)
        correct = int(at.is_correct.sum())
        first = at[at.attempt_number == 1]
        rows.append(
            {
                "user_id": key[0],
                "local_date": key[1],
                "sessions": int(ev.session_id.dropna().nunique()),
                "active_study_minutes": _half_up(active.get(key, Decimal(0)) / 60, "0.01"),
                "questions_attempted": n,
                "questions_correct": correct,
                "first_attempts": len(first),
                "first_attempts_correct": int(first.is_correct.sum()),
                "accuracy": _half_up(Decimal(correct) / n, "0.0001") if n else None,
                "hints_used": int(at.hint_used.sum()),
                "median_time_to_answer_ms": Decimal(str(median(at.ms))) if n else None,
                "materials_completed": int(it[it.kind == "complete"].material_id.nunique()),
                "material_minutes": _half_up(Decimal(int(it.seconds.sum())) / 60, "0.01"),
                "distinct_topics": len(set(at.topic_id) | set(it.topic_id)),
                # the local day's span in UTC: local midnight to the next (23 or 25 h across DST)
                "timezone": tz[key[0]],
                "day_starts_at": pd.Timestamp(
                    datetime.combine(key[1], datetime.min.time(), ZoneInfo(tz[key[0]]))
                ),
                "day_ends_at": pd.Timestamp(
                    datetime.combine(
                        key[1] + timedelta(days=1), datetime.min.time(), ZoneInfo(tz[key[0]])
                    )
                ),
            }
        )
    return pd.DataFrame(rows)


def _mart(conn: psycopg.Connection, table: str, users: list[uuid.UUID]) -> pd.DataFrame:
    cur = conn.execute(
        sql.SQL("select * from marts.{} where user_id = any(%s)").format(sql.Identifier(table)),
        (users,),
    )
    return pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description])


def _as_records(frame: pd.DataFrame, key: list[str]) -> dict[tuple, dict]:
    records = {}
    for record in frame.to_dict("records"):
        clean = {
            k: (None if v is None or (isinstance(v, float) and np.isnan(v)) else v)
            for k, v in record.items()
        }
        records[tuple(clean[k] for k in key)] = clean
    return records


def _sample_users(conn: psycopg.Connection, probes: dict[str, uuid.UUID]) -> list[uuid.UUID]:
    """The busiest simulated learners of a few time zones, plus the time-zone probes."""
    rows = conn.execute(
        "select distinct on (u.timezone) u.id from app.users u"
        " join app.study_events e on e.user_id = u.id"
        " where u.cohort not like 'probe%%' group by u.id, u.timezone"
        " order by u.timezone, count(*) desc"
    ).fetchall()
    sample = [r[0] for r in rows][:6]
    return sample + [probes["auckland"], probes["los_angeles"]]


def test_daily_and_weekly_stats_match_an_independent_recomputation(built: Built):
    with psycopg.connect(built.url) as conn:
        users = _sample_users(conn, built.probes)
        expected = _expected_daily(conn, users)
        actual = _mart(conn, "daily_user_stats", users)
        weekly = _mart(conn, "weekly_user_stats", users)
    assert len(expected) > 50
    key = ["user_id", "local_date"]
    assert _as_records(actual, key) == _as_records(expected, key)

    expected["week_start"] = [d - timedelta(days=d.weekday()) for d in expected.local_date]
    sums = ["sessions", "active_study_minutes", "questions_attempted", "questions_correct",
            "first_attempts", "first_attempts_correct", "hints_used", "materials_completed",
            "material_minutes"]  # fmt: skip
    rows = []
    for (user, week), days in expected.groupby(["user_id", "week_start"]):
        row = {"user_id": user, "week_start": week, "active_days": len(days)}
        for column in sums:
            row[column] = sum(days[column], Decimal(0) if "minutes" in column else 0)
        attempted = row["questions_attempted"]
        row["accuracy"] = (
            _half_up(Decimal(row["questions_correct"]) / attempted, "0.0001") if attempted else None
        )
        rows.append(row)
    expected_weekly = _as_records(pd.DataFrame(rows), ["user_id", "week_start"])
    actual_weekly = _as_records(weekly, ["user_id", "week_start"])
    assert actual_weekly.keys() == expected_weekly.keys()
    for k, row in expected_weekly.items():
        assert {c: actual_weekly[k][c] for c in row} == row, k


# ----------------------------------------------------------------------------- time zones


@pytest.mark.parametrize("label", ["auckland", "los_angeles"])
def test_local_days_around_midnight_utc_and_dst(built: Built, label: str):
    user = built.probes[label]
    with psycopg.connect(built.url) as conn:
        days = dict(
            conn.execute(
                "select local_date, questions_attempted from marts.daily_user_stats"
                " where user_id = %s",
                (user,),
            ).fetchall()
        )
        weeks = {
            r[0]: (r[1], r[2])
            for r in conn.execute(
                "select week_start, questions_attempted, active_days from marts.weekly_user_stats"
                " where user_id = %s",
                (user,),
            )
        }
        cells = {
            (r[0], r[1]): r[2]
            for r in conn.execute(
                "select local_hour, local_iso_dow, attempts from marts.learning_patterns"
                " where user_id = %s",
                (user,),
            )
        }
    assert days == TZ_EXPECTED_DAYS[label]
    assert weeks == TZ_EXPECTED_WEEKS[label]
    assert cells == TZ_EXPECTED_CELLS[label]


# ----------------------------------------------------------------------------- cohorts


def test_cohort_of_nine_shows_no_percentile_and_ten_does(built: Built):
    with psycopg.connect(built.url) as conn:
        rows = {
            (r[0], r[1]): r[2:]
            for r in conn.execute(
                "select cohort, metric, cohort_learners, n, p10, p25, p50, p75, p90"
                " from marts.cohort_benchmarks"
            )
        }
        shown_small = conn.execute(
            "select count(*) from marts.cohort_benchmarks where cohort_learners < 10"
            " and coalesce(p10, p25, p50, p75, p90) is not null"
        ).fetchone()[0]
        percentiles = conn.execute(
            "select count(*) filter (where questions_30d_cohort_percentile is not null)"
            " from marts.user_learning_metrics where cohort = 'probe-nine'"
        ).fetchone()[0]
    nine = rows[("probe-nine", "questions_30d")]
    assert nine[:2] == (9, 9) and nine[2:] == (None,) * 5
    assert all(v[2:] == (None,) * 5 for (c, _), v in rows.items() if c == "probe-nine")
    ten = rows[("probe-ten", "questions_30d")]
    expected = np.percentile(np.arange(1, 11), [10, 25, 50, 75, 90])
    assert ten[:2] == (10, 10)
    assert [float(v) for v in ten[2:]] == pytest.approx(list(expected))
    assert shown_small == 0
    assert percentiles == 0


# ----------------------------------------------------------------------------- grants


@pytest.mark.parametrize(
    ("relation", "allowed"),
    [
        ("marts.daily_user_stats", True),
        ("marts.cohort_benchmarks", True),
        ("app.users", False),
        ("app.study_events", False),
        ("staging.stg_app__users", False),
        ("intermediate.int_session_activities_gapped", False),
    ],
)
def test_reporter_reads_marts_only(built: Built, relation: str, allowed: bool):
    with psycopg.connect(built.url, autocommit=True) as conn:
        conn.execute("set role reporter")
        query = sql.SQL("select count(*) from {}").format(sql.Identifier(*relation.split(".")))
        if allowed:
            assert conn.execute(query).fetchone()[0] >= 0
        else:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(query)


# ----------------------------------------------------------------------------- concurrency


def test_events_committed_during_a_build_are_in_the_marts_after_the_next_run(built: Built):
    user = built.probes["probe-ten-1"]
    with psycopg.connect(built.url) as conn:
        question_id, answer = conn.execute(
            "select id, correct_answer from app.questions order by id limit 1"
        ).fetchone()
    errors: list[BaseException] = []

    def build() -> None:
        try:
            dbt_run(built.url, built.target)
        except BaseException as err:  # noqa: BLE001 - re-raised in the test thread
            errors.append(err)

    builder = threading.Thread(target=build)
    sent: list[QuestionAttempt] = []
    during = 0
    with psycopg.connect(built.url) as conn:
        tracker = Tracker(conn)  # server clock: received_at is when the tracker takes the event
        builder.start()
        while builder.is_alive():
            now = datetime.now(UTC)
            session = uuid.uuid4()
            chunk = [
                QuestionAttempt(
                    event_id=uuid.uuid4(),
                    user_id=user,
                    session_id=session,
                    occurred_at=now - timedelta(seconds=60 - 10 * k),
                    question_id=question_id,
                    selected_answer=answer,
                    time_to_answer_ms=5_000,
                )
                for k in range(3)
            ]
            assert tracker.track_batch(chunk).accepted == 3
            sent += chunk
            during += builder.is_alive()
            time.sleep(0.25)
        builder.join()
    assert not errors, errors
    assert during >= 5  # commits really happened while dbt was running

    dbt_run(built.url, built.target)
    today_local = {e.occurred_at.astimezone(UTC).date() for e in sent}
    with psycopg.connect(built.url) as conn:
        in_daily = conn.execute(
            "select coalesce(sum(questions_attempted), 0) from marts.daily_user_stats"
            " where user_id = %s and local_date = any(%s)",
            (user, list(today_local)),
        ).fetchone()[0]
        sessions = conn.execute(
            "select count(*) from marts.session_efficiency where session_id = any(%s)",
            (list({e.session_id for e in sent}),),
        ).fetchone()[0]
    assert in_daily == len(sent)
    assert sessions == len({e.session_id for e in sent})


def _topic_days(conn: psycopg.Connection, query: str) -> dict[tuple, tuple]:
    span = (date(2026, 2, 15), date(2026, 3, 20))
    return {(r[0], r[1]): tuple(r[2:]) for r in conn.execute(query, span)}


def test_erasure_recomputes_every_day_of_cross_learner_marts(built: Built):
    user = built.probes["erased"]
    with psycopg.connect(built.url) as conn:
        alone_before = conn.execute(
            "select count(*) from marts.topic_daily_stats where activity_date = '2026-02-15'"
        ).fetchone()[0]
        request_deletion(conn, user)
        erased = apply_deletions(conn)
    assert alone_before == 1
    assert [e.affected_from.date() for e in erased] == [date(2026, 2, 15)]

    dbt_run(built.url, built.target)
    with psycopg.connect(built.url) as conn:
        actual = _topic_days(
            conn,
            "select topic_id, activity_date, attempts, correct_attempts, learners"
            " from marts.topic_daily_stats where activity_date between %s and %s",
        )
        expected = _topic_days(
            conn,
            "select topic_id, (answered_at at time zone 'UTC')::date as day, count(*),"
            " count(*) filter (where is_correct), count(distinct user_id)"
            " from app.question_attempts group by 1, 2 having"
            " (answered_at at time zone 'UTC')::date between %s and %s",
        )
        remaining = conn.execute(
            "select count(*) from marts.daily_user_stats where user_id = %s", (user,)
        ).fetchone()[0]
    assert not [k for k in actual if k[1] == date(2026, 2, 15)]
    assert len(expected) > 20
    assert actual == expected
    assert remaining == 0


def test_data_test_fails_when_a_small_cohort_shows_a_percentile(built: Built):
    with psycopg.connect(built.url) as conn:
        conn.execute("update marts.cohort_benchmarks set p50 = 1 where cohort = 'probe-nine'")
    with pytest.raises(DbtError, match="null_below_min_count"):
        run_dbt(
            ["test", "--vars", DBT_VARS, "--select", "cohort_benchmarks,test_type:data"],
            url=built.url,
            target_path=built.target,
        )
    dbt_run(built.url, built.target, "--select", "cohort_benchmarks")


def test_data_test_fails_when_an_attempt_disagrees_with_its_event(built: Built):
    """int_session_activities_gapped takes attempts from their typed rows and every other event
    from the log: matches_event_log fails on an attempt whose time differs from its event's and on
    an attempt event without its typed row, and passes again once the row is back as it was."""

    def test_attempts() -> None:
        run_dbt(
            ["test", "--select", "stg_app__question_attempts,test_name:matches_event_log"],
            url=built.url,
            target_path=built.target,
        )

    with psycopg.connect(built.url) as conn:
        row = conn.execute(
            "select * from app.question_attempts order by event_id limit 1"
        ).fetchone()
        columns = [
            c.name for c in conn.execute("select * from app.question_attempts limit 0").description
        ]
        conn.execute(
            "update app.question_attempts set answered_at = answered_at + interval '1 second'"
            " where event_id = %s",
            (row[0],),
        )
    with pytest.raises(DbtError, match="matches_event_log"):
        test_attempts()
    with psycopg.connect(built.url) as conn:
        conn.execute("delete from app.question_attempts where event_id = %s", (row[0],))
    with pytest.raises(DbtError, match="matches_event_log"):
        test_attempts()
    with psycopg.connect(built.url) as conn:
        conn.execute(
            sql.SQL("insert into app.question_attempts ({}) values ({})").format(
                sql.SQL(", ").join(map(sql.Identifier, columns)),
                sql.SQL(", ").join(sql.Placeholder() * len(columns)),
            ),
            row,
        )
    test_attempts()


def test_nightly_window_leaves_older_rows_to_the_full_checks(built: Built):
    """With nightly_test_window_days (what `studyin run` passes) a history-sized model's data tests
    read only its recent rows; without it (--full-checks, plain dbt) every row. The simulation
    ends in April, so a 7-day window from today holds none of its rows and a 10,000-day one all."""
    with psycopg.connect(built.url) as conn:
        session_id, local_date, idle_gaps = conn.execute(
            "select session_id, local_date, idle_gaps"
            " from intermediate.int_session_days_aggregated order by local_date limit 1"
        ).fetchone()
        conn.execute(
            "update intermediate.int_session_days_aggregated set idle_gaps = null"
            " where session_id = %s and local_date = %s",
            (session_id, local_date),
        )

    def test_with(window: int | None) -> None:
        dbt_vars = {**json.loads(DBT_VARS), "nightly_test_window_days": window}
        run_dbt(
            ["test", "--vars", json.dumps(dbt_vars), "--select", "int_session_days_aggregated"],
            url=built.url,
            target_path=built.target,
        )

    try:
        test_with(7)
        for window in (None, 10_000):
            with pytest.raises(DbtError, match="not_null_int_session_days_aggregated_idle_gaps"):
                test_with(window)
    finally:
        with psycopg.connect(built.url) as conn:
            conn.execute(
                "update intermediate.int_session_days_aggregated set idle_gaps = %s"
                " where session_id = %s and local_date = %s",
                (idle_gaps, session_id, local_date),
            )
