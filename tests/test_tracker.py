"""The event tracker against a real PostgreSQL: append-only log, idempotency, partitions, bad input,
IP anonymisation, atomicity, the batch path and live sessions.

Every test makes its own learners (fresh UUIDs) so tests sharing the module database never see
each other's rows.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import errors

from python_jobs.ingest.events import (
    Event,
    ExamResult,
    GenericEvent,
    MaterialInteraction,
    QuestionAttempt,
    SessionEnd,
    SessionHeartbeat,
    SessionStart,
)
from python_jobs.ingest.tracker import (
    BatchIncomplete,
    BatchResult,
    Tracker,
    ValidationError,
    close_idle_sessions,
)
from python_jobs.ingest.validation import (
    EXPECTED,
    REJECTED_PAYLOAD_LIMIT,
    ExamFields,
    MaterialFields,
    QuestionFields,
    SessionEndFields,
    anonymise_ip,
    mask_ip_addresses,
)
from python_jobs.warehouse import migrate
from python_jobs.warehouse.deletion import apply_deletions, request_deletion

# Question bank of the module: question id -> (topic id, correct answer).
QUESTIONS = {101: (2, "A"), 102: (2, "C"), 103: (3, "E")}
MATERIALS = (201, 202)


@dataclass(frozen=True)
class Ref:
    url: str

    def new_user(self) -> uuid.UUID:
        uid = uuid.uuid4()
        with psycopg.connect(self.url) as conn:
            conn.execute(
                "insert into app.users (id, timezone, cohort, exam_target) "
                "values (%s, 'Europe/Berlin', '2026-fall', 'step1')",
                (uid,),
            )
        return uid


@pytest.fixture(scope="module")
def ref(migrated_db: str) -> Ref:
    """A small reference set: two topics under a system, three questions, two materials."""
    with psycopg.connect(migrated_db) as conn:
        conn.execute(
            "insert into app.topics (id, parent_id, level, name, path, board_exam_weight) values "
            "(1, null, 'system', 'Cardiology', 'cardio', 0.5), "
            "(2, 1, 'subject', 'Heart failure', 'cardio/hf', 0.3), "
            "(3, 1, 'subject', 'Arrhythmia', 'cardio/arr', 0.2)"
        )
        for qid, (topic, answer) in QUESTIONS.items():
            conn.execute(
                "insert into app.questions (id, topic_id, difficulty, correct_answer) "
                "values (%s, %s, 0.5, %s)",
                (qid, topic, answer),
            )
        for mid in MATERIALS:
            conn.execute(
                "insert into app.materials (id, topic_id, kind, est_minutes) "
                "values (%s, 2, 'chapter', 15)",
                (mid,),
            )
    return Ref(migrated_db)


@pytest.fixture
def tracker(conn: psycopg.Connection, ref: Ref) -> Iterator[Tracker]:
    """Batches of any size go through the worker connections (the default needs 10,000 events);
    single events and the Trackers tests make themselves run inline."""
    yield Tracker(conn, parallel_from=1)


_SECOND = timedelta(seconds=1)


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def question(user: uuid.UUID, **kw) -> QuestionAttempt:
    fields = {
        "event_id": uuid.uuid4(),
        "user_id": user,
        "occurred_at": _now() - timedelta(minutes=5),
        "question_id": 101,
        "selected_answer": "A",
        "time_to_answer_ms": 42_000,
        "confidence_level": 4,
    }
    return QuestionAttempt(**(fields | kw))


def material(user: uuid.UUID, **kw) -> MaterialInteraction:
    fields = {
        "event_id": uuid.uuid4(),
        "user_id": user,
        "occurred_at": _now() - timedelta(minutes=5),
        "material_id": 201,
        "interaction_type": "progress",
        "progress": 0.5,
        "active_seconds": 120,
    }
    return MaterialInteraction(**(fields | kw))


def page_view(user: uuid.UUID, **kw) -> GenericEvent:
    fields = {
        "event_type": "page_view",
        "event_id": uuid.uuid4(),
        "user_id": user,
        "occurred_at": _now() - timedelta(minutes=5),
        "properties": {"screen": "qbank"},
    }
    return GenericEvent(**(fields | kw))


def _count(conn: psycopg.Connection, table: str, event_id: uuid.UUID) -> int:
    return conn.execute(
        f"select count(*) from app.{table} where event_id = %s", (event_id,)
    ).fetchone()[0]


def _rejections(conn: psycopg.Connection, user: uuid.UUID | None = None) -> list[tuple]:
    rows = conn.execute(
        "select reason, payload, payload_bytes, user_id from app.rejected_events "
        "where user_id is not distinct from %s order by id",
        (user,),
    ).fetchall()
    return rows


# --------------------------------------------------------------------------- append-only log


def test_update_delete_and_truncate_of_study_events_are_refused(conn, tracker, ref):
    user = ref.new_user()
    event = page_view(user)
    assert tracker.track(event) is True
    for statement in (
        "update app.study_events set properties = '{}' where event_id = %s",
        "delete from app.study_events where event_id = %s",
        "truncate app.study_events",
    ):
        with pytest.raises(errors.InsufficientPrivilege, match="append-only"):
            conn.execute(statement, (event.event_id,) if "%s" in statement else None)
        conn.rollback()
    stored = conn.execute(
        "select properties from app.study_events where event_id = %s", (event.event_id,)
    ).fetchone()
    assert stored == ({"screen": "qbank"},)


def _receipt_ids(conn: psycopg.Connection) -> set[uuid.UUID]:
    return {r[0] for r in conn.execute("select event_id from app.event_receipts")}


def test_delete_user_erases_the_learner_everywhere_and_nobody_else(conn, tracker, ref):
    gone, kept = ref.new_user(), ref.new_user()
    session = uuid.uuid4()
    t0 = _now() - timedelta(hours=1)
    for user in (gone, kept):
        sid = session if user == gone else uuid.uuid4()
        tracker.track_batch(
            [
                SessionStart(event_id=uuid.uuid4(), user_id=user, occurred_at=t0, session_id=sid),
                question(user, occurred_at=t0 + timedelta(minutes=1), session_id=sid),
                material(user, occurred_at=t0 + timedelta(minutes=2), session_id=sid),
                ExamResult(
                    event_id=uuid.uuid4(),
                    user_id=user,
                    occurred_at=t0 + timedelta(minutes=3),
                    exam_kind="practice",
                    scaled_score=210,
                    passed=True,
                ),
            ]
        )
        with pytest.raises(ValidationError):
            tracker.track(question(user, confidence_level=9))
    tables = [
        r[0]
        for r in conn.execute(
            "select c.table_name from information_schema.columns as c "
            "join information_schema.tables as t using (table_schema, table_name) "
            "where c.table_schema = 'app' and c.column_name = 'user_id' "
            "and t.table_type = 'BASE TABLE' and c.table_name not like 'study_events_%'"
        )
    ]
    assert {"study_events", "question_attempts", "study_sessions"} <= set(tables)

    def rows_of(user: uuid.UUID) -> dict[str, int]:
        counts = {
            t: conn.execute(f"select count(*) from app.{t} where user_id = %s", (user,)).fetchone()[
                0
            ]
            for t in tables
        }
        # a receipt holds the event_id only: found through the events the learner sent
        counts["event_receipts"] = len(receipts[user] & _receipt_ids(conn))
        return counts

    receipts = {
        u: {
            r[0]
            for r in conn.execute("select event_id from app.study_events where user_id = %s", (u,))
        }
        for u in (gone, kept)
    }

    before = rows_of(gone)
    assert before["study_events"] == 4 and before["question_attempts"] == 1
    assert before["event_receipts"] == 4
    assert before["rejected_events"] == 1 and before["study_sessions"] == 1
    kept_before = rows_of(kept)

    conn.execute("select app.delete_user(%s)", (gone,))
    conn.commit()
    assert all(n == 0 for n in rows_of(gone).values()), rows_of(gone)
    assert conn.execute("select count(*) from app.users where id = %s", (gone,)).fetchone() == (0,)
    assert rows_of(kept) == kept_before


# --------------------------------------------------------------------------- idempotency


def test_repeated_event_id_is_stored_once_single_path(conn, tracker, ref):
    user = ref.new_user()
    event = question(user)
    assert tracker.track(event) is True
    assert tracker.track(event) is False
    # A retry received later (trusted back-fill with another received_at) is the same event.
    retry = QuestionAttempt(**(event.__dict__ | {"received_at": _now()}))
    assert tracker.track(retry) is False
    for table in ("event_receipts", "study_events", "question_attempts"):
        assert _count(conn, table, event.event_id) == 1, table


def test_repeated_event_id_is_stored_once_batch_path(conn, tracker, ref):
    user = ref.new_user()
    stored_before = question(user)
    tracker.track(stored_before)
    fresh = [question(user), material(user), page_view(user)]
    batch = [fresh[0], stored_before, fresh[1], fresh[0], fresh[2], fresh[1]]
    result = tracker.track_batch(batch, chunk_size=4)  # repeats within and across chunks
    assert result == BatchResult(accepted=3, duplicates=3, rejected=0, rejections=[])
    for event in [*fresh, stored_before]:
        assert _count(conn, "event_receipts", event.event_id) == 1
        assert _count(conn, "study_events", event.event_id) == 1
    assert tracker.track_batch(batch) == BatchResult(accepted=0, duplicates=6, rejected=0)


@pytest.mark.parametrize("parallel_from", [1, 10_000], ids=["workers", "inline"])
def test_repeats_in_a_large_batch_take_the_fallback_path(conn, ref, parallel_from):
    """Large batches insert receipts without ON CONFLICT first; a repeat makes the batch go in
    again with it, and the counts are the same."""
    user = ref.new_user()
    tracker = Tracker(conn, parallel_from=parallel_from)
    stored = [page_view(user), page_view(user)]
    tracker.track_batch(stored)
    changed = GenericEvent(**(stored[1].__dict__ | {"properties": {"screen": "other"}}))
    fresh = [page_view(user) for _ in range(1200)]
    result = tracker.track_batch([*fresh[:600], stored[0], changed, *fresh[600:]])
    assert (result.accepted, result.duplicates, result.rejected) == (1200, 1, 1)
    assert [i for i, _ in result.rejections] == [601]
    assert conn.execute(
        "select count(*) from app.study_events where user_id = %s", (user,)
    ).fetchone() == (1202,)


def test_repeated_event_id_with_different_content_keeps_the_first_and_rejects_the_rest(
    conn, tracker, ref
):
    user = ref.new_user()
    first = question(user, selected_answer="A")
    assert tracker.track(first) is True
    changed = QuestionAttempt(**(first.__dict__ | {"selected_answer": "B"}))
    with pytest.raises(ValidationError, match="event_id: already stored with different content"):
        tracker.track(changed)
    other = page_view(user)
    other_changed = GenericEvent(**(other.__dict__ | {"properties": {"screen": "stats"}}))
    result = tracker.track_batch([other, changed, other_changed, other])
    assert (result.accepted, result.duplicates, result.rejected) == (1, 1, 2)
    assert [i for i, _ in result.rejections] == [1, 2]
    assert all(reason.startswith("event_id: already stored") for _, reason in result.rejections)
    assert conn.execute(
        "select selected_answer, is_correct from app.question_attempts where event_id = %s",
        (first.event_id,),
    ).fetchone() == ("A", True)
    assert conn.execute(
        "select properties from app.study_events where event_id = %s", (other.event_id,)
    ).fetchone() == ({"screen": "qbank"},)
    assert len(_rejections(conn, user)) == 3


def test_a_repeat_sent_with_another_learner_or_time_is_found_to_differ(conn, tracker, ref):
    """The receipt holds only the event_id: a repeat's stored version is looked up by the
    repeat's own learner and time, and not finding it there means its content differs."""
    user, other_user = ref.new_user(), ref.new_user()
    first = question(user)
    assert tracker.track(first) is True
    moved = QuestionAttempt(**(first.__dict__ | {"user_id": other_user}))
    later = QuestionAttempt(**(first.__dict__ | {"occurred_at": first.occurred_at + _SECOND}))
    with pytest.raises(ValidationError, match="already stored with different content"):
        tracker.track(later)
    result = tracker.track_batch([moved, first, later])
    assert (result.accepted, result.duplicates, result.rejected) == (0, 1, 2)
    assert [i for i, _ in result.rejections] == [0, 2]
    for table in ("event_receipts", "study_events", "question_attempts"):
        assert _count(conn, table, first.event_id) == 1, table


