"""Least privilege: the catalogue grants each role exactly what the README's table of roles says.

The table (README.md, section Roles) lists, per role, the database, schemas, tables, sequences and
functions it may use and with which privileges. The comparison reads every object of every
non-system schema from the catalogue of a migrated database on which dbt has built every model,
and asks PostgreSQL (has_*_privilege) what each of the four roles and PUBLIC may do with it: an
object no row names, or a privilege more or less than its row says, fails. It also reads the ACLs
themselves (pg_class.relacl, pg_proc.proacl, ...) for grants to any other role.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from pathlib import Path

import psycopg
import pytest
from psycopg import errors

from python_jobs.ingest.events import GenericEvent
from python_jobs.ingest.tracker import Tracker, ValidationError
from python_jobs.paths import PROJECT_ROOT
from python_jobs.warehouse.dbt import run_dbt

pytestmark = pytest.mark.slow  # a dbt build of the whole project

ROLES = ("loader", "transformer", "ml_writer", "reporter")
GRANTEES = (*ROLES, "public")  # has_*_privilege takes "public" for PUBLIC
OWNER_ONLY = "owner only"
KINDS = ("database", "schema", "table", "sequence", "function")
# Privileges PostgreSQL knows for each kind of object (MAINTAIN exists from PostgreSQL 17).
PRIVILEGES = {
    "database": ("CONNECT", "CREATE", "TEMPORARY"),
    "schema": ("USAGE", "CREATE"),
    "table": ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"),
    "sequence": ("USAGE", "SELECT", "UPDATE"),
    "function": ("EXECUTE",),
}
SYSTEM_SCHEMAS = r"^(pg_|information_schema$)"
DENIED = "permission denied for (function|schema app)"  # reporter may not even look into app


@dataclass(frozen=True)
class Rule:
    """One row of the README's table: `role` may use `patterns` (of one kind) with `privileges`."""

    role: str
    kind: str
    patterns: tuple[str, ...]
    privileges: frozenset[str]

    def covers(self, kind: str, name: str) -> bool:
        return kind == self.kind and any(fnmatchcase(name, p) for p in self.patterns)


Key = tuple[str, str]  # (kind, name): ("table", "app.users"), ("database", "database")
Grants = dict[tuple[str, str, str], frozenset[str]]  # (grantee, kind, name) -> privileges


def _parse_row(line: str) -> Rule:
    role, objects, privileges = (cell.strip() for cell in line.strip().strip("|").split("|"))
    kind, _, names = objects.partition(" ")
    if kind not in KINDS:
        raise ValueError(f"README roles table: unknown kind of object in {line!r}")
    patterns = tuple(n.strip() for n in names.split(",")) if names else ("database",)
    privs = (
        frozenset() if privileges == "—" else frozenset(p.strip() for p in privileges.split(","))
    )
    unknown = privs - set(PRIVILEGES[kind])
    if unknown or (role == OWNER_ONLY) != (not privs):
        raise ValueError(f"README roles table: bad privileges {privileges!r} in {line!r}")
    return Rule(role, kind, patterns, privs)


