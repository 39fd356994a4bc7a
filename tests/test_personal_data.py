"""Personal data against a real PostgreSQL: declared properties, masking of e-mail and IP
addresses in what is stored, and erasure of refused payloads that mention a learner however they
were broken (including payloads that arrive after the erasure)."""

from __future__ import annotations

import json
import re
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from alembic.script import ScriptDirectory

from python_jobs.ingest.events import GenericEvent, QuestionAttempt, SessionEnd, SessionStart
from python_jobs.ingest.properties import DeclaredProperties
from python_jobs.ingest.tracker import Tracker, ValidationError
from python_jobs.ingest.validation import (
    ERASED_ID_PLACEHOLDER,
    mask_personal_data,
    mentioned_ids,
    redact_ids,
    rejected_payload,
)
from python_jobs.simulation.reference import read_event_type_properties
from python_jobs.simulation.simulator import generate
from python_jobs.warehouse import migrate
from python_jobs.warehouse.deletion import apply_deletions, request_deletion, subject_hash

EMAIL = "Jane.Doe+exam@mail.example.org"
NAME = "Jane Quimby-Doe"
IPV4 = "203.0.113.77"
IPV6 = "2001:db8:85a3::8a2e:370:7334"
IPV6_FORMS = (IPV6, "2001:0db8:85a3:0000:0000:8a2e:0370:7334", "2001:db8:85a3:0:0:8a2e:370:7334")
SECRETS = (EMAIL, NAME, IPV4, *IPV6_FORMS, "8a2e:370:7334", "8a2e:0370:7334")


@pytest.fixture
def new_user(migrated_db: str) -> Callable[[], uuid.UUID]:
    def make() -> uuid.UUID:
        uid = uuid.uuid4()
        with psycopg.connect(migrated_db) as c:
            c.execute(
                "insert into app.users (id, timezone, cohort, exam_target) "
                "values (%s, 'Europe/Berlin', '2026-fall', 'step1')",
                (uid,),
            )
        return uid

    return make


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)


def _event(user: uuid.UUID, event_type: str, properties: dict, **kw) -> GenericEvent:
    return GenericEvent(
        event_type=event_type,
        event_id=uuid.uuid4(),
        user_id=user,
        occurred_at=_now(),
        properties=properties,
        **kw,
    )


def _properties(conn: psycopg.Connection, event_id: uuid.UUID) -> dict | None:
    return conn.execute(
        "select properties from app.study_events where event_id = %s", (event_id,)
    ).fetchone()[0]


def _text_hits(conn: psycopg.Connection, needles: tuple[str, ...]) -> set[tuple[str, str]]:
    """(table, needle) for every row of every table in app and ml whose text holds a needle
    (a whole row as text: every column, whatever its type)."""
    tables = conn.execute(
        "select table_schema || '.' || table_name from information_schema.tables "
        "where table_schema in ('app', 'ml') and table_type = 'BASE TABLE'"
    ).fetchall()
    assert len(tables) > 15
    hits = set()
    for (table,) in tables:
        for needle in needles:
            (found,) = conn.execute(
                f"select count(*) from {table} as t where t::text ilike %s", (f"%{needle}%",)
            ).fetchone()
            if found:
                hits.add((table, needle))
    return hits


# --------------------------------------------------------------------------- declared properties


def test_declared_properties_match_the_seed_and_name_nobody(conn):
    in_db = conn.execute(
        "select event_type, key, type, description from app.event_type_properties"
    ).fetchall()
    assert sorted(read_event_type_properties()) == sorted(in_db)
    # What the simulator sends is declared, so nothing the warehouse may read is dropped.
    assert {(t, k) for t, k, _, _ in in_db} >= {
        ("page_view", "screen"),
        ("search", "topic_id"),
        ("ai_coach_message", "topic_id"),
        ("ai_coach_message", "chars"),
        ("session_end", "end_reason"),
    }
    contact = re.compile(r"(^|_)(names?|first|last|surname|e?mail|phone|ip|address|addr)(_|$)")
    assert [k for _, k, _, _ in in_db if contact.search(k)] == []
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute(
            "insert into app.event_type_properties values ('search', 'page', 'json', 'anything')"
        )


