-- One select, no CTE, like the app staging views (see the overview).
select
    model_version,
    model_kind,
    trained_at,
    trained_until,
    guess_floor,
    coefficients,
    training_rows,
    metrics
from {{ source('ml', 'recall_models') }}
