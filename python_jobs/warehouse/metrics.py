"""The semantic layer: MetricFlow's metrics (models/marts/semantic) with the project's connection.

dbt writes the semantic manifest (``semantic_manifest.json``) into its target folder on every parse;
MetricFlow plans each metric query from it and runs the SQL on the warehouse. Two ways in:

- ``studyin mf ARGS...`` runs the ``mf`` command line of dbt-metricflow in the project, after a
  ``dbt parse`` that refreshes ``target/semantic_manifest.json`` (``mf`` reads it from there);
- :func:`query_metrics` and :func:`validate_semantic_layer` do the same in this process, on a
  manifest in any target folder, through a psycopg connection (what the tests use).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from uuid import UUID

import pandas as pd
import psycopg

from python_jobs.paths import PROJECT_ROOT
from python_jobs.warehouse.db import database_url, dbt_env, parse_url
from python_jobs.warehouse.dbt import run_dbt

if TYPE_CHECKING:
    from metricflow.data_table.mf_table import MetricFlowDataTable
    from metricflow.engine.metricflow_engine import MetricFlowEngine
    from metricflow.protocols.sql_client import SqlEngine
    from metricflow.sql.render.sql_plan_renderer import SqlPlanRenderer
    from metricflow_semantic_interfaces.protocols.semantic_manifest import SemanticManifest
    from metricflow_semantics.sql.sql_bind_parameters import SqlBindParameterSet

SEMANTIC_MANIFEST = "semantic_manifest.json"
DEFAULT_TARGET = PROJECT_ROOT / "target"


class MetricsError(RuntimeError):
    """The semantic manifest is missing or invalid, or MetricFlow could not answer a query."""


def load_semantic_manifest(
    target_path: str | Path = DEFAULT_TARGET, database: str | None = None
) -> SemanticManifest:
    """The semantic manifest dbt wrote into `target_path` (run `dbt parse` first).

    dbt names each table with the database it parsed for ("studyin"."marts"."x"); PostgreSQL
    reads only the database a connection is on, so with `database` given the tables are named in
    that one instead (the same project built in another database, e.g. a test's).
    """
    from metricflow_semantics.model.dbt_manifest_parser import (
        parse_manifest_from_dbt_generated_manifest,
    )

    path = Path(target_path) / SEMANTIC_MANIFEST
    if not path.exists():
        raise MetricsError(f"{path} not found: run `studyin dbt parse` first")
    document = json.loads(path.read_text())
    if database is not None:
        _rename_database(document, database)
    return parse_manifest_from_dbt_generated_manifest(manifest_json_string=json.dumps(document))


def _rename_database(node: object, database: str) -> None:
    """Point every table reference (`node_relation`) of the manifest at `database`."""
    if isinstance(node, list):
        for item in node:
            _rename_database(item, database)
    elif isinstance(node, dict):
        relation = node.get("node_relation")
        if isinstance(relation, dict) and relation.get("alias"):
            relation["database"] = database
            relation["relation_name"] = ".".join(
                _quoted(part) for part in (database, relation["schema_name"], relation["alias"])
            )
        for value in node.values():
            _rename_database(value, database)


def _quoted(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def validate_semantic_layer(
    target_path: str | Path = DEFAULT_TARGET, url: str | None = None
) -> list[str]:
    """The blocking issues `mf validate-configs` reports on the manifest in `target_path`:
    MetricFlow's semantic validations and, given a warehouse `url`, its checks that every semantic
    model, dimension, entity, measure and metric can be queried there (each an `explain` of a
    generated query)."""
    from metricflow.validation.data_warehouse_model_validator import DataWarehouseModelValidator
    from metricflow_semantic_interfaces.validations.semantic_manifest_validator import (
        SemanticManifestValidator,
    )

    database = parse_url(url).dbname if url is not None else None
    manifest = load_semantic_manifest(target_path, database=database)
    results = SemanticManifestValidator().validate_semantic_manifest(manifest)
    issues = [issue.as_readable_str() for issue in results.errors]
    if issues or url is None:
        return issues
    client = PostgresSqlClient(url)
    validator = DataWarehouseModelValidator(sql_client=client)
    try:
        for check in (
            validator.validate_semantic_models,
            validator.validate_dimensions,
            validator.validate_entities,
            validator.validate_simple_metrics,
            validator.validate_metrics,
        ):
            issues += [issue.as_readable_str() for issue in check(manifest).errors]
    finally:
        client.close()
    return issues


@dataclass
class PostgresSqlClient:
    """MetricFlow's SqlClient over one psycopg connection (autocommit: every query stands alone).

    The `mf` command line talks to the database through dbt's adapter; in this process a plain
    connection is simpler and needs no dbt global state.
    """

    url: str
    _conn: psycopg.Connection | None = field(default=None, init=False, repr=False)

    @property
    def sql_engine_type(self) -> SqlEngine:
        from metricflow.protocols.sql_client import SqlEngine

        return SqlEngine.POSTGRES

    @property
    def sql_plan_renderer(self) -> SqlPlanRenderer:
        from metricflow.sql.render.postgres import PostgresSQLSqlPlanRenderer

        return PostgresSQLSqlPlanRenderer()

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.url, autocommit=True)
        return self._conn

    def query(
        self, stmt: str, sql_bind_parameter_set: SqlBindParameterSet | None = None
    ) -> MetricFlowDataTable:
        from metricflow.data_table.mf_table import MetricFlowDataTable

        with self._connection().cursor() as cur:
            cur.execute(stmt, _params(sql_bind_parameter_set))
            columns = [column.name for column in cur.description or ()]
            rows = [tuple(_cell(value) for value in row) for row in cur.fetchall()]
        return MetricFlowDataTable.create_from_rows(column_names=columns, rows=rows)

    def execute(self, stmt: str, sql_bind_parameter_set: SqlBindParameterSet | None = None) -> None:
        self._connection().execute(stmt, _params(sql_bind_parameter_set))

    def dry_run(self, stmt: str, sql_bind_parameter_set: SqlBindParameterSet | None = None) -> None:
        self._connection().execute(f"explain {stmt}", _params(sql_bind_parameter_set))

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()

    def render_bind_parameter_key(self, bind_parameter_key: str) -> str:
        return f"%({bind_parameter_key})s"


def _cell(value: object) -> object:
    """A value MetricFlow's data table accepts: UUIDs (entity keys) become text."""
    return str(value) if isinstance(value, UUID) else value


def _params(parameters: SqlBindParameterSet | None) -> dict[str, object] | None:
    if parameters is None or not parameters.param_dict:
        return None
    return {key: value.union_value for key, value in parameters.param_dict.items()}


def metricflow_engine(client: PostgresSqlClient, manifest: SemanticManifest) -> MetricFlowEngine:
    from metricflow.engine.metricflow_engine import MetricFlowEngine
    from metricflow_semantics.model.semantic_manifest_lookup import SemanticManifestLookup

    return MetricFlowEngine(
        semantic_manifest_lookup=SemanticManifestLookup(manifest), sql_client=client
    )


@dataclass(frozen=True)
class MetricQuery:
    """One MetricFlow query: metrics by group-by items, or a saved query (plus where filters)."""

    metrics: Sequence[str] = ()
    group_by: Sequence[str] = ()
    where: Sequence[str] = ()
    saved_query: str | None = None
    order_by: Sequence[str] = ()


def query_metrics(
    query: MetricQuery, url: str | None = None, target_path: str | Path = DEFAULT_TARGET
) -> pd.DataFrame:
    """Run `query` through MetricFlow on the warehouse at `url`; one column per item."""
    from metricflow.engine.metricflow_engine import MetricFlowQueryRequest

    url = url or database_url()
    manifest = load_semantic_manifest(target_path, database=parse_url(url).dbname)
    client = PostgresSqlClient(url)
    try:
        engine = metricflow_engine(client, manifest)
        request = MetricFlowQueryRequest.create(
            saved_query_name=query.saved_query,
            metric_names=list(query.metrics) or None,
            group_by_names=list(query.group_by) or None,
            where_constraints=list(query.where) or None,
            order_by_names=list(query.order_by) or None,
        )
        result = engine.query(mf_request=request)
    except Exception as err:  # MetricFlow's own errors: an unknown metric, an invalid filter
        raise MetricsError(f"MetricFlow query failed: {err}") from err
    finally:
        client.close()
    return _frame(result.result_df)


def _frame(table: MetricFlowDataTable | None) -> pd.DataFrame:
    if table is None:
        return pd.DataFrame()
    return pd.DataFrame([list(row) for row in table.rows], columns=list(table.column_names))


def mf_executable() -> str:
    candidate = Path(sys.executable).parent / "mf"
    return str(candidate) if candidate.exists() else "mf"


def run_mf(args: Sequence[str], url: str | None = None) -> int:
    """`mf ARGS` in the project with its connection, after refreshing target/'s manifest."""
    url = url or database_url()
    run_dbt(["parse", "--quiet"], url=url, target_path=DEFAULT_TARGET)
    env = {
        **os.environ,
        **dbt_env(url),
        "DBT_PROFILES_DIR": str(PROJECT_ROOT),
        "DBT_PROJECT_DIR": str(PROJECT_ROOT),
    }
    env.pop("DBT_TARGET_PATH", None)  # mf reads the manifest from <project>/target only
    return subprocess.run([mf_executable(), *args], cwd=PROJECT_ROOT, env=env).returncode
