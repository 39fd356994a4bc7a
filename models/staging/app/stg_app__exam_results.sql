-- One select, no CTE: PostgreSQL never flattens a view holding a WITH clause into the query
-- reading it, which would stop joins from reaching this table's indexes (see the overview).
select
    event_id,
    user_id,
    exam_kind,
    taken_at,
    scaled_score,
    passed,
    received_at
from {{ source('app', 'exam_results') }}
