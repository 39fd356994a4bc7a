{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='user_id',
        on_schema_change='fail',
        indexes=[{'columns': ['user_id', 'local_hour', 'local_iso_dow'], 'unique': True}],
        post_hook="{{ advance_watermark(['stg_app__question_attempts']) }}",
    )
}}

-- Grain: one row per learner, local hour of day (0-23) and local ISO day of week (1 = Monday)
-- with at least one question attempt. The best hour is learner-wide (every row of a learner
-- carries it), so the unique key is user_id: a learner with a new attempt is recomputed whole,
-- from int_user_hours_aggregated (a few hundred rows per learner, not every attempt).
with

{% if is_incremental() %}
    touched_users as (
        select distinct user_id
        from {{ ref('stg_app__question_attempts') }}
        where {{ received_since_watermark('received_at') }}
    ),
{% endif %}

user_hours as (
    select
        hours.user_id,
        hours.local_hour,
        hours.local_iso_dow,
        hours.attempts,
        hours.correct_attempts
    from {{ from_touched(
        ref('int_user_hours_aggregated'), 'hours', 'touched_users', 'keyed.user_id = touched_users.user_id'
    ) }}
),

cells as (
    select
        user_id,
        local_hour,
        local_iso_dow,
        sum(attempts) as attempts,
        sum(correct_attempts) as correct_attempts
    from user_hours
    group by user_id, local_hour, local_iso_dow
),

-- Window functions only (no self-join): each learner's rows are ranked in one sorted pass.
with_hours as (
    select
        user_id,
        local_hour,
        local_iso_dow,
        attempts,
        correct_attempts,
        sum(attempts) over user_hour as hour_attempts,
        sum(correct_attempts) over user_hour as hour_correct_attempts
    from cells
    window user_hour as (partition by user_id, local_hour)
),

ranked as (
    select
        user_id,
        local_hour,
        local_iso_dow,
        attempts,
        correct_attempts,
        hour_attempts,
        hour_correct_attempts,
        hour_attempts >= {{ var('best_hour_min_attempts') }} as is_eligible_hour,
        -- Hours never tie (local_hour is the last key), so rank 1 is exactly one hour.
        dense_rank() over (
            partition by user_id
            order by
                hour_attempts >= {{ var('best_hour_min_attempts') }} desc,
                hour_correct_attempts::numeric / hour_attempts desc,
                hour_attempts desc,
                local_hour asc
        ) as hour_rank
    from with_hours
),

best as (
    select
        user_id,
        local_hour,
        local_iso_dow,
        attempts,
        correct_attempts,
        hour_attempts,
        hour_correct_attempts,
        max(local_hour) filter (where hour_rank = 1 and is_eligible_hour) over (
            partition by user_id
        ) as best_local_hour
    from ranked
),

final as (
    select
        user_id,
        local_hour::integer as local_hour,
        local_iso_dow::integer as local_iso_dow,
        attempts::integer as attempts,
        correct_attempts::integer as correct_attempts,
        round(correct_attempts::numeric / attempts, 4)::numeric(5, 4) as accuracy,
        hour_attempts::integer as hour_attempts,
        round(hour_correct_attempts::numeric / hour_attempts, 4)::numeric(5, 4) as hour_accuracy,
        best_local_hour::integer as best_local_hour,
        coalesce(local_hour = best_local_hour, false) as is_best_hour
    from best
)

select * from final
