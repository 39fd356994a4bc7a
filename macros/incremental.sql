{#-
  Incremental processing by arrival (the docs overview: "Incremental processing").

  Every incremental model over events reads the rows *received* since its own watermark, minus
  the `incremental_overlap` var (transactions still open when the last run read the log commit
  later with an earlier received_at), finds the keys those rows touch, and recomputes each touched
  key from the whole history. The model then records its new watermark in a post-hook that runs
  in the model's own transaction, so a run killed halfway leaves both the mart and its watermark
  as they were.

  Usage in a model:
    {{ config(materialized='incremental', incremental_strategy='delete+insert',
              unique_key=['user_id', 'local_date'],
              post_hook="{{ advance_watermark(['stg_app__question_attempts', ...]) }}") }}
  (the hook must be a string: called directly in config() its refs resolve at parse time, to the
  wrong schema)
    ... where {{ received_since_watermark('received_at') }}
-#}

{% macro watermark_relation() -%}
    intermediate.incremental_watermarks
{%- endmacro %}

{% macro create_watermark_table() -%}
    create schema if not exists intermediate;
    create table if not exists {{ watermark_relation() }} (
        model_name text primary key,
        received_at timestamptz not null,
        updated_at timestamptz not null default now()
    );
    comment on table {{ watermark_relation() }} is
        'Per incremental model: the latest received_at it has processed (see macros/incremental.sql).';
    -- earlier versions stored -infinity for a model that had seen no row; a missing row means the same
    delete from {{ watermark_relation() }} where received_at = '-infinity';
{%- endmacro %}

{#- The lower bound on received_at for this run: everything on a full refresh.
    It is read when the model runs and inlined as a literal, so PostgreSQL's row estimate for
    `received_at > <literal>` comes from the column statistics (a few rows) instead of the generic
    third of the table it assumes for a comparison with a subquery; with that estimate it joins the
    touched keys to history through the (user_id, time) indexes instead of scanning everything. -#}
{% macro watermark_lower_bound(model_name=none) -%}
    {%- if is_incremental() -%}
        {{ watermark_literal(model_name or this.identifier) }}
    {%- else -%}
        '-infinity'::timestamptz
    {%- endif -%}
{%- endmacro %}

{% macro watermark_literal(model_name) -%}
    {%- set query -%}
        select (coalesce(max(received_at), '-infinity'::timestamptz)
                - interval '{{ var("incremental_overlap") }}')::text
        from {{ watermark_relation() }} where model_name = '{{ model_name }}'
    {%- endset -%}
    {%- if execute -%}
        '{{ run_query(query).columns[0].values()[0] }}'::timestamptz
    {%- else -%}
        '-infinity'::timestamptz
    {%- endif -%}
{%- endmacro %}

{% macro received_since_watermark(column='received_at') -%}
    {%- if is_incremental() -%}
        {{ column }} > {{ watermark_lower_bound() }}
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}

{#- Post-hook: the new watermark is the newest received_at among the given relations' rows. Only
    rows received since the stored watermark (minus the overlap) are read: received_at is indexed
    with BRIN (migration 0006), which finds recent rows but cannot answer max() over the whole
    table. A full refresh reads from the stored watermark too: the upsert keeps the greater of the
    stored and the new value, so the older rows could not change the result, and reading them cost
    a scan of the whole log or attempts table per model (about 5 of 54 thread-seconds of a full
    rebuild at 2,000 learners x 90 days).
    A model that has seen no row yet gets no watermark row (watermark_literal reads a missing one
    as -infinity): the table only holds finite timestamps, which every client can read (psycopg
    refuses -infinity). -#}
{% macro advance_watermark(relations, column='received_at') -%}
    insert into {{ watermark_relation() }} (model_name, received_at, updated_at)
    select '{{ this.identifier }}', max(received_at), now()
    from (
        {%- for relation in relations %}
        select max({{ column }}) as received_at from {{ ref(relation) }}
        where {{ column }} > {{ watermark_literal(this.identifier) }}
        {%- if not loop.last %} union all{% endif %}
        {%- endfor %}
    ) as newest
    having max(received_at) is not null
    on conflict (model_name) do update
        set received_at = greatest(excluded.received_at, {{ watermark_relation() }}.received_at),
            updated_at = excluded.updated_at
{%- endmacro %}

{#-
  Erasures (the docs overview: "Erasure"). The pipeline's erasure step deletes an erased learner's rows from
  every table with a user_id column, so per-learner models need nothing more. Models that aggregate
  ACROSS learners must also recompute what the erased learner contributed to: they keep a second
  watermark, on app.deletion_requests.completed_at, under '<model>__erasures' in the same table
  (a separate clock from received_at: erasures happen at wall-clock time, events may be back-filled).
  Usage: {{ erasures_since_watermark('completed_at') }} in the model, and
  post_hook="{{ advance_erasure_watermark() }}".
-#}
{% macro erasure_watermark_name() -%}
    {{ this.identifier }}__erasures
{%- endmacro %}

{% macro erasures_since_watermark(column='completed_at') -%}
    {%- if is_incremental() -%}
        {{ column }} > {{ watermark_lower_bound(erasure_watermark_name()) }}
    {%- else -%}
        {{ column }} is not null
    {%- endif -%}
{%- endmacro %}

{% macro advance_erasure_watermark(relation='stg_app__deletion_requests', column='completed_at') -%}
    insert into {{ watermark_relation() }} (model_name, received_at, updated_at)
    select '{{ erasure_watermark_name() }}', max({{ column }}), now()
    from {{ ref(relation) }}
    having max({{ column }}) is not null  -- no erasure yet: no row (see advance_watermark)
    on conflict (model_name) do update
        set received_at = greatest(excluded.received_at, {{ watermark_relation() }}.received_at),
            updated_at = excluded.updated_at
{%- endmacro %}

{#- The instant after which an arrival counts as recent, for the freshness checks (the sources'
    loaded_at_query and warehouse_freshness): var freshness_recent_days before the newest arrival
    the warehouse has read (the latest model watermark; the `<model>__<clock>` rows keep other
    clocks), or before now when there is no watermark yet. In production the two are a night
    apart; on data older than that (a backfill, a stale copy, the benchmark's simulated days) an
    anchor on now() found nothing recent and read the whole table, every night (4.5 and 6.5 s of
    a 75 s night at 10,000 learners x 90 days). -#}
{% macro recent_arrivals_since() -%}
    (least(now(), (
        select max(watermarks.received_at)
        from {{ watermark_relation() }} as watermarks
        where watermarks.model_name not like '%\_\_%'
    )) - interval '{{ var("freshness_recent_days") }} days')
{%- endmacro %}

{#- The loaded_at_query of an event table's source freshness: its newest `column` among the rows
    received since recent_arrivals_since() (the BRIN index on the time finds them without reading
    the history), else the whole table's newest, else 1970 for an empty table (dbt cannot compare
    a null, and no data at all is stale). coalesce() reads the whole table only when needed. -#}
{% macro newest_arrival(table, column) -%}
    select coalesce(
        (select max({{ column }}) from {{ table }} where {{ column }} > {{ recent_arrivals_since() }}),
        (select max({{ column }}) from {{ table }}),
        timestamptz '1970-01-01 00:00:00+00'
    )
{%- endmacro %}

{#- The newest received_at and occurred time of an event table (warehouse_freshness): the rows
    received since recent_arrivals_since(), found through the received_at BRIN index; the whole
    table only when there are none. The newest event by occurred time is among them
    whenever it occurred in that span, since an event is received after it occurs. The whole-table
    read is gated by an uncorrelated scalar subquery on the recent result (evaluated once, then the
    scan is skipped), not by a lateral join, which a Citus cluster cannot plan over a distributed
    table, nor by a `not exists` over the table, which PostgreSQL planned as a sequential scan of
    every older partition before the recent ones (3 s of the 3.1 s of warehouse_freshness at
    10,000 learners x 90 days). -#}
{% macro newest_event_times(label, relation, occurred_column) -%}
    with recent as (
        select
            max(received_at) as newest_received_at,
            max({{ occurred_column }}) as newest_occurred_at
        from {{ relation }}
        where received_at > {{ recent_arrivals_since() }}
    )

    select
        '{{ label }}' as object_name,
        coalesce(recent.newest_received_at, whole.newest_received_at) as newest_received_at,
        coalesce(recent.newest_occurred_at, whole.newest_occurred_at) as newest_occurred_at
    from recent
    cross join (
        select
            max(received_at) as newest_received_at,
            max({{ occurred_column }}) as newest_occurred_at
        from {{ relation }}
        where (select recent.newest_received_at from recent) is null
    ) as whole
{%- endmacro %}

{#- One row (object_name, materialization, model_name) per model of the project in schema marts
    except `exclude`, as a union of selects (warehouse_freshness); no row while dbt parses. The
    materialization is the built one: a view with meta citus_placement is a table on Citus
    (macros/citus_materialization.sql). -#}
{% macro mart_rows(exclude) -%}
    {%- set marts = [] -%}
    {%- if execute and graph is defined -%}
        {%- for node in graph.nodes.values() | sort(attribute='name')
            if node.resource_type == 'model' and node.config.schema == 'marts' and node.name != exclude -%}
            {%- do marts.append(node) -%}
        {%- endfor -%}
    {%- endif -%}
    {%- for node in marts %}
    select
        '{{ node.schema }}.{{ node.alias }}' as object_name,
        '{{ 'table' if citus_builds_view_as_table(node.config.materialized, node.config.meta)
            else node.config.materialized }}' as materialization,
        '{{ node.alias }}' as model_name
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- else %}
    select
        null::text as object_name,
        null::text as materialization,
        null::text as model_name
    where false
    {%- endfor %}
{%- endmacro %}
