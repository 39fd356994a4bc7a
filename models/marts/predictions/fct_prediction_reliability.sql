{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['prediction_kind', 'model_version'],
        on_schema_change='fail',
        indexes=[{'columns': ['prediction_kind', 'model_version', 'calibration_bin'], 'unique': True}],
        post_hook=[
            "{{ delete_groups_without_predictions('true') }}",
            "{{ advance_watermark(['prediction_ledger']) }}",
            "{{ advance_erasure_watermark() }}",
        ],
    )
}}

-- Grain: one row per prediction kind, model version and calibration bin (equal-width bins of the
-- predicted probability, var prediction_calibration_bins) holding at least one prediction, over
-- all time. The unique key is the version alone: a recomputed version replaces all its bins.
-- Touched versions as in fct_prediction_metrics (each bin keeps the span of its days, so an
-- erasure finds the versions it may have changed).
with

{% if is_incremental() %}
    touched_versions as (
        select distinct
            prediction_kind,
            model_version
        from {{ ref('prediction_ledger') }}
        where {{ received_since_watermark('received_at') }}
        union
        select
            reliability.prediction_kind,
            reliability.model_version
        from {{ this }} as reliability
        inner join ({{ erased_spans() }}) as erased
            on
                reliability.first_predicted_for <= erased.erased_to
                and reliability.last_predicted_for >= erased.erased_from
    ),
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
        avg(probability order by prediction_id) as mean_predicted,
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
