"""Two plain-SQL yardsticks the warehouse's own runs are measured against, in the same run.

The nightly floor (`measure_floor`): the least work a nightly run can do, written by hand in plain
SQL. It reads the rows *received* since a given instant (the newest `received_at` before the day
was delivered) from the event log and the typed tables, derives the four kinds of keys those rows
touch, and rewrites every touched key from that key's whole history into scratch tables of schema
`bench_floor` (delete + insert, the strategy of the incremental marts). In one transaction,
committed:

  1. read: `app.study_events`, `app.question_attempts`, `app.material_interactions` where
     `received_at > since` (their BRIN indexes on received_at) into temporary tables, analyzed;
  2. touched keys: learner x local day (the day in the learner's time zone, from all three),
     learner x topic (attempts; interactions through their material's topic), topic x UTC day
     (attempts), session (events with a session);
  3. rewrite, each from the key's whole history through whichever of the app's indexes the
     planner picks (learner and UTC day, learner and topic, session, BRIN on the time):
       - `user_days` (daily_user_stats-like): events, sessions, attempts, correct, first attempts,
         hints, material seconds, completed materials per learner and local day;
       - `user_topics` (topic_mastery-like): attempts, correct, first and last answer, material
         seconds per learner and topic;
       - `topic_days` (topic_daily_stats-like): attempts, correct, distinct learners per topic and
         UTC day;
       - `sessions` (session_efficiency-like): events, first and last event per session.

The scratch tables hold every key of the history (with a unique index on the key, as the marts
have), so deletes and inserts hit tables of a mart's size. `prepare_floor` builds them once per
history, untimed, before the first measured day; each floor run then keeps them current.

The single-pass GROUP BY (`measure_group_by`): one statement over the whole log, left-joined to
the typed rows by event_id, grouped by learner and UTC day (events, attempts, correct answers,
material seconds), written to a temporary table. Its events/s is the rate a full rebuild of
every model is compared with.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

import psycopg

SCHEMA = "bench_floor"

# ----------------------------------------------------------------------------- scratch tables
# Each aggregate is written twice: over the whole history (prepare), and over the touched keys
# (the floor). Both share the select lists below, so the two can never drift apart.

USER_DAY_COLUMNS = """
    user_id uuid not null, local_date date not null, events bigint not null,
    sessions bigint not null, attempts bigint not null, correct bigint not null,
    first_attempts bigint not null, hints bigint not null, material_seconds bigint not null,
    materials_completed bigint not null"""
USER_TOPIC_COLUMNS = """
    user_id uuid not null, topic_id integer not null, attempts bigint not null,
    correct bigint not null, first_answered_at timestamptz, last_answered_at timestamptz,
    material_seconds bigint not null"""
TOPIC_DAY_COLUMNS = """
    topic_id integer not null, activity_date date not null, attempts bigint not null,
    correct bigint not null, learners bigint not null"""
SESSION_COLUMNS = """
    session_id uuid not null, user_id uuid not null, events bigint not null,
    first_at timestamptz not null, last_at timestamptz not null"""

TABLES = {
    "user_days": (USER_DAY_COLUMNS, "user_id, local_date"),
    "user_topics": (USER_TOPIC_COLUMNS, "user_id, topic_id"),
    "topic_days": (TOPIC_DAY_COLUMNS, "topic_id, activity_date"),
    "sessions": (SESSION_COLUMNS, "session_id"),
}

EVENT_STATS = "count(*) as events, count(distinct session_id) as sessions"
ATTEMPT_STATS = """count(*) as attempts, count(*) filter (where is_correct) as correct,
    count(*) filter (where attempt_number = 1) as first_attempts,
    count(*) filter (where hint_used) as hints"""
MATERIAL_STATS = """coalesce(sum(active_seconds), 0) as material_seconds,
    count(distinct material_id) filter (where interaction_type = 'complete')
        as materials_completed"""

PREPARE = {
    "user_days": f"""
        with located as (
            select e.user_id, (e.occurred_at at time zone u.timezone)::date as local_date,
                   e.session_id
            from app.study_events as e join app.users as u on u.id = e.user_id
        ),
        events as (select user_id, local_date, {EVENT_STATS} from located group by 1, 2),
        attempts as (
            select a.user_id, (a.answered_at at time zone u.timezone)::date as local_date,
                   {ATTEMPT_STATS}
            from app.question_attempts as a join app.users as u on u.id = a.user_id
            group by 1, 2
        ),
        materials as (
            select m.user_id, (m.occurred_at at time zone u.timezone)::date as local_date,
                   {MATERIAL_STATS}
            from app.material_interactions as m join app.users as u on u.id = m.user_id
            group by 1, 2
        )
        select e.user_id, e.local_date, e.events, e.sessions,
               coalesce(a.attempts, 0), coalesce(a.correct, 0), coalesce(a.first_attempts, 0),
               coalesce(a.hints, 0), coalesce(m.material_seconds, 0),
               coalesce(m.materials_completed, 0)
        from events as e
        left join attempts as a using (user_id, local_date)
        left join materials as m using (user_id, local_date)""",
    "user_topics": """
        with attempts as (
            select user_id, topic_id, count(*) as attempts,
                   count(*) filter (where is_correct) as correct,
                   min(answered_at) as first_at, max(answered_at) as last_at
            from app.question_attempts group by 1, 2
        ),
        materials as (
            select m.user_id, x.topic_id, sum(m.active_seconds) as material_seconds
            from app.material_interactions as m join app.materials as x on x.id = m.material_id
            group by 1, 2
        )
        select user_id, topic_id, coalesce(a.attempts, 0), coalesce(a.correct, 0),
               a.first_at, a.last_at, coalesce(m.material_seconds, 0)
        from attempts as a full join materials as m using (user_id, topic_id)""",
    "topic_days": """
        select topic_id, (answered_at at time zone 'UTC')::date, count(*),
               count(*) filter (where is_correct), count(distinct user_id)
        from app.question_attempts group by 1, 2""",
    "sessions": """
        select session_id, min(user_id::text)::uuid, count(*), min(occurred_at), max(occurred_at)
        from app.study_events where session_id is not null group by 1""",
}

# ----------------------------------------------------------------------------- the floor

READ_NEW = [
    """create temp table new_events on commit drop as
       select user_id, session_id, occurred_at from app.study_events
       where received_at > %(since)s""",
    """create temp table new_attempts on commit drop as
       select user_id, topic_id, answered_at from app.question_attempts
       where received_at > %(since)s""",
    """create temp table new_materials on commit drop as
       select m.user_id, x.topic_id, m.occurred_at
       from app.material_interactions as m join app.materials as x on x.id = m.material_id
       where m.received_at > %(since)s""",
    "analyze new_events, new_attempts, new_materials",
]

TOUCHED = [
    """create temp table touched_user_days on commit drop as
       select user_id, local_date,
              (local_date::timestamp at time zone timezone) as day_from,
              ((local_date + 1)::timestamp at time zone timezone) as day_to
       from (
           select distinct n.user_id, (n.at at time zone u.timezone)::date as local_date, u.timezone
           from (
               select user_id, occurred_at as at from new_events
               union all select user_id, answered_at from new_attempts
               union all select user_id, occurred_at from new_materials
           ) as n
           join app.users as u on u.id = n.user_id
       ) as days""",
    """create temp table touched_user_topics on commit drop as
       select user_id, topic_id from new_attempts
       union select user_id, topic_id from new_materials""",
    """create temp table touched_topic_days on commit drop as
       select distinct topic_id, (answered_at at time zone 'UTC')::date as activity_date
       from new_attempts""",
    """create temp table touched_sessions on commit drop as
       select distinct session_id from new_events where session_id is not null""",
    "analyze touched_user_days, touched_user_topics, touched_topic_days, touched_sessions",
]

REWRITE = [
    f"""delete from {SCHEMA}.user_days as d using touched_user_days as t
        where d.user_id = t.user_id and d.local_date = t.local_date""",
    f"""insert into {SCHEMA}.user_days
        select t.user_id, t.local_date, e.events, e.sessions, a.attempts, a.correct,
               a.first_attempts, a.hints, m.material_seconds, m.materials_completed
        from touched_user_days as t
        cross join lateral (
            select {EVENT_STATS} from app.study_events
            where user_id = t.user_id and occurred_at >= t.day_from and occurred_at < t.day_to
        ) as e
        cross join lateral (
            select {ATTEMPT_STATS} from app.question_attempts
            where user_id = t.user_id and answered_at >= t.day_from and answered_at < t.day_to
        ) as a
        cross join lateral (
            select {MATERIAL_STATS} from app.material_interactions
            where user_id = t.user_id and occurred_at >= t.day_from and occurred_at < t.day_to
        ) as m
        where e.events > 0""",
    f"""delete from {SCHEMA}.user_topics as d using touched_user_topics as t
        where d.user_id = t.user_id and d.topic_id = t.topic_id""",
    f"""insert into {SCHEMA}.user_topics
        select t.user_id, t.topic_id, a.attempts, a.correct, a.first_at, a.last_at,
               m.material_seconds
        from touched_user_topics as t
        cross join lateral (
            select count(*) as attempts, count(*) filter (where is_correct) as correct,
                   min(answered_at) as first_at, max(answered_at) as last_at
            from app.question_attempts where user_id = t.user_id and topic_id = t.topic_id
        ) as a
        cross join lateral (
            select coalesce(sum(m.active_seconds), 0) as material_seconds
            from app.material_interactions as m join app.materials as x on x.id = m.material_id
            where m.user_id = t.user_id and x.topic_id = t.topic_id
        ) as m""",
    f"""delete from {SCHEMA}.topic_days as d using touched_topic_days as t
        where d.topic_id = t.topic_id and d.activity_date = t.activity_date""",
    # one pass over each touched UTC day's attempts, grouped by topic (as topic_daily_stats reads
    # a touched day): a lookup per topic-day read the whole day once per topic, more than 20
    # minutes for the 1,561 topic-days of one xlarge day against 75 s. The day's touched topics
    # are matched inside each day's read, which `offset 0` keeps a plan of its own: with the
    # match outside it, the planner once read a day (or the learner-topic index) per topic-day
    # again (12 minutes and cancelled, on the 10-day xlarge history)
    f"""insert into {SCHEMA}.topic_days
        select a.topic_id, d.activity_date, count(*), count(*) filter (where a.is_correct),
               count(distinct a.user_id)
        from (select distinct activity_date from touched_topic_days) as d
        cross join lateral (
            select topic_id, user_id, is_correct from app.question_attempts
            where answered_at >= (d.activity_date::timestamp at time zone 'UTC')
                and answered_at < ((d.activity_date + 1)::timestamp at time zone 'UTC')
                and topic_id in (
                    select t.topic_id from touched_topic_days as t
                    where t.activity_date = d.activity_date
                )
            offset 0
        ) as a
        group by a.topic_id, d.activity_date""",
    f"""delete from {SCHEMA}.sessions as d using touched_sessions as t
        where d.session_id = t.session_id""",
    f"""insert into {SCHEMA}.sessions
        select t.session_id, e.user_id, e.events, e.first_at, e.last_at
        from touched_sessions as t
        cross join lateral (
            select min(user_id::text)::uuid as user_id, count(*) as events,
                   min(occurred_at) as first_at, max(occurred_at) as last_at
            from app.study_events where session_id = t.session_id
        ) as e""",
]

GROUP_BY = """
    create temp table bench_group_by as
    select e.user_id, (e.occurred_at at time zone 'UTC')::date as day, count(*) as events,
           count(a.event_id) as attempts, count(*) filter (where a.is_correct) as correct,
           coalesce(sum(m.active_seconds), 0) as material_seconds
    from app.study_events as e
    left join app.question_attempts as a on a.event_id = e.event_id
    left join app.material_interactions as m on m.event_id = e.event_id
    group by 1, 2"""


@dataclass(frozen=True)
class FloorFigures:
    """One floor run: seconds per phase and in all, the new rows read and the keys rewritten."""

    seconds: float
    read_s: float
    touched_s: float
    rewrite_s: float
    new_rows: int
    touched_keys: int


def prepared(conn: psycopg.Connection) -> bool:
    return bool(
        conn.execute(
            "select count(*) = %s from pg_tables where schemaname = %s and tablename = any(%s)",
            (len(TABLES), SCHEMA, list(TABLES)),
        ).fetchone()[0]
    )


def prepare_floor(url: str) -> float:
    """The scratch tables over the whole history, with their keys' unique indexes (untimed by
    the figures: a mart's first build); seconds taken. Rebuilt from scratch when called again."""
    started = time.monotonic()
    with psycopg.connect(url) as conn:
        conn.execute(f"drop schema if exists {SCHEMA} cascade")
        conn.execute(f"create schema {SCHEMA}")
        for name, (columns, key) in TABLES.items():
            conn.execute(f"create table {SCHEMA}.{name} ({columns})")
            conn.execute(f"insert into {SCHEMA}.{name} {PREPARE[name]}")
            conn.execute(f"create unique index on {SCHEMA}.{name} ({key})")
        conn.commit()
        conn.autocommit = True
        conn.execute(f"vacuum (analyze) {', '.join(f'{SCHEMA}.{t}' for t in TABLES)}")
    return time.monotonic() - started


