"""dbt-project-evaluator's rules, checked on dbt's manifest.

The package (dbt-labs/dbt_project_evaluator) cannot be installed here, so its published rules are
restated over target/manifest.json after `dbt parse`, one function per rule, named after the
package's model (fct_...). A violation the project keeps on purpose is listed in KEPT with the
reason; the section "Project rules" of the docs overview (models/overview.md) explains each. A kept
entry that no longer occurs fails too, so the list never outgrows the project.

Beyond the package's rules, the project's own documentation rules are checked here: every column
of every mart and of every source table described (the source columns against the tables Alembic
makes), every macro and each of its arguments described, every model in a group.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import psycopg
import pytest

from python_jobs.warehouse.dbt import run_dbt

Manifest = dict[str, Any]
PROJECT = "studyin"

# The package's defaults (its "overriding variables" page).
MODEL_FANOUT_THRESHOLD = 3  # fct_model_fanout: more than this many direct leaf children
TOO_MANY_JOINS_THRESHOLD = 7  # fct_too_many_joins: this many direct parents or more
CHAINED_VIEWS_THRESHOLD = 5  # fct_chained_views_dependencies: a longer chain of views
PREFIXES = {"staging": ("stg_",), "intermediate": ("int_",), "marts": ("fct_", "dim_")}
# The package's primary_key_test_macros, with this project's unique_combination standing in for
# dbt_utils.unique_combination_of_columns (same meaning: unique, and no null in any key column).
COMBINATION_PK_TESTS = {"unique_combination"}

MART_NAMES_KEPT = (
    "daily_user_stats weekly_user_stats topic_daily_stats session_efficiency learning_patterns"
    " topic_mastery topic_mastery_current topic_mastery_rollup knowledge_gaps"
    " user_learning_metrics cohort_benchmarks topic_catalog"
    # The semantic layer's calendar, named as MetricFlow's documentation names it, and the
    # monitoring table a dashboard reads for "data as of" (neither a fact nor a dimension).
    " metricflow_time_spine warehouse_freshness"
    # The ledger of every published prediction: the name the other components (the recall
    # model's integration, the validity bench) and analysts were given.
    " prediction_ledger"
).split()
# Warnings kept on purpose: rule -> subjects, each explained in models/overview.md (Project rules).
KEPT: dict[str, set[str]] = {
    # Mart names are what dashboards and analysts query; renaming them to fct_/dim_ would break
    # every BI query for a prefix. New marts use dim_/fct_ (dim_learners).
    "fct_model_naming_conventions": set(MART_NAMES_KEPT),
    # The python jobs and the study app run inside the pipeline and read the operational models
    # they need (the review log, staging); they are exposures for lineage, not BI consumers.
    # fct_topic_schedule_current and topic_mastery_current are views on purpose (mastery as of today
    # moves without new events).
    "fct_exposure_parents_materializations": {
        "exam_readiness_job <- stg_app__material_interactions",
        "exam_readiness_job <- stg_app__exam_results",
        "exam_readiness_job <- stg_app__users",
        "exam_readiness_job <- stg_app__topics",
        "gap_recommendations_job <- stg_app__topic_relationships",
        "gap_recommendations_job <- stg_app__questions",
        "gap_recommendations_job <- stg_app__materials",
        "study_app <- stg_ml__exam_readiness_scores",
        "study_app <- stg_ml__gap_recommendations",
        "topic_heatmap <- fct_topic_schedule_current",
        "due_reviews <- fct_topic_schedule_current",
    },
    "fct_exposures_dependent_on_private_models": {
        "exam_readiness_job <- int_topic_reviews_scheduled",
        "exam_readiness_job <- stg_app__material_interactions",
        "exam_readiness_job <- stg_app__exam_results",
        "exam_readiness_job <- stg_app__users",
        "exam_readiness_job <- stg_app__topics",
        "gap_recommendations_job <- int_question_answers_folded",
        "gap_recommendations_job <- stg_app__topic_relationships",
        "gap_recommendations_job <- stg_app__questions",
        "gap_recommendations_job <- stg_app__materials",
        "study_app <- stg_ml__exam_readiness_scores",
        "study_app <- stg_ml__gap_recommendations",
    },
    # Incremental models find the keys touched since their watermark in the arrival log (a staging
    # model) and read the rows to recompute from an intermediate model over the same log.
    "fct_rejoining_of_upstream_concepts": {
        "stg_app__question_attempts -> int_user_hours_aggregated -> learning_patterns",
        "stg_app__question_attempts -> int_question_attempts_scored -> int_topic_reviews_scheduled",
        # a mart of its own (analysts read it) that the gaps grade by
        "stg_app__users -> topic_mastery_current -> knowledge_gaps",
        "stg_app__topics -> topic_mastery_current -> knowledge_gaps",
    },
    # Most of these parents are read by the touched-keys macros and the watermark post-hook (one
    # per event table), not joined into the rows.
    "fct_too_many_joins": {"daily_user_stats", "weekly_user_stats"},
    # The time spine is a generated calendar (a series of dates): it has no parent by nature.
    "fct_root_models": {"metricflow_time_spine"},
    # The answers' staging model feeds the scored-attempts view, the hourly and daily aggregates
    # and the freshness mart (its newest times): each reads another side of the same log.
    "fct_model_fanout": {"stg_app__question_attempts"},
    # Reference and bookkeeping tables change rarely and carry no load time, and refused input is
    # rare by design: a quiet day says nothing about the pipeline.
    # The receipts are written with every event: the check of study_events covers them; a recall
    # model's topic offsets with its recall_models row, whose check covers them.
    "fct_sources_without_freshness": {
        "ml.recall_topic_offsets",
        "app.rejected_events",
        "app.event_receipts",
        "app.users",
        "app.topics",
        "app.topic_relationships",
        "app.materials",
        "app.questions",
        "app.event_types",
        "app.deletion_requests",
    },
}


# ----------------------------------------------------------------------------- the manifest


@pytest.fixture(scope="module")
def manifest(server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    """dbt's manifest of the project as `dbt parse` writes it (parse reads no table)."""
    target = tmp_path_factory.mktemp("dbt_parse")
    run_dbt(["parse"], url=server_url, target_path=target)
    return json.loads((target / "manifest.json").read_text())


