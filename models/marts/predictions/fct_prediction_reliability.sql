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

-- depends_on: {{ ref('fct_prediction_metrics_weekly') }} and {{ ref('prediction_ledger') }}
-- (read by incremental runs only)
-- Grain: one row per prediction kind, model version and calibration bin (equal-width bins of the
-- predicted probability, var prediction_calibration_bins) holding at least one prediction, over
-- all time. The unique key is the version alone: a recomputed version replaces all its bins.
-- Touched versions as in fct_prediction_metrics: new ledger rows, or a count that differs from
-- the weekly mart's total (an erasure); each is summed from its rows of fct_prediction_buckets.
with

{% if is_incremental() %}
    {{ touched_model_versions() }}
{% endif %}

buckets as (
    select
        buckets.prediction_kind,
        buckets.model_version,
        buckets.calibration_bin,
        buckets.predictions,
        buckets.positives,
        buckets.sum_probability,
        buckets.first_predicted_for,
        buckets.last_predicted_for
    from {{ from_touched(
        ref('fct_prediction_buckets'), 'buckets', 'touched_versions',
        "keyed.prediction_kind = touched_versions.prediction_kind"
        ~ " and keyed.model_version = touched_versions.model_version"
    ) }}
),

binned as (
    -- the buckets' exact sums, added up: the same figures as from the predictions themselves
    select
        prediction_kind,
        model_version,
        calibration_bin,
        sum(predictions) as predictions,
        sum(positives) as positives,
        (sum(sum_probability) / sum(predictions))::double precision as mean_predicted,
        sum(positives) * 1.0 / sum(predictions) as observed_rate,
        min(first_predicted_for) as first_predicted_for,
        max(last_predicted_for) as last_predicted_for
    from buckets
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
