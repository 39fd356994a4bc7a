"""How good probabilities are against what happened: the figures every model is reported with.

log loss and Brier score (lower is better), ROC AUC (ranking), expected calibration error (the
mean gap between predicted and observed rates over equal-width bins, weighted by their sizes), and
the calibration slope and intercept (the logistic regression of the outcome on logit(p): slope 1 and
intercept 0 for a calibrated model; a slope below 1 means too extreme predictions).
"""

from __future__ import annotations

import numpy as np
from scipy.special import logit
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

EPSILON = 1e-6  # probabilities are clipped to [EPSILON, 1 - EPSILON] before taking logs


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    which = np.clip((p * bins).astype(int), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += mask.sum() * abs(p[mask].mean() - y[mask].mean())
    return float(total / len(y))


def calibration_fit(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """(slope, intercept) of the unpenalised logistic regression of y on logit(p)."""
    x = logit(np.clip(p, EPSILON, 1 - EPSILON)).reshape(-1, 1)
    fit = LogisticRegression(C=np.inf, max_iter=1000).fit(x, y)
    return float(fit.coef_[0][0]), float(fit.intercept_[0])


def probability_metrics(
    y: np.ndarray, p: np.ndarray, bins: int = 10
) -> dict[str, float | int | None]:
    """Every figure for outcomes y (0/1) and probabilities p; ranking and calibration fit are None
    unless both outcomes occur."""
    y = np.asarray(y, dtype=float)
    p = np.clip(np.asarray(p, dtype=float), EPSILON, 1 - EPSILON)
    both = len(np.unique(y)) == 2
    slope, intercept = calibration_fit(y, p) if both else (None, None)
    return {
        "n": int(len(y)),
        "mean_predicted": float(p.mean()),
        "observed_rate": float(y.mean()),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "brier": float(brier_score_loss(y, p)),
        "auc": float(roc_auc_score(y, p)) if both else None,
        "ece": expected_calibration_error(y, p, bins),
        "calibration_slope": slope,
        "calibration_intercept": intercept,
    }
