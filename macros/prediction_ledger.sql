{#-
  The prediction ledger (models/marts/predictions): one model per kind of prediction records each
  scored prediction; `prediction_ledger` is the union of the models listed in the var
  prediction_ledger_inputs, so a new kind of prediction is one more entry there.

  An entry is {kind: <prediction_kind>, model: <model name>} and, when the model names a ledger
  column differently, columns: {<ledger column>: <its column in the model>, or null when the model
  has no such column}. The ledger columns:
  prediction_id (uuid, the outcome's event id, unique within the kind), user_id, topic_id
  (null when the model has none), exam_kind (likewise), predicted_for (date), model_version,
  probability (0 to 1), outcome (boolean) and received_at (when the row's newest input reached
  the warehouse: the ledger's incremental runs read the rows received since their watermark).
-#}

{#- The model's expression for one ledger column: the column of that name, the column the
    entry's `columns` maps it to, or null when the entry maps it to null (the model has none). -#}
{% macro ledger_column(input, name) -%}
    {%- set columns = input.get('columns', {}) -%}
    {%- if name in columns and columns[name] is none -%}
        null
    {%- elif name in columns -%}
        predictions.{{ columns[name] }}
    {%- else -%}
        predictions.{{ name }}
    {%- endif -%}
{%- endmacro %}

{#- A select of one ledger input in the ledger's columns; incremental runs read only its rows
    received since the ledger's watermark. -#}
{% macro prediction_ledger_branch(input) -%}
    select
        '{{ input.kind }}'::text as prediction_kind,
        {{ ledger_column(input, 'prediction_id') }}::uuid as prediction_id,
        {{ ledger_column(input, 'model_version') }}::text as model_version,
        {{ ledger_column(input, 'user_id') }}::uuid as user_id,
        {{ ledger_column(input, 'topic_id') }}::integer as topic_id,
        {{ ledger_column(input, 'exam_kind') }}::text as exam_kind,
        {{ ledger_column(input, 'predicted_for') }}::date as predicted_for,
        {{ ledger_column(input, 'probability') }}::double precision as probability,
        {{ ledger_column(input, 'outcome') }}::boolean as outcome,
        {{ ledger_column(input, 'received_at') }}::timestamptz as received_at
    from {{ ref(input.model) }} as predictions
    {%- if is_incremental() and sqlfluff_lint is not defined %}
    where {{ ledger_column(input, 'received_at') }} > {{ watermark_lower_bound(ledger_watermark_name(input)) }}
    {%- endif %}
{%- endmacro %}

{#- Each kind of prediction has its own watermark (its inputs keep their own clock). -#}
{% macro ledger_watermark_name(input) -%}
    {{ this.identifier }}__{{ input.kind }}
{%- endmacro %}

{#- Post-hook of prediction_ledger: per kind, the newest received_at it now holds. -#}
{% macro advance_ledger_watermarks(inputs) -%}
    {%- for input in inputs %}
    {{ advance_watermark_to(ledger_watermark_name(input), this, 'received_at',
        "prediction_kind = '" ~ input.kind ~ "'") }};
    {%- endfor %}
{%- endmacro %}

{#- Post-hook: advance the watermark row `name` to the newest `column` of `relation` (rows
    matching `condition`) above its current lower bound (see advance_watermark). -#}
{% macro advance_watermark_to(name, relation, column, condition='true') -%}
    insert into {{ watermark_relation() }} (model_name, received_at, updated_at)
    select '{{ name }}', max({{ column }}), now()
    from {{ relation }}
    where {{ column }} > {{ watermark_literal(name) }} and {{ condition }}
    having max({{ column }}) is not null
    on conflict (model_name) do update
        set received_at = greatest(excluded.received_at, {{ watermark_relation() }}.received_at),
            updated_at = excluded.updated_at
{%- endmacro %}

{#- Post-hook: a second watermark of the model, `<model>__<suffix>`, over `column` of the model
    `relation` (fct_readiness_predictions: the scores' scored_at beside the exams' received_at). -#}
{% macro advance_named_watermark(suffix, relation, column) -%}
    {{ advance_watermark_to(this.identifier ~ '__' ~ suffix, ref(relation), column) }}
{%- endmacro %}

{% macro prediction_ledger_union(inputs) -%}
    {%- if sqlfluff_lint is defined -%}
        {#- sqlfluff renders var() as its name: lint one entry of the shape the var holds -#}
        {%- set inputs = [{'kind': 'readiness', 'model': 'fct_readiness_predictions'}] -%}
    {%- endif -%}
    {%- for input in inputs %}
    {{ prediction_ledger_branch(input) }}
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}
{%- endmacro %}

{#- Monday of the ISO week of a date. -#}
{% macro iso_week_start(day) -%}
    date_trunc('week', {{ day }})::date
{%- endmacro %}

{#-
  Days inside the activity span of each completed erasure that satisfies `since`, a condition on
  completed_at (pass erasures_since_watermark('erasures.completed_at'), macros/incremental.sql),
  widened by a day on each side (the span is in UTC instants, the ledger's dates are the
  learner's local days), as rows (erased_from, erased_to). The erased learner's predictions
  were for days inside it; the erasure step already deleted them from the ledger.
-#}
{% macro erased_spans(since) -%}
    select
        (erasures.affected_from at time zone 'UTC')::date - 1 as erased_from,
        (erasures.affected_to at time zone 'UTC')::date + 1 as erased_to
    from {{ ref('stg_app__deletion_requests') }} as erasures
    where erasures.is_completed
        and erasures.affected_from is not null
        and {{ since }}
{%- endmacro %}

{#- Incremental marts by week of the ledger (fct_prediction_metrics_weekly,
    fct_prediction_buckets): the CTEs up to touched_weeks, the (kind, model version, ISO week)
    groups to recompute: those of ledger rows received since the model's watermark, and every
    week of the model inside the activity span of an erasure since its erasure watermark. -#}
{% macro touched_prediction_weeks() -%}
{#- sqlfluff loads each macro file on its own: it lints these CTEs without incremental.sql's
    conditions -#}
{%- set linting = sqlfluff_lint is defined -%}
erased as (
    {{ erased_spans('true' if linting else erasures_since_watermark('erasures.completed_at')) }}
),

touched_weeks as (
    select distinct
        prediction_kind,
        model_version,
        week_start
    from {{ ref('prediction_ledger') }}
    where {{ 'true' if linting else received_since_watermark('received_at') }}
    union
    select
        metrics.prediction_kind,
        metrics.model_version,
        metrics.week_start
    from {{ this }} as metrics
    inner join erased
        on
            metrics.week_start <= erased.erased_to
            and metrics.week_start + 6 >= erased.erased_from
),
{%- endmacro %}

{#-
  Post-hook of a metric mart: delete its groups that no longer have any prediction (all of them
  erased). delete+insert only replaces the groups a run recomputes, and a group with no
  prediction left recomputes to no row at all. `relation` is where the predictions are counted
  (the ledger, alias ledger, or the weekly mart, alias weekly); `condition` matches its rows to
  the mart's group (alias metrics: the columns of its unique key). On PostgreSQL each group of
  the mart is one index probe (a correlated not exists). On Citus the mart is a coordinator table and the ledger a distributed
  one, which a correlated subquery cannot join: the groups that still have predictions are found
  by one join of the two (Citus sends the small mart to the workers), the others deleted.
-#}
{% macro delete_groups_without_predictions(relation, alias, condition) -%}
    {%- if is_incremental() -%}
        {{ citus_dispatch('delete_groups_without_predictions', relation, alias, condition) }}
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}

{% macro default__delete_groups_without_predictions(relation, alias, condition) -%}
    {%- set keys = config.get('unique_key') -%}
    delete from {{ this }}
    where ({{ keys | join(', ') }}) in (
        select {% for key in keys %}metrics.{{ key }}{{ ', ' if not loop.last }}{% endfor %}
        from (select distinct {{ keys | join(', ') }} from {{ this }}) as metrics
        where not exists (
            select 1 from {{ ref(relation) }} as {{ alias }}
            where {{ alias }}.prediction_kind = metrics.prediction_kind
                and {{ alias }}.model_version = metrics.model_version
                and {{ condition }}
        )
    )
{%- endmacro %}

{% macro citus__delete_groups_without_predictions(relation, alias, condition) -%}
    {%- set keys = config.get('unique_key') -%}
    delete from {{ this }}
    where ({{ keys | join(', ') }}) not in (
        select distinct {% for key in keys %}metrics.{{ key }}{{ ', ' if not loop.last }}{% endfor %}
        from {{ this }} as metrics
        inner join {{ ref(relation) }} as {{ alias }}
            on {{ alias }}.prediction_kind = metrics.prediction_kind
            and {{ alias }}.model_version = metrics.model_version
            and {{ condition }}
    )
{%- endmacro %}
