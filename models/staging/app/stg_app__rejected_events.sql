-- One select, no CTE, like every staging view (see the overview). The payload is left out.
select
    id as rejected_event_id,
    received_at,
    user_id,
    payload_bytes,
    reason
from {{ source('app', 'rejected_events') }}
