{#- A bind parameter in an analysis (a BI query), written as the caller expects it, chosen by the
    var bi_param_style:
      psycopg (default)  %(name)s, a psycopg placeholder the dashboard fills per call (bench/);
      superset           '{{ name }}'::type, a Jinja template parameter of Superset's SQL Lab;
      metabase           {{name}}::type, a Metabase variable (type Text: Metabase quotes it).
    `studyin bi-queries --style superset|metabase` compiles analyses/ with the style. Under
    sqlfluff, which cannot parse placeholders, it renders the typed sample literal (the .sqlfluff
    context sets sqlfluff_lint). -#}
{% macro bind_param(name, sample="'00000000-0000-0000-0000-000000000000'::uuid", type="uuid") -%}
    {%- set style = var('bi_param_style') -%}
    {%- if sqlfluff_lint is defined -%}
        {{ sample }}
    {%- elif style == 'psycopg' -%}
        %({{ name }})s
    {%- elif style == 'superset' -%}
        '{{ '{{ ' ~ name ~ ' }}' }}'::{{ type }}
    {%- elif style == 'metabase' -%}
        {{ '{{' ~ name ~ '}}' }}::{{ type }}
    {%- else -%}
        {{ exceptions.raise_compiler_error("bi_param_style must be psycopg, superset or metabase, not " ~ style) }}
    {%- endif -%}
{%- endmacro %}
