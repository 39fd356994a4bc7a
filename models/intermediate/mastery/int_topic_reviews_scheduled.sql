-- One row per SM-2 review: a learner's attempts on one leaf topic on one local day, with the review's
-- quality and the schedule after it (SM-2 at topic level: macros/sm2.sql).
--
-- Incremental by arrival: attempts received since the watermark touch (user, topic) pairs;
-- each touched pair is replayed from its learner's earliest touched day, starting from the stored
-- state of the review just before that day (the fold is deterministic, so the stored prefix is what
-- a replay from the first review would give) and rewrites every review on or after it. An arrival
-- after the last review day folds forward from the stored last state; a late one, on or before the
-- last review day, replays the pair from history. Either way the rows equal a full rebuild.
-- The watermark advances from stg_app__question_attempts, the plain view of the attempts table.
-- The covering index on review_date serves topic_mastery_current, which sums every learner's
-- reviews of the last recall_recent_days days from it alone (90 ms instead of a scan of every
-- review, 800 ms at 10,000 learners x 90 days, and growing with the history).
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['user_id', 'topic_id', 'review_date'],
        on_schema_change='fail',
        indexes=[
            {'columns': ['user_id', 'topic_id', 'review_date'], 'unique': True},
            {'columns': ['state_received_at']},
        ],
        post_hook=[
            "{{ advance_watermark(['stg_app__question_attempts']) }}",
            "{{ ensure_covering_index(['review_date'], ['user_id', 'first_attempts', 'first_attempts_correct']) }}",
        ],
        grants={'select': ['ml_writer']},
    )
}}

with

history_attempts as (
    select
        user_id,
        topic_id,
        local_date,
        is_first_attempt,
        is_correct,
        quality,
        answered_at,
        received_at
    from {{ ref('int_question_attempts_scored') }}
),