def test_the_simulated_app_sends_only_declared_properties():
    """Nothing the simulator sends (the app's event mix) is dropped: the declarations cover it."""
    declared: dict[str, dict[str, str]] = {}
    for event_type, key, kind, _ in read_event_type_properties():
        declared.setdefault(event_type, {})[key] = kind
    schema = DeclaredProperties(declared)
    sim = generate(20, 7, seed=5, end=datetime(2026, 3, 20, 12, 0, tzinfo=UTC))
    seen: Counter[str] = Counter()
    for event in sim.events():
        props = dict(event.properties)
        if isinstance(event, SessionEnd):
            props["end_reason"] = event.end_reason  # what the tracker stores
        kept, dropped = schema.clean(event.event_type, props)
        assert (kept, dropped) == (props, 0), event
        seen.update(f"{event.event_type}.{key}" for key in kept)
    assert set(seen) == {f"{t}.{k}" for t, keys in declared.items() for k in keys} - {
        "search.query",  # the app's free text: declared, the simulator sends none
        "search.results",
    }


@pytest.mark.parametrize("doc", ["README.md", "models/overview.md"])
def test_the_docs_show_the_declared_properties(doc):
    text = (Path(__file__).parent.parent / doc).read_text()
    rows = re.findall(r"^\| `(\w+)` \| `(\w+)` \| (\w+) \|", text, flags=re.MULTILINE)
    assert sorted(rows) == sorted((t, k, kind) for t, k, kind, _ in read_event_type_properties())


def test_accepted_events_store_no_email_name_or_ip_address(conn, new_user):
    user = new_user()
    tracker = Tracker(conn, parallel_from=1)
    query = f"ask {EMAIL} at {IPV4} or [{IPV6}] about torsades"
    leaky = {
        "query": query,
        "results": 3,
        "name": NAME,
        "full_name": NAME,
        "email": EMAIL,
        "client_ip": IPV4,
        "ipv6": IPV6_FORMS[1],
        "nested": {"name": NAME, "ip": IPV6_FORMS[2]},
    }
    single, batched = _event(user, "search", leaky), _event(user, "search", leaky)
    assert tracker.track(single) is True
    assert tracker.dropped_properties == 6
    result = tracker.track_batch([batched, _event(user, "page_view", {"screen": "reader"})])
    assert (result.accepted, result.rejected, result.dropped_properties) == (2, 0, 6)
    raw = {
        "event_type": "search",
        "event_id": str(uuid.uuid4()),
        "user_id": str(user),
        "occurred_at": _now().isoformat(),
        "ip": IPV6_FORMS[1],
        "properties": leaky,
    }
    assert tracker.track_payload(json.dumps(raw)) is True

    cleaned = "ask [email removed] at 203.0.113.0/24 or [2001:db8:85a3::/48] about torsades"
    for event_id in (single.event_id, batched.event_id, uuid.UUID(raw["event_id"])):
        assert _properties(conn, event_id) == {"query": cleaned, "results": 3}
    assert _text_hits(conn, SECRETS) == set()


def test_undeclared_keys_and_wrong_types_are_dropped_and_counted(conn, new_user):
    user = new_user()
    session = uuid.uuid4()
    tracker = Tracker(conn, parallel_from=1)
    events = [
        _event(user, "page_view", {"screen": "reader", "page": "qbank", "colour": 1}),  # 2
        _event(  # 5: a string count, a boolean id, a null query, an int too big, a list
            user,
            "search",
            {"results": "3", "topic_id": True, "query": None, "x": 10**30, "tags": ["a"]},
        ),
        _event(user, "ai_coach_message", {"topic_id": 2**63, "chars": 120}),  # 1
        SessionStart(  # 1: session_start declares no property
            event_id=uuid.uuid4(),
            user_id=user,
            occurred_at=_now(),
            session_id=session,
            properties={"screen": "home"},
        ),
        SessionEnd(  # 1: a client's own end_reason is replaced by the event's field
            event_id=uuid.uuid4(),
            user_id=user,
            occurred_at=_now() + timedelta(minutes=1),
            session_id=session,
            end_reason="app_closed",
            properties={"end_reason": "forgot", "battery": 3},
        ),
    ]
    result = tracker.track_batch(events)
    assert (result.accepted, result.rejected, result.dropped_properties) == (5, 0, 10)
    stored = [_properties(conn, e.event_id) for e in events]
    assert stored == [
        {"screen": "reader"},
        None,  # nothing left: the log stores NULL for no properties (migration 0017)
        {"chars": 120},
        None,
        {"end_reason": "app_closed"},
    ]
    # The same events one by one: the same rows and the same count.
    single = Tracker(conn)
    for e, props in zip(events, stored, strict=True):
        copy = type(e)(**(e.__dict__ | {"event_id": uuid.uuid4()}))
        assert single.track(copy) is True
        assert _properties(conn, copy.event_id) == props
    assert single.dropped_properties == 10


