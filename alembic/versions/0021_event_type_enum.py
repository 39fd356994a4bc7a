"""The log's event type is an enum of the catalogue: 4 bytes instead of the name, 16 per event.

``app.study_events.event_type`` held the type's name as text, 17 bytes for the commonest ones
(``session_heartbeat``, ``question_attempt``), and the timestamp after it starts on an 8-byte
boundary, so the name took 24 bytes of every row of the log. ``app.event_type``, an enum whose
labels are the catalogue's names (``app.event_types``, itself keyed by it now), is 4 bytes:
every row of the log is 16 bytes narrower (131 -> 116 bytes per event of the log's heap).

The catalogue stays the reference data it was (the tracker and its reference checks read it,
the docs site shows it): an event type is added by a migration that adds the label and the
catalogue row together. Labels are declared in the names' sort order, so ordering by the type
orders as the names did. Readers see text: ``stg_app__study_events`` and ``stg_app__event_types``
cast it, and the tracker casts on its way in.

Views reading these columns (the dbt staging views and those built on them) are dropped, with
a notice, and the next dbt build makes them again (``studyin run`` migrates before it builds).

Moves data: every partition of the log is rewritten (13 s for 6.6M events at 2,000 x 90); the
downgrade rewrites them back to text.

Revision ID: 0021_event_type_enum
Revises: 0020_attempt_topic_day_index
Create Date: 2026-12-04
"""

from sqlalchemy import text

from alembic import op
from python_jobs.warehouse.migrate import drop_views_reading, has_citus

revision = "0021_event_type_enum"
down_revision = "0020_attempt_topic_day_index"
branch_labels = None
depends_on = None

# The catalogue's key and the key that refers to it change type together.
TYPED_COLUMNS = (
    ("app.event_types", "name"),
    ("app.event_type_properties", "event_type"),
    ("app.study_events", "event_type"),
)
# The foreign keys to the catalogue's key (event_type_properties'; on Citus the log's too, 0015)
REFERENCING_KEYS = """
select conrelid::regclass::text, conname, pg_get_constraintdef(oid)
from pg_constraint
where confrelid = 'app.event_types'::regclass and contype = 'f' and conparentid = 0
"""


def _retype(to_type: str) -> None:
    """Each column of TYPED_COLUMNS to `to_type`: the views reading them and the foreign keys
    between them are dropped first, the keys made again after. On Citus the shards are changed
    over one connection per node, as a type command in the same transaction needs."""
    if has_citus(op.get_bind()):
        op.execute("set local citus.multi_shard_modify_mode = 'sequential'")
    keys = op.get_bind().execute(text(REFERENCING_KEYS)).all()
    for table, column in TYPED_COLUMNS:
        op.execute(drop_views_reading(table, [column], revision))
    for table, name, _ in keys:
        op.execute(f"alter table {table} drop constraint {name}")
    for table, column in TYPED_COLUMNS:
        op.execute(
            f"alter table {table} alter column {column} type {to_type} using {column}::{to_type}"
        )
    for table, name, definition in keys:
        op.execute(f"alter table {table} add constraint {name} {definition}")


def upgrade() -> None:
    names = op.get_bind().execute(text("select name from app.event_types order by name")).scalars()
    labels = ", ".join("'" + name.replace("'", "''") + "'" for name in names)
    op.execute(f"create type app.event_type as enum ({labels})")
    op.execute(
        "comment on type app.event_type is"
        " 'The event types of app.event_types: a migration adds a label and its catalogue row.'"
    )
    _retype("app.event_type")


def downgrade() -> None:
    _retype("text")
    op.execute("drop type app.event_type")
