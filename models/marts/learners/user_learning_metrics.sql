{{
    config(
        materialized='table',
        indexes=[{'columns': ['user_id'], 'unique': True}, {'columns': ['cohort']}],
    )
}}

-- Grain: one row per learner (every row of app.users, active or not).
-- The metrics come from int_user_metrics_aggregated, built before the python jobs; this mart,
-- built after them, adds each learner's latest exam-readiness score. A plain table rebuilt every
-- run (10,000 rows at 10,000 learners).
with

metrics as (
    select
        user_id,
        cohort,
        exam_target,
        exam_date,
        as_of_date,
        is_current,
        last_active_date,
        questions_30d,
        accuracy_30d,
        active_study_minutes_30d,
        active_days_30d,
        questions_90d,
        accuracy_90d,
        active_study_minutes_90d,
        active_days_90d,
        questions_all_time,
        accuracy_all_time,
        active_study_minutes_all_time,
        active_days_all_time,
        current_streak_days,
        longest_streak_days,
        studied_topics,
        mean_mastery,
        accuracy_30d_cohort_percentile,
        questions_30d_cohort_percentile
    from {{ ref('int_user_metrics_aggregated') }}
),

readiness_scores as (
    select
        user_id,
        scored_at,
        pass_probability
    from {{ ref('stg_ml__exam_readiness_scores') }}
),

latest_readiness as (
    select distinct on (user_id)
        user_id,
        pass_probability
    from readiness_scores
    order by user_id asc, scored_at desc
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
        metrics.questions_30d,
        metrics.accuracy_30d,
        metrics.active_study_minutes_30d,
        metrics.active_days_30d,
        metrics.questions_90d,
        metrics.accuracy_90d,
        metrics.active_study_minutes_90d,
        metrics.active_days_90d,
        metrics.questions_all_time,
        metrics.accuracy_all_time,
        metrics.active_study_minutes_all_time,
        metrics.active_days_all_time,
        metrics.current_streak_days,
        metrics.longest_streak_days,
        metrics.studied_topics,
        metrics.mean_mastery,
        latest_readiness.pass_probability::double precision as latest_exam_readiness,
        metrics.accuracy_30d_cohort_percentile,
        metrics.questions_30d_cohort_percentile
    from metrics
    left join latest_readiness
        on metrics.user_id = latest_readiness.user_id
)

select * from final
