-- Grain: one row per topic of the taxonomy (system, subject, subtopic). The dimension BI tools
-- join mastery and gap marts to: the reporter role reads marts only, never staging.
{{ config(indexes=[{'columns': ['topic_id'], 'unique': True}]) }}

with

topics as (
    select
        topic_id,
        parent_topic_id,
        topic_level,
        topic_name,
        topic_path,
        board_exam_weight,
        is_leaf
    from {{ ref('stg_app__topics') }}
),

final as (
    select
        leaf.topic_id,
        leaf.parent_topic_id,
        leaf.topic_level,
        leaf.topic_name,
        leaf.topic_path,
        leaf.board_exam_weight,
        leaf.is_leaf,
        coalesce(grandparent.topic_name, parent.topic_name, leaf.topic_name) as system_name,
        case leaf.topic_level
            when 'subtopic' then parent.topic_name
            when 'subject' then leaf.topic_name
        end as subject_name
    from topics as leaf
    left join topics as parent on leaf.parent_topic_id = parent.topic_id
    left join topics as grandparent on parent.parent_topic_id = grandparent.topic_id
)

select * from final