def _own(manifest: Manifest, kind: str) -> dict[str, dict]:
    """Nodes of this project of one resource type, by unique_id."""
    pool = manifest["sources"] if kind == "source" else manifest["nodes"]
    return {
        uid: node
        for uid, node in pool.items()
        if node["resource_type"] == kind and node["package_name"] == PROJECT
    }


def _models(manifest: Manifest) -> dict[str, dict]:
    return _own(manifest, "model")


def _layer(node: dict) -> str:
    """staging, intermediate or marts: the model's first folder under models/."""
    return PurePosixPath(node["original_file_path"]).parts[1]


def _parents(node: dict) -> list[str]:
    return list(dict.fromkeys(node["depends_on"]["nodes"]))


def _model_children(manifest: Manifest) -> dict[str, set[str]]:
    children: dict[str, set[str]] = defaultdict(set)
    for uid, node in _models(manifest).items():
        for parent in _parents(node):
            children[parent].add(uid)
    return children


def _name(manifest: Manifest, uid: str) -> str:
    if uid.startswith("source."):
        source = manifest["sources"][uid]
        return f"{source['source_name']}.{source['name']}"
    return uid.split(".")[-1]


# ----------------------------------------------------------------------------- modeling


def fct_direct_join_to_source(m: Manifest) -> set[str]:
    """A model reading both a source and a model."""
    found = set()
    for node in _models(m).values():
        parents = _parents(node)
        if any(p.startswith("source.") for p in parents) and any(
            p.startswith("model.") for p in parents
        ):
            found.add(node["name"])
    return found


