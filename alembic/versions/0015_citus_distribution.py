"""On a Citus cluster: learner tables distributed on user_id, taxonomy as reference tables.

A no-op unless the ``citus`` extension is installed in the database (``studyin db start --cluster
N`` installs it; so does a production Citus). There:

* reference tables (a full copy on every node; what the learner tables join and check against):
  the taxonomy (topics, topic_relationships, materials, questions), the event catalogue
  (event_types, event_type_properties) and the model stores (ml.model_runs, ml.recall_models,
  ml.recall_topic_offsets);
* distributed on ``user_id``, colocated with ``app.users`` (distributed on ``id``), so that every
  per-learner join and erasure stays on one shard: study_events (with its monthly partitions;
  partitions made later by app.ensure_study_event_partitions are distributed with it),
  question_attempts, material_interactions, exam_results, study_sessions,
  ml.exam_readiness_scores, ml.gap_recommendations;
* ``app.event_receipts`` distributed on ``event_id`` in a colocation group of its own: its primary
  key stays the global idempotency ledger; the tracker writes it in the same transaction as the
  log row (a transaction over several shards, two-phase committed by Citus);
* coordinator tables (plain tables on the coordinator): ``app.rejected_events`` (its user_id may
  be null, which a distribution column may not) and ``app.deletion_requests`` (a few rows, read by
  the erasure step and the tracker only).

The statement triggers that check references (app.check_event_references), cascade an erasure
(app.cascade_learner_deletion) and protect referenced keys (app.refuse_referenced_key_removal)
query other tables; on a distributed table a trigger runs on each shard, on a worker, where those
queries cannot run. They are replaced by foreign keys, which Citus enforces on each shard: to
``app.users`` (colocated, ON DELETE CASCADE: erasing a learner deletes their rows on their shard)
and to the reference tables (NO ACTION: a referenced question, material or event type cannot be
removed). A question attempt's (question_id, topic_id) references a new unique key of
app.questions. The receipts have no foreign key (another colocation group): a receipt is written
with its event, whose foreign key checks the learner. The append-only triggers of study_events
stay (they read no table): they run on the shards; ``app.delete_user`` sends its erasure flag to the
workers with SET LOCAL (``citus.propagate_set_commands = local``), so it must run inside a
transaction block, as psycopg's default transactions are.

Two functions get bodies Citus can run (FOR UPDATE / FOR KEY SHARE over several shards is refused):
``app.lock_learners`` reads the learners without locking them (the foreign keys lock each learner's
row on its shard when the events go in) and ``app.lock_sessions`` locks each session by its
learner and id. Grants given before distribution are carried to the shards by Citus.

Downgrade: the tables become plain coordinator tables again (undistribute_table), foreign keys
and the new unique key go, the triggers and function bodies of 0014 come back.
``app.ensure_study_event_partitions`` runs in Citus's sequential mode: the partitions it makes in
one transaction have foreign keys to reference tables.

Revision ID: 0015_citus_distribution
Revises: 0014_citus_ready_keys
Create Date: 2026-12-02
"""

from alembic import op
from python_jobs.warehouse.migrate import has_citus

revision = "0015_citus_distribution"
down_revision = "0014_citus_ready_keys"
branch_labels = None
depends_on = None

# In an order where every referenced table comes before the tables referencing it.
REFERENCE_TABLES = (
    "app.topics",
    "app.topic_relationships",
    "app.materials",
    "app.questions",
    "app.event_types",
    "app.event_type_properties",
    "ml.model_runs",
    "ml.recall_models",
    "ml.recall_topic_offsets",
)
LEARNER_TABLES = (
    "app.study_events",
    "app.question_attempts",
    "app.material_interactions",
    "app.exam_results",
    "app.study_sessions",
    "ml.exam_readiness_scores",
    "ml.gap_recommendations",
)
EVENT_TABLES = (
    "event_receipts",
    "study_events",
    "question_attempts",
    "material_interactions",
    "exam_results",
)
PARTITIONS = "app.ensure_study_event_partitions(timestamptz, integer)"
GUARDED_KEYS = ("questions", "materials", "event_types")

# Foreign keys of the learner tables on the cluster: to app.users (colocated) and to reference
# tables. The first three exist on every server: they are dropped while the tables are distributed
# (Citus refuses a key from a coordinator table to a distributed one) and made again.
USER_CASCADE = "(user_id) references app.users (id) on delete cascade"
FOREIGN_KEYS = (
    ("app.study_sessions", "study_sessions_user_id_fkey", USER_CASCADE),
    ("ml.exam_readiness_scores", "exam_readiness_scores_user_id_fkey", USER_CASCADE),
    ("ml.gap_recommendations", "gap_recommendations_user_id_fkey", USER_CASCADE),
    ("app.study_events", "study_events_user_fkey", USER_CASCADE),
    ("app.study_events", "study_events_event_type_fkey", "(event_type) references app.event_types (name)"),
    ("app.question_attempts", "question_attempts_user_fkey", USER_CASCADE),
    ("app.question_attempts", "question_attempts_question_fkey", "(question_id, topic_id) references app.questions (id, topic_id)"),
    ("app.material_interactions", "material_interactions_user_fkey", USER_CASCADE),
    ("app.material_interactions", "material_interactions_material_fkey", "(material_id) references app.materials (id)"),
    ("app.exam_results", "exam_results_user_fkey", USER_CASCADE),
)  # fmt: skip
EXISTING_KEYS = 3