def test_an_event_without_properties_stores_null_and_repeats_as_the_same(conn, tracker, ref):
    user = ref.new_user()
    bare, screen = question(user), page_view(user)
    assert tracker.track_batch([bare, screen]).accepted == 2
    stored = dict(
        conn.execute(
            "select event_id, properties from app.study_events where event_id = any(%s)",
            ([bare.event_id, screen.event_id],),
        )
    )
    assert stored == {bare.event_id: None, screen.event_id: {"screen": "qbank"}}
    emptied = GenericEvent(**(screen.__dict__ | {"properties": {}}))
    result = tracker.track_batch([bare, emptied])
    assert (result.duplicates, result.rejected) == (1, 1)


# --------------------------------------------------------------------------- partitions


def test_next_month_partition_exists_after_the_pipeline_partition_step(database_factory):
    url = database_factory()
    with psycopg.connect(url) as conn:
        today = conn.execute("select (now() at time zone 'UTC')::date").fetchone()[0]
        nxt = date(today.year + today.month // 12, today.month % 12 + 1, 1)
        name = f"study_events_{nxt:%Y_%m}"
        conn.execute(f"drop table app.{name}")  # undo what the migration made ahead of time
        conn.commit()
        assert conn.execute("select to_regclass(%s)", (f"app.{name}",)).fetchone() == (None,)
        made = migrate.ensure_partitions(conn)
        assert made >= 1
        bounds = conn.execute(
            "select pg_get_expr(c.relpartbound, c.oid) from pg_class as c "
            "where c.oid = to_regclass(%s)",
            (f"app.{name}",),
        ).fetchone()
    assert bounds is not None and f"'{nxt:%Y-%m-%d}" in bounds[0]


def test_tracker_creates_partitions_for_old_months_it_receives(conn, ref):
    user = ref.new_user()
    old = _now() - timedelta(days=400)
    name = f"app.study_events_{old:%Y_%m}"
    assert conn.execute("select to_regclass(%s)", (name,)).fetchone() == (None,)
    assert Tracker(conn).track(page_view(user, occurred_at=old)) is True
    assert conn.execute("select to_regclass(%s)::text", (name,)).fetchone() == (name,)


def _blocks_read_for_rows_received_after(conn, table: str, after: datetime) -> int:
    """Heap blocks a BRIN search for rows received after `after` reads from one partition."""
    conn.execute("set local enable_seqscan = off")
    plan = conn.execute(
        f"explain (analyze, format json) select count(*) from {table} where received_at > %s",
        (after,),
    ).fetchone()[0]
    scan = plan[0]["Plan"]["Plans"][0]
    assert scan["Node Type"] == "Bitmap Heap Scan", scan["Node Type"]
    return scan.get("Lossy Heap Blocks", 0) + scan.get("Exact Heap Blocks", 0)


def test_brin_summaries_let_old_partitions_be_skipped(conn, tracker, ref):
    user = ref.new_user()
    month = _now() - timedelta(days=700)
    table = f"app.study_events_{month:%Y_%m}"
    # a BRIN index summarizes the first range of 128 blocks when it is made: fill more than that
    note = {"screen": "x" * 1000}
    tracker.track_batch([page_view(user, occurred_at=month, properties=note) for _ in range(2000)])
    # nothing in the partition was received in the future, but the ranges without a summary
    # match every search
    future = _now() + timedelta(days=1)
    assert _blocks_read_for_rows_received_after(conn, table, future) > 0
    conn.rollback()

    index = f"{table}_received_at_idx"
    with psycopg.connect(ref.url) as vacuuming:  # holds the lock a VACUUM of the partition takes
        vacuuming.execute(f"lock table {table} in share update exclusive mode")
        summarized, skipped = migrate.summarize_brin_ranges(conn, lock_timeout="100ms")
    assert skipped == [index]
    assert _blocks_read_for_rows_received_after(conn, table, future) > 0
    conn.rollback()

    summarized, skipped = migrate.summarize_brin_ranges(conn)
    assert summarized >= 1 and skipped == []
    assert _blocks_read_for_rows_received_after(conn, table, future) == 0
    assert _blocks_read_for_rows_received_after(conn, table, _now() - timedelta(days=1)) > 0
    conn.rollback()
    assert migrate.summarize_brin_ranges(conn) == (0, [])


# --------------------------------------------------------------------------- bad input


def _big_properties() -> dict:
    return {"screen": "x" * (10 * 1024 * 1024)}


BAD_INPUT: list[tuple[str, Callable[[uuid.UUID], Event], str, str]] = [
    (
        "unknown event type",
        lambda u: page_view(u, event_type="quiz_taken"),
        "event_type",
        "unknown event type 'quiz_taken'",
    ),
    ("unknown user", lambda u: question(uuid.uuid4()), "user_id", "unknown user"),
    (
        "occurred_at more than a day ahead",
        lambda u: question(u, occurred_at=_now() + timedelta(days=1, minutes=5)),
        "occurred_at",
        "more than 1 day after the receive time",
    ),
    (
        "negative time_to_answer_ms",
        lambda u: question(u, time_to_answer_ms=-1),
        "time_to_answer_ms",
        "must be a non-negative integer, got -1",
    ),
    (
        "negative active_seconds",
        lambda u: material(u, active_seconds=-30),
        "active_seconds",
        "must be a non-negative integer, got -30",
    ),
    (
        "confidence_level 7",
        lambda u: question(u, confidence_level=7),
        "confidence_level",
        "must be 1-5 or null, got 7",
    ),
    (
        "progress 1.5",
        lambda u: material(u, progress=1.5),
        "progress",
        "must be between 0 and 1 or null, got 1.5",
    ),
    (
        "properties not an object",
        lambda u: page_view(u, properties=["qbank"]),
        "properties",
        "must be a JSON object, got array",
    ),
    (
        "10 MB properties",
        lambda u: page_view(u, properties=_big_properties()),
        "properties",
        "over the 65536-byte limit",
    ),
    (
        "naive occurred_at",
        lambda u: question(u, occurred_at=datetime(2026, 1, 5, 9, 30)),
        "occurred_at",
        "must be timezone-aware",
    ),
    (
        "unknown question",
        lambda u: question(u, question_id=999),
        "question_id",
        "unknown question 999",
    ),
    (
        "unknown material",
        lambda u: material(u, material_id=999),
        "material_id",
        "unknown material 999",
    ),
    (
        "bad selected_answer",
        lambda u: question(u, selected_answer="F"),
        "selected_answer",
        "must be one of A-E or null, got 'F'",
    ),
    (
        "bad exam score",
        lambda u: ExamResult(
            event_id=uuid.uuid4(),
            user_id=u,
            occurred_at=_now(),
            exam_kind="final",
            scaled_score=301,
            passed=True,
        ),
        "scaled_score",
        "must be an integer 1-300, got 301",
    ),
    (
        "invalid ip",
        lambda u: page_view(u, ip="300.1.2.3"),
        "ip",
        "not a valid IPv4 or IPv6 address",
    ),
    (
        "session event without a session",
        lambda u: SessionHeartbeat(event_id=uuid.uuid4(), user_id=u, occurred_at=_now()),
        "session_id",
        "required for session_heartbeat",
    ),
]


@pytest.mark.parametrize(
    ("make", "field", "message"), [c[1:] for c in BAD_INPUT], ids=[c[0] for c in BAD_INPUT]
)
def test_bad_input_raises_a_clear_error_and_leaves_a_rejected_row(
    conn, tracker, ref, make, field, message
):
    user = ref.new_user()
    event = make(user)
    with pytest.raises(ValidationError) as caught:
        tracker.track(event)
    err = caught.value
    assert field in {e.field for e in err.errors}
    assert f"{field}: " in str(err) and message in str(err), str(err)
    claimed = event.user_id
    rows = _rejections(conn, claimed)
    assert len(rows) == 1
    reason, payload, payload_bytes, _ = rows[0]
    assert reason == str(err)
    assert len(payload.encode()) <= REJECTED_PAYLOAD_LIMIT
    assert str(event.event_id) in payload
    assert payload_bytes >= len(payload.encode())
    for table in ("event_receipts", "study_events"):
        assert _count(conn, table, event.event_id) == 0


def test_ten_megabyte_payload_is_kept_truncated_with_its_size(conn, tracker, ref):
    user = ref.new_user()
    with pytest.raises(ValidationError, match="properties: 10485773 bytes as JSON"):
        tracker.track(page_view(user, properties=_big_properties()))
    ((_, payload, payload_bytes, _),) = _rejections(conn, user)
    assert payload_bytes > 10 * 1024 * 1024
    assert len(payload.encode()) == REJECTED_PAYLOAD_LIMIT


def test_properties_are_measured_as_the_database_stores_them(conn, ref):
    """Under the limit as JSON text, but larger as JSONB (numbers and keys cost more there):
    refused with its stored size, without failing the rest of the batch."""
    user = ref.new_user()
    tracker = Tracker(conn, max_properties_bytes=64, parallel_from=1)
    search = {"query": "", "results": 1, "topic_id": 2}  # 37 bytes of text, 68 as JSONB
    digits = page_view(user, event_type="search", properties=search)
    fine = page_view(user, event_type="search", properties={"results": 1, "topic_id": 2})
    result = tracker.track_batch([fine, digits, page_view(user)])
    assert (result.accepted, result.rejected) == (2, 1)
    index, reason = result.rejections[0]
    assert index == 1 and reason.startswith("properties: ")
    stored = int(reason.split()[1])
    assert stored > 64 and reason.endswith("bytes as stored JSONB, over the 64-byte limit")
    assert _count(conn, "study_events", digits.event_id) == 0
    assert _count(conn, "study_events", fine.event_id) == 1


class _Letter(str):
    """A string subclass, as a client library might hand over."""


class _Liar(str):
    """A string that claims to equal anything."""

    def __eq__(self, other: object) -> bool:
        return True

    __hash__ = str.__hash__


def test_typed_fields_are_stored_as_their_schema_read_them(conn, tracker, ref):
    """Each kind's typed fields pass its pydantic schema, and what is stored is the schema's
    value: a str subclass spelling "C" is stored and graded as the plain answer C; one claiming to
    equal every answer is refused on its spelling, and so is a bool given as a count."""
    user = ref.new_user()
    plain = question(user, question_id=102, selected_answer=_Letter("C"))
    liar = question(user, selected_answer=_Liar("Z"))
    counted = question(user, attempt_number=True)
    result = tracker.track_batch([plain, liar, counted])
    assert (result.accepted, result.rejected) == (1, 2)
    assert result.rejections == [
        (1, "selected_answer: must be one of A-E or null, got 'Z'"),
        (2, "attempt_number: must be a positive integer, got True"),
    ]
    assert conn.execute(
        "select selected_answer, is_correct, attempt_number from app.question_attempts"
        " where event_id = %s",
        (plain.event_id,),
    ).fetchone() == ("C", True, 1)


def test_every_typed_field_says_what_it_expects():
    """A field a schema gains without its message would turn a bad value into 'could not be
    checked'; no field outside the schemas has one."""
    schemas = (QuestionFields, MaterialFields, ExamFields, SessionEndFields)
    assert {name for schema in schemas for name in schema.model_fields} == set(EXPECTED)


def test_every_problem_of_an_event_is_reported_at_once(conn, tracker, ref):
    user = ref.new_user()
    event = question(user, confidence_level=0, time_to_answer_ms=-5, selected_answer="a")
    with pytest.raises(ValidationError) as caught:
        tracker.track(event)
    assert [e.field for e in caught.value.errors] == [
        "selected_answer",
        "time_to_answer_ms",
        "confidence_level",
    ]
    assert str(caught.value) == (
        "selected_answer: must be one of A-E or null, got 'a'; "
        "time_to_answer_ms: must be a non-negative integer, got -5; "
        "confidence_level: must be 1-5 or null, got 0"
    )


PAYLOAD_CASES = [
    ("malformed JSON", '{"event_type": "page_view", ', "payload", "malformed JSON"),
    ("not an object", "[1, 2]", "payload", "must be a JSON object, got list"),
    ("no event type", "{}", "event_type", "required"),
    ("unknown event type", '{"event_type": "telepathy"}', "event_type", "unknown event type"),
    ("bad uuid", {"event_id": "not-a-uuid"}, "event_id", "must be a UUID"),
    ("offset missing", {"occurred_at": "2026-11-20T10:00:00"}, "occurred_at", "UTC offset"),
    ("string properties", {"properties": "page=qbank"}, "properties", "got string"),
    ("wrong type", {"confidence_level": "high"}, "confidence_level", "got 'high'"),
    ("unexpected field", {"colour": "red"}, "colour", "unexpected field"),
]


@pytest.mark.parametrize(
    ("payload", "field", "message"),
    [c[1:] for c in PAYLOAD_CASES],
    ids=[c[0] for c in PAYLOAD_CASES],
)
def test_bad_json_payloads_are_rejected_with_the_field_named(
    conn, tracker, ref, payload, field, message
):
    user = ref.new_user()
    if isinstance(payload, dict):
        base = {
            "event_type": "question_attempt",
            "event_id": str(uuid.uuid4()),
            "user_id": str(user),
            "occurred_at": _now().isoformat(),
            "question_id": 101,
            "selected_answer": "A",
        }
        payload = json.dumps(base | payload)
    count = "select count(*) from app.rejected_events"
    before = conn.execute(count).fetchone()[0]
    with pytest.raises(ValidationError) as caught:
        tracker.track_payload(payload)
    err = caught.value
    assert any(e.field == field and message in e.message for e in err.errors), str(err)
    assert conn.execute(count).fetchone()[0] == before + 1
    latest = conn.execute("select reason from app.rejected_events order by id desc limit 1")
    assert latest.fetchone() == (str(err),)


def test_good_json_payload_is_stored_with_derived_fields(conn, tracker, ref):
    user = ref.new_user()
    event_id = uuid.uuid4()
    payload = {
        "event_type": "question_attempt",
        "event_id": str(event_id),
        "user_id": str(user),
        "occurred_at": "2026-11-20T10:00:00+01:00",
        "question_id": 102,
        "selected_answer": "B",
        "time_to_answer_ms": 31000,
        "confidence_level": None,
        "hint_used": True,
        "properties": {"mode": "tutor"},
        "ip": "198.51.100.23",
    }
    assert tracker.track_payload(json.dumps(payload).encode()) is True
    assert tracker.track_payload(payload) is False
    row = conn.execute(
        "select topic_id, is_correct, hint_used, confidence_level, answered_at "
        "from app.question_attempts where event_id = %s",
        (event_id,),
    ).fetchone()
    assert row == (2, False, True, None, datetime(2026, 11, 20, 9, 0, tzinfo=UTC))


# --------------------------------------------------------------------------- the batch path


def test_batch_stores_good_events_and_rejects_bad_ones_with_counts(conn, tracker, ref):
    user = ref.new_user()
    good = [question(user, question_id=q, selected_answer="C") for q in QUESTIONS]
    good += [material(user), page_view(user)]
    bad = {
        1: question(user, confidence_level=7),
        4: material(user, progress=1.5),
        6: page_view(uuid.uuid4()),
    }
    batch: list[Event] = []
    it = iter(good)
    for i in range(len(good) + len(bad)):
        batch.append(bad[i] if i in bad else next(it))
    seen: list[int] = []
    result = tracker.track_batch(batch, chunk_size=3, progress=seen.append)
    assert seen == [3, 3, 2]
    assert (result.accepted, result.duplicates, result.rejected) == (5, 0, 3)
    assert [i for i, _ in result.rejections] == [1, 4, 6]
    assert result.rejections[0][1] == "confidence_level: must be 1-5 or null, got 7"
    assert result.rejections[1][1] == "progress: must be between 0 and 1 or null, got 1.5"
    assert result.rejections[2][1].startswith("user_id: unknown user")
    correct = conn.execute(
        "select question_id, is_correct, topic_id from app.question_attempts "
        "where user_id = %s order by question_id",
        (user,),
    ).fetchall()
    assert correct == [(101, False, 2), (102, True, 2), (103, False, 3)]
    assert len(_rejections(conn, user)) == 2
    for i in bad:
        assert _count(conn, "study_events", batch[i].event_id) == 0


def test_non_event_objects_in_a_batch_are_rejected_not_dropped(conn, tracker, ref):
    user = ref.new_user()
    result = tracker.track_batch([page_view(user), {"event_type": "page_view"}, None])
    assert (result.accepted, result.rejected) == (1, 2)
    assert "must be an instance of an event class" in result.rejections[0][1]


def test_received_at_is_the_server_clock_unless_trusted(conn, ref):
    user = ref.new_user()
    claimed = _now() - timedelta(hours=3)
    plain, trusted = Tracker(conn), Tracker(conn, trust_received_at=True)
    a = page_view(user, occurred_at=claimed - timedelta(minutes=1), received_at=claimed)
    b = page_view(user, occurred_at=claimed - timedelta(minutes=1), received_at=claimed)
    before = datetime.now(UTC)
    plain.track(a)
    trusted.track_batch([b])
    got = dict(
        conn.execute(
            "select event_id, received_at from app.study_events where event_id = any(%s)",
            ([a.event_id, b.event_id],),
        ).fetchall()
    )
    assert got[a.event_id] >= before
    assert got[b.event_id] == claimed
    typed = material(user, received_at=claimed, occurred_at=claimed)
    trusted.track(typed)
    assert conn.execute(
        "select received_at from app.material_interactions where event_id = %s", (typed.event_id,)
    ).fetchone() == (claimed,)


# --------------------------------------------------------------------------- IP addresses


IPV4, IPV6 = "203.0.113.77", "2001:db8:85a3:8d3:1319:8a2e:370:7348"
IPV6_FORMS = (IPV6, "2001:0db8:85a3:08d3:1319:8a2e:0370:7348")


def test_ip_addresses_are_stored_only_as_24_and_48_prefixes(conn, tracker, ref):
    user = ref.new_user()
    v4, v6 = page_view(user, ip=IPV4), question(user, ip=IPV6_FORMS[1])
    mapped = page_view(user, ip="::ffff:" + IPV4)
    tracker.track(v4)
    tracker.track_batch([v6, mapped])
    # Rejected input keeps only prefixes too, whether typed, raw JSON or unparseable text.
    with pytest.raises(ValidationError):
        tracker.track(question(user, ip=IPV4, confidence_level=8))
    with pytest.raises(ValidationError):
        tracker.track_payload(json.dumps({"event_type": "page_view", "ip": IPV6, "user_id": 5}))
    with pytest.raises(ValidationError):
        tracker.track_payload(f'{{"ip": "{IPV4}", "note": "from {IPV6}" ')
    stored = dict(
        conn.execute(
            "select event_id, ip_prefix::text from app.study_events where event_id = any(%s)",
            ([v4.event_id, v6.event_id, mapped.event_id],),
        ).fetchall()
    )
    assert stored == {
        v4.event_id: "203.0.113.0/24",
        v6.event_id: "2001:db8:85a3::/48",
        mapped.event_id: "203.0.113.0/24",
    }

    # No column of any table in app or ml holds a full address, in any text form.
    columns = conn.execute(
        "select c.table_schema, c.table_name, c.column_name from information_schema.columns as c "
        "join information_schema.tables as t using (table_schema, table_name) "
        "where c.table_schema in ('app', 'ml') and t.table_type = 'BASE TABLE' "
        "and c.data_type in ('inet', 'cidr', 'text', 'jsonb', 'json', 'character varying', "
        "'character', 'ARRAY', 'USER-DEFINED')"
    ).fetchall()
    assert len(columns) > 20

    def scan(needles: list[str]) -> set[tuple[str, str, str]]:
        hits = set()
        for schema, table, column in columns:
            for needle in needles:
                found = conn.execute(
                    f'select count(*) from {schema}."{table}" where "{column}"::text ilike %s',
                    (f"%{needle}%",),
                ).fetchone()[0]
                if found:
                    hits.add((schema, table, column))
        return hits

    assert scan([IPV4, *IPV6_FORMS]) == set()
    # The same scan does find what is stored: the prefixes, in the log and the rejected payloads.
    assert {("app", "study_events", "ip_prefix"), ("app", "rejected_events", "payload")} <= scan(
        ["203.0.113.0/24", "2001:db8:85a3::/48"]
    )
    payloads = [r[1] for r in _rejections(conn, user)] + [
        r[0] for r in conn.execute("select payload from app.rejected_events where user_id is null")
    ]
    assert any("203.0.113.0/24" in p for p in payloads)
    assert any("2001:db8:85a3::/48" in p for p in payloads)


def test_anonymise_ip_and_masking():
    assert anonymise_ip("192.168.10.200") == "192.168.10.0/24"
    assert anonymise_ip("2a00:1450:4001:82b::200e") == "2a00:1450:4001::/48"
    assert anonymise_ip("::ffff:10.9.8.7") == "10.9.8.0/24"
    for bad in ("10.0.0.256", "10.0.0.0/8", "localhost", ""):
        with pytest.raises(ValueError):
            anonymise_ip(bad)
    assert mask_ip_addresses("a 10.1.2.3, b 2001:db8::1 c 1.2.3.4.5 v1.2") == (
        "a 10.1.2.0/24, b 2001:db8::/48 c 1.2.3.4.5 v1.2"
    )


# --------------------------------------------------------------------------- atomicity


def test_event_and_typed_row_are_written_atomically(conn, ref):
    """If the typed insert fails, neither the receipt, the event nor the session row remain; the
    event is rejected with the database's reason (a stale cache is no excuse to raise)."""
    user = ref.new_user()
    conn.execute(
        "insert into app.questions (id, topic_id, difficulty, correct_answer) "
        "values (909, 2, 0.4, 'B')"
    )
    conn.commit()
    tracker = Tracker(conn)
    with pytest.raises(ValidationError):  # loads question 909 into the tracker's cache
        tracker.track(question(user, question_id=909, confidence_level=6))
    conn.execute("delete from app.questions where id = 909")  # now the cache is stale
    conn.commit()
    session = uuid.uuid4()
    event = question(user, question_id=909, session_id=session)
    with pytest.raises(ValidationError, match="event: refused by the database: .*question 909"):
        tracker.track(event)
    ((reason, payload, _, _),) = _rejections(conn, user)[-1:]
    assert "question 909" in reason and str(event.event_id) in payload
    for table in ("event_receipts", "study_events", "question_attempts"):
        assert _count(conn, table, event.event_id) == 0, table
    assert conn.execute(
        "select count(*) from app.study_sessions where id = %s", (session,)
    ).fetchone() == (0,)
    # The tracker is still usable afterwards.
    assert tracker.track(question(user, question_id=102, session_id=session)) is True


def test_events_of_a_learner_erased_while_cached_are_rejected_not_fatal(conn, ref):
    """A long-lived tracker still has the learner in its cache when the erasure runs; late
    uploads for them are refused with a reason and the rest of the batch is stored."""
    erased, other = ref.new_user(), ref.new_user()
    tracker = Tracker(conn)
    assert tracker.track(page_view(erased)) is True
    conn.execute("select app.delete_user(%s)", (erased,))
    conn.commit()
    late = [question(erased), page_view(other), material(erased)]
    result = tracker.track_batch(late)
    assert (result.accepted, result.rejected) == (1, 2)
    assert [i for i, _ in result.rejections] == [0, 2]
    assert all("user_id: unknown user" in reason for _, reason in result.rejections)
    with pytest.raises(ValidationError, match="user_id: unknown user"):
        tracker.track(page_view(erased))
    assert _count(conn, "study_events", late[1].event_id) == 1


def test_events_of_an_erased_learner_leave_no_trace_of_them(conn, ref):
    """After the pipeline's erasure (a completed deletion request keeps only a hash), late events
    are still refused with a row in rejected_events, but that row names nobody."""
    user = ref.new_user()
    tracker = Tracker(conn)
    tracker.track(page_view(user, ip=IPV4))
    request_deletion(conn, user)
    apply_deletions(conn)
    late = page_view(user, ip=IPV4, properties={"screen": "secret-notes"})
    result = tracker.track_batch([late, page_view(user)])
    assert result.rejected == 2
    assert all("the learner was erased" in reason for _, reason in result.rejections)
    with pytest.raises(ValidationError, match="user_id: the learner was erased"):
        tracker.track_payload(
            {
                "event_type": "page_view",
                "event_id": str(uuid.uuid4()),
                "user_id": str(user),
                "occurred_at": _now().isoformat(),
            }
        )
    with pytest.raises(ValidationError, match="occurred_at: required"):  # fails to parse
        tracker.track_payload({"event_type": "page_view", "user_id": str(user), "colour": "x"})
    assert conn.execute(
        "select count(*) from app.rejected_events where payload like %s or user_id = %s",
        (f"%{user}%", user),
    ).fetchone() == (0,)
    rows = conn.execute(
        "select user_id, payload from app.rejected_events where reason like '%%was erased%%'"
    ).fetchall()
    assert len(rows) == 3
    assert all(uid is None and str(user) not in payload for uid, payload in rows)
    assert all("secret-notes" not in payload for _, payload in rows)
    # the event's own id is kept (the rows come in heap order, not in the order written)
    assert any(str(late.event_id) in payload for _, payload in rows)


def test_the_database_refuses_unknown_references_and_removing_referenced_keys(conn, tracker, ref):
    user = ref.new_user()
    with pytest.raises(errors.ForeignKeyViolation, match="is not in app.users"):
        conn.execute(
            "insert into app.study_events (event_id, user_id, event_type, occurred_at) "
            "values (gen_random_uuid(), gen_random_uuid(), 'page_view', now())"
        )
    conn.rollback()
    with pytest.raises(errors.ForeignKeyViolation, match="question 101 with topic 3"):
        conn.execute(
            "insert into app.question_attempts (event_id, user_id, question_id, topic_id, "
            "attempt_number, is_correct, time_to_answer_ms, answered_at, received_at) "
            "values (gen_random_uuid(), %s, 101, 3, 1, false, 0, now(), now())",
            (user,),
        )
    conn.rollback()
    tracker.track(question(user, question_id=103, selected_answer="E"))
    with pytest.raises(errors.ForeignKeyViolation, match="question 103"):
        conn.execute("delete from app.questions where id = 103")
    conn.rollback()
    with pytest.raises(errors.ForeignKeyViolation, match="question 103"):
        conn.execute("update app.questions set topic_id = 2 where id = 103")
    conn.rollback()
    conn.execute("update app.questions set difficulty = 0.9 where id = 103")  # not a key change
    conn.rollback()


# --------------------------------------------------------------------------- sessions


def _session(conn: psycopg.Connection, sid: uuid.UUID) -> tuple | None:
    return conn.execute(
        "select started_at, last_activity_at, ended_at, end_reason from app.study_sessions "
        "where id = %s",
        (sid,),
    ).fetchone()


def _session_events(user: uuid.UUID, sid: uuid.UUID, t0: datetime) -> list[Event]:
    """Start, activity, a 40-minute silence, activity again, an end; plus a late event."""

    def at(minutes: float) -> datetime:
        return t0 + timedelta(minutes=minutes)

    return [
        SessionHeartbeat(event_id=uuid.uuid4(), user_id=user, occurred_at=at(2), session_id=sid),
        SessionStart(event_id=uuid.uuid4(), user_id=user, occurred_at=at(0), session_id=sid),
        question(user, occurred_at=at(5), session_id=sid),
        material(user, occurred_at=at(20), session_id=sid),
        question(user, occurred_at=at(12), session_id=sid),  # late, inside the session
        question(user, occurred_at=at(61), session_id=sid),  # 41 min after the last activity
        SessionEnd(event_id=uuid.uuid4(), user_id=user, occurred_at=at(62), session_id=sid),
    ]


def test_sessions_follow_the_documented_rules(conn, tracker, ref):
    user = ref.new_user()
    t0 = _now() - timedelta(hours=3)
    sid = uuid.uuid4()
    events = _session_events(user, sid, t0)
    tracker.track(events[0])  # a heartbeat before its session_start creates the row
    assert _session(conn, sid) == (t0 + timedelta(minutes=2), t0 + timedelta(minutes=2), None, None)
    tracker.track(events[1])  # the start moves started_at back
    tracker.track(events[2])
    tracker.track(events[3])
    tracker.track(events[4])
    assert _session(conn, sid) == (t0, t0 + timedelta(minutes=20), None, None)
    tracker.track(events[5])  # idle for more than 30 minutes: closed at its last activity
    closed = (t0, t0 + timedelta(minutes=20), t0 + timedelta(minutes=20), "idle_timeout")
    assert _session(conn, sid) == closed
    tracker.track(events[6])  # a closed session is not reopened
    assert _session(conn, sid) == closed

    ended = uuid.uuid4()
    tracker.track_batch(
        [
            SessionStart(event_id=uuid.uuid4(), user_id=user, occurred_at=t0, session_id=ended),
            SessionEnd(
                event_id=uuid.uuid4(),
                user_id=user,
                occurred_at=t0 + timedelta(minutes=9),
                session_id=ended,
                end_reason="app_closed",
            ),
            question(user, occurred_at=t0 + timedelta(minutes=4), session_id=ended),
        ]
    )
    nine = t0 + timedelta(minutes=9)
    assert _session(conn, ended) == (t0, nine, nine, "app_closed")
    stored = conn.execute(
        "select properties from app.study_events "
        "where session_id = %s and event_type = 'session_end'",
        (ended,),
    ).fetchone()
    assert stored == ({"end_reason": "app_closed"},)


def test_a_batch_updates_sessions_exactly_like_single_calls(conn, tracker, ref):
    user = ref.new_user()
    t0 = _now() - timedelta(hours=5)
    one, many = uuid.uuid4(), uuid.uuid4()
    for event in _session_events(user, one, t0):
        tracker.track(event)
    result = tracker.track_batch(_session_events(user, many, t0), chunk_size=3)
    assert result.accepted == 7
    assert _session(conn, many) == _session(conn, one) is not None


def test_an_event_may_not_join_another_learners_session(conn, tracker, ref):
    owner, intruder = ref.new_user(), ref.new_user()
    sid = uuid.uuid4()
    tracker.track(
        SessionStart(event_id=uuid.uuid4(), user_id=owner, occurred_at=_now(), session_id=sid)
    )
    with pytest.raises(ValidationError, match="session_id: session .* belongs to another learner"):
        tracker.track(page_view(intruder, session_id=sid))
    fresh = uuid.uuid4()
    result = tracker.track_batch(
        [page_view(owner, session_id=fresh), page_view(intruder, session_id=fresh)]
    )
    assert (result.accepted, result.rejected) == (1, 1)
    assert len(_rejections(conn, intruder)) == 2


def test_close_idle_sessions(conn, tracker, ref):
    user = ref.new_user()
    t0 = _now() - timedelta(hours=2)
    idle, active = uuid.uuid4(), uuid.uuid4()
    tracker.track_batch(
        [
            SessionStart(event_id=uuid.uuid4(), user_id=user, occurred_at=t0, session_id=idle),
            page_view(user, occurred_at=t0 + timedelta(minutes=7), session_id=idle),
            SessionStart(
                event_id=uuid.uuid4(),
                user_id=user,
                occurred_at=t0 + timedelta(minutes=100),
                session_id=active,
            ),
        ]
    )
    now = t0 + timedelta(minutes=110)
    assert close_idle_sessions(conn, now) >= 1
    last = t0 + timedelta(minutes=7)
    assert _session(conn, idle) == (t0, last, last, "idle_timeout")
    assert _session(conn, active)[2:] == (None, None)
    assert close_idle_sessions(conn, now) == 0


SESSION_KINDS = ("start", "heartbeat", "question", "end")


def _session_event(kind: str, user: uuid.UUID, sid: uuid.UUID, at: datetime) -> Event:
    common = {"event_id": uuid.uuid4(), "user_id": user, "occurred_at": at, "session_id": sid}
    if kind == "start":
        return SessionStart(**common)
    if kind == "heartbeat":
        return SessionHeartbeat(**common)
    if kind == "end":
        return SessionEnd(**common, end_reason="app_closed")
    return QuestionAttempt(**common, question_id=102, selected_answer="C")


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    steps=st.lists(
        st.tuples(st.integers(0, 2), st.sampled_from(SESSION_KINDS), st.integers(0, 150)),
        min_size=1,
        max_size=14,
    ),
    chunk_size=st.integers(1, 6),
)
def test_any_arrival_order_gives_the_same_sessions_batched_or_one_by_one(
    conn, ref, steps, chunk_size
):
    user = ref.new_user()
    t0 = _now() - timedelta(hours=6)
    one_by_one = [uuid.uuid4() for _ in range(3)]
    batched = [uuid.uuid4() for _ in range(3)]
    single = Tracker(conn)
    for s, kind, minute in steps:
        single.track(_session_event(kind, user, one_by_one[s], t0 + timedelta(minutes=minute)))
    events = [
        _session_event(kind, user, batched[s], t0 + timedelta(minutes=minute))
        for s, kind, minute in steps
    ]
    batched_tracker = Tracker(conn, batch_connections=2, parallel_from=1)
    result = batched_tracker.track_batch(events, chunk_size=chunk_size)
    assert result.accepted == len(steps)
    for a, b in zip(one_by_one, batched, strict=True):
        assert _session(conn, a) == _session(conn, b)


