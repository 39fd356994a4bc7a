"""The event log drops two indexes that nothing reads, for the tracker's sake.

Every accepted event writes a receipt and a study_events row, and each index on them is paid per
event. Two of them served no reader:
  * study_events' primary key (event_id, occurred_at): the partition key had to be part of it, so
    it never made event_id unique (a resend with another occurred_at passed it); app.event_receipts'
    primary key is what makes it unique, and nothing looks an event up by id (the tracker's repeat
    check now finds the stored version by learner and time, through study_events_user_time_idx).
  * event_receipts (user_id): only the erasure cascade used it; the cascade now finds a learner's
    receipts through their events (the log's user index, then the receipts' primary key), so it
    deletes the receipts before the events.
Server CPU per row inserted (INSERT ... SELECT of 55,000 events into a 300,000-event database,
median of 4, /proc/<pid>/schedstat of the backend, with another load on the machine): study_events
11.5 -> 8.1 us without the primary key, event_receipts 5.3 -> 2.8 us without the user index. In
bench.ingest (1M events, runs alternated on one server): 46,377 and 50,794 events/s before, 57,270
and 58,507 after; CPU per event 33.0 and 30.8 us before, 26.9 and 26.3 us after.

That the log holds each event_id once stays tested: stg_app__study_events' unique test (run with
--full-checks) and the tracker's own tests.

Revision ID: 0008_event_log_unread_indexes
Revises: 0007_completions_covering
Create Date: 2026-11-26
"""

from alembic import op

revision = "0008_event_log_unread_indexes"
down_revision = "0007_completions_covering"
branch_labels = None
depends_on = None

CASCADE = """
create or replace function app.cascade_learner_deletion() returns trigger
language plpgsql security definer set search_path = pg_catalog, app as $$
begin
{receipts_first}
    delete from app.question_attempts where user_id in (select o.id from old_rows as o);
    delete from app.material_interactions where user_id in (select o.id from old_rows as o);
    delete from app.exam_results where user_id in (select o.id from old_rows as o);
    delete from app.study_events where user_id in (select o.id from old_rows as o);
{receipts_last}
    return null;
end;
$$;
"""
RECEIPTS_THROUGH_EVENTS = """
    -- a receipt is written with its event, in one transaction: found through the log's user index
    delete from app.event_receipts as r
    using app.study_events as e
    where e.user_id in (select o.id from old_rows as o) and r.event_id = e.event_id;"""
RECEIPTS_BY_USER = """
    delete from app.event_receipts where user_id in (select o.id from old_rows as o);"""


def upgrade() -> None:
    op.execute(CASCADE.format(receipts_first=RECEIPTS_THROUGH_EVENTS, receipts_last=""))
    op.execute("drop index app.event_receipts_user_idx")
    op.execute("alter table app.study_events drop constraint study_events_pkey")


def downgrade() -> None:
    op.execute("alter table app.study_events add primary key (event_id, occurred_at)")
    op.execute("create index event_receipts_user_idx on app.event_receipts (user_id)")
    op.execute(CASCADE.format(receipts_first="", receipts_last=RECEIPTS_BY_USER))
