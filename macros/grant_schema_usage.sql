{#- The reporter role (BI tools) reads marts and nothing else, and ml_writer (the python jobs)
    reads marts too: dbt grants select on each mart through the `grants` config; this gives both
    roles the schema usage those grants need. A run that builds no mart (e.g. `dbt seed`) may
    find no marts schema yet: then there is nothing to grant. -#}
{% macro grant_marts_usage() -%}
    {%- if execute -%}
        do $$
        begin
            if exists (select 1 from pg_namespace where nspname = 'marts') then
                grant usage on schema marts to reporter, ml_writer;
            end if;
        end;
        $$
    {%- endif -%}
{%- endmacro %}
