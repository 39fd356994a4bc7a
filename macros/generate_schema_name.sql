{#- Layers land in schemas with their exact names (staging, intermediate, marts), not
    dbt's default <target_schema>_<custom_schema>, so BI tools and grants see stable names. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema | trim }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
