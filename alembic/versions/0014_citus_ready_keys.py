"""Keys a distributed PostgreSQL (Citus, hash-distributed on user_id) can keep; on every server.

Citus can enforce a primary key or unique constraint of a distributed table only when it contains
the distribution column, here ``user_id``. Rule from now on: no unique key on a learner table
without ``user_id``, except ``app.event_receipts (event_id)``, the one global idempotency ledger
(distributed on event_id by 0015 on Citus).

* ``question_attempts``, ``material_interactions``, ``exam_results`` lose their primary key on
  ``event_id``. A typed row is written in the tracker's transaction with its receipt, whose
  primary key already makes the event_id unique; the key cost an index entry (~25 bytes) per
  event. Whoever looks a typed row up goes through its learner and time (``user_id`` + answered_at
  / occurred_at / taken_at, the tables' user-time indexes) and then the event_id.
* ``study_sessions``: primary key (user_id, id) instead of (id). A plain index on ``id`` stays for
  the tracker's check that an event does not join another learner's session (it looks sessions
  up by id alone).
* ``app.lock_sessions(ids)``: the tracker's read-and-lock of the sessions a batch touches (FOR
  UPDATE until commit), as a function so that 0015 can give it the body Citus needs (it refuses
  FOR UPDATE on a query that spans shards).
* ``app.require_learners`` without a correlated subquery over unnest() (Citus refuses those:
  "correlated subqueries are not supported when the FROM clause contains a set returning
  function"): the learners present are collected once, the missing one found by EXCEPT. On plain
  PostgreSQL it still locks them FOR KEY SHARE, as a foreign key check does; on Citus the foreign
  keys 0015 adds take that lock on each learner's shard (a FOR KEY SHARE spanning shards is
  refused there).
* ``app.delete_user`` sets its erasure flag with SET LOCAL and deletes the learner's receipts itself (found through the learner's events,
  as 0008's cascade did), so that erasure does not depend on a trigger on app.users, which Citus
  cannot run; the cascade trigger stays for plain PostgreSQL (it then finds no receipt left).

Revision ID: 0014_citus_ready_keys
Revises: 0013_recall_models
Create Date: 2026-12-02
"""

from alembic import op

revision = "0014_citus_ready_keys"
down_revision = "0013_recall_models"
branch_labels = None
depends_on = None

TYPED = ("question_attempts", "material_interactions", "exam_results")

REQUIRE_LEARNERS = r"""
create or replace function app.require_learners(p_ids uuid[], p_table text) returns void
language plpgsql security definer set search_path = pg_catalog, app, pg_temp as $$
declare
    present uuid[];
    missing uuid;
begin
    if to_regclass('pg_catalog.pg_dist_partition') is null then
        -- plain PostgreSQL: locked until commit as a foreign key check locks them, so a
        -- concurrent erasure waits for the insert
        present := array(select u.id from app.users as u where u.id = any(p_ids) order by u.id for key share);
    else
        -- Citus: the foreign keys of the distributed tables lock them on their shard
        present := array(select u.id from app.users as u where u.id = any(p_ids));
    end if;
    select m.id into missing
    from (select unnest(p_ids) except select unnest(present)) as m (id)
    limit 1;
    if found then
        raise exception 'insert into app.% refused: user % is not in app.users', p_table, missing
            using errcode = 'foreign_key_violation';
    end if;
end;
$$;
revoke all on function app.require_learners(uuid[], text) from public;
"""

REQUIRE_LEARNERS_BEFORE = r"""
create or replace function app.require_learners(p_ids uuid[], p_table text) returns void
language plpgsql security definer set search_path = pg_catalog, app, pg_temp as $$
declare
    missing uuid;
begin
    perform 1 from app.users as u where u.id = any(p_ids) order by u.id for key share;
    select m.id into missing
    from unnest(p_ids) as m (id)
    where not exists (select from app.users as u where u.id = m.id)
    limit 1;
    if found then
        raise exception 'insert into app.% refused: user % is not in app.users', p_table, missing
            using errcode = 'foreign_key_violation';
    end if;
end;
$$;
"""

LOCK_SESSIONS = r"""
create function app.lock_sessions(p_ids uuid[]) returns setof app.study_sessions
language sql set search_path = pg_catalog, app, pg_temp as $$
    select s.* from app.study_sessions as s where s.id = any(p_ids) order by s.id for update;
$$;
comment on function app.lock_sessions(uuid[]) is
    'The tracker''s read of the sessions a batch touches, locked FOR UPDATE until commit (runs as '
    'the caller: loader may update app.study_sessions).';
revoke all on function app.lock_sessions(uuid[]) from public;
grant execute on function app.lock_sessions(uuid[]) to loader;
"""

DELETE_USER = r"""
create or replace function app.delete_user(p_user_id uuid) returns void
language plpgsql security definer set search_path = pg_catalog, app, pg_temp as $$
declare
    bare constant text := replace(p_user_id::text, '-', '');
    events uuid[];
begin
    -- SET LOCAL rather than set_config(): Citus sends SET LOCAL to the workers (0015), where the
    -- append-only trigger of study_events' shards reads it.
    set local studyin.erasing_user = 'on';
    -- Refused input claiming the learner, or mentioning their id in any spelling: compared
    -- without hyphens and case, the 32 hex digits are found however the id was written.
    delete from app.rejected_events
    where user_id = p_user_id
        or strpos(replace(lower(payload), '-', ''), bare) > 0
        or strpos(replace(lower(reason), '-', ''), bare) > 0;
    -- A receipt is written with its event, in one transaction: found through the log's user
    -- index, then deleted by the receipts' primary key.
    events := array(select e.event_id from app.study_events as e where e.user_id = p_user_id);
    delete from app.event_receipts where event_id = any(events);
    delete from app.users where id = p_user_id;
    set local studyin.erasing_user = 'off';
end;
$$;
"""

DELETE_USER_BEFORE = r"""
create or replace function app.delete_user(p_user_id uuid) returns void
language plpgsql security definer set search_path = pg_catalog, app, pg_temp as $$
declare
    bare constant text := replace(p_user_id::text, '-', '');
begin
    perform set_config('studyin.erasing_user', 'on', true);
    -- Refused input claiming the learner, or mentioning their id in any spelling: compared
    -- without hyphens and case, the 32 hex digits are found however the id was written.
    delete from app.rejected_events
    where user_id = p_user_id
        or strpos(replace(lower(payload), '-', ''), bare) > 0
        or strpos(replace(lower(reason), '-', ''), bare) > 0;
    delete from app.users where id = p_user_id;
    perform set_config('studyin.erasing_user', 'off', true);
end;
$$;
"""


def upgrade() -> None:
    for table in TYPED:
        op.execute(f"alter table app.{table} drop constraint {table}_pkey")
    op.execute("alter table app.study_sessions drop constraint study_sessions_pkey")
    op.execute("alter table app.study_sessions add primary key (user_id, id)")
    op.execute("create index study_sessions_id_idx on app.study_sessions (id)")
    op.execute(LOCK_SESSIONS)
    op.execute(REQUIRE_LEARNERS)
    op.execute(DELETE_USER)


def downgrade() -> None:
    op.execute(DELETE_USER_BEFORE)
    op.execute(REQUIRE_LEARNERS_BEFORE)
    op.execute("drop function app.lock_sessions(uuid[])")
    op.execute("drop index app.study_sessions_id_idx")
    op.execute("alter table app.study_sessions drop constraint study_sessions_pkey")
    op.execute("alter table app.study_sessions add primary key (id)")
    for table in TYPED:
        op.execute(f"alter table app.{table} add primary key (event_id)")
