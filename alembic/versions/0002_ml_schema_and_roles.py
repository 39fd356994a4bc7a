"""Schema ml for job outputs, and the four roles with their grants.

Revision ID: 0002_ml_schema_and_roles
Revises: 0001_app_schema
Create Date: 2026-11-25
"""

from alembic import op

revision = "0002_ml_schema_and_roles"
down_revision = "0001_app_schema"
branch_labels = None
depends_on = None

ROLES = ("loader", "transformer", "ml_writer", "reporter")

UPGRADE = r"""
create schema ml;
comment on schema ml is 'Outputs of the python jobs (exam readiness, gap recommendations); owned by Alembic.';

create table ml.model_runs (
    model_version     text primary key,
    trained_at        timestamptz not null default now(),
    model_kind        text not null,
    data_window_start date,
    data_window_end   date,
    n_train           integer not null default 0,
    n_test            integer not null default 0,
    auc               double precision,
    brier             double precision,
    calibration       jsonb not null default '[]'::jsonb,
    params            jsonb not null default '{}'::jsonb,
    plot_path         text,
    constraint model_runs_auc_range check (auc between 0 and 1),
    constraint model_runs_brier_range check (brier between 0 and 1)
);
comment on table ml.model_runs is 'One row per trained (or heuristic) exam-readiness model version.';

create table ml.exam_readiness_scores (
    user_id          uuid not null references app.users (id) on delete cascade,
    scored_at        timestamptz not null,
    model_version    text not null references ml.model_runs (model_version),
    pass_probability double precision not null,
    predicted_score  double precision,
    interval_low     double precision,
    interval_high    double precision,
    top_factors      jsonb not null default '[]'::jsonb,
    primary key (user_id, scored_at),
    constraint exam_readiness_probability_range check (pass_probability between 0 and 1),
    constraint exam_readiness_interval_order check (interval_low <= interval_high)
);
create index exam_readiness_scores_scored_idx on ml.exam_readiness_scores (scored_at);

create table ml.gap_recommendations (
    user_id      uuid not null references app.users (id) on delete cascade,
    topic_id     integer not null references app.topics (id) on delete cascade,
    rank         integer not null,
    action       text not null,
    target_id    integer not null,
    reason       text not null,
    generated_at timestamptz not null,
    generated_on date not null,
    primary key (user_id, generated_on, rank),
    constraint gap_recommendations_rank_positive check (rank >= 1),
    constraint gap_recommendations_action_valid
        check (action in ('learn_prerequisite', 'review_questions', 'read_material'))
);

do $$
declare r text;
begin
    foreach r in array array['loader', 'transformer', 'ml_writer', 'reporter'] loop
        if not exists (select 1 from pg_roles where rolname = r) then
            execute format('create role %I nologin', r);
        end if;
    end loop;
end;
$$;

-- loader: the tracker. Writes events and their typed rows; reads the reference tables it validates against.
grant usage on schema app to loader;
grant select on app.users, app.topics, app.questions, app.materials, app.event_types to loader;
grant select, insert on app.event_receipts, app.study_events, app.question_attempts,
    app.material_interactions, app.exam_results to loader;
grant insert on app.rejected_events to loader;
grant select, insert, update on app.study_sessions to loader;
grant execute on function app.ensure_study_event_partitions(timestamptz, integer) to loader;

-- transformer: dbt. Reads app and ml, builds staging/intermediate/marts.
grant usage on schema app, ml to transformer;
grant select on all tables in schema app to transformer;
grant select on all tables in schema ml to transformer;
grant create on database "{database}" to transformer;

-- ml_writer: the python jobs. Reads app and marts, writes ml.
grant usage on schema app, ml to ml_writer;
grant select on all tables in schema app to ml_writer;
grant select, insert, update, delete on all tables in schema ml to ml_writer;

-- reporter: BI tools. Marts only; dbt grants select on each mart and usage on the schema.
revoke all on schema app, ml from reporter;
"""

DOWNGRADE = r"""
drop schema ml cascade;
revoke create on database "{database}" from transformer;
do $$
declare r text;
begin
    foreach r in array array['loader', 'transformer', 'ml_writer', 'reporter'] loop
        if exists (select 1 from pg_roles where rolname = r) then
            execute format('revoke all on schema app from %I', r);
            execute format('revoke all on all tables in schema app from %I', r);
            execute format('revoke all on all functions in schema app from %I', r);
            begin
                execute format('drop owned by %I', r);
                execute format('drop role %I', r);
            exception when dependent_objects_still_exist or insufficient_privilege then
                -- Roles are cluster-wide: another database on this server still grants to it.
                raise notice 'role % kept: still used elsewhere on this server', r;
            end;
        end if;
    end loop;
end;
$$;
"""


def _database() -> str:
    return op.get_bind().exec_driver_sql("select current_database()").scalar_one()


def upgrade() -> None:
    op.execute(UPGRADE.replace("{database}", _database()))


def downgrade() -> None:
    op.execute(DOWNGRADE.replace("{database}", _database()))
