"""The semantic layer: MetricFlow's metrics (models/marts/semantic) with the project's connection.

dbt writes the semantic manifest (``semantic_manifest.json``) into its target folder on every parse;
MetricFlow plans each metric query from it and runs the SQL on the warehouse. Two ways in:

- ``studyin mf ARGS...`` runs the ``mf`` command line of dbt-metricflow in the project, after a
  ``dbt parse`` that refreshes ``target/semantic_manifest.json`` (``mf`` reads it from there);
- :func:`query_metrics` and :func:`validate_semantic_manifest` do the same in this process, on a
  manifest in any target folder, through a psycopg connection (what the tests use).
"""

from __future__ import annotations

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
    from metricflow_semantic_interfaces.protocols.semantic_manifest import SemanticManifest
    from metricflow_semantics.sql.sql_bind_parameters import SqlBindParameterSet

SEMANTIC_MANIFEST = "semantic_manifest.json"
DEFAULT_TARGET = PROJECT_ROOT / "target"


class MetricsError(RuntimeError):
    """The semantic manifest is missing or invalid, or MetricFlow could not answer a query."""


def load_semantic_manifest(target_path: str | Path = DEFAULT_TARGET) -> SemanticManifest:
    """The semantic manifest dbt wrote into `target_path` (run `dbt parse` first)."""
    from metricflow_semantics.model.dbt_manifest_parser import (
        parse_manifest_from_dbt_generated_manifest,
    )

    path = Path(target_path) / SEMANTIC_MANIFEST
    if not path.exists():
        raise MetricsError(f"{path} not found: run `studyin dbt parse` first")
    return parse_manifest_from_dbt_generated_manifest(manifest_json_string=path.read_text())


def validate_semantic_manifest(manifest: SemanticManifest, url: str | None = None) -> list[str]:
    """The blocking issues `mf validate-configs` reports: MetricFlow's semantic validations and,
    given a warehouse `url`, its checks that every semantic model, dimension, entity, measure and
    metric can be queried there (each an `explain` of a generated query)."""
    from metricflow.validation.data_warehouse_model_validator import DataWarehouseModelValidator
    from metricflow_semantic_interfaces.validations.semantic_manifest_validator import (
        SemanticManifestValidator,
    )

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
    def sql_engine_type(self):  # SqlEngine
        from metricflow.protocols.sql_client import SqlEngine

        return SqlEngine.POSTGRES

    @property
    def sql_plan_renderer(self):  # SqlPlanRenderer
        from metricflow.sql.render.postgres import PostgresSQLSqlPlanRenderer

        return PostgresSQLSqlPlanRenderer()

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.url, autocommit=True)
        return self._conn

    def query(self, stmt: str, sql_bind_parameter_set: SqlBindParameterSet | None = None):
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
    return {key: value.value for key, value in parameters.param_dict.items()}


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
    manifest = load_semantic_manifest(target_path)
    _check_database(manifest, url, target_path)
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
    except MetricsError:
        raise
    except Exception as err:  # MetricFlow's own errors: an unknown metric, an invalid filter
        raise MetricsError(f"MetricFlow query failed: {err}") from err
    finally:
        client.close()
    return _frame(result.result_df)


def _check_database(manifest: SemanticManifest, url: str, target_path: str | Path) -> None:
    """The manifest names its tables with the database dbt parsed for; PostgreSQL cannot read
    another database's tables, so a manifest parsed for another database cannot answer."""
    wanted = parse_url(url).dbname
    for model in manifest.semantic_models:
        if model.node_relation.database not in (None, wanted):
            raise MetricsError(
                f"the semantic manifest in {target_path} was parsed for database "
                f"{model.node_relation.database!r}, not {wanted!r}: run `dbt parse` with this"
                " connection first"
            )


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
    run_dbt(["parse", "--quiet"], url=url)
    env = {
        **os.environ,
        **dbt_env(url),
        "DBT_PROFILES_DIR": str(PROJECT_ROOT),
        "DBT_PROJECT_DIR": str(PROJECT_ROOT),
    }
    env.pop("DBT_TARGET_PATH", None)  # mf reads the manifest from <project>/target only
    return subprocess.run([mf_executable(), *args], cwd=PROJECT_ROOT, env=env).returncode