def fct_marts_or_intermediate_dependent_on_source(m: Manifest) -> set[str]:
    return {
        f"{node['name']} <- {_name(m, p)}"
        for node in _models(m).values()
        if _layer(node) in ("intermediate", "marts")
        for p in _parents(node)
        if p.startswith("source.")
    }


def fct_duplicate_sources(m: Manifest) -> set[str]:
    by_relation: dict[str, list[str]] = defaultdict(list)
    for uid, source in _own(m, "source").items():
        by_relation[source["relation_name"]].append(_name(m, uid))
    return {" = ".join(sorted(names)) for names in by_relation.values() if len(names) > 1}


# Outside Jinja, `from|join schema.table`: a relation named in SQL instead of ref() or source().
HARD_CODED = re.compile(r"\b(?:from|join)\s+(\"?\w+\"?\s*\.\s*\"?\w+\"?)(?!\s*\()", re.IGNORECASE)
JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)
SQL_COMMENT = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)


def fct_hard_coded_references(m: Manifest) -> set[str]:
    found = set()
    for node in _models(m).values():
        code = SQL_COMMENT.sub(" ", JINJA.sub(" ", node["raw_code"]))
        found |= {f"{node['name']}: {ref}" for ref in HARD_CODED.findall(code)}
    return found


def fct_model_fanout(m: Manifest) -> set[str]:
    """A parent with more than the threshold of direct children that are leaves of the DAG."""
    children = _model_children(m)
    found = set()
    for parent, kids in children.items():
        leaves = {kid for kid in kids if not children.get(kid)}
        if len(leaves) > MODEL_FANOUT_THRESHOLD:
            found.add(_name(m, parent))
    return found


def fct_multiple_sources_joined(m: Manifest) -> set[str]:
    return {
        node["name"]
        for node in _models(m).values()
        if sum(p.startswith("source.") for p in _parents(node)) > 1
    }


def fct_rejoining_of_upstream_concepts(m: Manifest) -> set[str]:
    """Parent -> A -> B and parent -> B, where A has no child but B."""
    children = _model_children(m)
    found = set()
    for node in _models(m).values():
        parents = set(_parents(node))
        for middle in parents:
            if children.get(middle) != {node["unique_id"]} or middle not in _models(m):
                continue
            for shared in parents & set(_parents(_models(m)[middle])):
                found.add(f"{_name(m, shared)} -> {_name(m, middle)} -> {node['name']}")
    return found


def fct_root_models(m: Manifest) -> set[str]:
    return {node["name"] for node in _models(m).values() if not _parents(node)}


def fct_source_fanout(m: Manifest) -> set[str]:
    children = _model_children(m)
    return {_name(m, uid) for uid in _own(m, "source") if len(children.get(uid, ())) > 1}


def fct_staging_dependent_on_marts_or_intermediate(m: Manifest) -> set[str]:
    models = _models(m)
    return {
        f"{node['name']} <- {_name(m, p)}"
        for node in models.values()
        if _layer(node) == "staging"
        for p in _parents(node)
        if p in models and _layer(models[p]) in ("intermediate", "marts")
    }


def fct_staging_dependent_on_staging(m: Manifest) -> set[str]:
    models = _models(m)
    return {
        f"{node['name']} <- {_name(m, p)}"
        for node in models.values()
        if _layer(node) == "staging"
        for p in _parents(node)
        if p in models and _layer(models[p]) == "staging"
    }


def fct_unused_sources(m: Manifest) -> set[str]:
    children = _model_children(m)
    return {_name(m, uid) for uid in _own(m, "source") if not children.get(uid)}


def fct_too_many_joins(m: Manifest) -> set[str]:
    return {
        node["name"]
        for node in _models(m).values()
        if len(_parents(node)) >= TOO_MANY_JOINS_THRESHOLD
    }


# ----------------------------------------------------------------------------- testing


