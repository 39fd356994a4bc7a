"""Property-based fuzzing of the event tracker against a real PostgreSQL.

For any input, the tracker's contract holds:

- ``track``, ``track_payload`` and ``track_batch`` return, or raise ValidationError; nothing else
  escapes;
- for every batch, sent = stored + duplicates + rejected, and the rows added to
  ``app.study_events`` and ``app.rejected_events`` are exactly the stored and rejected counts;
- a batch stores what sending its events one by one does (same counts, same rejected indices),
  on both batch paths: the Tracker's own connection and the two worker connections.

The generated input mixes valid events with the poisons that once stopped a batch: properties
nested thousands of levels deep, integers too long to print, UTC offsets PostgreSQL refuses,
tzinfo objects that fail, NaN and infinities, lone surrogates and NUL characters, non-string
keys, objects whose repr raises, times at the ends of the calendar, enormous and malformed JSON,
bytes that are not UTF-8, repeated JSON keys, repeated event ids and sessions shared by learners.

Runs are reproducible (``derandomize=True``, no example database) and sized for CI: 2,000
examples in all.
"""

from __future__ import annotations

import json
import os
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from functools import partial
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from python_jobs.ingest.events import (
    ExamResult,
    GenericEvent,
    MaterialInteraction,
    QuestionAttempt,
    SessionEnd,
    SessionHeartbeat,
    SessionStart,
)
from python_jobs.ingest.tracker import BatchResult, Tracker, ValidationError

pytestmark = pytest.mark.slow  # hypothesis drives hundreds of batches through the tracker

FUZZ = settings(
    deadline=None,
    database=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],  # no "explain": slow on failures
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PAYLOAD_EXAMPLES = int(os.environ.get("FUZZ_PAYLOADS", 1100))
INLINE_EXAMPLES = int(os.environ.get("FUZZ_BATCHES", 500))
WORKER_EXAMPLES = int(os.environ.get("FUZZ_WORKER_BATCHES", 400))

NOW = datetime.now(UTC).replace(microsecond=0)
QUESTIONS = {101: (2, "A"), 102: (2, "C")}
MATERIAL = 201
N_LEARNERS = 3  # slot 3 is a learner nobody registered


class _Zone(tzinfo):
    """A client-made tzinfo: an offset Python refuses (30 hours), or one that raises."""

    def __init__(self, hours: int | None) -> None:
        self.hours = hours

    def utcoffset(self, dt: datetime | None) -> timedelta:
        if self.hours is None:
            raise RuntimeError("no such zone")
        return timedelta(hours=self.hours)

    def dst(self, dt: datetime | None) -> timedelta:
        return timedelta(0)


class _Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("repr failed")

    __str__ = __repr__


def _nested(depth: int) -> Any:
    value: Any = 1
    for i in range(depth):
        value = {"a": value} if i % 2 else [value]
    return value


@dataclass(frozen=True)
class Slot:
    """A symbolic id: the same slot in one example is the same fresh UUID at run time, so
    examples never see each other's events and a batch can be replayed one by one."""

    kind: str  # event | session | user
    n: int


# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class Poison:
    """A poison value by name, made when an event is built: hypothesis prints the examples it
    reports, and some poisons cannot be printed."""

    name: str


POISONS: dict[str, Any] = {
    "int of 5,001 digits": lambda: 10**5000,
    "int of 4,401 digits": lambda: -(10**4400),
    "unprintable": _Unprintable,
    "nested 70": lambda: _nested(70),
    "nested 2,000": lambda: _nested(2000),
    "70 KB string": lambda: "x" * 70_000,
    "set": lambda: {1, 2},
    "bytes": lambda: b"\xff\xfe",
}
POISON_VALUES = [Poison(name) for name in POISONS] + [
    float("nan"),
    float("inf"),
    -1e308,
    "\ud800",
    "a\x00b",
    (1, 2),
]
# Clean values: what a well-behaved client sends.
safe_text = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=10
)
json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=False, allow_infinity=False),
        safe_text,
    ),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(safe_text, inner, max_size=3),
    max_leaves=5,
)
clean_properties = st.dictionaries(safe_text, json_values, max_size=3)
offsets = st.integers(-(24 * 60 - 1), 24 * 60 - 1).map(lambda m: timezone(timedelta(minutes=m)))
recent = st.builds(
    lambda seconds, zone: (NOW - timedelta(seconds=seconds)).astimezone(zone),
    st.integers(-3600, 2 * 366 * 86400),
    offsets,
)

