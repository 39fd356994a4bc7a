"""Reference data: the topic taxonomy (dbt seeds), the question bank and the reading materials.

The seeds in ``seeds/`` are the source of truth for topics and their relationships; this module
reads them (pure Python, no database needed, so the simulator's tests can use them) and upserts
them into ``app.topics`` / ``app.topic_relationships``. The question bank and materials are not
learner data but generated content: deterministic (a fixed seed per leaf topic, independent of any
simulation seed), so every database gets the same bank and re-loading it changes nothing.

Ids: topics come from the seed (system 100*s, subject +10*j, subtopic +k); question ids are
``leaf_id * 100 + n`` (n = 1..40); material ids are ``leaf_id * 10 + n`` (n = 1..4).
Some leaf topics deliberately have no materials (the mastery formula spreads the materials
weight over the other terms then).
"""

from __future__ import annotations

import csv
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from pathlib import Path

import psycopg

from python_jobs.paths import SEEDS_DIR

QUESTIONS_PER_LEAF = (20, 40)  # inclusive range of questions per leaf topic
MATERIALS_PER_LEAF = (1, 4)  # inclusive range when a leaf has materials at all
NO_MATERIALS_SHARE = 0.15  # share of leaf topics without any material
MATERIAL_KINDS = {  # kind: (weight, est_minutes low, high)
    "chapter": (0.35, 15, 45),
    "video": (0.30, 8, 25),
    "flashcards": (0.20, 5, 15),
    "summary": (0.15, 4, 10),
}
ANSWERS = "ABCDE"


@dataclass(frozen=True)
class Topic:
    id: int
    parent_id: int | None
    level: str
    name: str
    path: str
    board_exam_weight: Decimal


@dataclass(frozen=True)
class Relationship:
    from_topic_id: int
    to_topic_id: int
    kind: str


@dataclass(frozen=True)
class Question:
    id: int
    topic_id: int
    difficulty: Decimal  # 0-1: the knowledge level at which a learner is right half the time
    correct_answer: str


@dataclass(frozen=True)
class Material:
    id: int
    topic_id: int
    kind: str
    est_minutes: Decimal


@dataclass(frozen=True)
class Reference:
    """Everything the simulator needs to know about the content, in one immutable bundle."""

    topics: tuple[Topic, ...]
    relationships: tuple[Relationship, ...]
    questions: tuple[Question, ...]
    materials: tuple[Material, ...]
    leaves: tuple[Topic, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "leaves", tuple(t for t in self.topics if t.level == "subtopic"))

    def prerequisites(self) -> dict[int, list[int]]:
        """Leaf topic id -> ids of its prerequisite topics."""
        out: dict[int, list[int]] = {}
        for rel in self.relationships:
            if rel.kind == "prerequisite":
                out.setdefault(rel.to_topic_id, []).append(rel.from_topic_id)
        return out


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def read_topics(seeds_dir: Path = SEEDS_DIR) -> list[Topic]:
    return [
        Topic(
            id=int(r["id"]),
            parent_id=int(r["parent_id"]) if r["parent_id"] else None,
            level=r["level"],
            name=r["name"],
            path=r["path"],
            board_exam_weight=Decimal(r["board_exam_weight"]),
        )
        for r in _read_csv(seeds_dir / "topics.csv")
    ]


def read_relationships(seeds_dir: Path = SEEDS_DIR) -> list[Relationship]:
    return [
        Relationship(int(r["from_topic_id"]), int(r["to_topic_id"]), r["kind"])
        for r in _read_csv(seeds_dir / "topic_prerequisites.csv")
    ]


def read_event_types(seeds_dir: Path = SEEDS_DIR) -> list[tuple[str, str]]:
    return [(r["name"], r["description"]) for r in _read_csv(seeds_dir / "event_types.csv")]


def read_event_type_properties(seeds_dir: Path = SEEDS_DIR) -> list[tuple[str, str, str, str]]:
    """(event_type, key, type, description): the properties each event type declares."""
    return [
        (r["event_type"], r["key"], r["type"], r["description"])
        for r in _read_csv(seeds_dir / "event_type_properties.csv")
    ]


def _bank_rng(leaf_id: int, what: str) -> random.Random:
    return random.Random(f"studyin-reference:{what}:{leaf_id}")


def make_questions(leaves: Iterable[Topic]) -> list[Question]:
    """20-40 questions per leaf; difficulty ~ a topic-level offset plus a bell-shaped spread."""
    questions = []
    for leaf in leaves:
        rng = _bank_rng(leaf.id, "questions")
        topic_offset = rng.gauss(0.0, 0.04)
        for n in range(1, rng.randint(*QUESTIONS_PER_LEAF) + 1):
            difficulty = 0.25 + 0.5 * rng.betavariate(3.0, 3.0) + topic_offset
            difficulty = min(0.98, max(0.02, difficulty))
            questions.append(
                Question(
                    id=leaf.id * 100 + n,
                    topic_id=leaf.id,
                    difficulty=Decimal(f"{difficulty:.3f}"),
                    correct_answer=rng.choice(ANSWERS),
                )
            )
    return questions


