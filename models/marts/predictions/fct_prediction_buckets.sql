{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['prediction_kind', 'model_version', 'week_start'],
        on_schema_change='fail',
        indexes=[{
            'columns': ['prediction_kind', 'model_version', 'week_start', 'calibration_bin', 'logit_bucket'],
            'unique': True,
        }],
        post_hook=[
            "{{ delete_groups_without_predictions('prediction_ledger', 'ledger',
                'ledger.predicted_for >= metrics.week_start and ledger.predicted_for < metrics.week_start + 7') }}",
            "{{ advance_watermark(['prediction_ledger']) }}",
            "{{ advance_erasure_watermark() }}",
        ],
    )
}}

-- Grain: one row per prediction kind, model version, ISO week of predicted_for, calibration bin
-- and logit bucket (var prediction_logit_bucket_width of logit(p)) holding a scored prediction:
-- the ledger summed, with exact sums (each term rounded to 1e-12) that add up again over any
-- rows. The all-time marts read a version's buckets instead of its predictions, so their night
-- costs a few thousand rows a version, not the version's history. Incremental by touched week,
-- as fct_prediction_metrics_weekly; equals a full rebuild.
with

{% if is_incremental() %}
    {{ touched_prediction_weeks() }}
{% endif %}

predictions as (
    select
        predictions.prediction_kind,
        predictions.model_version,
        predictions.week_start,
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

bucketed as (
    select
        prediction_kind,
        model_version,
        week_start,
        {{ calibration_bin('probability') }} as calibration_bin,
        {{ clipped_logit('probability') }} as logit,
        predicted_for,
        probability,
        outcome
    from predictions
),

final as (
    select
        prediction_kind,
        model_version,
        week_start,
        calibration_bin,
        {{ logit_bucket('logit') }} as logit_bucket,
        count(*)::integer as predictions,
        (count(*) filter (where outcome))::integer as positives,
        min(predicted_for) as first_predicted_for,
        max(predicted_for) as last_predicted_for,
        {{ exact_decimal_sum('probability') }}::numeric(38, 12) as sum_probability,
        {{ exact_decimal_sum(log_loss_term('probability', 'outcome')) }}::numeric(38, 12) as sum_log_loss,
        {{ exact_decimal_sum(brier_term('probability', 'outcome')) }}::numeric(38, 12) as sum_brier_score,
        {{ exact_decimal_sum('logit') }}::numeric(38, 12) as sum_logit
    from bucketed
    group by prediction_kind, model_version, week_start, calibration_bin, logit_bucket
)

select * from final
