{#-
  A typed table and the event log agree: every event of `event_type` in `log` has exactly one row
  in `model` with the same learner, session and time (`time_column`), and every row of `model` has
  its event. Fails with each event_id where they differ. The tracker writes both in one
  transaction and erasure deletes both; models that read one in place of the other rely on it.
-#}
{% test matches_event_log(model, event_type, time_column, log) %}

with

log_events as (
    select
        event_id,
        user_id,
        session_id,
        occurred_at
    from {{ log }}
    where event_type = '{{ event_type }}'
),

typed_rows as (
    select
        event_id,
        user_id,
        session_id,
        {{ time_column }} as occurred_at
    from {{ model }}
),

mismatched as (
    select
        coalesce(log_events.event_id, typed_rows.event_id) as event_id,
        log_events.event_id is null as missing_from_log,
        typed_rows.event_id is null as missing_typed_row
    from log_events
    full join typed_rows on log_events.event_id = typed_rows.event_id
    where
        log_events.event_id is null
        or typed_rows.event_id is null
        or log_events.user_id <> typed_rows.user_id
        or log_events.session_id is distinct from typed_rows.session_id
        or log_events.occurred_at <> typed_rows.occurred_at
)

select * from mismatched

{% endtest %}