def make_materials(leaves: Iterable[Topic]) -> list[Material]:
    kinds = list(MATERIAL_KINDS)
    weights = [MATERIAL_KINDS[k][0] for k in kinds]
    materials = []
    for leaf in leaves:
        rng = _bank_rng(leaf.id, "materials")
        if rng.random() < NO_MATERIALS_SHARE:
            continue
        for n in range(1, rng.randint(*MATERIALS_PER_LEAF) + 1):
            kind = rng.choices(kinds, weights)[0]
            _, low, high = MATERIAL_KINDS[kind]
            minutes = rng.uniform(low, high)
            materials.append(
                Material(
                    id=leaf.id * 10 + n,
                    topic_id=leaf.id,
                    kind=kind,
                    est_minutes=Decimal(f"{minutes:.1f}"),
                )
            )
    return materials


@cache
def reference(seeds_dir: Path = SEEDS_DIR) -> Reference:
    """The taxonomy from the seeds plus the generated bank (cached: it never changes in-process)."""
    topics = read_topics(seeds_dir)
    leaves = [t for t in topics if t.level == "subtopic"]
    return Reference(
        topics=tuple(topics),
        relationships=tuple(read_relationships(seeds_dir)),
        questions=tuple(make_questions(leaves)),
        materials=tuple(make_materials(leaves)),
    )


@dataclass(frozen=True)
class LoadCounts:
    topics: int
    relationships: int
    questions: int
    materials: int

    def __str__(self) -> str:
        return (
            f"{self.topics} topics, {self.relationships} relationships, "
            f"{self.questions} questions, {self.materials} materials"
        )


def load_reference(conn: psycopg.Connection, ref: Reference | None = None) -> LoadCounts:
    """Upsert topics, relationships, questions and materials into schema app; commit.

    Idempotent: a second call changes no row. Relationships no longer in the seed are removed
    (nothing references them); topics, questions and materials are only inserted or updated,
    never deleted, because learner rows reference them.
    """
    ref = ref or reference()
    level_order = {"system": 0, "subject": 1, "subtopic": 2}
    topics = sorted(ref.topics, key=lambda t: (level_order[t.level], t.id))  # parents first
    with conn.cursor() as cur:
        cur.executemany(
            """
            insert into app.topics (id, parent_id, level, name, path, board_exam_weight)
            values (%s, %s, %s, %s, %s, %s)
            on conflict (id) do update set
                parent_id = excluded.parent_id, level = excluded.level, name = excluded.name,
                path = excluded.path, board_exam_weight = excluded.board_exam_weight
            where (app.topics.parent_id, app.topics.level, app.topics.name, app.topics.path,
                   app.topics.board_exam_weight)
                is distinct from (excluded.parent_id, excluded.level, excluded.name,
                   excluded.path, excluded.board_exam_weight)
            """,
            [(t.id, t.parent_id, t.level, t.name, t.path, t.board_exam_weight) for t in topics],
        )
        cur.execute(
            "create temporary table _seed_relationships (f integer, t integer, k text) "
            "on commit drop"
        )
        with cur.copy("copy _seed_relationships (f, t, k) from stdin") as copy:
            for rel in ref.relationships:
                copy.write_row((rel.from_topic_id, rel.to_topic_id, rel.kind))
        # The stale relationships are found here, not by a delete correlated with the temporary
        # table: on Citus app.topic_relationships is a reference table, which a modification
        # cannot join to a table local to the coordinator.
        seeded = {(rel.from_topic_id, rel.to_topic_id, rel.kind) for rel in ref.relationships}
        stored = cur.execute(
            "select from_topic_id, to_topic_id, kind from app.topic_relationships"
        ).fetchall()
        cur.executemany(
            "delete from app.topic_relationships"
            " where from_topic_id = %s and to_topic_id = %s and kind = %s",
            sorted(set(stored) - seeded),
        )
        cur.execute(
            """
            insert into app.topic_relationships (from_topic_id, to_topic_id, kind)
            select f, t, k from _seed_relationships
            on conflict do nothing
            """
        )
        cur.execute("create temporary table _bank_questions (like app.questions) on commit drop")
        with cur.copy(
            "copy _bank_questions (id, topic_id, difficulty, correct_answer) from stdin"
        ) as copy:
            for q in ref.questions:
                copy.write_row((q.id, q.topic_id, q.difficulty, q.correct_answer))
        cur.execute(
            """
            insert into app.questions (id, topic_id, difficulty, correct_answer)
            select id, topic_id, difficulty, correct_answer from _bank_questions
            on conflict (id) do update set
                topic_id = excluded.topic_id, difficulty = excluded.difficulty,
                correct_answer = excluded.correct_answer
            where (app.questions.topic_id, app.questions.difficulty, app.questions.correct_answer)
                is distinct from (excluded.topic_id, excluded.difficulty, excluded.correct_answer)
            """
        )
        cur.execute("create temporary table _bank_materials (like app.materials) on commit drop")
        with cur.copy("copy _bank_materials (id, topic_id, kind, est_minutes) from stdin") as copy:
            for m in ref.materials:
                copy.write_row((m.id, m.topic_id, m.kind, m.est_minutes))
        cur.execute(
            """
            insert into app.materials (id, topic_id, kind, est_minutes)
            select id, topic_id, kind, est_minutes from _bank_materials
            on conflict (id) do update set
                topic_id = excluded.topic_id, kind = excluded.kind,
                est_minutes = excluded.est_minutes
            where (app.materials.topic_id, app.materials.kind, app.materials.est_minutes)
                is distinct from (excluded.topic_id, excluded.kind, excluded.est_minutes)
            """
        )
    conn.commit()
    return LoadCounts(
        len(ref.topics), len(ref.relationships), len(ref.questions), len(ref.materials)
    )
