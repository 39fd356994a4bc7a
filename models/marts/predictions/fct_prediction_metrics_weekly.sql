{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['prediction_kind', 'model_version', 'week_start'],
        on_schema_change='fail',
        indexes=[{'columns': ['prediction_kind', 'model_version', 'week_start'], 'unique': True}],
        post_hook=[
            "{{ delete_groups_without_predictions('prediction_ledger', 'ledger',
                'ledger.predicted_for >= metrics.week_start and ledger.predicted_for < metrics.week_start + 7') }}",
            "{{ advance_watermark(['prediction_ledger']) }}",
            "{{ advance_erasure_watermark() }}",
        ],
    )
}}

-- Grain: one row per prediction kind, model version and ISO week (Monday to Sunday) of
-- predicted_for with at least one scored prediction. Touched weeks: the (kind, version, week)
-- of ledger rows received since the watermark, and every week of this mart inside the activity
-- span of an erasure since the erasure watermark; each is recomputed from the ledger rows of that
-- week alone, so a night costs what its new predictions cost, not the whole ledger.
with

{% if is_incremental() %}
    {{ touched_prediction_weeks() }}
{% endif %}

predictions as (
    select
        predictions.prediction_kind,
        predictions.model_version,
        predictions.week_start,
        predictions.prediction_id,
        predictions.predicted_for,
        predictions.probability,
        predictions.outcome
    from {{ from_touched(
        ref('prediction_ledger'), 'predictions', 'touched_weeks',
        "keyed.prediction_kind = touched_weeks.prediction_kind"
        ~ " and keyed.model_version = touched_weeks.model_version"
        ~ " and keyed.predicted_for >= touched_weeks.week_start"
        ~ " and keyed.predicted_for < touched_weeks.week_start + 7"
    ) }}
),

metrics as (
    {{ prediction_metrics('predictions', ['prediction_kind', 'model_version', 'week_start']) }}
),

final as (
    select
        prediction_kind,
        model_version,
        week_start,
        to_char(week_start, 'IYYY-"W"IW') as iso_week,
        predictions::integer as predictions,
        positives::integer as positives,
        mean_probability,
        observed_rate::double precision as observed_rate,
        log_loss,
        brier_score,
        auc::double precision as auc,
        expected_calibration_error::double precision as expected_calibration_error,
        calibration_intercept,
        calibration_slope,
        calibration_converged
    from metrics
)

select * from final
