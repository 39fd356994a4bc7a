-- Grain: one row per calendar day from var('time_spine_start') to var('time_spine_end'). The
-- time spine MetricFlow requires (declared by `time_spine:` in _semantic__models.yml): it joins
-- metrics to it for cumulative windows, offsets and days without data. A plain table of some
-- 6,000 dates, rebuilt with the marts.
with

days as (
    select spine_day::date as date_day
    from generate_series(
        '{{ var("time_spine_start") }}'::date,
        '{{ var("time_spine_end") }}'::date,
        interval '1 day'
    ) as spine (spine_day)
),

final as (
    select date_day::date as date_day
    from days
)

select * from final