def _tests_by_model(m: Manifest) -> dict[str, list[dict]]:
    tests: dict[str, list[dict]] = defaultdict(list)
    for test in _own(m, "test").values():
        attached = test.get("attached_node") or next(iter(test["depends_on"]["nodes"]), None)
        if attached:
            tests[attached].append(test)
    return tests


def _test_name(test: dict) -> str | None:
    return (test.get("test_metadata") or {}).get("name")


def _has_primary_key_test(node: dict, tests: list[dict]) -> bool:
    def columns(test_name: str) -> set[str]:
        return {t["column_name"] for t in tests if _test_name(t) == test_name}

    if any(_test_name(t) in COMBINATION_PK_TESTS for t in tests):
        return True
    unique, not_null = columns("unique"), columns("not_null")
    constrained = {
        name
        for name, column in node["columns"].items()
        if any(c["type"] == "not_null" for c in column.get("constraints", []))
    }
    return bool(unique & (not_null | constrained))


def fct_missing_primary_key_tests(m: Manifest) -> set[str]:
    tests = _tests_by_model(m)
    return {
        node["name"]
        for uid, node in _models(m).items()
        if not _has_primary_key_test(node, tests.get(uid, []))
    }


def fct_sources_without_freshness(m: Manifest) -> set[str]:
    def has_freshness(source: dict) -> bool:
        freshness = source.get("freshness") or {}
        return bool(freshness.get("warn_after", {}).get("count")) or bool(
            freshness.get("error_after", {}).get("count")
        )

    return {_name(m, uid) for uid, source in _own(m, "source").items() if not has_freshness(source)}


def fct_test_coverage(m: Manifest) -> set[str]:
    """The package wants 100 % of models with at least one data test: the models without one."""
    tests = _tests_by_model(m)
    return {node["name"] for uid, node in _models(m).items() if not tests.get(uid)}


# ----------------------------------------------------------------------------- documentation


def fct_undocumented_models(m: Manifest) -> set[str]:
    return {node["name"] for node in _models(m).values() if not node["description"].strip()}


def fct_documentation_coverage(m: Manifest) -> set[str]:
    """The package wants 100 % of models described: the same set, counted as a share."""
    return fct_undocumented_models(m)


def fct_undocumented_source_tables(m: Manifest) -> set[str]:
    return {
        _name(m, uid)
        for uid, source in _own(m, "source").items()
        if not source["description"].strip()
    }


def fct_undocumented_sources(m: Manifest) -> set[str]:
    return {
        source["source_name"]
        for source in _own(m, "source").values()
        if not source["source_description"].strip()
    }


# ----------------------------------------------------------------------------- structure


def fct_model_naming_conventions(m: Manifest) -> set[str]:
    return {
        node["name"]
        for node in _models(m).values()
        if _layer(node) in PREFIXES and not node["name"].startswith(PREFIXES[_layer(node)])
    }


def fct_model_directories(m: Manifest) -> set[str]:
    """Staging models under staging/<their source>/; other models under their type's folder."""
    found = set()
    for node in _models(m).values():
        parts = PurePosixPath(node["original_file_path"]).parts
        prefix = next((layer for layer, p in PREFIXES.items() if node["name"].startswith(p)), None)
        if prefix and parts[1] != prefix:
            found.add(f"{node['name']} in {parts[1]}")
        sources = {
            m["sources"][p]["source_name"] for p in _parents(node) if p.startswith("source.")
        }
        if parts[1] == "staging" and sources and parts[2] not in sources:
            found.add(f"{node['name']} in staging/{parts[2]}")
    return found


def fct_source_directories(m: Manifest) -> set[str]:
    found = set()
    for uid, source in _own(m, "source").items():
        folder = PurePosixPath(source["original_file_path"]).parent
        if folder != PurePosixPath("models", "staging", source["source_name"]):
            found.add(f"{_name(m, uid)} in {folder}")
    return found


