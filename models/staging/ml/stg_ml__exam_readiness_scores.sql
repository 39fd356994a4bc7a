-- One select, no CTE, like the app staging views (see the overview).
select
    user_id,
    scored_at,
    model_version,
    pass_probability,
    predicted_score,
    interval_low,
    interval_high,
    top_factors
from {{ source('ml', 'exam_readiness_scores') }}
