"""Reliability diagrams of the published predictions, for the docs site.

``draw_calibration_plot`` reads the mart ``fct_prediction_reliability`` (mean predicted probability
against observed rate per probability bin, per prediction kind and model version) and draws one
panel per kind, one line per model version (the latest ``max_versions`` of each kind by the last
day they predicted for), each point sized by its number of predictions, beside the diagonal of
perfect calibration. The PNG goes to ``assets/calibration/reliability.png``, a folder of the dbt
project's ``asset-paths``: ``dbt docs generate`` copies it to the site, where the overview page
shows it. The nightly run draws it before generating the docs; ``studyin calibration-plot`` draws
it on demand. With no scored prediction yet the figure says so (the page never shows a missing
image).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from python_jobs.jobs.report import JobError, require_relations
from python_jobs.paths import CALIBRATION_PLOT

DEFAULT_PATH = CALIBRATION_PLOT
MAX_VERSIONS = 6  # lines per panel: the latest versions of each kind

VERSIONS_SQL = """
select prediction_kind, model_version, predictions, expected_calibration_error
from (
    select
        m.*,
        row_number() over (
            partition by prediction_kind order by last_predicted_for desc, model_version desc
        ) as recency
    from marts.fct_prediction_metrics as m
) as ranked
where recency <= %(max_versions)s
order by prediction_kind, recency
"""

BINS_SQL = """
select prediction_kind, model_version, mean_predicted, observed_rate, predictions
from marts.fct_prediction_reliability
where prediction_kind = %(kind)s and model_version = %(version)s
order by calibration_bin
"""


@dataclass(frozen=True)
class Curve:
    """One model version's reliability diagram: (mean predicted, observed rate, n) per bin."""

    kind: str
    version: str
    predictions: int
    expected_calibration_error: float
    points: list[tuple[float, float, int]] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.version} (n={self.predictions}, ECE={self.expected_calibration_error:.3f})"


def load_curves(conn: psycopg.Connection, max_versions: int = MAX_VERSIONS) -> list[Curve]:
    """The latest `max_versions` model versions of each kind with their bins."""
    require_relations(
        conn,
        {
            rel: "run dbt build first (`studyin run`)"
            for rel in ("marts.fct_prediction_metrics", "marts.fct_prediction_reliability")
        },
    )
    versions = conn.execute(VERSIONS_SQL, {"max_versions": max_versions}).fetchall()
    curves = []
    for kind, version, predictions, ece in versions:
        rows = conn.execute(BINS_SQL, {"kind": kind, "version": version}).fetchall()
        points = [(float(r[2]), float(r[3]), int(r[4])) for r in rows]
        curves.append(Curve(kind, version, int(predictions), float(ece), points))
    return curves


def draw_reliability_diagram(curves: list[Curve], path: Path) -> Path:
    """One panel per prediction kind; written atomically (a reader never sees half a file)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = sorted({c.kind for c in curves}) or ["no scored prediction yet"]
    fig, axes = plt.subplots(1, len(kinds), figsize=(5.5 * len(kinds), 5), squeeze=False)
    for ax, kind in zip(axes[0], kinds, strict=True):
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
        for curve in (c for c in curves if c.kind == kind):
            xs, ys, ns = zip(*curve.points, strict=True)
            total = max(curve.predictions, 1)
            line = ax.plot(xs, ys, linewidth=1, label=curve.label)[0]
            ax.scatter(xs, ys, s=[20 + 400 * n / total for n in ns], color=line.get_color())
        ax.set_title(kind if curves else "no scored prediction yet")
        ax.set_xlabel("mean predicted probability (bin)")
        ax.set_ylabel("observed rate")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.legend(loc="upper left", fontsize=7)
    fig.suptitle("Reliability of each model version (marts.fct_prediction_reliability)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=90)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        Path(tmp).unlink(missing_ok=True)
    return path


def draw_calibration_plot(
    url: str, path: Path = DEFAULT_PATH, max_versions: int = MAX_VERSIONS
) -> list[Curve]:
    """Read the reliability mart at `url` and draw it to `path`; return the curves drawn."""
    if max_versions < 1:
        raise JobError(f"max_versions must be at least 1, got {max_versions}")
    with psycopg.connect(url) as conn:
        curves = load_curves(conn, max_versions)
    draw_reliability_diagram(curves, path)
    return curves
