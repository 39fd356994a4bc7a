"""Least privilege: no function, schema or database right is left to PUBLIC.

PostgreSQL grants EXECUTE on every new function to PUBLIC, so any role that could reach schema app
could call app.delete_user (SECURITY DEFINER: it runs as the owner) and erase a learner, or take
key-share locks on app.users through app.require_learners. This revision:
  * revokes EXECUTE from PUBLIC (and from the four roles) on every function in app and ml, then
    grants it back only where a role calls the function itself: loader (the tracker) calls
    app.ensure_study_event_partitions and app.lock_learners. Nobody else calls a function directly:
      - trigger functions are not checked for EXECUTE when a trigger fires (only when the trigger
        is created), so loader's inserts still run app.check_event_references;
      - app.require_learners is called by that trigger function, which runs as its owner;
      - app.delete_user is called by the pipeline's erasure step, which connects as the owner of
        the schemas (the role that runs the migrations), like the other steps that write app.
  * pins search_path on every SECURITY DEFINER function to pg_catalog, its own schema, then pg_temp
    (listed last: when pg_temp is not listed, the caller's temporary tables are searched first);
  * stops new functions created by the migrating role (Alembic, and dbt when it connects as the
    same role) from getting EXECUTE for PUBLIC. Default privileges can only be revoked for the whole
    database, not per schema, so this covers every schema; dbt's own hook revokes PUBLIC's EXECUTE
    on its functions in intermediate for set-ups where dbt connects as another role;
  * adds app.lock_learners for the tracker: it locks a batch's learners FOR KEY SHARE until commit
    (so an erasure waits for the batch), and SELECT ... FOR KEY SHARE needs UPDATE on app.users,
    which loader must not have; the function takes the lock as the owner and returns the learners
    still present. Loader could take the same locks by inserting events for those learners;
  * takes from ml_writer the reading of app.rejected_events and app.deletion_requests, which the
    jobs never read;
  * revokes from PUBLIC the default USAGE on schema public (only alembic_version lives there) and
    CONNECT and TEMPORARY on the database, granting CONNECT to the four roles and TEMPORARY to
    those whose code uses temporary tables (loader: the tracker's batch tables; transformer: dbt's
    incremental models; ml_writer: the recommendations job).
What each role may do is the table in the README; tests/test_privileges.py compares the catalogue
with it.

Revision ID: 0009_least_privilege
Revises: 0008_event_log_unread_indexes
Create Date: 2026-12-02
"""

from alembic import op

revision = "0009_least_privilege"
down_revision = "0008_event_log_unread_indexes"
branch_labels = None
depends_on = None

ROLES = "loader, transformer, ml_writer, reporter"

UPGRADE = r"""
do $$
declare
    f record;
begin
    for f in
        select p.oid::regprocedure as signature, n.nspname as schema, p.prosecdef as definer
        from pg_proc as p
        join pg_namespace as n on n.oid = p.pronamespace
        where n.nspname in ('app', 'ml')
    loop
        execute format('revoke all on function %s from public, {roles}', f.signature);
        if f.definer then
            execute format(
                'alter function %s set search_path = pg_catalog, %I, pg_temp', f.signature, f.schema);
        end if;
    end loop;
end;
$$;
grant execute on function app.ensure_study_event_partitions(timestamptz, integer) to loader;

create function app.lock_learners(p_ids uuid[]) returns setof uuid
language sql security definer set search_path = pg_catalog, app, pg_temp as $$
    select u.id from app.users as u where u.id = any(p_ids) order by u.id for key share;
$$;
comment on function app.lock_learners(uuid[]) is
    'The tracker''s lock on the learners of a batch (FOR KEY SHARE until commit, as the reference '
    'check takes it): returns those still in app.users. Locking rows needs UPDATE on the table, '
    'which loader has not.';
revoke all on function app.lock_learners(uuid[]) from public;
grant execute on function app.lock_learners(uuid[]) to loader;
-- The tracker records no refusal for a learner erased before (it compares the hash of the id with
-- the completed requests' hashes); the ids of pending requests stay hidden.
grant select (subject_sha256) on app.deletion_requests to loader;

-- The monthly partitions are read and written through app.study_events; 0002's grants on the
-- tables of app gave transformer and ml_writer direct reads of the first few partitions only.
do $$
declare
    part regclass;
begin
    for part in select inhrelid::regclass from pg_inherits where inhparent = 'app.study_events'::regclass
    loop
        execute format('revoke all on table %s from {roles}', part);
    end loop;
end;
$$;

-- The python jobs never read refused payloads (which may hold whatever a client sent) or erasure
-- requests (the learners about to be erased).
revoke select on app.rejected_events, app.deletion_requests from ml_writer;

alter default privileges revoke execute on functions from public;

revoke all on schema app, ml from public;
revoke all on schema public from public;

revoke all on database "{database}" from public;
grant connect on database "{database}" to {roles};
grant temporary on database "{database}" to loader, transformer, ml_writer;
"""

DOWNGRADE = r"""
-- As 0002 left them (it granted the partitions that existed then; this grants all of them).
do $$
declare
    part regclass;
begin
    for part in select inhrelid::regclass from pg_inherits where inhparent = 'app.study_events'::regclass
    loop
        execute format('grant select on table %s to transformer, ml_writer', part);
    end loop;
end;
$$;
revoke select (subject_sha256) on app.deletion_requests from loader;
drop function app.lock_learners(uuid[]);
grant select on app.rejected_events, app.deletion_requests to ml_writer;
grant connect, temporary on database "{database}" to public;
revoke connect, temporary on database "{database}" from {roles};
grant usage on schema public to public;

alter default privileges grant execute on functions to public;

do $$
declare
    f record;
begin
    for f in
        select p.oid::regprocedure as signature, p.prosecdef as definer
        from pg_proc as p
        join pg_namespace as n on n.oid = p.pronamespace
        where n.nspname in ('app', 'ml')
    loop
        execute format('grant execute on function %s to public', f.signature);
        if f.definer then
            execute format('alter function %s set search_path = pg_catalog, app', f.signature);
        end if;
    end loop;
end;
$$;
"""


def _sql(template: str) -> str:
    database = op.get_bind().exec_driver_sql("select current_database()").scalar_one()
    return template.replace("{database}", database).replace("{roles}", ROLES)


def upgrade() -> None:
    op.execute(_sql(UPGRADE))


def downgrade() -> None:
    op.execute(_sql(DOWNGRADE))
