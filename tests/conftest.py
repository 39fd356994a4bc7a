"""Test fixtures: every test talks to a real PostgreSQL.

The server is the embedded one (started on demand) or the one STUDYIN_DATABASE_URL names. Each test
module that asks for ``migrated_db`` gets its own freshly created and migrated database, dropped
afterwards, so tests never see each other's rows and can run while a demo database exists.

Tests that must also hold on a Citus cluster ask for ``cluster_database_factory``: a coordinator
and two workers started from the embedded binaries (Citus built first when missing; see
python_jobs/warehouse/cluster.py), stopped at the end of the test run if the run started them.
They are skipped, with the reason, when STUDYIN_CLUSTER_TESTS=0 or when STUDYIN_DATABASE_URL names
the server (the cluster is a local one).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

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


@pytest.fixture(scope="session", autouse=True)
def own_dbt_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """dbt calls that name no target folder (the command line's, run in a subprocess) write into
    this process's own folder, not the project's target/ and logs/, which a parallel test worker
    may be writing at the same time."""
    folder = tmp_path_factory.mktemp("dbt_default_target")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DBT_TARGET_PATH", str(folder))
        patch.setenv("DBT_LOG_PATH", str(folder / "logs"))
        yield


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


def _is_controller(config: pytest.Config) -> bool:
    """True in the process that runs the session: pytest itself, or xdist's controller (its
    workers carry `workerinput`)."""
    return not hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    # One id per test run, inherited by xdist's workers, which are started after this hook.
    if _is_controller(config):
        os.environ["STUDYIN_TEST_RUN"] = uuid.uuid4().hex


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules with a test marked slow first, each kept whole and in place otherwise: xdist hands
    modules to its workers in this order, so the long ones start early and the short ones fill
    in at the end, instead of one worker finishing a long module alone."""
    slow = {item.module for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.module not in slow)


def _cluster_started_marker() -> Path:
    """Written when this test run started the cluster: the controller stops it at the end, after
    every worker is done with it."""
    return db.STATE_DIR / f"test-cluster-started-{os.environ['STUDYIN_TEST_RUN']}"


def pytest_sessionfinish(session: pytest.Session) -> None:
    marker = _cluster_started_marker()
    if _is_controller(session.config) and marker.exists():
        cluster.stop_cluster()
        marker.unlink()


@pytest.fixture(scope="session")
def cluster_database_factory() -> Iterator[Callable[..., str]]:
    """Make fresh databases on a local 1-coordinator, 2-worker Citus cluster (migrated to head
    unless migrated=False, so the learner tables are distributed); all dropped at the end. The
    cluster is stopped at the end of the test run if the run started it."""
    if os.environ.get("STUDYIN_CLUSTER_TESTS") == "0":
        pytest.skip("STUDYIN_CLUSTER_TESTS=0: the Citus cluster tests are turned off")
    if not db.uses_embedded():
        pytest.skip(f"{db.ENV_URL} is set: the cluster tests start a local cluster of their own")
    started_here = not any(running for _, running in cluster.status(CLUSTER_TEST_WORKERS))
    cluster.start_cluster(CLUSTER_TEST_WORKERS)
    if started_here:
        _cluster_started_marker().touch()
    made: list[str] = []

    def make(prefix: str = "studyin_cluster_test", migrated: bool = True) -> str:
        name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        made.append(name)
        url = cluster.prepare_database(name, CLUSTER_TEST_WORKERS)
        if migrated:
            migrate.upgrade(url)
        return url

    yield make
    if not os.environ.get("STUDYIN_KEEP_TEST_DBS"):
        for name in made:
            cluster.drop_database(name, CLUSTER_TEST_WORKERS)
