"""Declared event properties, and erasure of refused payloads that mention the learner.

* ``app.event_type_properties``: the keys each event type's ``properties`` may hold and their
  JSON type (string, integer, number, boolean). The tracker keeps only these (other keys and
  values of the wrong type are dropped and counted; strings have e-mail and IP addresses
  masked). Mirrored by seeds/event_type_properties.csv.
* ``app.delete_user`` also deletes the refused payloads (``app.rejected_events``) whose payload or
  reason mentions the learner's id in any spelling (any case, with or without hyphens, in braces,
  as urn:uuid:...), not only those whose ``user_id`` column names them: a payload that could not
  be parsed (truncated JSON) has no ``user_id`` but still holds the id.
* Refused payloads already stored that mention a learner erased before this migration are deleted
  (completed deletion requests keep only the SHA-256 of the id: every UUID-shaped substring is
  hashed and compared). This cannot be undone by the downgrade.

Revision ID: 0011_declared_properties
Revises: 0010_models_as_data
Create Date: 2026-12-02
"""

from alembic import op

revision = "0011_declared_properties"
down_revision = "0010_models_as_data"
branch_labels = None
depends_on = None

UPGRADE = r"""
create table app.event_type_properties (
    event_type  text not null references app.event_types (name) on delete cascade,
    key         text not null,
    type        text not null,
    description text not null,
    primary key (event_type, key),
    constraint event_type_properties_type_valid
        check (type in ('string', 'integer', 'number', 'boolean')),
    constraint event_type_properties_key_valid check (key ~ '^[a-z][a-z0-9_]*$')
);
comment on table app.event_type_properties is
    'The keys an event type''s properties may hold and their JSON type (mirrors seeds/event_type_properties.csv). The tracker drops and counts any other key or a value of another type, and masks e-mail and IP addresses in strings.';
insert into app.event_type_properties (event_type, key, type, description) values
    ('session_end', 'end_reason', 'string', 'How the session ended: user_ended or app_closed (the tracker copies the event''s end_reason field here)'),
    ('page_view', 'screen', 'string', 'The screen shown, e.g. dashboard, reader, question_block, exams, resume'),
    ('search', 'query', 'string', 'The search text as typed, e-mail addresses masked and IP addresses cut to their network'),
    ('search', 'results', 'integer', 'How many results the search returned'),
    ('search', 'topic_id', 'integer', 'The topic the search was for (app.topics id)'),
    ('ai_coach_message', 'topic_id', 'integer', 'The topic the message was about (app.topics id)'),
    ('ai_coach_message', 'chars', 'integer', 'Length of the message in characters (its text is not kept)');
grant select on app.event_type_properties to loader, transformer;

create or replace function app.delete_user(p_user_id uuid) returns void
language plpgsql security definer set search_path = pg_catalog, app, pg_temp as $$
declare
    bare constant text := replace(p_user_id::text, '-', '');
begin
    perform set_config('studyin.erasing_user', 'on', true);
    -- Refused input claiming the learner, or mentioning their id in any spelling: compared
    -- without hyphens and case, the 32 hex digits are found however the id was written.
    delete from app.rejected_events
    where user_id = p_user_id
        or strpos(replace(lower(payload), '-', ''), bare) > 0
        or strpos(replace(lower(reason), '-', ''), bare) > 0;
    delete from app.users where id = p_user_id;
    perform set_config('studyin.erasing_user', 'off', true);
end;
$$;
comment on function app.delete_user(uuid) is
    'The one way rows leave app.study_events: erases a learner and, by cascade, all their rows, and the refused payloads that mention their id.';

delete from app.rejected_events as r
where exists (
    select
    from regexp_matches(
        r.payload || ' ' || r.reason,
        '(?<![0-9a-f])[0-9a-f](?:-?[0-9a-f]){31}(?![0-9a-f])',
        'gi'
    ) as m (hit)
    inner join app.deletion_requests as d
        on d.subject_sha256 = encode(
            sha256(convert_to(replace(lower(m.hit[1]), '-', '')::uuid::text, 'UTF8')), 'hex'
        )
    where d.completed_at is not null
);
"""

DOWNGRADE = r"""
create or replace function app.delete_user(p_user_id uuid) returns void
language plpgsql security definer set search_path = pg_catalog, app, pg_temp as $$
begin
    perform set_config('studyin.erasing_user', 'on', true);
    delete from app.rejected_events where user_id = p_user_id;
    delete from app.users where id = p_user_id;
    perform set_config('studyin.erasing_user', 'off', true);
end;
$$;
comment on function app.delete_user(uuid) is
    'The one way rows leave app.study_events: erases a learner and, by cascade, all their rows.';
drop table app.event_type_properties;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
