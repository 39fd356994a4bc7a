-- Grain: one row per learner and leaf topic the learner has answered at least one question of.
-- The SM-2 state after the learner's last review of the topic, the attempt counts, the materials
-- completion and the mastery score as of the last review day (retrieval strength 1 on that day;
-- topic_mastery_current applies the forgetting curve as of a later date).
--
-- Incremental by arrival: a pair is recomputed when its review history changed (any
-- review row whose state depends on an attempt received since the watermark: the history model
-- folds new days forward and replays late ones) or when one of its materials saw a new interaction.
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['user_id', 'topic_id'],
        on_schema_change='fail',
        indexes=[{'columns': ['user_id', 'topic_id'], 'unique': True}],
        post_hook=[
            "{{ advance_watermark(['int_topic_reviews_scheduled'], column='state_received_at') }}",
            "{{ advance_watermark(['stg_app__material_interactions']) }}",
        ],
    )
}}

with

reviews as (
    select
        user_id,
        topic_id,
        review_date,
        review_number,
        quality,
        easiness,
        repetitions,
        interval_days,
        next_review_date,
        cumulative_attempts,
        cumulative_correct_attempts,
        first_attempts,
        first_attempts_correct,
        cumulative_first_attempts,
        cumulative_first_attempts_correct
    from {{ ref('int_topic_reviews_scheduled') }}
),

materials as (
    select
        material_id,
        topic_id
    from {{ ref('stg_app__materials') }}
),

completions as (
    select
        user_id,
        material_id
    from {{ ref('stg_app__material_interactions') }}
    where interaction_type = 'complete'
),

{% if is_incremental() %}
    changed_reviews as (
        select
            user_id,
            topic_id
        from {{ ref('int_topic_reviews_scheduled') }}
        where {{ received_since_watermark('state_received_at') }}
    ),

    arrived_interactions as (
        select
            user_id,
            material_id
        from {{ ref('stg_app__material_interactions') }}
        where {{ received_since_watermark('received_at') }}
    ),

    touched_pairs as (
        select
            user_id,
            topic_id
        from changed_reviews
        union
        select
            arrived_interactions.user_id,
            materials.topic_id
        from arrived_interactions
        inner join materials
            on arrived_interactions.material_id = materials.material_id
    ),
{% endif %}

{% if is_incremental() %}
    latest_reviews as (
        -- the last review of each touched pair, one index lookup each
        select
            touched_pairs.user_id,
            touched_pairs.topic_id,
            last_review.review_date,
            last_review.review_number,
            last_review.quality,
            last_review.easiness,
            last_review.repetitions,
            last_review.interval_days,
            last_review.next_review_date,
            last_review.first_attempts,
            last_review.first_attempts_correct,
            last_review.cumulative_attempts,
            last_review.cumulative_correct_attempts,
            last_review.cumulative_first_attempts,
            last_review.cumulative_first_attempts_correct
        from touched_pairs
        cross join lateral (
            select
                reviews.review_date,
                reviews.review_number,
                reviews.quality,
                reviews.easiness,
                reviews.repetitions,
                reviews.interval_days,
                reviews.next_review_date,
                reviews.first_attempts,
                reviews.first_attempts_correct,
                reviews.cumulative_attempts,
                reviews.cumulative_correct_attempts,
                reviews.cumulative_first_attempts,
                reviews.cumulative_first_attempts_correct
            from reviews
            where
                reviews.user_id = touched_pairs.user_id
                and reviews.topic_id = touched_pairs.topic_id
            order by reviews.review_date desc
            limit 1
        ) as last_review
    ),
{% else %}
    latest_reviews as (
        select distinct on (reviews.user_id, reviews.topic_id)
            reviews.user_id,
            reviews.topic_id,
            reviews.review_date,
            reviews.review_number,
            reviews.quality,
            reviews.easiness,
            reviews.repetitions,
            reviews.interval_days,
            reviews.next_review_date,
            reviews.first_attempts,
            reviews.first_attempts_correct,
            reviews.cumulative_attempts,
            reviews.cumulative_correct_attempts,
            reviews.cumulative_first_attempts,
            reviews.cumulative_first_attempts_correct
        from reviews
        order by reviews.user_id asc, reviews.topic_id asc, reviews.review_date desc
    ),
{% endif %}

