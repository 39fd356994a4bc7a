{%- set as_of = var('metrics_as_of_date') %}

-- Grain: one row per learner (every row of app.users). The learner dimension: what an analyst
-- joins on user_id to slice any mart by cohort, exam or time zone. A view over the users table:
-- as_of_date (the learner's local today) moves on its own, and an erased learner is gone as soon
-- as the erasure step deletes their app.users row, with nothing stored here to clean up.
{{ config(materialized='view') }}

with

users as (
    select
        user_id,
        created_at,
        timezone,
        cohort,
        exam_target,
        exam_date
    from {{ ref('stg_app__users') }}
),

dated as (
    select
        users.*,
        {% if as_of -%}
            '{{ as_of }}'::date
        {%- else -%}
            (now() at time zone users.timezone)::date
        {%- endif %} as as_of_date
    from users
),

final as (
    select
        user_id::uuid as user_id,
        cohort::text as cohort,
        exam_target::text as exam_target,
        exam_date::date as exam_date,
        timezone::text as timezone,
        created_at::timestamptz as created_at,
        (created_at at time zone timezone)::date as created_local_date,
        as_of_date::date as as_of_date,
        (exam_date - as_of_date)::integer as days_until_exam
    from dated
)

select * from final
