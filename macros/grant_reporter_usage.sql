{#- The reporter role (BI tools) reads marts and nothing else: dbt grants select on each mart
    through the `grants` config; this gives it the schema usage those grants need. -#}
{% macro grant_reporter_usage() -%}
    {%- if execute -%}
        grant usage on schema marts to reporter;
    {%- endif -%}
{%- endmacro %}
