-- One select, no CTE, like the app staging views (see the overview).
select
    user_id,
    generated_on,
    rank as recommendation_rank,
    topic_id,
    action as recommended_action,
    target_id,
    reason,
    generated_at
from {{ source('ml', 'gap_recommendations') }}
