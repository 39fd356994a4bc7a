"""Fewer bytes per stored event: the log's session index keeps one entry per session, question
attempts find a day's rows through a BRIN index, receipts lose the arrival time nothing reads.

Every accepted event pays for each index and column of the event log on disk; measured with
``python -m bench.storage --users 200 --days 30`` (a built history, one nightly run, vacuumed):

  * ``study_events_session_idx`` was a btree on (session_id, occurred_at): 57 bytes per event,
    the second largest index of the database. Its only readers look a session up by equality
    (int_session_activities_gapped, through int_session_days_aggregated's touched sessions: every
    event of the session, ordered by a window afterwards); occurred_at is never an index condition
    there. On session_id alone the btree deduplicates: one key per session with a posting list of
    6-byte row pointers, 8 bytes per event instead of 57, for the same lookups.
  * ``question_attempts_topic_time_idx`` was a btree on (topic_id, answered_at): 20 bytes per
    event. What it served is reading every attempt of a touched UTC date (topic_daily_stats, one
    lookup per date): attempts are appended in arrival order, so answered_at follows the physical
    order except for sessions delivered late, which arrive whole and so fill block ranges of their
    own. A BRIN index on answered_at with 8-page ranges (a few kB for the whole table) finds a
    date's rows in fewer buffers than the btree did (9,833 against 12,595 for the 12 dates touched
    by one day at 1000 learners x 30 days; 340-420 against 200-470 ms on a shared machine). Its
    ranges are summarized every night with the other BRIN indexes of app.
  * ``event_receipts.received_at``: nothing reads it (the arrival watermark is
    ``study_events.received_at``, where the same instant is stored for the same event, written in
    the same transaction). Without it a receipt row is 64 bytes instead of 72 (plus its 4-byte
    line pointer): 8 bytes per event. The downgrade takes it back from the event's log row.

The receipts keep event_id (the idempotency key), user_id and occurred_at: the tracker finds a
repeat's stored version through them (study_events is partitioned by month and indexed by learner
and time), and erasure deletes a learner's receipts through the learner's events.

Revision ID: 0016_event_log_storage
Revises: 0015_citus_distribution
Create Date: 2026-12-02
"""

from alembic import op

revision = "0016_event_log_storage"
down_revision = "0015_citus_distribution"
branch_labels = None
depends_on = None

SESSION_INDEX = "create index study_events_session_idx on app.study_events ({columns})"

# The receipt's arrival time, back from its event's log row: same event_id, learner and instant
# (the log's (user_id, occurred_at) index finds it in its monthly partition).
RESTORE_RECEIVED_AT = """
update app.event_receipts as r
set received_at = e.received_at
from app.study_events as e
where e.user_id = r.user_id and e.occurred_at = r.occurred_at and e.event_id = r.event_id
"""


ANSWERED_BRIN = (
    "create index question_attempts_answered_brin on app.question_attempts"
    " using brin (answered_at) with (pages_per_range = 8)"
)
TOPIC_TIME = (
    "create index question_attempts_topic_time_idx on app.question_attempts (topic_id, answered_at)"
)


def upgrade() -> None:
    op.execute("drop index app.study_events_session_idx")
    op.execute(SESSION_INDEX.format(columns="session_id"))
    op.execute(ANSWERED_BRIN)
    op.execute("drop index app.question_attempts_topic_time_idx")
    op.execute("alter table app.event_receipts drop column received_at")


def downgrade() -> None:
    op.execute("alter table app.event_receipts add column received_at timestamptz")
    op.execute(RESTORE_RECEIVED_AT)
    # a receipt always had its log row (one transaction wrote both); should one be missing, its
    # arrival time is unknown: the time it occurred is the closest honest bound we have
    op.execute("update app.event_receipts set received_at = occurred_at where received_at is null")
    op.execute("alter table app.event_receipts alter column received_at set not null")
    op.execute("drop index app.study_events_session_idx")
    op.execute(SESSION_INDEX.format(columns="session_id, occurred_at"))
    op.execute(TOPIC_TIME)
    op.execute("drop index app.question_attempts_answered_brin")
