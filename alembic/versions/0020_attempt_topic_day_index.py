"""The attempts' learner-topic index keys a UTC day instead of an instant: one entry per day.

``question_attempts_user_topic_time_idx`` on (user_id, topic_id, answered_at) was the largest
index of the database after the receipts' key: 238 MB at 2,000 learners x 90 days (6.57M events,
``python -m bench.run --profile large --users 2000 --days 90 --only storage``), 36 bytes per
stored event, one entry per attempt since no two attempts share an instant. A learner answers
about ten questions of a topic on the day they review it, so (user_id, topic_id, the UTC date of
answered_at) keeps one key per learner-topic-day with a posting list of row pointers
(deduplication): 39 MB built on the same rows, about 30 bytes per event fewer.

Its readers need no finer key than that: the replay of a learner-topic's review history
(int_topic_reviews_scheduled) reads the attempts from a local day on, now bounded by that day's
UTC date (a local day starts at most 14 hours before its UTC midnight), and the gap
recommendations read a learner-topic's last answers through the (user_id, topic_id) prefix.

Index only: no row moves, and the downgrade builds the old index again.

Revision ID: 0020_attempt_topic_day_index
Revises: 0019_interaction_indexes
Create Date: 2026-12-04
"""

from alembic import op

revision = "0020_attempt_topic_day_index"
down_revision = "0019_interaction_indexes"
branch_labels = None
depends_on = None

TABLE = "app.question_attempts"
USER_TOPIC_DAY = (
    f"create index question_attempts_user_topic_day_idx on {TABLE}"
    " (user_id, topic_id, ((answered_at at time zone 'UTC')::date))"
)
USER_TOPIC_TIME = f"create index question_attempts_user_topic_time_idx on {TABLE} (user_id, topic_id, answered_at)"


def upgrade() -> None:
    op.execute(USER_TOPIC_DAY)
    op.execute("drop index app.question_attempts_user_topic_time_idx")


def downgrade() -> None:
    op.execute(USER_TOPIC_TIME)
    op.execute("drop index app.question_attempts_user_topic_day_idx")
