{#- A bind parameter in an analysis (a BI query): dbt compiles it to a psycopg placeholder
    %(name)s that the dashboard fills per call. Under sqlfluff, which cannot parse placeholders,
    it renders a typed literal instead (the .sqlfluff context sets sqlfluff_lint). -#}
{% macro bind_param(name, sample="'00000000-0000-0000-0000-000000000000'::uuid") -%}
    {%- if sqlfluff_lint is defined -%}
        {{ sample }}
    {%- else -%}
        %({{ name }})s
    {%- endif -%}
{%- endmacro %}
