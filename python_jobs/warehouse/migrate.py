"""Alembic from Python: the pipeline, the CLI and the tests all migrate through here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from alembic.config import Config
from alembic.util import CommandError
from psycopg import errors

from alembic import command
from python_jobs.paths import ALEMBIC_INI

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection


class MigrationError(RuntimeError):
    """Alembic refused the request (e.g. an unknown revision); the message says why."""


def alembic_config(url: str) -> Config:
    config = Config(str(ALEMBIC_INI))
    config.attributes["url"] = url
    config.attributes["configure_logging"] = False
    return config


def upgrade(url: str, revision: str = "head") -> None:
    try:
        command.upgrade(alembic_config(url), revision)
    except CommandError as err:
        raise MigrationError(f"cannot upgrade to {revision!r}: {err}") from err


def downgrade(url: str, revision: str = "base") -> None:
    try:
        command.downgrade(alembic_config(url), revision)
    except CommandError as err:
        raise MigrationError(f"cannot downgrade to {revision!r}: {err}") from err


def ensure_partitions(conn, months_ahead: int = 3) -> int:
    """Create study_events partitions from the current month to `months_ahead` months ahead."""
    row = conn.execute(
        "select app.ensure_study_event_partitions(now(), %s)", (months_ahead,)
    ).fetchone()
    conn.commit()
    return int(row[0])


def summarize_brin_ranges(conn, lock_timeout: str = "2s") -> tuple[int, list[str]]:
    """Summarize every block range of the app tables' BRIN indexes that has no summary yet.

    A range without a summary matches every BRIN search, so each "received since the watermark"
    scan of the nightly models reads all of its blocks. Autovacuum summarizes ranges only when it
    vacuums a table, and it vacuums after inserts amounting to a fifth of the table: a month
    partition is left with an unsummarized tail (up to a sixth of its blocks) once its month is
    over, read again by every model every night, so the nightly cost would grow with the number of
    old partitions. Summarizing reads only the ranges without a summary: after the first time, the
    blocks written since the last run.

    An index whose table another maintenance command holds (an anti-wraparound VACUUM, which is
    not cancelled for us and summarizes the ranges itself; a manual ANALYZE) is skipped after
    `lock_timeout` rather than waited for; the next run summarizes it. Returns the number of
    ranges summarized and the indexes skipped.
    """
    indexes = conn.execute(
        "select index_class.oid::regclass::text from pg_class as index_class"
        " join pg_am as access_method on access_method.oid = index_class.relam"
        " where access_method.amname = 'brin' and index_class.relkind = 'i'"
        " and index_class.relnamespace = 'app'::regnamespace order by 1"
    ).fetchall()
    conn.commit()
    summarized, skipped = 0, []
    for (index,) in indexes:
        try:
            with conn.transaction():
                conn.execute("select set_config('lock_timeout', %s, true)", (lock_timeout,))
                row = conn.execute("select brin_summarize_new_values(%s::regclass)", (index,))
                summarized += int(row.fetchone()[0])
        except errors.LockNotAvailable:
            skipped.append(index)
    return summarized, skipped


# Views reading a column a migration drops or rewrites (the dbt staging views of app, and the
# views built on them) would make its ALTER TABLE fail: they are dropped, with a notice, and the
# next dbt build (``studyin run`` builds after migrating) makes them again from the models.
DROP_VIEWS_READING = """
do $$
declare
    v regclass;
begin
    for v in
        select distinct r.ev_class::regclass
        from pg_depend as d
        inner join pg_rewrite as r on d.classid = 'pg_rewrite'::regclass and d.objid = r.oid
        inner join pg_attribute as a
            on d.refobjid = a.attrelid and d.refobjsubid = a.attnum
        where d.refclassid = 'pg_class'::regclass
            and d.refobjid = '{table}'::regclass
            and a.attname = any('{{{columns}}}'::text[])
            and r.ev_class <> d.refobjid
    loop
        -- a view dropped by the cascade of an earlier one is gone already
        if to_regclass(v::text) is not null then
            raise notice 'dropping view % (and the views on it): it reads %.{{{columns}}}, which '
                'migration {revision} changes; the next dbt build makes it again', v, '{table}';
            execute format('drop view %s cascade', v);
        end if;
    end loop;
end;
$$
"""


def drop_views_reading(table: str, columns: list[str], revision: str) -> str:
    """SQL dropping every view that reads one of `table`'s `columns` (see DROP_VIEWS_READING)."""
    return DROP_VIEWS_READING.format(table=table, columns=",".join(columns), revision=revision)


def has_citus(bind: Connection) -> bool:
    """Whether the database alembic migrates over `bind` has the citus extension (alembic/env.py
    and the migrations that differ on a cluster)."""
    return bool(bind.exec_driver_sql("select 1 from pg_extension where extname = 'citus'").first())
