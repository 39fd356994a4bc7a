-- One row per review (learner, leaf topic, local day with attempts): what was known before the
-- review day (the recall model's features, from the pair's earlier reviews and the learner's first
-- attempts on earlier days: on every topic, on the topic's siblings, and in the last few days) and
-- what happened (the day's first attempt at a
-- question the learner had never seen: its event and whether it was correct). The recall model is
-- fitted on these rows, and the prediction ledger scores them (int_recall_predictions_scored).
--
-- Incremental by arrival: a learner with reviews changed since the watermark (the scheduled
-- reviews' state_received_at) has every review from their earliest changed day on recomputed, in
-- every topic, since the learner-wide counts of later days include the changed ones. The windows
-- then cover only the reviews from recall_recent_days before that day; the earlier ones enter as
-- sums, so a night's cost follows the recomputed days, not the learner's history. Equals a full
-- rebuild. features_received_at, the newest arrival among the learner's reviews up to the row's day,
-- tells the ledger which rows changed.
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['user_id', 'topic_id', 'review_date'],
        on_schema_change='fail',
        indexes=[
            {'columns': ['user_id', 'topic_id', 'review_date'], 'unique': True},
            {'columns': ['features_received_at']},
        ],
        post_hook=["{{ advance_watermark(['int_topic_reviews_scheduled'], column='state_received_at') }}"],
        grants={'select': ['ml_writer']},
    )
}}

-- the localized attempts are read on an incremental run only, and dbt records the refs of the
-- full build it parses: stated here, they stay upstream of this model in the DAG
-- depends_on: {{ ref('int_question_attempts_localized') }}

with

reviews as not materialized (
    -- read twice on an incremental run (the learners to recompute, then each one's history):
    -- inlined, each learner's history is an index lookup; materialized, every learner scanned a
    -- copy of the whole table (quadratic: 420 s of a nightly run at 10,000 learners, 17 s inlined)
    select
        user_id,
        topic_id,
        review_date,
        review_number,
        attempts,
        correct_attempts,
        first_attempts,
        first_attempts_correct,
        previous_review_date,
        days_since_previous_review,
        cumulative_attempts,
        cumulative_correct_attempts,
        cumulative_first_attempts,
        cumulative_first_attempts_correct,
        first_fresh_answered_at,
        state_received_at
    from {{ ref('int_topic_reviews_scheduled') }}
),

topic_parents as (
    select
        topic_id,
        parent_topic_id
    from {{ ref('stg_app__topics') }}
),

{% if is_incremental() %}
    fresh_attempts as (
        -- every topic's (reviews are of leaf topics, and only those are joined): without the leaf
        -- filter, a learner's lookup below reads their attempts of the days through the (user_id,
        -- UTC date) index, where with it PostgreSQL probed the (user_id, topic_id, UTC date) index
        -- once per leaf topic (2.3 s of 7.5 s at 10,000 learners x 90 days, nightly)
        select
            event_id,
            user_id,
            topic_id,
            local_date,
            is_correct,
            answered_at
        from {{ ref('int_question_attempts_localized') }}
        where is_first_attempt
    ),

    recompute_learners as (
        -- the windows start recall_recent_days before a learner's first recomputed day
        select
            user_id,
            min(review_date) as recompute_from,
            min(review_date) - {{ var('recall_recent_days') }} as window_from
        from reviews
        where {{ received_since_watermark('state_received_at') }}
        group by user_id
    ),

    learner_reviews as materialized (
        -- every review of each learner to recompute (the learner-wide counts need the history),
        -- looked up per learner through the (user_id, topic_id, review_date) index
        select learner_history.*
        from recompute_learners
        cross join lateral (
            select reviews.*
            from reviews
            where reviews.user_id = recompute_learners.user_id
            {{ lateral_fence() }}
        ) as learner_history
    ),

    folded_reviews as (
        -- the reviews before the windows start: summed, not windowed (a learner's history
        -- grows with every night, the recomputed days do not)
        select
            learner_reviews.user_id,
            learner_reviews.topic_id,
            topic_parents.parent_topic_id,
            learner_reviews.review_date,
            learner_reviews.first_attempts,
            learner_reviews.first_attempts_correct,
            learner_reviews.state_received_at
        from learner_reviews
        inner join recompute_learners
            on learner_reviews.user_id = recompute_learners.user_id
        inner join topic_parents
            on learner_reviews.topic_id = topic_parents.topic_id
        where learner_reviews.review_date < recompute_learners.window_from
    ),

    window_reviews as (
        select learner_reviews.*
        from learner_reviews
        inner join recompute_learners
            on learner_reviews.user_id = recompute_learners.user_id
        where learner_reviews.review_date >= recompute_learners.window_from
    ),

    day_fresh_attempts as materialized (
        -- the learners' first attempts since the first recomputed day, through the attempts'
        -- (user_id, UTC date) index. The bound is stated as a UTC date only: stated also as an
        -- instant, it let the planner AND that index with the BRIN on answered_at, a scan of
        -- the whole BRIN per learner (4.4 ms each; 96 s of a 127 s night at 50,000 learners)
        select learner_attempts.*
        from recompute_learners
        cross join lateral (
            select fresh_attempts.*
            from fresh_attempts
            where
                fresh_attempts.user_id = recompute_learners.user_id
                and fresh_attempts.local_date >= recompute_learners.recompute_from
                -- a local day starts at most 14 hours before its UTC midnight
                and (fresh_attempts.answered_at at time zone 'UTC')::date
                >= recompute_learners.recompute_from - 1
            {{ lateral_fence() }}
        ) as learner_attempts
    ),

    outcome_reviews as materialized (
        -- the recomputed days' reviews, kept apart so that the outcome join below reads only
        -- them (inlined, it hashed every review of the learners and filtered the days after)
        select
            learner_reviews.user_id,
            learner_reviews.topic_id,
            learner_reviews.review_date,
            learner_reviews.first_fresh_answered_at
        from learner_reviews
        inner join recompute_learners
            on learner_reviews.user_id = recompute_learners.user_id
        where learner_reviews.review_date >= recompute_learners.recompute_from
    ),
{% else %}
window_reviews as (
    select * from reviews
),

