"""BI on day one: `studyin bi-login` makes a login that reads the marts and nothing else, over
TCP with a SCRAM password; `studyin bi-queries` writes the dashboard queries with Superset's or
Metabase's variables, and they return what the psycopg form returns."""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import errors, sql

from python_jobs.simulation.simulator import simulate
from python_jobs.warehouse.bi import BiLoginError, create_bi_login, export_bi_queries
from python_jobs.warehouse.dbt import run_dbt
from python_jobs.warehouse.pipeline import RunContext, default_steps, run_pipeline

pytestmark = pytest.mark.slow

SYSTEM = ("pg_catalog", "information_schema")
OTHER_RELATIONS = (
    "app.users",
    "app.study_events",
    "ml.model_runs",
    "intermediate.int_topic_reviews_scheduled",
    "staging.stg_app__users",
)


@pytest.fixture(scope="module")
def warehouse(database_factory, tmp_path_factory) -> tuple[str, Path]:
    url = database_factory("studyin_bi")
    with psycopg.connect(url) as conn:
        simulate(conn, users=15, days=10, seed=3, progress=False)
    target = tmp_path_factory.mktemp("dbt_bi")
    steps = [s for s in default_steps() if s[0] != "dbt_docs"]
    run_pipeline(RunContext(url=url, target_path=target), steps)
    return url, target


@pytest.fixture(scope="module")
def bi_name(warehouse) -> Iterator[str]:
    """A fresh login name; the role (cluster-wide) is dropped afterwards."""
    name = f"bi_test_{secrets.token_hex(4)}"
    yield name
    with psycopg.connect(warehouse[0], autocommit=True) as conn:
        conn.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(name)))


def _login_url(login) -> str:
    return (
        f"host={login.host} port={login.port} dbname={login.dbname} user={login.user} "
        f"password={login.password} sslmode=disable"
    )


@pytest.fixture(scope="module")
def login(warehouse, bi_name):
    with psycopg.connect(warehouse[0]) as conn:
        return create_bi_login(conn, warehouse[0], bi_name)


def test_the_login_reads_marts_and_is_refused_everything_else(warehouse, login):
    assert login.created and len(login.password) >= 32
    with psycopg.connect(_login_url(login), autocommit=True) as bi:
        assert bi.execute("show search_path").fetchone()[0] == "marts"
        rows = bi.execute("select count(*) from daily_user_stats").fetchone()[0]  # no schema
        assert rows > 0
        for relation in OTHER_RELATIONS:
            with pytest.raises(errors.InsufficientPrivilege):
                bi.execute(f"select 1 from {relation} limit 1")
        with pytest.raises(errors.ReadOnlySqlTransaction):
            bi.execute("create temporary table scratch (x int)")

        listed = bi.execute(
            "select distinct table_schema from information_schema.tables"
            " where table_schema <> all(%s)",
            (list(SYSTEM),),
        ).fetchall()
        schemata = bi.execute(
            "select schema_name from information_schema.schemata where schema_name <> all(%s)",
            (list(SYSTEM),),
        ).fetchall()
        # pg_catalog names every relation (PostgreSQL shows its catalogue to every role), but
        # the only ones the login may read are the marts
        readable = bi.execute(
            """
            select distinct n.nspname from pg_class as c
            join pg_namespace as n on n.oid = c.relnamespace
            where c.relkind in ('r', 'p', 'v', 'm', 'f') and n.nspname <> all(%s)
                and has_table_privilege(c.oid, 'select')
            """,
            (list(SYSTEM),),
        ).fetchall()
        named = bi.execute(
            "select count(distinct relnamespace) from pg_class where relnamespace::regnamespace"
            "::text in ('app', 'ml')"
        ).fetchone()[0]
    assert listed == [("marts",)]
    assert schemata == [("marts",)]
    assert readable == [("marts",)]
    assert named == 2


def test_a_second_call_renews_the_password(warehouse, login):
    with psycopg.connect(warehouse[0]) as conn:
        renewed = create_bi_login(conn, warehouse[0], login.user, "a-chosen-password-123")
    assert not renewed.created and renewed.password == "a-chosen-password-123"
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(_login_url(login)).close()
    with psycopg.connect(_login_url(renewed)) as bi:
        assert bi.execute("select current_user").fetchone()[0] == login.user
        assert bi.execute("select pg_has_role('reporter', 'usage')").fetchone()[0]


@pytest.mark.parametrize("name", ["reporter", "postgres", "loader", "Bad-Name", "1bi"])
def test_group_roles_superusers_and_bad_names_are_refused(warehouse, name):
    with psycopg.connect(warehouse[0]) as conn:
        before = conn.execute("select * from pg_roles where rolname = %s", (name,)).fetchall()
        with pytest.raises(BiLoginError):
            create_bi_login(conn, warehouse[0], name)
        after = conn.execute("select * from pg_roles where rolname = %s", (name,)).fetchall()
    assert after == before  # nothing created or changed


