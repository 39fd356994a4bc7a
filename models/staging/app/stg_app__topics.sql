-- One select, no CTE: PostgreSQL never flattens a view holding a WITH clause into the query
-- reading it, which would stop joins from reaching this table's indexes (see the overview).
select
    topics.id as topic_id,
    topics.parent_id as parent_topic_id,
    topics.level as topic_level,
    topics.name as topic_name,
    topics.path as topic_path,
    topics.board_exam_weight::numeric(8, 6) as board_exam_weight,
    -- an uncorrelated NOT IN is evaluated once, as a hashed set of parent ids; a correlated NOT
    -- EXISTS, inside a nested loop, scanned the topics once per attempt row
    topics.id not in (
        select children.parent_id
        from {{ source('app', 'topics') }} as children
        where children.parent_id is not null
    ) as is_leaf
from {{ source('app', 'topics') }} as topics
