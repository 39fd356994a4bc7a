"""Alembic owns app and ml: upgrade, downgrade to base and upgrade again on a real server."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from uuid import UUID, uuid4

import psycopg
import pytest
import sqlalchemy.exc
from psycopg.types.json import Jsonb

from python_jobs.ingest.events import SessionHeartbeat
from python_jobs.ingest.tracker import CREATE_TEMP_TABLES, FIND_REPEATS, Tracker
from python_jobs.warehouse import migrate


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "select table_schema || '.' || table_name from information_schema.tables "
            "where table_schema in ('app', 'ml')"
        ).fetchall()
    return {r[0] for r in rows}


def test_upgrade_downgrade_upgrade(database_factory):
    url = database_factory(migrated=False)
    migrate.upgrade(url)
    first = _tables(url)
    assert {
        "app.study_events",
        "app.question_attempts",
        "app.users",
        "ml.model_runs",
        "ml.exam_readiness_scores",
        "ml.gap_recommendations",
    } <= first
    migrate.downgrade(url, "base")
    assert _tables(url) == set()
    with psycopg.connect(url) as conn:
        version = conn.execute("select count(*) from public.alembic_version").fetchone()
    assert version == (0,)
    migrate.upgrade(url)
    assert _tables(url) == first


def test_roles_exist_with_least_privilege(migrated_db):
    with psycopg.connect(migrated_db) as conn:
        roles = {
            r[0]
            for r in conn.execute(
                "select rolname from pg_roles where rolname in "
                "('loader', 'transformer', 'ml_writer', 'reporter')"
            )
        }
        assert roles == {"loader", "transformer", "ml_writer", "reporter"}
        can = conn.execute(
            "select has_table_privilege('loader', 'app.study_events', 'INSERT'), "
            "has_table_privilege('loader', 'app.study_events', 'DELETE'), "
            "has_schema_privilege('reporter', 'app', 'USAGE'), "
            "has_table_privilege('ml_writer', 'ml.exam_readiness_scores', 'INSERT')"
        ).fetchone()
    assert can == (True, False, False, True)


def _index_columns(conn: psycopg.Connection, index: str) -> str:
    """What an app index is built on, as pg_get_indexdef prints it after USING."""
    row = conn.execute(
        "select regexp_replace(pg_get_indexdef(%s::regclass), '^.* USING ', '')", (f"app.{index}",)
    ).fetchone()
    return row[0]


def _app_indexes(conn: psycopg.Connection, name: str) -> list[str]:
    return [
        r[0]
        for r in conn.execute(
            "select indexname from pg_indexes where schemaname = 'app' and indexname = %s", (name,)
        )
    ]


def _receipt_columns(conn: psycopg.Connection) -> list[str]:
    return [
        r[0]
        for r in conn.execute(
            "select column_name from information_schema.columns where table_schema = 'app'"
            " and table_name = 'event_receipts' order by ordinal_position"
        )
    ]


def _sessions(sessions: int, events_per_session: int) -> list[SessionHeartbeat]:
    """Heartbeats of a few sessions of one learner, each received a different time after it
    occurred."""
    user = uuid4()
    start = datetime(2026, 11, 20, 8, tzinfo=UTC)
    events = []
    for s in range(sessions):
        session = uuid4()
        for k in range(events_per_session):
            occurred = start + timedelta(hours=s, minutes=k)
            events.append(
                SessionHeartbeat(
                    event_id=uuid4(), user_id=user, occurred_at=occurred, session_id=session,
                    received_at=occurred + timedelta(seconds=7 * s + k),
                )
            )  # fmt: skip
    return events


def _add_learner(conn: psycopg.Connection, user: UUID) -> None:
    conn.execute(
        "insert into app.users (id, timezone, cohort, exam_target) values (%s, 'UTC', 'c', 'x')",
        (user,),
    )
    conn.commit()


def _store_before_0016(url: str, events: list[SessionHeartbeat]) -> None:
    """Events as the tracker stored them before 0016: a receipt with its arrival time, a log row."""
    with psycopg.connect(url) as conn:
        _add_learner(conn, events[0].user_id)
        conn.execute("select app.ensure_study_event_partitions('2026-11-01', 1)")
        for e in events:
            conn.execute(
                "insert into app.event_receipts (event_id, user_id, occurred_at, received_at)"
                " values (%s, %s, %s, %s)",
                (e.event_id, e.user_id, e.occurred_at, e.received_at),
            )
            conn.execute(
                "insert into app.study_events (event_id, user_id, session_id, event_type,"
                " occurred_at, received_at) values (%s, %s, %s, %s, %s, %s)",
                (e.event_id, e.user_id, e.session_id, e.event_type, e.occurred_at, e.received_at),
            )
        conn.commit()


def test_event_log_storage_narrows_indexes_and_receipts(database_factory):
    url = database_factory(migrated=False)
    migrate.upgrade(url, "0013_recall_models")
    events = _sessions(sessions=3, events_per_session=5)
    received = {e.event_id: e.received_at for e in events}
    _store_before_0016(url, events)
    with psycopg.connect(url) as conn:
        assert _index_columns(conn, "study_events_session_idx") == "btree (session_id, occurred_at)"
        assert "received_at" in _receipt_columns(conn)

    migrate.upgrade(url, "0016_event_log_storage")
    with psycopg.connect(url) as conn:
        # one key per session: the btree deduplicates its entries into posting lists
        assert _index_columns(conn, "study_events_session_idx") == "btree (session_id)"
        assert _index_columns(conn, "question_attempts_answered_brin") == (
            "brin (answered_at) WITH (pages_per_range='8')"
        )
        assert _app_indexes(conn, "question_attempts_topic_time_idx") == []
        assert _receipt_columns(conn) == ["event_id", "user_id", "occurred_at"]
        receipts = conn.execute("select count(*) from app.event_receipts").fetchone()[0]
    assert receipts == len(received)

    migrate.downgrade(url, "0013_recall_models")
    with psycopg.connect(url) as conn:
        assert _index_columns(conn, "study_events_session_idx") == "btree (session_id, occurred_at)"
        assert _index_columns(conn, "question_attempts_topic_time_idx") == (
            "btree (topic_id, answered_at)"
        )
        assert _app_indexes(conn, "question_attempts_answered_brin") == []
        restored = dict(conn.execute("select event_id, received_at from app.event_receipts"))
        nullable = conn.execute(
            "select is_nullable from information_schema.columns where table_schema = 'app'"
            " and table_name = 'event_receipts' and column_name = 'received_at'"
        ).fetchone()[0]
    # every receipt gets its own event's arrival time back (they differ from event to event)
    assert restored == received
    assert nullable == "NO"


def test_the_tracker_stores_events_once_on_the_narrow_receipts(migrated_db):
    events = _sessions(sessions=2, events_per_session=3)
    received = {e.event_id: e.received_at for e in events}
    with psycopg.connect(migrated_db) as conn:
        _add_learner(conn, events[0].user_id)
        assert Tracker(conn, trust_received_at=True).track_batch(events).accepted == len(events)
        stored = dict(conn.execute("select event_id, received_at from app.study_events"))
        receipts = {r[0] for r in conn.execute("select event_id from app.event_receipts")}
    assert stored == received
    assert receipts == set(received)


def _store_before_0017(url: str, events: list[SessionHeartbeat]) -> UUID:
    """Events as the tracker stored them before 0017: receipts with the learner and time, log
    rows with ``{}`` or declared properties; plus one receipt with an exam row and no log row (as
    hand-made data has). Returns the exam's event_id."""
    with psycopg.connect(url) as conn:
        _add_learner(conn, events[0].user_id)
        conn.execute("select app.ensure_study_event_partitions('2026-11-01', 1)")
        for k, e in enumerate(events):
            conn.execute(
                "insert into app.event_receipts (event_id, user_id, occurred_at)"
                " values (%s, %s, %s)",
                (e.event_id, e.user_id, e.occurred_at),
            )
            conn.execute(
                "insert into app.study_events (event_id, user_id, session_id, event_type,"
                " occurred_at, received_at, properties) values (%s, %s, %s, %s, %s, %s, %s)",
                (e.event_id, e.user_id, e.session_id, e.event_type, e.occurred_at, e.received_at,
                 Jsonb({"screen": f"s{k}"} if k % 3 == 0 else {})),
            )  # fmt: skip
        exam = uuid4()
        taken = events[0].occurred_at - timedelta(days=1)
        conn.execute(
            "insert into app.event_receipts (event_id, user_id, occurred_at) values (%s, %s, %s)",
            (exam, events[0].user_id, taken),
        )
        conn.execute(
            "insert into app.exam_results (event_id, user_id, exam_kind, taken_at, scaled_score,"
            " passed, received_at) values (%s, %s, 'practice', %s, 200, true, %s)",
            (exam, events[0].user_id, taken, taken),
        )
        conn.commit()
    return exam