def fct_test_directories(m: Manifest) -> set[str]:
    """A model's YAML tests live in the model's own folder."""
    models = _models(m)
    found = set()
    for test in _own(m, "test").values():
        model = models.get(test.get("attached_node") or "")
        if model is None or not test["original_file_path"].endswith(".yml"):
            continue
        here = PurePosixPath(test["original_file_path"]).parent
        if here != PurePosixPath(model["original_file_path"]).parent:
            found.add(f"{model['name']} tested in {here}")
    return found


# ----------------------------------------------------------------------------- performance


def _is_view(node: dict | None) -> bool:
    return node is not None and node["config"]["materialized"] in ("view", "ephemeral")


def _view_chain(models: dict[str, dict], uid: str, memo: dict[str, int]) -> int:
    """Length of the longest chain of views or ephemerals ending at (and including) uid."""
    if uid not in memo:
        node = models.get(uid)
        if node is None or not _is_view(node):
            memo[uid] = 0
        else:
            memo[uid] = 1 + max((_view_chain(models, p, memo) for p in _parents(node)), default=0)
    return memo[uid]


def fct_chained_views_dependencies(m: Manifest) -> set[str]:
    models = _models(m)
    memo: dict[str, int] = {}
    found = set()
    for node in models.values():
        longest = max((_view_chain(models, p, memo) for p in _parents(node)), default=0)
        if longest > CHAINED_VIEWS_THRESHOLD:
            found.add(f"{node['name']}: {longest} views")
    return found


def _exposure_parents(m: Manifest) -> list[tuple[str, str, dict | None]]:
    models = _models(m)
    return [
        (exposure["name"], parent, models.get(parent))
        for exposure in m["exposures"].values()
        if exposure["package_name"] == PROJECT
        for parent in exposure["depends_on"]["nodes"]
    ]


def fct_exposure_parents_materializations(m: Manifest) -> set[str]:
    return {
        f"{exposure} <- {_name(m, parent)}"
        for exposure, parent, model in _exposure_parents(m)
        if model is None or model["config"]["materialized"] not in ("table", "incremental")
    }


# ----------------------------------------------------------------------------- governance


def _public(m: Manifest) -> dict[str, dict]:
    return {uid: node for uid, node in _models(m).items() if node.get("access") == "public"}


def fct_public_models_without_contract(m: Manifest) -> set[str]:
    return {
        node["name"]
        for node in _public(m).values()
        if not node["config"].get("contract", {}).get("enforced")
    }


def fct_undocumented_public_models(m: Manifest) -> set[str]:
    found = set()
    for node in _public(m).values():
        if not node["description"].strip():
            found.add(node["name"])
        found |= {
            f"{node['name']}.{name}"
            for name, column in node["columns"].items()
            if not column["description"].strip()
        }
    return found


def fct_exposures_dependent_on_private_models(m: Manifest) -> set[str]:
    return {
        f"{exposure} <- {_name(m, parent)}"
        for exposure, parent, model in _exposure_parents(m)
        if model is None or model.get("access") != "public"
    }


RULES: list[Callable[[Manifest], set[str]]] = [
    fct_direct_join_to_source,
    fct_marts_or_intermediate_dependent_on_source,
    fct_duplicate_sources,
    fct_hard_coded_references,
    fct_model_fanout,
    fct_multiple_sources_joined,
    fct_rejoining_of_upstream_concepts,
    fct_root_models,
    fct_source_fanout,
    fct_staging_dependent_on_marts_or_intermediate,
    fct_staging_dependent_on_staging,
    fct_unused_sources,
    fct_too_many_joins,
    fct_missing_primary_key_tests,
    fct_sources_without_freshness,
    fct_test_coverage,
    fct_undocumented_models,
    fct_documentation_coverage,
    fct_undocumented_source_tables,
    fct_undocumented_sources,
    fct_model_naming_conventions,
    fct_model_directories,
    fct_source_directories,
    fct_test_directories,
    fct_chained_views_dependencies,
    fct_exposure_parents_materializations,
    fct_public_models_without_contract,
    fct_undocumented_public_models,
    fct_exposures_dependent_on_private_models,
]


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.__name__)
def test_evaluator_rule(manifest: Manifest, rule: Callable[[Manifest], set[str]]):
    found = rule(manifest)
    kept = KEPT.get(rule.__name__, set())
    assert found - kept == set(), "violations not kept on purpose"
    assert kept - found == set(), (
        "kept warnings that no longer occur: drop them from KEPT and the docs"
    )


