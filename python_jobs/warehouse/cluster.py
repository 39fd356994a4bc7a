"""A local Citus cluster from the embedded PostgreSQL's binaries: one coordinator, N workers.

``studyin db start --cluster N`` makes (first time) and starts the nodes, each a data folder under
``.studyin/cluster/`` (``coordinator``, ``worker1`` ... ``workerN``) with the single server's rules:
127.0.0.1 only, every login gives the superuser's password (SCRAM; one password for all nodes,
kept in each data folder). The coordinator listens on STUDYIN_CLUSTER_PORT (default STUDYIN_PG_PORT
+ 10) and worker i on the coordinator's port + i. Every node preloads Citus; when the embedded
installation has no ``citus.so``, the build script (STUDYIN_CITUS_BUILD, default
``../shared/tools/build-citus.sh`` beside the checkout) builds it into that installation first.

Citus keeps its metadata per database: ``prepare_database`` creates a database on every node, the
extension in each, and registers the workers with the coordinator (the coordinator reaches the
workers with the password through ``pg_dist_authinfo``). Clients, Alembic and dbt talk to the
coordinator only.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psycopg

from python_jobs.paths import PROJECT_ROOT
from python_jobs.warehouse import db

ENV_BUILD = "STUDYIN_CITUS_BUILD"
DEFAULT_BUILD = PROJECT_ROOT.parent / "shared" / "tools" / "build-citus.sh"
SHARDS_PER_WORKER = 4  # citus.shard_count of the local cluster: small tables, 2 cores

# The single server's settings with a smaller buffer cache (several servers share the machine),
# Citus preloaded, and node-to-node connections without TLS (they stay on 127.0.0.1).
NODE_SETTINGS = db.SERVER_SETTINGS | {
    "shared_buffers": "256MB",
    "shared_preload_libraries": "citus",
    "citus.node_conninfo": "sslmode=disable",
}


@dataclass(frozen=True)
class Node:
    name: str
    pgdata: Path
    port: int

    def url(self, dbname: str = db.DEFAULT_DB) -> str:
        return db.node_url(self.pgdata, self.port, dbname)


def nodes(workers: int) -> list[Node]:
    """The coordinator first, then the workers."""
    port = db.cluster_port()
    made = [Node("coordinator", db.COORDINATOR_DATA, port)]
    for i in range(1, workers + 1):
        made.append(Node(f"worker{i}", db.CLUSTER_DIR / f"worker{i}", port + i))
    return made


def existing_workers() -> int:
    """How many worker data folders the cluster has (0 before it is made)."""
    return sum(1 for p in db.CLUSTER_DIR.glob("worker*") if (p / "PG_VERSION").exists())


# --------------------------------------------------------------------------- Citus build


def pg_config() -> Path:
    return db._pg_bin() / "pg_config"


def citus_library() -> Path:
    result = subprocess.run(
        [str(pg_config()), "--pkglibdir"], text=True, capture_output=True, check=True
    )
    return Path(result.stdout.strip()) / "citus.so"


def build_script() -> Path:
    return Path(os.environ.get(ENV_BUILD) or DEFAULT_BUILD)


def ensure_citus() -> None:
    """Build Citus into the embedded installation unless its citus.so is already there."""
    if citus_library().exists():
        return
    script = build_script()
    if not script.is_file():
        raise db.DatabaseError(
            f"Citus is not installed in the embedded PostgreSQL ({citus_library()} is missing) and "
            f"the build script {script} does not exist: set {ENV_BUILD} to the path of "
            "build-citus.sh (it builds Citus 14 from its source tarball), or install citus.so "
            "into that folder yourself"
        )
    print(f"building Citus into the embedded PostgreSQL with {script} (a few minutes) ...")
    result = subprocess.run([str(script), str(pg_config())], text=True, capture_output=True)
    if result.returncode != 0 or not citus_library().exists():
        output = (result.stdout + result.stderr)[-3000:]
        raise db.DatabaseError(
            f"building Citus with {script} failed (exit {result.returncode}):\n{output}\n"
            "fix what the output names (e.g. a missing compiler or -dev package), then start again"
        )


# --------------------------------------------------------------------------- lifecycle


def _check_shape(workers: int) -> None:
    if workers < 1:
        raise db.DatabaseError(f"a cluster needs at least one worker, got {workers}")
    have = existing_workers()
    if have > workers:  # fewer: a start that stopped half-way, the rest is made now
        raise db.DatabaseError(
            f"the cluster in {db.CLUSTER_DIR} has {have} workers, not {workers}: start it with "
            f"--cluster {have}, or stop it and remove {db.CLUSTER_DIR} to make a new one"
        )


def _start_node(node: Node, password: str) -> None:
    node.pgdata.mkdir(parents=True, exist_ok=True)
    db._prepare_root_permissions(node.pgdata)
    if not (node.pgdata / "PG_VERSION").exists():
        db._initdb(node.pgdata, password)
    if not db.server_running(node.pgdata):
        db._pg_ctl_start(node.pgdata, node.port, NODE_SETTINGS)
    db._wait_ready(node.url("postgres"))


def start_cluster(workers: int) -> str:
    """Make (first time) and start a coordinator and `workers` workers with Citus, prepare the
    warehouse database on them; return the coordinator's URL. Idempotent."""
    _check_shape(workers)
    with db.start_lock():
        ensure_citus()
        all_nodes = nodes(workers)
        password = db.superuser_password(db.COORDINATOR_DATA) or secrets.token_urlsafe(32)
        for node in all_nodes:
            _start_node(node, password)
        prepare_database(db.DEFAULT_DB, workers)
    return all_nodes[0].url()