topic_materials as (
    select
        topic_id,
        count(*)::integer as materials_total
    from materials
    group by topic_id
),

completed_materials as (
    select
        completions.user_id,
        materials.topic_id,
        count(distinct completions.material_id)::integer as materials_completed
    from completions
    inner join materials
        on completions.material_id = materials.material_id
    group by completions.user_id, materials.topic_id
),

measured as (
    select
        latest_reviews.user_id,
        latest_reviews.topic_id,
        latest_reviews.review_number as reviews,
        latest_reviews.cumulative_attempts as attempts,
        latest_reviews.cumulative_correct_attempts as correct_attempts,
        latest_reviews.cumulative_first_attempts as first_attempts,
        latest_reviews.cumulative_first_attempts_correct as first_attempts_correct,
        latest_reviews.quality as last_review_quality,
        latest_reviews.first_attempts as last_review_first_attempts,
        latest_reviews.first_attempts_correct as last_review_first_attempts_correct,
        latest_reviews.easiness,
        latest_reviews.repetitions,
        latest_reviews.interval_days,
        latest_reviews.review_date as last_review_date,
        latest_reviews.next_review_date,
        coalesce(topic_materials.materials_total, 0) as materials_total,
        coalesce(completed_materials.materials_completed, 0) as materials_completed,
        {{ smoothed_accuracy('latest_reviews.cumulative_correct_attempts', 'latest_reviews.cumulative_attempts') }}
            as accuracy_smoothed,
        {{ smoothed_accuracy(
            'latest_reviews.cumulative_first_attempts_correct', 'latest_reviews.cumulative_first_attempts'
        ) }} as first_attempt_accuracy_smoothed
    from latest_reviews
    left join topic_materials
        on latest_reviews.topic_id = topic_materials.topic_id
    left join completed_materials
        on
            latest_reviews.user_id = completed_materials.user_id
            and latest_reviews.topic_id = completed_materials.topic_id
),

with_completion as (
    select
        measured.*,
        measured.materials_total > 0 as has_materials,
        case
            when measured.materials_total > 0
                then measured.materials_completed::numeric / measured.materials_total
            else 0::numeric
        end as materials_completion
    from measured
),

final as (
    select
        user_id::uuid as user_id,
        topic_id::integer as topic_id,
        reviews::integer as reviews,
        attempts::integer as attempts,
        correct_attempts::integer as correct_attempts,
        (correct_attempts::numeric / nullif(attempts, 0))::numeric(14, 10) as accuracy,
        accuracy_smoothed::numeric(14, 10) as accuracy_smoothed,
        first_attempts::integer as first_attempts,
        first_attempts_correct::integer as first_attempts_correct,
        (first_attempts_correct::numeric / nullif(first_attempts, 0))::numeric(14, 10) as first_attempt_accuracy,
        first_attempt_accuracy_smoothed::numeric(14, 10) as first_attempt_accuracy_smoothed,
        last_review_quality::integer as last_review_quality,
        last_review_first_attempts::integer as last_review_first_attempts,
        last_review_first_attempts_correct::integer as last_review_first_attempts_correct,
        easiness::numeric(8, 2) as easiness,
        repetitions::integer as repetitions,
        interval_days::integer as interval_days,
        last_review_date::date as last_review_date,
        next_review_date::date as next_review_date,
        materials_total::integer as materials_total,
        materials_completed::integer as materials_completed,
        has_materials::boolean as has_materials,
        materials_completion::numeric(14, 10) as materials_completion,
        {{ mastery_score(
            'first_attempt_accuracy_smoothed', 'accuracy_smoothed', '1', 'materials_completion', 'has_materials'
        ) }}::numeric(14, 10) as mastery_at_last_review,
        {{ mastery_confidence('attempts') }}::numeric(14, 10) as mastery_confidence
    from with_completion
)

select * from final