def test_every_kept_warning_is_explained_in_the_docs():
    overview = (Path(__file__).parents[1] / "models" / "overview.md").read_text()
    text = overview.split("\n## Project rules\n", 1)[1]
    for rule in KEPT:
        assert f"`{rule}`" in text, f"{rule} is kept but not explained"
    for name in MART_NAMES_KEPT:
        assert f"`{name}`" in text


def test_the_rules_see_the_whole_project(manifest: Manifest):
    """The rules above would pass vacuously on an empty manifest."""
    assert len(_models(manifest)) >= 38
    assert len(_own(manifest, "source")) >= 17
    assert len([e for e in manifest["exposures"].values() if e["package_name"] == PROJECT]) >= 8
    assert len(_public(manifest)) >= 12


# ----------------------------------------------------------------------------- the project's own


def test_every_mart_column_is_described(manifest: Manifest):
    """Contracts make the YAML list every column a mart has; each needs a description."""
    marts = {uid: n for uid, n in _models(manifest).items() if _layer(n) == "marts"}
    assert all(n["config"]["contract"]["enforced"] for n in marts.values())
    missing = {
        f"{node['name']}.{name}"
        for node in marts.values()
        for name, column in node["columns"].items()
        if not column["description"].strip()
    }
    assert missing == set()


def test_every_source_column_is_described(manifest: Manifest, migrated_db: str):
    """Against the tables Alembic makes: a column the YAML does not list is undescribed too."""
    described = {
        (source["schema"], source["identifier"], name)
        for source in _own(manifest, "source").values()
        for name, column in source["columns"].items()
        if column["description"].strip()
    }
    tables = {(s["schema"], s["identifier"]) for s in _own(manifest, "source").values()}
    with psycopg.connect(migrated_db) as conn:
        actual = {
            row
            for row in conn.execute(
                "select table_schema, table_name, column_name from information_schema.columns"
                " where table_schema in ('app', 'ml')"
            )
            if row[:2] in tables
        }
    assert len(actual) >= 110
    assert actual - described == set(), "source columns without a description"
    assert described - actual == set(), "described columns the tables do not have"


def test_every_macro_and_argument_is_described(manifest: Manifest):
    macros = [m for m in manifest["macros"].values() if m["package_name"] == PROJECT]
    sources = list(Path(__file__).parents[1].glob("macros/*.sql"))
    sources += Path(__file__).parent.glob("dbt/generic/*.sql")
    declared = re.findall(
        r"\{%-?\s*(?:macro|test|materialization)\s+(\w+)", "".join(p.read_text() for p in sources)
    )
    assert len(macros) == len(declared) >= 40
    assert [m["name"] for m in macros if not m["description"].strip()] == []
    undocumented = [
        f"{m['name']}({arg['name']})"
        for m in macros
        for arg in m["arguments"]
        if not arg["description"].strip()
    ]
    assert undocumented == []
    # Every argument a macro takes is listed (the generic tests' model and column_name included).
    for m in macros:
        if m["name"].startswith("materialization_"):  # takes no arguments
            continue
        signature = re.search(r"(?:macro|test)\s+\w+\((.*?)\)\s*-?%\}", m["macro_sql"], re.DOTALL)
        names = [a.split("=")[0].strip() for a in signature.group(1).split(",") if a.strip()]
        assert [arg["name"] for arg in m["arguments"]] == names, m["name"]


