"""Gap recommendations: what each learner should do next, and why.

For each learner's ``top_n`` knowledge gaps by priority (``marts.knowledge_gaps``; ties broken by
topic id), ranked actions go to ``ml.gap_recommendations``. At most ``max_unstudied_gaps`` (default
2) of them are 'unstudied' gaps: an unstudied topic has a gap score of 0 and hence the highest
priority its weight allows, so by priority alone a learner's top five would all be topics never
opened (only reading to suggest) and their weak, decaying and prerequisite gaps would never reach
the list.
Per gap, in this order:

1. ``learn_prerequisite`` - each prerequisite of the gap topic whose score is lower than the gap
   topic's (the score knowledge_gaps grades by, its ``gap_basis``: the knowledge estimate or
   mastery; a never-answered prerequisite counts 0), weakest first, at most
   ``max_prerequisites_per_gap``; target = its topic id. knowledge_gaps lists them
   (``prerequisites_below_ids``), so the job does not evaluate topic_mastery_current again.
2. ``review_questions`` - questions of the gap topic last answered wrong (longest ago first), then,
   when the topic is due for review (SM-2 next review date reached), the ones last answered
   correctly (longest ago first), at most ``max_questions_per_gap``; target = question id. The
   learner's last answers come from ``intermediate.int_question_answers_folded`` (on an exact tie
   of answer times, the wrong answer counts as the last).
3. ``read_material`` - materials of the topic not completed, started ones first (most progress
   first), then unopened ones, at most ``max_materials_per_gap``; target = material id.

``rank`` numbers a learner's actions 1..n: gaps by priority, then the order above. Every ordering
ends in an id, so the output is deterministic. A run writes the rows of its day (``generated_on``):
inside one transaction it deletes that day's rows of the learners it covers and inserts the new
ones; when the new rows equal the stored ones (apart from ``generated_at``) it writes nothing, so
a same-day rerun on unchanged data leaves even ``generated_at`` as it was. The job commits its
own transaction: call it on a connection without pending work of yours.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import psycopg

from python_jobs.jobs.report import DBT_FIRST, JobError, RunReport, require_relations
from python_jobs.warehouse import db

log = logging.getLogger(__name__)

ACTIONS = ("learn_prerequisite", "review_questions", "read_material")


@dataclass(frozen=True)
class RecommendationOptions:
    """Options of the gap-recommendations job, with their defaults."""

    as_of: date | None = None  # generated_on; None = today (UTC)
    top_n: int = 5  # gaps per learner, by priority
    # at most this many of the top_n may be 'unstudied' (None: no cap). Unstudied gaps have score
    # 0, so by priority alone they fill every slot and leave nothing to practise or remediate.
    max_unstudied_gaps: int | None = 2
    max_prerequisites_per_gap: int = 2
    max_questions_per_gap: int = 3
    max_materials_per_gap: int = 2
    user_ids: tuple[str, ...] | None = None  # None = every learner with a gap


RECOMMENDATIONS_SQL = """
create temporary table gap_recommendations_new on commit drop as
with

gaps as (
    select
        user_id,
        topic_id,
        gap_type,
        priority,
        gap_score as score,
        replace(gap_basis, '_', ' ') as score_name,
        next_review_date <= as_of_date as is_due,
        next_review_date,
        prerequisites_below_ids,
        prerequisites_below_scores,
        row_number() over (
            partition by user_id, gap_type = 'unstudied' order by priority desc, topic_id asc
        ) as rank_within_kind
    from marts.knowledge_gaps
    where %(all_users)s or user_id = any(%(user_ids)s::uuid[])
),

eligible_gaps as (
    select
        user_id,
        topic_id,
        gap_type,
        priority,
        score,
        score_name,
        is_due,
        next_review_date,
        prerequisites_below_ids,
        prerequisites_below_scores,
        row_number() over (partition by user_id order by priority desc, topic_id asc) as gap_rank
    from gaps
    where
        gap_type <> 'unstudied'
        or %(max_unstudied)s::integer is null
        or rank_within_kind <= %(max_unstudied)s::integer
),

top_gaps as (
    select
        gaps.user_id,
        gaps.topic_id,
        gaps.gap_type,
        gaps.gap_rank,
        gaps.score,
        gaps.score_name,
        topics.name as topic_name,
        gaps.is_due,
        gaps.next_review_date,
        gaps.prerequisites_below_ids,
        gaps.prerequisites_below_scores
    from eligible_gaps as gaps
    inner join app.topics as topics on gaps.topic_id = topics.id
    where gaps.gap_rank <= %(top_n)s
),

