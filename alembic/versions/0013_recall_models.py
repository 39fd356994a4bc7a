"""Recall models as data: ml.recall_models and ml.recall_topic_offsets, with the prior model.

The recall model predicts P(a learner's next first attempt on a fresh question of a leaf topic is
correct). It is a logistic curve above a guessing floor over features the dbt models compute
(macros/recall.sql); `studyin recall` fits it on the review history and stores each version here as
numbers (coefficients by feature name, one offset per topic), never as code. dbt evaluates the
version in force for each date in SQL. The prior model shipped here is what the warehouse uses
before any fit: the learner-topic first-attempt accuracy, smoothed toward the learner's, taken as
the probability itself (no floor, no forgetting).

Revision ID: 0013_recall_models
Revises: 0012_learner_row_ranges
Create Date: 2026-12-02
"""

from alembic import op

revision = "0013_recall_models"
down_revision = "0012_learner_row_ranges"
branch_labels = None
depends_on = None

UPGRADE = r"""
create table ml.recall_models (
    model_version text primary key,
    model_kind text not null check (model_kind in ('prior', 'fitted')),
    trained_at timestamptz not null default now(),
    trained_until date,
    guess_floor double precision not null check (guess_floor >= 0 and guess_floor < 1),
    coefficients jsonb not null check (jsonb_typeof(coefficients) = 'object'),
    training_rows integer,
    metrics jsonb,
    check ((model_kind = 'prior') = (trained_until is null))
);
create unique index recall_models_one_prior on ml.recall_models (model_kind) where model_kind = 'prior';
create index recall_models_in_force on ml.recall_models (trained_until desc, trained_at desc);
comment on table ml.recall_models is
    'Recall model versions (studyin recall): P(next first attempt on a fresh question of a leaf '
    'topic is correct) = guess_floor + (1 - guess_floor) * logistic(intercept + sum of coefficient * '
    'feature + topic offset), the features of macros/recall.sql. One prior row (used before any fit).';
comment on column ml.recall_models.model_version is 'recall-<kind>-<date>-<hash of the parameters>.';
comment on column ml.recall_models.model_kind is
    'prior: the shipped starting model; fitted: fitted by studyin recall on the review history.';
comment on column ml.recall_models.trained_at is 'When the version was stored.';
comment on column ml.recall_models.trained_until is
    'Last review day the fit saw. The ledger scores a review with the newest version trained before '
    'its day; topic_mastery_current uses the newest trained up to its as-of date. Null for the prior.';
comment on column ml.recall_models.guess_floor is
    'Probability of a right answer by guessing alone (1 / number of options).';
comment on column ml.recall_models.coefficients is
    'Coefficient per feature name (and intercept); a missing feature counts 0.';
comment on column ml.recall_models.training_rows is 'Reviews the fit used (null for the prior).';
comment on column ml.recall_models.metrics is
    'Held-out metrics of the candidates compared on a time split, and which one was kept.';

create table ml.recall_topic_offsets (
    model_version text not null references ml.recall_models (model_version) on delete cascade,
    topic_id integer not null,
    offset_logit double precision not null,
    primary key (model_version, topic_id)
);
comment on table ml.recall_topic_offsets is
    'Per recall model version and leaf topic: the topic''s difficulty on the logit scale (added to '
    'the linear predictor; a topic without a row counts 0, the average topic).';
comment on column ml.recall_topic_offsets.model_version is 'The version (ml.recall_models).';
comment on column ml.recall_topic_offsets.topic_id is 'The leaf topic (app.topics.id).';
comment on column ml.recall_topic_offsets.offset_logit is 'Added to the linear predictor for this topic.';

insert into ml.recall_models (model_version, model_kind, guess_floor, coefficients)
values ('recall-prior-v1', 'prior', 0, '{"pair_logit": 1}');

grant select on ml.recall_models, ml.recall_topic_offsets to transformer;
grant select, insert, update, delete on ml.recall_models, ml.recall_topic_offsets to ml_writer;
"""

DOWNGRADE = r"""
drop table ml.recall_topic_offsets;
drop table ml.recall_models;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