def test_every_model_has_an_owning_group(manifest: Manifest):
    groups = {g["name"]: g for g in manifest["groups"].values() if g["package_name"] == PROJECT}
    assert {g["owner"]["email"].split("@")[1] for g in groups.values()} == {"studyin.example"}
    assert [
        n["name"] for n in _models(manifest).values() if n["config"]["group"] not in groups
    ] == []
    exposures = [e for e in manifest["exposures"].values() if e["package_name"] == PROJECT]
    assert [e["name"] for e in exposures if not (e["url"] or "").startswith("https://")] == []


# ----------------------------------------------------------------------------- the rules themselves


def _fake_model(name: str, folder: str, parents: list[str], **config: Any) -> dict:
    return {
        "resource_type": "model",
        "package_name": PROJECT,
        "unique_id": f"model.{PROJECT}.{name}",
        "name": name,
        "original_file_path": f"models/{folder}/{name}.sql",
        "depends_on": {"nodes": parents},
        "config": {"materialized": config.get("materialized", "table"), "contract": {}},
        "access": config.get("access", "protected"),
        "raw_code": config.get("raw_code", "select 1"),
        "description": config.get("description", "described"),
        "columns": {},
    }


def _broken_project() -> Manifest:
    """A small project breaking one rule per model."""
    raw = {
        "resource_type": "source",
        "package_name": PROJECT,
        "source_name": "app",
        "name": "users",
        "relation_name": '"db"."app"."users"',
        "original_file_path": "models/staging/app/_app__sources.yml",
        "description": "d",
        "source_description": "d",
        "freshness": None,
    }
    src = "source.studyin.app.users"
    models = [
        _fake_model("stg_app__users", "staging/app", [src], materialized="view"),
        _fake_model("stg_app__view2", "staging/app", [src], materialized="view"),
        _fake_model("int_reads_source", "intermediate", [src, "model.studyin.stg_app__users"]),
        _fake_model("stg_app__reads_mart", "staging/app", ["model.studyin.fct_mart"]),
        _fake_model("fct_mart", "marts", ["model.studyin.stg_app__users"], access="public"),
        _fake_model("orphan", "marts", [], raw_code="select * from app.users", description=" "),
        _fake_model("int_a", "intermediate", ["model.studyin.stg_app__users"]),
        _fake_model(
            "int_b", "intermediate", [f"model.{PROJECT}.{n}" for n in ("stg_app__users", "int_a")]
        ),
    ]
    exposure = {
        "name": "dash",
        "package_name": PROJECT,
        "depends_on": {"nodes": ["model.studyin.stg_app__users", "model.studyin.fct_mart"]},
    }
    nodes = {m["unique_id"]: m for m in models}
    return {"nodes": nodes, "sources": {src: raw}, "exposures": {"exposure.studyin.dash": exposure}}


def test_the_rules_flag_a_broken_project():
    m = _broken_project()
    assert fct_direct_join_to_source(m) == {"int_reads_source"}
    assert fct_marts_or_intermediate_dependent_on_source(m) == {"int_reads_source <- app.users"}
    assert fct_staging_dependent_on_marts_or_intermediate(m) == {"stg_app__reads_mart <- fct_mart"}
    assert fct_root_models(m) == {"orphan"}
    assert fct_hard_coded_references(m) == {"orphan: app.users"}
    assert fct_source_fanout(m) == {"app.users"}
    assert fct_model_naming_conventions(m) == {"orphan"}
    assert fct_undocumented_models(m) == {"orphan"}
    assert fct_sources_without_freshness(m) == {"app.users"}
    assert fct_missing_primary_key_tests(m) == {n["name"] for n in m["nodes"].values()}
    assert fct_public_models_without_contract(m) == {"fct_mart"}
    assert fct_exposure_parents_materializations(m) == {"dash <- stg_app__users"}
    assert fct_exposures_dependent_on_private_models(m) == {"dash <- stg_app__users"}
    assert fct_rejoining_of_upstream_concepts(m) == {"stg_app__users -> int_a -> int_b"}
    assert fct_unused_sources(m) == set()
