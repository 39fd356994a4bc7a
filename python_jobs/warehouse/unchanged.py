"""The dbt nodes a nightly run can leave alone: their definition and their inputs are as they
were at the last successful run, so running them would rebuild or test the very same rows.

Every night the event sources change, and every model and test downstream of them runs. What
does not change from night to night is skipped (nightly runs only; `--full-checks` and
`--full-refresh` run everything):

  * a **view** whose definition is unchanged and which still exists: a view holds no rows, so new
    data never calls for it to be created again; only a new definition does, or the loss of the
    view (a `table` or `view` parent rebuilt by dbt drops its dependent views, so a view is skipped
    only when each of its model and seed parents is skipped too, or is incremental: written in
    place by a nightly run);
  * a **table model** or **seed** whose definition is unchanged, which exists, whose SQL (with its
    macros) reads no clock (now(), current_date...), and whose every input is an unchanged
    *reference source* or another skipped table, seed or clock-free view: it would write the
    same rows (topic_catalog, int_topic_ancestors_flattened, the seeds, the time spine);
  * a **data test** whose definition is unchanged and whose every input holds the same rows as at
    the last success (an unchanged reference source, a skipped table or seed, or a clock-free view
    over only such inputs), none of them windowed to recent days (macros/test_window.sql).

A *reference source* is an `app` source without a received_at column and under
REFERENCE_MAX_ROWS rows (topics, questions, materials, users, deletion requests...): its
fingerprint is an md5 of its whole content, taken before the run's first build. Event tables
(received_at) and the ml tables (written by the run itself) always count as changed.

A node's *definition* fingerprint covers its file checksum, code, config, test arguments, every
macro it calls (recursively), dbt_project.yml and the run's --vars, and the database's alembic
revision (a migration can change what a `select *` view expands to). The state (fingerprint per
node and per reference source) is table `intermediate.nightly_node_state`, written only when a
whole run succeeded: a failed run leaves the last success's state, so its nodes run again.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from python_jobs.paths import PROJECT_ROOT

STATE_TABLE = "nightly_node_state"
STATE_SCHEMA = "intermediate"
REFERENCE_MAX_ROWS = 100_000
CLOCK = re.compile(
    r"\b(current_date|current_timestamp|localtimestamp|localtime|now\s*\(|clock_timestamp"
    r"|statement_timestamp|transaction_timestamp|run_started_at)",
    re.IGNORECASE,
)
# The test-window override applies a `current_date` window only to models that declare
# meta.test_window_column; those parents already make a test unskippable.
WINDOW_MACROS = frozenset(
    {"macro.studyin.get_where_subquery", "macro.studyin.test_window_condition"}
)
# parents a nightly run never drops: an incremental model is written in place (delete+insert)
IN_PLACE = frozenset({"incremental"})

CREATE_STATE = f"""
create schema if not exists {STATE_SCHEMA};
create table if not exists {STATE_SCHEMA}.{STATE_TABLE} (
    node_id     text primary key,
    fingerprint text not null,
    recorded_at timestamptz not null default now()
);
comment on table {STATE_SCHEMA}.{STATE_TABLE} is
    'Per dbt node and reference source: its fingerprint at the last successful studyin run '
    '(python_jobs/warehouse/unchanged.py); nightly runs skip what is unchanged since.'
