"""Question attempts keep three narrow indexes instead of two wide ones.

The attempts' two btrees were the largest indexes of the database, 91 bytes per stored event
together (``python -m bench.storage --users 500 --days 30``: a built history, one nightly run,
vacuumed; 518 bytes per event in all), each of them one entry per attempt with a full timestamp:

* ``question_attempts_user_time_idx`` on (user_id, answered_at), 35 bytes per event. Its readers:
  the activity models' lookups of a touched learner-day (``on_touched_user_day`` states the
  window as instants and as UTC dates), the recall features' first attempts of a learner since a
  day, the tracker's lookup of a repeat's stored attempt (one instant), and the session model's
  join of each event to its attempt (by learner and instant). ``question_attempts_user_day_idx``
  on (user_id, the UTC date of answered_at) serves the first three, which state their bounds as
  UTC dates too, as 0017 did for the log: the btree keeps one key per learner-day with a posting
  list of row pointers, 4 bytes per event. The session model now joins an event to its attempt on
  (session_id, event_id): ``question_attempts_session_idx`` on session_id (4 bytes per event)
  gives a session's attempts in one lookup, as the log's session index gives its events.
* ``question_attempts_user_topic_time_idx`` on (user_id, topic_id, answered_at) included
  question_id, is_correct and event_id, 56 bytes per event, so that the gap recommendations
  could read a gap's last answers from the index alone (0005: 6.6 -> 4.7 s at 10,000 learners x
  90 days). Without the included columns it is 26 bytes per event; the learner-topic replay of
  the review log keeps its time-bounded lookup, and the recommendations read the few rows of each
  gap from the table.

Indexes only: no row moves, and the downgrade builds the old indexes again.

Revision ID: 0018_attempt_indexes
Revises: 0017_receipts_empty_properties
Create Date: 2026-12-02
"""

from alembic import op

revision = "0018_attempt_indexes"
down_revision = "0017_receipts_empty_properties"
branch_labels = None
depends_on = None

TABLE = "app.question_attempts"
USER_DAY = (
    f"create index question_attempts_user_day_idx on {TABLE}"
    " (user_id, ((answered_at at time zone 'UTC')::date))"
)
SESSION = f"create index question_attempts_session_idx on {TABLE} (session_id)"
USER_TIME = f"create index question_attempts_user_time_idx on {TABLE} (user_id, answered_at)"
USER_TOPIC_TIME = (
    f"create index question_attempts_user_topic_time_idx on {TABLE}"
    " (user_id, topic_id, answered_at){include}"
)
COVERING = " include (question_id, is_correct, event_id)"


def upgrade() -> None:
    op.execute(USER_DAY)
    op.execute(SESSION)
    op.execute("drop index app.question_attempts_user_time_idx")
    op.execute("drop index app.question_attempts_user_topic_time_idx")
    op.execute(USER_TOPIC_TIME.format(include=""))


def downgrade() -> None:
    op.execute(USER_TIME)
    op.execute("drop index app.question_attempts_user_topic_time_idx")
    op.execute(USER_TOPIC_TIME.format(include=COVERING))
    op.execute("drop index app.question_attempts_session_idx")
    op.execute("drop index app.question_attempts_user_day_idx")
