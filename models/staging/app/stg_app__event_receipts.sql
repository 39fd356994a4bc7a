-- One select, no CTE, like every staging view (see the overview).
select
    event_id,
    user_id,
    occurred_at
from {{ source('app', 'event_receipts') }}