def prepare_database(dbname: str, workers: int) -> str:
    """Create `dbname` on every node with the citus extension, and register the workers with the
    coordinator; return its URL on the coordinator. Idempotent."""
    coordinator, *worker_nodes = nodes(workers)
    for node in [*worker_nodes, coordinator]:
        db.ensure_database(node.url("postgres"), dbname)
        with psycopg.connect(node.url(dbname), autocommit=True) as conn:
            conn.execute("create extension if not exists citus")
    password = db.superuser_password(coordinator.pgdata)
    with psycopg.connect(coordinator.url(dbname), autocommit=True) as conn:
        conn.execute(
            "insert into pg_dist_authinfo (nodeid, rolename, authinfo)"
            " select 0, %s, %s where not exists"
            " (select from pg_dist_authinfo where nodeid = 0 and rolename = %s)",
            (db.SUPERUSER, f"password={password}", db.SUPERUSER),
        )
        conn.execute("select citus_set_coordinator_host('127.0.0.1', %s)", (coordinator.port,))
        for node in worker_nodes:
            known = conn.execute(
                "select 1 from pg_dist_node where nodename = '127.0.0.1' and nodeport = %s",
                (node.port,),
            ).fetchone()
            if not known:
                conn.execute("select citus_add_node('127.0.0.1', %s)", (node.port,))
        # New distributed tables of this database get SHARDS_PER_WORKER shards per worker.
        conn.execute(
            f'alter database "{dbname}" set citus.shard_count = {SHARDS_PER_WORKER * workers}'
        )
    return coordinator.url(dbname)


def drop_database(dbname: str, workers: int) -> None:
    """Drop `dbname` from every node (the coordinator first)."""
    for node in nodes(workers):
        with psycopg.connect(node.url("postgres"), autocommit=True) as conn:
            conn.execute(f'drop database if exists "{dbname}" with (force)')


def stop_cluster() -> bool:
    """Stop every node of the cluster that runs; False if none did."""
    stopped = False
    for pgdata in [db.COORDINATOR_DATA, *sorted(db.CLUSTER_DIR.glob("worker*"))]:
        stopped = db.stop_server(pgdata) or stopped
    return stopped


def status(workers: int) -> list[tuple[Node, bool]]:
    """Every node and whether it runs."""
    return [(node, db.server_running(node.pgdata)) for node in nodes(workers)]


def set_mode(workers: int) -> None:
    """Remember the mode for every later command: N workers, or 0 for the single server."""
    db.STATE_DIR.mkdir(parents=True, exist_ok=True)
    if workers:
        db.CLUSTER_MODE_FILE.write_text(f"{workers}\n")
    else:
        db.CLUSTER_MODE_FILE.unlink(missing_ok=True)


if __name__ == "__main__":  # `python -m python_jobs.warehouse.cluster`: build Citus if missing
    try:
        ensure_citus()
    except db.DatabaseError as err:
        raise SystemExit(f"cluster: {err}") from None
    print(f"Citus is installed: {citus_library()}")
