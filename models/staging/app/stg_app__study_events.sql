-- ip_prefix is left out on purpose: no analysis needs it, so it stays in the OLTP schema only.
with

source as (
    select
        event_id,
        user_id,
        session_id,
        event_type,
        occurred_at,
        received_at,
        properties
    from {{ source('app', 'study_events') }}
),

final as (
    select
        event_id,
        user_id,
        session_id,
        event_type,
        occurred_at,
        received_at,
        properties
    from source
)

select * from final