def test_repeats_that_differ_only_in_dropped_keys_are_duplicates_in_a_batch_too(conn, new_user):
    """Two sends of one event that differ only in what is dropped store the same row: a
    duplicate, whether they arrive in one batch or one by one."""
    user = new_user()
    first = _event(user, "page_view", {"screen": "reader", "name": NAME})
    again = GenericEvent(**(first.__dict__ | {"properties": {"colour": 1, "screen": "reader"}}))
    other = GenericEvent(**(first.__dict__ | {"properties": {"screen": "dashboard"}}))
    result = Tracker(conn, parallel_from=1).track_batch([first, again, other])
    assert (result.accepted, result.duplicates, result.rejected) == (1, 1, 1)
    assert result.rejections[0][0] == 2

    single = Tracker(conn)
    copy = GenericEvent(**(first.__dict__ | {"event_id": uuid.uuid4()}))
    assert single.track(copy) is True
    assert single.track(GenericEvent(**(again.__dict__ | {"event_id": copy.event_id}))) is False
    with pytest.raises(ValidationError, match="event_id: already stored with different content"):
        single.track(GenericEvent(**(other.__dict__ | {"event_id": copy.event_id})))


def test_declared_properties_checks_its_types():
    declared = DeclaredProperties({"search": {"query": "string", "score": "number"}})
    assert declared.clean("search", {"score": 1.5, "query": f"me {EMAIL}"}) == (
        {"score": 1.5, "query": "me [email removed]"},
        0,
    )
    assert declared.clean("search", {"score": float("nan")}) == ({}, 1)
    assert declared.clean(["search"], {"score": 1}) == ({}, 1)  # an unhashable event type
    with pytest.raises(ValueError, match="unknown type 'array'"):
        DeclaredProperties({"search": {"tags": "array"}})


# --------------------------------------------------------------------------- rejected input


def test_rejected_payloads_and_reasons_hold_no_email_or_ip(conn, new_user):
    user = new_user()
    tracker = Tracker(conn)
    with pytest.raises(ValidationError):  # an unknown event type quoted in the reason
        tracker.track(_event(user, f"mail {EMAIL}", {"query": EMAIL}, ip=IPV4))
    with pytest.raises(ValidationError):  # malformed JSON kept as text
        tracker.track_payload(f'{{"note": "{EMAIL} from {IPV4} and {IPV6}", "user_id": "{user}"')
    with pytest.raises(ValidationError):  # a bad question id quoted in the reason
        tracker.track(
            QuestionAttempt(
                event_id=uuid.uuid4(),
                user_id=user,
                occurred_at=_now(),
                question_id=f"q {EMAIL}",  # type: ignore[arg-type]
                selected_answer="A",
                ip=IPV6_FORMS[1],
            )
        )
    # Refused events of a known type keep only declared properties (no name key), masked.
    leaky = {"name": NAME, "query": f"{EMAIL} {IPV4}"}
    result = tracker.track_batch([_event(user, "search", leaky, ip="300.1.2.3")])
    assert result.rejected == 1
    with pytest.raises(ValidationError, match="occurred_at: required"):
        tracker.track_payload({"event_type": "search", "user_id": str(user), "properties": leaky})
    rows = conn.execute(
        "select payload, reason from app.rejected_events "
        "where payload like %s or reason like %s or user_id = %s",
        ("%[email removed]%", "%[email removed]%", user),
    ).fetchall()
    assert len(rows) == 5
    assert sum("[email removed]" in reason for _, reason in rows) == 2
    assert sum('"query": "[email removed] 203.0.113.0/24"' in p for p, _ in rows) == 2
    assert _text_hits(conn, SECRETS) == set()


# --------------------------------------------------------------------------- erasure