def test_an_autocommit_connection_works_too(migrated_db, ref):
    user = ref.new_user()
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        tracker = Tracker(conn)
        assert tracker.track(question(user)) is True
        assert tracker.track_batch([page_view(user), material(user)]).accepted == 2
        with pytest.raises(ValidationError):
            tracker.track(question(user, confidence_level=7))
        assert conn.execute(
            "select count(*) from app.study_events where user_id = %s", (user,)
        ).fetchone() == (3,)


def test_future_check_is_relative_to_the_trusted_receive_time(conn, ref):
    user = ref.new_user()
    received = _now() - timedelta(days=5)
    tracker = Tracker(conn, trust_received_at=True)
    ahead = page_view(user, occurred_at=received + timedelta(days=2), received_at=received)
    with pytest.raises(ValidationError, match="occurred_at: .* more than 1 day after the receive"):
        tracker.track(ahead)  # three days ago by our clock, but two days after its receipt
    fine = page_view(user, occurred_at=received + timedelta(hours=20), received_at=received)
    assert tracker.track(fine) is True


# --------------------------------------------------------------------------- poison input
# Each of these once made a whole batch fail (nothing stored, nothing rejected) or escaped
# ``track``/``track_payload`` as an exception other than ValidationError.


class _Zone(tzinfo):
    """A client-made tzinfo: a fixed offset Python may refuse, or one that raises."""

    def __init__(self, offset: timedelta | None) -> None:
        self.offset = offset

    def utcoffset(self, dt: datetime | None) -> timedelta:
        if self.offset is None:
            raise RuntimeError("no such zone")
        return self.offset

    def dst(self, dt: datetime | None) -> timedelta:
        return timedelta(0)


