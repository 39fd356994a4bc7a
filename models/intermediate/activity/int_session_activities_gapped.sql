{{ config(materialized='view') }}

-- One row per event that belongs to a session, with the gap since the learner's previous activity
-- in the session split into active and idle seconds: a gap longer than var('idle_gap_seconds') is
-- idle as a whole. Each gap is attributed to the activity that ends it (and so to that activity's
-- local day). Gaps are whole milliseconds (bigint): integer sums are several times cheaper than
-- numeric ones over the whole log, and the seconds columns are those milliseconds, exactly.
-- The CTEs are macros/activity.sql's gapped_session_activities, which int_session_days_aggregated
-- sums in the same query (reading this view, PostgreSQL hashed every event to group them again).
-- A view for analysts and its tests: the window is partitioned by session, so a filter on
-- session_id reaches the session indexes of the event log and of the question attempts.
with

{{ gapped_session_activities() }},

final as (
    select
        event_id,
        user_id,
        session_id,
        event_type,
        occurred_at,
        local_date,
        attempt_is_correct is not null as is_question_attempt,
        coalesce(attempt_is_correct, false) as is_correct_attempt,
        previous_occurred_at is null as is_first_activity,
        previous_occurred_at,
        gap_milliseconds,
        {{ milliseconds_to_seconds('gap_milliseconds') }} as gap_seconds,
        is_idle_gap,
        active_milliseconds,
        idle_milliseconds,
        {{ milliseconds_to_seconds('active_milliseconds') }} as active_seconds,
        {{ milliseconds_to_seconds('idle_milliseconds') }} as idle_seconds
    from gapped
)

select * from final
