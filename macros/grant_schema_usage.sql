{#- The reporter role (BI tools) reads marts and nothing else. ml_writer (the python jobs) reads
    marts too, and the review log int_topic_reviews_scheduled in intermediate (exam readiness
    recomputes point-in-time mastery from it). dbt grants select on each of those relations through
    the `grants` config; this gives the roles the schema usage those grants need. A run that
    builds no model (e.g. `dbt seed`) may find a schema missing: then there is nothing to grant. -#}
{% macro grant_schema_usage() -%}
    {%- if execute -%}
        do $$
        begin
            if exists (select 1 from pg_namespace where nspname = 'marts') then
                grant usage on schema marts to reporter, ml_writer;
            end if;
            if exists (select 1 from pg_namespace where nspname = 'intermediate') then
                grant usage on schema intermediate to ml_writer;
            end if;
        end;
        $$
    {%- endif -%}
{%- endmacro %}