# Bad values: any of them may replace any one field of an event.
keys = st.one_of(
    safe_text,
    st.sampled_from(["\ud800", "k\x00", 1, 2.5, None, True, (1, 2), float("nan")]),
)
bad_structures = st.recursive(
    st.one_of(json_values, st.sampled_from(POISON_VALUES)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
    max_leaves=6,
)
bad_properties = st.one_of(
    st.dictionaries(keys, bad_structures, max_size=4),
    st.sampled_from(
        [
            None,
            [],
            "page=1",
            {"deep": Poison("nested 2,000")},
            {"n": Poison("int of 5,001 digits")},
            {"n": float("nan")},
        ]
    ),
)
junk = st.sampled_from(
    ["not-a-uuid", 5, None, Poison("unprintable"), Poison("int of 5,001 digits"), True, 1.5]
)
bad_times = st.sampled_from(
    # Built when drawn: hypothesis hashes sampled values, and these cannot all be hashed.
    [
        lambda: datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5))),
        lambda: datetime(9999, 12, 31, 23, 59, tzinfo=timezone(-timedelta(hours=5))),
        lambda: datetime(2026, 1, 1),  # naive
        lambda: NOW.replace(tzinfo=_Zone(30)),
        lambda: NOW.replace(tzinfo=_Zone(None)),
        lambda: NOW + timedelta(days=2),
        lambda: NOW - timedelta(days=5 * 366),
        lambda: "2026-01-01T00:00:00Z",
    ]
).map(lambda make: make())
bad_values = st.one_of(
    junk,
    st.sampled_from(POISON_VALUES),
    bad_times,
    bad_properties,
    st.just(Slot("user", N_LEARNERS)),  # a learner nobody registered
    st.just(Slot("session", 0)),
    st.floats(),
    st.integers(-(2**40), 2**40),
)


# --------------------------------------------------------------------------- events


def _common(session: bool) -> dict[str, st.SearchStrategy[Any]]:
    slot = st.integers(0, 2).map(lambda n: Slot("session", n))
    return {
        "event_id": st.integers(0, 3).map(lambda n: Slot("event", n)),
        "user_id": st.integers(0, N_LEARNERS - 1).map(lambda n: Slot("user", n)),
        "occurred_at": recent,
        "session_id": slot if session else st.one_of(st.none(), slot),
        "properties": clean_properties,
        "ip": st.sampled_from([None, "203.0.113.9", "2001:db8::1"]),
    }


def _poisoned(spec: tuple[dict, tuple[str, Any] | None], cls: type) -> tuple[type, dict]:
    fields, poison = spec
    if poison is not None:
        name, value = poison
        fields = fields | {name: value}
    return cls, fields


def _spec(
    cls: type, session: bool = False, **fields: st.SearchStrategy[Any]
) -> st.SearchStrategy[tuple[type, dict]]:
    """Events of ``cls``: two in three clean, the others with one field replaced by a bad value."""
    clean = _common(session) | fields
    poison = st.tuples(st.sampled_from(sorted(clean)), bad_values)
    return st.tuples(st.fixed_dictionaries(clean), st.one_of(st.none(), st.none(), poison)).map(
        lambda spec: _poisoned(spec, cls)
    )


