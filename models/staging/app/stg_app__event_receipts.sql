-- One select, no CTE, like every staging view (see the overview). The receipt holds the event_id
-- only: the event's learner and times are its study_events row's.
select event_id
from {{ source('app', 'event_receipts') }}
