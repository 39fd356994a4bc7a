-- One select, no CTE, like the app staging views (see the overview).
select
    model_version,
    trained_at,
    model_kind,
    data_window_start,
    data_window_end,
    n_train,
    n_test,
    auc,
    brier,
    calibration,
    params,
    plot_path
from {{ source('ml', 'model_runs') }}
