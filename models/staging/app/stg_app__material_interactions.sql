with

source as (
    select
        event_id,
        user_id,
        session_id,
        material_id,
        interaction_type,
        progress,
        active_seconds,
        occurred_at,
        received_at
    from {{ source('app', 'material_interactions') }}
),

final as (
    select
        event_id,
        user_id,
        session_id,
        material_id,
        interaction_type,
        progress::numeric(5, 4) as progress,
        active_seconds,
        occurred_at,
        received_at
    from source
)

select * from final
