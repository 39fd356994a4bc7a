"""The event tracker: the one way events enter ``app``.

``Tracker(conn).track(event)`` stores one event; ``track_payload(json)`` does the same for raw
client JSON; ``track_batch(events)`` is the fast path (binary COPY into a temporary table, then
set-based inserts). Every path runs the same steps:

1. Validate in Python (``_prepare``), reporting every problem of an event at once, each naming
   its field: the event type against ``app.event_types``; the learner against ``app.users``;
   question and material ids against the bank; ``occurred_at`` tz-aware, at most ``max_future``
   after and at most ``max_past`` before the receive time; each kind's typed fields against its
   pydantic schema in ``python_jobs.ingest.validation`` (``QuestionFields`` and the like: strict
   types, durations >= 0, confidence 1-5, progress 0-1, exam score 1-300, ...), whose failures
   read as the field's ``EXPECTED`` text and the value given; ``properties`` a JSON object, of
   which only the keys declared for the event type with values of their type are kept (the rest
   is dropped and counted, strings have e-mail and IP addresses masked:
   ``python_jobs.ingest.properties``), of at most ``max_properties_bytes`` bytes both as compact
   UTF-8 JSON and as stored JSONB (what the schema's check measures; asked of the server only for
   large ones) and nested at most ``max_properties_depth`` levels (measured only for texts long
   enough to nest that deep); ``ip`` a valid address. Reference ids are cached per Tracker;
   misses are looked up in one query per chunk.
2. Anonymise the IP (IPv4 -> /24, IPv6 -> /48) before anything is sent to the database.
3. Make sure the monthly partitions of ``app.study_events`` exist for the months seen
   (``app.ensure_study_event_partitions``, in its own short transaction, only for unseen months).
4. In ONE transaction: binary-COPY the rows into a temporary table; insert the
   ``app.event_receipts`` rows (the idempotency ledger, event_ids only: a plain insert in a
   savepoint, redone ``on conflict do nothing`` only if an event_id was already there); then the
   ``app.study_events`` rows (properties NULL when empty) and the typed rows
   (``question_attempts`` with ``topic_id`` and ``is_correct`` derived from the question bank,
   ``material_interactions``, ``exam_results``) of the events that were new; keep
   ``app.study_sessions`` current; record refused input in ``app.rejected_events``; commit.
   The schema checks the references of these rows once per statement (see the migration) and
   refuses UPDATE/DELETE/TRUNCATE of ``study_events``.

``track_batch`` runs step 4 for each chunk on ``batch_connections`` (default 2) connections of
its own, in worker threads, while it validates the next chunk; a chunk's rows are split by session
(by learner for events without one), so every session's events are applied in order by one
worker. Server CPU is what limits throughput (``bench/ingest.py`` prints both sides' cost).

The contract holds for ANY input (``tests/test_tracker_fuzz.py`` checks it with generated input):

- ``track``, ``track_payload`` and ``track_batch`` return or raise ``ValidationError``. Values that
  would break a naive check (integers too long to print, objects whose ``repr`` raises, a tzinfo
  that raises or gives an offset Python refuses, structures nested thousands of levels deep) are
  described safely in the reason, and an exception no check foresaw while validating an event
  refuses that event (``event: could not be checked: ...``). Times go to the database in UTC, so
  any offset Python accepts (up to +/-23:59, PostgreSQL knows +/-15:59) is stored as its instant.
- For every batch, sent = accepted + duplicates + rejected, each rejection a row in
  ``app.rejected_events``; the rejection path itself cannot fail (payload and reason are rendered
  with bounded depth and size and made storable).
- One bad event costs no other: if the database refuses a chunk that passed validation, its rows
  are stored in halves down to the one it refuses, which is rejected with the database's reason
  (``event: refused by the database: ...``).
- If a worker's transaction fails (a lost connection, ...), nothing of its share was committed
  and the share is stored again on the Tracker's own connection; if that fails too,
  ``track_batch`` raises ``BatchIncomplete`` with what was committed and the indices of the events
  that were not (sending them again is safe: a stored event counts as a duplicate). Failures of
  the connection or the server, and of the caller's own iterator of events, are the only errors
  other than ValidationError.

Decisions (documented for the analytics side):

- ``received_at`` is the tracker's clock (UTC, one reading per chunk), or the event's own
  ``received_at`` when ``trust_received_at=True`` (simulator back-fill) and the event carries one.
- Repeated ``event_id``: stored once. A repeat with the same content (every field except
  ``received_at``) counts as a duplicate (``track`` returns False). A repeat with DIFFERENT
  content is refused: the first version stays, the later one is recorded in
  ``app.rejected_events`` with reason ``event_id: already stored with different content ...``
  (``track`` raises ValidationError; a batch counts it as rejected). The same holds for repeats
  inside one batch: its rows are cut into segments before each repeated event_id and the
  segments stored one after the other, so a repeat is compared with what is stored by then (the
  first occurrence that is stored wins, exactly as one by one; a batch full of repeats costs a
  transaction per segment).
- ``SessionEnd.end_reason`` has no column of its own in ``study_events``; it is stored in the
  event's ``properties`` under ``"end_reason"`` (overriding a client key of that name).
- Sessions (``app.study_sessions``) are updated in arrival order (a batch behaves exactly like
  calling ``track`` on its events one by one; see ``apply_session_event``):
  * the first event seen for a session id creates its row, whatever its type (late delivery can
    bring a heartbeat before its session_start): ``started_at = last_activity_at = occurred_at``;
  * an event of an OPEN session that occurred more than ``IDLE_TIMEOUT`` (30 min) after the
    session's ``last_activity_at`` closes it at ``last_activity_at`` with ``end_reason =
    'idle_timeout'``; that event is still stored but does not extend the session;
  * otherwise ``started_at = least(started_at, occurred_at)``,
    ``last_activity_at = greatest(last_activity_at, occurred_at)``, and a ``session_end`` sets
    ``ended_at = occurred_at`` and ``end_reason`` from the event;
  * a CLOSED session is never reopened: a later event only moves ``started_at`` earlier or
    ``last_activity_at`` later up to ``ended_at`` (late events from inside the session); a second
    ``session_end`` is ignored;
  * the idle gap is measured on ``occurred_at`` (client clock), not on arrival time, so late
    delivery does not close sessions;
  * an event whose ``session_id`` belongs to another learner is refused (``session_id`` error).
  ``close_idle_sessions(conn, now)`` closes, at their last activity, the open sessions idle for
  more than 30 minutes at ``now`` (for the pipeline).

The Tracker owns its connection's transactions: every call commits (a caller's uncommitted work
on the same connection is committed with the first call). Give it a connection of its own.
"""

from __future__ import annotations

import gc
import hashlib
import itertools
import json
import math
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Set
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
from psycopg.pq import TransactionStatus

from python_jobs.ingest.events import (
    EVENT_CLASSES,
    Event,
    ExamResult,
    GenericEvent,
    MaterialInteraction,
    QuestionAttempt,
    SessionEnd,
    SessionHeartbeat,
    SessionStart,
)
from python_jobs.ingest.properties import DeclaredProperties
from python_jobs.ingest.validation import (
    INT4_MAX,
    ExamFields,
    FieldError,
    MaterialFields,
    PropertiesFilter,
    QuestionFields,
    SessionEndFields,
    ValidationError,
    event_from_payload,
    ip_prefix,
    mask_personal_data,
    mentioned_ids,
    parse_json,
    redact_ids,
    rejected_payload,
    show,
    typed_fields,
)

__all__ = [
    "IDLE_TIMEOUT",
    "BatchIncomplete",
    "BatchResult",
    "FieldError",
    "Tracker",
    "ValidationError",
    "apply_session_event",
    "close_idle_sessions",
]

IDLE_TIMEOUT = timedelta(minutes=30)
REASON_LIMIT = 4096
"""Characters of a rejection's reason kept in app.rejected_events."""
ERASED_MESSAGE = "the learner was erased: the event is refused and its content not kept"
DB_MAX_PROPERTIES_BYTES = 65536
"""The largest ``max_properties_bytes`` accepted (the schema's check on study_events.properties)."""
MAX_PROPERTIES_DEPTH = 64
"""Default of ``Tracker(max_properties_depth=...)``: how deeply objects and arrays may nest in
``properties``. Deeper ones are refused (Python's and PostgreSQL's recursive code would fail on
thousands of levels)."""
PROPERTIES_DEPTH_CAP = 256
"""The largest ``max_properties_depth`` accepted (far below Python's recursion limit)."""
JSONB_GROWTH_BOUND = 8
"""JSONB is at most ~6x its compact JSON text (arrays of one-digit numbers); properties under
``max_properties_bytes / 8`` bytes of text cannot reach the limit as JSONB, larger ones are
measured by the server."""

EARLIEST_TIME = datetime(2000, 1, 1, tzinfo=UTC)
"""A trusted ``received_at`` may not be earlier (nor later than ``max_future`` after the
tracker's clock): keeps back-filled times, and the monthly partitions made for them, sane."""


