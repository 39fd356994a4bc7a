{#-
  Citus (distributed PostgreSQL) support (the docs overview: "Running on a Citus cluster").

  The same project builds on a single PostgreSQL server and on a Citus cluster whose learner tables
  (app.users and every table with a user_id) are hash-distributed on user_id. On Citus:
  - a model that dbt materializes as a table (table, or incremental on its first run and on a full
    refresh) is created empty, placed (macro citus_place_relation), then filled, so its rows go
    straight to where they belong: per-learner models become distributed tables colocated with
    app.users on user_id (each learner's rows on the same node as their events, so a model joining
    them on user_id runs on the workers, node by node); cross-learner models become reference
    tables (copied to every node, joinable with anything) or stay coordinator-local tables
    (model meta `citus_placement`, defaulting on the YAML columns: a model with a user_id column is
    distributed, any other is local);
  - incremental runs stay dbt's delete+insert: the temporary table of the run's new rows is local
    to the coordinator, and Citus routes the delete and the insert to each row's shard.
  On a single server (no citus extension) nothing of this runs and dbt's own SQL is unchanged.
  is_citus() and lateral_fence() live in macros/activity.sql, beside from_touched, their first user
  (the SQL linter loads each macro file on its own: a macro sees only its own file's macros).
-#}

{#- `citus__<name>` on Citus, else `default__<name>`, called with the given arguments: the project's
    own dispatch for SQL that must differ on a Citus cluster (dbt's adapter.dispatch keys on the
    adapter, which is postgres on both). -#}
{% macro citus_dispatch(name) -%}
    {%- set prefix = 'citus__' if is_citus() else 'default__' -%}
    {{ return(context[prefix ~ name](*varargs, **kwargs)) }}
{%- endmacro %}

{#- Where the model being built goes on Citus: 'distributed' (hash on user_id, colocated with
    app.users), 'reference' (a copy on every node) or 'local' (the coordinator only); none on a
    single server. Set with the model's meta `citus_placement`; the default is 'distributed' for
    a model with a user_id column in its YAML and 'local' for any other. -#}
{% macro citus_placement() -%}
    {%- if not is_citus() or model.resource_type != 'model' -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set meta = config.get('meta') or {} -%}
    {%- set has_user_id = 'user_id' in model.columns -%}
    {%- set placement = meta.get('citus_placement') or ('distributed' if has_user_id else 'local') -%}
    {%- if placement not in ['distributed', 'reference', 'local'] -%}
        {%- do exceptions.raise_compiler_error(
            "model " ~ model.name ~ ": meta citus_placement must be distributed, reference or local, got "
            ~ placement) -%}
    {%- endif -%}
    {%- if placement == 'distributed' and not has_user_id -%}
        {%- do exceptions.raise_compiler_error(
            "model " ~ model.name ~ ": a distributed model needs a user_id column (documented in its YAML)") -%}
    {%- endif -%}
    {{ return(placement) }}
{%- endmacro %}

{#- Whether a model of this materialization and meta is built as a table on this database: a view
    whose meta sets citus_placement explicitly, on Citus (a view with a user_id column is no
    distributed table by default). Asked by the view materialization and by mart_rows. -#}
{% macro citus_builds_view_as_table(materialized, meta) -%}
    {{ return(materialized == 'view' and (meta or {}).get('citus_placement') and is_citus()) }}
{%- endmacro %}

{#- The placement of the view model being built on Citus when it is built as a table, else none. -#}
{% macro citus_view_placement() -%}
    {%- if citus_builds_view_as_table('view', config.get('meta')) -%}
        {{ return(citus_placement()) }}
    {%- endif -%}
    {{ return(none) }}
{%- endmacro %}

{% macro citus_place_relation(relation, placement) -%}
    {%- if placement == 'distributed' -%}
        select create_distributed_table('{{ relation }}', 'user_id', colocate_with => 'app.users')
    {%- elif placement == 'reference' -%}
        select create_reference_table('{{ relation }}')
    {%- endif -%}
{%- endmacro %}

{#- dbt-postgres' create_table_as (the root project's version takes precedence in dbt's dispatch):
    unchanged for temporary tables, on a single server and for coordinator-local models; a
    distributed or reference model is created empty (with its contract's columns and constraints
    when enforced), placed, then filled by one insert ... select. -#}
{% macro postgres__create_table_as(temporary, relation, sql) -%}
    {%- set placement = none if temporary else citus_placement() -%}
    {%- if placement in [none, 'local'] -%}
        {{ dbt.postgres__create_table_as(temporary, relation, sql) }}
    {%- else -%}
        {%- set contract_config = config.get('contract') -%}
        {%- if contract_config.enforced -%}
            {{ get_assert_columns_equivalent(sql) }}
            create table {{ relation }} {{ get_table_columns_and_constraints() }};
            {{ citus_place_relation(relation, placement) }};
            insert into {{ relation }} ({{ adapter.dispatch('get_column_names', 'dbt')() }})
            {{ get_select_subquery(sql) }};
        {%- else -%}
            create table {{ relation }} as (
                {{ sql }}
            ) with no data;
            {{ citus_place_relation(relation, placement) }};
            insert into {{ relation }}
            select * from (
                {{ sql }}
            ) as model_rows;
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}
