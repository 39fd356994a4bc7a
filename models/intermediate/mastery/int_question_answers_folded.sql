-- One row per (learner, topic) with answers: the learner's latest answer to each question of the
-- topic, as three arrays in question id order. The gap recommendations read it to pick the
-- questions to review (last answered wrong, or due); before it existed they looked up each gap's
-- attempts in app.question_attempts, whose rows for one learner and topic lie on as many heap pages
-- as the pair has attempts, and at 50,000 learners x 30 days those cold reads were 44 s of a 65 s job.
--
-- Incremental by arrival, folded forward: the latest answer to a question is the one with the
-- greatest answered_at (on an exact tie, the wrong one), so merging the stored answers of a touched
-- pair with its arrived attempts gives what a rebuild from history gives, whatever order they
-- arrived in. A night reads its new attempts and the stored rows of the pairs they touch, not the
-- pairs' history.
--
-- A full refresh reads every attempt sequentially, then sorts them (the pre-hook): PostgreSQL would
-- otherwise read them through the (user_id, topic_id, UTC day) index, in the order it needs but one
-- heap page per row, 74 s against 24 s at 10,000 learners x 90 days, where the attempts no longer
-- fit in shared_buffers. A night reads few rows and keeps its index lookups.
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['user_id', 'topic_id'],
        on_schema_change='fail',
        indexes=[{'columns': ['user_id', 'topic_id'], 'unique': True}],
        pre_hook=["{% if not is_incremental() %}set local enable_indexscan = off{% endif %}"],
        post_hook=["{{ advance_watermark(['stg_app__question_attempts']) }}"],
        grants={'select': ['ml_writer']},
    )
}}

with

arrived_answers as (
    select
        user_id,
        topic_id,
        question_id,
        is_correct,
        answered_at,
        received_at
    from {{ ref('stg_app__question_attempts') }}
    where {{ received_since_watermark('received_at') }}
),

{% if is_incremental() %}
    touched_pairs as (
        select distinct
            user_id,
            topic_id
        from arrived_answers
    ),

    stored_answers as (
        select
            folded.user_id,
            folded.topic_id,
            answer.question_id,
            answer.is_correct,
            answer.answered_at,
            folded.folded_received_at as received_at
        from {{ this }} as folded
        inner join touched_pairs
            on folded.user_id = touched_pairs.user_id and folded.topic_id = touched_pairs.topic_id
        cross join lateral unnest(
            folded.question_ids, folded.last_is_correct, folded.last_answered_at
        ) as answer (question_id, is_correct, answered_at)
    ),
{% endif %}

candidate_answers as (
    -- both hold user_id, topic_id, question_id, is_correct, answered_at, received_at, in that order
    select * from arrived_answers
    {% if is_incremental() %}
        union all
        select * from stored_answers
    {% endif %}
),

latest_answers as (
    select distinct on (user_id, topic_id, question_id)
        user_id,
        topic_id,
        question_id,
        is_correct,
        answered_at,
        -- every answer folded in counts, not only the latest: a late attempt is folded too
        -- (ordered as the distinct on is, so that one sort serves both)
        max(received_at) over (
            partition by user_id, topic_id, question_id
            order by answered_at desc, is_correct asc
            rows between unbounded preceding and unbounded following
        ) as received_at
    from candidate_answers
    order by user_id asc, topic_id asc, question_id asc, answered_at desc, is_correct asc
),

answers_per_pair as (
    select
        user_id,
        topic_id,
        array_agg(question_id order by question_id) as question_ids,
        array_agg(is_correct order by question_id) as last_is_correct,
        array_agg(answered_at order by question_id) as last_answered_at,
        max(received_at) as folded_received_at
    from latest_answers
    group by user_id, topic_id
),

final as (
    select
        user_id,
        topic_id,
        question_ids,
        last_is_correct,
        last_answered_at,
        folded_received_at
    from answers_per_pair
)

select * from final