def _spellings(uid: uuid.UUID) -> list[str]:
    return [str(uid), uid.hex.upper(), f"{{{uid}}}", f"urn:uuid:{str(uid).upper()}"]


def _mentions(conn: psycopg.Connection, uid: uuid.UUID) -> int:
    return conn.execute(
        "select count(*) from app.rejected_events "
        "where replace(lower(payload || reason), '-', '') like %s or user_id = %s",
        (f"%{uid.hex}%", uid),
    ).fetchone()[0]


def _send_broken(tracker: Tracker, uid: uuid.UUID) -> None:
    """Truncated JSON naming the learner, once per spelling: each is refused."""
    for spelling in _spellings(uid):
        with pytest.raises(ValidationError, match="malformed JSON"):
            tracker.track_payload(f'{{"event_type": "page_view", "user_id": "{spelling}", "occ')
    with pytest.raises(ValidationError):  # parses, but the id is no UUID string
        tracker.track_payload({"event_type": "search", "user_id": [str(uid)], "x": str(uid)})


def test_erasure_removes_broken_payloads_that_mention_the_learner(conn, new_user):
    learner, other = new_user(), new_user()
    tracker = Tracker(conn)
    tracker.track(_event(learner, "page_view", {"screen": "dashboard"}))
    _send_broken(tracker, learner)
    _send_broken(tracker, other)
    assert _mentions(conn, learner) == 5 and _mentions(conn, other) == 5

    request_deletion(conn, learner)
    apply_deletions(conn)
    assert _mentions(conn, learner) == 0
    assert _mentions(conn, other) == 5

    # Sent again after the erasure: refused, and the id is not stored again in any spelling.
    _send_broken(tracker, learner)
    assert _mentions(conn, learner) == 0
    redacted = conn.execute(
        "select count(*) from app.rejected_events where payload like %s",
        (f"%{ERASED_ID_PLACEHOLDER}%",),
    ).fetchone()
    assert redacted == (5,)
    assert _mentions(conn, other) == 5


def test_mentioned_ids_and_redaction():
    uid, other = uuid.uuid4(), uuid.uuid4()
    text = " ".join([*_spellings(uid), str(other), "deadbeef" * 5, uid.hex + "0"])
    assert mentioned_ids(text) == {subject_hash(uid), subject_hash(other)}
    redacted = redact_ids(text, {subject_hash(uid)})
    assert redacted.count(ERASED_ID_PLACEHOLDER) == 4
    assert str(other) in redacted and uid.hex + "0" in redacted  # a longer hex run is no id
    masked = mask_personal_data(f"<{EMAIL}>, {IPV4} {IPV6}")
    assert masked == "<[email removed]>, 203.0.113.0/24 2001:db8:85a3::/48"
    assert mask_personal_data(masked) == masked  # a network is not masked again
    # A cut payload never ends with part of an identifier.
    text, size = rejected_payload("x" * (65536 - 10) + str(uid))
    assert size == 65536 + 26 and text == "x" * (65536 - 10)
    text, _ = rejected_payload("a" * 70_000)  # at most an identifier's length is given up
    assert text == "a" * (65536 - 63)


def test_migration_erases_refused_payloads_left_by_earlier_erasures(database_factory):
    url = database_factory(migrated=False)
    script = ScriptDirectory.from_config(migrate.alembic_config(url))
    before = script.get_revision("0011_declared_properties").down_revision
    migrate.upgrade(url, before)
    erased, kept = uuid.uuid4(), uuid.uuid4()
    with psycopg.connect(url) as c:
        for uid in (erased, kept):
            c.execute(
                "insert into app.users (id, timezone, cohort, exam_target) "
                "values (%s, 'UTC', 'c', 'step1')",
                (uid,),
            )
            c.execute(
                "insert into app.rejected_events (payload, payload_bytes, reason) "
                "values (%s, 10, 'payload: malformed JSON')",
                (f'{{"user_id": "{{{str(uid).upper()}}}", "occ',),
            )
        c.commit()
        request_deletion(c, erased)
        apply_deletions(c)  # before the fix: the unparsed payload stays
        assert _mentions(c, erased) == 1
    migrate.upgrade(url)
    with psycopg.connect(url) as c:
        assert (_mentions(c, erased), _mentions(c, kept)) == (0, 1)
    migrate.downgrade(url, before)
    migrate.upgrade(url)
