-- Learner dashboard: the learner's headline metrics and their last 30 local days of activity.
-- Parameter: user_id. Served by the unique indexes on user_learning_metrics (user_id) and
-- daily_user_stats (user_id, local_date). The learner's row is read once and joined to the days
-- in one step: on Citus both marts then sit in one query on the learner's shard (a learner step
-- read twice would be planned apart, with its result sent to every worker).
with

learner as (
    select
        user_id,
        cohort,
        as_of_date,
        accuracy_30d,
        questions_30d,
        active_days_30d,
        current_streak_days,
        longest_streak_days,
        mean_mastery,
        latest_exam_readiness,
        accuracy_30d_cohort_percentile
    from {{ ref('user_learning_metrics') }}
    where user_id = {{ bind_param('user_id') }}
),

daily as (
    select
        user_id,
        local_date,
        questions_attempted,
        accuracy,
        active_study_minutes
    from {{ ref('daily_user_stats') }}
    where user_id = {{ bind_param('user_id') }}
),

final as (
    select
        learner.user_id,
        learner.cohort,
        learner.accuracy_30d,
        learner.questions_30d,
        learner.active_days_30d,
        learner.current_streak_days,
        learner.longest_streak_days,
        learner.mean_mastery,
        learner.latest_exam_readiness,
        learner.accuracy_30d_cohort_percentile,
        daily.local_date,
        daily.questions_attempted,
        daily.accuracy,
        daily.active_study_minutes
    from learner
    left join daily
        on
            learner.user_id = daily.user_id
            and daily.local_date > learner.as_of_date - 30
)

select * from final
order by local_date
