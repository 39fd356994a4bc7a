"""What a python job returns to the pipeline and the CLI, and the error it raises.

Both ml jobs (exam readiness, gap recommendations) return a ``RunReport``: which job ran, for what
day, how many rows it wrote, and the figures worth logging. They raise ``JobError`` with a message
that says what to do (e.g. "run dbt build first") when their inputs are missing.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import psycopg


class JobError(RuntimeError):
    """A python job could not run; the message says why and what to do."""


@dataclass
class RunReport:
    job: str
    as_of: str
    rows_written: int = 0
    rows_deleted: int = 0
    seconds: float = 0.0
    model_version: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        head = f"{self.job} as of {self.as_of}: {self.rows_written} rows written"
        if self.rows_deleted:
            head += f", {self.rows_deleted} replaced"
        if self.model_version:
            head += f", model {self.model_version}"
        return head + f" in {self.seconds:.1f}s"

    def __str__(self) -> str:
        return self.summary()


DBT_FIRST = "run dbt build first (`studyin run` or `studyin dbt build`)"


def require_relations(conn: psycopg.Connection, relations: dict[str, str]) -> None:
    """Raise JobError naming the first missing relation and the command that creates it."""
    for relation, remedy in relations.items():
        found = conn.execute("select to_regclass(%s) is not null", (relation,)).fetchone()
        if not found or not found[0]:
            raise JobError(f"{relation} does not exist: {remedy}")


def query_frame(conn: psycopg.Connection, sql: str, params: Any = None) -> pd.DataFrame:
    """Run a select through COPY (fast, no Python row objects) and return it as a DataFrame."""
    buffer = io.BytesIO()
    with conn.cursor() as cur:
        with cur.copy(f"copy ({sql}) to stdout with (format csv, header)", params) as copy:
            for chunk in copy:
                buffer.write(chunk)
    buffer.seek(0)
    return pd.read_csv(buffer)
