-- Grain: one row per learner and studied leaf topic (as topic_mastery), evaluated as of a date:
-- var mastery_as_of_date when set, else today in the learner's own timezone. A view, so "today"
-- moves on its own; it applies the forgetting curve to the state topic_mastery stores:
-- retrieval_strength = retrieval_base ^ (days since the last review / interval), and the recall
-- model in force on that date (macros/recall.sql) for recall_probability and knowledge_estimate.
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

users as not materialized (
    -- read by two steps below, so PostgreSQL would materialize it: a whole copy of every learner
    -- that a lookup of one learner then scans (50,000 rows per lookup at 50,000 learners; the gap
    -- recommendations look a prerequisite up per gap). Not materialized, a filter on user_id
    -- reaches the users' primary key.
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

daily_first_attempts as (
    select
        user_id,
        local_date,
        first_attempts,
        first_attempts_correct
    from {{ ref('daily_user_stats') }}
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

learner_totals as (
    -- the learner's first attempts on every topic and on the leaves of each parent topic (the
    -- recall model's learner-wide features)
    select
        decayed.*,
        sum(decayed.first_attempts) over learner as learner_first_attempts,
        sum(decayed.first_attempts_correct) over learner as learner_first_attempts_correct,
        sum(decayed.first_attempts) over learner_parent as parent_first_attempts,
        sum(decayed.first_attempts_correct) over learner_parent as parent_first_attempts_correct
    from decayed
    inner join topic_parents
        on decayed.topic_id = topic_parents.topic_id
    window
        learner as (partition by decayed.user_id),
        learner_parent as (partition by decayed.user_id, topic_parents.parent_topic_id)
),

learner_as_of_dates as (
    -- each learner's as-of date, the same expression as in dated but read from users alone (one
    -- row per learner): recent_totals is joined on user_id, so the learners without mastery rows
    -- change nothing, and the query plans no second copy of dated's join
    select
        users.user_id,
        {{ mastery_as_of_date('users.timezone') }} as as_of_date
    from users
),

recent_totals as (
    -- the learner's first attempts in the last recall_recent_days days up to the as-of date
    select
        learner_days.user_id,
        sum(daily_first_attempts.first_attempts) as recent_first_attempts,
        sum(daily_first_attempts.first_attempts_correct) as recent_first_attempts_correct
    from learner_as_of_dates as learner_days
    inner join daily_first_attempts
        on
            learner_days.user_id = daily_first_attempts.user_id
            and daily_first_attempts.local_date
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
        user_id::uuid as user_id,
        topic_id::integer as topic_id,
        as_of_date::date as as_of_date,
        is_current::boolean as is_current,
        reviews::integer as reviews,
        attempts::integer as attempts,
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
        mastery_confidence::numeric(14, 10) as mastery_confidence,
        recall_probability::numeric(14, 10) as recall_probability,
        {{ knowledge_estimate('correct_attempts', 'attempts', 'recall_probability') }}::numeric(14, 10)
            as knowledge_estimate,
        {{ knowledge_estimate('correct_attempts', 'attempts', 'recall_at_last_review') }}::numeric(14, 10)
            as knowledge_estimate_at_last_review,
        recall_model_version::text as recall_model_version
    from recalled
)

select * from final
