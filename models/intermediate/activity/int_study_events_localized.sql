{{ config(materialized='view') }}

-- Every event with its local date, hour, ISO day of week and week in the learner's time zone.
-- A view: filters on user_id, occurred_at and received_at reach the event log's indexes.
with

events as (
    select
        event_id,
        user_id,
        session_id,
        event_type,
        is_question_attempt,
        occurred_at,
        received_at
    from {{ ref('stg_app__study_events') }}
),

users as (
    select
        user_id,
        timezone
    from {{ ref('stg_app__users') }}
),

final as (
    select
        events.event_id,
        events.user_id,
        events.session_id,
        events.event_type,
        events.is_question_attempt,
        events.occurred_at,
        events.received_at,
        users.timezone,
        {{ local_date('events.occurred_at', 'users.timezone') }} as local_date,
        {{ local_hour('events.occurred_at', 'users.timezone') }} as local_hour,
        {{ local_iso_dow('events.occurred_at', 'users.timezone') }} as local_iso_dow
    from events
    inner join users
        on events.user_id = users.user_id
)

select * from final