VIEWS = {
    "public.receipt_times": "select event_id, occurred_at from app.event_receipts",
    "public.receipt_ids": "select event_id from app.event_receipts",  # reads no dropped column
    "public.log_properties": "select event_id, properties from app.study_events",
    "public.on_log_properties": "select event_id from public.log_properties",
    "public.log_sessions": "select event_id, session_id from app.study_events",
}


def _receipts(conn: psycopg.Connection) -> dict[UUID, tuple]:
    columns = ", ".join(_receipt_columns(conn))
    return {r[0]: tuple(r[1:]) for r in conn.execute(f"select {columns} from app.event_receipts")}


def _log_properties(conn: psycopg.Connection) -> dict[UUID, object]:
    return dict(conn.execute("select event_id, properties from app.study_events"))


def test_receipts_keep_the_event_id_and_empty_properties_are_null(database_factory):
    _check_0017(database_factory(migrated=False), citus=False)


def test_0017_moves_the_data_both_ways_on_a_citus_cluster(cluster_database_factory):
    """After 0015's placement: receipts distributed on event_id, the log on user_id."""
    _check_0017(cluster_database_factory(migrated=False), citus=True)


def _check_0017(url: str, citus: bool) -> None:
    migrate.upgrade(url, "0016_event_log_storage")
    events = _sessions(sessions=2, events_per_session=4)
    exam = _store_before_0017(url, events)
    with psycopg.connect(url) as conn:
        receipts, properties = _receipts(conn), _log_properties(conn)
        # views like dbt's staging views: those reading what 0017 changes are dropped (dbt makes
        # them again), the others stay
        for view, query in VIEWS.items():
            conn.execute(f"create view {view} as {query}")
        conn.commit()
    assert len(receipts) == len(events) + 1 and receipts[exam][1] < events[0].occurred_at
    assert sum(p == {} for p in properties.values()) == 5  # and 3 with a screen

    migrate.upgrade(url, "0017_receipts_empty_properties")
    with psycopg.connect(url) as conn:
        assert _receipt_columns(conn) == ["event_id"]
        assert _app_indexes(conn, "study_events_user_time_idx") == []
        assert _index_columns(conn, "study_events_user_day_idx") == (
            "btree (user_id, (((occurred_at AT TIME ZONE 'UTC'::text))::date))"
        )
        assert set(_receipts(conn)) == set(receipts)
        emptied = _log_properties(conn)
        staged = conn.execute(
            "select count(*) from app.study_events where properties is null"
        ).fetchone()[0]
        trigger = conn.execute(
            "select count(*) from pg_trigger where tgname = 'event_receipts_references'"
        ).fetchone()[0]
        views = {
            r[0]
            for r in conn.execute(
                "select schemaname || '.' || viewname from pg_views"
                " where schemaname || '.' || viewname = any(%s)",
                (list(VIEWS),),
            )
        }
        with pytest.raises(psycopg.errors.CheckViolation, match="properties_not_empty"):
            conn.execute(
                "insert into app.study_events (event_id, user_id, event_type, occurred_at,"
                " properties) values (gen_random_uuid(), %s, 'page_view', %s, '{}')",
                (events[0].user_id, events[0].occurred_at),
            )
    assert views == {"public.log_sessions", "public.receipt_ids"}
    assert emptied == {k: (None if v == {} else v) for k, v in properties.items()}
    assert staged == 5 and trigger == 0

    migrate.downgrade(url, "0016_event_log_storage")
    with psycopg.connect(url) as conn:
        assert _receipt_columns(conn) == ["event_id", "user_id", "occurred_at"]
        assert _index_columns(conn, "study_events_user_time_idx") == "btree (user_id, occurred_at)"
        assert _app_indexes(conn, "study_events_user_day_idx") == []
        # each receipt gets its own learner and time back: from the log, or the exam row
        assert _receipts(conn) == receipts
        assert _log_properties(conn) == properties
        nullable = conn.execute(
            "select string_agg(column_name || ' ' || is_nullable, ', ' order by column_name)"
            " from information_schema.columns where table_schema = 'app' and ("
            " (table_name = 'event_receipts' and column_name <> 'event_id')"
            " or (table_name = 'study_events' and column_name = 'properties'))"
        ).fetchone()[0]
        trigger = conn.execute(
            "select count(*) from pg_trigger where tgname = 'event_receipts_references'"
        ).fetchone()[0]
    assert nullable == "occurred_at NO, properties NO, user_id NO"
    assert trigger == (0 if citus else 1)  # on Citus 0015 replaced it by the log's foreign key


