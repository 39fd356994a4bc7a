-- ip_prefix is left out on purpose: no analysis needs it, so it stays in the OLTP schema only.
-- One select, no CTE: PostgreSQL never flattens a view holding a WITH clause into the query
-- reading it, which would stop joins from reaching this table's indexes (see the overview).
select
    event_id,
    user_id,
    session_id,
    -- stored as the enum app.event_type (4 bytes); the warehouse reads the name
    event_type::text as event_type,
    -- compared as the stored enum, so a filter on it does not turn every event's type into text
    event_type = 'question_attempt' as is_question_attempt,
    occurred_at,
    received_at,
    -- the log stores NULL for an event without properties; the warehouse reads an empty object
    coalesce(properties, '{}'::jsonb) as properties
from {{ source('app', 'study_events') }}
