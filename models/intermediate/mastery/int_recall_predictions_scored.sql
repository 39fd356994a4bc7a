-- The recall ledger: one row per review with an outcome (a first attempt at a fresh question that
-- day), the recall probability the model in force before that day gives it from what was known
-- before it (int_topic_reviews_featured), and the outcome. "In force before": the newest model
-- version trained on reviews up to the day before the review (macros/recall.sql), else the prior
-- model, so no review is scored by a model that saw it, and the version is a function of stored
-- data: a full refresh gives the same rows. Grows with reviews, not with learners x topics x days.
--
-- Incremental by arrival: reviews whose features changed since the watermark are rescored.
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['user_id', 'topic_id', 'review_date'],
        on_schema_change='fail',
        indexes=[
            {'columns': ['user_id', 'topic_id', 'review_date'], 'unique': True},
            {'columns': ['scored_received_at']},
        ],
        post_hook=["{{ advance_watermark(['int_topic_reviews_featured'], column='features_received_at') }}"],
    )
}}

with

featured_reviews as (
    select
        user_id,
        topic_id,
        review_date,
        {%- for name in recall_feature_names().split(',') %}
            {{ name }},
        {%- endfor %}
        outcome_event_id,
        outcome_correct,
        features_received_at
    from {{ ref('int_topic_reviews_featured') }}
    where
        outcome_correct is not null
        and {{ received_since_watermark('features_received_at') }}
),

recall_topic_offsets as (
    select
        model_version,
        topic_id,
        offset_logit
    from {{ ref('stg_ml__recall_topic_offsets') }}
),

models_in_force as (
    {{ recall_models_in_force('featured_reviews', 'review_date', strict=true) }}
),

scored as (
    select
        featured_reviews.user_id,
        featured_reviews.topic_id,
        featured_reviews.review_date,
        recall_model.model_version,
        {{ recall_probability('featured_reviews', 'recall_model', 'recall_topic_offsets.offset_logit') }}
            as recall_probability,
        featured_reviews.outcome_correct,
        featured_reviews.outcome_event_id,
        featured_reviews.features_received_at
    from featured_reviews
    inner join models_in_force as recall_model
        on featured_reviews.review_date = recall_model.review_date
    left join recall_topic_offsets
        on
            recall_model.model_version = recall_topic_offsets.model_version
            and featured_reviews.topic_id = recall_topic_offsets.topic_id
),

final as (
    select
        md5(user_id::text || '/' || topic_id::text || '/' || review_date::text)::uuid as review_id,
        user_id::uuid as user_id,
        topic_id::integer as topic_id,
        review_date::date as review_date,
        model_version::text as model_version,
        recall_probability::double precision as recall_probability,
        outcome_correct::boolean as outcome_correct,
        outcome_event_id::uuid as outcome_event_id,
        features_received_at as scored_received_at
    from scored
)

select * from final