def test_the_downgrade_of_0017_refuses_a_receipt_it_cannot_restore(database_factory):
    url = database_factory(migrated=False)
    migrate.upgrade(url, "0017_receipts_empty_properties")
    with psycopg.connect(url) as conn:
        conn.execute("insert into app.event_receipts (event_id) values (gen_random_uuid())")
        conn.commit()
    with pytest.raises(sqlalchemy.exc.DBAPIError, match="cannot restore the receipt"):
        migrate.downgrade(url, "0016_event_log_storage")


def _plan(conn: psycopg.Connection, query: str, params: dict[str, object]) -> str:
    """The plan PostgreSQL picks when it may not scan the whole table (the tables here are tiny)."""
    conn.execute("set enable_seqscan = off")
    rows = conn.execute(f"explain (costs off) {query}", params).fetchall()
    conn.execute("reset enable_seqscan")
    return "\n".join(r[0] for r in rows)


# a touched learner-day of the activity models (macros/activity.sql, on_touched_user_day)
LEARNER_DAY_ATTEMPTS = """
select event_id from app.question_attempts as keyed
where keyed.user_id = %(user_id)s
    and keyed.answered_at >= ((%(day)s::date - 1)::timestamp at time zone 'UTC')
    and keyed.answered_at < ((%(day)s::date + 2)::timestamp at time zone 'UTC')
    and (keyed.answered_at at time zone 'UTC')::date between %(day)s::date - 1 and %(day)s::date + 1
"""


