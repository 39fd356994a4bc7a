"""Cluster mode without a server: which mode and ports, and what a failed Citus build says."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from python_jobs import cli
from python_jobs.warehouse import cluster, db


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A state folder of its own, ports of its own, no mode from the environment."""
    monkeypatch.setattr(db, "STATE_DIR", tmp_path)
    monkeypatch.setattr(db, "CLUSTER_MODE_FILE", tmp_path / "cluster-workers")
    monkeypatch.setattr(db, "CLUSTER_DIR", tmp_path / "cluster")
    monkeypatch.setattr(db, "COORDINATOR_DATA", tmp_path / "cluster" / "coordinator")
    monkeypatch.setenv("STUDYIN_PG_PORT", "50000")
    for name in (db.ENV_CLUSTER, db.ENV_CLUSTER_PORT, db.ENV_URL):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def test_the_single_server_is_the_default_and_the_mode_is_remembered(state, monkeypatch):
    assert db.cluster_workers() == 0
    assert db.embedded_url().endswith("@127.0.0.1:50000/studyin")
    cluster.set_mode(3)
    assert db.cluster_workers() == 3
    assert ":50010/studyin" in db.embedded_url()
    assert [(n.name, n.port) for n in cluster.nodes(3)] == [
        ("coordinator", 50010),
        ("worker1", 50011),
        ("worker2", 50012),
        ("worker3", 50013),
    ]
    monkeypatch.setenv(db.ENV_CLUSTER_PORT, "51000")
    assert [n.port for n in cluster.nodes(2)] == [51000, 51001, 51002]
    monkeypatch.setenv(db.ENV_CLUSTER, "0")  # the variable wins over the remembered mode
    assert db.cluster_workers() == 0
    monkeypatch.delenv(db.ENV_CLUSTER)
    cluster.set_mode(0)
    assert db.cluster_workers() == 0 and not db.CLUSTER_MODE_FILE.exists()


@pytest.mark.parametrize("value", ["two", "-1", "65"])
def test_a_bad_number_of_workers_is_refused_with_the_variable_named(state, monkeypatch, value):
    monkeypatch.setenv(db.ENV_CLUSTER, value)
    with pytest.raises(db.DatabaseError, match="STUDYIN_CLUSTER must be a number of workers"):
        db.cluster_workers()


def test_more_worker_folders_than_asked_is_refused(state):
    (db.CLUSTER_DIR / "worker3").mkdir(parents=True)
    for i in (1, 2, 3):
        (db.CLUSTER_DIR / f"worker{i}").mkdir(exist_ok=True)
        (db.CLUSTER_DIR / f"worker{i}" / "PG_VERSION").write_text("18\n")
    with pytest.raises(db.DatabaseError, match="has 3 workers, not 2: start it with --cluster 3"):
        cluster.start_cluster(2)


def test_a_missing_build_script_says_what_to_do(state, monkeypatch, tmp_path):
    monkeypatch.setattr(cluster, "citus_library", lambda: tmp_path / "lib" / "citus.so")
    monkeypatch.setenv(cluster.ENV_BUILD, str(tmp_path / "nowhere" / "build-citus.sh"))
    with pytest.raises(db.DatabaseError, match="set STUDYIN_CITUS_BUILD to the path of build-c"):
        cluster.ensure_citus()


def test_a_failed_build_shows_its_output(state, monkeypatch, tmp_path):
    monkeypatch.setattr(cluster, "citus_library", lambda: tmp_path / "lib" / "citus.so")
    script = tmp_path / "build-citus.sh"
    script.write_text("#!/bin/sh\necho 'build-citus: install first: gcc' >&2\nexit 1\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv(cluster.ENV_BUILD, str(script))
    with pytest.raises(db.DatabaseError, match=r"(?s)failed \(exit 1\).*install first: gcc"):
        cluster.ensure_citus()


def test_cluster_goes_with_start_only_and_not_with_an_external_server(state, monkeypatch, capsys):
    assert cli.main(["db", "stop", "--cluster", "2"]) == 1
    assert "--cluster goes with `db start` only" in capsys.readouterr().err
    monkeypatch.setenv(db.ENV_URL, "postgresql://u:p@db.example:5432/studyin")
    assert cli.main(["db", "start", "--cluster", "2"]) == 1
    assert "--cluster starts embedded servers only" in capsys.readouterr().err
    assert not db.CLUSTER_MODE_FILE.exists()
