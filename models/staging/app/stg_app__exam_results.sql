with

source as (
    select
        event_id,
        user_id,
        exam_kind,
        taken_at,
        scaled_score,
        passed,
        received_at
    from {{ source('app', 'exam_results') }}
),

final as (
    select
        event_id,
        user_id,
        exam_kind,
        taken_at,
        scaled_score,
        passed,
        received_at
    from source
)

select * from final
