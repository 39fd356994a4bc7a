{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['prediction_kind', 'model_version'],
        on_schema_change='fail',
        indexes=[{'columns': ['prediction_kind', 'model_version'], 'unique': True}],
        post_hook=[
            "{{ delete_groups_without_predictions('true') }}",
            "{{ advance_watermark(['prediction_ledger']) }}",
            "{{ advance_erasure_watermark() }}",
        ],
    )
}}

-- Grain: one row per prediction kind and model version, over all its scored predictions.
-- Touched versions: those of ledger rows received since the watermark, and those whose span of
-- predicted_for days meets the activity span of an erasure since the erasure watermark; each is
-- recomputed from its own ledger rows (a model version is scored for a bounded time).
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
            metrics.prediction_kind,
            metrics.model_version
        from {{ this }} as metrics
        inner join ({{ erased_spans() }}) as erased
            on
                metrics.first_predicted_for <= erased.erased_to
                and metrics.last_predicted_for >= erased.erased_from
    ),
{% endif %}

predictions as (
    select
        predictions.prediction_kind,
        predictions.model_version,
        predictions.prediction_id,
        predictions.predicted_for,
        predictions.probability,
        predictions.outcome
    from {{ from_touched(
        ref('prediction_ledger'), 'predictions', 'touched_versions',
        "keyed.prediction_kind = touched_versions.prediction_kind"
        ~ " and keyed.model_version = touched_versions.model_version"
    ) }}
),

metrics as (
    {{ prediction_metrics('predictions', ['prediction_kind', 'model_version']) }}
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
