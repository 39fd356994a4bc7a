{#-
  Nightly data tests of history-sized models check the recent rows only (a
  nightly run's cost follows the new data, not the history).

  A model opts in with `meta: {test_window_column: <date or timestamp column>}`. When the var
  nightly_test_window_days is set (`studyin run` sets it; `studyin run --full-checks` and a plain
  `dbt build` do not), every generic data test of such a model reads only its rows with that
  column in the last that many days (server date); otherwise, every row. The rows a late event
  rewrites further back are checked by the next full-checks run.

  get_where_subquery is the hook dbt's generic tests call to apply their `where` config; this
  override adds the window to it.
-#}
{% macro get_where_subquery(relation) -%}
    {%- set conditions = [config.get('where'), test_window_condition(relation)] | select | list -%}
    {%- if conditions -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ conditions | join(' and ') }}) as dbt_subquery
        {%- endset -%}
        {%- do return(filtered) -%}
    {%- else -%}
        {%- do return(relation) -%}
    {%- endif -%}
{%- endmacro %}

{% macro test_window_condition(relation) -%}
    {%- set days = var('nightly_test_window_days', none) -%}
    {%- if days is none or not execute -%}
        {%- do return(none) -%}
    {%- endif -%}
    {%- for node in graph.nodes.values()
        if node.resource_type == 'model'
        and node.alias == relation.identifier
        and node.schema == relation.schema
        and node.config.meta.get('test_window_column') -%}
        {%- do return(node.config.meta['test_window_column'] ~ ' >= current_date - ' ~ (days | int)) -%}
    {%- endfor -%}
    {%- do return(none) -%}
{%- endmacro %}
