{#-
  Post-hook (dbt_project.yml, every model; outside the model's transaction) that ANALYZEs a table
  dbt has just rebuilt whole (materialized 'table'), so that what reads it next in the same run, a
  later model or a python job, is planned on its real row counts and values. PostgreSQL has no
  statistics for a table it has never sampled, and autovacuum samples a new table only a minute or
  more after it is written. Views and incremental models render nothing: an incremental run
  changes a few rows of a table autovacuum already knows.
-#}
{% macro analyze_rebuilt_table() -%}
    {%- if model.config.materialized == 'table' -%}
        analyze {{ this }}
    {%- endif -%}
{%- endmacro %}
