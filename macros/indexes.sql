{#-
  A covering btree index that dbt's `indexes` config cannot state (it has no INCLUDE). As a
  post-hook: creates the index on `this` unless one with the same key and included columns exists,
  so it is built with the table (a first or full build) and checked, not rebuilt, on every
  incremental run. The name is left to PostgreSQL: during a full build the previous table still
  exists (renamed, dropped after the hooks), and a fixed name would find its index and skip.
-#}
{% macro ensure_covering_index(key_columns, include_columns) -%}
    {%- set shape = 'USING btree (' ~ key_columns | join(', ') ~ ') INCLUDE (' ~ include_columns | join(', ') ~ ')' -%}
    do $ensure_covering_index$
    begin
        if not exists (
            select 1
            from pg_catalog.pg_index
            where
                indrelid = '{{ this }}'::regclass
                and right(pg_catalog.pg_get_indexdef(indexrelid), {{ shape | length }}) = '{{ shape }}'
        ) then
            create index on {{ this }} ({{ key_columns | join(', ') }}) include ({{ include_columns | join(', ') }});
        end if;
    end
    $ensure_covering_index$
{%- endmacro %}
