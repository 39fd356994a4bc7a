"""Is the learning science true? Each analytic beside cheap baselines and the oracle.

    .venv/bin/python -m bench.validity --users 1000 --days 90 --seed 31337
    .venv/bin/python -m bench.validity --reuse validity_31337_1000x90   # measure an existing build

One simulation (its latent truth kept in schema ``sim``) is delivered through the tracker into a
database of its own, and the nightly pipeline builds everything. Then, held out by time (the last
``--test-share`` of the days):

* recall: a recall model is fitted as of the split day exactly as the nightly job would have done
  then, and the ledger (int_recall_predictions_scored) rebuilt, so every review after the split is
  scored by a model that never saw it. Against the outcome (the review day's first answer to a
  fresh question): log loss, AUC, expected calibration error, calibration slope, Brier, for the
  project, SM-2 retrieval strength read as a probability, a constant (the training rate), FSRS-6
  with its default parameters, Elo (learner ability - topic difficulty, updated online), a
  5-feature logistic regression, and the oracle (the simulator's true probability of that answer);
  on repeat reviews (the pair was reviewed before) and on every review.
* knowledge: within each learner (5+ studied topics), the Spearman correlation between a score of
  each studied leaf topic and its true knowledge at the end (the expected share of fresh questions
  answered right), median over learners: knowledge_estimate, mastery, raw attempt count, smoothed
  accuracy.
* gaps: the share of studied topics knowledge_gaps flags, and precision@10 of each learner's top
  (up to) 10 studied gaps (learners with 20+ studied topics) against their 10 truly weakest studied
  topics, in the app's order (priority) and by the gap score alone; beside the 10 with the lowest
  smoothed accuracy, mastery and knowledge_estimate among all studied topics.
* readiness: `python_jobs.jobs.readiness` validity, when it offers it (project, accuracy-only
  baseline and oracle on held-out exams).

Prints a markdown table and writes it with the raw figures to bench/results/validity-*.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from scipy.stats import spearmanr
from sklearn.linear_model import LogisticRegression

from python_jobs.jobs.probability_metrics import probability_metrics
from python_jobs.jobs.recall import RecallOptions, run_recall
from python_jobs.jobs.report import query_frame
from python_jobs.warehouse import db
from python_jobs.warehouse.dbt import run_dbt
from python_jobs.warehouse.pipeline import RunContext, run_pipeline

log = logging.getLogger("bench.validity")
RESULTS = Path(__file__).resolve().parent / "results"
RECALL_METRICS = ("log_loss", "auc", "ece", "calibration_slope", "brier", "n")


# ----------------------------------------------------------------------------- building
def build(users: int, days: int, seed: int, late_share: float) -> str:
    """A fresh database with the simulation delivered and the pipeline run; its URL."""
    from bench.run import _create_database
    from python_jobs.simulation.simulator import simulate

    url = _create_database(f"validity_{seed}_{users}x{days}")
    with psycopg.connect(url) as conn:
        print(simulate(conn, users, days, seed, late_share=late_share))
    run_pipeline(RunContext(url=url))
    return url


def split_day(conn: psycopg.Connection, test_share: float) -> date:
    first, last = conn.execute(
        "select min(review_date), max(review_date) from intermediate.int_topic_reviews_featured"
    ).fetchone()
    return last - timedelta(days=max(1, round((last - first).days * test_share)))


def refit_as_of(url: str, split: date) -> str | None:
    """Fit the recall model on the reviews up to the split day and rescore the ledger with it."""
    with psycopg.connect(url) as conn:
        report = run_recall(conn, RecallOptions(as_of=split, force=True))
    run_dbt(["run", "--select", "int_recall_predictions_scored", "--full-refresh"], url)
    return report.model_version


# ----------------------------------------------------------------------------- recall
RECALL_ROWS_SQL = """
select f.user_id::text as user_id, f.topic_id, f.review_date, f.prior_reviews,
       f.days_since_previous_review, f.pair_first_attempts, f.pair_first_attempts_correct,
       f.pair_attempts, f.outcome_correct::int as outcome, s.quality,
       coalesce(s.retrieval_strength_before, 0)::float as retrieval_strength_before,
       l.recall_probability, l.model_version {oracle_column}
