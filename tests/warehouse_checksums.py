"""Order-independent checksums of the tables dbt builds, for tests that compare two builds
(incremental vs full refresh, single server vs Citus cluster)."""

from __future__ import annotations

import psycopg
from psycopg import sql

# Tables whose rows hold the time of the run, not data.
RUN_TIME_TABLES = ("incremental_watermarks", "warehouse_freshness")


def warehouse_tables(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """Every table dbt builds incrementally or rebuilds (intermediate and marts)."""
    rows = conn.execute(
        "select table_schema, table_name from information_schema.tables"
        " where table_schema in ('intermediate', 'marts') and table_type = 'BASE TABLE'"
        " and table_name <> all(%s) order by 1, 2",
        (list(RUN_TIME_TABLES),),
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


def checksums(url: str) -> dict[str, str]:
    """Row count and an order-independent checksum of each warehouse table."""
    with psycopg.connect(url) as conn:
        out = {}
        for schema, table in warehouse_tables(conn):
            query = sql.SQL(
                "select count(*) || ':' || coalesce(md5(string_agg(md5(t::text), ''"
                " order by md5(t::text))), '') from {}.{} as t"
            ).format(sql.Identifier(schema), sql.Identifier(table))
            out[f"{schema}.{table}"] = conn.execute(query).fetchone()[0]
    return out
