{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['prediction_kind', 'prediction_id'],
        on_schema_change='fail',
        indexes=[
            {'columns': ['prediction_kind', 'prediction_id', 'user_id'], 'unique': True},
            {'columns': ['prediction_kind', 'model_version', 'predicted_for']},
            {'columns': ['received_at']},
        ],
        post_hook="{{ advance_ledger_watermarks(var('prediction_ledger_inputs')) }}",
    )
}}

-- Grain: one row per scored prediction, of every kind listed in the var prediction_ledger_inputs
-- (macros/prediction_ledger.sql): a kind's model records each prediction with its outcome, this
-- mart puts them in one shape. Incremental runs copy each input's rows received since that
-- kind's watermark, replacing the predictions they carry.
with

predictions as (
    {{ prediction_ledger_union(var('prediction_ledger_inputs')) }}
),

final as (
    select
        prediction_kind,
        prediction_id,
        model_version,
        user_id,
        topic_id,
        exam_kind,
        predicted_for,
        {{ iso_week_start('predicted_for') }} as week_start,
        probability,
        outcome,
        received_at
    from predictions
)

select * from final
