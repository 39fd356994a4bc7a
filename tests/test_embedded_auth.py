"""The embedded server asks every login for the password kept in its data folder.

Runs only on the embedded server (not when STUDYIN_DATABASE_URL names another one). The last test
makes data folders as the project made them before passwords (initdb --auth=trust) on a free port,
and checks that the next start converts them, whether the old server is down or still running.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from python_jobs.warehouse import db

pytestmark = pytest.mark.skipif(not db.uses_embedded(), reason="the embedded server only")


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    return parts._replace(netloc=f"{parts.username}@{parts.hostname}:{parts.port}").geturl()


def _with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    netloc = f"{parts.username}:{password}@{parts.hostname}:{parts.port}"
    return parts._replace(netloc=netloc).geturl()


def _assert_password_only(url: str) -> None:
    """Refused without a password and with a wrong one; the URL's own password works."""
    with pytest.raises(psycopg.OperationalError, match="no password supplied"):
        psycopg.connect(_without_password(url), connect_timeout=5).close()
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(_with_password(url, "not-the-password"), connect_timeout=5).close()
    with psycopg.connect(url, connect_timeout=5) as conn:
        assert conn.execute("select current_user").fetchone() == ("postgres",)


def _assert_private_secret_and_no_trust(pgdata: Path) -> None:
    secret = pgdata / db.SECRET_NAME
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert secret.stat().st_uid == os.geteuid()
    assert len(secret.read_text().strip()) >= 32
    assert db._hba_methods((pgdata / "pg_hba.conf").read_text()) == {"scram-sha-256"}


def test_tcp_logins_need_the_password(server_url):
    _assert_password_only(server_url)
    _assert_private_secret_and_no_trust(db.PGDATA)


def test_the_url_the_cli_prints_works(server_url):
    studyin = Path(sys.executable).parent / "studyin"
    printed = subprocess.run(
        [str(studyin), "db", "url"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert urlsplit(printed).password == db.superuser_password()
    with psycopg.connect(printed, connect_timeout=5) as conn:
        assert conn.execute("select 1").fetchone() == (1,)


def test_messages_hide_the_password():
    url = "postgresql://postgres:s3cret@127.0.0.1:5432/studyin"
    assert db.redacted(url) == "postgresql://postgres:***@127.0.0.1:5432/studyin"
    assert db.redacted("postgresql://postgres@127.0.0.1/x") == "postgresql://postgres@127.0.0.1/x"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def legacy_folder(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A data folder as made before passwords (trust for every local login), on a free port."""
    pgdata = db.STATE_DIR / f"test-legacy-{uuid.uuid4().hex[:8]}" / "pgdata"
    pgdata.mkdir(parents=True)
    monkeypatch.setattr(db, "PGDATA", pgdata)
    monkeypatch.setenv("STUDYIN_PG_PORT", str(_free_port()))
    db._prepare_root_permissions()
    made = db._run_as_server_user(
        [str(db._pg_bin() / "initdb"), "-D", str(pgdata), "-U", "postgres", "--auth=trust"]
    )
    assert made.returncode == 0, made.stderr
    try:
        yield pgdata
    finally:
        db.stop_embedded()
        shutil.rmtree(pgdata.parent)


@pytest.mark.parametrize("old_server", ["stopped", "running"])
def test_a_trusting_data_folder_is_converted_on_start(legacy_folder, old_server):
    hba = (legacy_folder / "pg_hba.conf").read_text()
    assert "trust" in db._hba_methods(hba)
    if old_server == "running":
        db._pg_ctl_start()
        with psycopg.connect(_without_password(db.embedded_url("postgres"))):
            pass  # trusted, as before
    url = db.start_embedded()
    _assert_private_secret_and_no_trust(legacy_folder)
    _assert_password_only(url)