"""


@dataclass
class SkipPlan:
    """The nodes a nightly run leaves alone, and what to record once the run has succeeded."""

    skipped: list[str] = field(default_factory=list)  # unique ids
    selectors: list[str] = field(default_factory=list)  # their fqn, for dbt --exclude
    fingerprints: dict[str, str] = field(default_factory=dict)  # every node and ref. source


class _Fingerprints:
    """Definition fingerprints of a parsed manifest's nodes (see the module docstring)."""

    def __init__(self, manifest: Any, salt: str) -> None:
        self._manifest = manifest
        self._salt = salt
        self._macro_closure: dict[str, frozenset[str]] = {}

    def macros(self, ids: Iterable[str]) -> frozenset[str]:
        """Every macro reached from `ids`, themselves included."""
        found: set[str] = set()
        todo = list(ids)
        while todo:
            uid = todo.pop()
            if uid in found or uid not in self._manifest.macros:
                continue
            found.add(uid)
            todo.extend(self._manifest.macros[uid].depends_on.macros)
        return frozenset(found)

    def node(self, node: Any) -> str:
        metadata = getattr(node, "test_metadata", None)
        parts = [
            self._salt,
            str(node.resource_type),
            node.checksum.checksum,
            getattr(node, "raw_code", "") or "",
            json.dumps(node.config.to_dict(), sort_keys=True, default=str),
            json.dumps(metadata.to_dict() if metadata else None, sort_keys=True, default=str),
            *sorted(_parents(node)),
        ]
        parts += [self._manifest.macros[m].macro_sql for m in sorted(self.macros(_macros(node)))]
        return hashlib.sha256("\x00".join(parts).encode()).hexdigest()

    def reads_clock(self, node: Any, ignore: frozenset[str] = frozenset()) -> bool:
        code = [getattr(node, "raw_code", "") or ""]
        code += [
            self._manifest.macros[m].macro_sql
            for m in self.macros(m for m in _macros(node) if m not in ignore)
            if m not in ignore
        ]
        return any(CLOCK.search(text) for text in code)


def _parents(node: Any) -> list[str]:
    """The nodes and sources `node` reads (a seed reads none)."""
    return list(getattr(node.depends_on, "nodes", []) or [])


def _macros(node: Any) -> list[str]:
    return list(getattr(node.depends_on, "macros", []) or [])


def ensure_state_table(conn: psycopg.Connection) -> None:
    conn.execute(CREATE_STATE)
    conn.commit()


def _stored_state(conn: psycopg.Connection) -> dict[str, str]:
    ensure_state_table(conn)
    query = sql.SQL("select node_id, fingerprint from {}.{}").format(
        sql.Identifier(STATE_SCHEMA), sql.Identifier(STATE_TABLE)
    )
    return dict(conn.execute(query).fetchall())


def reference_fingerprints(conn: psycopg.Connection, manifest: Any) -> dict[str, str]:
    """md5 of the whole content of each reference source (module docstring), by unique id."""
    fingerprints = {}
    for uid, source in manifest.sources.items():
        if source.schema != "app":
            continue
        row = conn.execute(
            "select c.reltuples,"
            " exists (select from pg_attribute a where a.attrelid = c.oid"
            " and a.attname = 'received_at' and not a.attisdropped)"
            " from pg_class c join pg_namespace n on n.oid = c.relnamespace"
            " where n.nspname = %s and c.relname = %s",
            (source.schema, source.identifier),
        ).fetchone()
        if row is None or row[1]:
            continue  # missing or an event table: changed
        table = sql.Identifier(source.schema, source.identifier)
        rows = row[0]
        if rows < 0:  # never analyzed: count, up to the limit
            rows = conn.execute(
                sql.SQL("select count(*) from (select from {} limit %s) as t").format(table),
                (REFERENCE_MAX_ROWS,),
            ).fetchone()[0]
        if rows >= REFERENCE_MAX_ROWS:
            continue  # too large to fingerprint every night: changed
        query = sql.SQL(
            "select count(*) || ':' || coalesce(md5(string_agg(md5(t::text), ''"
            " order by md5(t::text))), '') from {} as t"
        ).format(table)
        fingerprints[uid] = conn.execute(query).fetchone()[0]
    return fingerprints


def _existing(conn: psycopg.Connection, nodes: Iterable[Any]) -> set[tuple[str, str]]:
    wanted = [(n.schema, n.alias) for n in nodes]
    if not wanted:
        return set()
    rows = conn.execute(
        "select n.nspname, c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace"
        " where (n.nspname, c.relname) in (select * from unnest(%s::text[], %s::text[]))",
        ([s for s, _ in wanted], [a for _, a in wanted]),
    ).fetchall()
    return {(s, a) for s, a in rows}


def _salt(conn: psycopg.Connection, dbt_vars: list[str]) -> str:
    revision = conn.execute(
        "select string_agg(version_num, ',' order by version_num) from public.alembic_version"
    ).fetchone()[0]
    project = (PROJECT_ROOT / "dbt_project.yml").read_text()
    return hashlib.sha256("\x00".join([revision or "", project, *dbt_vars]).encode()).hexdigest()