from intermediate.int_topic_reviews_featured as f
join intermediate.int_topic_reviews_scheduled as s using (user_id, topic_id, review_date)
left join intermediate.int_recall_predictions_scored as l using (user_id, topic_id, review_date)
{oracle_join}
where f.outcome_correct is not null
order by f.review_date, f.user_id, f.topic_id
"""


def _has_table(conn: psycopg.Connection, name: str) -> bool:
    return bool(conn.execute("select to_regclass(%s) is not null", (name,)).fetchone()[0])


ORACLE_JOIN = """
left join sim.attempts as a on a.event_id = f.outcome_event_id
left join sim.topic_knowledge as k
    on k.user_id = f.user_id and k.topic_id = f.topic_id and k.as_of = f.review_date
    and not k.is_final
"""


def recall_rows(conn: psycopg.Connection) -> pd.DataFrame:
    """The reviews with an outcome, their ledger probability and the baselines' inputs; on
    simulated data two oracles: the true probability of that very answer (the question's own
    difficulty included, which no prediction made before the question is drawn can know), and the
    true expected share of the topic's fresh questions at the start of the review day (the best
    any prediction for the learner and topic can do)."""
    oracle = _has_table(conn, "sim.attempts")
    sql = RECALL_ROWS_SQL.format(
        oracle_column=", a.p_correct as oracle, k.knowledge_start as oracle_topic"
        if oracle
        else "",
        oracle_join=ORACLE_JOIN if oracle else "",
    )
    rows = query_frame(conn, sql)
    rows["review_date"] = pd.to_datetime(rows["review_date"]).dt.date
    return rows


def fsrs_default(rows: pd.DataFrame) -> np.ndarray:
    """FSRS-6 retrievability with its default parameters before each review (nan on a pair's first
    review); the rating from the review's SM-2 quality (5 easy, 4 good, 3 hard, below 3 again)."""
    from fsrs import Card, Rating, Scheduler

    scheduler = Scheduler(learning_steps=(), relearning_steps=(), enable_fuzzing=False)
    ratings = {5: Rating.Easy, 4: Rating.Good, 3: Rating.Hard}
    cards: dict[tuple[str, int], Card] = {}
    out = np.full(len(rows), np.nan)
    for i, (user, topic, day, quality) in enumerate(
        zip(rows["user_id"], rows["topic_id"], rows["review_date"], rows["quality"], strict=True)
    ):
        when = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
        card = cards.get((user, topic))
        if card is not None:
            out[i] = scheduler.get_card_retrievability(card, when)
        else:
            card = Card()
        cards[(user, topic)], _ = scheduler.review_card(
            card, ratings.get(int(quality), Rating.Again), when
        )
    return out


def elo(rows: pd.DataFrame, a: float = 0.8, b: float = 0.05) -> np.ndarray:
    """Online Elo: P = logistic(ability - difficulty), both updated after each outcome with the
    step a / (1 + b * updates so far) (Pelanek's uncertainty function); rows in time order."""
    ability: dict[str, float] = defaultdict(float)
    difficulty: dict[int, float] = defaultdict(float)
    n_user: dict[str, int] = defaultdict(int)
    n_topic: dict[int, int] = defaultdict(int)
    out = np.empty(len(rows))
    for i, (user, topic, y) in enumerate(
        zip(rows["user_id"], rows["topic_id"], rows["outcome"], strict=True)
    ):
        p = 1.0 / (1.0 + math.exp(-(ability[user] - difficulty[topic])))
        out[i] = p
        ability[user] += a / (1 + b * n_user[user]) * (y - p)
        difficulty[topic] -= a / (1 + b * n_topic[topic]) * (y - p)
        n_user[user] += 1
        n_topic[topic] += 1
    return out


def five_feature_x(rows: pd.DataFrame) -> np.ndarray:
    """Smoothed first-attempt accuracy of the pair, log attempts, log days since the last review,
    log reviews, SM-2 retrieval strength."""
    return np.column_stack(
        [
            (rows["pair_first_attempts_correct"] + 1) / (rows["pair_first_attempts"] + 2),
            np.log1p(rows["pair_attempts"]),
            np.log1p(rows["days_since_previous_review"].fillna(0)),
            np.log1p(rows["prior_reviews"]),
            rows["retrieval_strength_before"],
        ]
    )


