{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['prediction_kind', 'model_version'],
        on_schema_change='fail',
        indexes=[{'columns': ['prediction_kind', 'model_version', 'calibration_bin'], 'unique': True}],
        post_hook=[
            "{{ delete_groups_without_predictions('fct_prediction_metrics_weekly', 'weekly', 'true') }}",
            "{{ advance_watermark(['prediction_ledger']) }}",
        ],
    )
}}

-- depends_on: {{ ref('fct_prediction_metrics_weekly') }} (read by incremental runs only)
-- Grain: one row per prediction kind, model version and calibration bin (equal-width bins of the
-- predicted probability, var prediction_calibration_bins) holding at least one prediction, over
-- all time. The unique key is the version alone: a recomputed version replaces all its bins.
-- Touched versions as in fct_prediction_metrics: new ledger rows, or a count that differs from
-- the weekly mart's total (an erasure).
with

{% if is_incremental() %}
    {{ touched_model_versions() }}
{% endif %}

predictions as (
    select
        predictions.prediction_kind,
        predictions.model_version,
        predictions.prediction_id,
        predictions.predicted_for,
        predictions.probability,
        predictions.outcome,
        {{ calibration_bin('predictions.probability') }} as calibration_bin
    from {{ from_touched(
        ref('prediction_ledger'), 'predictions', 'touched_versions',
        "keyed.prediction_kind = touched_versions.prediction_kind"
        ~ " and keyed.model_version = touched_versions.model_version"
    ) }}
),

binned as (
    select
        prediction_kind,
        model_version,
        calibration_bin,
        count(*) as predictions,
        count(*) filter (where outcome) as positives,
        {{ exact_avg('probability') }} as mean_predicted,
        avg(case when outcome then 1.0 else 0.0 end) as observed_rate,
        min(predicted_for) as first_predicted_for,
        max(predicted_for) as last_predicted_for
    from predictions
    group by prediction_kind, model_version, calibration_bin
),

final as (
    select
        prediction_kind,
        model_version,
        calibration_bin,
        (calibration_bin - 1)::double precision / {{ var('prediction_calibration_bins') }} as bin_lower,
        calibration_bin::double precision / {{ var('prediction_calibration_bins') }} as bin_upper,
        predictions::integer as predictions,
        positives::integer as positives,
        mean_predicted,
        observed_rate::double precision as observed_rate,
        mean_predicted - observed_rate::double precision as calibration_gap,
        first_predicted_for,
        last_predicted_for
    from binned
)

select * from final
