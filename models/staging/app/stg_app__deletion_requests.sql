-- Only completed requests matter to the warehouse (pending ones are carried out by the pipeline's
-- erasure step before dbt runs). user_id and the subject hash are left out: no model needs them.
with

source as (
    select
        id,
        requested_at,
        completed_at,
        affected_from,
        affected_to
    from {{ source('app', 'deletion_requests') }}
),

final as (
    select
        id as deletion_request_id,
        requested_at,
        completed_at,
        affected_from,
        affected_to,
        completed_at is not null as is_completed
    from source
)

select * from final
