"""Stored readiness models: nightly runs score with the last trained model of the same options.

Revision ID: 0003_stored_readiness_models
Revises: 0002_ml_schema_and_roles
Create Date: 2026-11-25
"""

from alembic import op

revision = "0003_stored_readiness_models"
down_revision = "0002_ml_schema_and_roles"
branch_labels = None
depends_on = None

UPGRADE = r"""
alter table ml.model_runs
    add column trained_as_of date,
    add column model_key text,
    add column model bytea;
comment on column ml.model_runs.trained_as_of is
    'The as-of day of the run that trained this model (labels up to that day).';
comment on column ml.model_runs.model_key is
    'Hash of the job options that shape the model and of the library versions: a stored model is '
    'reused only by runs with the same key.';
comment on column ml.model_runs.model is
    'The trained model (pickled scikit-learn estimators and score interval), written and read only '
    'by the readiness job; null for the heuristic.';
create index model_runs_stored_idx on ml.model_runs (model_key, trained_as_of)
    where model is not null;
"""

DOWNGRADE = r"""
drop index ml.model_runs_stored_idx;
alter table ml.model_runs
    drop column model,
    drop column model_key,
    drop column trained_as_of;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
