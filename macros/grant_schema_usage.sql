{#- The reporter role (BI tools) reads marts and nothing else. ml_writer (the python jobs) reads
    marts too, and the review log int_topic_reviews_scheduled in intermediate (exam readiness
    recomputes point-in-time mastery from it). dbt grants select on each of those relations through
    the `grants` config; this gives the roles the schema usage those grants need. A run that
    builds no model (e.g. `dbt seed`) may find a schema missing: then there is nothing to grant.
    PostgreSQL gives EXECUTE on every new function to PUBLIC: the functions dbt creates in
    intermediate (SM-2, macros/sm2.sql) are called only while dbt builds the models, so PUBLIC's
    EXECUTE is revoked (CREATE OR REPLACE keeps the revocation; a new function loses it here). -#}
{% macro grant_schema_usage() -%}
    {%- if execute -%}
        do $$
        begin
            if exists (select 1 from pg_namespace where nspname = 'marts') then
                grant usage on schema marts to reporter, ml_writer;
            end if;
            if exists (select 1 from pg_namespace where nspname = 'intermediate') then
                grant usage on schema intermediate to ml_writer;
                revoke execute on all functions in schema intermediate from public;
            end if;
        end;
        $$
    {%- endif -%}
{%- endmacro %}
