-- One select, no CTE, like the app staging views (see the overview).
select
    model_version,
    topic_id,
    offset_logit
from {{ source('ml', 'recall_topic_offsets') }}
