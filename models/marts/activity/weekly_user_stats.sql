{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['user_id', 'week_start'],
        on_schema_change='fail',
        indexes=[{'columns': ['user_id', 'week_start'], 'unique': True}],
        post_hook="{{ advance_watermark(['stg_app__study_events', 'stg_app__question_attempts', 'stg_app__material_interactions']) }}",
    )
}}

-- depends_on: {{ ref('int_study_events_localized') }}
-- depends_on: {{ ref('int_question_attempts_localized') }}
-- depends_on: {{ ref('int_material_interactions_localized') }}
-- depends_on: {{ ref('int_session_days_aggregated') }}
-- (read only on incremental runs, to find the touched weeks)

-- Grain: one row per learner and local ISO week (starting Monday) with any activity.
-- Sums daily_user_stats; incremental: recomputes every week holding a touched local day.
with

{% if is_incremental() %}
    touched_user_weeks as (
        select distinct
            touched.user_id,
            date_trunc('week', touched.local_date)::date as week_start
        from ({{ touched_activity_user_days(received_since_watermark('received_at')) }}) as touched
    ),
{% endif %}

days as (
    select
        daily.user_id,
        daily.local_date,
        date_trunc('week', daily.local_date)::date as week_start,
        daily.sessions,
        daily.active_study_minutes,
        daily.questions_attempted,
        daily.questions_correct,
        daily.first_attempts,
        daily.first_attempts_correct,
        daily.hints_used,
        daily.materials_completed,
        daily.material_minutes
    from {{ from_touched(
        ref('daily_user_stats'), 'daily', 'touched_user_weeks',
        'keyed.user_id = touched_user_weeks.user_id'
        ~ ' and keyed.local_date >= touched_user_weeks.week_start'
        ~ ' and keyed.local_date < touched_user_weeks.week_start + 7'
    ) }}
),

summed as (
    select
        user_id,
        week_start,
        count(*) as active_days,
        sum(sessions) as sessions,
        sum(active_study_minutes) as active_study_minutes,
        sum(questions_attempted) as questions_attempted,
        sum(questions_correct) as questions_correct,
        sum(first_attempts) as first_attempts,
        sum(first_attempts_correct) as first_attempts_correct,
        sum(hints_used) as hints_used,
        sum(materials_completed) as materials_completed,
        sum(material_minutes) as material_minutes
    from days
    group by user_id, week_start
),

users as (
    select
        user_id,
        timezone
    from {{ ref('stg_app__users') }}
),

located as (
    select
        summed.*,
        users.timezone
    from summed
    left join users on summed.user_id = users.user_id
),

final as (
    select
        user_id,
        week_start,
        (week_start + 6)::date as week_end,
        extract(isoyear from week_start)::integer as iso_year,
        extract(week from week_start)::integer as iso_week,
        active_days::integer as active_days,
        sessions::integer as sessions,
        active_study_minutes::numeric(12, 2) as active_study_minutes,
        questions_attempted::integer as questions_attempted,
        questions_correct::integer as questions_correct,
        first_attempts::integer as first_attempts,
        first_attempts_correct::integer as first_attempts_correct,
        round(questions_correct::numeric / nullif(questions_attempted, 0), 4)::numeric(5, 4) as accuracy,
        hints_used::integer as hints_used,
        materials_completed::integer as materials_completed,
        material_minutes::numeric(20, 2) as material_minutes,
        timezone::text as timezone,
        {{ day_start('week_start', 'timezone') }}::timestamptz as week_starts_at,
        {{ day_start('week_start + 7', 'timezone') }}::timestamptz as week_ends_at
    from located
)

select * from final
