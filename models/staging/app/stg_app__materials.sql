with

source as (
    select
        id,
        topic_id,
        kind,
        est_minutes
    from {{ source('app', 'materials') }}
),

final as (
    select
        id as material_id,
        topic_id,
        kind as material_kind,
        est_minutes::numeric(6, 1) as est_minutes
    from source
)

select * from final
