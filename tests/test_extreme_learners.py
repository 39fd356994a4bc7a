"""No single learner's data can fail the nightly run for everyone.

A handful of learners at the edges of what the tracker and app.users accept, next to one ordinary
learner, all sent through the tracker, then the whole nightly pipeline (``run_pipeline``):

- a diligent learner: one leaf topic answered correctly (quality 4) every day for 400 days. SM-2's
  interval grows by x2.5 a review: uncapped it passes 2^31 days at the 24th review and the due date
  passes the year 9999 at the 17th; capped it stays at var sm2_max_interval_days;
- a learner back after ten years: two reviews of a topic 3,650 days apart;
- a heavy reader: 300 material interactions of one day, each with the largest active_seconds the
  tracker takes (2^31 - 1), more minutes than numeric(12, 2) holds;
- a burst: 3,000 answers at one instant and one heartbeat a millisecond later, a session with
  3,000 questions in 0.001 active seconds (over 10^10 questions per active hour);
- a learner whose exam date (year 2300) is beyond what pandas' timestamps hold.

The run must succeed, the ordinary learner must have their rows, the interval must be capped, and
every date and timestamp column of every table and view in marts, intermediate and ml must be
readable by psycopg. A second run folds one more day forward from the capped stored state.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from alembic.script import ScriptDirectory
from psycopg import sql

from python_jobs.ingest.events import (
    Event,
    MaterialInteraction,
    QuestionAttempt,
    SessionEnd,
    SessionHeartbeat,
    SessionStart,
)
from python_jobs.ingest.tracker import Tracker
from python_jobs.simulation.reference import load_reference
from python_jobs.warehouse import migrate
from python_jobs.warehouse.pipeline import RunContext, Step, default_steps, run_pipeline

pytestmark = pytest.mark.slow  # two nightly runs

SM2_MAX_INTERVAL_DAYS = 36500  # the default of var sm2_max_interval_days
INT4_MAX = 2**31 - 1
DILIGENT_DAYS = 400
GAP_DAYS = 3650
BURST = 3000
HEAVY_READS = 300

TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class Learners:
    ordinary: uuid.UUID
    diligent: uuid.UUID
    returning: uuid.UUID
    reader: uuid.UUID
    burst: uuid.UUID
    far_exam: uuid.UUID


LEARNERS = Learners(*(uuid.UUID(int=0xE0 + k) for k in range(6)))
# leaf topics of the seed taxonomy and their bank (python_jobs/simulation/reference.py):
# question ids are leaf * 100 + n, material ids leaf * 10 + n
TOPIC_DAILY, TOPIC_RETURN, TOPIC_ORDINARY = 111, 112, 113


def questions(conn: psycopg.Connection, topic: int) -> list[tuple[int, str]]:
    return conn.execute(
        "select id, correct_answer from app.questions where topic_id = %s order by id", (topic,)
    ).fetchall()


def a_material(conn: psycopg.Connection) -> int:
    return conn.execute("select min(id) from app.materials").fetchone()[0]


def at(day: date | datetime, hour: int = 9, ms: int = 0) -> datetime:
    base = datetime(day.year, day.month, day.day, hour, tzinfo=UTC)
    return base + timedelta(milliseconds=ms)


def answer(
    user: uuid.UUID, when: datetime, question: tuple[int, str], session: uuid.UUID | None = None
) -> QuestionAttempt:
    """A correct answer, no hint, confidence 3: quality 4 (SM-2 keeps EF at 2.5)."""
    return QuestionAttempt(
        event_id=uuid.uuid4(),
        user_id=user,
        session_id=session,
        occurred_at=when,
        received_at=when + timedelta(minutes=1),
        question_id=question[0],
        selected_answer=question[1],
        time_to_answer_ms=30_000,
        confidence_level=3,
    )


def session(user: uuid.UUID, start: datetime, middle: list[Event], end: datetime) -> list[Event]:
    sid = uuid.uuid4()
    common = {"user_id": user, "session_id": sid}
    return [
        SessionStart(event_id=uuid.uuid4(), occurred_at=start, received_at=end, **common),
        *(
            type(e)(**{**e.__dict__, "session_id": sid, "received_at": end})  # type: ignore[arg-type]
            for e in middle
        ),
        SessionEnd(event_id=uuid.uuid4(), occurred_at=end, received_at=end, **common),
    ]


def first_night_events(conn: psycopg.Connection) -> list[Event]:
    daily_bank = questions(conn, TOPIC_DAILY)
    events: list[Event] = []
    first_day = (TODAY - timedelta(days=DILIGENT_DAYS)).date()
    for k in range(DILIGENT_DAYS):
        when = at(first_day + timedelta(days=k))
        q = answer(LEARNERS.diligent, when, daily_bank[k % len(daily_bank)])
        events += session(LEARNERS.diligent, when, [q], when + timedelta(minutes=2))
    return_bank = questions(conn, TOPIC_RETURN)
    back = (TODAY - timedelta(days=3)).date()
    for day in (back - timedelta(days=GAP_DAYS), back):
        events.append(answer(LEARNERS.returning, at(day), return_bank[0]))
    yesterday = (TODAY - timedelta(days=1)).date()
    material = a_material(conn)
    events += [
        MaterialInteraction(
            event_id=uuid.uuid4(),
            user_id=LEARNERS.reader,
            occurred_at=at(yesterday, 10, k),
            received_at=at(yesterday, 11),
            material_id=material,
            interaction_type="progress",
            progress=0.5,
            active_seconds=INT4_MAX,
        )
        for k in range(HEAVY_READS)
    ]
    burst_start = at(yesterday, 12)
    burst = [
        answer(LEARNERS.burst, burst_start, questions(conn, TOPIC_ORDINARY)[0])
        for _ in range(BURST)
    ]
    heartbeat = SessionHeartbeat(
        event_id=uuid.uuid4(), user_id=LEARNERS.burst, occurred_at=at(yesterday, 12, 1)
    )
    events += session(LEARNERS.burst, burst_start, [*burst, heartbeat], at(yesterday, 12, 1))
    ordinary_bank = questions(conn, TOPIC_ORDINARY)
    for user in (LEARNERS.ordinary, LEARNERS.far_exam):
        for k in range(5):
            when = at(TODAY - timedelta(days=5 - k), 8)
            events.append(answer(user, when, ordinary_bank[k]))
    return events


def insert_learners(conn: psycopg.Connection) -> None:
    far_exam = date(2300, 1, 1)
    for user in LEARNERS.__dict__.values():
        conn.execute(
            "insert into app.users (id, timezone, cohort, exam_target, exam_date)"
            " values (%s, 'Europe/Berlin', 'extreme', 'step1', %s)",
            (user, far_exam if user == LEARNERS.far_exam else None),
        )
    conn.commit()


def track(conn: psycopg.Connection, events: list[Event]) -> None:
    result = Tracker(conn, trust_received_at=True).track_batch(events)
    assert result.accepted == len(events), result


@pytest.fixture(scope="module")
def nightly(database_factory, tmp_path_factory) -> Iterator[tuple[str, Path]]:
    url = database_factory("studyin_extreme")
    target = tmp_path_factory.mktemp("dbt_extreme")
    with psycopg.connect(url) as conn:
        load_reference(conn)
        insert_learners(conn)
        track(conn, first_night_events(conn))
    run_pipeline(RunContext(url=url, target_path=target), nightly_steps())
    yield url, target


def nightly_steps() -> list[Step]:
    """The nightly run without `dbt docs generate` (the slowest step, and no model of its own)."""
    return [step for step in default_steps() if step[0] != "dbt_docs"]


def test_interval_is_capped_and_due_dates_stay_in_range(nightly):
    url, _ = nightly
    with psycopg.connect(url) as conn:
        reviews = conn.execute(
            "select interval_days, next_review_date - review_date"
            " from intermediate.int_topic_reviews_scheduled"
            " where user_id = %s and topic_id = %s order by review_date",
            (LEARNERS.diligent, TOPIC_DAILY),
        ).fetchall()
        mastery = conn.execute(
            "select reviews, repetitions, interval_days, next_review_date - last_review_date"
            " from marts.topic_mastery where user_id = %s and topic_id = %s",
            (LEARNERS.diligent, TOPIC_DAILY),
        ).fetchone()
    intervals = [r[0] for r in reviews]
    assert len(intervals) == DILIGENT_DAYS
    # EF stays 2.5 at quality 4: 1, 6, 15, 38, 95, ... until the cap, then the cap for good
    expected, interval = [], 0
    for n in range(DILIGENT_DAYS):
        interval = 1 if n == 0 else 6 if n == 1 else -(-interval * 5 // 2)
        interval = min(interval, SM2_MAX_INTERVAL_DAYS)
        expected.append(interval)
    assert intervals == expected
    assert intervals.index(SM2_MAX_INTERVAL_DAYS) == 11
    assert all(due == interval for interval, due in reviews)
    assert mastery == (DILIGENT_DAYS, DILIGENT_DAYS, SM2_MAX_INTERVAL_DAYS, SM2_MAX_INTERVAL_DAYS)


def test_learner_back_after_ten_years(nightly):
    url, _ = nightly
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "select days_since_previous_review, retrieval_strength_before, interval_days"
            " from intermediate.int_topic_reviews_scheduled"
            " where user_id = %s order by review_date",
            (LEARNERS.returning,),
        ).fetchall()
    assert [(r[0], r[2]) for r in rows] == [(None, 1), (GAP_DAYS, 6)]
    assert rows[1][1] == 0  # 0.9 ^ 3650 rounds to 0 at 10 decimals


def test_extreme_sums_and_rates_are_stored(nightly):
    url, _ = nightly
    with psycopg.connect(url) as conn:
        minutes = conn.execute(
            "select material_minutes from marts.daily_user_stats where user_id = %s",
            (LEARNERS.reader,),
        ).fetchone()[0]
        burst = conn.execute(
            "select questions_attempted, active_seconds, questions_per_active_hour"
            " from marts.session_efficiency where user_id = %s",
            (LEARNERS.burst,),
        ).fetchone()
    assert minutes == Decimal(HEAVY_READS * INT4_MAX) / 60 > 10**10
    assert burst[:2] == (BURST, Decimal("0.001"))
    assert burst[2] == BURST * 3600 * 1000


def test_every_learner_has_their_rows(nightly):
    url, _ = nightly
    with psycopg.connect(url) as conn:
        users = {
            r[0]
            for r in conn.execute(
                "select user_id from marts.user_learning_metrics where questions_all_time > 0"
            )
        }
        scored = {r[0] for r in conn.execute("select user_id from ml.exam_readiness_scores")}
    everyone = set(LEARNERS.__dict__.values())
    assert users == everyone - {LEARNERS.reader}
    # the readiness job scores every learner active in its window, the far exam date included
    assert {LEARNERS.ordinary, LEARNERS.far_exam, LEARNERS.burst} <= scored


def date_columns(conn: psycopg.Connection) -> dict[tuple[str, str], list[str]]:
    rows = conn.execute(
        "select c.table_schema, c.table_name, c.column_name"
        " from information_schema.columns as c"
        " where c.table_schema in ('marts', 'intermediate', 'ml')"
        " and c.data_type in ('date', 'timestamp with time zone', 'timestamp without time zone')"
        " order by 1, 2, c.ordinal_position"
    ).fetchall()
    out: dict[tuple[str, str], list[str]] = {}
    for schema, table, column in rows:
        out.setdefault((schema, table), []).append(column)
    return out


def read_every_date(url: str) -> int:
    """Fetch every date and timestamp value of marts, intermediate and ml; return how many."""
    values = 0
    with psycopg.connect(url) as conn:
        relations = date_columns(conn)
        assert ("marts", "topic_mastery") in relations
        assert ("intermediate", "incremental_watermarks") in relations
        for (schema, table), columns in relations.items():
            query = sql.SQL("select {} from {}.{}").format(
                sql.SQL(", ").join(map(sql.Identifier, columns)),
                sql.Identifier(schema),
                sql.Identifier(table),
            )
            try:
                rows = conn.execute(query).fetchall()
            except psycopg.DataError as err:
                pytest.fail(f"{schema}.{table} ({', '.join(columns)}): {err}")
            values += len(rows) * len(columns)
    return values


def test_every_date_is_readable(nightly):
    url, _ = nightly
    assert read_every_date(url) > 10_000


def test_next_night_folds_forward_from_the_capped_state(nightly):
    url, target = nightly
    with psycopg.connect(url) as conn:
        bank = questions(conn, TOPIC_DAILY)
        today = at(TODAY, 0, 1)
        track(conn, [answer(LEARNERS.diligent, today, bank[0])])
    run_pipeline(RunContext(url=url, target_path=target), nightly_steps())
    with psycopg.connect(url) as conn:
        state = conn.execute(
            "select reviews, interval_days, next_review_date"
            " from marts.topic_mastery where user_id = %s and topic_id = %s",
            (LEARNERS.diligent, TOPIC_DAILY),
        ).fetchone()
    assert state == (
        DILIGENT_DAYS + 1,
        SM2_MAX_INTERVAL_DAYS,
        TODAY.date() + timedelta(days=SM2_MAX_INTERVAL_DAYS),
    )
    read_every_date(url)


# --------------------------------------------------------------------------- learner rows


def test_learner_rows_that_no_model_could_compute_are_repaired_then_refused(database_factory):
    """Migration 0012: an unknown or far-off time zone, or an exam date psycopg cannot read, is
    repaired in stored rows (they failed every model before) and refused from then on."""
    url = database_factory("studyin_learner_rows", migrated=False)
    script = ScriptDirectory.from_config(migrate.alembic_config(url))
    before = script.get_revision("0012_learner_row_ranges").down_revision
    migrate.upgrade(url, before)
    stored = {
        uuid.UUID(int=1): ("Mars/Base", "2027-05-01"),
        uuid.UUID(int=2): ("UTC+99", "10000-01-01"),
        uuid.UUID(int=3): ("Pacific/Kiritimati", "0044-03-15 BC"),
        uuid.UUID(int=4): ("America/St_Johns", "9999-12-31"),
    }
    with psycopg.connect(url) as conn:
        for user, (zone, exam) in stored.items():
            conn.execute(
                "insert into app.users (id, timezone, cohort, exam_target, exam_date)"
                " values (%s, %s, 'c', 't', %s::date)",
                (user, zone, exam),
            )
    migrate.upgrade(url)
    with psycopg.connect(url) as conn:
        rows = conn.execute("select id, timezone, exam_date from app.users order by id").fetchall()
        assert rows == [
            (uuid.UUID(int=1), "UTC", date(2027, 5, 1)),
            (uuid.UUID(int=2), "UTC", None),
            (uuid.UUID(int=3), "Pacific/Kiritimati", None),
            (uuid.UUID(int=4), "America/St_Johns", date(9999, 12, 31)),
        ]
        refused = [
            ("Mars/Base", None, "not recognized"),
            ("<+20>-20", None, "users_timezone_usable"),
            ("Etc/GMT+12", "10000-01-01", "users_exam_date_readable"),
        ]
        for zone, exam, message in refused:
            with pytest.raises(psycopg.DatabaseError, match=message), conn.transaction():
                conn.execute(
                    "insert into app.users (id, timezone, cohort, exam_target, exam_date)"
                    " values (%s, %s, 'c', 't', %s::date)",
                    (uuid.uuid4(), zone, exam),
                )
    migrate.downgrade(url, before)
    migrate.upgrade(url)
