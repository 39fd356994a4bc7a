"""Right to erasure: a learner's deletion request is carried out on the next pipeline run.

The step finds every table with a ``user_id`` column in the warehouse schemas (so a new mart is
covered without touching this file), deletes the learner's rows there, then calls
``app.delete_user`` which cascades through the OLTP tables (the one way rows leave the append-only
event log) and deletes the refused input in ``app.rejected_events`` that claimed the learner or
mentions their id in any spelling (any case, with or without hyphens, braces or ``urn:uuid:``: a
payload that could not be parsed still names them). The request row keeps no identifier: only a
SHA-256 of it, and the time span of the erased activity, which tells incremental models that
aggregate across learners which days to recompute. The tracker hashes the UUID-shaped text of every
payload it refuses and redacts the ids whose hash a request holds, so a payload sent after the
erasure does not store the id again.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

WAREHOUSE_SCHEMAS = ("staging", "intermediate", "marts", "ml", "sim")


@dataclass(frozen=True)
class Erasure:
    request_id: int
    rows_deleted: int
    affected_from: datetime | None
    affected_to: datetime | None


def subject_hash(user_id: UUID | str) -> str:
    return hashlib.sha256(str(user_id).encode()).hexdigest()


def request_deletion(conn: psycopg.Connection, user_id: UUID | str) -> int:
    """Record a deletion request (idempotent while one is pending); return its id. An id that is
    no learner's (a typo, or a learner already erased) is refused with ValueError: nothing is
    recorded."""
    uid = UUID(str(user_id))
    known = conn.execute("select 1 from app.users where id = %s", (uid,)).fetchone()
    if not known:
        raise ValueError(f"no learner {uid} (never existed, or already erased): nothing to delete")
    row = conn.execute(
        """
        insert into app.deletion_requests (user_id, subject_sha256) values (%s, %s)
        on conflict (user_id) where completed_at is null do update set user_id = excluded.user_id
        returning id
        """,
        (uid, subject_hash(uid)),
    ).fetchone()
    conn.commit()
    return int(row[0])


def user_tables(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """Every base table with a user_id column in the warehouse schemas."""
    rows = conn.execute(
        """
        select c.table_schema, c.table_name
        from information_schema.columns as c
        join information_schema.tables as t
            on t.table_schema = c.table_schema and t.table_name = c.table_name
        where c.column_name = 'user_id'
          and t.table_type = 'BASE TABLE'
          and c.table_schema = any(%s)
        order by 1, 2
        """,
        (list(WAREHOUSE_SCHEMAS),),
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


def apply_deletions(conn: psycopg.Connection) -> list[Erasure]:
    """Carry out every pending request, each in its own transaction."""
    pending = conn.execute(
        "select id, user_id from app.deletion_requests where completed_at is null order by id"
    ).fetchall()
    conn.commit()
    done: list[Erasure] = []
    for request_id, user_id in pending:
        with conn.transaction():
            span = conn.execute(
                "select min(occurred_at), max(occurred_at) from app.study_events"
                " where user_id = %s",
                (user_id,),
            ).fetchone()
            deleted = 0
            for schema, table in user_tables(conn):
                cur = conn.execute(
                    sql.SQL("delete from {}.{} where user_id = %s").format(
                        sql.Identifier(schema), sql.Identifier(table)
                    ),
                    (user_id,),
                )
                deleted += cur.rowcount
            conn.execute("select app.delete_user(%s)", (user_id,))
            conn.execute(
                """
                update app.deletion_requests
                set completed_at = clock_timestamp(), user_id = null,
                    affected_from = %s, affected_to = %s
                where id = %s
                """,
                (span[0], span[1], request_id),
            )
        log.info("erased deletion request %s (%s warehouse rows)", request_id, deleted)
        done.append(Erasure(request_id, deleted, span[0], span[1]))
    return done
