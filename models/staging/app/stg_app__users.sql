with

source as (
    select
        id,
        created_at,
        timezone,
        cohort,
        exam_target,
        exam_date
    from {{ source('app', 'users') }}
),

final as (
    select
        id as user_id,
        created_at,
        timezone,
        cohort,
        exam_target,
        exam_date
    from source
)

select * from final
