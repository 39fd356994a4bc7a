-- Grain: one row per learner and studied leaf topic (as topic_mastery), evaluated as of a date:
-- var mastery_as_of_date when set, else today in the learner's own timezone. A view, so "today"
-- moves on its own: fct_topic_schedule_current's rows (the SM-2 schedule, the forgetting curve and
-- mastery as of that date) with the recall model in force on that date (macros/recall.sql) for
-- recall_probability and knowledge_estimate.
{{ config(materialized='view') }}

with

schedule as (
    select
        user_id,
        topic_id,
        as_of_date,
        is_current,
        reviews,
        attempts,
        correct_attempts,
        first_attempts,
        first_attempts_correct,
        last_review_first_attempts,
        last_review_first_attempts_correct,
        accuracy,
        first_attempt_accuracy,
        easiness,
        repetitions,
        interval_days,
        last_review_date,
        next_review_date,
        days_since_last_review,
        days_until_due,
        is_due,
        retrieval_strength,
        materials_completion,
        mastery_at_last_review,
        mastery,
        mastery_confidence
    from {{ ref('fct_topic_schedule_current') }}
),

users as (
    select
        user_id,
        timezone
    from {{ ref('stg_app__users') }}
),

topic_parents as (
    select
        topic_id,
        parent_topic_id
    from {{ ref('stg_app__topics') }}
),

review_first_attempts as (
    -- the learner's first attempts per leaf topic and local day: the reviews the recall model's
    -- recent features are summed from in int_topic_reviews_featured, so the view and the model's
    -- training rows count the same attempts (and the view waits for no activity mart)
    select
        user_id,
        review_date,
        first_attempts,
        first_attempts_correct
    from {{ ref('int_topic_reviews_scheduled') }}
    -- the earliest day any learner's window can start (an as-of date is at most a day from the
    -- UTC one): the reviews' (review_date) covering index then reads only these days
    where review_date >= {{ mastery_as_of_date("'UTC'") }} - {{ var('recall_recent_days') }}
),

learner_totals as (
    -- the learner's first attempts on every topic and on the leaves of each parent topic (the
    -- recall model's learner-wide features)
    select
        schedule.*,
        sum(schedule.first_attempts) over learner as learner_first_attempts,
        sum(schedule.first_attempts_correct) over learner as learner_first_attempts_correct,
        sum(schedule.first_attempts) over learner_parent as parent_first_attempts,
        sum(schedule.first_attempts_correct) over learner_parent as parent_first_attempts_correct
    from schedule
    inner join topic_parents
        on schedule.topic_id = topic_parents.topic_id
    window
        learner as (partition by schedule.user_id),
        learner_parent as (partition by schedule.user_id, topic_parents.parent_topic_id)
),

learner_as_of_dates as (
    -- each learner's as-of date, the same expression as in fct_topic_schedule_current but read
    -- from users alone (one row per learner): recent_totals is joined on user_id, so the learners
    -- without mastery rows change nothing, and the query plans no second copy of the schedule
    select
        users.user_id,
        {{ mastery_as_of_date('users.timezone') }} as as_of_date
    from users
),

recent_totals as (
    -- the learner's first attempts in the last recall_recent_days days up to the as-of date
    select
        learner_days.user_id,
        sum(review_first_attempts.first_attempts) as recent_first_attempts,
        sum(review_first_attempts.first_attempts_correct) as recent_first_attempts_correct
    from learner_as_of_dates as learner_days
    inner join review_first_attempts
        on
            learner_days.user_id = review_first_attempts.user_id
            and review_first_attempts.review_date
            between learner_days.as_of_date - ({{ var('recall_recent_days') }} - 1) and learner_days.as_of_date
    group by learner_days.user_id
),

recall_featured as (
    -- the recall model's features, computed once per row in a lateral subquery that `limit all`
    -- keeps from being flattened: inlined, each feature's expression was copied into both recall
    -- probabilities of recalled, and every query of the view planned them twice
    select
        learner_totals.*,
        features.*
    from learner_totals
    left join recent_totals
        on learner_totals.user_id = recent_totals.user_id
    cross join lateral (  -- noqa: ST05
        select
            {{ recall_features(
                'learner_totals.learner_first_attempts', 'learner_totals.learner_first_attempts_correct',
                'coalesce(recent_totals.recent_first_attempts, 0)',
                'coalesce(recent_totals.recent_first_attempts_correct, 0)',
                'learner_totals.parent_first_attempts', 'learner_totals.parent_first_attempts_correct',
                'learner_totals.first_attempts', 'learner_totals.first_attempts_correct',
                'learner_totals.attempts', 'learner_totals.correct_attempts',
                'learner_totals.last_review_first_attempts', 'learner_totals.last_review_first_attempts_correct',
                'learner_totals.reviews', 'learner_totals.days_since_last_review'
            ) | indent(12) }}
        limit all  -- noqa: AM09
    ) as features
),

possible_as_of_dates as (
    -- a learner's as-of date (local today, or the pinned date) is the UTC date, the day before or
    -- the day after (time zone offsets stay within 16 hours): the recall model in force is looked
    -- up for these three dates, without reading any learner's rows
    select ({{ mastery_as_of_date("'UTC'") }} + day_offset)::date as as_of_date
    from generate_series(-1, 1) as day_offset
),

recall_models_in_force as (
    {{ recall_models_in_force('possible_as_of_dates', 'as_of_date', strict=false) }}
),

recalled as (
    select
        recall_featured.*,
        recall_model.model_version as recall_model_version,
        {{ recall_probability('recall_featured', 'recall_model', 'topic_offsets.offset_logit') }} as recall_probability,
        {{ recall_probability('recall_featured', 'recall_model', 'topic_offsets.offset_logit', at_last_review=true) }}
            as recall_at_last_review
    from recall_featured
    inner join recall_models_in_force as recall_model
        on recall_featured.as_of_date = recall_model.as_of_date
    left join {{ ref('stg_ml__recall_topic_offsets') }} as topic_offsets
        on
            recall_model.model_version = topic_offsets.model_version
            and recall_featured.topic_id = topic_offsets.topic_id
),

final as (
    select
        user_id,
        topic_id,
        as_of_date,
        is_current,
        reviews,
        attempts,
        accuracy,
        first_attempt_accuracy,
        easiness,
        repetitions,
        interval_days,
        last_review_date,
        next_review_date,
        days_since_last_review,
        days_until_due,
        is_due,
        retrieval_strength,
        materials_completion,
        mastery_at_last_review,
        mastery,
        mastery_confidence,
        recall_probability::numeric(14, 10) as recall_probability,
        {{ knowledge_estimate('correct_attempts', 'attempts', 'recall_probability') }}::numeric(14, 10)
            as knowledge_estimate,
        {{ knowledge_estimate('correct_attempts', 'attempts', 'recall_at_last_review') }}::numeric(14, 10)
            as knowledge_estimate_at_last_review,
        recall_model_version::text as recall_model_version
    from recalled
)

select * from final
