-- One select, no CTE: PostgreSQL never flattens a view holding a WITH clause into the query
-- reading it, which would stop joins from reaching this table's indexes (see the overview).
select
    from_topic_id,
    to_topic_id,
    kind as relationship_kind
from {{ source('app', 'topic_relationships') }}