prerequisite_candidates as (
    -- the gap's prerequisites that score below it, weakest first, as knowledge_gaps found them
    select
        top_gaps.user_id,
        top_gaps.topic_id,
        top_gaps.gap_rank,
        1 as action_order,
        'learn_prerequisite' as action,
        below.prerequisite_id as target_id,
        below.position as action_rank,
        format(
            'prerequisite "%%s" (%%s %%s) is weaker than "%%s" (%%s gap, %%s %%s):'
            || ' learn it first',
            prerequisite_topics.name,
            top_gaps.score_name,
            to_char(below.score, 'FM0.00'),
            top_gaps.topic_name,
            top_gaps.gap_type,
            top_gaps.score_name,
            to_char(top_gaps.score, 'FM0.00')
        ) as reason
    from top_gaps
    cross join lateral unnest(
        top_gaps.prerequisites_below_ids, top_gaps.prerequisites_below_scores
    ) with ordinality as below (prerequisite_id, score, position)
    inner join app.topics as prerequisite_topics on below.prerequisite_id = prerequisite_topics.id
),

last_answers as (
    -- each top gap's questions with the learner's latest answer to each, from the folded answers
    -- (one row per learner and topic: a key lookup, not the gap's attempts across the history)
    select
        top_gaps.user_id,
        top_gaps.topic_id,
        answers.question_id,
        answers.is_correct,
        answers.answered_at
    from top_gaps
    inner join intermediate.int_question_answers_folded as folded
        on top_gaps.user_id = folded.user_id and top_gaps.topic_id = folded.topic_id
    cross join lateral unnest(
        folded.question_ids, folded.last_is_correct, folded.last_answered_at
    ) as answers (question_id, is_correct, answered_at)
),

question_candidates as (
    select
        top_gaps.user_id,
        top_gaps.topic_id,
        top_gaps.gap_rank,
        2 as action_order,
        'review_questions' as action,
        last_answers.question_id as target_id,
        row_number() over (
            partition by top_gaps.user_id, top_gaps.topic_id
            order by last_answers.is_correct asc, last_answers.answered_at asc,
                last_answers.question_id asc
        ) as action_rank,
        case
            when not last_answers.is_correct
                then format('last answered wrong on %%s (topic "%%s", %%s gap)',
                    to_char(last_answers.answered_at at time zone users.timezone, 'YYYY-MM-DD'),
                    top_gaps.topic_name, top_gaps.gap_type)
            else format('topic "%%s" due for review since %%s; last answered correctly on %%s',
                top_gaps.topic_name, top_gaps.next_review_date,
                to_char(last_answers.answered_at at time zone users.timezone, 'YYYY-MM-DD'))
        end as reason
    from top_gaps
    inner join last_answers
        on top_gaps.user_id = last_answers.user_id and top_gaps.topic_id = last_answers.topic_id
    inner join app.users as users on top_gaps.user_id = users.id
    where not last_answers.is_correct or coalesce(top_gaps.is_due, false)
),

material_progress as (
    -- each top gap's materials with the learner's progress on each (interactions = 0: not
    -- started), looked up per material through the (user_id, material_id) index (MATERIAL_PROGRESS)
    select
        top_gaps.user_id,
        top_gaps.topic_id,
        top_gaps.gap_rank,
        top_gaps.gap_type,
        top_gaps.topic_name,
        materials.id as material_id,
        materials.kind,
        materials.est_minutes,
        progress.interactions,
        progress.progress,
        progress.is_completed
    from top_gaps
    inner join app.materials as materials on top_gaps.topic_id = materials.topic_id
    /* material_progress */
),

material_candidates as (
    select
        user_id,
        topic_id,
        gap_rank,
        3 as action_order,
        'read_material' as action,
        material_id as target_id,
        row_number() over (
            partition by user_id, topic_id
            order by (interactions = 0) asc, coalesce(progress, 0) desc, material_id asc
        ) as action_rank,
        case
            when interactions = 0
                then format('not started: %%s of %%s min on "%%s" (%%s gap)', kind,
                    est_minutes, topic_name, gap_type)
            else format('unfinished: %%s%%%% of a %%s on "%%s" (%%s gap)',
                round(100 * coalesce(progress, 0)), kind, topic_name, gap_type)
        end as reason
    from material_progress
    where not is_completed
),

candidates as (
    select user_id, topic_id, gap_rank, action_order, action, target_id, action_rank, reason
    from prerequisite_candidates
    where action_rank <= %(max_prerequisites)s
    union all
    select user_id, topic_id, gap_rank, action_order, action, target_id, action_rank, reason
    from question_candidates
    where action_rank <= %(max_questions)s
    union all
    select user_id, topic_id, gap_rank, action_order, action, target_id, action_rank, reason
    from material_candidates
    where action_rank <= %(max_materials)s
)

select
    user_id,
    topic_id,
    row_number() over (
        partition by user_id order by gap_rank, action_order, action_rank, target_id
    )::integer as rank,
    action,
    target_id::integer as target_id,
    reason
from candidates
"""

COLUMNS = "user_id, topic_id, rank, action, target_id, reason"


# The learner's progress on each material of a top gap (plain PostgreSQL, Citus). On Citus the
# lateral lookup becomes a plain join on the learner, which it runs on each learner's shard: it
# cannot plan a lateral beside a reference table (the materials), nor an offset-0 fence in one.
MATERIAL_PROGRESS = (
    """    cross join lateral (
        select
            count(*) as interactions,
            max(interactions.progress) as progress,
            coalesce(bool_or(interactions.interaction_type = 'complete'), false) as is_completed
        from app.material_interactions as interactions
        where interactions.user_id = top_gaps.user_id and interactions.material_id = materials.id
        offset 0
    ) as progress
""",
    """    left join (
        select
            interactions.user_id,
            interactions.material_id,
            count(*) as interactions,
            max(interactions.progress) as progress,
            bool_or(interactions.interaction_type = 'complete') as is_completed
        from app.material_interactions as interactions
        group by interactions.user_id, interactions.material_id
    ) as opened
        on top_gaps.user_id = opened.user_id and materials.id = opened.material_id
    cross join lateral (
        select
            coalesce(opened.interactions, 0) as interactions,
            opened.progress,
            coalesce(opened.is_completed, false) as is_completed
    ) as progress
""",
)


def recommendations_sql(citus: bool) -> str:
    """RECOMMENDATIONS_SQL with the material-progress lookup for the server."""
    lookup = MATERIAL_PROGRESS[1] if citus else MATERIAL_PROGRESS[0]
    return RECOMMENDATIONS_SQL.replace("    /* material_progress */\n", lookup)


def run_gap_recommendations(
    conn: psycopg.Connection, options: RecommendationOptions | None = None
) -> RunReport:
    """Compute today's recommendations and replace today's rows for the learners covered."""
    options = options or RecommendationOptions()
    started = time.monotonic()
    db.one_connection_per_node(conn)  # it writes ml tables Citus keeps as reference tables
    _check_inputs(conn, options)
    as_of = options.as_of or datetime.now(UTC).date()
    params = {
        "all_users": options.user_ids is None,
        "user_ids": list(options.user_ids or []),
        "top_n": options.top_n,
        "max_unstudied": options.max_unstudied_gaps,
        "max_prerequisites": options.max_prerequisites_per_gap,
        "max_questions": options.max_questions_per_gap,
        "max_materials": options.max_materials_per_gap,
    }
    if not conn.autocommit:
        conn.commit()  # the job's write is its own transaction (see module docstring)
    with conn.transaction():
        conn.execute("drop table if exists gap_recommendations_new")
        conn.execute(recommendations_sql(db.is_citus(conn)), params)
        today = {**params, "generated_on": as_of}
        differing, deleted, written = _replace_the_days_rows(conn, today)
        new_rows = conn.execute("select count(*) from gap_recommendations_new").fetchone()[0]
        counts = dict(
            conn.execute(
                "select action, count(*) from gap_recommendations_new group by action"
            ).fetchall()
        )
        learners = conn.execute(
            "select count(distinct user_id) from gap_recommendations_new"
        ).fetchone()[0]
    report = RunReport(
        job="gap_recommendations",
        as_of=as_of.isoformat(),
        rows_written=written,
        rows_deleted=deleted,
        seconds=time.monotonic() - started,
        details={
            "recommendations": int(new_rows),
            "learners": int(learners),
            "by_action": {a: int(counts.get(a, 0)) for a in ACTIONS},
            "unchanged": not differing,
        },
    )
    log.info(
        "gap recommendations: %s (%s)",
        report.summary(),
        "unchanged, nothing written"
        if not differing
        else f"{new_rows} rows for {learners} learners",
    )
    return report


def _check_inputs(conn: psycopg.Connection, options: RecommendationOptions) -> None:
    require_relations(
        conn,
        {
            "marts.knowledge_gaps": DBT_FIRST,
            "intermediate.int_question_answers_folded": DBT_FIRST,
            "ml.gap_recommendations": "run `studyin migrate` first (the ml schema is missing)",
        },
    )
    for name in (
        "top_n",
        "max_prerequisites_per_gap",
        "max_questions_per_gap",
        "max_materials_per_gap",
    ):
        if getattr(options, name) < 0:
            raise JobError(f"option {name} must be >= 0, got {getattr(options, name)}")


def _replace_the_days_rows(conn: psycopg.Connection, today: dict[str, Any]) -> tuple[int, int, int]:
    """Replace the day's stored rows of the learners covered by gap_recommendations_new, unless
    they are the same rows: (rows that differ, rows deleted, rows written)."""
    scope = "true" if today["all_users"] else "user_id = any(%(user_ids)s::uuid[])"
    stored = f"""
        select {COLUMNS} from ml.gap_recommendations
        where generated_on = %(generated_on)s and {scope}
    """
    differing = conn.execute(
        f"""
        select count(*) from (
            (select {COLUMNS} from gap_recommendations_new except all {stored})
            union all
            ({stored} except all select {COLUMNS} from gap_recommendations_new)
        ) as changed
        """,
        today,
    ).fetchone()[0]
    if not differing:
        return 0, 0, 0
    deleted = conn.execute(
        f"delete from ml.gap_recommendations where generated_on = %(generated_on)s and {scope}",
        today,
    ).rowcount
    written = conn.execute(
        f"""
        insert into ml.gap_recommendations ({COLUMNS}, generated_at, generated_on)
        select {COLUMNS}, now(), %(generated_on)s from gap_recommendations_new
        """,
        today,
    ).rowcount
    return differing, deleted, written
