{#- The reporter role (BI tools) reads marts and nothing else: dbt grants select on each mart
    through the `grants` config; this gives it the schema usage those grants need. A run that
    builds no mart (e.g. `dbt seed`) may find no marts schema yet: then there is nothing to grant. -#}
{% macro grant_reporter_usage() -%}
    {%- if execute -%}
        do $$
        begin
            if exists (select 1 from pg_namespace where nspname = 'marts') then
                grant usage on schema marts to reporter;
            end if;
        end;
        $$
    {%- endif -%}
{%- endmacro %}
