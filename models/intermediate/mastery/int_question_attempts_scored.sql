-- One row per answer to a question of a leaf topic, with the learner's local day and the attempt's
-- SM-2 quality (macros/mastery.sql). A view: it holds no state, and incremental models filter it
-- on received_at, which PostgreSQL pushes down to app.question_attempts.
{{ config(materialized='view') }}

with

attempts as (
    select
        event_id,
        user_id,
        topic_id,
        question_id,
        attempt_number,
        is_first_attempt,
        is_answered,
        is_correct,
        hint_used,
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

leaf_topics as (
    select topic_id
    from {{ ref('stg_app__topics') }}
    where is_leaf
),

final as (
    select
        attempts.event_id,
        attempts.user_id,
        attempts.topic_id,
        attempts.question_id,
        (attempts.answered_at at time zone users.timezone)::date as local_date,
        attempts.attempt_number,
        attempts.is_first_attempt,
        attempts.is_answered,
        attempts.is_correct,
        attempts.hint_used,
        attempts.confidence_level,
        {{ attempt_quality(
            'attempts.is_answered', 'attempts.is_correct', 'attempts.hint_used', 'attempts.confidence_level'
        ) }} as quality,
        attempts.answered_at,
        attempts.received_at
    from attempts
    inner join users
        on attempts.user_id = users.user_id
    inner join leaf_topics
        on attempts.topic_id = leaf_topics.topic_id
)

select * from final
