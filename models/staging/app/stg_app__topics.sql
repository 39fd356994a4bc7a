with

source as (
    select
        id,
        parent_id,
        level,
        name,
        path,
        board_exam_weight
    from {{ source('app', 'topics') }}
),

parents as (
    select distinct parent_id
    from source
    where parent_id is not null
),

final as (
    select
        source.id as topic_id,
        source.parent_id as parent_topic_id,
        source.level as topic_level,
        source.name as topic_name,
        source.path as topic_path,
        source.board_exam_weight::numeric(8, 6) as board_exam_weight,
        parents.parent_id is null as is_leaf
    from source
    left join parents
        on source.id = parents.parent_id
)

select * from final
