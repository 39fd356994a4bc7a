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

hour_totals as (
    select
        user_id,
        local_hour,
        sum(attempts) as hour_attempts,
        sum(correct_attempts) as hour_correct_attempts
    from cells
    group by user_id, local_hour
),

ranked_hours as (
    select
        user_id,
        local_hour,
        row_number() over (
            partition by user_id
            order by hour_correct_attempts::numeric / hour_attempts desc, hour_attempts desc, local_hour asc
        ) as hour_rank
    from hour_totals
    where hour_attempts >= {{ var('best_hour_min_attempts') }}
),

best_hours as (
    select
        user_id,
        local_hour as best_local_hour
    from ranked_hours
    where hour_rank = 1
),

final as (
    select
        cells.user_id,
        cells.local_hour::integer as local_hour,
        cells.local_iso_dow::integer as local_iso_dow,
        cells.attempts::integer as attempts,
        cells.correct_attempts::integer as correct_attempts,
        round(cells.correct_attempts::numeric / cells.attempts, 4)::numeric(5, 4) as accuracy,
        hour_totals.hour_attempts::integer as hour_attempts,
        round(hour_totals.hour_correct_attempts::numeric / hour_totals.hour_attempts, 4)::numeric(5, 4)
            as hour_accuracy,
        best_hours.best_local_hour::integer as best_local_hour,
        coalesce(cells.local_hour = best_hours.best_local_hour, false) as is_best_hour
    from cells
    inner join hour_totals
        on cells.user_id = hour_totals.user_id and cells.local_hour = hour_totals.local_hour
    left join best_hours
        on cells.user_id = best_hours.user_id
)

select * from final