# Kinds of event, by class (an int keeps the per-event dispatch cheap).
K_GENERIC, K_START, K_HEARTBEAT, K_END, K_QUESTION, K_MATERIAL, K_EXAM = range(7)
_KIND = {
    GenericEvent: K_GENERIC,
    SessionStart: K_START,
    SessionHeartbeat: K_HEARTBEAT,
    SessionEnd: K_END,
    QuestionAttempt: K_QUESTION,
    MaterialInteraction: K_MATERIAL,
    ExamResult: K_EXAM,
}
_TYPED_EVENT_TYPES = frozenset(EVENT_CLASSES)
_JSON_TYPE = {list: "array", str: "string", int: "number", float: "number", bool: "boolean"}

# Columns of the temporary batch table, in COPY order. Typed columns are null for other kinds.
BATCH_COLUMNS = (
    "idx",
    "event_id",
    "user_id",
    "session_id",
    "event_type",
    "occurred_at",
    "received_at",
    "properties",
    "ip_prefix",
    "question_id",
    "topic_id",
    "attempt_number",
    "selected_answer",
    "is_correct",
    "time_to_answer_ms",
    "confidence_level",
    "hint_used",
    "material_id",
    "interaction_type",
    "progress",
    "active_seconds",
    "exam_kind",
    "scaled_score",
    "passed",
    "end_reason",
)
# Row positions used by the session logic.
R_IDX, R_EVENT_ID, R_USER, R_SESSION, R_TYPE, R_OCCURRED = 0, 1, 2, 3, 4, 5
R_PROPERTIES = 7
R_END_REASON = len(BATCH_COLUMNS) - 1

CREATE_TEMP_TABLES = """
create temporary table if not exists tracker_batch (
    idx               integer not null,
    event_id          uuid not null,
    user_id           uuid not null,
    session_id        uuid,
    event_type        text not null,
    occurred_at       timestamptz not null,
    received_at       timestamptz not null,
    properties        text not null,  -- JSON text, cast to jsonb on insert (binary COPY)
    ip_prefix         text,           -- a /24 or /48 network, cast to cidr on insert
    question_id       integer,
    topic_id          integer,
    attempt_number    integer,
    selected_answer   text,
    is_correct        boolean,
    time_to_answer_ms integer,
    confidence_level  smallint,
    hint_used         boolean,
    material_id       integer,
    interaction_type  text,
    progress          float8,
    active_seconds    integer,
    exam_kind         text,
    scaled_score      integer,
    passed            boolean,
    end_reason        text
) on commit delete rows;
create temporary table if not exists tracker_sessions (
    id               uuid not null,
    user_id          uuid not null,
    started_at       timestamptz not null,
    last_activity_at timestamptz not null,
    ended_at         timestamptz,
    end_reason       text
) on commit delete rows;
"""

COPY_BATCH = f"copy pg_temp.tracker_batch ({', '.join(BATCH_COLUMNS)}) from stdin (format binary)"
BATCH_TYPES = (
    "int4", "uuid", "uuid", "uuid", "text", "timestamptz", "timestamptz", "text", "text",
    "int4", "int4", "int4", "text", "bool", "int4", "int2", "bool",
    "int4", "text", "float8", "int4", "text", "int4", "bool", "text",
)  # fmt: skip

# Receipts first go in with a plain INSERT inside a savepoint: ON CONFLICT's speculative insertion
# costs ~3 us of server CPU per row, and repeats are rare. On a unique violation the savepoint is
# rolled back and the batch goes in again with ON CONFLICT DO NOTHING.
INSERT_RECEIPTS_FAST = """
insert into app.event_receipts (event_id)
select event_id
from pg_temp.tracker_batch
"""
INSERT_RECEIPTS = INSERT_RECEIPTS_FAST + "on conflict (event_id) do nothing\nreturning event_id\n"
SMALL_BATCH = 1000

# Rows of this batch whose event_id was already stored (the batch indices whose receipt the
# receipts insert did not return: only run when it stored fewer rows than the batch holds), and
# whether their content differs from the stored version (received_at excluded: a retry is
# received later). The receipt holds only the event_id: the stored event and typed row are looked
# up by the repeat's own learner and time, through the tables' learner indexes (the log's, the
# attempts' and the interactions' are on the UTC date, stated beside the instant), then the
# event_id (no table but the receipts has a key on it). A repeat with the same content has the
# same learner and time and is found; one with another learner or time finds nothing, which is
# itself a difference.
# Each stored part is read by itself first (a materialized CTE): on Citus, where the log and
# typed rows are distributed on user_id and the batch is a coordinator table, each is then a
# query it can run, and the comparison runs on the coordinator. Empty properties are stored as
# NULL (nullif on both sides).
FIND_REPEATS = """
with k as materialized (
    select event_id, user_id, occurred_at from pg_temp.tracker_batch where idx = any(%(idx)s)
), e as materialized (
    select e.event_id, e.user_id, e.session_id, e.event_type::text as event_type, e.occurred_at,
        e.properties, e.ip_prefix
    from app.study_events as e
    inner join k on e.user_id = k.user_id
        and (e.occurred_at at time zone 'UTC')::date = (k.occurred_at at time zone 'UTC')::date
        and e.occurred_at = k.occurred_at and e.event_id = k.event_id
), q as materialized (
    select q.event_id, q.question_id, q.attempt_number, q.selected_answer, q.time_to_answer_ms,
        q.confidence_level, q.hint_used
    from app.question_attempts as q
    inner join k on q.user_id = k.user_id
        and (q.answered_at at time zone 'UTC')::date = (k.occurred_at at time zone 'UTC')::date
        and q.answered_at = k.occurred_at and q.event_id = k.event_id
), m as materialized (
    select m.event_id, m.material_id, m.interaction_type, m.progress, m.active_seconds
    from app.material_interactions as m
    inner join k on m.user_id = k.user_id
        and (m.occurred_at at time zone 'UTC')::date = (k.occurred_at at time zone 'UTC')::date
        and m.occurred_at = k.occurred_at and m.event_id = k.event_id
), x as materialized (
    select x.event_id, x.exam_kind, x.scaled_score, x.passed
    from app.exam_results as x
    inner join k on x.user_id = k.user_id and x.taken_at = k.occurred_at
        and x.event_id = k.event_id
)
select
    b.idx,
    e.event_id is null
    or (b.session_id, b.event_type, nullif(b.properties::jsonb, '{}'), b.ip_prefix::cidr)
        is distinct from (e.session_id, e.event_type, nullif(e.properties, '{}'), e.ip_prefix)
    or (b.question_id, b.attempt_number, b.selected_answer, b.time_to_answer_ms,
        b.confidence_level, b.hint_used)
        is distinct from (q.question_id, q.attempt_number, q.selected_answer, q.time_to_answer_ms,
                          q.confidence_level, q.hint_used)
    or (b.material_id, b.interaction_type, b.progress::numeric(5, 4), b.active_seconds)
        is distinct from (m.material_id, m.interaction_type, m.progress, m.active_seconds)
    or (b.exam_kind, b.scaled_score, b.passed)
        is distinct from (x.exam_kind, x.scaled_score, x.passed)
        as differs
from pg_temp.tracker_batch as b
left join e on b.event_id = e.event_id
left join q on b.event_id = q.event_id
left join m on b.event_id = m.event_id
left join x on b.event_id = x.event_id
where b.idx = any(%(idx)s)
"""

DROP_REPEATS = "delete from pg_temp.tracker_batch where idx = any(%s)"

INSERT_EVENTS = """
insert into app.study_events
    (event_id, user_id, session_id, event_type, occurred_at, received_at, properties, ip_prefix)
select event_id, user_id, session_id, event_type::app.event_type, occurred_at, received_at,
    nullif(properties::jsonb, '{}'), ip_prefix::cidr
from pg_temp.tracker_batch
"""

INSERT_QUESTION_ATTEMPTS = """
insert into app.question_attempts
    (event_id, user_id, session_id, question_id, topic_id, attempt_number, selected_answer,
     is_correct, time_to_answer_ms, confidence_level, hint_used, answered_at, received_at)
select event_id, user_id, session_id, question_id, topic_id, attempt_number, selected_answer,
    is_correct, time_to_answer_ms, confidence_level, hint_used, occurred_at, received_at
from pg_temp.tracker_batch
where event_type = 'question_attempt'
"""

INSERT_MATERIAL_INTERACTIONS = """
insert into app.material_interactions
    (event_id, user_id, session_id, material_id, interaction_type, progress, active_seconds,
     occurred_at, received_at)
select event_id, user_id, session_id, material_id, interaction_type, progress, active_seconds,
    occurred_at, received_at
from pg_temp.tracker_batch
where event_type = 'material_interaction'
"""

INSERT_EXAM_RESULTS = """
insert into app.exam_results
    (event_id, user_id, exam_kind, taken_at, scaled_score, passed, received_at)
select event_id, user_id, exam_kind, occurred_at, scaled_score, passed, received_at
from pg_temp.tracker_batch
where event_type = 'exam_result'
"""

# A SECURITY DEFINER function: locking rows needs UPDATE on app.users, which loader has not.
SELECT_LEARNERS = "select learner.id from app.lock_learners(%s) as learner (id)"

