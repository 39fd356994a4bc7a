-- One select, no CTE, like every staging view (see the overview).
select
    -- stored as the enum app.event_type; the warehouse reads the name
    name::text as event_type,
    description as event_type_description
from {{ source('app', 'event_types') }}