class _Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("repr failed")

    __str__ = __repr__


def _nested(depth: int) -> dict:
    props: dict = {"leaf": 1}
    for _ in range(depth):
        props = {"a": props}
    return props


_FAR_EAST = timezone(timedelta(hours=23, minutes=59))

# name -> (make an event for a learner, expected error or None when the event is to be stored)
DROPPED = "dropped"  # the poison is a property the tracker drops: the event is stored

POISONS: dict[str, tuple[Callable[[uuid.UUID], Event], str | None]] = {
    # Properties hold declared scalar keys only: a poison under an undeclared key, or of the
    # wrong type under a declared one, is dropped (and counted) and the event is stored.
    "properties 2,000 levels deep": (lambda u: page_view(u, properties=_nested(2000)), DROPPED),
    "properties 900 levels deep with a NUL": (
        lambda u: page_view(u, properties=_nested(900) | {"x": "\x00"}),
        DROPPED,
    ),
    "declared key 2,000 levels deep": (
        lambda u: page_view(u, properties={"screen": _nested(2000)}),
        DROPPED,
    ),
    "integer of 5,000 digits in properties": (
        lambda u: page_view(u, properties={"screen": 10**5000}),
        DROPPED,
    ),
    "integer of 5,000 digits as question_id": (
        lambda u: question(u, question_id=10**5000),
        "question_id: unknown question <integer of about 5001 digits>",
    ),
    "integer of 5,000 digits as a duration": (
        lambda u: question(u, time_to_answer_ms=-(10**5000)),
        "time_to_answer_ms: must be a non-negative integer, got <integer of about 5001 digits>",
    ),
    "tzinfo with a 30-hour offset": (
        lambda u: question(
            u, occurred_at=datetime(2026, 11, 20, 10, tzinfo=_Zone(timedelta(hours=30)))
        ),
        "occurred_at: its time zone failed: ValueError(",
    ),
    "tzinfo that raises": (
        lambda u: question(u, occurred_at=datetime(2026, 11, 20, 10, tzinfo=_Zone(None))),
        "occurred_at: its time zone failed: RuntimeError('no such zone')",
    ),
    "NaN in properties": (lambda u: page_view(u, properties={"screen": float("nan")}), DROPPED),
    "a tuple as a properties key": (lambda u: page_view(u, properties={(1, 2): "x"}), DROPPED),
    "a lone surrogate in properties": (
        lambda u: page_view(u, properties={"screen": "\ud800"}),
        "properties: contains invalid Unicode",
    ),
    "an object whose repr raises": (
        lambda u: question(u, question_id=_Unprintable()),
        "question_id: must be an integer, got <unprintable _Unprintable>",
    ),
    "properties holding an object whose repr raises": (
        lambda u: page_view(u, properties={"screen": _Unprintable()}),
        DROPPED,
    ),
    "occurred_at at +23:59, in a session": (
        lambda u: SessionStart(
            event_id=uuid.uuid4(),
            user_id=u,
            session_id=uuid.uuid4(),
            occurred_at=(_now() - timedelta(minutes=5)).astimezone(_FAR_EAST),
        ),
        None,
    ),
}


