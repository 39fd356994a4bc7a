-- One row per leaf topic and each of its ancestors (subject, system): the map the parent-topic
-- mastery rollup aggregates over. Reference data, small: rebuilt as a table each run.
with recursive

topics as (
    select
        topic_id,
        parent_topic_id,
        topic_level,
        is_leaf,
        board_exam_weight
    from {{ ref('stg_app__topics') }}
),

ancestry as (
    select
        topics.topic_id as leaf_topic_id,
        topics.board_exam_weight as leaf_board_exam_weight,
        topics.parent_topic_id as ancestor_topic_id,
        1 as distance
    from topics
    where topics.is_leaf and topics.parent_topic_id is not null
    union all
    select
        ancestry.leaf_topic_id,
        ancestry.leaf_board_exam_weight,
        topics.parent_topic_id as ancestor_topic_id,
        ancestry.distance + 1 as distance
    from ancestry
    inner join topics
        on ancestry.ancestor_topic_id = topics.topic_id
    where topics.parent_topic_id is not null
),

final as (
    select
        ancestry.leaf_topic_id,
        ancestry.leaf_board_exam_weight,
        ancestry.ancestor_topic_id,
        topics.topic_level as ancestor_level,
        ancestry.distance
    from ancestry
    inner join topics
        on ancestry.ancestor_topic_id = topics.topic_id
)

select * from final