event_specs = st.one_of(
    _spec(GenericEvent, event_type=st.sampled_from(["page_view", "search"])),
    _spec(SessionStart, session=True),
    _spec(SessionHeartbeat, session=True),
    _spec(SessionEnd, session=True, end_reason=st.sampled_from(["user_ended", "app_closed"])),
    _spec(
        QuestionAttempt,
        question_id=st.sampled_from(list(QUESTIONS)),
        selected_answer=st.sampled_from(["A", "C", None]),
        attempt_number=st.integers(1, 3),
        time_to_answer_ms=st.integers(0, 10**6),
        confidence_level=st.one_of(st.none(), st.integers(1, 5)),
        hint_used=st.booleans(),
    ),
    _spec(
        MaterialInteraction,
        material_id=st.just(MATERIAL),
        interaction_type=st.sampled_from(["open", "progress", "complete"]),
        progress=st.one_of(st.none(), st.floats(0, 1)),
        active_seconds=st.integers(0, 10**5),
    ),
    _spec(
        ExamResult,
        exam_kind=st.sampled_from(["practice", "board"]),
        scaled_score=st.integers(1, 300),
        passed=st.booleans(),
    ),
)
not_events = st.sampled_from(
    [(None, None), (dict, {"event_type": "page_view"}), (_Unprintable, None)]
)
batches = st.tuples(
    st.lists(st.one_of(event_specs, event_specs, event_specs, not_events), min_size=1, max_size=5),
    st.lists(st.integers(0, 4), max_size=2),  # events sent twice in the batch
).map(lambda drawn: drawn[0] + [drawn[0][i % len(drawn[0])] for i in drawn[1]])
small_ints = st.one_of(st.integers(-2, 2**31), junk)


class World:
    """The learners of the module, and fresh UUIDs for the slots of one run."""

    def __init__(self, learners: list[uuid.UUID]) -> None:
        self.learners = learners

    def ids(self) -> dict[Slot, uuid.UUID]:
        made = {Slot("user", n): learner for n, learner in enumerate(self.learners)}
        made[Slot("user", N_LEARNERS)] = uuid.uuid4()  # not registered
        return made

    def event(self, spec: tuple[type | None, Any], ids: dict[Slot, uuid.UUID]) -> Any:
        cls, fields = spec
        if cls is None or cls is _Unprintable:
            return None if cls is None else _Unprintable()
        if cls is dict:
            return dict(fields)
        resolved = {k: self._resolve(v, ids) for k, v in fields.items()}
        return cls(**resolved)

    @staticmethod
    def _resolve(value: Any, ids: dict[Slot, uuid.UUID]) -> Any:
        if type(value) is Slot:
            return ids.setdefault(value, uuid.uuid4())
        if type(value) is Poison:
            return POISONS[value.name]()
        if type(value) is dict:
            return {World._resolve(k, ids): World._resolve(v, ids) for k, v in value.items()}
        if type(value) is list:
            return [World._resolve(v, ids) for v in value]
        return value


@pytest.fixture(scope="module")
def world(migrated_db: str) -> World:
    with psycopg.connect(migrated_db) as conn:
        conn.execute(
            "insert into app.topics (id, parent_id, level, name, path, board_exam_weight) values "
            "(1, null, 'system', 'Cardiology', 'cardio', 0.5), "
            "(2, 1, 'subject', 'Heart failure', 'cardio/hf', 0.5)"
        )
        for qid, (topic, answer) in QUESTIONS.items():
            conn.execute(
                "insert into app.questions (id, topic_id, difficulty, correct_answer) "
                "values (%s, %s, 0.5, %s)",
                (qid, topic, answer),
            )
        conn.execute(
            "insert into app.materials (id, topic_id, kind, est_minutes) "
            "values (%s, 2, 'chapter', 15)",
            (MATERIAL,),
        )
        learners = [uuid.uuid4() for _ in range(N_LEARNERS)]
        for learner in learners:
            conn.execute(
                "insert into app.users (id, timezone, cohort, exam_target) "
                "values (%s, 'Europe/Berlin', '2026-fall', 'step1')",
                (learner,),
            )
    return World(learners)


