"""Each fact of an event stored once: receipts keep only the event_id, empty properties are NULL.

Measured with ``python -m bench.storage --users 300 --days 30`` (a built history, one nightly
run, vacuumed; 617.9 bytes per event before this migration):

* ``app.event_receipts`` held (event_id, user_id, occurred_at): 68 bytes per event of heap beside
  its 41-byte primary key. The learner and the time are the event's log row's, written in the same
  transaction; the receipt repeated them so that the tracker could find a repeat's stored version.
  It finds it through the batch's own learner and time instead (the log's and typed tables'
  user-time indexes, then the event_id): a repeat with the same content has the same learner and
  time, so it is found and compared; one with another learner or time is not found, and not
  finding it is the proof that its content differs. Erasure already deletes the receipts through
  the learner's log rows (0008, 0014). What stays is the idempotency ledger the primary key is: a
  receipt row is 40 bytes plus its line pointer. On plain PostgreSQL the receipts' reference
  trigger (it checked the learner of each receipt) goes: the log row's check of the same learner
  runs in the same transaction; on Citus, 0015 already replaced it by the log's foreign key.
* ``app.study_events.properties`` held ``{}`` for every event without properties (the typed
  events, heartbeats, session starts: most of the log): 5 bytes that cost 8 in the aligned row.
  An empty object is now NULL (the column's default too); ``stg_app__study_events`` gives ``{}``
  back, so the warehouse reads what it read before. The log is rewritten once by ALTER TABLE
  (no row is updated: the append-only trigger is not involved).
* ``study_events_user_time_idx``, a btree on (user_id, occurred_at), was 64 bytes per event, the
  largest index of the database: one entry per event, as (learner, instant) is nearly unique. Its
  readers ask for a learner's events in a window of whole UTC days: the activity marts' lookup of
  a touched learner-day (``on_touched_user_day``: the three UTC dates around the local day), the
  readiness job's active learners (UTC midnights), the tracker's repeat lookup (one instant, so
  one UTC date). ``study_events_user_day_idx`` on (user_id, the UTC date of occurred_at) serves
  the same windows: those queries now also state them as UTC dates (the same rows: each window's
  bounds are UTC midnights), and the btree deduplicates the entries of a learner-day into one key
  with a posting list of 6-byte row pointers: ~8 bytes per event. The marts' and the job's
  lookups read the same rows as before (their windows are whole days). The repeat lookup reads
  the learner's UTC day and checks the instant and event_id on each row: ~16 buffers per repeat
  instead of ~4 (2,000 scattered repeats: 140 against 25 ms); repeats are rare. Erasure finds a
  learner's rows by user_id alone, through either index.

Views reading the receipts' dropped columns or the log's properties (the dbt staging views of
app and the views built on them) would make these ALTER TABLEs fail: they are dropped, with a
notice, and the next dbt build makes them again (``studyin run`` migrates before it builds).

None of this reaches the typed tables' keys or the receipts' role: ``event_receipts(event_id)``
stays the one global unique key (distributed on event_id on Citus).

Measured after it, same command: 531.0 bytes per event (receipts 109.7 -> 84.9, the log's heap
137.0 -> 131.2, its learner index 67.3 -> 10.8).

Downgrade: the (user_id, occurred_at) btree comes back; the receipts' learner and time come back
from the log rows (then from the typed rows for a receipt written without its log row, which only
hand-made data has), and the migration refuses if a receipt has neither; empty properties become
``{}`` again and the column NOT NULL.

Revision ID: 0017_receipts_empty_properties
Revises: 0016_event_log_storage
Create Date: 2026-12-02
"""

from alembic import op
from python_jobs.warehouse.migrate import drop_views_reading, has_citus

revision = "0017_receipts_empty_properties"
down_revision = "0016_event_log_storage"
branch_labels = None
depends_on = None

USER_TIME = "create index study_events_user_time_idx on app.study_events (user_id, occurred_at)"
USER_DAY = (
    "create index study_events_user_day_idx on app.study_events"
    " (user_id, ((occurred_at at time zone 'UTC')::date))"
)

RECEIPT_TRIGGER = (
    "create trigger event_receipts_references after insert on app.event_receipts"
    " referencing new table as new_rows for each statement"
    " execute function app.check_event_references()"
)

# Each source read by itself first (a materialized CTE): on Citus the receipts are distributed on
# event_id and the log on user_id, so the UPDATE then joins one distributed table with a result.
RESTORE_RECEIPTS = """
with stored as materialized (
    select event_id, user_id, {time} as occurred_at from app.{table}
)
update app.event_receipts as r
set user_id = s.user_id, occurred_at = s.occurred_at
from stored as s
where s.event_id = r.event_id and r.user_id is null
"""
RECEIPT_SOURCES = (
    ("study_events", "occurred_at"),
    ("question_attempts", "answered_at"),
    ("material_interactions", "occurred_at"),
    ("exam_results", "taken_at"),
)
REFUSE_UNRESTORED = """
do $$
declare
    missing uuid;
begin
    select r.event_id into missing from app.event_receipts as r where r.user_id is null limit 1;
    if found then
        raise exception 'cannot restore the receipt of event %: no log or typed row holds its '
            'learner and time', missing;
    end if;
end;
$$
"""


def upgrade() -> None:
    # on Citus 0015 dropped it (a distributed table has no triggers)
    if not has_citus(op.get_bind()):
        op.execute("drop trigger event_receipts_references on app.event_receipts")
    op.execute(drop_views_reading("app.event_receipts", ["user_id", "occurred_at"], revision))
    op.execute(drop_views_reading("app.study_events", ["properties"], revision))
    op.execute("alter table app.event_receipts drop column user_id, drop column occurred_at")
    op.execute("alter table app.study_events alter column properties drop default")
    op.execute("alter table app.study_events alter column properties drop not null")
    op.execute(
        "alter table app.study_events alter column properties type jsonb"
        " using nullif(properties, '{}'::jsonb)"
    )
    op.execute(
        "alter table app.study_events add constraint study_events_properties_not_empty"
        " check (properties <> '{}'::jsonb)"
    )
    op.execute(
        "comment on column app.study_events.properties is"
        " 'The declared properties of the event; NULL when it has none (never an empty object).'"
    )
    op.execute(USER_DAY)
    op.execute("drop index app.study_events_user_time_idx")
    # Dropped columns keep their bytes in every stored receipt until the table is rewritten.
    with op.get_context().autocommit_block():
        op.execute("vacuum full app.event_receipts")


def downgrade() -> None:
    op.execute(USER_TIME)
    op.execute("drop index app.study_events_user_day_idx")
    op.execute("comment on column app.study_events.properties is null")
    op.execute("alter table app.study_events drop constraint study_events_properties_not_empty")
    op.execute(drop_views_reading("app.study_events", ["properties"], revision))
    op.execute(
        "alter table app.study_events alter column properties type jsonb"
        " using coalesce(properties, '{}'::jsonb)"
    )
    op.execute("alter table app.study_events alter column properties set default '{}'::jsonb")
    op.execute("alter table app.study_events alter column properties set not null")
    op.execute(
        "alter table app.event_receipts add column user_id uuid, add column occurred_at timestamptz"
    )
    for table, time in RECEIPT_SOURCES:
        op.execute(RESTORE_RECEIPTS.format(table=table, time=time))
    op.execute(REFUSE_UNRESTORED)
    op.execute("alter table app.event_receipts alter column user_id set not null")
    op.execute("alter table app.event_receipts alter column occurred_at set not null")
    if not has_citus(op.get_bind()):
        op.execute(RECEIPT_TRIGGER)
