{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='session_id',
        on_schema_change='fail',
        indexes=[
            {'columns': ['session_id']},
            {'columns': ['user_id', 'local_date']},
        ],
        post_hook="{{ advance_watermark(['stg_app__study_events']) }}",
    )
}}

-- One row per event that belongs to a session, with the gap since the session's previous activity
-- split into active and idle seconds: a gap longer than var('idle_gap_seconds') is idle as a whole.
-- Each gap is attributed to the activity that ends it (and so to that activity's local day).
-- Incremental: every session with an event received since the watermark is recomputed whole.
with

{% if is_incremental() %}
    touched_sessions as (
        select distinct session_id
        from {{ ref('stg_app__study_events') }}
        where
            session_id is not null
            and {{ received_since_watermark('received_at') }}
    ),
{% endif %}

session_events as (
    select
        events.event_id,
        events.user_id,
        events.session_id,
        events.event_type,
        events.occurred_at,
        events.local_date
    from {{ from_touched(
        ref('int_study_events_localized'), 'events', 'touched_sessions',
        'keyed.session_id = touched_sessions.session_id'
    ) }}
    where events.session_id is not null
),

ordered as (
    select
        event_id,
        user_id,
        session_id,
        event_type,
        occurred_at,
        local_date,
        row_number() over session_order as activity_number,
        lag(occurred_at) over session_order as previous_occurred_at
    from session_events
    window session_order as (partition by session_id order by occurred_at, event_id)
),

measured as (
    select
        event_id,
        user_id,
        session_id,
        event_type,
        occurred_at,
        local_date,
        activity_number,
        previous_occurred_at,
        extract(epoch from occurred_at - previous_occurred_at)::numeric(14, 3) as gap_seconds
    from ordered
),

final as (
    select
        event_id,
        user_id,
        session_id,
        event_type,
        occurred_at,
        local_date,
        activity_number::integer as activity_number,
        previous_occurred_at,
        gap_seconds,
        coalesce(gap_seconds > {{ var('idle_gap_seconds') }}, false) as is_idle_gap,
        (case
            when gap_seconds <= {{ var('idle_gap_seconds') }} then gap_seconds else 0
        end)::numeric(14, 3) as active_seconds,
        (case
            when gap_seconds > {{ var('idle_gap_seconds') }} then gap_seconds else 0
        end)::numeric(14, 3) as idle_seconds
    from measured
)

select * from final
