{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='activity_date',
        on_schema_change='fail',
        indexes=[{'columns': ['activity_date', 'topic_id'], 'unique': True}],
        pre_hook="{{ delete_erased_utc_dates('activity_date') }}",
        post_hook=[
            "{{ advance_watermark(['stg_app__question_attempts']) }}",
            "{{ advance_erasure_watermark() }}",
        ],
    )
}}

-- Grain: one row per topic and UTC date with at least one question attempt.
-- Aggregates across learners, so the unique key is the date alone: a recomputed date replaces all
-- of its rows. Touched dates: the UTC dates of attempts received since the watermark, and every
-- date inside the activity span of an erasure completed since the erasure watermark (the pre-hook
-- deletes those first, so a topic-day whose only learner was erased disappears).
with

{% if is_incremental() %}
    touched_dates as (
        select distinct (answered_at at time zone 'UTC')::date as activity_date
        from {{ ref('stg_app__question_attempts') }}
        where {{ received_since_watermark('received_at') }}
        union
        {{ erased_utc_dates(erasures_since_watermark('erasures.completed_at')) }}
    ),
{% endif %}

attempts as (
    select
        attempts.topic_id,
        (attempts.answered_at at time zone 'UTC')::date as activity_date,
        attempts.user_id,
        attempts.is_correct,
        attempts.is_first_attempt
    from {{ from_touched(
        ref('stg_app__question_attempts'), 'attempts', 'touched_dates',
        "keyed.answered_at >= (touched_dates.activity_date::timestamp at time zone 'UTC')"
        ~ " and keyed.answered_at < ((touched_dates.activity_date + 1)::timestamp at time zone 'UTC')"
    ) }}
),

learner_topic_days as (
    -- first per learner, so that counting a topic-day's learners is a count of rows: a
    -- count(distinct user_id) sorts every attempt (twice as slow over 19.6M attempts)
    select
        topic_id,
        activity_date,
        user_id,
        count(*) as attempts,
        count(*) filter (where is_correct) as correct_attempts,
        count(*) filter (where is_first_attempt) as first_attempts,
        count(*) filter (where is_first_attempt and is_correct) as first_attempts_correct
    from attempts
    group by topic_id, activity_date, user_id
),

aggregated as (
    select
        topic_id,
        activity_date,
        sum(attempts) as attempts,
        sum(correct_attempts) as correct_attempts,
        count(*) as learners,
        sum(first_attempts) as first_attempts,
        sum(first_attempts_correct) as first_attempts_correct
    from learner_topic_days
    group by topic_id, activity_date
),

final as (
    select
        topic_id,
        activity_date,
        attempts::integer as attempts,
        correct_attempts::integer as correct_attempts,
        round(correct_attempts::numeric / attempts, 4)::numeric(5, 4) as accuracy,
        learners::integer as learners,
        first_attempts::integer as first_attempts,
        first_attempts_correct::integer as first_attempts_correct,
        round(first_attempts_correct::numeric / nullif(first_attempts, 0), 4)::numeric(5, 4) as first_attempt_accuracy,
        {{ day_start('activity_date', "'UTC'") }}::timestamptz as day_starts_at,
        {{ day_start('activity_date + 1', "'UTC'") }}::timestamptz as day_ends_at
    from aggregated
)

select * from final
