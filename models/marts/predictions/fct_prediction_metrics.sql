{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['prediction_kind', 'model_version'],
        on_schema_change='fail',
        indexes=[{'columns': ['prediction_kind', 'model_version'], 'unique': True}],
        post_hook=[
            "{{ delete_groups_without_predictions('fct_prediction_metrics_weekly', 'weekly', 'true') }}",
            "{{ advance_watermark(['prediction_ledger']) }}",
        ],
    )
}}

-- depends_on: {{ ref('fct_prediction_metrics_weekly') }} and {{ ref('prediction_ledger') }}
-- (read by incremental runs only)
-- Grain: one row per prediction kind and model version, over all its scored predictions.
-- Touched versions: those of ledger rows received since the watermark, and those whose count
-- differs from their weeks' total in fct_prediction_metrics_weekly (which an erasure changed);
-- each is recomputed from its buckets in fct_prediction_buckets (a few thousand rows a version,
-- however many predictions it has: the version in force before the first fit scored the whole
-- history, and late outcomes touch it night after night).
with

{% if is_incremental() %}
    {{ touched_model_versions() }}
{% endif %}

buckets as (
    select
        buckets.prediction_kind,
        buckets.model_version,
        buckets.calibration_bin,
        buckets.logit_bucket,
        buckets.predictions,
        buckets.positives,
        buckets.first_predicted_for,
        buckets.last_predicted_for,
        buckets.sum_probability,
        buckets.sum_log_loss,
        buckets.sum_brier_score,
        buckets.sum_logit
    from {{ from_touched(
        ref('fct_prediction_buckets'), 'buckets', 'touched_versions',
        "keyed.prediction_kind = touched_versions.prediction_kind"
        ~ " and keyed.model_version = touched_versions.model_version"
    ) }}
),

metrics as (
    {{ prediction_metrics_from_buckets('buckets', ['prediction_kind', 'model_version']) }}
),

final as (
    select
        prediction_kind,
        model_version,
        first_predicted_for,
        last_predicted_for,
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
