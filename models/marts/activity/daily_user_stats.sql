{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['user_id', 'local_date'],
        on_schema_change='fail',
        indexes=[{'columns': ['user_id', 'local_date'], 'unique': True}],
        post_hook="{{ advance_watermark(['stg_app__study_events', 'stg_app__question_attempts', 'stg_app__material_interactions']) }}",
    )
}}

-- Grain: one row per learner and local day (the date in the learner's time zone) with any event.
-- Incremental: recomputes every touched (user_id, local_date) from its whole history
-- (see touched_activity_user_days in macros/activity.sql).
with

{% if is_incremental() %}
    touched_user_days as (
        {{ touched_activity_user_days(received_since_watermark('received_at')) }}
    ),
{% endif %}

-- Events inside sessions are counted through int_session_days_aggregated (one row per session and
-- local day); the log itself is read only for the rare events outside any session.
sessionless_events as (
    select
        events.user_id,
        events.local_date
    from {{ from_touched(
        ref('int_study_events_localized'), 'events', 'touched_user_days',
        on_touched_user_day('keyed', 'occurred_at') ~ ' and keyed.session_id is null'
    ) }}
    where events.session_id is null
),

session_days as (
    select
        session_days.user_id,
        session_days.local_date,
        session_days.active_seconds
    from {{ from_touched_user_days(ref('int_session_days_aggregated'), 'session_days', 'first_activity_at') }}
),

attempts as (
    select
        attempts.user_id,
        attempts.local_date,
        attempts.topic_id,
        attempts.is_correct,
        attempts.is_first_attempt,
        attempts.hint_used,
        attempts.time_to_answer_ms
    from {{ from_touched_user_days(ref('int_question_attempts_localized'), 'attempts', 'answered_at') }}
),

interactions as (
    select
        interactions.user_id,
        interactions.local_date,
        interactions.material_id,
        interactions.topic_id,
        interactions.interaction_type,
        interactions.active_seconds
    from {{ from_touched_user_days(ref('int_material_interactions_localized'), 'interactions', 'occurred_at') }}
),

session_stats as (
    select
        user_id,
        local_date,
        count(*) as sessions,
        sum(active_seconds) as active_seconds
    from session_days
    group by user_id, local_date
),

attempt_stats as (
    -- plain aggregates only, so PostgreSQL can hash the learner-days instead of sorting every
    -- attempt: the answer times and topics are kept as arrays, and their median and distinct
    -- count are taken per learner-day below (5.6 -> 4.6 s for a full build at 2,000 x 90)
    select
        user_id,
        local_date,
        count(*) as questions_attempted,
        count(*) filter (where is_correct) as questions_correct,
        count(*) filter (where is_first_attempt) as first_attempts,
        count(*) filter (where is_first_attempt and is_correct) as first_attempts_correct,
        count(*) filter (where hint_used) as hints_used,
        array_agg(time_to_answer_ms) as answer_times_ms,
        array_agg(topic_id) as topic_ids
    from attempts
    group by user_id, local_date
),

interaction_stats as (
    select
        user_id,
        local_date,
        count(distinct material_id) filter (where interaction_type = 'complete') as materials_completed,
        sum(active_seconds) as material_seconds,
        array_agg(distinct topic_id) as topic_ids
    from interactions
    group by user_id, local_date
),

user_days as (
    select
        user_id,
        local_date
    from session_stats
    union
    select
        user_id,
        local_date
    from sessionless_events
    union
    select
        user_id,
        local_date
    from attempt_stats
    union
    select
        user_id,
        local_date
    from interaction_stats
),

joined as (
    select
        user_days.user_id,
        user_days.local_date,
        coalesce(session_stats.sessions, 0) as sessions,
        coalesce(session_stats.active_seconds, 0) as active_seconds,
        coalesce(attempt_stats.questions_attempted, 0) as questions_attempted,
        coalesce(attempt_stats.questions_correct, 0) as questions_correct,
        coalesce(attempt_stats.first_attempts, 0) as first_attempts,
        coalesce(attempt_stats.first_attempts_correct, 0) as first_attempts_correct,
        coalesce(attempt_stats.hints_used, 0) as hints_used,
        (
            select percentile_cont(0.5) within group (order by answered.time_to_answer_ms)
            from unnest(attempt_stats.answer_times_ms) as answered (time_to_answer_ms)
        ) as median_time_to_answer_ms,
        coalesce(interaction_stats.materials_completed, 0) as materials_completed,
        coalesce(interaction_stats.material_seconds, 0) as material_seconds,
        (
            select count(distinct studied.topic_id)
            from unnest(
                coalesce(attempt_stats.topic_ids, '{}') || coalesce(interaction_stats.topic_ids, '{}')
            ) as studied (topic_id)
        ) as distinct_topics
    from user_days
    left join session_stats
        on user_days.user_id = session_stats.user_id and user_days.local_date = session_stats.local_date
    left join attempt_stats
        on user_days.user_id = attempt_stats.user_id and user_days.local_date = attempt_stats.local_date
    left join interaction_stats
        on
            user_days.user_id = interaction_stats.user_id
            and user_days.local_date = interaction_stats.local_date
),

users as (
    select
        user_id,
        timezone
    from {{ ref('stg_app__users') }}
),

located as (
    select
        joined.*,
        users.timezone
    from joined
    left join users on joined.user_id = users.user_id
),

final as (
    select
        user_id,
        local_date,
        sessions::integer as sessions,
        round(active_seconds / 60.0, 2)::numeric(12, 2) as active_study_minutes,
        questions_attempted::integer as questions_attempted,
        questions_correct::integer as questions_correct,
        first_attempts::integer as first_attempts,
        first_attempts_correct::integer as first_attempts_correct,
        round(questions_correct::numeric / nullif(questions_attempted, 0), 4)::numeric(5, 4) as accuracy,
        hints_used::integer as hints_used,
        median_time_to_answer_ms::numeric(12, 1) as median_time_to_answer_ms,
        materials_completed::integer as materials_completed,
        round(material_seconds / 60.0, 2)::numeric(20, 2) as material_minutes,
        distinct_topics::integer as distinct_topics,
        timezone::text as timezone,
        {{ day_start('local_date', 'timezone') }}::timestamptz as day_starts_at,
        {{ day_start('local_date + 1', 'timezone') }}::timestamptz as day_ends_at
    from located
)

select * from final