{% if is_incremental() %}
    arrived_attempts as (
        select
            user_id,
            topic_id,
            local_date
        from {{ ref('int_question_attempts_scored') }}
        where {{ received_since_watermark('received_at') }}
    ),

    replay_learners as (
        -- every learner with arrivals replays each topic they touched from their earliest touched
        -- day (replaying a pair from an earlier day than needed gives the same rows)
        select
            user_id,
            min(local_date) as replay_from,
            array_agg(distinct topic_id) as topic_ids
        from arrived_attempts
        group by user_id
    ),

    replay_starts as (
        select
            replay_learners.user_id,
            touched.topic_id,
            replay_learners.replay_from
        from replay_learners
        cross join unnest(replay_learners.topic_ids) as touched (topic_id)
    ),

    prior_states as materialized (
        -- the stored review just before each replay: the state the replay folds forward from
        select {% if is_citus() %}distinct on (replay_starts.user_id, replay_starts.topic_id){% endif %}
            replay_starts.user_id,
            replay_starts.topic_id,
            stored_review.review_date as prior_review_date,
            stored_review.review_number as prior_review_number,
            stored_review.easiness as prior_easiness,
            stored_review.repetitions as prior_repetitions,
            stored_review.interval_days as prior_interval_days,
            stored_review.cumulative_attempts as prior_cumulative_attempts,
            stored_review.cumulative_correct_attempts as prior_cumulative_correct_attempts,
            stored_review.cumulative_first_attempts as prior_cumulative_first_attempts,
            stored_review.cumulative_first_attempts_correct as prior_cumulative_first_attempts_correct,
            stored_review.state_received_at as prior_state_received_at
        {%- if is_citus() %}
            -- Citus cannot plan a lateral's limit over a distributed table: the pair's earlier
            -- reviews joined on user_id (run shard by shard), the latest kept by distinct on
            from replay_starts
            inner join {{ this }} as stored_review
                on
                    replay_starts.user_id = stored_review.user_id
                    and replay_starts.topic_id = stored_review.topic_id
                    and replay_starts.replay_from > stored_review.review_date
            order by replay_starts.user_id, replay_starts.topic_id, stored_review.review_date desc
        {%- else %}
            -- one probe of the (user_id, topic_id, review_date) index per pair
            from replay_starts
            cross join lateral (
                select
                    this_model.review_date,
                    this_model.review_number,
                    this_model.easiness,
                    this_model.repetitions,
                    this_model.interval_days,
                    this_model.cumulative_attempts,
                    this_model.cumulative_correct_attempts,
                    this_model.cumulative_first_attempts,
                    this_model.cumulative_first_attempts_correct,
                    this_model.state_received_at
                from {{ this }} as this_model
                where
                    this_model.user_id = replay_starts.user_id
                    and this_model.topic_id = replay_starts.topic_id
                    and this_model.review_date < replay_starts.replay_from
                order by this_model.review_date desc
                limit 1
            ) as stored_review
        {%- endif %}
    ),

    replayed_attempts as materialized (
        -- each learner's attempts in their touched topics since the replay day, looked up once
        -- per learner through the (user_id, topic_id, UTC date) index: a lateral behind an offset-0
        -- fence, materialized, as PostgreSQL would otherwise fold the lookups into one scan of
        -- the whole history
        select
            replay_learners.user_id,
            learner_history.topic_id,
            learner_history.local_date,
            learner_history.is_first_attempt,
            learner_history.is_correct,
            learner_history.quality,
            learner_history.answered_at,
            learner_history.received_at
        from replay_learners
        cross join lateral (
            select
                history_attempts.topic_id,
                history_attempts.local_date,
                history_attempts.is_first_attempt,
                history_attempts.is_correct,
                history_attempts.quality,
                history_attempts.answered_at,
                history_attempts.received_at
            from history_attempts
            where
                history_attempts.user_id = replay_learners.user_id
                and history_attempts.topic_id = any(replay_learners.topic_ids)
                and history_attempts.local_date >= replay_learners.replay_from
                -- a local day starts at most 14 hours before its UTC midnight; stated as the
                -- UTC date the index keys (an instant bound would also draw in the BRIN index
                -- on answered_at)
                and (history_attempts.answered_at at time zone 'UTC')::date >= replay_learners.replay_from - 1
            {{ lateral_fence() }}
        ) as learner_history
    ),
{% else %}
prior_states as (
    -- a full rebuild folds every pair from the start state
    select
        null::uuid as user_id,
        null::integer as topic_id,
        null::date as prior_review_date,
        null::integer as prior_review_number,
        null::numeric as prior_easiness,
        null::integer as prior_repetitions,
        null::integer as prior_interval_days,
        null::integer as prior_cumulative_attempts,
        null::integer as prior_cumulative_correct_attempts,
        null::integer as prior_cumulative_first_attempts,
        null::integer as prior_cumulative_first_attempts_correct,
        null::timestamptz as prior_state_received_at
    where false
),

replayed_attempts as (
    select
        user_id,
        topic_id,
        local_date,
        is_first_attempt,
        is_correct,
        quality,
        answered_at,
        received_at
    from history_attempts
),
{% endif %}

day_reviews as (
    select
        user_id,
        topic_id,
        local_date as review_date,
        count(*)::integer as attempts,
        (count(*) filter (where is_correct))::integer as correct_attempts,
        (count(*) filter (where is_first_attempt))::integer as first_attempts,
        (count(*) filter (where is_first_attempt and is_correct))::integer as first_attempts_correct,
        {{ rounded_mean_quality('sum(quality)', 'count(*)') }} as quality,
        -- when the day's first answer to a never-seen question came: the recall outcome's attempt
        -- is found at that instant (int_topic_reviews_featured), without sorting every attempt
        min(answered_at) filter (where is_first_attempt) as first_fresh_answered_at,
        max(received_at) as received_at
    from replayed_attempts
    group by user_id, topic_id, local_date
),

