{%- set as_of = var('metrics_as_of_date') %}
{%- set short_days = var('metrics_short_window_days') %}
{%- set long_days = var('metrics_long_window_days') %}

-- Grain: one row per learner (every row of app.users, active or not): the learner metrics of
-- user_learning_metrics except the latest exam-readiness score. A plain table rebuilt every run:
-- its windows end "today" and its percentiles compare each learner with everyone in the cohort,
-- so no set of touched keys bounds what changes. Built before the python jobs (it reads none of
-- their output), so the nightly run computes it while knowledge_gaps builds, and the mart after
-- the jobs only adds the readiness score.
with

users as (
    select
        user_id,
        cohort,
        exam_target,
        exam_date,
        timezone
    from {{ ref('stg_app__users') }}
),

daily as (
    select
        user_id,
        local_date,
        active_study_minutes,
        questions_attempted,
        questions_correct
    from {{ ref('daily_user_stats') }}
),

topic_mastery as (
    select
        user_id,
        mastery
    from {{ ref('fct_topic_schedule_current') }}
),

dated_users as (
    select
        user_id,
        cohort,
        exam_target,
        exam_date,
        {% if as_of -%}
            '{{ as_of }}'::date
        {%- else -%}
            (now() at time zone timezone)::date
        {%- endif %} as as_of_date,
        {{ as_of_is_local_today('metrics_as_of_date') }} as is_current
    from users
),

user_days as (
    select
        daily.user_id,
        daily.local_date,
        daily.active_study_minutes,
        daily.questions_attempted,
        daily.questions_correct,
        dated_users.as_of_date - daily.local_date as days_ago
    from daily
    inner join dated_users
        on daily.user_id = dated_users.user_id
    where daily.local_date <= dated_users.as_of_date
),

windowed as (
    select
        user_id,
        max(local_date) as last_active_date,
        sum(questions_attempted) filter (where days_ago < {{ short_days }}) as questions_short,
        sum(questions_correct) filter (where days_ago < {{ short_days }}) as correct_short,
        sum(active_study_minutes) filter (where days_ago < {{ short_days }}) as minutes_short,
        count(*) filter (where days_ago < {{ short_days }}) as active_days_short,
        sum(questions_attempted) filter (where days_ago < {{ long_days }}) as questions_long,
        sum(questions_correct) filter (where days_ago < {{ long_days }}) as correct_long,
        sum(active_study_minutes) filter (where days_ago < {{ long_days }}) as minutes_long,
        count(*) filter (where days_ago < {{ long_days }}) as active_days_long,
        sum(questions_attempted) as questions_all,
        sum(questions_correct) as correct_all,
        sum(active_study_minutes) as minutes_all,
        count(*) as active_days_all
    from user_days
    group by user_id
),

-- Gaps and islands: consecutive local days share local_date - (their rank in date order).
islands as (
    select
        user_id,
        local_date,
        local_date - (row_number() over (partition by user_id order by local_date))::integer as island
    from user_days
),

streaks as (
    select
        user_id,
        island,
        max(local_date) as streak_end,
        count(*) as streak_days
    from islands
    group by user_id, island
),

streak_stats as (
    select
        streaks.user_id,
        max(streaks.streak_days) as longest_streak_days,
        -- A streak is current while it ends today or yesterday (today may not be studied yet).
        max(streaks.streak_days) filter (
            where streaks.streak_end >= dated_users.as_of_date - 1
        ) as current_streak_days
    from streaks
    inner join dated_users
        on streaks.user_id = dated_users.user_id
    group by streaks.user_id
),

mastery_stats as (
    select
        user_id,
        count(*) as studied_topics,
        avg(mastery) as mean_mastery
    from topic_mastery
    group by user_id
),

