{{ config(materialized='view') }}

-- Every material interaction with the material's topic and the learner's local date.
-- A view: filters on user_id, occurred_at and received_at reach the indexes.
with

interactions as (
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
    from {{ ref('stg_app__material_interactions') }}
),

materials as (
    select
        material_id,
        topic_id
    from {{ ref('stg_app__materials') }}
),

users as (
    select
        user_id,
        timezone
    from {{ ref('stg_app__users') }}
),

final as (
    select
        interactions.event_id,
        interactions.user_id,
        interactions.session_id,
        interactions.material_id,
        materials.topic_id,
        interactions.interaction_type,
        interactions.progress,
        interactions.active_seconds,
        interactions.occurred_at,
        interactions.received_at,
        users.timezone,
        {{ local_date('interactions.occurred_at', 'users.timezone') }} as local_date
    from interactions
    inner join materials
        on interactions.material_id = materials.material_id
    inner join users
        on interactions.user_id = users.user_id
)

select * from final
