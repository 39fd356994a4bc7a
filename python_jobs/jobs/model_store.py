"""Trained models as data: how the readiness job stores a model in ``ml.model_runs`` and reads it.

Whoever can write ``ml.model_runs`` must not be able to run code as the pipeline, so a stored model
is never a pickle. It is a ``skops`` file (a zip of JSON and numpy arrays): loading builds only
objects of types known in advance, the scikit-learn estimators and numpy/builtin types that skops
trusts by default plus the few internal scikit-learn classes listed in ``TRUSTED_TYPES``. A file
that mentions any other type is refused before anything in it is built; so is a file that is not a
skops file at all (a pickle, say), and ``model_format`` must say ``skops``.

A model is stored as a dict of plain fields (``MODEL_FIELDS``); the job turns its dataclasses into
that dict and back.
"""

from __future__ import annotations

import io
import zipfile
from typing import Any

import skops.io as sio

FORMAT = "skops"  # ml.model_runs.model_format of every model this code writes or reads

# Types outside skops' default trust that a readiness model is made of: calibrated classifiers
# (Platt or isotonic) over logistic regression or histogram gradient boosting, and the boosted
# trees' predictors. Nothing else is built when a stored model is loaded.
TRUSTED_TYPES: tuple[str, ...] = (
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
)

MODEL_FIELDS = frozenset(
    {
        "kind",
        "classifier",
        "regressor",
        "low_offset",
        "high_offset",
        "reference",
        "evaluation",
        "calibration",
        "test_y",
        "test_p",
        "n_train",
        "n_test",
    }
)


class UntrustedModel(ValueError):
    """A stored model that is not a readiness model in the trusted format; nothing was built."""


def dump_model(fields: dict[str, Any]) -> bytes:
    """The model's fields as a skops file."""
    if set(fields) != MODEL_FIELDS:
        raise ValueError(f"a stored model has the fields {sorted(MODEL_FIELDS)}")
    return sio.dumps(fields)


def load_model(data: bytes, model_format: str | None) -> dict[str, Any]:
    """The fields of a stored model; raise UntrustedModel (building nothing) for anything else."""
    if model_format != FORMAT:
        raise UntrustedModel(f"model_format is {model_format!r}, not {FORMAT!r}")
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise UntrustedModel("not a skops file")
    try:
        untrusted = sorted(set(sio.get_untrusted_types(data=data)) - set(TRUSTED_TYPES))
    except Exception as err:  # noqa: BLE001 - any malformed file is refused alike
        raise UntrustedModel(_unreadable(err)) from err
    if untrusted:
        raise UntrustedModel(f"it holds untrusted types: {', '.join(untrusted)}")
    try:
        fields = sio.loads(data, trusted=list(TRUSTED_TYPES))
    except Exception as err:  # noqa: BLE001 - refused alike, with the reason
        raise UntrustedModel(_unreadable(err)) from err
    if not isinstance(fields, dict) or set(fields) != MODEL_FIELDS:
        raise UntrustedModel("not a readiness model (unexpected fields)")
    return fields


def _unreadable(err: Exception) -> str:
    return f"unreadable skops file ({type(err).__name__}: {' '.join(str(err).split())})"
