with

source as (
    select
        from_topic_id,
        to_topic_id,
        kind
    from {{ source('app', 'topic_relationships') }}
),

final as (
    select
        from_topic_id,
        to_topic_id,
        kind as relationship_kind
    from source
)

select * from final