def test_0018_narrows_the_attempt_indexes_and_their_lookups_use_them(database_factory):
    url = database_factory(migrated=False)
    migrate.upgrade(url, "0017_receipts_empty_properties")
    with psycopg.connect(url) as conn:
        assert _index_columns(conn, "question_attempts_user_time_idx") == (
            "btree (user_id, answered_at)"
        )
        covering = _index_columns(conn, "question_attempts_user_topic_time_idx")
    assert covering == (
        "btree (user_id, topic_id, answered_at) INCLUDE (question_id, is_correct, event_id)"
    )

    migrate.upgrade(url, "0018_attempt_indexes")
    day = {"user_id": uuid4(), "day": datetime(2026, 11, 20).date()}
    with psycopg.connect(url) as conn:
        indexes = {
            name: _index_columns(conn, name)
            for name in (
                "question_attempts_user_day_idx",
                "question_attempts_session_idx",
                "question_attempts_user_topic_time_idx",
            )
        }
        assert _app_indexes(conn, "question_attempts_user_time_idx") == []
        # the tracker's lookup of a repeat's stored attempt, and a touched learner-day's attempts,
        # state the UTC date the new index is built on
        conn.execute(CREATE_TEMP_TABLES)
        repeats = _plan(conn, FIND_REPEATS, {"idx": [0]})
        learner_day = _plan(conn, LEARNER_DAY_ATTEMPTS, day)
    assert indexes == {
        "question_attempts_user_day_idx": (
            "btree (user_id, (((answered_at AT TIME ZONE 'UTC'::text))::date))"
        ),
        "question_attempts_session_idx": "btree (session_id)",
        "question_attempts_user_topic_time_idx": "btree (user_id, topic_id, answered_at)",
    }
    # a repeat's stored attempt through a learner index (the user-day one, or on PostgreSQL 18
    # the learner-topic one skipping over topics), never a scan of every attempt
    attempts_part = repeats[repeats.index("CTE q") : repeats.index("CTE m")]
    assert "Index Scan using question_attempts_user_" in attempts_part
    assert "question_attempts_user_day_idx" in learner_day

    migrate.downgrade(url, "0017_receipts_empty_properties")
    with psycopg.connect(url) as conn:
        restored = {
            name: _index_columns(conn, name)
            for name in ("question_attempts_user_time_idx", "question_attempts_user_topic_time_idx")
        }
        gone = _app_indexes(conn, "question_attempts_user_day_idx") + _app_indexes(
            conn, "question_attempts_session_idx"
        )
    assert restored == {
        "question_attempts_user_time_idx": "btree (user_id, answered_at)",
        "question_attempts_user_topic_time_idx": covering,
    }
    assert gone == []