@pytest.fixture(scope="module")
def fuzz_conn(migrated_db: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(migrated_db) as conn:
        yield conn


OUTCOMES: Counter[str] = Counter()  # over all examples of the module, for the guard at the end


def _counts(conn: psycopg.Connection) -> tuple[int, int]:
    row = conn.execute(
        "select (select count(*) from app.study_events), (select count(*) from app.rejected_events)"
    ).fetchone()
    conn.commit()
    return row


def _one_by_one(tracker: Tracker, events: list[Any]) -> BatchResult:
    """The outcome of sending each event on its own, as a BatchResult."""
    result = BatchResult()
    for i, event in enumerate(events):
        try:
            stored = tracker.track(event)
        except ValidationError as err:
            result.rejected += 1
            result.rejections.append((i, str(err)))
            continue
        if stored:
            result.accepted += 1
        else:
            result.duplicates += 1
    return result


def _sent(
    conn: psycopg.Connection, send: Callable[[list[Any]], BatchResult], events: list[Any]
) -> BatchResult:
    """``send(events)``, checking the counting invariant against the database."""
    before = _counts(conn)
    result = send(events)
    stored, rejected = (a - b for a, b in zip(_counts(conn), before, strict=True))
    assert result.accepted + result.duplicates + result.rejected == len(events)
    assert (stored, rejected) == (result.accepted, result.rejected)
    assert len(result.rejections) == result.rejected
    OUTCOMES.update(stored=result.accepted, duplicate=result.duplicates, rejected=result.rejected)
    return result


def _same_outcome(a: BatchResult, b: BatchResult) -> None:
    assert (a.accepted, a.duplicates, a.rejected) == (b.accepted, b.duplicates, b.rejected)
    assert [i for i, _ in a.rejections] == [i for i, _ in b.rejections]


def _events(world: World, specs: list) -> list[Any]:
    """The batch's events with fresh ids; slots repeat within it (repeated events, sessions)."""
    ids = world.ids()
    return [world.event(spec, ids) for spec in specs]


@settings(FUZZ, max_examples=INLINE_EXAMPLES)
@given(specs=batches)
def test_fuzzed_batches_on_the_trackers_own_connection(fuzz_conn, world, specs):
    """Batches on the Tracker's connection store what sending the events one by one does."""
    tracker = Tracker(fuzz_conn, batch_connections=0)
    batch = _sent(fuzz_conn, tracker.track_batch, _events(world, specs))
    single = _sent(fuzz_conn, partial(_one_by_one, tracker), _events(world, specs))
    _same_outcome(batch, single)


@settings(FUZZ, max_examples=WORKER_EXAMPLES)
@given(specs=batches)
def test_fuzzed_batches_on_two_worker_connections(fuzz_conn, world, specs):
    """Batches on two worker connections store what the Tracker's own connection does (and so
    what sending one by one does, by the test above)."""
    workers = Tracker(fuzz_conn, batch_connections=2, parallel_from=1)
    inline = Tracker(fuzz_conn, batch_connections=0)
    batch = _sent(fuzz_conn, workers.track_batch, _events(world, specs))
    _same_outcome(batch, _sent(fuzz_conn, inline.track_batch, _events(world, specs)))


# --------------------------------------------------------------------------- raw payloads

RAW_POISONS = [
    "[" * 100_000,
    '{"a": ' * 3000 + "1" + "}" * 3000,
    '{"event_type": "page_view", "n": 1' + "0" * 5000 + "}",
    '{"event_type": "page_view", "event_type": "search"}',
    b'{"event_type": "page_view", "x": "\xff\xfe"}',
    b"\xef\xbb\xbf{}",
    '{"event_type": "page_view", "x": "\\ud800"}',
    '{"event_type": "page_view", "x": "\\u0000"}',
    "NaN",
    '{"x": Infinity}',
    "",
    "\x00",
    " " * 2_000_000,
    '{"properties": "' + "y" * 2_000_000 + '"}',
    Poison("unprintable"),
    None,
    12,
    ["page_view"],
]
bad_iso_times = st.sampled_from(
    [
        "2026-11-20T10:00:00-23:59:59",
        "2026-11-20T10:00:00+24:00",
        "0001-01-01T00:00:00+05:00",
        "9999-12-31T23:59:59-05:00",
        "2026-11-20T10:00:00",
        "yesterday",
        "",
    ]
)
payload_fields = st.fixed_dictionaries(
    {
        "event_id": st.integers(0, 1).map(lambda n: Slot("event", n)),
        "user_id": st.integers(0, N_LEARNERS - 1).map(lambda n: Slot("user", n)),
        # Times as clients send them, at any offset Python accepts (up to +/-23:59).
        "occurred_at": recent.map(datetime.isoformat),
    },
    optional={"properties": clean_properties, "ip": st.sampled_from(["198.51.100.7"])},
)
payloads = st.one_of(
    st.tuples(
        payload_fields,
        st.one_of(
            st.none(),
            st.none(),
            st.tuples(
                st.sampled_from(
                    ["event_id", "user_id", "occurred_at", "properties", "ip", "session_id", "x"]
                ),
                st.one_of(bad_values, bad_iso_times),
            ),
        ),
        st.sampled_from(["page_view", "page_view", "search", "session_start", "telepathy", 7]),
        st.sampled_from(["dict", "text", "text", "bytes", "truncated", "repeated"]),
    ),
    st.sampled_from(RAW_POISONS).map(lambda raw: (raw, None, None, "raw")),
)


def _payload_dict(
    fields: dict[str, Any], event_type: Any, ids: dict[Slot, uuid.UUID]
) -> dict[Any, Any]:
    out: dict[Any, Any] = {"event_type": event_type}
    for key, value in fields.items():
        value = World._resolve(value, ids)
        out[key] = str(value) if type(value) is uuid.UUID else value
    return out


def _render(payload: tuple, ids: dict[Slot, uuid.UUID]) -> Any:
    fields, poison, event_type, form = payload
    if form == "raw":
        return World._resolve(fields, ids)
    if poison is not None:
        fields = fields | {poison[0]: poison[1]}
    data = _payload_dict(fields, event_type, ids)
    if form == "dict":
        return data
    try:
        text = json.dumps(data, ensure_ascii=False)
    except (ValueError, TypeError, RecursionError):
        return data  # not representable as JSON text: send the object itself
    if form == "truncated":
        return text[: len(text) // 2]
    if form == "repeated":
        return text[:-1] + ', "user_id": "' + str(uuid.uuid4()) + '"}'
    return text.encode("utf-8", errors="surrogatepass") if form == "bytes" else text


@settings(FUZZ, max_examples=PAYLOAD_EXAMPLES)
@given(payload=payloads, twice=st.booleans())
def test_fuzzed_payloads_are_stored_or_refused_with_a_validation_error(
    fuzz_conn, world, payload, twice
):
    tracker = Tracker(fuzz_conn)
    ids = world.ids()
    for _ in range(2 if twice else 1):  # the second time, a duplicate (or refused again)
        raw = _render(payload, ids)
        before = _counts(fuzz_conn)
        try:
            outcome = "stored" if tracker.track_payload(raw) else "duplicate"
        except ValidationError:
            outcome = "rejected"
        OUTCOMES[outcome] += 1
        stored, rejected = (a - b for a, b in zip(_counts(fuzz_conn), before, strict=True))
        assert (stored, rejected) == {
            "stored": (1, 0),
            "duplicate": (0, 0),
            "rejected": (0, 1),
        }[outcome]


def test_the_fuzzing_reached_every_outcome():
    """A guard on the generators: valid events are among the examples, not only poisons."""
    if not OUTCOMES:
        pytest.skip("the fuzz tests did not run")
    assert min(OUTCOMES["stored"], OUTCOMES["duplicate"], OUTCOMES["rejected"]) >= 20, OUTCOMES