seeded_reviews as (
    select
        day_reviews.*,
        prior_states.prior_review_date,
        prior_states.prior_interval_days,
        coalesce(prior_states.prior_review_number, 0) as prior_review_number,
        coalesce(prior_states.prior_cumulative_attempts, 0) as prior_cumulative_attempts,
        coalesce(prior_states.prior_cumulative_correct_attempts, 0) as prior_cumulative_correct_attempts,
        coalesce(prior_states.prior_cumulative_first_attempts, 0) as prior_cumulative_first_attempts,
        coalesce(prior_states.prior_cumulative_first_attempts_correct, 0)
            as prior_cumulative_first_attempts_correct,
        prior_states.prior_state_received_at,
        case
            when prior_states.user_id is not null
                then row(
                        prior_states.prior_easiness,
                        prior_states.prior_repetitions,
                        prior_states.prior_interval_days
                    )::intermediate.sm2_state
        end as seed_state
    from day_reviews
    left join prior_states
        on
            day_reviews.user_id = prior_states.user_id
            and day_reviews.topic_id = prior_states.topic_id
),

folded_reviews as (
    select
        seeded_reviews.*,
        intermediate.sm2_fold(seeded_reviews.quality, seeded_reviews.seed_state)
            over reviews_in_order as state_after,
        seeded_reviews.prior_review_number + row_number() over reviews_in_order as review_number,
        seeded_reviews.prior_cumulative_attempts + sum(seeded_reviews.attempts) over reviews_in_order
            as cumulative_attempts,
        seeded_reviews.prior_cumulative_correct_attempts
        + sum(seeded_reviews.correct_attempts) over reviews_in_order as cumulative_correct_attempts,
        seeded_reviews.prior_cumulative_first_attempts
        + sum(seeded_reviews.first_attempts) over reviews_in_order as cumulative_first_attempts,
        seeded_reviews.prior_cumulative_first_attempts_correct
        + sum(seeded_reviews.first_attempts_correct) over reviews_in_order
            as cumulative_first_attempts_correct,
        greatest(seeded_reviews.prior_state_received_at, max(seeded_reviews.received_at) over reviews_in_order)
            as state_received_at
    from seeded_reviews
    window reviews_in_order as (
        partition by seeded_reviews.user_id, seeded_reviews.topic_id
        order by seeded_reviews.review_date
        rows between unbounded preceding and current row
    )
),

with_previous_review as (
    select
        folded_reviews.*,
        coalesce(
            lag(folded_reviews.review_date) over reviews_in_order,
            folded_reviews.prior_review_date
        ) as previous_review_date,
        coalesce(
            (lag(folded_reviews.state_after) over reviews_in_order).interval_days,
            folded_reviews.prior_interval_days
        ) as previous_interval_days
    from folded_reviews
    window reviews_in_order as (
        partition by folded_reviews.user_id, folded_reviews.topic_id
        order by folded_reviews.review_date
    )
),

final as (
    select
        user_id,
        topic_id,
        review_date,
        review_number::integer as review_number,
        attempts,
        correct_attempts,
        first_attempts,
        first_attempts_correct,
        quality,
        previous_review_date,
        review_date - previous_review_date as days_since_previous_review,
        {{ retrieval_strength('review_date - previous_review_date', 'previous_interval_days') }}::numeric(14, 10)
            as retrieval_strength_before,
        (state_after).easiness::numeric(8, 2) as easiness,
        (state_after).repetitions as repetitions,
        (state_after).interval_days as interval_days,
        {{ sm2_next_review_date('review_date', '(state_after).interval_days') }} as next_review_date,
        cumulative_attempts::integer as cumulative_attempts,
        cumulative_correct_attempts::integer as cumulative_correct_attempts,
        cumulative_first_attempts::integer as cumulative_first_attempts,
        cumulative_first_attempts_correct::integer as cumulative_first_attempts_correct,
        first_fresh_answered_at,
        state_received_at
    from with_previous_review
)

select * from final