# a touched learner-day's interactions (macros/activity.sql, on_touched_user_day)
LEARNER_DAY_INTERACTIONS = LEARNER_DAY_ATTEMPTS.replace(
    "question_attempts", "material_interactions"
).replace("answered_at", "occurred_at")


def test_0019_indexes_interactions_by_learner_day_and_drops_the_sessions_learner_index(
    database_factory,
):
    url = database_factory(migrated=False)
    migrate.upgrade(url, "0018_attempt_indexes")
    with psycopg.connect(url) as conn:
        before = {
            name: _index_columns(conn, name)
            for name in ("material_interactions_user_time_idx", "study_sessions_user_idx")
        }
    assert before == {
        "material_interactions_user_time_idx": "btree (user_id, occurred_at)",
        "study_sessions_user_idx": "btree (user_id, started_at)",
    }

    migrate.upgrade(url, "0019_interaction_indexes")
    day = {"user_id": uuid4(), "day": datetime(2026, 11, 20).date()}
    with psycopg.connect(url) as conn:
        user_day = _index_columns(conn, "material_interactions_user_day_idx")
        gone = _app_indexes(conn, "material_interactions_user_time_idx") + _app_indexes(
            conn, "study_sessions_user_idx"
        )
        conn.execute(CREATE_TEMP_TABLES)
        repeats = _plan(conn, FIND_REPEATS, {"idx": [0]})
        learner_day = _plan(conn, LEARNER_DAY_INTERACTIONS, day)
    assert user_day == "btree (user_id, (((occurred_at AT TIME ZONE 'UTC'::text))::date))"
    assert gone == []
    # a repeat's stored interaction, and a touched learner-day's interactions, looked up by
    # learner and UTC day (not every interaction of the learner)
    interactions_part = repeats[repeats.index("CTE m") : repeats.index("CTE x")]
    for plan in (interactions_part, learner_day):
        assert "material_interactions_user_day_idx" in plan
        conditions = [line for line in plan.splitlines() if "Index Cond" in line]
        assert len(conditions) == 1 and "::date" in conditions[0], plan

    migrate.downgrade(url, "0018_attempt_indexes")
    with psycopg.connect(url) as conn:
        restored = {name: _index_columns(conn, name) for name in before}
        dropped = _app_indexes(conn, "material_interactions_user_day_idx")
    assert restored == before
    assert dropped == []


# the replay of a learner-topic's reviews (int_topic_reviews_scheduled, replayed_attempts) and a
# gap's last answers (the gap recommendations' last_answers)
LEARNER_TOPICS_SINCE = """
select event_id from app.question_attempts as history
where history.user_id = %(user_id)s
    and history.topic_id = any(%(topic_ids)s)
    and (history.answered_at at time zone 'UTC')::date >= %(day)s::date - 1
"""
LEARNER_TOPIC = """
select question_id from app.question_attempts as attempts
where attempts.user_id = %(user_id)s and attempts.topic_id = %(topic_id)s
"""