folded_reviews as (
    -- a full rebuild windows every review: nothing is folded
    select
        reviews.user_id,
        reviews.topic_id,
        topic_parents.parent_topic_id,
        reviews.review_date,
        reviews.first_attempts,
        reviews.first_attempts_correct,
        reviews.state_received_at
    from reviews
    inner join topic_parents
        on reviews.topic_id = topic_parents.topic_id
    where false
),

day_fresh_attempts as (
    -- a full rebuild needs no local day: the first attempts come straight from staging, without
    -- the join to the learners that localizing them takes (28.0 -> 26.3 s for the model in a full
    -- rebuild at 10,000 learners x 90 days)
    select
        event_id,
        user_id,
        topic_id,
        is_correct,
        answered_at
    from {{ ref('stg_app__question_attempts') }}
    where is_first_attempt
),

outcome_reviews as (
    select
        user_id,
        topic_id,
        review_date,
        first_fresh_answered_at
    from reviews
),
{% endif %}

folded_learners as materialized (
    select
        user_id,
        sum(first_attempts) as first_attempts,
        sum(first_attempts_correct) as first_attempts_correct,
        max(state_received_at) as state_received_at
    from folded_reviews
    group by user_id
),

folded_parents as materialized (
    select
        user_id,
        parent_topic_id,
        sum(first_attempts) as first_attempts,
        sum(first_attempts_correct) as first_attempts_correct
    from folded_reviews
    group by user_id, parent_topic_id
),

folded_pairs as materialized (
    -- each pair's last review before the windows (what lag finds for its first one after)
    select distinct on (user_id, topic_id)
        user_id,
        topic_id,
        first_attempts,
        first_attempts_correct
    from folded_reviews
    order by user_id asc, topic_id asc, review_date desc
),

