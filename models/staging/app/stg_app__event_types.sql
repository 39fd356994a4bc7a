-- One select, no CTE, like every staging view (see the overview).
select
    name as event_type,
    description as event_type_description
from {{ source('app', 'event_types') }}