def newest_received_at(url: str) -> datetime | None:
    """The newest received_at of the tables the floor reads: `since` for the next delivery."""
    with psycopg.connect(url) as conn:
        return conn.execute(
            "select greatest((select max(received_at) from app.study_events),"
            " (select max(received_at) from app.question_attempts),"
            " (select max(received_at) from app.material_interactions))"
        ).fetchone()[0]


def _timed(conn: psycopg.Connection, statements: list[str], since: datetime) -> float:
    started = time.monotonic()
    for statement in statements:
        conn.execute(statement, {"since": since} if "%(since)s" in statement else None)
    return time.monotonic() - started


def measure_floor(url: str, since: datetime) -> FloorFigures:
    """Read the rows received after `since` and rewrite every key they touch (module docstring),
    in one committed transaction; the scratch tables must exist (prepare_floor)."""
    with psycopg.connect(url) as conn:
        if not prepared(conn):
            raise RuntimeError(f"the floor's scratch tables are missing: prepare_floor({SCHEMA})")
        read_s = _timed(conn, READ_NEW, since)
        touched_s = _timed(conn, TOUCHED, since)
        rewrite_s = _timed(conn, REWRITE, since)
        # counted outside the clock, before the commit drops the temporary tables
        new_rows, touched_keys = conn.execute(
            "select (select count(*) from new_events) + (select count(*) from new_attempts)"
            " + (select count(*) from new_materials),"
            " (select count(*) from touched_user_days) + (select count(*) from touched_user_topics)"
            " + (select count(*) from touched_topic_days) + (select count(*) from touched_sessions)"
        ).fetchone()
        started = time.monotonic()
        conn.commit()
        commit_s = time.monotonic() - started
    return FloorFigures(
        read_s + touched_s + rewrite_s + commit_s,
        read_s,
        touched_s,
        rewrite_s,
        new_rows,
        touched_keys,
    )


def measure_group_by(url: str) -> dict[str, float]:
    """One single-pass GROUP BY over the whole log joined to its typed rows (module docstring):
    seconds, events read and events/s. The result goes to a temporary table, then is dropped."""
    with psycopg.connect(url) as conn:
        events = conn.execute("select count(*) from app.study_events").fetchone()[0]
        started = time.monotonic()
        conn.execute(GROUP_BY)
        seconds = time.monotonic() - started
        groups = conn.execute("select count(*) from bench_group_by").fetchone()[0]
        conn.rollback()
    return {
        "events": events,
        "groups": groups,
        "seconds": seconds,
        "events_per_s": events / seconds,
    }
