"""Test fixtures: every test talks to a real PostgreSQL.

The server is the embedded one (started on demand) or the one STUDYIN_DATABASE_URL names. Each test
module that asks for ``migrated_db`` gets its own freshly created and migrated database, dropped
afterwards, so tests never see each other's rows and can run while a demo database exists.

Tests that must also hold on a Citus cluster ask for ``cluster_database_factory``: a coordinator
and two workers started from the embedded binaries (Citus built first when missing; see
python_jobs/warehouse/cluster.py), stopped at the end of the session if the session started them.
They are skipped, with the reason, when STUDYIN_CLUSTER_TESTS=0 or when STUDYIN_DATABASE_URL names
the server (the cluster is a local one).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest

from python_jobs.warehouse import cluster, db, migrate

CLUSTER_TEST_WORKERS = 2


@pytest.fixture(scope="session")
def server_url() -> str:
    """URL of the maintenance database on the test server."""
    url = db.ensure_server()
    return db.with_database(url, "postgres")


def _create_database(server_url: str, prefix: str) -> str:
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    return db.with_database(server_url, name)


def _drop_database(server_url: str, url: str) -> None:
    name = db.parse_url(url).dbname
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')


@pytest.fixture(scope="session")
def database_factory(server_url: str) -> Iterator[Callable[..., str]]:
    """Make fresh databases (migrated to head unless migrated=False); all dropped at the end."""
    made: list[str] = []

    def make(prefix: str = "studyin_test", migrated: bool = True) -> str:
        url = _create_database(server_url, prefix)
        made.append(url)
        if migrated:
            migrate.upgrade(url)
        return url

    yield make
    if os.environ.get("STUDYIN_KEEP_TEST_DBS"):
        return
    for url in made:
        _drop_database(server_url, url)


@pytest.fixture(scope="module")
def migrated_db(database_factory: Callable[..., str]) -> str:
    """A migrated database shared by the tests of one module."""
    return database_factory()


@pytest.fixture
def conn(migrated_db: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(migrated_db) as connection:
        yield connection


@pytest.fixture(scope="session")
def cluster_database_factory() -> Iterator[Callable[..., str]]:
    """Make fresh databases on a local 1-coordinator, 2-worker Citus cluster (migrated to head
    unless migrated=False, so the learner tables are distributed); all dropped at the end."""
    if os.environ.get("STUDYIN_CLUSTER_TESTS") == "0":
        pytest.skip("STUDYIN_CLUSTER_TESTS=0: the Citus cluster tests are turned off")
    if not db.uses_embedded():
        pytest.skip(f"{db.ENV_URL} is set: the cluster tests start a local cluster of their own")
    started_here = not any(running for _, running in cluster.status(CLUSTER_TEST_WORKERS))
    cluster.start_cluster(CLUSTER_TEST_WORKERS)
    made: list[str] = []

    def make(prefix: str = "studyin_cluster_test", migrated: bool = True) -> str:
        name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        made.append(name)
        url = cluster.prepare_database(name, CLUSTER_TEST_WORKERS)
        if migrated:
            migrate.upgrade(url)
        return url

    try:
        yield make
    finally:
        if not os.environ.get("STUDYIN_KEEP_TEST_DBS"):
            for name in made:
                cluster.drop_database(name, CLUSTER_TEST_WORKERS)
        if started_here:
            cluster.stop_cluster()
