-- Cohort comparison: where the learner stands against the percentiles of their cohort for each
-- benchmarked metric (cohorts under the minimum size show no percentiles). Parameter: user_id.
with

learner as (
    select
        user_id,
        cohort,
        accuracy_30d,
        questions_30d,
        active_study_minutes_30d,
        active_days_30d,
        mean_mastery
    from {{ ref('user_learning_metrics') }}
    where user_id = {{ bind_param('user_id') }}
),

benchmarks as (
    select
        cohort,
        metric,
        n,
        is_shown,
        p10,
        p25,
        p50,
        p75,
        p90
    from {{ ref('cohort_benchmarks') }}
),

final as (
    select
        learner.user_id,
        benchmarks.cohort,
        benchmarks.metric,
        benchmarks.n,
        benchmarks.is_shown,
        benchmarks.p10,
        benchmarks.p25,
        benchmarks.p50,
        benchmarks.p75,
        benchmarks.p90
    from learner
    inner join benchmarks on learner.cohort = benchmarks.cohort
)

select * from final
order by metric
