"""OLTP schema app: learners, taxonomy, the append-only event log and its typed rows.

Revision ID: 0001_app_schema
Revises:
Create Date: 2026-11-25
"""

from alembic import op

revision = "0001_app_schema"
down_revision = None
branch_labels = None
depends_on = None

UPGRADE = r"""
create schema app;
comment on schema app is 'OLTP tables owned by Alembic; events enter only through the tracker.';

create table app.users (
    id          uuid primary key,
    created_at  timestamptz not null default now(),
    timezone    text not null,
    cohort      text not null,
    exam_target text not null,
    exam_date   date,
    constraint users_timezone_not_blank check (length(timezone) > 0),
    constraint users_cohort_not_blank check (length(cohort) > 0)
);
comment on table app.users is 'Pseudonymous learners: no names, e-mails or addresses.';

create table app.topics (
    id                integer primary key,
    parent_id         integer references app.topics (id) on delete cascade,
    level             text not null,
    name              text not null,
    path              text not null unique,
    board_exam_weight numeric(8, 6) not null,
    constraint topics_level_valid check (level in ('system', 'subject', 'subtopic')),
    constraint topics_weight_range check (board_exam_weight between 0 and 1),
    constraint topics_root_is_system check ((parent_id is null) = (level = 'system'))
);
create index topics_parent_idx on app.topics (parent_id);

create table app.topic_relationships (
    from_topic_id integer not null references app.topics (id) on delete cascade,
    to_topic_id   integer not null references app.topics (id) on delete cascade,
    kind          text not null,
    primary key (from_topic_id, to_topic_id, kind),
    constraint topic_relationships_kind_valid check (kind in ('prerequisite', 'related')),
    constraint topic_relationships_not_self check (from_topic_id <> to_topic_id)
);
comment on table app.topic_relationships is
    'kind = prerequisite: from_topic_id must be learned before to_topic_id.';
create index topic_relationships_to_idx on app.topic_relationships (to_topic_id, kind);

create table app.materials (
    id          integer primary key,
    topic_id    integer not null references app.topics (id) on delete cascade,
    kind        text not null,
    est_minutes numeric(6, 1) not null,
    constraint materials_kind_valid check (kind in ('chapter', 'video', 'flashcards', 'summary')),
    constraint materials_minutes_positive check (est_minutes > 0)
);
create index materials_topic_idx on app.materials (topic_id);

create table app.questions (
    id             integer primary key,
    topic_id       integer not null references app.topics (id) on delete cascade,
    difficulty     numeric(4, 3) not null,
    correct_answer char(1) not null,
    constraint questions_difficulty_range check (difficulty between 0 and 1),
    constraint questions_answer_valid check (correct_answer in ('A', 'B', 'C', 'D', 'E'))
);
create index questions_topic_idx on app.questions (topic_id);

create table app.event_types (
    name        text primary key,
    description text not null
);
comment on table app.event_types is 'Catalogue of accepted event types (mirrors seeds/event_types.csv).';
insert into app.event_types (name, description) values
    ('session_start', 'A study session begins'),
    ('session_heartbeat', 'The app reports the learner is still active in a session'),
    ('session_end', 'A study session ends (user action or app closed)'),
    ('question_attempt', 'An answer to a question bank item; typed row in app.question_attempts'),
    ('material_interaction', 'Reading or watching a material; typed row in app.material_interactions'),
    ('exam_result', 'A practice or board exam outcome; typed row in app.exam_results'),
    ('search', 'A search in the content library'),
    ('page_view', 'A screen of the app was shown'),
    ('ai_coach_message', 'A message exchanged with the AI study coach');

create table app.study_sessions (
    id               uuid primary key,
    user_id          uuid not null references app.users (id) on delete cascade,
    started_at       timestamptz not null,
    last_activity_at timestamptz not null,
    ended_at         timestamptz,
    end_reason       text,
    constraint study_sessions_activity_order check (last_activity_at >= started_at),
    constraint study_sessions_end_order check (ended_at is null or ended_at >= started_at),
    constraint study_sessions_end_reason_valid
        check (end_reason is null or end_reason in ('user_ended', 'idle_timeout', 'app_closed')),
    constraint study_sessions_end_consistent check ((ended_at is null) = (end_reason is null))
);
create index study_sessions_user_idx on app.study_sessions (user_id, started_at);
create index study_sessions_open_idx on app.study_sessions (last_activity_at) where ended_at is null;

-- Idempotency ledger: one row per accepted event_id, whatever month its event lands in.
create table app.event_receipts (
    event_id    uuid primary key,
    user_id     uuid not null,  -- app.users (id): checked per statement, see below
    occurred_at timestamptz not null,
    received_at timestamptz not null
);
create index event_receipts_user_idx on app.event_receipts (user_id);

create table app.study_events (
    event_id    uuid not null,
    user_id     uuid not null,  -- app.users (id): checked per statement, see below
    session_id  uuid,
    event_type  text not null,  -- app.event_types (name): checked per statement
    occurred_at timestamptz not null,
    received_at timestamptz not null default clock_timestamp(),
    properties  jsonb not null default '{}'::jsonb,
    ip_prefix   cidr,
    primary key (event_id, occurred_at),
    constraint study_events_properties_object check (jsonb_typeof(properties) = 'object'),
    constraint study_events_properties_size check (pg_column_size(properties) <= 65536),
    constraint study_events_ip_is_prefix check (
        ip_prefix is null
        or (family(ip_prefix) = 4 and masklen(ip_prefix) = 24)
        or (family(ip_prefix) = 6 and masklen(ip_prefix) = 48)
    )
) partition by range (occurred_at);
comment on table app.study_events is
    'Immutable, append-only event log, partitioned by month on occurred_at.';
create index study_events_user_time_idx on app.study_events (user_id, occurred_at);
create index study_events_received_idx on app.study_events (received_at);
create index study_events_session_idx on app.study_events (session_id, occurred_at);

create table app.question_attempts (
    event_id          uuid primary key,  -- its app.event_receipts row is written in the same transaction
    user_id           uuid not null,     -- app.users (id): checked per statement, see below
    session_id        uuid,
    question_id       integer not null,  -- (question_id, topic_id) is a row of app.questions
    topic_id          integer not null,
    attempt_number    integer not null,
    selected_answer   char(1),
    is_correct        boolean not null,
    time_to_answer_ms integer not null,
    confidence_level  smallint,
    hint_used         boolean not null default false,
    answered_at       timestamptz not null,
    received_at       timestamptz not null,
    constraint question_attempts_attempt_positive check (attempt_number >= 1),
    constraint question_attempts_answer_valid
        check (selected_answer is null or selected_answer in ('A', 'B', 'C', 'D', 'E')),
    constraint question_attempts_unanswered_is_wrong check (selected_answer is not null or not is_correct),
    constraint question_attempts_time_nonnegative check (time_to_answer_ms >= 0),
    constraint question_attempts_confidence_range check (confidence_level between 1 and 5)
);
create index question_attempts_user_time_idx on app.question_attempts (user_id, answered_at);
create index question_attempts_received_idx on app.question_attempts (received_at);
create index question_attempts_topic_time_idx on app.question_attempts (topic_id, answered_at);

create table app.material_interactions (
    event_id         uuid primary key,
    user_id          uuid not null,     -- app.users (id): checked per statement, see below
    session_id       uuid,
    material_id      integer not null,  -- app.materials (id): checked per statement
    interaction_type text not null,
    progress         numeric(5, 4),
    active_seconds   integer not null default 0,
    occurred_at      timestamptz not null,
    received_at      timestamptz not null,
    constraint material_interactions_type_valid
        check (interaction_type in ('open', 'progress', 'complete', 'highlight', 'note')),
    constraint material_interactions_progress_range check (progress between 0 and 1),
    constraint material_interactions_seconds_nonnegative check (active_seconds >= 0)
);
create index material_interactions_user_time_idx on app.material_interactions (user_id, occurred_at);
create index material_interactions_received_idx on app.material_interactions (received_at);

create table app.exam_results (
    event_id     uuid primary key,
    user_id      uuid not null,  -- app.users (id): checked per statement, see below
    exam_kind    text not null,
    taken_at     timestamptz not null,
    scaled_score integer not null,
    passed       boolean not null,
    received_at  timestamptz not null,
    constraint exam_results_kind_valid check (exam_kind in ('practice', 'board')),
    constraint exam_results_score_range check (scaled_score between 1 and 300)
);
comment on table app.exam_results is 'Practice and board exam outcomes: the labels for exam readiness.';
create index exam_results_user_idx on app.exam_results (user_id, taken_at);
create index exam_results_received_idx on app.exam_results (received_at);

create table app.rejected_events (
    id            bigint generated always as identity primary key,
    received_at   timestamptz not null default clock_timestamp(),
    user_id       uuid,
    payload       text not null,
    payload_bytes integer not null,
    reason        text not null
);
comment on table app.rejected_events is
    'Input the tracker refused, with the reason; payloads over 64 KiB are kept truncated (payload_bytes is the original size). user_id is what the payload claimed, when it parsed.';
create index rejected_events_user_idx on app.rejected_events (user_id);

create table app.deletion_requests (
    id             bigint generated always as identity primary key,
    user_id        uuid,
    subject_sha256 text not null,
    requested_at   timestamptz not null default now(),
    completed_at   timestamptz,
    affected_from  timestamptz,
    affected_to    timestamptz,
    constraint deletion_requests_pending_has_user check (completed_at is not null or user_id is not null)
);
comment on table app.deletion_requests is
    'Right to erasure. Once completed, user_id is cleared; only a hash and the time span of the erased activity remain (for the warehouse to recompute cross-learner aggregates).';
create unique index deletion_requests_pending_idx on app.deletion_requests (user_id) where completed_at is null;

-- Referential integrity of the five high-volume event tables, enforced once per statement.
--
-- Row-level foreign keys cost ~4 us of server CPU per inserted row and per key (an SPI query and a
-- tuple lock each): the seven keys of a question attempt took ~30 of its ~45 us and capped the
-- tracker near 20k events/s. These triggers give the same guarantees set-based, once per
-- statement, over its transition table:
--   * insert: every learner, event type, question (with the topic_id stored next to it) and material
--     referenced must exist; they are locked FOR KEY SHARE until commit, as a foreign-key check
--     locks them, so a concurrent erasure waits for the insert and then removes its rows too;
--   * deleting learners cascades to these tables (app.delete_user is the way to do it: the
--     append-only guard refuses the cascade into study_events otherwise, as it did with FKs);
--   * deleting a referenced question, material or event type, or changing its key, is refused.
-- Like foreign-key checks, the functions run as the tables' owner (security definer).
-- Not re-checked by the database: that a typed row's event_id has its receipt and study_events row
-- (the tracker writes all three in one transaction from one staging table).
create function app.require_learners(p_ids uuid[], p_table text) returns void
language plpgsql security definer set search_path = pg_catalog, app as $$
declare
    missing uuid;
begin
    perform 1 from app.users as u where u.id = any(p_ids) order by u.id for key share;
    select m.id into missing
    from unnest(p_ids) as m (id)
    where not exists (select from app.users as u where u.id = m.id)
    limit 1;
    if found then
        raise exception 'insert into app.% refused: user % is not in app.users', p_table, missing
            using errcode = 'foreign_key_violation';
    end if;
end;
$$;

create function app.check_event_references() returns trigger
language plpgsql security definer set search_path = pg_catalog, app as $$
declare
    bad text;
begin
    perform app.require_learners(array(select distinct n.user_id from new_rows as n), tg_table_name);
    if tg_table_name = 'study_events' then
        perform 1 from app.event_types as t
        where t.name in (select n.event_type from new_rows as n)
        order by t.name for key share;
        select n.event_type into bad
        from new_rows as n
        where not exists (select from app.event_types as t where t.name = n.event_type)
        limit 1;
        if found then
            raise exception 'insert into app.study_events refused: event type % is not in app.event_types', bad
                using errcode = 'foreign_key_violation';
        end if;
    elsif tg_table_name = 'question_attempts' then
        perform 1 from app.questions as q
        where q.id in (select n.question_id from new_rows as n)
        order by q.id for key share;
        select format('question %s with topic %s', n.question_id, n.topic_id) into bad
        from new_rows as n
        where not exists (
            select from app.questions as q where q.id = n.question_id and q.topic_id = n.topic_id)
        limit 1;
        if found then
            raise exception 'insert into app.question_attempts refused: % is not in app.questions', bad
                using errcode = 'foreign_key_violation';
        end if;
    elsif tg_table_name = 'material_interactions' then
        perform 1 from app.materials as m
        where m.id in (select n.material_id from new_rows as n)
        order by m.id for key share;
        select n.material_id::text into bad
        from new_rows as n
        where not exists (select from app.materials as m where m.id = n.material_id)
        limit 1;
        if found then
            raise exception 'insert into app.material_interactions refused: material % is not in app.materials', bad
                using errcode = 'foreign_key_violation';
        end if;
    end if;
    return null;
end;
$$;

create trigger event_receipts_references after insert on app.event_receipts
    referencing new table as new_rows for each statement execute function app.check_event_references();
create trigger study_events_references after insert on app.study_events
    referencing new table as new_rows for each statement execute function app.check_event_references();
create trigger question_attempts_references after insert on app.question_attempts
    referencing new table as new_rows for each statement execute function app.check_event_references();
create trigger material_interactions_references after insert on app.material_interactions
    referencing new table as new_rows for each statement execute function app.check_event_references();
create trigger exam_results_references after insert on app.exam_results
    referencing new table as new_rows for each statement execute function app.check_event_references();

create function app.cascade_learner_deletion() returns trigger
language plpgsql security definer set search_path = pg_catalog, app as $$
begin
    delete from app.question_attempts where user_id in (select o.id from old_rows as o);
    delete from app.material_interactions where user_id in (select o.id from old_rows as o);
    delete from app.exam_results where user_id in (select o.id from old_rows as o);
    delete from app.study_events where user_id in (select o.id from old_rows as o);
    delete from app.event_receipts where user_id in (select o.id from old_rows as o);
    return null;
end;
$$;
create trigger users_cascade_to_events after delete on app.users
    referencing old table as old_rows for each statement execute function app.cascade_learner_deletion();

-- A referenced key may not disappear (delete, or update of the key): checked after the statement,
-- like a NO ACTION foreign key.
create function app.refuse_referenced_key_removal() returns trigger
language plpgsql security definer set search_path = pg_catalog, app as $$
declare
    bad text;
begin
    if tg_table_name = 'questions' then
        select format('question %s (topic %s)', o.id, o.topic_id) into bad
        from old_rows as o
        where not exists (select from app.questions as q where q.id = o.id and q.topic_id = o.topic_id)
            and exists (
                select from app.question_attempts as a
                where a.question_id = o.id and a.topic_id = o.topic_id)
        limit 1;
    elsif tg_table_name = 'materials' then
        select format('material %s', o.id) into bad
        from old_rows as o
        where not exists (select from app.materials as m where m.id = o.id)
            and exists (select from app.material_interactions as i where i.material_id = o.id)
        limit 1;
    elsif tg_table_name = 'event_types' then
        select format('event type %s', o.name) into bad
        from old_rows as o
        where not exists (select from app.event_types as t where t.name = o.name)
            and exists (select from app.study_events as e where e.event_type = o.name)
        limit 1;
    end if;
    if bad is not null then
        raise exception '% of app.% refused: % is still referenced by learner events', lower(tg_op), tg_table_name, bad
            using errcode = 'foreign_key_violation';
    end if;
    return null;
end;
$$;
create trigger questions_referenced_delete after delete on app.questions
    referencing old table as old_rows for each statement execute function app.refuse_referenced_key_removal();
create trigger questions_referenced_update after update on app.questions
    referencing old table as old_rows for each statement execute function app.refuse_referenced_key_removal();
create trigger materials_referenced_delete after delete on app.materials
    referencing old table as old_rows for each statement execute function app.refuse_referenced_key_removal();
create trigger materials_referenced_update after update on app.materials
    referencing old table as old_rows for each statement execute function app.refuse_referenced_key_removal();
create trigger event_types_referenced_delete after delete on app.event_types
    referencing old table as old_rows for each statement execute function app.refuse_referenced_key_removal();
create trigger event_types_referenced_update after update on app.event_types
    referencing old table as old_rows for each statement execute function app.refuse_referenced_key_removal();

-- Append-only guard: UPDATE, DELETE and TRUNCATE are refused unless app.delete_user is running.
create function app.refuse_event_mutation() returns trigger language plpgsql as $$
begin
    if tg_op = 'DELETE' and current_setting('studyin.erasing_user', true) = 'on' then
        return old;
    end if;
    raise exception 'app.study_events is append-only: % is refused (use app.delete_user for erasure)', tg_op
        using errcode = 'insufficient_privilege';
end;
$$;
create trigger study_events_append_only
    before update or delete on app.study_events
    for each row execute function app.refuse_event_mutation();
create trigger study_events_no_truncate
    before truncate on app.study_events
    for each statement execute function app.refuse_event_mutation();

create function app.delete_user(p_user_id uuid) returns void
language plpgsql security definer set search_path = pg_catalog, app as $$
begin
    perform set_config('studyin.erasing_user', 'on', true);
    delete from app.rejected_events where user_id = p_user_id;
    delete from app.users where id = p_user_id;
    perform set_config('studyin.erasing_user', 'off', true);
end;
$$;
comment on function app.delete_user(uuid) is
    'The one way rows leave app.study_events: erases a learner and, by cascade, all their rows.';

-- Monthly partitions of study_events, created ahead of time (and on demand for late history).
create function app.ensure_study_event_partitions(p_from timestamptz, p_months_ahead integer default 3)
returns integer language plpgsql as $$
declare
    month_start date := date_trunc('month', p_from at time zone 'UTC')::date;
    last_month  date := (date_trunc('month', now() at time zone 'UTC') + make_interval(months => p_months_ahead))::date;
    part_name   text;
    created     integer := 0;
begin
    perform pg_advisory_xact_lock(hashtext('app.ensure_study_event_partitions'));
    while month_start <= last_month loop
        part_name := 'study_events_' || to_char(month_start, 'YYYY_MM');
        if to_regclass('app.' || part_name) is null then
            execute format(
                'create table app.%I partition of app.study_events for values from (%L) to (%L)',
                part_name,
                (month_start::timestamp at time zone 'UTC'),
                ((month_start + interval '1 month')::timestamp at time zone 'UTC'));
            created := created + 1;
        end if;
        month_start := (month_start + interval '1 month')::date;
    end loop;
    return created;
end;
$$;
comment on function app.ensure_study_event_partitions(timestamptz, integer) is
    'Creates the monthly partitions of app.study_events from p_from''s month to p_months_ahead months after now; returns how many it made.';

select app.ensure_study_event_partitions(now(), 3);
"""

DOWNGRADE = """
drop schema app cascade;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
