"""The dbt project on a Citus cluster gives the single server's answers, row for row.

One small simulated world is delivered the same way to a database on the single server and to one
on a local Citus cluster (a coordinator and two workers, the learner tables distributed on
user_id): in arrival order, cut into batches, shuffled inside each batch, late uploads included,
an incremental ``dbt run`` of the whole project after each batch, and one learner erased after the
second batch (their later events never arrive). Then:
- every table dbt builds (intermediate and marts) and every view mart has the same rows on both
  (checksums; the view marts, tables on the cluster, are evaluated as of the same pinned date);
- on the cluster, per-learner tables are distributed and colocated with app.users, the taxonomy
  tables are reference tables, the cross-learner marts coordinator tables (macros/citus.sql);
- on the cluster, a BI login reads every mart and is refused every other schema;
- on the cluster, a ``--full-refresh`` changes no row of the incremental state;
- on the cluster, the erased learner is in no relation.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from warehouse_relations import checksums, relations_holding, relations_with_user_id

from python_jobs.ingest.events import Event
from python_jobs.ingest.tracker import Tracker
from python_jobs.jobs.recommendations import RecommendationOptions, run_gap_recommendations
from python_jobs.simulation.reference import load_reference
from python_jobs.simulation.simulator import Simulation, generate
from python_jobs.warehouse.bi import create_bi_login
from python_jobs.warehouse.dbt import run_dbt
from python_jobs.warehouse.deletion import apply_deletions, request_deletion

pytestmark = pytest.mark.slow

END = datetime(2026, 4, 10, tzinfo=UTC)
AS_OF = "2026-04-10"
DBT_VARS = json.dumps({"metrics_as_of_date": AS_OF, "mastery_as_of_date": AS_OF})
BATCHES = 3
ERASE_AFTER_BATCH = 1  # 0-based: the learner is erased after the second batch
LATE = timedelta(days=7)
SEED = 11
ERASABLE_SCHEMAS = ["app", "staging", "intermediate", "marts", "ml"]
# Views on a single server; on Citus tables rebuilt by each run (macros/citus.sql).
VIEW_MARTS = (
    "marts.dim_learners",
    "marts.fct_topic_schedule_current",
    "marts.topic_mastery_current",
    "marts.topic_mastery_rollup",
)
CLOSED_TO_BI = ("app", "staging", "intermediate", "ml")


@dataclass
class Delivered:
    url: str
    target: Path
    victim: uuid.UUID
    late_after_processed: int


def world() -> Simulation:
    return generate(users=10, days=24, seed=SEED, late_share=0.15, end=END)


def dbt_run(url: str, target: Path, *extra: str) -> None:
    run_dbt(["run", "--vars", DBT_VARS, *extra], url=url, target_path=target)


def add_learners(conn: psycopg.Connection, sim: Simulation) -> None:
    """The taxonomy, question bank and learners (the simulator's prepare() without its sim schema
    of ground truth, whose foreign keys to app.users a Citus cluster would need distributed)."""
    load_reference(conn, sim.ref)
    with conn.cursor() as cur:
        cur.executemany(
            "insert into app.users (id, created_at, timezone, cohort, exam_target, exam_date)"
            " values (%s, %s, %s, %s, %s, %s)",
            [learner.users_row() for learner in sim.learners],
        )
    conn.commit()


def batches_in_arrival_order(events: list[Event]) -> list[list[Event]]:
    events = sorted(events, key=lambda e: (e.received_at, str(e.event_id)))
    size = -(-len(events) // BATCHES)
    return [events[i : i + size] for i in range(0, len(events), size)]


def deliver(url: str, target: Path) -> Delivered:
    """Track the world's events batch by batch (shuffled inside each), dbt run after each batch,
    erase the most active learner of the first batches after batch ERASE_AFTER_BATCH."""
    sim = world()
    # the event log's month partitions before delivery, outside a transaction block, as the nightly
    # run makes them ahead (on Citus, making one in a transaction block that had already written
    # deadlocked with Citus' own connections to the workers while this test was written)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("select app.ensure_study_event_partitions(%s, 0)", (END - timedelta(days=60),))
    with psycopg.connect(url) as conn:
        add_learners(conn, sim)
    batches = batches_in_arrival_order(list(sim.events()))
    first = [e.user_id for batch in batches[: ERASE_AFTER_BATCH + 1] for e in batch]
    victim = max(sorted(set(first), key=str), key=first.count)
    rng = random.Random(SEED)
    late_after_processed = 0
    processed_until = None
    with psycopg.connect(url) as conn:
        tracker = Tracker(conn, trust_received_at=True)
        for number, batch in enumerate(batches):
            if number > ERASE_AFTER_BATCH:
                batch = [e for e in batch if e.user_id != victim]
            if processed_until is not None:
                late_after_processed += sum(
                    e.received_at - e.occurred_at > LATE and e.occurred_at < processed_until
                    for e in batch
                )
            shuffled = batch[:]
            rng.shuffle(shuffled)
            result = tracker.track_batch(shuffled)
            assert result.rejected == 0, result.rejections[:3]
            dbt_run(url, target)
            processed_until = max(e.received_at for e in batch)
            if number == ERASE_AFTER_BATCH:
                request_deletion(conn, victim)
                assert len(apply_deletions(conn)) == 1
    return Delivered(url, target, victim, late_after_processed)


# ----------------------------------------------------------------------------- shared builds


@pytest.fixture(scope="module")
def single(database_factory: Callable[..., str], tmp_path_factory) -> Delivered:
    url = database_factory("studyin_citus_single")
    return deliver(url, tmp_path_factory.mktemp("dbt_citus_single"))


@pytest.fixture(scope="module")
def on_cluster(cluster_database_factory: Callable[..., str], tmp_path_factory) -> Delivered:
    url = cluster_database_factory("studyin_citus_dbt")
    return deliver(url, tmp_path_factory.mktemp("dbt_citus_cluster"))


@pytest.fixture(scope="module")
def cluster_checksums(on_cluster: Delivered) -> dict[str, str]:
    return checksums(on_cluster.url, mart_views=True)


# ----------------------------------------------------------------------------- tests


def test_delivery_was_batched_shuffled_late_with_an_erasure(single: Delivered):
    assert single.late_after_processed > 0
    with psycopg.connect(single.url) as conn:
        completed = conn.execute(
            "select count(*) from app.deletion_requests where completed_at is not null"
        ).fetchone()[0]
    assert completed == 1


def test_every_table_equals_the_single_server_build(
    single: Delivered, on_cluster: Delivered, cluster_checksums: dict[str, str]
):
    assert single.victim == on_cluster.victim
    expected = checksums(single.url, mart_views=True)
    assert len(expected) >= 20
    assert all(
        not value.startswith("0:")
        for key, value in expected.items()
        if key
        in (
            "marts.daily_user_stats",
            "marts.topic_mastery",
            "marts.topic_daily_stats",
            *VIEW_MARTS,
        )
    )
    different = {
        k: (v, cluster_checksums.get(k))
        for k, v in expected.items()
        if cluster_checksums.get(k) != v
    }
    assert different == {}
    assert sorted(cluster_checksums) == sorted(expected)


def test_learner_tables_are_distributed_and_colocated(on_cluster: Delivered):
    with psycopg.connect(on_cluster.url) as conn:
        placed = dict(
            conn.execute(
                "select logicalrelid::regclass::text,"
                " case when partmethod = 'n' then 'reference'"
                " when colocationid = (select colocationid from pg_dist_partition"
                "   where logicalrelid = 'app.users'::regclass) then 'colocated' else 'other' end"
                " from pg_dist_partition"
                " where logicalrelid::regclass::text ~ '^(marts|intermediate)[.]'"
            ).fetchall()
        )
        reported = dict(
            conn.execute(
                "select object_name, materialization from marts.warehouse_freshness"
                " where object_name = any(%s)",
                (list(VIEW_MARTS),),
            ).fetchall()
        )
    # warehouse_freshness reports the built form (mart_rows): tables here, views on one server
    assert reported == dict.fromkeys(VIEW_MARTS, "table")
    for table in [
        "intermediate.int_session_days_aggregated",
        "intermediate.int_topic_reviews_scheduled",
        "intermediate.int_question_answers_folded",
        "marts.daily_user_stats",
        "marts.session_efficiency",
        "marts.topic_mastery",
        "marts.prediction_ledger",
        "marts.user_learning_metrics",
        *VIEW_MARTS,  # views on a single server, distributed tables on Citus
    ]:
        assert placed.get(table) == "colocated", table
    for table in [
        "intermediate.int_topic_ancestors_flattened",
        "marts.topic_catalog",
        "marts.cohort_benchmarks",  # joined with a learner's row by the cohort dashboard
    ]:
        assert placed.get(table) == "reference", table
    for table in ["marts.topic_daily_stats", "marts.fct_prediction_metrics"]:
        assert table not in placed  # coordinator tables


def test_full_refresh_on_the_cluster_changes_no_row(
    on_cluster: Delivered, cluster_checksums: dict[str, str]
):
    dbt_run(on_cluster.url, on_cluster.target, "--full-refresh")
    assert checksums(on_cluster.url) == cluster_checksums


def test_erased_learner_is_in_no_relation_of_the_cluster(on_cluster: Delivered):
    with psycopg.connect(on_cluster.url) as conn:
        relations = relations_with_user_id(conn, ERASABLE_SCHEMAS)
        assert relations_holding(conn, relations, on_cluster.victim) == []
        events_kept = conn.execute("select count(*) from app.question_attempts").fetchone()[0]
    assert events_kept > 0


def test_gap_recommendations_equal_the_single_server_ones(single: Delivered, on_cluster: Delivered):
    """The job's Citus form of its query (joins instead of lateral lookups, recommendations_sql)
    writes the same rows as the single server's."""
    options = RecommendationOptions(as_of=date.fromisoformat(AS_OF))
    written = []
    for delivered in (single, on_cluster):
        with psycopg.connect(delivered.url) as conn:
            run_gap_recommendations(conn, options)
            written.append(
                conn.execute(
                    "select user_id, topic_id, rank, action, target_id, reason"
                    " from ml.gap_recommendations order by user_id, topic_id, rank"
                ).fetchall()
            )
    actions = {row[3] for row in written[0]}
    assert {"learn_prerequisite", "review_questions", "read_material"} <= actions
    assert written[1] == written[0]


