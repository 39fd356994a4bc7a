"""BI tools on day one: a login for a dashboard tool, and the dashboard queries in its syntax.

``create_bi_login`` makes (or updates) a LOGIN role that is a member of ``reporter`` and nothing
else: it reads the marts and is refused every other schema. Its ``search_path`` is ``marts`` (a
tool's SQL can name a mart alone) and its transactions are read-only by default. The password
is generated unless given, and reaches the server already hashed (SCRAM-SHA-256), so it appears
in no statement a server log could keep.

``export_bi_queries`` compiles ``analyses/`` (the queries the dashboards run) with each
parameter written as the BI tool's own variable: ``'{{ user_id }}'::uuid`` for Superset (Jinja
template parameters), ``{{user_id}}::uuid`` for Metabase (a Text variable, which Metabase
quotes). The default compilation keeps psycopg placeholders ``%(user_id)s`` for Python callers.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql

from python_jobs.paths import PROJECT_ROOT
from python_jobs.warehouse.db import is_citus, parse_url
from python_jobs.warehouse.dbt import run_dbt

READER_ROLE = "reporter"
BI_SCHEMA = "marts"
NAME_PATTERN = re.compile(r"[a-z_][a-z0-9_]{0,62}")
PASSWORD_BYTES = 24  # secrets.token_urlsafe: 32 characters, 192 bits
BI_STYLES = ("superset", "metabase")


class BiLoginError(ValueError):
    """The login cannot be made: a bad name, or a name that belongs to another kind of role."""


@dataclass(frozen=True)
class BiLogin:
    user: str
    password: str
    host: str
    port: int
    dbname: str
    created: bool  # False: an existing BI login got a new password

    @property
    def sqlalchemy_url(self) -> str:
        """The URL Superset asks for (its default PostgreSQL driver, psycopg2)."""
        auth = f"{quote(self.user, safe='')}:{quote(self.password, safe='')}"
        return f"postgresql://{auth}@{self.host}:{self.port}/{self.dbname}"

    def describe(self) -> str:
        action = "created" if self.created else "updated (new password)"
        return "\n".join(
            [
                f"BI login {self.user} {action}: member of {READER_ROLE} (reads {BI_SCHEMA} only),"
                f" search_path {BI_SCHEMA}, read-only.",
                f"  host:     {self.host}",
                f"  port:     {self.port}",
                f"  database: {self.dbname}",
                f"  user:     {self.user}",
                f"  password: {self.password}   (shown once: store it now)",
                f"Superset (SQLAlchemy URI): {self.sqlalchemy_url}",
                "Metabase: database type PostgreSQL, the fields above, Schemas: Only these: marts",
            ]
        )


def _existing_role(conn: psycopg.Connection, name: str) -> tuple[bool, bool, list[str]] | None:
    """(can log in, is superuser, roles it is a member of) of an existing role, else None."""
    row = conn.execute(
        """
        select r.rolcanlogin, r.rolsuper,
            array(select g.rolname from pg_auth_members as m
                  join pg_roles as g on g.oid = m.roleid where m.member = r.oid order by 1)
        from pg_roles as r where r.rolname = %s
        """,
        (name,),
    ).fetchone()
    return None if row is None else (row[0], row[1], list(row[2]))


def _check_name(conn: psycopg.Connection, name: str) -> bool:
    """True when the role exists (then it must be a BI login made here); raise if unusable."""
    if not NAME_PATTERN.fullmatch(name):
        raise BiLoginError(
            f"login name {name!r} must be lowercase letters, digits and _ (at most 63, not"
            " starting with a digit)"
        )
    existing = _existing_role(conn, name)
    if existing is None:
        return False
    can_login, is_super, member_of = existing
    if not can_login or is_super or member_of != [READER_ROLE]:
        raise BiLoginError(
            f"role {name} exists and is not a BI login (a login whose only role is"
            f" {READER_ROLE}); choose another name"
        )
    return True


def create_bi_login(
    conn: psycopg.Connection, url: str, name: str, password: str | None = None
) -> BiLogin:
    """Create the LOGIN role `name` granted reporter (or give an existing BI login a new
    password) on the server of `conn`; `url` gives the host, port and database to connect to.
    Commits. Needs a role that may create roles and grant reporter (the warehouse's owner)."""
    exists = _check_name(conn, name)
    password = password or secrets.token_urlsafe(PASSWORD_BYTES)
    hashed = conn.pgconn.encrypt_password(password.encode(), name.encode(), b"scram-sha-256")
    role = sql.Identifier(name)
    verb = sql.SQL("alter role" if exists else "create role")
    conn.execute(
        sql.SQL("{} {} login inherit password {}").format(verb, role, sql.Literal(hashed.decode()))
    )
    conn.execute(sql.SQL("grant {} to {}").format(sql.Identifier(READER_ROLE), role))
    conn.execute(
        sql.SQL("alter role {} set search_path = {}").format(role, sql.Identifier(BI_SCHEMA))
    )
    conn.execute(sql.SQL("alter role {} set default_transaction_read_only = on").format(role))
    if is_citus(conn):
        # the coordinator reaches the workers as this login, with its password; Citus carries a
        # new role's password to the workers but not a changed one, so it is set there too
        if exists:
            statement = sql.SQL("alter role {} password {}").format(
                role, sql.Literal(hashed.decode())
            )
            failed = conn.execute(
                "select nodeport, result from run_command_on_workers(%s) where not success",
                (statement.as_string(conn),),
            ).fetchall()
            if failed:
                raise RuntimeError(f"bi-login: the workers refused the new password: {failed}")
        quoted = password.replace("\\", "\\\\").replace("'", "\\'")
        conn.execute("delete from pg_dist_authinfo where nodeid = 0 and rolename = %s", (name,))
        conn.execute(
            "insert into pg_dist_authinfo (nodeid, rolename, authinfo) values (0, %s, %s)",
            (name, f"password='{quoted}'"),
        )
    conn.commit()
    parts = parse_url(url)
    return BiLogin(name, password, parts.host, parts.port, parts.dbname, created=not exists)


def export_bi_queries(
    url: str, style: str, out_dir: Path | None = None, target_path: Path | None = None
) -> dict[str, Path]:
    """Compile analyses/ with `style`'s parameters (superset or metabase) and write one .sql
    per dashboard query into `out_dir` (default target/bi/<style>); return name -> file."""
    if style not in BI_STYLES:
        raise ValueError(f"style must be one of {', '.join(BI_STYLES)}, got {style!r}")
    target = target_path or PROJECT_ROOT / "target" / f"bi_{style}"
    out = out_dir or PROJECT_ROOT / "target" / "bi" / style
    run_dbt(
        ["compile", "--select", "path:analyses", "--vars", json.dumps({"bi_param_style": style})],
        url=url,
        target_path=target,
    )
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for compiled in sorted((Path(target) / "compiled" / "studyin" / "analyses").glob("*.sql")):
        path = out / compiled.name
        path.write_text(compiled.read_text().rstrip() + "\n")
        written[compiled.stem] = path
    return written
