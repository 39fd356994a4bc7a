"""The readiness job's index of completed materials also carries the material.

The job reads each learner's completions (material and time) through 0004's partial index on
(user_id, occurred_at); every entry then cost a visit to the table row for material_id, mostly
old, uncached pages at 10,000 learners x 90 days. With material_id in the index (INCLUDE) the read
can be answered from the index alone.

Revision ID: 0007_completions_covering
Revises: 0006_received_at_brin
Create Date: 2026-11-25
"""

from alembic import op

revision = "0007_completions_covering"
down_revision = "0006_received_at_brin"
branch_labels = None
depends_on = None


def _completed_index(include: str) -> str:
    return (
        "create index material_interactions_completed_idx"
        f" on app.material_interactions (user_id, occurred_at){include}"
        " where interaction_type = 'complete'"
    )


def upgrade() -> None:
    op.execute("drop index app.material_interactions_completed_idx")
    op.execute(_completed_index(" include (material_id)"))


def downgrade() -> None:
    op.execute("drop index app.material_interactions_completed_idx")
    op.execute(_completed_index(""))