CITUS_LOCK_LEARNERS = r"""
create or replace function app.lock_learners(p_ids uuid[]) returns setof uuid
language sql security definer set search_path = pg_catalog, app, pg_temp as $$
    select u.id from app.users as u where u.id = any(p_ids) order by u.id;
$$;
"""
LOCK_LEARNERS = r"""
create or replace function app.lock_learners(p_ids uuid[]) returns setof uuid
language sql security definer set search_path = pg_catalog, app, pg_temp as $$
    select u.id from app.users as u where u.id = any(p_ids) order by u.id for key share;
$$;
"""
CITUS_LOCK_SESSIONS = r"""
create or replace function app.lock_sessions(p_ids uuid[]) returns setof app.study_sessions
language plpgsql set search_path = pg_catalog, app, pg_temp as $$
declare
    found_session record;
begin
    -- found by id on every shard, then locked one by one on its learner's shard
    for found_session in
        select s.user_id, s.id from app.study_sessions as s where s.id = any(p_ids) order by s.id
    loop
        return query
            select s.* from app.study_sessions as s
            where s.user_id = found_session.user_id and s.id = found_session.id
            for update;
    end loop;
end;
$$;
"""
LOCK_SESSIONS = r"""
drop function app.lock_sessions(uuid[]);
create function app.lock_sessions(p_ids uuid[]) returns setof app.study_sessions
language sql set search_path = pg_catalog, app, pg_temp as $$
    select s.* from app.study_sessions as s where s.id = any(p_ids) order by s.id for update;
$$;
revoke all on function app.lock_sessions(uuid[]) from public;
grant execute on function app.lock_sessions(uuid[]) to loader;
"""

TRIGGERS = {  # name: (table, definition) of the triggers replaced by foreign keys
    **{
        f"{t}_references": (
            t,
            f"after insert on app.{t} referencing new table as new_rows "
            "for each statement execute function app.check_event_references()",
        )
        for t in EVENT_TABLES
    },
    "users_cascade_to_events": (
        "users",
        "after delete on app.users referencing old table as old_rows "
        "for each statement execute function app.cascade_learner_deletion()",
    ),
    **{
        f"{t}_referenced_{op_name}": (
            t,
            f"after {op_name} on app.{t} referencing old table as old_rows "
            "for each statement execute function app.refuse_referenced_key_removal()",
        )
        for t in GUARDED_KEYS
        for op_name in ("delete", "update")
    },
}


def upgrade() -> None:
    if not has_citus(op.get_bind()):
        return
    for name, (table, _) in TRIGGERS.items():
        op.execute(f"drop trigger {name} on app.{table}")
    op.execute(
        "alter table app.questions add constraint questions_id_topic_key unique (id, topic_id)"
    )
    for table, name, _ in FOREIGN_KEYS[:EXISTING_KEYS]:
        op.execute(f"alter table {table} drop constraint {name}")
    for table in REFERENCE_TABLES:
        op.execute(f"select create_reference_table('{table}')")
    # study_events keeps its append-only triggers: distributing a table with triggers is refused
    # unless allowed (they run on the shards; they read no table).
    op.execute("set local citus.enable_unsafe_triggers = on")
    op.execute("select create_distributed_table('app.users', 'id')")
    for table in LEARNER_TABLES:
        op.execute(
            f"select create_distributed_table('{table}', 'user_id', colocate_with => 'app.users')"
        )
    op.execute(
        "select create_distributed_table('app.event_receipts', 'event_id', colocate_with => 'none')"
    )
    for table, name, definition in FOREIGN_KEYS:
        op.execute(f"alter table {table} add constraint {name} foreign key {definition}")
    op.execute(CITUS_LOCK_LEARNERS)
    op.execute(CITUS_LOCK_SESSIONS)
    op.execute("alter function app.delete_user(uuid) set citus.propagate_set_commands = 'local'")
    # Partitions made in one transaction each create shards of a table with foreign keys to
    # reference tables: Citus needs them over one connection per node.
    op.execute(f"alter function {PARTITIONS} set citus.multi_shard_modify_mode = 'sequential'")


def downgrade() -> None:
    if not has_citus(op.get_bind()):
        return
    op.execute("alter function app.delete_user(uuid) reset citus.propagate_set_commands")
    op.execute(f"alter function {PARTITIONS} reset citus.multi_shard_modify_mode")
    op.execute(LOCK_SESSIONS)
    op.execute(LOCK_LEARNERS)
    for table, name, _ in FOREIGN_KEYS:
        op.execute(f"alter table {table} drop constraint {name}")
    op.execute("set local citus.enable_unsafe_triggers = on")
    # Tables tied by a foreign key (to a reference table, say) are undistributed together.
    tables = ", ".join(
        f"'{t}'" for t in ("app.event_receipts", "app.users", *LEARNER_TABLES, *REFERENCE_TABLES)
    )
    op.execute(f"""
        do $$
        declare
            t regclass;
        begin
            foreach t in array array[{tables}]::regclass[] loop
                if exists (select from pg_dist_partition as p where p.logicalrelid = t) then
                    perform undistribute_table(t, cascade_via_foreign_keys => true);
                end if;
            end loop;
        end;
        $$
    """)
    op.execute("alter table app.questions drop constraint questions_id_topic_key")
    for table, name, definition in FOREIGN_KEYS[:EXISTING_KEYS]:
        op.execute(f"alter table {table} add constraint {name} foreign key {definition}")
    for name, (_table, definition) in TRIGGERS.items():
        op.execute(f"create trigger {name} {definition}")
