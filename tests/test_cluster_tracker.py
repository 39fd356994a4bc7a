"""The tracker's guarantees on a Citus cluster (1 coordinator, 2 workers), as on the single server.

The tests are those of tests/test_tracker.py, run here against a database of the cluster whose
learner tables 0015 distributed on user_id: idempotency on event_id (a repeat with other content
included, in both the single and the batch path), the append-only log, erasure, counted
rejections, sessions, partitions made for old months, and references the database refuses (there
by foreign keys on the shards). ``test_the_learner_tables_are_distributed`` checks that they ran
where they should.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import psycopg
import pytest
from test_tracker import (  # noqa: F401 (fixtures and tests run here against the cluster)
    Ref,
    _count,
    _rejections,
    question,
    ref,
    test_a_batch_updates_sessions_exactly_like_single_calls,
    test_an_event_may_not_join_another_learners_session,
    test_batch_stores_good_events_and_rejects_bad_ones_with_counts,
    test_delete_user_erases_the_learner_everywhere_and_nobody_else,
    test_events_of_a_learner_erased_while_cached_are_rejected_not_fatal,
    test_events_of_an_erased_learner_leave_no_trace_of_them,
    test_repeated_event_id_is_stored_once_batch_path,
    test_repeated_event_id_is_stored_once_single_path,
    test_repeated_event_id_with_different_content_keeps_the_first_and_rejects_the_rest,
    test_repeats_in_a_large_batch_take_the_fallback_path,
    test_sessions_follow_the_documented_rules,
    test_tracker_creates_partitions_for_old_months_it_receives,
    test_update_delete_and_truncate_of_study_events_are_refused,
    tracker,
)

from python_jobs.ingest.tracker import Tracker, ValidationError


@pytest.fixture(scope="module")
def migrated_db(cluster_database_factory: Callable[..., str]) -> str:
    """This module's database: on the cluster."""
    return cluster_database_factory()


def test_the_learner_tables_are_distributed(conn: psycopg.Connection) -> None:
    placement = dict(
        conn.execute(
            "select logicalrelid::regclass::text, partmethod::text || coalesce("
            " ':' || column_to_column_name(logicalrelid, partkey), '')"
            " from pg_dist_partition where logicalrelid::regclass::text not like '%\\_20__\\___'"
        ).fetchall()
    )
    assert placement["app.users"] == "h:id"
    for table in ("study_events", "question_attempts", "exam_results", "study_sessions"):
        assert placement[f"app.{table}"] == "h:user_id"
    assert placement["app.event_receipts"] == "h:event_id"
    assert placement["app.questions"] == "n"
    workers = conn.execute(
        "select count(distinct nodeport) from citus_shards"
        " where table_name = 'app.study_events'::regclass"
    ).fetchone()
    assert workers == (2,)


def test_an_event_a_shard_refuses_is_rejected_alone_and_leaves_nothing(conn, ref: Ref) -> None:  # noqa: F811
    """A question removed after the tracker cached it: the shard's foreign key refuses the typed
    row (Citus reports it without its SQLSTATE); the event is rejected with the key named, and
    neither its receipt, its event nor its session remain (one distributed transaction)."""
    user = ref.new_user()
    conn.execute(
        "insert into app.questions (id, topic_id, difficulty, correct_answer) "
        "values (909, 2, 0.4, 'B')"
    )
    conn.commit()
    fresh = Tracker(conn)
    with pytest.raises(ValidationError):  # loads question 909 into the tracker's cache
        fresh.track(question(user, question_id=909, confidence_level=6))
    conn.execute("delete from app.questions where id = 909")  # now the cache is stale
    conn.commit()
    session = uuid.uuid4()
    event = question(user, question_id=909, session_id=session)
    with pytest.raises(ValidationError, match="refused by the database: .*question_fkey.*909"):
        fresh.track(event)
    ((reason, payload, _, _),) = _rejections(conn, user)[-1:]
    assert "(909, 2)" in reason and str(event.event_id) in payload
    for table in ("event_receipts", "study_events", "question_attempts"):
        assert _count(conn, table, event.event_id) == 0, table
    assert conn.execute(
        "select count(*) from app.study_sessions where id = %s", (session,)
    ).fetchone() == (0,)
    assert fresh.track(question(user, question_id=102, session_id=session)) is True


# (role, table, privileges it has, privileges it has not): as the README's roles table says.
SHARD_GRANTS = (
    ("loader", "app.study_events", "SELECT, INSERT", "UPDATE, DELETE, TRUNCATE"),
    ("loader", "app.question_attempts", "SELECT, INSERT", "UPDATE, DELETE"),
    ("loader", "app.study_sessions", "SELECT, INSERT, UPDATE", "DELETE"),
    ("loader", "app.event_receipts", "SELECT, INSERT", "UPDATE, DELETE"),
    ("loader", "app.questions", "SELECT", "INSERT, UPDATE, DELETE"),
    ("transformer", "app.users", "SELECT", "INSERT, UPDATE, DELETE"),
    ("ml_writer", "ml.gap_recommendations", "SELECT, INSERT, UPDATE, DELETE", "TRUNCATE"),
    ("reporter", "app.study_events", "", "SELECT, INSERT"),
)


@pytest.mark.parametrize(("role", "table", "has", "lacks"), SHARD_GRANTS)
def test_every_shard_grants_what_the_table_grants(conn, role, table, has, lacks) -> None:
    """Citus carries the grants made before distribution to every shard on the workers (the
    workers check them when a query reaches them)."""
    wanted = [p for p in has.split(", ") if p]
    refused = [p for p in lacks.split(", ") if p]
    checks = " || ".join(
        f"has_table_privilege('{role}', '%1$s', '{p}')::int::text" for p in wanted + refused
    )
    results = conn.execute(
        "select success, result from run_command_on_placements(%s, %s)",
        (table, f"select {checks}"),
    ).fetchall()
    assert len(results) >= 2
    expected = "1" * len(wanted) + "0" * len(refused)
    assert {(success, result) for success, result in results} == {(True, expected)}


def test_the_shards_refuse_unknown_references_and_removing_referenced_keys(conn, ref) -> None:  # noqa: F811
    """On the cluster foreign keys do what the reference-check triggers do on one server."""
    user = ref.new_user()
    insert_attempt = (
        "insert into app.question_attempts (event_id, user_id, question_id, topic_id, "
        "attempt_number, is_correct, time_to_answer_ms, answered_at, received_at) "
        "values (gen_random_uuid(), %s, 101, 3, 1, false, 0, now(), now())"
    )
    with pytest.raises(psycopg.Error, match="question_attempts_question_fkey"):
        conn.execute(insert_attempt, (user,))
    conn.rollback()
    with pytest.raises(psycopg.Error, match="study_events_user_fkey"):
        conn.execute(
            "insert into app.study_events (event_id, user_id, event_type, occurred_at)"
            " values (gen_random_uuid(), gen_random_uuid(), 'page_view', now())"
        )
    conn.rollback()
    Tracker(conn).track(question(user, question_id=103, selected_answer="E"))
    with pytest.raises(psycopg.Error, match="question_attempts_question_fkey"):
        conn.execute("delete from app.questions where id = 103")
    conn.rollback()
    with pytest.raises(psycopg.Error, match="question_attempts_question_fkey"):
        conn.execute("update app.questions set topic_id = 2 where id = 103")
    conn.rollback()
    conn.execute("update app.questions set difficulty = 0.9 where id = 103")  # not a key change
    conn.rollback()
