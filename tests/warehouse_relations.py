"""The warehouse's relations as tests read them: order-independent checksums of the tables dbt
builds (to compare two builds: incremental vs full refresh, single server vs Citus cluster), and
the relations that still hold a learner (to prove an erasure)."""

from __future__ import annotations

import uuid

import psycopg
from psycopg import sql

# Tables whose rows hold the time of the run, not data.
RUN_TIME_TABLES = ("incremental_watermarks", "warehouse_freshness")


def warehouse_tables(conn: psycopg.Connection, mart_views: bool = False) -> list[tuple[str, str]]:
    """Every table dbt builds incrementally or rebuilds (intermediate and marts), and the views
    of marts too when `mart_views`."""
    rows = conn.execute(
        "select table_schema, table_name from information_schema.tables"
        " where table_schema in ('intermediate', 'marts') and table_name <> all(%s)"
        " and (table_type = 'BASE TABLE' or (%s and table_schema = 'marts')) order by 1, 2",
        (list(RUN_TIME_TABLES), mart_views),
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


def checksums(url: str, mart_views: bool = False) -> dict[str, str]:
    """Row count and an order-independent checksum of each warehouse table (and view of marts
    when `mart_views`)."""
    with psycopg.connect(url) as conn:
        out = {}
        for schema, table in warehouse_tables(conn, mart_views):
            query = sql.SQL(
                "select count(*) || ':' || coalesce(md5(string_agg(md5(t::text), ''"
                " order by md5(t::text))), '') from {}.{} as t"
            ).format(sql.Identifier(schema), sql.Identifier(table))
            out[f"{schema}.{table}"] = conn.execute(query).fetchone()[0]
    return out


def relations_with_user_id(conn: psycopg.Connection, schemas: list[str]) -> list[tuple[str, str]]:
    """Every table or view of `schemas` with a user_id column."""
    rows = conn.execute(
        "select distinct table_schema, table_name from information_schema.columns "
        "where column_name = 'user_id' and table_schema = any(%s) order by 1, 2",
        (schemas,),
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


def relations_holding(
    conn: psycopg.Connection, relations: list[tuple[str, str]], user: uuid.UUID
) -> list[str]:
    """Those of `relations` that have a row of `user`."""
    found = []
    for schema, table in relations:
        query = sql.SQL("select count(*) from {}.{} where user_id = %s").format(
            sql.Identifier(schema), sql.Identifier(table)
        )
        if conn.execute(query, (user,)).fetchone()[0]:
            found.append(f"{schema}.{table}")
    return found
