{{ config(materialized='view') }}

-- Every question attempt with the learner's local date, hour, ISO day of week and ISO week of the
-- moment it was answered. A view: filters on user_id, answered_at and received_at reach the indexes.
with

attempts as (
    select
        event_id,
        user_id,
        session_id,
        question_id,
        topic_id,
        attempt_number,
        is_first_attempt,
        is_correct,
        hint_used,
        time_to_answer_ms,
        confidence_level,
        answered_at,
        received_at
    from {{ ref('stg_app__question_attempts') }}
),

users as (
    select
        user_id,
        timezone
    from {{ ref('stg_app__users') }}
),

localized as (
    select
        attempts.event_id,
        attempts.user_id,
        attempts.session_id,
        attempts.question_id,
        attempts.topic_id,
        attempts.attempt_number,
        attempts.is_first_attempt,
        attempts.is_correct,
        attempts.hint_used,
        attempts.time_to_answer_ms,
        attempts.confidence_level,
        attempts.answered_at,
        attempts.received_at,
        users.timezone,
        {{ local_date('attempts.answered_at', 'users.timezone') }} as local_date,
        {{ local_hour('attempts.answered_at', 'users.timezone') }} as local_hour,
        {{ local_iso_dow('attempts.answered_at', 'users.timezone') }} as local_iso_dow
    from attempts
    inner join users
        on attempts.user_id = users.user_id
),

final as (
    select
        event_id,
        user_id,
        session_id,
        question_id,
        topic_id,
        attempt_number,
        is_first_attempt,
        is_correct,
        hint_used,
        time_to_answer_ms,
        confidence_level,
        answered_at,
        received_at,
        timezone,
        local_date,
        local_hour,
        local_iso_dow,
        date_trunc('week', local_date)::date as local_week_start
    from localized
)

select * from final
