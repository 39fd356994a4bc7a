{{ config(materialized='table') }}

-- Grain: one row per app event table (how new its data is) and one per mart (when the run built
-- it, and the newest event its incremental processing has read). Built at the end of every run
-- (it reads user_learning_metrics, so it builds with the models after the python jobs); a
-- dashboard shows its rows as "data as of".
-- depends_on: {{ ref('user_learning_metrics') }}
{%- set event_tables = [
    ('app.study_events', 'stg_app__study_events', 'occurred_at'),
    ('app.question_attempts', 'stg_app__question_attempts', 'answered_at'),
    ('app.material_interactions', 'stg_app__material_interactions', 'occurred_at'),
    ('app.exam_results', 'stg_app__exam_results', 'taken_at'),
] %}

with

{% for label, model, occurred_column in event_tables %}
    {{ model }}_newest as (
        {{ newest_event_times(label, ref(model), occurred_column) }}
    ),
{% endfor %}

watermarks as (
    select
        model_name,
        received_at
    from {{ watermark_relation() }}
),

sources as (
    {%- for label, model, occurred_column in event_tables %}
        select
            object_name,
            newest_received_at,
            newest_occurred_at
        from {{ model }}_newest
        {%- if not loop.last %}
            union all
        {%- endif %}
    {%- endfor %}
),

marts as (
    {{ mart_rows(this.identifier) }}
),

final as (
    select
        object_name::text as object_name,
        'source'::text as object_type,
        null::text as materialization,
        now() as checked_at,
        null::timestamptz as refreshed_at,
        newest_received_at::timestamptz as newest_received_at,
        newest_occurred_at::timestamptz as newest_occurred_at
    from sources
    union all
    select
        marts.object_name::text as object_name,
        'mart'::text as object_type,
        marts.materialization::text as materialization,
        now() as checked_at,
        case
            when marts.materialization <> 'view' then now()
        end as refreshed_at,
        watermarks.received_at::timestamptz as newest_received_at,
        null::timestamptz as newest_occurred_at
    from marts
    left join watermarks on marts.model_name = watermarks.model_name
)

select * from final
