"""Learner-topic lookups of question attempts also bound the answer time.

0004's (user_id, topic_id) index let the review-log model (int_topic_reviews_scheduled) find a
learner's recent attempts in the topics they touched only by visiting every attempt of those
topics since the learner began: at 10,000 learners x 90 days, 550k heap pages per nightly run,
most of them old and uncached, so the model's cost grew with the history. With answered_at as the
third key column the time bound is an index condition and the lookup reads only the new rows: the
model's query went from 9.9 s to 3.1 s (EXPLAIN ANALYZE, replaying one day of the bench history).

The gap-recommendations job reads, for each learner's top gaps, the last answer to each question
of the topic through the same index; with question_id, is_correct and event_id included, those
reads are index-only instead of a heap page per answer (the job's query: 6.6 s -> 4.7 s at 90
days, most of the saving in old, uncached pages).

Revision ID: 0005_attempts_user_topic_time
Revises: 0004_job_lookup_indexes
Create Date: 2026-11-25
"""

from alembic import op

revision = "0005_attempts_user_topic_time"
down_revision = "0004_job_lookup_indexes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "create index question_attempts_user_topic_time_idx"
        " on app.question_attempts (user_id, topic_id, answered_at)"
        " include (question_id, is_correct, event_id)"
    )
    op.execute("drop index app.question_attempts_user_topic_idx")


def downgrade() -> None:
    op.execute(
        "create index question_attempts_user_topic_idx on app.question_attempts (user_id, topic_id)"
    )
    op.execute("drop index app.question_attempts_user_topic_time_idx")
