{#- Citus (distributed PostgreSQL) support, continued from macros/citus.sql: the one materialization
    of the project, in a file of its own because the SQL linter's Jinja cannot read a
    materialization block (.sqlfluff leaves this file out of the macros it loads). -#}

{#- dbt's view materialization, unchanged on a single server and for every view without meta
    citus_placement. On Citus such a view is built as a table, placed by citus_placement (created
    empty, placed, filled: postgres__create_table_as in macros/citus.sql) and rebuilt by every run. Why: Citus
    plans a query on a view by expanding it and sends the shards' queries to the workers as the
    session's user, so a view's owner rights do not reach the shards, and a BI login (granted
    select on marts only) is refused by a worker on the app tables the view reads. A table of the
    same rows needs no right beyond marts. Its time-dependent columns (a learner's local today) are
    then those of the run, not of the query. -#}
{% materialization view, adapter='postgres' %}
    {%- if citus_view_placement() is not none -%}
        {{ return(materialization_table_default()) }}
    {%- endif -%}
    {{ return(materialization_view_default()) }}
{% endmaterialization %}
