-- One select, no CTE: PostgreSQL never flattens a view holding a WITH clause into the query
-- reading it, which would stop joins from reaching this table's indexes (see the overview).
select
    id as material_id,
    topic_id,
    kind as material_kind,
    est_minutes::numeric(6, 1) as est_minutes
from {{ source('app', 'materials') }}
