{{ config(materialized='table') }}

{%- set metrics = [
    'questions_30d', 'accuracy_30d', 'active_study_minutes_30d', 'active_days_30d',
    'accuracy_all_time', 'current_streak_days', 'longest_streak_days', 'mean_mastery',
] %}

-- Grain: one row per cohort and metric (the metrics listed above, from user_learning_metrics).
-- A plain table rebuilt every run from user_learning_metrics (itself rebuilt every run).
-- Small-group suppression: a cohort with fewer than var('cohort_min_learners') learners, or a
-- metric with fewer learners than that having a value, shows null percentiles.
with

learners as (
    select
        user_id,
        cohort,
        {{ metrics | join(',\n        ') }}
    from {{ ref('user_learning_metrics') }}
),

cohort_sizes as (
    select
        cohort,
        count(*) as cohort_learners
    from learners
    group by cohort
),

metric_values as (
    select
        learners.cohort,
        unpivoted.metric,
        unpivoted.metric_value
    from learners
    cross join lateral (
        values
        {%- for metric in metrics %}
            ('{{ metric }}', learners.{{ metric }}::double precision){{ ',' if not loop.last }}
        {%- endfor %}
    ) as unpivoted (metric, metric_value)
),

aggregated as (
    select
        cohort,
        metric,
        count(metric_value) as n,
        percentile_cont(0.10) within group (order by metric_value) as p10,
        percentile_cont(0.25) within group (order by metric_value) as p25,
        percentile_cont(0.50) within group (order by metric_value) as p50,
        percentile_cont(0.75) within group (order by metric_value) as p75,
        percentile_cont(0.90) within group (order by metric_value) as p90
    from metric_values
    group by cohort, metric
),

shown as (
    select
        aggregated.cohort,
        aggregated.metric,
        cohort_sizes.cohort_learners,
        aggregated.n,
        aggregated.p10,
        aggregated.p25,
        aggregated.p50,
        aggregated.p75,
        aggregated.p90,
        cohort_sizes.cohort_learners >= {{ var('cohort_min_learners') }}
        and aggregated.n >= {{ var('cohort_min_learners') }} as is_shown
    from aggregated
    inner join cohort_sizes
        on aggregated.cohort = cohort_sizes.cohort
),

final as (
    select
        cohort,
        metric,
        cohort_learners::integer as cohort_learners,
        n::integer as n,
        is_shown,
        (case when is_shown then round(p10::numeric, 4) end)::numeric(14, 4) as p10,
        (case when is_shown then round(p25::numeric, 4) end)::numeric(14, 4) as p25,
        (case when is_shown then round(p50::numeric, 4) end)::numeric(14, 4) as p50,
        (case when is_shown then round(p75::numeric, 4) end)::numeric(14, 4) as p75,
        (case when is_shown then round(p90::numeric, 4) end)::numeric(14, 4) as p90
    from shown
)

select * from final
