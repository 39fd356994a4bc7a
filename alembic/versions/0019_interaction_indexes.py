"""Material interactions indexed by learner and UTC day; the sessions' unused learner index goes.

Read at 50,000 learners x 30 days (``python -m bench.run --profile xlarge``: 60.3M events, a
history built by the tracker, then its first pipeline run), from ``pg_stat_user_indexes`` and the
indexes' sizes:

* ``material_interactions_user_time_idx`` on (user_id, occurred_at), 299 MB (5.0 bytes per
  stored event), one entry per interaction. Its readers ask for a learner's interactions in whole
  UTC days: the activity marts' lookup of a touched learner-day (``on_touched_user_day`` already
  states the three UTC dates around the local day) and the tracker's lookup of a repeat's stored
  interaction (one instant, now also stated as its UTC date, as 0017 and 0018 did for the log
  and the attempts). ``material_interactions_user_day_idx`` on (user_id, the UTC date of
  occurred_at) serves both and deduplicates a learner-day's entries into one key with a posting
  list. The readiness features read completions through ``material_interactions_completed_idx``
  and the recommendations a learner's material through ``material_interactions_user_material_idx``;
  neither changes.
* ``study_sessions_user_idx`` on (user_id, started_at), 69 MB (1.1 bytes per event): no scan in
  that whole build and first run (nor in the 2,000 x 90 history's build, nightly runs and full
  rebuild). The sessions' key (user_id, id) and ``study_sessions_id_idx`` serve every lookup.

Indexes only: no row moves, and the downgrade builds the old indexes again.

Revision ID: 0019_interaction_indexes
Revises: 0018_attempt_indexes
Create Date: 2026-12-03
"""

from alembic import op

revision = "0019_interaction_indexes"
down_revision = "0018_attempt_indexes"
branch_labels = None
depends_on = None

INTERACTIONS = "app.material_interactions"
USER_DAY = (
    f"create index material_interactions_user_day_idx on {INTERACTIONS}"
    " (user_id, ((occurred_at at time zone 'UTC')::date))"
)
USER_TIME = (
    f"create index material_interactions_user_time_idx on {INTERACTIONS} (user_id, occurred_at)"
)
SESSIONS_USER = "create index study_sessions_user_idx on app.study_sessions (user_id, started_at)"


def upgrade() -> None:
    op.execute(USER_DAY)
    op.execute("drop index app.material_interactions_user_time_idx")
    op.execute("drop index app.study_sessions_user_idx")


def downgrade() -> None:
    op.execute(SESSIONS_USER)
    op.execute(USER_TIME)
    op.execute("drop index app.material_interactions_user_day_idx")