# The sessions by id (whatever their learner), locked FOR UPDATE until commit; a function whose
# body differs on Citus (which refuses FOR UPDATE on a query spanning shards).
SELECT_SESSIONS = """
select id, user_id, started_at, last_activity_at, ended_at, end_reason
from app.lock_sessions(%s)
"""

UPSERT_SESSIONS = """
insert into app.study_sessions (id, user_id, started_at, last_activity_at, ended_at, end_reason)
select id, user_id, started_at, last_activity_at, ended_at, end_reason
from pg_temp.tracker_sessions
on conflict (user_id, id) do update set
    started_at = excluded.started_at,
    last_activity_at = excluded.last_activity_at,
    ended_at = excluded.ended_at,
    end_reason = excluded.end_reason
"""

INSERT_REJECTED = """
insert into app.rejected_events (received_at, user_id, payload, payload_bytes, reason)
values (%s, %s, %s, %s, %s)
"""


@dataclass
class BatchResult:
    """What ``track_batch`` did: every event of the batch is counted in exactly one of the three."""

    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    rejections: list[tuple[int, str]] = field(default_factory=list)  # (index in batch, reason)
    # Property keys removed from the batch's events: not declared for the event type, or a value
    # of the wrong type (python_jobs.ingest.properties). Not an event count.
    dropped_properties: int = 0

    def add(self, other: BatchResult) -> None:
        self.accepted += other.accepted
        self.duplicates += other.duplicates
        self.rejected += other.rejected
        self.rejections.extend(other.rejections)
        self.dropped_properties += other.dropped_properties


# --------------------------------------------------------------------------- sessions


def apply_session_event(
    state: list[Any] | None,
    user_id: UUID,
    occurred_at: datetime,
    event_type: str,
    end_reason: str | None,
    idle_timeout: timedelta = IDLE_TIMEOUT,
) -> list[Any]:
    """The session's state after one more event: ``[user_id, started_at, last_activity_at,
    ended_at, end_reason]`` (``state`` None: the session is new). Mutates and returns ``state``.
    """
    is_end = event_type == "session_end"
    if state is None:
        if is_end:
            return [user_id, occurred_at, occurred_at, occurred_at, end_reason]
        return [user_id, occurred_at, occurred_at, None, None]
    _, started, last, ended, _ = state
    if ended is None:
        if occurred_at - last > idle_timeout:
            state[3] = last
            state[4] = "idle_timeout"
            return state
        if occurred_at < started:
            state[1] = occurred_at
        if occurred_at > last:
            state[2] = occurred_at
        if is_end:
            state[3] = occurred_at
            state[4] = end_reason
        return state
    # Closed: never reopened; late events from inside the session may widen it up to its end.
    if occurred_at < started:
        state[1] = occurred_at
    if last < occurred_at <= ended:
        state[2] = occurred_at
    return state


