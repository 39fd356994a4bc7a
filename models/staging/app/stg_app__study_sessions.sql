with

source as (
    select
        id,
        user_id,
        started_at,
        last_activity_at,
        ended_at,
        end_reason
    from {{ source('app', 'study_sessions') }}
),

final as (
    select
        id as session_id,
        user_id,
        started_at,
        last_activity_at,
        ended_at,
        end_reason,
        ended_at is null as is_open
    from source
)

select * from final