def recall_table(rows: pd.DataFrame, split: date) -> dict[str, dict[str, dict[str, Any]]]:
    """Metrics per subset (repeat reviews, all reviews) and predictor, on reviews after split."""
    rows = rows.copy()
    rows["fsrs6_default"] = fsrs_default(rows)
    rows["elo"] = elo(rows)
    train = rows[rows["review_date"] <= split]
    test = rows[rows["review_date"] > split].copy()
    logistic = LogisticRegression(max_iter=1000).fit(five_feature_x(train), train["outcome"])
    test["logistic_5"] = logistic.predict_proba(five_feature_x(test))[:, 1]
    test["constant"] = train["outcome"].mean()
    test["fsrs6_default"] = test["fsrs6_default"].fillna(test["constant"])
    test["sm2_retrieval_strength"] = test["retrieval_strength_before"]
    test["project"] = test["recall_probability"]
    predictors = ["project", "sm2_retrieval_strength", "constant", "fsrs6_default", "elo",
                  "logistic_5"]  # fmt: skip
    predictors += ["oracle_topic", "oracle"] if "oracle" in test else []
    table: dict[str, dict[str, dict[str, Any]]] = {}
    subsets = (("repeat reviews", test[test["prior_reviews"] > 0]), ("all reviews", test))
    for subset, part in subsets:
        table[subset] = {}
        for name in predictors:
            known = part[part[name].notna()]  # the topic oracle misses the odd review day
            if len(known) >= 0.8 * len(part):
                table[subset][name] = probability_metrics(
                    known["outcome"].to_numpy(dtype=float), known[name].to_numpy(dtype=float)
                )
    return table


# ----------------------------------------------------------------------------- knowledge, gaps
KNOWLEDGE_SQL = """
select m.user_id::text as user_id, m.topic_id, m.attempts, m.accuracy, m.mastery,
       m.knowledge_estimate::float as knowledge_estimate,
       (t.correct_attempts + 1.0) / (m.attempts + 2.0) as smoothed_accuracy,
       k.knowledge as truth, (g.topic_id is not null)::int as flagged, g.priority, g.severity
from marts.topic_mastery_current as m
join (select user_id, correct_attempts, topic_id from marts.topic_mastery) as t
    using (user_id, topic_id)
join sim.topic_knowledge as k
    on k.user_id = m.user_id and k.topic_id = m.topic_id and k.is_final
left join marts.knowledge_gaps as g on g.user_id = m.user_id and g.topic_id = m.topic_id
"""


def knowledge_rows(conn: psycopg.Connection) -> pd.DataFrame:
    rows = query_frame(conn, KNOWLEDGE_SQL)
    rows["flagged"] = rows["flagged"].astype(bool)
    return rows


def median_spearman(rows: pd.DataFrame, score: str, min_topics: int = 5) -> float:
    values = []
    for _, part in rows.groupby("user_id"):
        if len(part) >= min_topics and part[score].nunique() > 1:
            values.append(spearmanr(part[score], part["truth"]).statistic)
    return float(np.nanmedian(values)) if values else float("nan")


def precision_at(rows: pd.DataFrame, order: list[tuple[str, bool]], k: int = 10,
                 min_topics: int = 20, only: str | None = None) -> float:  # fmt: skip
    """Mean over learners with min_topics+ studied topics of the share of their top k by order
    (among the rows where column `only` is true, when given) that are among their k truly
    weakest studied topics."""
    columns = [c for c, _ in order]
    ascending = [asc for _, asc in order]
    values = []
    for _, part in rows.groupby("user_id"):
        if len(part) < min_topics:
            continue
        weakest = set(part.nsmallest(k, "truth")["topic_id"])
        candidates = part[part[only]] if only else part
        chosen = candidates.sort_values(columns, ascending=ascending).head(k)["topic_id"]
        if len(chosen):
            values.append(len(weakest & set(chosen)) / len(chosen))
    return float(np.mean(values)) if values else float("nan")


def knowledge_table(rows: pd.DataFrame) -> dict[str, Any]:
    studied = rows[rows["attempts"] > 0].copy()
    studied["attempts_score"] = studied["attempts"]
    flagged = studied[studied["flagged"]]
    return {
        "spearman": {
            name: median_spearman(studied, column)
            for name, column in (
                ("knowledge_estimate", "knowledge_estimate"),
                ("mastery", "mastery"),
                ("raw attempt count", "attempts_score"),
                ("smoothed accuracy", "smoothed_accuracy"),
                ("oracle", "truth"),
            )
        },  # fmt: skip
        "flagged_share": float(studied["flagged"].mean()),
        "flagged_truth_gap": float(
            studied.loc[~studied["flagged"], "truth"].mean() - flagged["truth"].mean()
        )
        if len(flagged)
        else None,
        "precision_at_10": {
            # the gaps mart's studied gaps in the app's order (priority), and by their score
            "knowledge_gaps by priority": precision_at(
                studied, [("priority", False)], only="flagged"
            ),
            "knowledge_gaps by gap_score": precision_at(
                studied, [("knowledge_estimate", True)], only="flagged"
            ),
            "lowest knowledge_estimate": precision_at(studied, [("knowledge_estimate", True)]),
            "lowest mastery": precision_at(studied, [("mastery", True)]),
            "lowest smoothed accuracy": precision_at(studied, [("smoothed_accuracy", True)]),
            "oracle": 1.0,
        },
    }