def _table_counts(conn: psycopg.Connection) -> tuple[int, int]:
    return conn.execute(
        "select (select count(*) from app.study_events), (select count(*) from app.rejected_events)"
    ).fetchone()


@pytest.mark.parametrize("parallel_from", [1, 10_000], ids=["workers", "inline"])
@pytest.mark.parametrize(("make", "error"), POISONS.values(), ids=list(POISONS))
def test_one_poison_event_costs_only_itself(conn, ref, make, error, parallel_from):
    user = ref.new_user()
    tracker = Tracker(conn, parallel_from=parallel_from)
    good = [page_view(user) for _ in range(300)]
    poison = make(user)
    before = _table_counts(conn)
    result = tracker.track_batch([*good[:150], poison, *good[150:]])
    stored, rejected = (a - b for a, b in zip(_table_counts(conn), before, strict=True))
    if error in (None, DROPPED):
        assert (result.accepted, result.rejected, stored, rejected) == (301, 0, 301, 0)
        assert result.dropped_properties == (len(poison.properties) if error == DROPPED else 0)
    else:
        assert (result.accepted, result.rejected, stored, rejected) == (300, 1, 300, 1)
        assert result.rejections[0][0] == 150
        assert result.rejections[0][1].startswith(error), result.rejections[0][1]
        (reason,) = conn.execute(
            "select reason from app.rejected_events order by id desc limit 1"
        ).fetchone()
        assert reason == result.rejections[0][1]
    # One by one, the same: a ValidationError with the same reason, or stored.
    if error is None:
        again = make(user)
        assert tracker.track(again) is True
        sid = again.session_id
        assert _session(conn, sid)[1] == again.occurred_at  # the instant, whatever its offset
    elif error == DROPPED:
        assert tracker.track(make(user)) is True
    else:
        with pytest.raises(ValidationError) as caught:
            tracker.track(make(user))
        assert str(caught.value).startswith(error)


