{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='session_id',
        on_schema_change='fail',
        indexes=[
            {'columns': ['session_id', 'local_date', 'user_id'], 'unique': True},
            {'columns': ['user_id', 'local_date']},
        ],
        post_hook="{{ advance_watermark(['stg_app__study_events']) }}",
    )
}}

-- One row per session and local day it has activities on (usually one, two across midnight):
-- the session's activities, active and idle seconds (int_session_activities_gapped) and question
-- attempts of that day. session_efficiency sums a session's rows; daily_user_stats sums a learner's
-- sessions of a day. Incremental: every session with an event received since the watermark is
-- recomputed whole.
with

{% if is_incremental() %}
    touched_sessions as (
        {{ touched_session_ids(received_since_watermark('received_at')) }}
    ),
{% endif %}

activities as (
    select
        gaps.session_id,
        gaps.user_id,
        gaps.local_date,
        gaps.occurred_at,
        gaps.is_first_activity,
        gaps.is_idle_gap,
        gaps.active_milliseconds,
        gaps.idle_milliseconds,
        gaps.is_question_attempt,
        gaps.is_correct_attempt
    from {{ from_touched(
        ref('int_session_activities_gapped'), 'gaps', 'touched_sessions',
        'keyed.session_id = touched_sessions.session_id'
    ) }}
),

final as (
    select
        session_id,
        user_id,
        local_date,
        bool_or(is_first_activity) as is_start_day,
        min(occurred_at) as first_activity_at,
        max(occurred_at) as last_activity_at,
        count(*)::integer as activities,
        {{ milliseconds_to_seconds('sum(active_milliseconds)') }} as active_seconds,
        {{ milliseconds_to_seconds('sum(idle_milliseconds)') }} as idle_seconds,
        (count(*) filter (where is_idle_gap))::integer as idle_gaps,
        (count(*) filter (where is_question_attempt))::integer as questions_attempted,
        (count(*) filter (where is_correct_attempt))::integer as questions_correct
    from activities
    group by session_id, user_id, local_date
)

select * from final
