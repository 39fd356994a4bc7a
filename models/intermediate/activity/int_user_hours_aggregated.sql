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
        attempts.local_date,
        attempts.local_hour,
        attempts.local_iso_dow,
        attempts.is_correct
    from {{ from_touched_user_days(ref('int_question_attempts_localized'), 'attempts', 'answered_at') }}
),

final as (
    select
        user_id,
        local_date,
        local_hour,
        local_iso_dow,
        count(*)::integer as attempts,
        (count(*) filter (where is_correct))::integer as correct_attempts
    from attempts
    group by user_id, local_date, local_hour, local_iso_dow
)

select * from final