metrics as (
    select
        dated_users.user_id,
        dated_users.cohort,
        dated_users.exam_target,
        dated_users.exam_date,
        dated_users.as_of_date,
        dated_users.is_current,
        windowed.last_active_date,
        coalesce(windowed.questions_short, 0) as questions_30d,
        round(windowed.correct_short::numeric / nullif(windowed.questions_short, 0), 4) as accuracy_30d,
        coalesce(windowed.minutes_short, 0) as active_study_minutes_30d,
        coalesce(windowed.active_days_short, 0) as active_days_30d,
        coalesce(windowed.questions_long, 0) as questions_90d,
        round(windowed.correct_long::numeric / nullif(windowed.questions_long, 0), 4) as accuracy_90d,
        coalesce(windowed.minutes_long, 0) as active_study_minutes_90d,
        coalesce(windowed.active_days_long, 0) as active_days_90d,
        coalesce(windowed.questions_all, 0) as questions_all_time,
        round(windowed.correct_all::numeric / nullif(windowed.questions_all, 0), 4) as accuracy_all_time,
        coalesce(windowed.minutes_all, 0) as active_study_minutes_all_time,
        coalesce(windowed.active_days_all, 0) as active_days_all_time,
        coalesce(streak_stats.current_streak_days, 0) as current_streak_days,
        coalesce(streak_stats.longest_streak_days, 0) as longest_streak_days,
        coalesce(mastery_stats.studied_topics, 0) as studied_topics,
        round(mastery_stats.mean_mastery, 4) as mean_mastery
    from dated_users
    left join windowed
        on dated_users.user_id = windowed.user_id
    left join streak_stats
        on dated_users.user_id = streak_stats.user_id
    left join mastery_stats
        on dated_users.user_id = mastery_stats.user_id
),

-- Percentile within the cohort: the share of the cohort's other learners (with a value) below
-- this learner (percent_rank x 100); hidden when fewer than cohort_min_learners have a value.
ranked as (
    select
        user_id,
        count(accuracy_30d) over (partition by cohort) as accuracy_30d_peers,
        percent_rank() over (
            partition by cohort, accuracy_30d is null order by accuracy_30d
        ) as accuracy_30d_rank,
        count(*) over (partition by cohort) as questions_30d_peers,
        percent_rank() over (partition by cohort order by questions_30d) as questions_30d_rank
    from metrics
),

final as (
    select
        metrics.user_id,
        metrics.cohort,
        metrics.exam_target,
        metrics.exam_date,
        metrics.as_of_date,
        metrics.is_current,
        metrics.last_active_date,
        metrics.questions_30d::integer as questions_30d,
        metrics.accuracy_30d::numeric(5, 4) as accuracy_30d,
        metrics.active_study_minutes_30d::numeric(12, 2) as active_study_minutes_30d,
        metrics.active_days_30d::integer as active_days_30d,
        metrics.questions_90d::integer as questions_90d,
        metrics.accuracy_90d::numeric(5, 4) as accuracy_90d,
        metrics.active_study_minutes_90d::numeric(12, 2) as active_study_minutes_90d,
        metrics.active_days_90d::integer as active_days_90d,
        metrics.questions_all_time::integer as questions_all_time,
        metrics.accuracy_all_time::numeric(5, 4) as accuracy_all_time,
        metrics.active_study_minutes_all_time::numeric(12, 2) as active_study_minutes_all_time,
        metrics.active_days_all_time::integer as active_days_all_time,
        metrics.current_streak_days::integer as current_streak_days,
        metrics.longest_streak_days::integer as longest_streak_days,
        metrics.studied_topics::integer as studied_topics,
        metrics.mean_mastery::numeric(5, 4) as mean_mastery,
        (case
            when metrics.accuracy_30d is not null and ranked.accuracy_30d_peers >= {{ var('cohort_min_learners') }}
                then round(100 * ranked.accuracy_30d_rank::numeric, 2)
        end)::numeric(5, 2) as accuracy_30d_cohort_percentile,
        (case
            when ranked.questions_30d_peers >= {{ var('cohort_min_learners') }}
                then round(100 * ranked.questions_30d_rank::numeric, 2)
        end)::numeric(5, 2) as questions_30d_cohort_percentile
    from metrics
    inner join ranked
        on metrics.user_id = ranked.user_id
)

select * from final
