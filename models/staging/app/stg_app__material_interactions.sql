-- One select, no CTE: PostgreSQL never flattens a view holding a WITH clause into the query
-- reading it, which would stop joins from reaching this table's indexes (see the overview).
select
    event_id,
    user_id,
    session_id,
    material_id,
    interaction_type,
    progress::numeric(5, 4) as progress,
    active_seconds,
    occurred_at,
    received_at
from {{ source('app', 'material_interactions') }}