windowed_reviews as (
    -- every count a row needs, by window over the learner's reviews (no self-join, so no plan
    -- can turn it into a nested loop over unanalyzed rows): the learner's first attempts on
    -- earlier days, on the last recall_recent_days of them and on the topic's siblings; the pair's
    -- previous review day; and the newest arrival among the learner's reviews up to that day (what
    -- the row's values rest on). An incremental run windows the reviews from recall_recent_days
    -- before its first recomputed day and adds the folded sums of the reviews before them.
    select
        window_reviews.*,
        coalesce(folded_learners.first_attempts, 0)
        + coalesce(sum(window_reviews.first_attempts) over learner_earlier, 0) as learner_first_attempts,
        coalesce(folded_learners.first_attempts_correct, 0)
        + coalesce(sum(window_reviews.first_attempts_correct) over learner_earlier, 0)
            as learner_first_attempts_correct,
        coalesce(sum(window_reviews.first_attempts) over learner_recent, 0) as recent_first_attempts,
        coalesce(sum(window_reviews.first_attempts_correct) over learner_recent, 0)
            as recent_first_attempts_correct,
        coalesce(folded_parents.first_attempts, 0)
        + coalesce(sum(window_reviews.first_attempts) over parent_earlier, 0) as parent_first_attempts,
        coalesce(folded_parents.first_attempts_correct, 0)
        + coalesce(sum(window_reviews.first_attempts_correct) over parent_earlier, 0)
            as parent_first_attempts_correct,
        coalesce(lag(window_reviews.first_attempts) over pair_reviews, folded_pairs.first_attempts, 0)
            as last_review_first_attempts,
        coalesce(lag(window_reviews.first_attempts_correct) over pair_reviews, folded_pairs.first_attempts_correct, 0)
            as last_review_first_attempts_correct,
        greatest(folded_learners.state_received_at, max(window_reviews.state_received_at) over learner_so_far)
            as features_received_at
    from window_reviews
    inner join topic_parents
        on window_reviews.topic_id = topic_parents.topic_id
    left join folded_learners
        on window_reviews.user_id = folded_learners.user_id
    left join folded_parents
        on
            window_reviews.user_id = folded_parents.user_id
            and topic_parents.parent_topic_id = folded_parents.parent_topic_id
    left join folded_pairs
        on
            window_reviews.user_id = folded_pairs.user_id
            and window_reviews.topic_id = folded_pairs.topic_id
    window
        learner_earlier as (
            partition by window_reviews.user_id
            order by window_reviews.review_date
            range between unbounded preceding and interval '1 day' preceding
        ),
        learner_recent as (
            partition by window_reviews.user_id
            order by window_reviews.review_date
            range between interval '{{ var("recall_recent_days") }} days' preceding and interval '1 day' preceding
        ),
        parent_earlier as (
            partition by window_reviews.user_id, topic_parents.parent_topic_id
            order by window_reviews.review_date
            range between unbounded preceding and interval '1 day' preceding
        ),
        learner_so_far as (
            partition by window_reviews.user_id
            order by window_reviews.review_date
            range between unbounded preceding and current row
        ),
        pair_reviews as (
            partition by window_reviews.user_id, window_reviews.topic_id
            order by window_reviews.review_date
        )
),

recomputed_reviews as (
    select windowed_reviews.*
    from windowed_reviews
    {% if is_incremental() %}
        inner join recompute_learners
            on
                windowed_reviews.user_id = recompute_learners.user_id
                and windowed_reviews.review_date >= recompute_learners.recompute_from
    {% endif %}
),

first_fresh_attempts as (
    -- the outcome: each review day's first answer to a question never seen before. The scheduled
    -- review keeps that answer's instant (first_fresh_answered_at), so the first attempts are
    -- joined on learner, topic and instant, the smaller event id winning an exact tie (sorting
    -- every first attempt by day took 23 s of a 40 s full build at 10,000 learners x 90 days).
    -- Ordered by learner and day, as the windows above leave the reviews, so that the join in
    -- counted merges on both (ordered by topic first, it merged on the learner alone).
    select distinct on (outcome_reviews.user_id, outcome_reviews.review_date, outcome_reviews.topic_id)
        outcome_reviews.user_id,
        outcome_reviews.topic_id,
        outcome_reviews.review_date,
        day_fresh_attempts.event_id,
        day_fresh_attempts.is_correct
    from outcome_reviews
    inner join day_fresh_attempts
        on
            outcome_reviews.user_id = day_fresh_attempts.user_id
            and outcome_reviews.topic_id = day_fresh_attempts.topic_id
            and outcome_reviews.first_fresh_answered_at = day_fresh_attempts.answered_at
    order by
        outcome_reviews.user_id asc,
        outcome_reviews.review_date asc,
        outcome_reviews.topic_id asc,
        day_fresh_attempts.event_id asc
),