def readme_rules(readme: Path = PROJECT_ROOT / "README.md") -> list[Rule]:
    """The rows of the table under "## Roles" in the README."""
    section = readme.read_text().split("\n## Roles\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    header, _separator, *body = rows
    assert header.split("|")[1:4] == [" role ", " object ", " privileges "], header
    return [_parse_row(line) for line in body]


def expected(rules: list[Rule], grantee: str, kind: str, name: str) -> frozenset[str]:
    role = "PUBLIC" if grantee == "public" else grantee
    found: set[str] = set()
    for rule in rules:
        if rule.role == role and rule.covers(kind, name):
            found |= rule.privileges
    return frozenset(found)


# --------------------------------------------------------------------------- the catalogue

SCHEMAS_SQL = f"select nspname from pg_namespace where nspname !~ '{SYSTEM_SCHEMAS}'"
# One row per (grantee, object, privilege held). Column privileges count for tables.
HELD_SQL = f"""
with grantee as (select unnest(%(grantees)s::text[]) as name),
relation as (
    select case when c.relkind = 'S' then 'sequence' else 'table' end as kind,
        n.nspname || '.' || c.relname as name, c.oid
    from pg_class as c join pg_namespace as n on n.oid = c.relnamespace
    where c.relkind in ('r', 'p', 'v', 'm', 'f', 'S') and n.nspname !~ '{SYSTEM_SCHEMAS}'
)
select g.name, 'database', 'database', p.priv
from grantee as g cross join unnest(%(database)s::text[]) as p (priv)
where has_database_privilege(g.name, current_database(), p.priv)
union all
select g.name, 'schema', n.nspname, p.priv
from pg_namespace as n cross join grantee as g cross join unnest(%(schema)s::text[]) as p (priv)
where n.nspname !~ '{SYSTEM_SCHEMAS}' and has_schema_privilege(g.name, n.oid, p.priv)
union all
select g.name, r.kind, r.name, p.priv
from relation as r cross join grantee as g cross join unnest(%(table)s::text[]) as p (priv)
where r.kind = 'table' and case
    when p.priv in ('SELECT', 'INSERT', 'UPDATE', 'REFERENCES')
        then has_any_column_privilege(g.name, r.oid, p.priv)
    else has_table_privilege(g.name, r.oid, p.priv) end
union all
select g.name, r.kind, r.name, p.priv
from relation as r cross join grantee as g cross join unnest(%(sequence)s::text[]) as p (priv)
where r.kind = 'sequence' and has_sequence_privilege(g.name, r.oid, p.priv)
union all
select g.name, 'function', n.nspname || '.' || f.proname, 'EXECUTE'
from pg_proc as f join pg_namespace as n on n.oid = f.pronamespace cross join grantee as g
where n.nspname !~ '{SYSTEM_SCHEMAS}' and has_function_privilege(g.name, f.oid, 'EXECUTE')
"""
OBJECTS_SQL = f"""
select 'schema', nspname from pg_namespace where nspname !~ '{SYSTEM_SCHEMAS}'
union all
select case when c.relkind = 'S' then 'sequence' else 'table' end, n.nspname || '.' || c.relname
from pg_class as c join pg_namespace as n on n.oid = c.relnamespace
where c.relkind in ('r', 'p', 'v', 'm', 'f', 'S') and n.nspname !~ '{SYSTEM_SCHEMAS}'
union all
select 'function', n.nspname || '.' || f.proname
from pg_proc as f join pg_namespace as n on n.oid = f.pronamespace
where n.nspname !~ '{SYSTEM_SCHEMAS}'
"""
# Entries of the ACLs themselves whose grantee is neither the owner, PUBLIC nor one of the roles.
STRANGERS_SQL = f"""
with acl as (
    select 'database' as kind, datname::text as name, datdba as owner, datacl as acl
    from pg_database where datname = current_database()
    union all
    select 'schema', nspname, nspowner, nspacl from pg_namespace where nspname !~ '{SYSTEM_SCHEMAS}'
    union all
    select 'table', n.nspname || '.' || c.relname, c.relowner, c.relacl
    from pg_class as c join pg_namespace as n on n.oid = c.relnamespace
    where n.nspname !~ '{SYSTEM_SCHEMAS}'
    union all
    select 'function', n.nspname || '.' || f.proname, f.proowner, f.proacl
    from pg_proc as f join pg_namespace as n on n.oid = f.pronamespace
    where n.nspname !~ '{SYSTEM_SCHEMAS}'
)
select acl.kind, acl.name, e.grantee::regrole::text, e.privilege_type
from acl cross join aclexplode(acl.acl) as e
where e.grantee <> 0 and e.grantee <> acl.owner
    and e.grantee not in (select oid from pg_roles where rolname = any(%s))
"""


def table_privileges(conn: psycopg.Connection) -> tuple[str, ...]:
    version = conn.execute("show server_version_num").fetchone()[0]
    return PRIVILEGES["table"] + (("MAINTAIN",) if int(version) >= 170000 else ())


def catalogue(conn: psycopg.Connection) -> tuple[set[Key], Grants]:
    """Every object of the non-system schemas, and what each grantee may do with each."""
    objects = {(kind, name) for kind, name in conn.execute(OBJECTS_SQL)}
    objects.add(("database", "database"))
    params = {k: list(v) for k, v in PRIVILEGES.items()} | {
        "grantees": list(GRANTEES),
        "table": list(table_privileges(conn)),
    }
    held: dict[tuple[str, str, str], set[str]] = {}
    for grantee, kind, name, privilege in conn.execute(HELD_SQL, params):
        held.setdefault((grantee, kind, name), set()).add(privilege)
    return objects, {key: frozenset(value) for key, value in held.items()}


def privilege_problems(conn: psycopg.Connection, rules: list[Rule]) -> list[str]:
    """Every difference between the catalogue and the README's table, one line each."""
    objects, held = catalogue(conn)
    problems = [
        f"{kind} {name}: no row of the README's roles table names it"
        for kind, name in sorted(objects)
        if not any(rule.covers(kind, name) for rule in rules)
    ]
    for kind, name in sorted(objects):
        for grantee in GRANTEES:
            want = expected(rules, grantee, kind, name)
            have = held.get((grantee, kind, name), frozenset())
            if have != want:
                problems.append(
                    f"{kind} {name}: {grantee} may {sorted(have) or 'nothing'}, "
                    f"the README says {sorted(want) or 'nothing'}"
                )
    for kind, name, grantee, privilege in conn.execute(STRANGERS_SQL, (list(ROLES),)):
        problems.append(f"{kind} {name}: {privilege} granted to {grantee}, which is not a role")
    return problems


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def built_db(database_factory: Callable[..., str], tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated database on which dbt has built every seed and model (no rows of events)."""
    url = database_factory("studyin_privileges")
    target = tmp_path_factory.mktemp("dbt_privileges")
    run_dbt(
        ["build", "--resource-type", "seed", "--resource-type", "model"],
        url=url,
        target_path=target,
    )
    return url


@pytest.fixture
def owner(built_db: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(built_db) as connection:
        yield connection


# --------------------------------------------------------------------------- the table


def test_the_catalogue_grants_exactly_the_readme_table(owner):
    assert privilege_problems(owner, readme_rules()) == []


def test_every_object_the_table_names_exists(owner):
    objects, _ = catalogue(owner)
    missing = [
        f"{rule.kind} {pattern}"
        for rule in readme_rules()
        for pattern in rule.patterns
        if "*" not in pattern and (rule.kind, pattern) not in objects and pattern != "sim"
    ]
    assert missing == []


def test_an_unlisted_or_public_object_fails_the_comparison(owner):
    """What the suite catches: a new table nobody listed, a function PUBLIC may call."""
    rules = readme_rules()
    with owner.transaction(force_rollback=True):
        owner.execute("create table app.unlisted_notes (note text)")
        owner.execute("create table marts.new_mart (n integer)")  # marts.* covers it ...
        owner.execute("create function app.helper() returns integer language sql as 'select 1'")
        owner.execute("grant execute on function app.helper() to public")
        owner.execute("grant select on app.users to reporter")
        problems = privilege_problems(owner, rules)
    assert problems == [
        "function app.helper: no row of the README's roles table names it",
        "table app.unlisted_notes: no row of the README's roles table names it",
        "function app.helper: loader may ['EXECUTE'], the README says nothing",
        "function app.helper: transformer may ['EXECUTE'], the README says nothing",
        "function app.helper: ml_writer may ['EXECUTE'], the README says nothing",
        "function app.helper: reporter may ['EXECUTE'], the README says nothing",
        "function app.helper: public may ['EXECUTE'], the README says nothing",
        "table app.users: reporter may ['SELECT'], the README says nothing",
        # ... but dbt did not grant it: reporter and ml_writer cannot read it
        "table marts.new_mart: ml_writer may nothing, the README says ['SELECT']",
        "table marts.new_mart: reporter may nothing, the README says ['SELECT']",
    ]


def test_new_functions_of_the_owner_are_not_executable_by_public(owner):
    with owner.transaction(force_rollback=True):
        owner.execute("create function ml.later() returns integer language sql as 'select 1'")
        owner.execute("create function marts.later() returns integer language sql as 'select 1'")
        can = owner.execute(
            "select has_function_privilege('public', 'ml.later()', 'EXECUTE'),"
            " has_function_privilege('reporter', 'marts.later()', 'EXECUTE')"
        ).fetchone()
    assert can == (False, False)


def test_security_definer_functions_pin_their_search_path(owner):
    rows = owner.execute(
        f"""
        select f.oid::regprocedure::text, coalesce(
            (select split_part(c, '=', 2) from unnest(f.proconfig) as c
             where c like 'search_path=%%'), '(not set)')
        from pg_proc as f join pg_namespace as n on n.oid = f.pronamespace
        where f.prosecdef and n.nspname !~ '{SYSTEM_SCHEMAS}'
        order by 1
        """
    ).fetchall()
    assert len(rows) >= 5  # the reference checks, the cascade and app.delete_user
    for signature, path in rows:
        schemas = [s.strip() for s in path.split(",")]
        schema = signature.split(".", 1)[0]
        assert schemas == ["pg_catalog", schema, "pg_temp"], signature


# --------------------------------------------------------------------------- behaviour


def _new_user(conn: psycopg.Connection) -> uuid.UUID:
    uid = uuid.uuid4()
    conn.execute(
        "insert into app.users (id, timezone, cohort, exam_target)"
        " values (%s, 'Europe/Berlin', '2026-fall', 'step1')",
        (uid,),
    )
    conn.commit()
    return uid


@pytest.mark.parametrize("role", ROLES)
def test_no_role_can_erase_a_learner(conn, role):
    victim = _new_user(conn)
    conn.execute(f"set role {role}")
    conn.commit()  # the role outlives the failed statements' rollbacks
    with pytest.raises(errors.InsufficientPrivilege, match=DENIED):
        conn.execute("select app.delete_user(%s)", (victim,))
    conn.rollback()
    with pytest.raises(errors.InsufficientPrivilege, match=DENIED):
        conn.execute("select app.require_learners(array[%s]::uuid[], 'users')", (victim,))
    conn.rollback()
    conn.execute("reset role")
    assert conn.execute("select count(*) from app.users where id = %s", (victim,)).fetchone() == (
        1,
    )


def test_the_tracker_as_loader_still_stores_events(conn):
    """Inserts fire the reference-check triggers, which loader need not (and cannot) call."""
    user = _new_user(conn)
    conn.execute("set role loader")
    conn.commit()
    event = GenericEvent(
        event_type="page_view",
        event_id=uuid.uuid4(),
        user_id=user,
        occurred_at=datetime.now(UTC) - timedelta(minutes=5),
        properties={"page": "qbank"},
    )
    tracker = Tracker(conn)
    assert tracker.track(event) is True
    stranger = replace(event, event_id=uuid.uuid4(), user_id=uuid.uuid4())
    with pytest.raises(ValidationError):  # an unknown learner: refused and recorded
        tracker.track(stranger)
    conn.execute("reset role")
    stored = conn.execute(
        "select (select count(*) from app.study_events where user_id = %s),"
        " (select count(*) from app.rejected_events where user_id = %s)",
        (user, stranger.user_id),
    ).fetchone()
    assert stored == (1, 1)


def test_loader_reads_no_pending_erasure(conn):
    conn.execute("set role loader")
    conn.execute("select subject_sha256 from app.deletion_requests")
    with pytest.raises(errors.InsufficientPrivilege, match="permission denied for table"):
        conn.execute("select user_id from app.deletion_requests")


def test_readme_rows_parse_strictly():
    with pytest.raises(ValueError, match="unknown kind"):
        _parse_row("| loader | view marts.x | SELECT |")
    with pytest.raises(ValueError, match="bad privileges"):
        _parse_row("| loader | table app.users | EXECUTE |")
    with pytest.raises(ValueError, match="bad privileges"):
        _parse_row("| owner only | table app.users | SELECT |")
    assert _parse_row("| owner only | schema public, staging | — |") == Rule(
        OWNER_ONLY, "schema", ("public", "staging"), frozenset()
    )
