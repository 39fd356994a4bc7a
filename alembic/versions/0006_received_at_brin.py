"""received_at is indexed with BRIN instead of btree on the event log and its typed rows.

The tracker stamps received_at from its own clock as rows arrive, so the column rises with the
physical order of these append-only tables: a BRIN index (the min and max per range of blocks)
finds "received since the watermark" in the last few ranges, as the btree did, at a fraction of
the cost of keeping a btree entry per row on ingest.

Revision ID: 0006_received_at_brin
Revises: 0005_attempts_user_topic_time
Create Date: 2026-11-25
"""

from alembic import op

revision = "0006_received_at_brin"
down_revision = "0005_attempts_user_topic_time"
branch_labels = None
depends_on = None

TABLES = ("study_events", "question_attempts", "material_interactions")


def upgrade() -> None:
    for table in TABLES:
        op.execute(f"drop index app.{table}_received_idx")
        op.execute(f"create index {table}_received_brin on app.{table} using brin (received_at)")


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"drop index app.{table}_received_brin")
        op.execute(f"create index {table}_received_idx on app.{table} (received_at)")
