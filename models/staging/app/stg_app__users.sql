-- One select, no CTE: PostgreSQL never flattens a view holding a WITH clause into the query
-- reading it, which would stop joins from reaching this table's indexes (see the overview).
select
    id as user_id,
    created_at,
    timezone,
    cohort,
    exam_target,
    exam_date
from {{ source('app', 'users') }}