PAYLOAD_POISONS: dict[str, tuple[Callable[[dict], Any], str]] = {
    "JSON nested 100,000 levels": (lambda _: "[" * 100_000, "payload: malformed JSON"),
    "properties nested 2,000 levels": (
        lambda base: (
            json.dumps(base)[:-1] + ', "properties": ' + '{"a": ' * 2000 + "1" + "}" * 2001
        ),
        "payload: malformed JSON",  # the parser gives up first: exceeds the recursion limit
    ),
    "an integer of 5,000 digits": (
        lambda base: json.dumps(base)[:-1] + ', "properties": {"n": 1' + "0" * 5000 + "}}",
        "payload: malformed JSON: 'Exceeds the limit (4300 digits)",
    ),
    "bytes that are not UTF-8": (
        lambda base: json.dumps(base).encode()[:-1] + b', "x": "\xff\xfe"}',
        "payload: malformed JSON",
    ),
    "a repeated key": (
        lambda base: json.dumps(base)[:-1] + f', "user_id": "{uuid.uuid4()}"}}',
        "payload: repeated key 'user_id' in a JSON object",
    ),
    "two megabytes of JSON": (
        lambda base: json.dumps(base | {"properties": {"x": "y" * 2_000_000}}),
        "payload: 2000",
    ),
    "an offset of +24:00": (
        lambda base: json.dumps(base | {"occurred_at": "2026-11-20T10:00:00+24:00"}),
        "occurred_at: must be an ISO 8601 timestamp",
    ),
    "an object whose repr raises": (lambda _: _Unprintable(), "payload: must be JSON text"),
    "a mapping that cannot be read": (lambda _: _BrokenMapping(), "payload: could not be read"),
}