counted as (
    select
        recomputed_reviews.user_id,
        recomputed_reviews.topic_id,
        recomputed_reviews.review_date,
        recomputed_reviews.review_number - 1 as prior_reviews,
        recomputed_reviews.days_since_previous_review,
        recomputed_reviews.learner_first_attempts,
        recomputed_reviews.learner_first_attempts_correct,
        recomputed_reviews.recent_first_attempts,
        recomputed_reviews.recent_first_attempts_correct,
        recomputed_reviews.parent_first_attempts,
        recomputed_reviews.parent_first_attempts_correct,
        recomputed_reviews.cumulative_first_attempts - recomputed_reviews.first_attempts as pair_first_attempts,
        recomputed_reviews.cumulative_first_attempts_correct - recomputed_reviews.first_attempts_correct
            as pair_first_attempts_correct,
        recomputed_reviews.cumulative_attempts - recomputed_reviews.attempts as pair_attempts,
        recomputed_reviews.cumulative_correct_attempts - recomputed_reviews.correct_attempts
            as pair_correct_attempts,
        recomputed_reviews.last_review_first_attempts,
        recomputed_reviews.last_review_first_attempts_correct,
        first_fresh_attempts.event_id as outcome_event_id,
        first_fresh_attempts.is_correct as outcome_correct,
        recomputed_reviews.features_received_at
    from recomputed_reviews
    left join first_fresh_attempts
        on
            recomputed_reviews.user_id = first_fresh_attempts.user_id
            and recomputed_reviews.topic_id = first_fresh_attempts.topic_id
            and recomputed_reviews.review_date = first_fresh_attempts.review_date
),

featured as (
    select
        counted.*,
        {{ recall_features(
            'counted.learner_first_attempts', 'counted.learner_first_attempts_correct',
            'counted.recent_first_attempts', 'counted.recent_first_attempts_correct',
            'counted.parent_first_attempts', 'counted.parent_first_attempts_correct',
            'counted.pair_first_attempts', 'counted.pair_first_attempts_correct',
            'counted.pair_attempts', 'counted.pair_correct_attempts',
            'counted.last_review_first_attempts', 'counted.last_review_first_attempts_correct',
            'counted.prior_reviews', 'counted.days_since_previous_review'
        ) | indent(8) }}
    from counted
),

final as (
    select
        user_id::uuid as user_id,
        topic_id::integer as topic_id,
        review_date::date as review_date,
        prior_reviews::integer as prior_reviews,
        days_since_previous_review::integer as days_since_previous_review,
        learner_first_attempts::integer as learner_first_attempts,
        learner_first_attempts_correct::integer as learner_first_attempts_correct,
        recent_first_attempts::integer as recent_first_attempts,
        recent_first_attempts_correct::integer as recent_first_attempts_correct,
        parent_first_attempts::integer as parent_first_attempts,
        parent_first_attempts_correct::integer as parent_first_attempts_correct,
        pair_first_attempts::integer as pair_first_attempts,
        pair_first_attempts_correct::integer as pair_first_attempts_correct,
        pair_attempts::integer as pair_attempts,
        pair_correct_attempts::integer as pair_correct_attempts,
        last_review_first_attempts::integer as last_review_first_attempts,
        last_review_first_attempts_correct::integer as last_review_first_attempts_correct,
        {%- for name in recall_feature_names().split(',') %}
            {{ name }}::double precision as {{ name }},
        {%- endfor %}
        outcome_event_id::uuid as outcome_event_id,
        outcome_correct::boolean as outcome_correct,
        features_received_at
    from featured
)

select * from final
