{#-
  Helpers of the activity marts (models/intermediate/activity, models/marts/activity).
  They build on macros/incremental.sql: a model recomputes every key touched by rows received
  since its watermark (minus the incremental_overlap var), from the whole history of that key.
-#}

{#- The SQL expression of a timestamp's local date, hour and ISO day of week in a time zone. -#}
{% macro local_date(ts, tz) -%}
    ({{ ts }} at time zone {{ tz }})::date
{%- endmacro %}

{#- The instant a local day starts: midnight of `day` (a date) in the time zone `tz`. The day
    `day` covers [day_start(day), day_start(day + 1)): 24 hours, or 23/25 on a daylight-saving
    change. A BI tool in any time zone can place a local day on its own clock with it. -#}
{% macro day_start(day, tz) -%}
    (({{ day }})::timestamp at time zone {{ tz }})
{%- endmacro %}

{#- date_part, not extract: extract returns numeric, and casting it back costs a third more per row
    (of tens of millions in a full rebuild); the integer is the same -#}
{% macro local_hour(ts, tz) -%}
    date_part('hour', {{ ts }} at time zone {{ tz }})::integer
{%- endmacro %}

{% macro local_iso_dow(ts, tz) -%}
    date_part('isodow', {{ ts }} at time zone {{ tz }})::integer
{%- endmacro %}

{#-
  A UTC search window that surely contains local day `day` in any time zone (UTC-12 to UTC+14):
  [day - 1 at 00:00 UTC, day + 2 at 00:00 UTC). Joins on it let PostgreSQL use the
  (user_id, <time>) indexes; the exact local_date equality does the real filtering.
-#}
{% macro day_search_from(day) -%}
    (({{ day }} - 1)::timestamp at time zone 'UTC')
{%- endmacro %}

{% macro day_search_to(day) -%}
    (({{ day }} + 2)::timestamp at time zone 'UTC')
{%- endmacro %}

{#-
  Join condition restricting `alias` (rows with user_id, local_date and the timestamp
  `time_column`) to the (user_id, local_date) keys of the CTE `touched`. The search window is
  stated twice, as instants and as the UTC dates they bound (the same rows): the event log and
  the question attempts are indexed by learner and UTC date (study_events_user_day_idx,
  question_attempts_user_day_idx), the material interactions by learner and time.
-#}
{% macro on_touched_user_day(alias, time_column, touched='touched_user_days') -%}
    {{ alias }}.user_id = {{ touched }}.user_id
    and {{ alias }}.local_date = {{ touched }}.local_date
    and {{ alias }}.{{ time_column }} >= {{ day_search_from(touched ~ '.local_date') }}
    and {{ alias }}.{{ time_column }} < {{ day_search_to(touched ~ '.local_date') }}
    and ({{ alias }}.{{ time_column }} at time zone 'UTC')::date
        between {{ touched }}.local_date - 1 and {{ touched }}.local_date + 1
{%- endmacro %}

{#- 'true' when the target database has the citus extension (a Citus cluster, macros/citus.sql),
    else empty, so `{% if is_citus() %}` reads it: asked once per run (the answer is kept in the
    run's graph, which every model of the run shares); empty while dbt parses. -#}
{% macro is_citus() -%}
    {%- if execute -%}
        {%- if graph.get('studyin_is_citus') is none -%}
            {%- do graph.update({'studyin_is_citus': run_query(
                "select exists (select 1 from pg_catalog.pg_extension where extname = 'citus')"
            ).columns[0].values()[0]}) -%}
        {%- endif -%}
        {%- if graph.get('studyin_is_citus') -%}
            true
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}

{#- The planner fence of a LATERAL subquery that looks rows up per key (macros/activity.sql,
    from_touched): `offset 0` on PostgreSQL, which keeps the subquery from being flattened into a
    plain join, so each key is looked up through the indexes whatever the row estimates say.
    Nothing on Citus: it cannot plan an offset (or limit) in a lateral subquery over a distributed
    table that references an intermediate result; without it the lateral is a join on user_id that
    Citus runs shard by shard on the workers, each against its own shard's indexes. -#}
{% macro lateral_fence() -%}
    {%- if not is_citus() -%}
        offset 0
    {%- endif -%}
{%- endmacro %}

{#-
  The FROM clause reading `relation` as `alias`: on an incremental run only its rows matching a
  touched key, through a LATERAL subquery per key of the CTE `touched` (`condition` relates the
  subquery's rows, aliased `keyed`, to that CTE). A lateral subquery that cannot be flattened
  (offset 0) makes PostgreSQL look each touched key up through the relation's indexes whatever its
  row estimates are; a plain join lets a misestimated key set (estimates of a union of recent rows
  are routinely off by 1000x) turn into a full scan and sort of the history. Full refresh, or a
  model that is not incremental (the view int_session_activities_gapped): all rows, without asking
  is_incremental(), which needs the model's own table (a view's unit test has none).
-#}
{% macro from_touched(relation, alias, touched, condition) -%}
    {#- `model` is undefined only where sqlfluff renders the SQL for lint: it lints the incremental branch -#}
    {%- if (model is not defined or model.config.materialized == 'incremental') and is_incremental() -%}
        {{ touched }}
        cross join lateral (
            select keyed.*
            from {{ relation }} as keyed
            where {{ condition }}
            {{ lateral_fence() }}  -- keeps the subquery from being flattened into a plain join (PostgreSQL)
        ) as {{ alias }}
    {%- else -%}
        {{ relation }} as {{ alias }}
    {%- endif -%}
{%- endmacro %}

{#- from_touched for the (user_id, local_date) keys of the CTE touched_user_days. -#}
{% macro from_touched_user_days(relation, alias, time_column) -%}
    {{ from_touched(relation, alias, 'touched_user_days', on_touched_user_day('keyed', time_column)) }}
{%- endmacro %}

{#-
  UTC dates inside the [affected_from, affected_to] activity span of each completed erasure that
  satisfies `since`, a condition on completed_at: pass erasures_since_watermark('completed_at')
  (macros/incremental.sql). A cross-learner mart keyed by UTC date recomputes these dates.
-#}
{% macro erased_utc_dates(since) -%}
    select erased_day::date as activity_date
    from {{ ref('stg_app__deletion_requests') }} as erasures
    cross join lateral generate_series(
        (erasures.affected_from at time zone 'UTC')::date,
        (erasures.affected_to at time zone 'UTC')::date,
        interval '1 day'
    ) as erased_day
    where erasures.is_completed
        and erasures.affected_from is not null
        and {{ since }}
{%- endmacro %}

{#-
  Pre-hook of a cross-learner mart keyed by a UTC date: delete every erased day first.
  delete+insert only deletes keys that the new rows carry, so a day whose only learner was erased
  (it recomputes to no rows at all) would otherwise keep its stale rows.
-#}
{% macro delete_erased_utc_dates(date_column='activity_date') -%}
    {%- if is_incremental() -%}
        delete from {{ this }}
        where {{ date_column }} in ({{ erased_utc_dates(erasures_since_watermark('erasures.completed_at')) }})
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}

{#-
  Sessions with an event received since the model's watermark: the sessions a per-session model
  recomputes whole. `since` is a condition on an unqualified received_at column: pass
  received_since_watermark('received_at') (macros/incremental.sql).
-#}
{% macro touched_session_ids(since) -%}
    select distinct session_id
    from {{ ref('stg_app__study_events') }}
    where
        session_id is not null
        and {{ since }}
{%- endmacro %}

{#-
  (user_id, local_date) keys a per-learner-day mart must recompute: every local day with an
  event, attempt or material interaction received since the model's watermark, and every local
  day of a session such an event belongs to (a late event changes the idle gap of the activity
  after it, which may fall on the next local day). Reads int_session_days_aggregated as already
  updated by this run. `since` is a condition on an unqualified received_at column: pass
  received_since_watermark('received_at') (macros/incremental.sql).
-#}
{% macro touched_activity_user_days(since) -%}
    select
        new_events.user_id,
        new_events.local_date
    from {{ ref('int_study_events_localized') }} as new_events
    where {{ since }}
    union
    select
        new_attempts.user_id,
        new_attempts.local_date
    from {{ ref('int_question_attempts_localized') }} as new_attempts
    where {{ since }}
    union
    select
        new_interactions.user_id,
        new_interactions.local_date
    from {{ ref('int_material_interactions_localized') }} as new_interactions
    where {{ since }}
    union
    select
        session_days.user_id,
        session_days.local_date
    from {{ ref('int_session_days_aggregated') }} as session_days
    where session_days.session_id in ({{ touched_session_ids(since) }})
{%- endmacro %}

{#- Whole milliseconds from `earlier` to `later` (timestamptz), rounded half up: the same value as
    extract(epoch from later - earlier)::numeric(14, 3) * 1000 for a gap that is not negative, in
    bigint arithmetic. date_part's double holds a gap to well under a microsecond. Null when either
    side is null. -#}
{% macro milliseconds_between(later, earlier) -%}
    ((round(date_part('epoch', {{ later }} - {{ earlier }}) * 1000000)::bigint + 500) / 1000)
{%- endmacro %}

{#- Milliseconds (bigint) as seconds, numeric(14, 3): exact. -#}
{% macro milliseconds_to_seconds(milliseconds) -%}
    ({{ milliseconds }} / 1000.0)::numeric(14, 3)
{%- endmacro %}

{#-
  The CTEs of every session activity with the gap since the learner's previous activity in the
  session (int_session_activities_gapped shows them per event; int_session_days_aggregated sums
  them per session and local day): other_events (the log's events but question attempts),
  attempt_events (the attempts from their typed rows, with their correctness), session_events
  (both), ordered (the window: the previous activity and the gap in whole milliseconds) and gapped
  (the gap split into active and idle by var('idle_gap_seconds')). A question attempt's event and
  its typed row carry the same learner, session and time (the matches_event_log test of
  stg_app__question_attempts), so the log is never joined to the attempts: a full build of
  int_session_days_aggregated took 13.6 s instead of 18.2 s at 2,000 learners x 90 days without
  that join. The window is partitioned by session and learner and ordered by local day, then time,
  so rows leave it in (session_id, user_id, local_date) order and a sum per session and local day
  streams off it without a hash of every event. On an incremental run of a model with a
  touched_sessions CTE, each branch reads only the touched sessions' rows.
-#}
{% macro gapped_session_activities() -%}
other_events as (
    select
        events.event_id,
        events.user_id,
        events.session_id,
        events.event_type,
        events.occurred_at,
        events.local_date,
        null::boolean as attempt_is_correct
    from {{ from_touched(
        ref('int_study_events_localized'), 'events', 'touched_sessions',
        'keyed.session_id = touched_sessions.session_id'
    ) }}
    where events.session_id is not null and not events.is_question_attempt
),

attempt_events as (
    select
        attempts.event_id,
        attempts.user_id,
        attempts.session_id,
        'question_attempt' as event_type,
        attempts.answered_at as occurred_at,
        attempts.local_date,
        attempts.is_correct as attempt_is_correct
    from {{ from_touched(
        ref('int_question_attempts_localized'), 'attempts', 'touched_sessions',
        'keyed.session_id = touched_sessions.session_id'
    ) }}
    where attempts.session_id is not null
),

session_events as (
    select * from other_events
    union all
    select * from attempt_events
),

ordered as (
    select
        event_id,
        user_id,
        session_id,
        event_type,
        occurred_at,
        local_date,
        attempt_is_correct,
        lag(occurred_at) over learner_session as previous_occurred_at,
        {{ milliseconds_between('occurred_at', 'lag(occurred_at) over learner_session') }} as gap_milliseconds
    from session_events
    window learner_session as (partition by session_id, user_id order by local_date, occurred_at)
),

gapped as (
    select
        ordered.*,
        coalesce(gap_milliseconds > {{ var('idle_gap_seconds') }} * 1000, false) as is_idle_gap,
        case
            when gap_milliseconds <= {{ var('idle_gap_seconds') }} * 1000 then gap_milliseconds else 0
        end as active_milliseconds,
        case
            when gap_milliseconds > {{ var('idle_gap_seconds') }} * 1000 then gap_milliseconds else 0
        end as idle_milliseconds
    from ordered
)
{%- endmacro %}
