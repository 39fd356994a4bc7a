"""Stored readiness models are data, never pickles: a model_format column; old pickles cleared.

A pickle runs code when it is loaded, so whoever could write ml.model_runs could run code as the
pipeline. The readiness job now stores a skops file (loaded with an explicit list of trusted types)
and says so in model_format. The models stored before this revision are pickles: they are cleared
here, never read, and the next run trains a new model (the run's other columns stay as the record).
A check keeps model and model_format together.

Downgrade clears the skops models the same way (the older code reads only pickles), so it too
retrains on its next run.

Revision ID: 0010_models_as_data
Revises: 0009_least_privilege
Create Date: 2026-12-02
"""

from alembic import op

revision = "0010_models_as_data"
down_revision = "0009_least_privilege"
branch_labels = None
depends_on = None

UPGRADE = r"""
update ml.model_runs set model = null where model is not null;
alter table ml.model_runs
    add column model_format text,
    add constraint model_runs_model_format_check check (
        (model is null) = (model_format is null) and coalesce(model_format = 'skops', true)
    );
comment on column ml.model_runs.model_format is
    'Format of model: skops (a zip of JSON and arrays, loaded with an explicit list of trusted '
    'types); null when no model is stored.';
comment on column ml.model_runs.model is
    'The trained model as data (a skops file: scikit-learn estimators, score interval, reference '
    'values), written and read only by the readiness job; never a pickle. Null for the heuristic.';
"""

DOWNGRADE = r"""
update ml.model_runs set model = null, model_format = null where model is not null;
alter table ml.model_runs
    drop constraint model_runs_model_format_check,
    drop column model_format;
comment on column ml.model_runs.model is
    'The trained model (pickled scikit-learn estimators and score interval), written and read only '
    'by the readiness job; null for the heuristic.';
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
