-- Grain: one row per learner and studied leaf topic (as topic_mastery), evaluated as of a date:
-- var mastery_as_of_date when set, else today in the learner's own timezone. A view, so "today"
-- moves on its own. The published formulas only: the SM-2 schedule, the forgetting curve
-- retrieval_strength = retrieval_base ^ (days since the last review / interval) and mastery with
-- it. topic_mastery_current adds the recall model's columns to these rows; a lookup of one learner
-- here plans and runs in a fraction of its time (the per-learner dashboards read this view).
{{ config(materialized='view') }}

with

mastery as (
    select
        user_id,
        topic_id,
        reviews,
        attempts,
        correct_attempts,
        first_attempts,
        first_attempts_correct,
        last_review_first_attempts,
        last_review_first_attempts_correct,
        accuracy,
        accuracy_smoothed,
        first_attempt_accuracy,
        first_attempt_accuracy_smoothed,
        easiness,
        repetitions,
        interval_days,
        last_review_date,
        next_review_date,
        has_materials,
        materials_completion,
        mastery_at_last_review,
        mastery_confidence
    from {{ ref('topic_mastery') }}
),

users as (
    select
        user_id,
        timezone
    from {{ ref('stg_app__users') }}
),

dated as (
    -- each value the later steps read more than once is computed once per row, in a lateral
    -- subquery that `limit all` keeps from being flattened: inlined, its expression was copied into
    -- every formula using it (five time-zone conversions and two power() calls a row; the view
    -- took 3.9 s instead of 1.5 s at 10,000 learners). Filters on user_id and topic_id still
    -- reach topic_mastery's index.
    select
        mastery.*,
        learner_today.as_of_date,
        {{ as_of_is_local_today('mastery_as_of_date') }} as is_current
    from mastery
    inner join users
        on mastery.user_id = users.user_id
    cross join lateral (  -- noqa: ST05
        select {{ mastery_as_of_date('users.timezone') }} as as_of_date
        limit all  -- noqa: AM09
    ) as learner_today
),

decayed as (
    select
        dated.*,
        dated.as_of_date - dated.last_review_date as days_since_last_review,
        forgetting.retrieval_strength
    from dated
    cross join lateral (  -- noqa: ST05
        select
            {{ retrieval_strength('dated.as_of_date - dated.last_review_date', 'dated.interval_days') }}
                as retrieval_strength
        limit all  -- noqa: AM09
    ) as forgetting
),

final as (
    select
        user_id::uuid as user_id,
        topic_id::integer as topic_id,
        as_of_date::date as as_of_date,
        is_current::boolean as is_current,
        reviews::integer as reviews,
        attempts::integer as attempts,
        correct_attempts::integer as correct_attempts,
        first_attempts::integer as first_attempts,
        first_attempts_correct::integer as first_attempts_correct,
        last_review_first_attempts::integer as last_review_first_attempts,
        last_review_first_attempts_correct::integer as last_review_first_attempts_correct,
        accuracy::numeric(14, 10) as accuracy,
        first_attempt_accuracy::numeric(14, 10) as first_attempt_accuracy,
        easiness::numeric(8, 2) as easiness,
        repetitions::integer as repetitions,
        interval_days::integer as interval_days,
        last_review_date::date as last_review_date,
        next_review_date::date as next_review_date,
        days_since_last_review::integer as days_since_last_review,
        (next_review_date - as_of_date)::integer as days_until_due,
        (next_review_date <= as_of_date)::boolean as is_due,
        retrieval_strength::numeric(14, 10) as retrieval_strength,
        materials_completion::numeric(14, 10) as materials_completion,
        mastery_at_last_review::numeric(14, 10) as mastery_at_last_review,
        {{ mastery_score(
            'first_attempt_accuracy_smoothed', 'accuracy_smoothed', 'retrieval_strength',
            'materials_completion', 'has_materials'
        ) }}::numeric(14, 10) as mastery,
        mastery_confidence::numeric(14, 10) as mastery_confidence
    from decayed
)

select * from final