def close_idle_sessions(
    conn: psycopg.Connection, now: datetime, idle_timeout: timedelta = IDLE_TIMEOUT
) -> int:
    """Close, at their last activity, open sessions idle for more than ``idle_timeout`` at ``now``.

    Returns how many were closed. Commits.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    with conn.transaction():
        cur = conn.execute(
            """
            update app.study_sessions
            set ended_at = last_activity_at, end_reason = 'idle_timeout'
            where ended_at is null and last_activity_at < %s
            """,
            (now - idle_timeout,),
        )
        closed = cur.rowcount
    if not conn.autocommit:
        conn.commit()
    return closed


# --------------------------------------------------------------------------- the tracker


def _duration(td: timedelta) -> str:
    """'1 day', '36 hours', '90 minutes' rather than timedelta's '1 day, 0:00:00'."""
    seconds = int(td.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0 and seconds >= size:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{seconds} seconds"


def _utc(dt: datetime | None) -> datetime | None:
    return None if dt is None else dt.astimezone(UTC)


def _month(dt: datetime) -> date:
    d = dt.astimezone(UTC)
    return date(d.year, d.month, 1)


def _months_between(a: date, b: date) -> int:
    return (b.year - a.year) * 12 + (b.month - a.month)


def _add_months(d: date, months: int) -> date:
    m = d.month - 1 + months
    return date(d.year + m // 12, m % 12 + 1, 1)


def _has_nul(value: Any) -> bool:
    """Whether a NUL character is in any string (key or value) of a JSON-like structure."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return False


def _depth(value: Any, limit: int) -> int:
    """How deeply dicts and lists nest in ``value`` (a scalar: 0), counting only up to
    ``limit + 1``. Iterative, so any depth is measured without recursion."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Iterable[Any] = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if depth > limit:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _printable_int(value: int) -> bool:
    """Whether ``value`` converts to decimal text (Python refuses over 4,300 digits)."""
    try:
        int.__repr__(value)
    except ValueError:
        return False
    return True


def _too_deep(limit: int) -> str:
    return f"nested more than {limit} levels deep"


def _unserialisable(props: dict[Any, Any], depth_limit: int) -> str:
    """Why json.dumps refused ``props`` (only asked once it has): the first problem found."""
    if _depth(props, depth_limit) > depth_limit:
        return _too_deep(depth_limit)
    stack: list[Any] = [props]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key in item:
                if not isinstance(key, str | int | float | bool) and key is not None:
                    return f"keys must be strings, got {show(key)}"
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
        elif isinstance(item, float) and not math.isfinite(item):
            return "NaN and Infinity are not valid JSON"
        elif isinstance(item, int) and not _printable_int(item):
            return f"number too long to store: {show(item)}"
        elif not isinstance(item, str | int | float | bool) and item is not None:
            return f"not JSON-serialisable: {show(item)} ({type(item).__name__})"
    return "not JSON-serialisable"


def _attr(obj: Any, name: str) -> Any:
    """``obj.name``, or None when it has none or reading it fails (any object may be sent)."""
    try:
        return getattr(obj, name, None)
    except Exception:  # noqa: BLE001 - a property of the client's making failed
        return None


def _event_of(payload: Any, known_types: Iterable[str]) -> Event:
    """The Event of a raw payload; whatever goes wrong reading it is a ValidationError."""
    try:
        return event_from_payload(parse_json(payload), known_types)
    except ValidationError:
        raise
    except Exception as err:  # noqa: BLE001 - input no check foresaw
        message = f"could not be read: {show(err, 160)}"
        raise ValidationError([FieldError("payload", message)]) from None


def _unexpected(err: Exception) -> FieldError:
    return FieldError("event", f"could not be checked: {show(err, 160)}")


def _bad_zone(err: Exception) -> str:
    return f"its time zone failed: {show(err, 120)}"


class Tracker:
    """Validates, anonymises and stores events; see the module docstring for the rules."""

    def __init__(
        self,
        conn: psycopg.Connection,
        *,
        trust_received_at: bool = False,
        max_properties_bytes: int = 65536,
        max_future: timedelta = timedelta(days=1),
        max_past: timedelta = timedelta(days=3 * 366),
        idle_timeout: timedelta = IDLE_TIMEOUT,
        batch_connections: int = 2,
        parallel_from: int = 10_000,
        max_properties_depth: int = MAX_PROPERTIES_DEPTH,
    ) -> None:
        if batch_connections < 0:
            raise ValueError("batch_connections must be >= 0")
        if not 1 <= max_properties_depth <= PROPERTIES_DEPTH_CAP:
            raise ValueError(f"max_properties_depth must be 1-{PROPERTIES_DEPTH_CAP}")
        if not 0 < max_properties_bytes <= DB_MAX_PROPERTIES_BYTES:
            raise ValueError(
                f"max_properties_bytes must be 1-{DB_MAX_PROPERTIES_BYTES} (the schema's limit)"
            )
        self.conn = conn
        self.trust_received_at = trust_received_at
        self.max_properties_bytes = max_properties_bytes
        self.max_properties_depth = max_properties_depth
        self.max_future = max_future
        self.max_past = max_past
        self.idle_timeout = idle_timeout
        self.batch_connections = batch_connections
        self.parallel_from = parallel_from
        # Reference caches. Learners are kept as UUID.int: UUID hashing is pure Python.
        self._users: set[int] = set()
        self._questions: dict[int, tuple[int, str]] = {}  # id -> (topic_id, correct_answer)
        self._materials: set[int] = set()
        # References _prepare did not find in the caches (it then returns _MISS), fetched in bulk
        # by _lookup_missing before those events are checked again with misses as errors.
        self._defer_misses = True
        self._large_properties = False  # set by _properties_json, read by _validate
        self._want_users: set[UUID] = set()
        self._want_questions: set[int] = set()
        self._want_materials: set[int] = set()
        self._covered: tuple[date, date] | None = None  # months known to have partitions
        self._dropped: dict[int, int] = {}  # batch index -> property keys dropped (_validate)
        self.dropped_properties = 0
        """Property keys dropped by this Tracker so far (undeclared or of the wrong type)."""
        with self._transaction():
            conn.execute(CREATE_TEMP_TABLES)
            names = [r[0] for r in conn.execute("select name from app.event_types")]
            self.declared = DeclaredProperties.load(conn)
        self.event_types: frozenset[str] = frozenset(names)
        self._generic_types = self.event_types - _TYPED_EVENT_TYPES

    # ------------------------------------------------------------------ public API

    def track(self, event: Event) -> bool:
        """Store one event in one transaction. True if stored, False if its event_id was already
        stored with the same content. Bad input (including an event_id already stored with other
        content): a row in app.rejected_events (committed), then ValidationError."""
        result, errors = self._process([(0, event)], raw=None)
        if errors:
            raise ValidationError(errors[0])
        return result.accepted == 1

    def track_payload(self, payload: str | bytes | dict) -> bool:
        """``track`` for raw JSON from a client (a JSON object with ``event_type`` and the fields
        of its event class; ids as UUID strings, times ISO 8601 with an offset)."""
        try:
            event = _event_of(payload, self.event_types)
        except ValidationError as err:
            user_id = None
            if isinstance(payload, Mapping | str | bytes):
                try:
                    claimed = parse_json(payload).get("user_id")
                    user_id = UUID(claimed) if isinstance(claimed, str) else None
                except Exception:  # noqa: BLE001 - the error above is the one to report
                    user_id = None
            if user_id is not None and self._was_erased(user_id):
                self._reject_now([({"event_id": None}, None, str(err))])
            else:
                self._reject_now([(payload, user_id, str(err))])
            raise
        result, errors = self._process([(0, event)], raw={0: payload})
        if errors:
            raise ValidationError(errors[0])
        return result.accepted == 1

    def track_batch(
        self,
        events: Iterable[Event],
        *,
        chunk_size: int = 50_000,
        progress: Callable[[int], None] | None = None,
    ) -> BatchResult:
        """The fast path. Validates in Python, COPYs each chunk into a temporary table and inserts
        set-based; commits per chunk. Every event is accepted, a duplicate or rejected (with a
        row in app.rejected_events). ``progress(n)`` is called after each chunk is committed with
        the number of events that chunk held (an increment, as ``tqdm.update`` expects).

        With ``batch_connections=N`` (default 2) and chunks of at least ``parallel_from`` events
        (default 10,000), the chunk's rows are stored by N worker threads, each on a connection of
        its own (same server and credentials as the Tracker's), while this thread validates the
        next chunk. A chunk's rows are split by session (events without one: by learner), so each
        session's events are applied in arrival order by one worker; each worker commits its share
        of a chunk on its own.
        """
        if chunk_size < 1:
            raise ValueError("chunk_size must be >= 1")
        # Objects that exist before the batch (a list of a million events, a simulator's state)
        # go to the garbage collector's permanent generation for its duration: otherwise every
        # full collection walks them again, which cost about a third of the client's CPU.
        freeze = gc.get_freeze_count() == 0
        if freeze:
            gc.freeze()
        try:
            return self._track_batch(events, chunk_size, progress)
        finally:
            if freeze:
                gc.unfreeze()

    def _track_batch(
        self,
        events: Iterable[Event],
        chunk_size: int,
        progress: Callable[[int], None] | None,
    ) -> BatchResult:
        self._commit_pending()
        try:
            numbered = enumerate(events)
        except Exception:  # noqa: BLE001 - not an iterable (or one that fails at once)
            kind = type(events).__name__
            error = FieldError("events", f"must be an iterable of events, got {kind}")
            raise ValidationError([error]) from None
        run = _BatchRun(numbered, chunk_size)
        try:
            first = run.next_chunk()
        except Exception as err:  # the caller's iterator failed: nothing was stored
            raise run.incomplete(err) from err
        if not first:
            return run.total
        if self.batch_connections == 0 or len(first) < self.parallel_from:
            # Small batches or chunks: worker connections would cost more than they save.
            return self._track_inline(run, first, progress)
        return self._track_parallel(run, first, progress)

    def _track_inline(
        self, run: _BatchRun, first: list[tuple[int, Any]], progress: Callable[[int], None] | None
    ) -> BatchResult:
        chunk = first
        try:
            while chunk:
                result, _ = self._process(chunk, raw=None)
                run.total.add(result)
                run.settled(chunk)
                if progress is not None:
                    progress(len(chunk))
                chunk = run.next_chunk()
        except Exception as err:
            raise run.incomplete(err) from err
        return _sorted(run.total)

    def _track_parallel(
        self, run: _BatchRun, first: list[tuple[int, Any]], progress: Callable[[int], None] | None
    ) -> BatchResult:
        n = self.batch_connections
        conns: list[psycopg.Connection | None] = [None] * n  # opened with the first chunk
        pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="tracker")
        pending: list[_Share] = []
        total = run.total

        def collect() -> None:
            """Wait for the workers' shares. A share whose transaction failed (nothing of it was
            committed) is stored again on the Tracker's own connection."""
            nonlocal pending
            shares, pending = pending, []
            if not shares:
                return
            failed: list[Exception] = []
            unsettled: set[int] = set()
            for share in shares:
                try:
                    total.add(share.future.result())
                except Exception:  # noqa: BLE001 - a lost worker connection, a deadlock, ...
                    _close_quietly(conns[share.worker])
                    conns[share.worker] = None  # reopened for the next chunk
                    try:
                        total.add(self._store_share(share))
                    except Exception as err:  # noqa: BLE001 - raised below, once all are counted
                        failed.append(err)
                        unsettled.update(share.indices())
            chunk = shares[0].chunk
            run.settled([item for item in chunk if item[0] not in unsettled])
            if failed:
                raise failed[0]
            if progress is not None:
                progress(len(chunk))

        try:
            chunk = first
            while chunk:
                checked = self._validate(chunk)
                for i, conn in enumerate(conns):
                    if conn is None:
                        conns[i] = self._open_worker()
                collect()
                if checked.cuts:  # an event_id repeated in the chunk: stored segment by segment
                    total.add(self._store_checked(checked, chunk, None))
                    run.settled(chunk)
                    if progress is not None:
                        progress(len(chunk))
                    chunk = run.next_chunk()
                    continue
                total.dropped_properties += checked.dropped_properties
                pending = self._submit(pool, conns, checked, chunk)
                chunk = run.next_chunk()
            collect()
        except Exception as err:
            for share in pending:  # what the workers still finished counts
                if share.future.exception() is None:
                    total.add(share.future.result())
                    run.settled_indices(share.indices())
            raise run.incomplete(err) from err
        finally:
            for share in pending:
                share.future.exception()
            pool.shutdown(wait=True)
            for conn in conns:
                _close_quietly(conn)
        return _sorted(total)

    # ------------------------------------------------------------------ internals

    def _submit(
        self,
        pool: ThreadPoolExecutor,
        conns: list[psycopg.Connection | None],
        checked: _Checked,
        chunk: list[tuple[int, Any]],
    ) -> list[_Share]:
        """Hand a validated chunk to the workers: rows split by session (by learner for events
        without one), the rejections to the first worker."""
        n = len(conns)
        parts: list[list[tuple]] = [[] for _ in range(n)]
        for row in checked.rows:
            key = row[R_SESSION] or row[R_USER]
            parts[key.int % n].append(row)  # UUID.int: hash(UUID) is Python code
        shares = []
        for i, conn in enumerate(conns):
            rejected = checked.rejected if i == 0 else []
            if parts[i] or rejected:
                future = pool.submit(
                    self._store_in_transaction,
                    conn, parts[i], list(rejected), chunk, None, checked.now,
                )  # fmt: skip
                shares.append(_Share(future, parts[i], rejected, chunk, checked.now, i))
        return shares

    def _store_share(self, share: _Share) -> BatchResult:
        """Store a worker's share on the Tracker's own connection (the worker failed)."""
        self._commit_pending()
        rejected = list(share.rejected)
        return self._store(self.conn, share.rows, rejected, share.chunk, None, share.now)

    def _commit_pending(self) -> None:
        """Commit what the caller left open on the connection (the Tracker owns its commits)."""
        status = self.conn.info.transaction_status
        if status == TransactionStatus.INTRANS:
            self.conn.commit()
        elif status == TransactionStatus.INERROR:
            self.conn.rollback()

    def _transaction(self, conn: psycopg.Connection | None = None) -> psycopg.Transaction:
        """A top-level transaction (commits on success) whatever state the caller left."""
        conn = conn or self.conn
        status = conn.info.transaction_status
        if status == TransactionStatus.INTRANS:
            conn.commit()
        elif status == TransactionStatus.INERROR:
            conn.rollback()
        return conn.transaction()

    def _open_worker(self) -> psycopg.Connection:
        info = self.conn.info
        conn = psycopg.connect(info.dsn, password=info.password or None)
        with conn.transaction():
            conn.execute(CREATE_TEMP_TABLES)
        return conn

    def _was_erased(self, user_id: UUID) -> bool:
        with self._transaction():
            claim = [(0, [FieldError("user_id", f"unknown user {user_id}")])]
            return bool(_erased_learners(self.conn, claim))

    def _reject_now(self, items: list[tuple[Any, UUID | None, str]]) -> None:
        with self._transaction():
            _insert_rejections(self.conn, items, datetime.now(UTC), self.declared.clean)

    def _lookup_missing(self) -> bool:
        """Fetch the learners, questions and materials ``_prepare`` missed in the caches.
        Returns whether any of them exists (so the events that missed should be checked again)."""
        want_users, want_questions, want_materials = (
            self._want_users,
            self._want_questions,
            self._want_materials,
        )
        if not (want_users or want_questions or want_materials):
            return False
        found = 0
        with self._transaction():
            if want_users:
                rows = self.conn.execute(
                    "select id from app.users where id = any(%s)", (list(want_users),)
                ).fetchall()
                self._users.update(r[0].int for r in rows)
                found += len(rows)
            questions = [q for q in want_questions if -INT4_MAX <= q <= INT4_MAX]
            if questions:
                rows = self.conn.execute(
                    "select id, topic_id, correct_answer from app.questions where id = any(%s)",
                    (questions,),
                ).fetchall()
                self._questions.update((r[0], (r[1], r[2])) for r in rows)
                found += len(rows)
            materials = [m for m in want_materials if -INT4_MAX <= m <= INT4_MAX]
            if materials:
                rows = self.conn.execute(
                    "select id from app.materials where id = any(%s)", (materials,)
                ).fetchall()
                self._materials.update(r[0] for r in rows)
                found += len(rows)
        want_users.clear()
        want_questions.clear()
        want_materials.clear()
        return found > 0

    def _ensure_partitions(self, earliest: datetime, latest: datetime) -> None:
        lo, hi = _month(earliest), _month(latest)
        if self._covered is not None and self._covered[0] <= lo and hi <= self._covered[1]:
            return
        this_month = _month(datetime.now(UTC))
        ahead = max(3, _months_between(this_month, hi) + 1)
        with self._transaction():
            self.conn.execute(
                "select app.ensure_study_event_partitions(%s, %s)",
                (_utc(min(earliest, latest)), ahead),
            )
        # The function made every month from `earliest`'s to `ahead` months after the server's
        # now; count one month less in case the server's clock is a month behind ours.
        top = _add_months(this_month, ahead - 1)
        if self._covered is None:
            self._covered = (lo, top)
        else:
            self._covered = (min(lo, self._covered[0]), max(top, self._covered[1]))

    def _properties_json(
        self, props: Any, errors: list[FieldError], event_type: Any, idx: int
    ) -> str | None:
        if type(props) is not dict:
            if isinstance(props, dict):
                props = dict(props)
            else:
                kind = (
                    "null" if props is None else _JSON_TYPE.get(type(props), type(props).__name__)
                )
                errors.append(FieldError("properties", f"must be a JSON object, got {kind}"))
                return None
        if props:
            props = self._declared_properties(event_type, props, idx)
        if not props:
            return "{}"
        try:
            text = json.dumps(props, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        except (ValueError, TypeError, RecursionError):
            reason = _unserialisable(props, self.max_properties_depth)
            errors.append(FieldError("properties", reason))
            return None
        # Nesting, cheaply on the hot path: a text shorter than twice the limit, or with fewer
        # opening brackets than it, cannot nest deeper; only other texts are walked.
        depth = self.max_properties_depth
        if (
            len(text) > 2 * depth
            and text.count("{") + text.count("[") > depth
            and _depth(props, depth) > depth
        ):
            errors.append(FieldError("properties", _too_deep(self.max_properties_depth)))
            return None
        if text.isascii():
            size = len(text)
        else:
            try:
                size = len(text.encode("utf-8"))
            except UnicodeEncodeError:
                errors.append(
                    FieldError("properties", "contains invalid Unicode (a lone surrogate)")
                )
                return None
        if size > self.max_properties_bytes:
            errors.append(
                FieldError(
                    "properties",
                    f"{size} bytes as JSON, over the {self.max_properties_bytes}-byte limit",
                )
            )
            return None
        if "\\u0000" in text and _has_nul(props):
            errors.append(FieldError("properties", "contains a NUL character (\\u0000)"))
            return None
        if size > self.max_properties_bytes // JSONB_GROWTH_BOUND:
            self._large_properties = True  # _validate asks the server for its JSONB size
        return text

    def _declared_properties(self, event_type: Any, props: dict, idx: int) -> dict[str, Any]:
        """The declared keys of ``props`` with values of their type (strings masked); counts
        the keys dropped under the event's batch index."""
        kept, dropped = self.declared.clean(event_type, props)
        if dropped:
            self._dropped[idx] = dropped
        return kept

    def _times(
        self, ev: Event, now: datetime, errors: list[FieldError]
    ) -> tuple[datetime, datetime]:
        """(occurred_at, receive time) of an event, appending to ``errors`` what is wrong with
        them. Any offset Python accepts is fine (rows reach the database as UTC); a tzinfo that
        fails or gives an offset Python refuses is an error of the field, not of the tracker."""
        received = now
        if self.trust_received_at and ev.received_at is not None:
            rec = ev.received_at
            try:
                if not isinstance(rec, datetime) or rec.tzinfo is None or rec.utcoffset() is None:
                    errors.append(
                        FieldError(
                            "received_at", f"must be a timezone-aware datetime, got {show(rec)}"
                        )
                    )
                elif not EARLIEST_TIME <= rec <= now + self.max_future:
                    errors.append(
                        FieldError(
                            "received_at",
                            f"must be between {EARLIEST_TIME:%Y-%m-%d} and "
                            f"{_duration(self.max_future)} after the tracker's clock, "
                            f"got {show(rec)}",
                        )
                    )
                else:
                    received = rec
            except Exception as err:  # noqa: BLE001 - a tzinfo of the client's making failed
                errors.append(FieldError("received_at", _bad_zone(err)))
        occurred = ev.occurred_at
        try:
            if not isinstance(occurred, datetime):
                errors.append(
                    FieldError("occurred_at", f"must be a datetime, got {show(occurred)}")
                )
            elif (tz := occurred.tzinfo) is None or (
                tz is not UTC and occurred.utcoffset() is None
            ):
                errors.append(
                    FieldError(
                        "occurred_at", f"must be timezone-aware, got naive {occurred.isoformat()}"
                    )
                )
            else:
                ahead = occurred - received
                if ahead > self.max_future:
                    errors.append(
                        FieldError(
                            "occurred_at",
                            f"{occurred.isoformat()} is more than {_duration(self.max_future)} "
                            f"after the receive time {received.isoformat()}",
                        )
                    )
                elif -ahead > self.max_past:
                    errors.append(
                        FieldError(
                            "occurred_at",
                            f"{occurred.isoformat()} is more than {_duration(self.max_past)} "
                            f"before the receive time {received.isoformat()}",
                        )
                    )
        except Exception as err:  # noqa: BLE001 - as above
            errors.append(FieldError("occurred_at", _bad_zone(err)))
        return occurred, received

    def _prepare(self, idx: int, ev: Any, now: datetime) -> tuple | list[FieldError]:
        """The batch-table row of one event, or every problem it has (or ``_MISS`` when a
        reference is not in the caches yet and ``_defer_misses`` is set): the envelope every
        event has, then the typed columns of its kind (``_TYPED_COLUMNS``)."""
        kind = _KIND.get(type(ev))
        if kind is None:
            return [
                FieldError(
                    "event",
                    "must be an instance of an event class of python_jobs.ingest.events, "
                    f"got {type(ev).__name__}",
                )
            ]
        errors: list[FieldError] = []
        self._check_event_type(kind, ev.event_type, errors)
        event_id = ev.event_id
        if type(event_id) is not UUID:
            errors.append(FieldError("event_id", f"must be a UUID, got {show(event_id)}"))
        user_id = ev.user_id
        if type(user_id) is not UUID:
            errors.append(FieldError("user_id", f"must be a UUID, got {show(user_id)}"))
        elif user_id.int not in self._users:
            if self._defer_misses:
                # Set aside at once: checked in full after the chunk's missing references are
                # fetched (a cold cache would otherwise cost the whole check twice).
                self._want_users.add(user_id)
                self._note_references(kind, ev)
                return _MISS
            errors.append(FieldError("user_id", f"unknown user {user_id}"))
        session_id = ev.session_id
        if session_id is None:
            if K_START <= kind <= K_END:
                errors.append(FieldError("session_id", f"required for {ev.event_type}"))
        elif type(session_id) is not UUID:
            errors.append(
                FieldError("session_id", f"must be a UUID or null, got {show(session_id)}")
            )
        occurred, received = self._times(ev, now, errors)
        # a session end's reason is stored among its properties and in its own batch column
        end = typed_fields(SessionEndFields, ev, errors) if kind == K_END else None
        end_reason = None if end is None else end[0]
        props_json = self._event_properties(ev, idx, end_reason, errors)
        network = _network(ev.ip, errors)
        typed = _TYPED_COLUMNS[kind](self, ev, errors)
        if typed is _MISS:
            return _MISS
        if errors:
            return errors
        return (
            idx, event_id, user_id, session_id, ev.event_type, occurred, received, props_json,
            network, *typed, end_reason,
        )  # fmt: skip

    def _check_event_type(self, kind: int, event_type: Any, errors: list[FieldError]) -> None:
        if kind != K_GENERIC:
            if event_type not in self.event_types:
                errors.append(FieldError("event_type", f"{event_type!r} is not in app.event_types"))
        elif type(event_type) is not str or event_type not in self._generic_types:
            if isinstance(event_type, str) and event_type in _TYPED_EVENT_TYPES:
                cls_name = EVENT_CLASSES[event_type].__name__
                errors.append(
                    FieldError("event_type", f"{event_type!r} must be sent as a {cls_name}")
                )
            else:
                errors.append(
                    FieldError(
                        "event_type",
                        f"unknown event type {show(event_type)} "
                        f"(known: {', '.join(sorted(self.event_types))})",
                    )
                )

    def _event_properties(
        self, ev: Any, idx: int, end_reason: str | None, errors: list[FieldError]
    ) -> str | None:
        """The stored properties as JSON text (a session end's with its reason)."""
        props = ev.properties
        if end_reason is not None and type(props) is dict:
            props = {**props, "end_reason": end_reason}
        if type(props) is dict and not props:
            return "{}"
        return self._properties_json(props, errors, ev.event_type, idx)

    def _question_columns(self, ev: Any, errors: list[FieldError]) -> tuple | list[FieldError]:
        """The typed columns of a question attempt; topic and correctness from the question bank."""
        q = ev.question_id
        info = self._questions.get(q) if type(q) is int else None
        if info is None and type(q) is int:
            if self._defer_misses:
                self._want_questions.add(q)
                return _MISS
            errors.append(FieldError("question_id", f"unknown question {show(q)}"))
        f = typed_fields(QuestionFields, ev, errors)
        if f is None or info is None:
            return ()
        q, selected, attempt, ms, confidence, hint = f
        topic_id, correct = info
        question = (q, topic_id, attempt, selected, selected == correct, ms, confidence, hint)
        return question + _NO_MATERIAL + _NO_EXAM

    def _material_columns(self, ev: Any, errors: list[FieldError]) -> tuple | list[FieldError]:
        m = ev.material_id
        known = type(m) is int and m in self._materials
        if type(m) is int and not known:
            if self._defer_misses:
                self._want_materials.add(m)
                return _MISS
            errors.append(FieldError("material_id", f"unknown material {show(m)}"))
        f = typed_fields(MaterialFields, ev, errors)
        if f is None or not known:
            return ()
        m, interaction, progress, seconds = f
        material = (m, interaction, None if progress is None else float(progress), seconds)
        return _NO_QUESTION + material + _NO_EXAM

    def _exam_columns(self, ev: Any, errors: list[FieldError]) -> tuple | list[FieldError]:
        f = typed_fields(ExamFields, ev, errors)
        if f is None:
            return ()
        return _NO_QUESTION + _NO_MATERIAL + f

    def _untyped_columns(self, ev: Any, errors: list[FieldError]) -> tuple | list[FieldError]:
        return _UNTYPED

    def _note_references(self, kind: int, ev: Any) -> None:
        """Note the question or material of an event set aside for its learner (``_prepare``),
        so that one lookup fetches everything the event refers to."""
        if kind == K_QUESTION:
            q = ev.question_id
            if type(q) is int and q not in self._questions:
                self._want_questions.add(q)
        elif kind == K_MATERIAL:
            m = ev.material_id
            if type(m) is int and m not in self._materials:
                self._want_materials.add(m)

    def _validate(self, chunk: list[tuple[int, Any]]) -> _Checked:
        """Validate every event, cut the rows into segments where an event_id repeats and make
        sure the partitions exist. Touches the database only for cache misses and for months not
        seen yet."""
        checked = _Checked(now=datetime.now(UTC))
        now = checked.now
        self._dropped.clear()
        prepare = self._prepare
        prepared: list[tuple] = []
        rejected = checked.rejected
        missed: list[tuple[int, Any]] = []
        self._defer_misses = True
        for idx, ev in chunk:
            try:
                out = prepare(idx, ev, now)
            except Exception as err:  # noqa: BLE001 - input no check foresaw: refuse that event
                out = [_unexpected(err)]
            if type(out) is tuple:
                prepared.append(out)
            elif out is _MISS:
                missed.append((idx, ev))
            else:
                rejected.append((idx, out))
        if missed:
            # Look the missing references up in one go, then check those events again, this
            # time reporting what is still unknown.
            self._lookup_missing()
            self._defer_misses = False
            for idx, ev in missed:
                try:
                    out = prepare(idx, ev, now)
                except Exception as err:  # noqa: BLE001 - as above
                    out = [_unexpected(err)]
                if type(out) is tuple:
                    prepared.append(out)
                else:
                    rejected.append((idx, out))
            prepared.sort(key=_first)
            self._want_users.clear()
            self._want_questions.clear()
            self._want_materials.clear()
        if self._large_properties:
            self._large_properties = False
            prepared = self._check_stored_sizes(prepared, rejected)

        # An event_id repeated within the chunk starts a new segment: segments are stored one
        # after the other, so the database compares a repeat with what is stored by then, as
        # sending the events one by one does (the first occurrence that is stored wins).
        checked.rows = prepared
        seen: set[int] = set()
        for n, row in enumerate(prepared):
            key = row[R_EVENT_ID].int
            if key in seen:
                checked.cuts.append(n)
                seen = set()
            seen.add(key)
        if self._dropped:
            checked.dropped_properties = sum(self._dropped.values())
            self.dropped_properties += checked.dropped_properties
        if prepared:
            occurred = [r[R_OCCURRED] for r in prepared]
            self._ensure_partitions(min(occurred), max(occurred))
        return checked

    def _check_stored_sizes(
        self, prepared: list[tuple], rejected: list[tuple[int, list[FieldError]]]
    ) -> list[tuple]:
        """Refuse rows whose properties would exceed ``max_properties_bytes`` as stored JSONB
        (what the schema's check measures); only large properties are sent to the server."""
        limit = self.max_properties_bytes
        large = [
            i
            for i, row in enumerate(prepared)
            if len(row[R_PROPERTIES].encode()) > limit // JSONB_GROWTH_BOUND
        ]
        if not large:
            return prepared
        with self._transaction():
            sizes = self.conn.execute(
                "select pg_column_size(p::jsonb) "
                "from unnest(%s::text[]) with ordinality as t (p, n) order by n",
                ([prepared[i][R_PROPERTIES] for i in large],),
            ).fetchall()
        too_big = {}
        for i, (size,) in zip(large, sizes, strict=True):
            if size > limit:
                too_big[i] = size
        if not too_big:
            return prepared
        kept = []
        for i, row in enumerate(prepared):
            if i in too_big:
                message = f"{too_big[i]} bytes as stored JSONB, over the {limit}-byte limit"
                rejected.append((row[R_IDX], [FieldError("properties", message)]))
            else:
                kept.append(row)
        return kept

    def _process(
        self, chunk: list[tuple[int, Any]], raw: dict[int, Any] | None
    ) -> tuple[BatchResult, list[list[FieldError]]]:
        """Validate and store one chunk on the Tracker's own connection, in one transaction.
        Returns the counts and, in batch order, the errors of each rejected event."""
        checked = self._validate(chunk)
        self._commit_pending()
        result = self._store_checked(checked, chunk, raw)
        return result, [errs for _, errs in sorted(checked.rejected, key=lambda r: r[0])]

    def _store_checked(
        self, checked: _Checked, chunk: list[tuple[int, Any]], raw: dict[int, Any] | None
    ) -> BatchResult:
        """Store a validated chunk on the Tracker's own connection, segment after segment;
        every rejection ends up in ``checked.rejected``."""
        result = BatchResult(dropped_properties=checked.dropped_properties)
        for n, rows in enumerate(checked.segments()):
            rejected = checked.rejected if n == 0 else []
            result.add(self._store(self.conn, rows, rejected, chunk, raw, checked.now))
            if n:
                checked.rejected.extend(rejected)
        return result

    def _store(
        self,
        conn: psycopg.Connection,
        rows: list[tuple],
        rejected: list[tuple[int, list[FieldError]]],
        chunk: list[tuple[int, Any]],
        raw: dict[int, Any] | None,
        now: datetime,
    ) -> BatchResult:
        """``_store_in_transaction``, except that an event the database refuses although it
        passed validation costs only itself: the rows are stored in halves, down to the one that
        fails, which is rejected with the database's reason. Each part is applied in order, so
        the outcome is what storing the events one by one gives. Other errors (a lost
        connection, ...) are raised; nothing of the failed transaction was committed."""
        attempt = list(rejected)
        try:
            result = self._store_in_transaction(conn, rows, attempt, chunk, raw, now)
        except (*_INPUT_FAULTS, psycopg.errors.InternalError_) as err:
            if conn.broken or conn.closed or not _input_fault(err):
                raise
            if not rows:  # recording the rejections failed: record them plainly
                return _record_plainly(conn, rejected, now)
            if len(rows) == 1:
                rejected.append((rows[0][R_IDX], [_refused(err)]))
                return self._store(conn, [], rejected, chunk, raw, now)
            result = BatchResult()
            if rejected:
                result = self._store(conn, [], rejected, chunk, raw, now)
            mid = len(rows) // 2
            for part in (rows[:mid], rows[mid:]):
                found: list[tuple[int, list[FieldError]]] = []
                result.add(self._store(conn, part, found, chunk, raw, now))
                rejected.extend(found)
            rejected.sort(key=_first)
            return result
        rejected[:] = attempt
        return result

    def _store_in_transaction(
        self,
        conn: psycopg.Connection,
        rows: list[tuple],
        rejected: list[tuple[int, list[FieldError]]],
        chunk: list[tuple[int, Any]],
        raw: dict[int, Any] | None,
        now: datetime,
        passive: Set[int] = frozenset(),
    ) -> BatchResult:
        """Store validated rows and record rejections, in one transaction on ``conn``. Events
        refused here (session of another learner, repeat with other content) are appended to
        ``rejected``. Rows in ``passive`` are known to be stored already: their sessions are
        only checked."""
        result = BatchResult()
        given, first = rows, len(rejected)
        try:
            with conn.transaction():
                rows = self._lock_learners(conn, rows, rejected)
                sessions = _Sessions(conn, rows, self.idle_timeout)
                rows = sessions.apply(rows, rejected, passive)
                refused = len(rejected) > first
                if rows:
                    stored, not_new, same = _write(conn, rows, rejected)
                    result.accepted = stored
                    result.duplicates = same
                    if refused and not not_new <= passive:
                        raise _Rerun(not_new | passive)
                    if not_new:  # rare: replay the sessions without the rows already stored
                        sessions.reset()
                        sessions.apply([r for r in rows if r[R_IDX] not in not_new], [])
                sessions.save()
                if rejected:
                    self._record_rejections(conn, rejected, chunk, raw, now)
        except _Rerun as rerun:
            # A row already stored took part in the sessions and may have cost another row its
            # place: again, with the stored rows only checked, as one by one would do (until no
            # more such rows turn up; each round adds at least one).
            del rejected[first:]
            return self._store_in_transaction(conn, given, rejected, chunk, raw, now, rerun.stored)
        result.rejected = len(rejected)
        result.rejections = [(idx, str(ValidationError(errs))) for idx, errs in rejected]
        return result

    def _record_rejections(
        self,
        conn: psycopg.Connection,
        rejected: list[tuple[int, list[FieldError]]],
        chunk: list[tuple[int, Any]],
        raw: dict[int, Any] | None,
        now: datetime,
    ) -> None:
        rejected.sort(key=lambda item: item[0])
        base = chunk[0][0]
        erased = _erased_learners(conn, rejected)
        items = []
        for n, (idx, errs) in enumerate(rejected):
            ev = chunk[idx - base][1]
            uid = _attr(ev, "user_id")
            if type(uid) is UUID and uid.int in erased:
                # Keep no data about an erased learner: not even who the event claimed.
                errs = [FieldError("user_id", ERASED_MESSAGE)]
                rejected[n] = (idx, errs)
                payload = {
                    "event_id": _attr(ev, "event_id"),
                    "event_type": _attr(ev, "event_type"),
                }
                items.append((payload, None, str(ValidationError(errs))))
                continue
            payload = raw[idx] if raw is not None and idx in raw else ev
            items.append((payload, uid if type(uid) is UUID else None, str(ValidationError(errs))))
        _insert_rejections(conn, items, now, self.declared.clean)

    def _lock_learners(
        self,
        conn: psycopg.Connection,
        rows: list[tuple],
        rejected: list[tuple[int, list[FieldError]]],
    ) -> list[tuple]:
        """Lock the rows' learners until commit (FOR KEY SHARE, as the schema's check will) and
        refuse the events of learners erased since the cache saw them."""
        if not rows:
            return rows
        learners = {r[R_USER].int: r[R_USER] for r in rows}
        present = {
            r[0].int for r in conn.execute(SELECT_LEARNERS, (sorted(learners.values()),)).fetchall()
        }
        if len(present) == len(learners):
            return rows
        gone = learners.keys() - present
        self._users.difference_update(gone)
        kept = []
        for r in rows:
            if r[R_USER].int in gone:
                error = FieldError("user_id", f"unknown user {r[R_USER]} (erased)")
                rejected.append((r[R_IDX], [error]))
            else:
                kept.append(r)
        return kept


class _Rerun(Exception):  # noqa: N818 - control flow inside the tracker, never escapes
    """Roll back and store the rows again, with ``stored`` (batch indices) already stored."""

    def __init__(self, stored: set[int]) -> None:
        self.stored = stored


class BatchIncomplete(RuntimeError):
    """``track_batch`` stopped before settling every event: the connection or the server failed,
    or the caller's iterator of events raised (bad events never do this: they are rejected).
    ``result`` counts what was committed; ``unsettled`` lists the batch indices of events read
    but not known to be stored or rejected, and events from index ``read`` on were not read.
    Sending those again is safe: an event that was stored after all counts as a duplicate."""

    def __init__(self, result: BatchResult, unsettled: list[int], read: int, cause: Exception):
        self.result = result
        self.unsettled = unsettled
        self.read = read
        super().__init__(
            f"the batch stopped: {result.accepted} events stored, {result.duplicates} duplicates "
            f"and {result.rejected} rejected were committed; {len(unsettled)} events were not "
            f"(see .unsettled) and events from index {read} on were not read: {show(cause, 300)}"
        )


class _BatchRun:
    """The chunks of one ``track_batch`` call and which of their events are settled yet."""

    def __init__(self, numbered: Iterable[tuple[int, Any]], chunk_size: int) -> None:
        self.numbered = iter(numbered)
        self.chunk_size = chunk_size
        self.total = BatchResult()
        self.read = 0
        self.open: dict[int, None] = {}  # indices read, not settled (insertion-ordered)

    def next_chunk(self) -> list[tuple[int, Any]]:
        chunk = list(itertools.islice(self.numbered, self.chunk_size))
        self.read += len(chunk)
        self.open.update(dict.fromkeys(i for i, _ in chunk))
        return chunk

    def settled(self, chunk: list[tuple[int, Any]]) -> None:
        self.settled_indices(i for i, _ in chunk)

    def settled_indices(self, indices: Iterable[int]) -> None:
        for i in indices:
            self.open.pop(i, None)

    def incomplete(self, err: Exception) -> BatchIncomplete:
        return BatchIncomplete(_sorted(self.total), sorted(self.open), self.read, err)


@dataclass
class _Share:
    """One worker's part of a chunk, kept to store it again if the worker's transaction fails."""

    future: Future[BatchResult]
    rows: list[tuple]
    rejected: list[tuple[int, list[FieldError]]]
    chunk: list[tuple[int, Any]]
    now: datetime
    worker: int

    def indices(self) -> list[int]:
        return [r[R_IDX] for r in self.rows] + [i for i, _ in self.rejected]


def _close_quietly(conn: psycopg.Connection | None) -> None:
    if conn is not None:
        try:
            conn.close()
        except Exception:  # noqa: BLE001 - closing a connection that already failed
            pass


@dataclass
class _Checked:
    """One validated chunk: rows for the batch table (in segments when an event_id repeats),
    and the rejections."""

    now: datetime
    rows: list[tuple] = field(default_factory=list)
    rejected: list[tuple[int, list[FieldError]]] = field(default_factory=list)
    cuts: list[int] = field(default_factory=list)  # where a segment of rows starts, after the 1st
    dropped_properties: int = 0

    def segments(self) -> list[list[tuple]]:
        """The rows, split before every row that repeats an event_id of its segment."""
        bounds = [0, *self.cuts, len(self.rows)]
        return [self.rows[a:b] for a, b in itertools.pairwise(bounds)]


# Errors the database (or psycopg, dumping a row) raises for one bad row rather than for the
# connection or the server: the rows are then stored in halves to find it (Tracker._store).
_INPUT_FAULTS = (
    psycopg.DataError,
    psycopg.IntegrityError,
    psycopg.errors.ProgramLimitExceeded,
    ValueError,
    TypeError,
    OverflowError,
    RecursionError,
)
# Citus reports a constraint a shard refused during COPY (the tracker's INSERT ... SELECT from its
# batch table) as an internal error that keeps only the message: still one bad row.
_SHARD_CONSTRAINT = re.compile(r"violates (foreign key|check|not-null|unique) constraint")


def _input_fault(err: Exception) -> bool:
    if isinstance(err, _INPUT_FAULTS):
        return True
    return isinstance(err, psycopg.errors.InternalError_) and bool(
        _SHARD_CONSTRAINT.search(str(err))
    )


_MISS: list[FieldError] = []  # sentinel: a reference was not in the caches

# The typed columns of a batch-table row (Tracker._prepare), between the envelope and the
# session end's reason: a question attempt's 8, a material interaction's 4 and an exam result's
# 3; an event fills its kind's and leaves the others null.
_NO_QUESTION = (None,) * 8
_NO_MATERIAL = (None,) * 4
_NO_EXAM = (None,) * 3
_UNTYPED = _NO_QUESTION + _NO_MATERIAL + _NO_EXAM
_TYPED_COLUMNS = {
    K_GENERIC: Tracker._untyped_columns,
    K_START: Tracker._untyped_columns,
    K_HEARTBEAT: Tracker._untyped_columns,
    K_END: Tracker._untyped_columns,
    K_QUESTION: Tracker._question_columns,
    K_MATERIAL: Tracker._material_columns,
    K_EXAM: Tracker._exam_columns,
}


def _network(ip: Any, errors: list[FieldError]) -> str | None:
    """The anonymised network of a client address (None without one); an error if invalid."""
    if ip is None:
        return None
    network = ip_prefix(ip) if type(ip) is str else None
    if network is None:
        errors.append(FieldError("ip", "not a valid IPv4 or IPv6 address"))
    return network


def _first(row: tuple) -> int:
    return row[0]


def _sorted(result: BatchResult) -> BatchResult:
    result.rejections.sort(key=lambda r: r[0])
    return result


def _erased_learners(
    conn: psycopg.Connection, rejected: list[tuple[int, list[FieldError]]]
) -> set[int]:
    """UUID.int of the unknown learners among ``rejected`` that were erased (a completed
    deletion request keeps only the SHA-256 of the id, see python_jobs.warehouse.deletion)."""
    claimed: dict[str, int] = {}
    for _, errs in rejected:
        for e in errs:
            if e.field == "user_id" and e.message.startswith("unknown user "):
                uid = UUID(e.message.split()[2])
                claimed[hashlib.sha256(str(uid).encode()).hexdigest()] = uid.int
    return {claimed[h] for h in _erased_hashes(conn, claimed)}


def _erased_hashes(conn: psycopg.Connection, hashes: Collection[str]) -> set[str]:
    """Which of these SHA-256 hashes of learner ids belong to an erasure request."""
    if not hashes:
        return set()
    rows = conn.execute(
        "select subject_sha256 from app.deletion_requests where subject_sha256 = any(%s)",
        (list(hashes),),
    ).fetchall()
    return {r[0] for r in rows}


def _refused(err: Exception) -> FieldError:
    """The rejection of an event the database refused."""
    diag = getattr(err, "diag", None)
    primary = getattr(diag, "message_primary", None)
    detail = getattr(diag, "message_detail", None)
    if isinstance(primary, str) and "foreign key" in primary and isinstance(detail, str):
        primary = f"{primary}: {detail}"  # which key (a foreign key of a shard, on Citus)
    message = primary[:300] if isinstance(primary, str) else show(err, 300)
    return FieldError("event", f"refused by the database: {message}")


def _record_plainly(
    conn: psycopg.Connection, rejected: list[tuple[int, list[FieldError]]], now: datetime
) -> BatchResult:
    """Last resort when recording rejections with their payloads failed: without payloads."""
    reasons = [(idx, str(ValidationError(errs))) for idx, errs in rejected]
    items = [({"payload": "not kept: it could not be recorded"}, None, r) for _, r in reasons]
    with conn.transaction():
        _insert_rejections(conn, items, now)
    return BatchResult(rejected=len(rejected), rejections=reasons)


def _insert_rejections(
    conn: psycopg.Connection,
    items: list[tuple[Any, UUID | None, str]],
    now: datetime,
    clean_properties: PropertiesFilter | None = None,
) -> None:
    """Record refused input: payloads keep only declared properties (``clean_properties``), and
    payloads and reasons have e-mail and IP addresses masked and erased learners' ids redacted."""
    params = []
    for payload, user_id, reason in items:
        text, size = rejected_payload(payload, clean_properties)
        size = min(size, INT4_MAX)  # payload_bytes is an integer column
        reason = _storable(mask_personal_data(reason), REASON_LIMIT)
        params.append([now, user_id, text, size, reason])
    _redact_erased_ids(conn, params)
    with conn.cursor() as cur:
        cur.executemany(INSERT_REJECTED, params)


def _redact_erased_ids(conn: psycopg.Connection, params: list[list[Any]]) -> None:
    """Replace, in the payloads and reasons of rejection rows, every identifier of an erased
    learner in whatever spelling (a deletion request keeps only the SHA-256 of the id): a payload
    sent after the erasure must not bring the id back, however broken it is."""
    mentioned: set[str] = set()
    for row in params:
        mentioned |= mentioned_ids(row[2]) | mentioned_ids(row[4])
    erased = _erased_hashes(conn, mentioned)
    if erased:
        for row in params:
            row[2], row[4] = redact_ids(row[2], erased), redact_ids(row[4], erased)


def _storable(text: str, limit: int) -> str:
    """``text`` as PostgreSQL text can hold it: no NUL, no lone surrogate, at most ``limit``
    characters."""
    if len(text) > limit:
        text = text[:limit] + "..."
    if not text.isascii():
        text = text.encode("utf-8", errors="replace").decode("utf-8")
    return text.replace("\x00", "\\u0000")


class _Sessions:
    """The study_sessions rows a set of rows touches: fetched (and locked) once, updated in
    arrival order by ``apply_session_event``, saved with one COPY and one upsert."""

    def __init__(self, conn: psycopg.Connection, rows: list[tuple], idle_timeout: timedelta):
        self.conn = conn
        self.idle_timeout = idle_timeout
        ids = {sid.int: sid for r in rows if (sid := r[R_SESSION]) is not None}
        self.ids = ids
        self.fetched: dict[int, list[Any]] = {}
        if ids:
            for sid, *state in conn.execute(SELECT_SESSIONS, (sorted(ids.values()),)):
                self.fetched[sid.int] = state
        self.reset()

    def reset(self) -> None:
        self.states: dict[int, list[Any]] = {k: list(v) for k, v in self.fetched.items()}

    def apply(
        self,
        rows: list[tuple],
        rejected: list[tuple[int, list[FieldError]]],
        passive: Set[int] = frozenset(),
    ) -> list[tuple]:
        """Apply the rows' events; refuse (into ``rejected``) events whose session belongs to
        another learner. Rows whose batch index is in ``passive`` (already stored) are checked
        but change nothing. Returns the rows kept."""
        if not self.ids:
            return rows
        states = self.states
        idle = self.idle_timeout
        kept = []
        for r in rows:
            sid = r[R_SESSION]
            if sid is None:
                kept.append(r)
                continue
            key = sid.int
            state = states.get(key)
            if state is not None and state[0].int != r[R_USER].int:
                error = FieldError("session_id", f"session {sid} belongs to another learner")
                rejected.append((r[R_IDX], [error]))
                continue
            if passive and r[R_IDX] in passive:
                kept.append(r)
                continue
            new = apply_session_event(
                state, r[R_USER], r[R_OCCURRED], r[R_TYPE], r[R_END_REASON], idle
            )
            if state is None:
                states[key] = new
            kept.append(r)
        return kept

    def save(self) -> None:
        if not self.states:
            return
        ids = self.ids
        with self.conn.cursor() as cur:
            with cur.copy("copy pg_temp.tracker_sessions from stdin") as copy:
                for key, (user_id, started, last, ended, reason) in self.states.items():
                    # In UTC: text COPY would send an offset PostgreSQL refuses (beyond +/-15:59).
                    copy.write_row(
                        (ids[key], user_id, _utc(started), _utc(last), _utc(ended), reason)
                    )
            cur.execute(UPSERT_SESSIONS)


def _write(
    conn: psycopg.Connection, rows: list[tuple], rejected: list[tuple[int, list[FieldError]]]
) -> tuple[int, set[int], int]:
    """COPY the rows and insert those whose event_id is new. Returns (how many were stored,
    batch indices of the rows that were not new, how many of those repeat the stored content).
    Repeats whose content differs from the stored version are appended to ``rejected``."""
    not_new: set[int] = set()
    same = 0
    with conn.cursor() as cur:
        with cur.copy(COPY_BATCH) as copy:
            copy.set_types(BATCH_TYPES)
            write = copy.write_row
            for r in rows:
                write(r)
        if len(rows) < SMALL_BATCH:  # the savepoint's round trips cost more than it saves
            cur.execute(INSERT_RECEIPTS)
        else:
            try:
                with conn.transaction():  # a savepoint
                    cur.execute(INSERT_RECEIPTS_FAST)
            except psycopg.errors.UniqueViolation:
                cur.execute(INSERT_RECEIPTS)
        stored = cur.rowcount
        if stored < len(rows):  # INSERT_RECEIPTS ran: it returned the event_ids it stored
            new = {event_id for (event_id,) in cur.fetchall()}
            old = [r for r in rows if r[R_EVENT_ID] not in new]
            repeats = [r[R_IDX] for r in old]
            cur.execute(FIND_REPEATS, {"idx": repeats})
            for idx, differs in cur.fetchall():
                not_new.add(idx)
                if differs:
                    rejected.append((idx, [_repeat_error()]))
                else:
                    same += 1
            cur.execute(DROP_REPEATS, (repeats,))
        if stored:
            cur.execute(INSERT_EVENTS)
            kinds = {r[R_TYPE] for r in rows}
            if "question_attempt" in kinds:
                cur.execute(INSERT_QUESTION_ATTEMPTS)
            if "material_interaction" in kinds:
                cur.execute(INSERT_MATERIAL_INTERACTIONS)
            if "exam_result" in kinds:
                cur.execute(INSERT_EXAM_RESULTS)
    return stored, not_new, same


def _repeat_error() -> FieldError:
    return FieldError(
        "event_id", "already stored with different content (the first version is kept)"
    )
