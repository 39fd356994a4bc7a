-- One select, no CTE: PostgreSQL never flattens a view holding a WITH clause into the query
-- reading it, which would stop joins from reaching this table's indexes (see the overview).
select
    id as session_id,
    user_id,
    started_at,
    last_activity_at,
    ended_at,
    end_reason,
    ended_at is null as is_open
from {{ source('app', 'study_sessions') }}