# ----------------------------------------------------------------------------- readiness
def readiness_table(conn: psycopg.Connection, split: date) -> dict[str, Any]:
    """Readiness on the exams after the split, retrained weekly from the split on as a nightly run
    would (python_jobs.jobs.readiness_validity): project, accuracy-only and oracle."""
    from python_jobs.jobs.readiness_validity import readiness_validity

    last = conn.execute("select max(taken_at)::date from app.exam_results").fetchone()[0]
    days = [split + timedelta(days=7 * k) for k in range(0, max(1, (last - split).days // 7 + 1))]
    return readiness_validity(conn, days)


# ----------------------------------------------------------------------------- report
def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def markdown(figures: dict[str, Any]) -> str:
    lines = [f"# Validity: {figures['title']}", ""]
    for subset, table in figures["recall"].items():
        lines += [f"## Recall, {subset} after {figures['split_day']} (n = {table['project']['n']})",
                  "", "| predictor | " + " | ".join(RECALL_METRICS) + " |",
                  "|---|" + "---|" * len(RECALL_METRICS)]  # fmt: skip
        for name, m in table.items():
            lines.append(f"| {name} | " + " | ".join(_fmt(m[k]) for k in RECALL_METRICS) + " |")
        lines.append("")
    k = figures["knowledge"]
    lines += ["## Knowledge: median within-learner Spearman with true knowledge", "",
              "| score | Spearman |", "|---|---|"]  # fmt: skip
    lines += [f"| {name} | {_fmt(v)} |" for name, v in k["spearman"].items()]
    lines += ["", f"## Gaps: {k['flagged_share']:.1%} of studied topics flagged; flagged topics "
              f"{_fmt(k['flagged_truth_gap'])} weaker in true knowledge than the rest", "",
              "| top 10 studied topics by | precision@10 |", "|---|---|"]  # fmt: skip
    lines += [f"| {name} | {_fmt(v)} |" for name, v in k["precision_at_10"].items()]
    readiness = figures.get("readiness") or {}
    if readiness.get("project"):
        columns = ("n", "auc", "brier", "brier_skill", "calibration_slope", "mean_p", "base_rate")
        lines += ["", "## Readiness: exams after the split, models retrained weekly", "",
                  "| predictor | " + " | ".join(columns) + " |",
                  "|---|" + "---|" * len(columns)]  # fmt: skip
        for name in ("project", "accuracy_only", "oracle"):
            m = readiness.get(name) or {}
            lines.append(f"| {name} | " + " | ".join(_fmt(m.get(c)) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def measure(url: str, test_share: float, title: str) -> dict[str, Any]:
    with psycopg.connect(url) as conn:
        split = split_day(conn, test_share)
    version = refit_as_of(url, split)
    with psycopg.connect(url) as conn:
        figures = {
            "title": title,
            "split_day": split.isoformat(),
            "recall_model_version": version,
            "recall": recall_table(recall_rows(conn), split),
            "knowledge": knowledge_table(knowledge_rows(conn)),
            "readiness": readiness_table(conn, split),
        }
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.validity", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--seed", type=int, default=31337)
    parser.add_argument("--late-share", type=float, default=0.03)
    parser.add_argument("--test-share", type=float, default=0.2, help="newest days held out")
    parser.add_argument("--reuse", metavar="DATABASE", help="measure this existing build instead")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    started = time.perf_counter()
    if args.reuse:
        url = db.with_database(db.ensure_server(), args.reuse)
    else:
        url = build(args.users, args.days, args.seed, args.late_share)
    title = args.reuse or f"{args.users} learners x {args.days} days, seed {args.seed}"
    figures = measure(url, args.test_share, title)
    figures["seconds"] = round(time.perf_counter() - started, 1)
    text = markdown(figures)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"validity-{datetime.now(UTC):%Y%m%dT%H%M%S}"
    stem.with_suffix(".md").write_text(text)
    stem.with_suffix(".json").write_text(json.dumps(figures, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
