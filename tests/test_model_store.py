"""Stored readiness models are data: the skops round trip, what is refused, and the migration that
cleared the pickles stored before it."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from datetime import date
from pathlib import Path

import numpy as np
import psycopg
import pytest
import skops.io as sio
from alembic.script import ScriptDirectory
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from python_jobs.jobs import model_store
from python_jobs.warehouse import migrate

REVISION = "0010_models_as_data"


def _fields(kind: str, method: str) -> dict:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 5))
    y = (x[:, 0] + rng.normal(size=600) > 0).astype(int)
    base = (
        make_pipeline(StandardScaler(), LogisticRegression())
        if kind == "logistic"
        else HistGradientBoostingClassifier(max_iter=20)
    ).fit(x[:300], y[:300])
    classifier = CalibratedClassifierCV(FrozenEstimator(base), method=method).fit(x[300:], y[300:])
    return {
        "kind": kind,
        "classifier": classifier,
        "regressor": HistGradientBoostingRegressor(max_iter=20).fit(x, x[:, 0]),
        "low_offset": -3.5,
        "high_offset": 4.0,
        "reference": np.median(x, axis=0),
        "evaluation": {"auc": 0.8, "brier": None, "split": {"test_from": "2026-11-01"}},
        "calibration": [{"bin_low": 0.0, "n": 3, "observed_rate": None}],
        "test_y": y[:10],
        "test_p": x[:10, 0],
        "n_train": 300,
        "n_test": 10,
    }


@pytest.mark.parametrize(
    ("kind", "method"), [("logistic", "sigmoid"), ("hgb", "isotonic"), ("hgb", "sigmoid")]
)
def test_every_model_shape_round_trips_with_the_trusted_list(kind: str, method: str) -> None:
    fields = _fields(kind, method)
    data = model_store.dump_model(fields)
    loaded = model_store.load_model(data, "skops")
    x = np.random.default_rng(1).normal(size=(50, 5))
    assert set(sio.get_untrusted_types(data=data)) <= set(model_store.TRUSTED_TYPES)
    np.testing.assert_array_equal(
        loaded["classifier"].predict_proba(x), fields["classifier"].predict_proba(x)
    )
    np.testing.assert_array_equal(loaded["regressor"].predict(x), fields["regressor"].predict(x))
    assert loaded["evaluation"] == fields["evaluation"]
    assert loaded["calibration"] == fields["calibration"]
    assert (loaded["low_offset"], loaded["n_test"]) == (-3.5, 10)


class _TouchOnBuild:
    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __setstate__(self, state: dict) -> None:
        Path(state["path"]).touch()
        self.__dict__.update(state)


class _OpenOnUnpickle:
    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_anything_else_is_refused_without_being_built(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    good = model_store.dump_model(_fields("logistic", "sigmoid"))
    cases = {
        "a pickle": (pickle.dumps(_OpenOnUnpickle(marker)), "skops", "not a skops file"),
        "an untrusted type": (
            sio.dumps({**_fields("logistic", "sigmoid"), "reference": _TouchOnBuild(marker)}),
            "skops",
            "untrusted types: test_model_store._TouchOnBuild",
        ),
        "a truncated file": (good[: len(good) // 2], "skops", "not a skops file"),
        "a corrupted file": (good[:60] + bytes(200) + good[260:], "skops", "unreadable skops"),
        "another format": (good, "pickle", "model_format is 'pickle', not 'skops'"),
        "other fields": (sio.dumps({"kind": "logistic"}), "skops", "unexpected fields"),
    }
    for case, (data, model_format, reason) in cases.items():
        with pytest.raises(model_store.UntrustedModel) as refused:
            model_store.load_model(data, model_format)
        assert reason in str(refused.value), case
        assert "\n" not in str(refused.value), case
    assert not marker.exists()


def test_migration_clears_pickles_and_downgrade_clears_skops(
    database_factory: Callable[..., str],
) -> None:
    url = database_factory("models_as_data", migrated=False)
    script = ScriptDirectory.from_config(migrate.alembic_config(url))
    previous = script.get_revision(REVISION).down_revision
    migrate.upgrade(url, previous)
    insert = (
        "insert into ml.model_runs (model_version, model_kind, trained_as_of, model_key, model)"
        " values (%s, 'logistic', %s, 'k', %s)"
    )
    with psycopg.connect(url) as conn:
        conn.execute(insert, ("legacy", date(2026, 11, 1), b"\x80\x04legacy pickle"))
        conn.execute(insert, ("heuristic", date(2026, 11, 1), None))
    migrate.upgrade(url, REVISION)
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "select model_version, model, model_format from ml.model_runs order by 1"
        ).fetchall()
        assert rows == [("heuristic", None, None), ("legacy", None, None)]
        with pytest.raises(psycopg.errors.CheckViolation):  # a model says what it is
            conn.execute("update ml.model_runs set model = '\\x00' where model_version = 'legacy'")
        conn.rollback()
        conn.execute(
            "update ml.model_runs set model = %s, model_format = 'skops'"
            " where model_version = 'legacy'",
            (b"PK skops",),
        )
    migrate.downgrade(url, previous)
    with psycopg.connect(url) as conn:
        assert conn.execute("select count(model) from ml.model_runs").fetchone()[0] == 0
        column = conn.execute(
            "select count(*) from information_schema.columns"
            " where table_schema = 'ml' and table_name = 'model_runs'"
            " and column_name = 'model_format'"
        ).fetchone()[0]
        assert column == 0
    migrate.upgrade(url)