def test_0020_keys_the_learner_topic_index_by_utc_day_and_its_lookups_use_it(database_factory):
    url = database_factory(migrated=False)
    migrate.upgrade(url, "0019_interaction_indexes")
    with psycopg.connect(url) as conn:
        before = _index_columns(conn, "question_attempts_user_topic_time_idx")
    assert before == "btree (user_id, topic_id, answered_at)"

    migrate.upgrade(url, "0020_attempt_topic_day_index")
    params = {"user_id": uuid4(), "topic_ids": [3, 5], "topic_id": 3, "day": date(2026, 11, 20)}
    with psycopg.connect(url) as conn:
        after = _index_columns(conn, "question_attempts_user_topic_day_idx")
        gone = _app_indexes(conn, "question_attempts_user_topic_time_idx")
        replay = _plan(conn, LEARNER_TOPICS_SINCE, params)
        last_answers = _plan(conn, LEARNER_TOPIC, params)
    assert after == "btree (user_id, topic_id, (((answered_at AT TIME ZONE 'UTC'::text))::date))"
    assert gone == []
    # the replay's bound is part of the index condition, not a filter over the pair's history
    assert "question_attempts_user_topic_day_idx" in replay, replay
    conditions = [line for line in replay.splitlines() if "Index Cond" in line]
    assert len(conditions) == 1 and "::date >=" in conditions[0], replay
    assert "question_attempts_user_topic_day_idx" in last_answers, last_answers

    migrate.downgrade(url, "0019_interaction_indexes")
    with psycopg.connect(url) as conn:
        restored = _index_columns(conn, "question_attempts_user_topic_time_idx")
        dropped = _app_indexes(conn, "question_attempts_user_topic_day_idx")
    assert restored == before
    assert dropped == []


def _log_types(conn: psycopg.Connection) -> dict[UUID, tuple[str, str]]:
    """Each logged event's type, and the name of its column's type."""
    rows = conn.execute(
        "select event_id, event_type, pg_typeof(event_type)::text from app.study_events"
    )
    return {r[0]: (r[1], r[2]) for r in rows}


def _check_0021(url: str) -> None:
    migrate.upgrade(url, "0020_attempt_topic_day_index")
    events = _sessions(sessions=2, events_per_session=3)
    with psycopg.connect(url) as conn:
        _add_learner(conn, events[0].user_id)
        conn.execute("select app.ensure_study_event_partitions('2026-11-01', 1)")
        conn.execute(
            "create view public.log_types as select event_id, event_type from app.study_events"
        )
        conn.commit()
        names = sorted(r[0] for r in conn.execute("select name from app.event_types"))
        for e in events:
            conn.execute("insert into app.event_receipts (event_id) values (%s)", (e.event_id,))
            conn.execute(
                "insert into app.study_events (event_id, user_id, session_id, event_type,"
                " occurred_at, received_at) values (%s, %s, %s, %s, %s, %s)",
                (e.event_id, e.user_id, e.session_id, e.event_type, e.occurred_at, e.received_at),
            )
        conn.commit()
        before = _log_types(conn)
    assert {t for t, _ in before.values()} == {"session_heartbeat"}

    migrate.upgrade(url, "0021_event_type_enum")
    with psycopg.connect(url) as conn:
        after = _log_types(conn)
        labels = conn.execute("select enum_range(null::app.event_type)::text[]").fetchone()[0]
        catalogue = conn.execute("select pg_typeof(name)::text from app.event_types").fetchone()[0]
        view = conn.execute("select to_regclass('public.log_types')").fetchone()[0]
        # the tracker stores through the enum, a repeat is still found and compared
        more = _sessions(sessions=1, events_per_session=2)
        _add_learner(conn, more[0].user_id)
        stored = Tracker(conn, trust_received_at=True).track_batch([*more, more[0]])
        with pytest.raises(psycopg.errors.InvalidTextRepresentation):
            conn.execute("select 'no_such_type'::app.event_type")
    assert labels == names
    assert catalogue == "app.event_type"
    assert after == {k: (t, "app.event_type") for k, (t, _) in before.items()}
    assert view is None  # dropped with a notice; dbt makes its views again
    assert (stored.accepted, stored.duplicates) == (2, 1)

    migrate.downgrade(url, "0020_attempt_topic_day_index")
    with psycopg.connect(url) as conn:
        restored = _log_types(conn)
        gone = conn.execute("select to_regtype('app.event_type')").fetchone()[0]
    assert restored == {
        **{k: (t, "text") for k, (t, _) in before.items()},
        **{e.event_id: ("session_heartbeat", "text") for e in more},
    }
    assert gone is None


def test_0021_stores_the_event_type_as_an_enum_of_the_catalogue(database_factory):
    _check_0021(database_factory(migrated=False))


def test_0021_retypes_the_distributed_log_on_a_citus_cluster(cluster_database_factory):
    _check_0021(cluster_database_factory(migrated=False))
