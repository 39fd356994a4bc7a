-- Only completed requests matter to the warehouse (pending ones are carried out by the pipeline's
-- erasure step before dbt runs). user_id and the subject hash are left out: no model needs them.
-- One select, no CTE: PostgreSQL never flattens a view holding a WITH clause into the query
-- reading it, which would stop joins from reaching this table's indexes (see the overview).
select
    id as deletion_request_id,
    requested_at,
    completed_at,
    affected_from,
    affected_to,
    completed_at is not null as is_completed
from {{ source('app', 'deletion_requests') }}
