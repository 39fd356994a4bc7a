{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='exam_event_id',
        on_schema_change='fail',
        indexes=[
            {'columns': ['exam_event_id', 'user_id'], 'unique': True},
            {'columns': ['received_at']},
        ],
        post_hook=[
            "{{ advance_watermark(['stg_app__exam_results']) }}",
            "{{ advance_named_watermark('scores', 'stg_ml__exam_readiness_scores', 'scored_at') }}",
        ],
    )
}}

-- Grain: one row per exam result (practice or board) for which the learner had a readiness score
-- published before the exam: the latest score with scored_at at least
-- readiness_prediction_lead_hours before taken_at and at most readiness_prediction_horizon_days
-- before it. Point in time: a score written after the exam is never used.
-- Touched exams: exams received since the watermark, and the exams of learners with a score
-- written since the scores' watermark whose window holds that score (a late or re-run score).
with

{% if is_incremental() %}
    new_scores as (
        select
            user_id,
            scored_at
        from {{ ref('stg_ml__exam_readiness_scores') }}
        where scored_at > {{ watermark_lower_bound(this.identifier ~ '__scores') }}
    ),

    touched_exams as (
        select event_id
        from {{ ref('stg_app__exam_results') }}
        where {{ received_since_watermark('received_at') }}
        union
        select exams.event_id
        from new_scores
        inner join {{ ref('stg_app__exam_results') }} as exams
            on
                new_scores.user_id = exams.user_id
                and exams.taken_at > new_scores.scored_at
                + interval '{{ var("readiness_prediction_lead_hours") }} hours'
                and exams.taken_at <= new_scores.scored_at
                + interval '{{ var("readiness_prediction_horizon_days") }} days'
    ),
{% endif %}

exams as (
    select
        exams.event_id as exam_event_id,
        exams.user_id,
        exams.exam_kind,
        exams.taken_at,
        exams.passed,
        exams.received_at
    from {{ from_touched(
        ref('stg_app__exam_results'), 'exams', 'touched_exams', 'keyed.event_id = touched_exams.event_id'
    ) }}
),

users as (
    select
        user_id,
        timezone
    from {{ ref('stg_app__users') }}
),

paired as (
    select
        exams.exam_event_id,
        exams.user_id,
        exams.exam_kind,
        exams.taken_at,
        {{ local_date('exams.taken_at', 'users.timezone') }} as exam_date,
        exams.passed,
        latest_score.scored_at,
        latest_score.model_version,
        latest_score.pass_probability,
        greatest(exams.received_at, latest_score.scored_at) as received_at
    from exams
    inner join users on exams.user_id = users.user_id
    cross join lateral (
        select
            scores.scored_at,
            scores.model_version,
            scores.pass_probability
        from {{ ref('stg_ml__exam_readiness_scores') }} as scores
        where
            scores.user_id = exams.user_id
            and scores.scored_at < exams.taken_at - interval '{{ var("readiness_prediction_lead_hours") }} hours'
            and scores.scored_at >= exams.taken_at - interval '{{ var("readiness_prediction_horizon_days") }} days'
        order by scores.scored_at desc
        limit 1
    ) as latest_score
),

final as (
    select
        exam_event_id,
        user_id,
        exam_kind,
        taken_at,
        exam_date,
        passed,
        scored_at,
        model_version,
        pass_probability,
        round((extract(epoch from taken_at - scored_at) / 86400)::numeric, 2)::numeric(8, 2) as score_age_days,
        received_at
    from paired
)

select * from final
