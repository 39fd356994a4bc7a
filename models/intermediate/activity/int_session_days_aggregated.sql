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
-- the session's activities, active and idle seconds and question attempts of that day, summed over
-- the gapped activities of macros/activity.sql (those of int_session_activities_gapped), computed
-- here in the same query: the window leaves them in (session_id, user_id, local_date) order, and
-- the sums stream off it (through the view PostgreSQL hashed every event again: 32 -> 26 s for
-- the select at 5,000 learners x 90 days). session_efficiency sums a session's rows;
-- daily_user_stats sums a learner's sessions of a day. Incremental: every session with an event
-- received since the watermark is recomputed whole.
with

{% if is_incremental() %}
    touched_sessions as (
        {{ touched_session_ids(received_since_watermark('received_at')) }}
    ),
{% endif %}

{{ gapped_session_activities() }},

final as (
    select
        session_id,
        user_id,
        local_date,
        bool_or(previous_occurred_at is null) as is_start_day,
        min(occurred_at) as first_activity_at,
        max(occurred_at) as last_activity_at,
        count(*)::integer as activities,
        {{ milliseconds_to_seconds('sum(active_milliseconds)') }} as active_seconds,
        {{ milliseconds_to_seconds('sum(idle_milliseconds)') }} as idle_seconds,
        (count(*) filter (where is_idle_gap))::integer as idle_gaps,
        (count(*) filter (where attempt_is_correct is not null))::integer as questions_attempted,
        (count(*) filter (where attempt_is_correct))::integer as questions_correct
    from gapped
    group by session_id, user_id, local_date
)

select * from final