def _relations(conn: psycopg.Connection, schemas: tuple[str, ...]) -> list[tuple[str, str]]:
    """Every table, view and materialized view of `schemas`, from the catalogue (as the owner)."""
    rows = conn.execute(
        "select n.nspname, c.relname from pg_catalog.pg_class as c"
        " join pg_catalog.pg_namespace as n on n.oid = c.relnamespace"
        " where n.nspname = any(%s) and c.relkind in ('r', 'p', 'v', 'm')"
        " and not c.relispartition order by 1, 2",
        (list(schemas),),
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


def _count(conn: psycopg.Connection, schema: str, name: str) -> int:
    query = sql.SQL("select count(*) from {}.{}").format(
        sql.Identifier(schema), sql.Identifier(name)
    )
    return conn.execute(query).fetchone()[0]


def test_a_bi_login_reads_every_mart_and_nothing_else_on_the_cluster(on_cluster: Delivered):
    """`studyin bi-login` on Citus also gives the coordinator the login's password, with which it
    reaches the workers' shards as that login: every relation of marts (listed from the
    catalogue) reads the owner's rows, the view marts of a single server included (tables there);
    every relation of the other schemas is refused."""
    with psycopg.connect(on_cluster.url) as conn:
        login = create_bi_login(conn, on_cluster.url, "citus_bi_reader")
        marts = _relations(conn, ("marts",))
        expected = {f"{s}.{n}": _count(conn, s, n) for s, n in marts}
        closed = _relations(conn, CLOSED_TO_BI)
    assert set(VIEW_MARTS) <= set(expected) and len(expected) >= 20
    assert expected["marts.topic_mastery_current"] > 0 and expected["marts.dim_learners"] > 0
    assert {s for s, _ in closed} == set(CLOSED_TO_BI)
    refused = []
    with psycopg.connect(login.sqlalchemy_url, autocommit=True) as reader:
        got = {f"{s}.{n}": _count(reader, s, n) for s, n in marts}
        for schema, name in closed:
            try:
                _count(reader, schema, name)
            except psycopg.errors.InsufficientPrivilege:
                refused.append(f"{schema}.{name}")
    assert got == expected
    assert refused == [f"{s}.{n}" for s, n in closed]
