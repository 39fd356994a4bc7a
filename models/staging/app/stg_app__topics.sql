-- One select, no CTE: PostgreSQL never flattens a view holding a WITH clause into the query
-- reading it, which would stop joins from reaching this table's indexes (see the overview).
select
    topics.id as topic_id,
    topics.parent_id as parent_topic_id,
    topics.level as topic_level,
    topics.name as topic_name,
    topics.path as topic_path,
    topics.board_exam_weight::numeric(8, 6) as board_exam_weight,
    not exists (
        select 1
        from {{ source('app', 'topics') }} as children
        where children.parent_id = topics.id
    ) as is_leaf
from {{ source('app', 'topics') }} as topics