def plan_skips(conn: psycopg.Connection, manifest: Any, dbt_vars: list[str]) -> SkipPlan:
    """What tonight's run can leave alone, given the state of the last successful run."""
    stored = _stored_state(conn)
    prints = _Fingerprints(manifest, _salt(conn, dbt_vars))
    current = reference_fingerprints(conn, manifest)
    nodes = {
        uid: node
        for uid, node in manifest.nodes.items()
        if node.resource_type in ("model", "seed", "test")
    }
    current.update({uid: prints.node(node) for uid, node in nodes.items()})
    unchanged = {uid for uid, fp in current.items() if stored.get(uid) == fp}
    builds = [n for uid, n in nodes.items() if n.resource_type != "test" and uid in unchanged]
    existing = _existing(conn, builds)
    skip, same_rows = _closure(manifest, nodes, unchanged, existing, prints)
    tests = [
        uid
        for uid, node in nodes.items()
        if node.resource_type == "test"
        and uid in unchanged
        and _parents(node)
        and all(p in same_rows and not _windowed(manifest, p) for p in _parents(node))
        and not prints.reads_clock(node, ignore=WINDOW_MACROS)
    ]
    skipped = sorted(skip) + sorted(tests)
    return SkipPlan(
        skipped=skipped,
        selectors=[".".join(nodes[uid].fqn) for uid in skipped],
        fingerprints=current,
    )


def _closure(
    manifest: Any,
    nodes: dict[str, Any],
    unchanged: set[str],
    existing: set[tuple[str, str]],
    prints: _Fingerprints,
) -> tuple[set[str], set[str]]:
    """(models and seeds to skip, relations holding the same rows as at the last success),
    sources included in the second; parents are decided before their children."""
    skip: set[str] = set()
    same_rows = {uid for uid in unchanged if uid in manifest.sources}
    for uid in _topological(nodes):
        node = nodes[uid]
        if node.resource_type == "test" or uid not in unchanged:
            continue
        if (node.schema, node.alias) not in existing:
            continue
        kind = _kind(node)
        parents = _parents(node)
        kept = [p in skip or _kind(nodes[p]) in IN_PLACE for p in parents if p in nodes]
        clock_free = not prints.reads_clock(node)
        if kind == "view":
            if all(kept):
                skip.add(uid)
                if clock_free and all(p in same_rows for p in parents):
                    same_rows.add(uid)
        elif kind in ("table", "seed") and clock_free:
            if all(p in same_rows for p in parents):
                skip.add(uid)
                same_rows.add(uid)
    return skip, same_rows


def _kind(node: Any) -> str:
    return str(node.config.materialized) if node.resource_type == "model" else "seed"


def _windowed(manifest: Any, uid: str) -> bool:
    node = manifest.nodes.get(uid)
    return bool(node is not None and node.config.meta.get("test_window_column"))


def _topological(nodes: dict[str, Any]) -> list[str]:
    order: list[str] = []
    seen: set[str] = set()

    def visit(uid: str) -> None:
        stack = [(uid, False)]
        while stack:
            current, done = stack.pop()
            if done:
                order.append(current)
                continue
            if current in seen:
                continue
            seen.add(current)
            stack.append((current, True))
            stack.extend((p, False) for p in _parents(nodes[current]) if p in nodes)

    for uid in nodes:
        visit(uid)
    return order


def record_success(
    conn: psycopg.Connection, plan: SkipPlan, executed: Iterable[str], sources: Iterable[str]
) -> int:
    """After a successful run: the fingerprints of the nodes it ran or skipped and of the
    reference sources; the number of rows written."""
    done = set(executed) | set(plan.skipped) | set(sources)
    rows = [(uid, fp) for uid, fp in plan.fingerprints.items() if uid in done]
    ensure_state_table(conn)
    with conn.cursor() as cur:
        cur.executemany(
            sql.SQL(
                "insert into {}.{} (node_id, fingerprint) values (%s, %s)"
                " on conflict (node_id) do update"
                " set fingerprint = excluded.fingerprint, recorded_at = now()"
            ).format(sql.Identifier(STATE_SCHEMA), sql.Identifier(STATE_TABLE)),
            rows,
        )
    conn.commit()
    return len(rows)