class _BrokenMapping(Mapping):
    def __getitem__(self, key: str) -> Any:
        raise RuntimeError("broken")

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("broken")

    def __len__(self) -> int:
        return 1


def _page_view_payload(user: uuid.UUID) -> dict[str, str]:
    """A good page_view as the JSON object a client sends, to poison."""
    return {
        "event_type": "page_view",
        "event_id": str(uuid.uuid4()),
        "user_id": str(user),
        "occurred_at": _now().isoformat(),
    }


@pytest.mark.parametrize(("make", "error"), PAYLOAD_POISONS.values(), ids=list(PAYLOAD_POISONS))
def test_poison_payloads_raise_validation_error_and_are_recorded(conn, tracker, ref, make, error):
    base = _page_view_payload(ref.new_user())
    before = _table_counts(conn)
    with pytest.raises(ValidationError) as caught:
        tracker.track_payload(make(base))
    assert str(caught.value).startswith(error), str(caught.value)
    assert _table_counts(conn) == (before[0], before[1] + 1)
    (reason, payload) = conn.execute(
        "select reason, payload from app.rejected_events order by id desc limit 1"
    ).fetchone()
    assert reason == str(caught.value)
    assert len(payload.encode()) <= REJECTED_PAYLOAD_LIMIT


@pytest.mark.parametrize(
    "properties",
    [_nested(100), {"screen": _nested(100)}, {"n": 10**5000}, {"screen": 10**5000}],
    ids=["100 levels deep", "100 levels deep, declared key", "5,000 digits", "declared key"],
)
def test_poison_properties_of_payload_objects_are_dropped(conn, tracker, ref, properties):
    """A payload given as an object may hold what JSON text cannot: properties too deep or numbers
    too long to print. They are no declared scalar: dropped and counted, the event stored."""
    base = _page_view_payload(ref.new_user())
    before, dropped = _table_counts(conn), tracker.dropped_properties
    assert tracker.track_payload(base | {"properties": properties}) is True
    assert _table_counts(conn) == (before[0] + 1, before[1])
    assert tracker.dropped_properties == dropped + 1


def test_offsets_postgresql_does_not_know_are_stored_as_the_instant(conn, tracker, ref):
    """Python accepts offsets up to +/-23:59; PostgreSQL only +/-15:59 as text."""
    user, session = ref.new_user(), uuid.uuid4()
    at = (_now() - timedelta(hours=1)).replace(microsecond=0)
    payload = {
        "event_type": "session_start",
        "event_id": str(uuid.uuid4()),
        "user_id": str(user),
        "session_id": str(session),
        "occurred_at": at.astimezone(timezone(-timedelta(hours=23, minutes=59))).isoformat(),
    }
    assert tracker.track_payload(json.dumps(payload)) is True
    assert _session(conn, session)[:2] == (at, at)


