{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='session_id',
        on_schema_change='fail',
        indexes=[
            {'columns': ['session_id'], 'unique': True},
            {'columns': ['user_id', 'local_date']},
        ],
        post_hook="{{ advance_watermark(['stg_app__study_events']) }}",
    )
}}

-- Grain: one row per study session (session_id as the events carry it).
-- Active time is the sum of gaps between consecutive activities up to var('idle_gap_seconds');
-- longer gaps are idle. Incremental: a session with an event received since the watermark is
-- recomputed whole from int_session_activities_gapped.
with

{% if is_incremental() %}
    touched_sessions as (
        select distinct session_id
        from {{ ref('stg_app__study_events') }}
        where
            session_id is not null
            and {{ received_since_watermark('received_at') }}
    ),
{% endif %}

session_activities as (
    select
        gaps.session_id,
        gaps.user_id,
        gaps.occurred_at,
        gaps.local_date,
        gaps.activity_number,
        gaps.is_idle_gap,
        gaps.active_seconds,
        gaps.idle_seconds,
        gaps.event_id
    from {{ from_touched(
        ref('int_session_activities_gapped'), 'gaps', 'touched_sessions',
        'keyed.session_id = touched_sessions.session_id'
    ) }}
),

activities as (
    select
        session_activities.session_id,
        session_activities.user_id,
        session_activities.occurred_at,
        session_activities.local_date,
        session_activities.activity_number,
        session_activities.is_idle_gap,
        session_activities.active_seconds,
        session_activities.idle_seconds,
        attempts.event_id is not null as is_question_attempt,
        coalesce(attempts.is_correct, false) as is_correct_attempt
    from session_activities
    left join {{ ref('stg_app__question_attempts') }} as attempts
        on session_activities.event_id = attempts.event_id
),

aggregated as (
    select
        session_id,
        user_id,
        min(local_date) filter (where activity_number = 1) as local_date,
        min(occurred_at) as started_at,
        max(occurred_at) as last_activity_at,
        count(*) as activities,
        sum(active_seconds) as active_seconds,
        sum(idle_seconds) as idle_seconds,
        count(*) filter (where is_idle_gap) as idle_gaps,
        count(*) filter (where is_question_attempt) as questions_attempted,
        count(*) filter (where is_correct_attempt) as questions_correct
    from activities
    group by session_id, user_id
),

final as (
    select
        session_id,
        user_id,
        local_date,
        started_at,
        last_activity_at,
        activities::integer as activities,
        active_seconds::numeric(14, 3) as active_seconds,
        idle_seconds::numeric(14, 3) as idle_seconds,
        idle_gaps::integer as idle_gaps,
        round(active_seconds / nullif(active_seconds + idle_seconds, 0), 4)::numeric(5, 4) as focus_ratio,
        questions_attempted::integer as questions_attempted,
        questions_correct::integer as questions_correct,
        round(questions_attempted * 3600.0 / nullif(active_seconds, 0), 2)::numeric(12, 2)
            as questions_per_active_hour,
        round(questions_correct * 3600.0 / nullif(active_seconds, 0), 2)::numeric(12, 2)
            as correct_per_active_hour
    from aggregated
)

select * from final