def _compiled_psycopg(url: str, target: Path) -> dict[str, str]:
    run_dbt(["compile", "--select", "path:analyses"], url=url, target_path=target)
    folder = target / "compiled" / "studyin" / "analyses"
    return {p.stem: p.read_text() for p in sorted(folder.glob("*.sql"))}


@pytest.mark.parametrize(
    ("style", "variable", "as_literal"),
    [
        ("superset", "'{{ user_id }}'::uuid", "'{}'::uuid"),
        ("metabase", "{{user_id}}::uuid", "'{}'::uuid"),
    ],
)
def test_exported_queries_run_as_the_login_and_match_the_psycopg_form(
    warehouse, login, tmp_path, style, variable, as_literal
):
    url, _ = warehouse
    exported = export_bi_queries(url, style, tmp_path / "out", tmp_path / "target")
    reference = _compiled_psycopg(url, tmp_path / "reference")
    assert (
        set(exported)
        == set(reference)
        == {
            "cohort_comparison",
            "due_reviews",
            "learner_dashboard",
            "topic_heatmap",
        }
    )
    with psycopg.connect(url) as conn:
        login = create_bi_login(conn, url, login.user)  # the current password
        learner = conn.execute(
            "select user_id from marts.topic_mastery_current where is_due"
            " group by user_id order by count(*) desc, user_id limit 1"
        ).fetchone()[0]
    with psycopg.connect(url) as owner, psycopg.connect(_login_url(login)) as bi:
        for name, path in exported.items():
            text = path.read_text()
            assert variable in text and "%(" not in text, name
            assert not re.search(r"\{\{(?!\s*user_id\s*\}\})", text), name  # no other template
            runnable = text.replace(variable, as_literal.format(learner))
            got = bi.execute(runnable).fetchall()
            want = owner.execute(reference[name], {"user_id": uuid.UUID(str(learner))}).fetchall()
            assert got == want and got, name


def test_one_learners_mastery_is_looked_up_without_reading_every_learner(warehouse):
    """A dashboard's (and the recommendations') lookup of one learner in topic_mastery_current
    reaches the users by their key: a materialized copy of every learner, scanned per lookup, made
    one lookup cost 20 ms at 50,000 learners and the gap recommendations quadratic."""
    url, _ = warehouse
    with psycopg.connect(url) as conn:
        learner = conn.execute("select user_id from marts.topic_mastery limit 1").fetchone()[0]
        conn.execute("set enable_seqscan = off")  # the tables here are tiny
        plan = "\n".join(
            r[0]
            for r in conn.execute(
                "explain (costs off) select * from marts.topic_mastery_current where user_id = %s",
                (learner,),
            )
        )
        found = conn.execute(
            "select count(*) from marts.topic_mastery_current where user_id = %s", (learner,)
        ).fetchone()[0]
    assert "CTE Scan on users" not in plan, plan
    assert "users_pkey" in plan, plan
    assert found > 0


SCHEDULE_COLUMNS = (
    "user_id, topic_id, as_of_date, is_current, reviews, attempts, accuracy,"
    " first_attempt_accuracy, easiness, repetitions, interval_days, last_review_date,"
    " next_review_date, days_since_last_review, days_until_due, is_due, retrieval_strength,"
    " materials_completion, mastery_at_last_review, mastery, mastery_confidence"
)


def test_the_schedule_view_is_topic_mastery_current_without_the_recall_model(warehouse):
    """fct_topic_schedule_current holds the rows and the published columns of
    topic_mastery_current, and a dashboard's lookup of one learner there reads none of the recall
    model's inputs (the models, the daily first attempts): at 50,000 learners the recall part
    tripled the planning of every call and missed the 20 ms p95 of two dashboards."""
    url, _ = warehouse
    with psycopg.connect(url) as conn:
        schedule = conn.execute(f"select {SCHEDULE_COLUMNS} from marts.fct_topic_schedule_current")
        current = conn.execute(f"select {SCHEDULE_COLUMNS} from marts.topic_mastery_current")
        schedule_rows, current_rows = sorted(schedule.fetchall()), sorted(current.fetchall())
        learner = schedule_rows[0][0]
        conn.execute("set enable_seqscan = off")  # the tables here are tiny
        plan = "\n".join(
            r[0]
            for r in conn.execute(
                "explain (costs off) select topic_id, mastery, retrieval_strength, is_due"
                " from marts.fct_topic_schedule_current where user_id = %s",
                (learner,),
            )
        )
    assert schedule_rows == current_rows and len(schedule_rows) > 20
    assert "users_pkey" in plan, plan
    assert "recall_models" not in plan and "daily_user_stats" not in plan, plan