def test_trusted_receive_times_far_from_now_are_refused(conn, ref):
    user = ref.new_user()
    tracker = Tracker(conn, trust_received_at=True)
    for received in (datetime(9999, 12, 31, 23, tzinfo=_FAR_EAST), datetime(1, 1, 1, tzinfo=UTC)):
        event = page_view(user, occurred_at=received, received_at=received)
        with pytest.raises(ValidationError, match="received_at: must be between 2000-01-01 and"):
            tracker.track(event)


def _refusing_database(database_factory) -> str:
    """A database whose schema refuses what the tracker's checks let through (a stand-in for any
    check the database has and the tracker does not mirror)."""
    url = database_factory()
    with psycopg.connect(url) as conn:
        conn.execute(
            "alter table app.study_events "
            "add constraint no_poison check (properties ->> 'screen' is distinct from 'poison')"
        )
    return url


@pytest.mark.parametrize("parallel_from", [1, 10_000], ids=["workers", "inline"])
def test_an_event_the_database_refuses_is_rejected_alone(database_factory, parallel_from):
    url = _refusing_database(database_factory)
    ref = Ref(url)
    users = [ref.new_user() for _ in range(4)]
    with psycopg.connect(url) as conn:
        tracker = Tracker(conn, parallel_from=parallel_from)
        batch = [page_view(users[i % 4]) for i in range(1000)]
        for i in (10, 500, 501, 999):
            batch[i] = page_view(users[i % 4], properties={"screen": "poison"})
        result = tracker.track_batch(batch)
        assert (result.accepted, result.rejected) == (996, 4)
        assert [i for i, _ in result.rejections] == [10, 500, 501, 999]
        assert all('violates check constraint "no_poison"' in r for _, r in result.rejections)
        assert _table_counts(conn) == (996, 4)
        with pytest.raises(ValidationError, match="event: refused by the database"):
            tracker.track(page_view(users[0], properties={"screen": "poison"}))


def _connect_like(conn: psycopg.Connection, **kwargs: Any) -> psycopg.Connection:
    """A new connection as ``conn``'s login (its dsn leaves the password out)."""
    return psycopg.connect(conn.info.dsn, password=conn.info.password or None, **kwargs)


class _LosingTracker(Tracker):
    """Its worker connections are cut by the server before they are used."""

    def _open_worker(self) -> psycopg.Connection:
        conn = super()._open_worker()
        pid = conn.info.backend_pid
        with _connect_like(self.conn, autocommit=True) as admin:
            admin.execute("select pg_terminate_backend(%s)", (pid,))
        return conn


def test_a_lost_worker_connection_costs_no_event(conn, ref):
    users = [ref.new_user() for _ in range(8)]
    tracker = _LosingTracker(conn, parallel_from=1)
    batch = [page_view(users[i % 8]) for i in range(3000)]
    batch[7] = page_view(users[0], properties=[1])  # one rejection
    before = _table_counts(conn)
    result = tracker.track_batch(batch, chunk_size=1000)
    assert (result.accepted, result.rejected) == (2999, 1)
    assert _table_counts(conn) == (before[0] + 2999, before[1] + 1)


def test_a_batch_cut_short_says_which_events_were_not_stored(conn, ref):
    user = ref.new_user()
    tracker = Tracker(conn, batch_connections=0)
    pid = conn.info.backend_pid

    def cut(_: int) -> None:  # after the first chunk, the server ends the tracker's session
        with _connect_like(conn, autocommit=True) as admin:
            admin.execute("select pg_terminate_backend(%s)", (pid,))

    batch = [page_view(user) for _ in range(300)]
    with pytest.raises(BatchIncomplete) as caught:
        tracker.track_batch(iter(batch), chunk_size=100, progress=cut)
    err = caught.value
    assert (err.result.accepted, err.unsettled, err.read) == (100, list(range(100, 200)), 200)
    assert isinstance(err.__cause__, psycopg.OperationalError)
    with _connect_like(conn) as fresh:
        stored = fresh.execute(
            "select count(*) from app.study_events where user_id = %s", (user,)
        ).fetchone()
        assert stored == (100,)
        result = Tracker(fresh).track_batch(batch)  # sending all again is safe
        assert (result.accepted, result.duplicates) == (200, 100)


def _one_by_one_outcome(tracker: Tracker, events: list[Event]) -> tuple[int, int, list[int]]:
    stored, rejected = 0, []
    for i, event in enumerate(events):
        try:
            stored += tracker.track(event)
        except ValidationError:
            rejected.append(i)
    return stored, len(events) - stored - len(rejected), rejected


def _repeat_cases(users: list[uuid.UUID]) -> dict[str, Callable[[], tuple[list, list]]]:
    """(events sent before, a batch) where an event_id comes back after its first occurrence was
    refused, or is already stored with other content (found by tests/test_tracker_fuzz.py)."""
    a, b = users

    def first_refused() -> tuple[list, list]:
        sid, eid = uuid.uuid4(), uuid.uuid4()
        taken = SessionStart(event_id=uuid.uuid4(), user_id=a, occurred_at=_now(), session_id=sid)
        other = material(b, event_id=eid, session_id=sid)  # a's session: refused
        mine = SessionHeartbeat(event_id=eid, user_id=a, occurred_at=_now(), session_id=sid)
        return [], [taken, other, other, mine]  # one by one, `mine` is the first to be stored

    def repeat_claims_a_session(earlier: bool) -> tuple[list, list]:
        sid = uuid.uuid4()
        first = page_view(a)
        claim = SessionStart(
            event_id=first.event_id, user_id=b, occurred_at=_now(), session_id=sid
        )  # differs from `first`: refused, so b never holds the session
        mine = SessionStart(event_id=uuid.uuid4(), user_id=a, occurred_at=_now(), session_id=sid)
        return ([first], [claim, mine]) if earlier else ([], [first, first, claim, mine])

    def two_repeats_claim_a_session() -> tuple[list, list]:
        sid = uuid.uuid4()
        start = SessionStart(
            event_id=uuid.uuid4(), user_id=a, occurred_at=_now(), session_id=uuid.uuid4()
        )
        answer = question(a)
        end = SessionEnd(event_id=start.event_id, user_id=a, occurred_at=_now(), session_id=sid)
        claim = SessionStart(
            event_id=answer.event_id, user_id=b, occurred_at=_now(), session_id=sid
        )
        mine = page_view(a, session_id=sid)  # `end` and `claim` are refused: `mine` opens sid
        return [], [start, answer, end, claim, mine]

    return {
        "first occurrence refused": first_refused,
        "repeat claims a session": lambda: repeat_claims_a_session(earlier=False),
        "repeat of a stored event claims a session": lambda: repeat_claims_a_session(earlier=True),
        "two repeats claim a session": two_repeats_claim_a_session,
    }


@pytest.mark.parametrize("parallel_from", [1, 10_000], ids=["workers", "inline"])
@pytest.mark.parametrize(
    "case",
    [
        "first occurrence refused",
        "repeat claims a session",
        "repeat of a stored event claims a session",
        "two repeats claim a session",
    ],
)
def test_repeated_event_ids_in_a_batch_end_as_one_by_one(conn, ref, case, parallel_from):
    users = [ref.new_user(), ref.new_user()]
    make = _repeat_cases(users)[case]
    tracker = Tracker(conn, parallel_from=parallel_from)
    before, events = make()
    tracker.track_batch(before)
    result = tracker.track_batch(events)
    before, events = make()
    tracker.track_batch(before)
    single = _one_by_one_outcome(Tracker(conn), events)
    batch = (result.accepted, result.duplicates, [i for i, _ in result.rejections])
    assert batch == single
    assert single[0] == {"two repeats claim a session": 3}.get(case, 1 + (not before))


def test_a_batch_that_is_not_a_list_of_events(conn, tracker, ref):
    with pytest.raises(ValidationError, match="events: must be an iterable of events, got int"):
        tracker.track_batch(5)
    user = ref.new_user()

    def failing() -> Iterator[Event]:
        yield page_view(user)
        raise RuntimeError("the feed broke")

    with pytest.raises(BatchIncomplete, match="the feed broke") as caught:
        tracker.track_batch(failing(), chunk_size=1)
    assert (caught.value.result.accepted, caught.value.unsettled, caught.value.read) == (1, [], 1)
