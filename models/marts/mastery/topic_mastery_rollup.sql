-- Grain: one row per learner and parent topic (subject or system) with at least one studied leaf
-- topic beneath it, as of the same date as fct_topic_schedule_current. Parents roll up by the
-- board-exam-weighted mean of their studied leaves' current mastery;
-- coverage says how much of the parent's leaf weight the learner has studied at all.
{{ config(materialized='view') }}

with

current_mastery as (
    select
        user_id,
        topic_id,
        as_of_date,
        is_current,
        attempts,
        is_due,
        retrieval_strength,
        mastery_at_last_review,
        mastery
    from {{ ref('fct_topic_schedule_current') }}
),

ancestors as (
    select
        leaf_topic_id,
        leaf_board_exam_weight,
        ancestor_topic_id,
        ancestor_level
    from {{ ref('int_topic_ancestors_flattened') }}
),

parent_weights as (
    select
        ancestor_topic_id,
        count(*) as leaf_topics,
        sum(leaf_board_exam_weight) as leaf_weight
    from ancestors
    group by ancestor_topic_id
),

studied_leaves as (
    select
        current_mastery.user_id,
        ancestors.ancestor_topic_id as topic_id,
        ancestors.ancestor_level as topic_level,
        current_mastery.as_of_date,
        current_mastery.is_current,
        ancestors.leaf_board_exam_weight as weight,
        current_mastery.attempts,
        current_mastery.is_due,
        current_mastery.retrieval_strength,
        current_mastery.mastery_at_last_review,
        current_mastery.mastery
    from current_mastery
    inner join ancestors
        on current_mastery.topic_id = ancestors.leaf_topic_id
),

rolled_up as (
    select
        user_id,
        topic_id,
        topic_level,
        as_of_date,
        is_current,
        count(*) as studied_leaf_topics,
        sum(attempts) as attempts,
        count(*) filter (where is_due) as due_leaf_topics,
        sum(weight) as studied_weight,
        sum(weight * mastery) / nullif(sum(weight), 0) as weighted_mastery,
        sum(weight * mastery_at_last_review) / nullif(sum(weight), 0) as weighted_mastery_at_last_review,
        sum(weight * retrieval_strength) / nullif(sum(weight), 0) as weighted_retrieval_strength,
        sum(weight * mastery) as weighted_mastery_sum
    from studied_leaves
    group by user_id, topic_id, topic_level, as_of_date, is_current
),

final as (
    select
        rolled_up.user_id::uuid as user_id,
        rolled_up.topic_id::integer as topic_id,
        rolled_up.topic_level::text as topic_level,
        rolled_up.as_of_date::date as as_of_date,
        rolled_up.is_current::boolean as is_current,
        parent_weights.leaf_topics::integer as leaf_topics,
        rolled_up.studied_leaf_topics::integer as studied_leaf_topics,
        rolled_up.due_leaf_topics::integer as due_leaf_topics,
        rolled_up.attempts::integer as attempts,
        (rolled_up.studied_weight / nullif(parent_weights.leaf_weight, 0))::numeric(14, 10) as coverage,
        rolled_up.weighted_retrieval_strength::numeric(14, 10) as retrieval_strength,
        rolled_up.weighted_mastery_at_last_review::numeric(14, 10) as mastery_at_last_review,
        rolled_up.weighted_mastery::numeric(14, 10) as mastery,
        (rolled_up.weighted_mastery_sum / nullif(parent_weights.leaf_weight, 0))::numeric(14, 10)
            as mastery_including_unstudied
    from rolled_up
    inner join parent_weights
        on rolled_up.topic_id = parent_weights.ancestor_topic_id
)

select * from final
