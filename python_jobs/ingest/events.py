"""Typed inputs of the event tracker: one dataclass per kind of event that enters the warehouse.

Every event carries a client-made ``event_id`` (the idempotency key), the learner, the client-clock
``occurred_at`` and optional free-form ``properties`` and client ``ip`` (anonymised before storage).
``received_at`` is the server clock; it is only honoured from trusted back-fill paths (the
simulator), see ``Tracker(trust_received_at=True)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID


@dataclass(frozen=True, kw_only=True)
class Event:
    event_type: ClassVar[str] = ""
    event_id: UUID
    user_id: UUID
    occurred_at: datetime
    session_id: UUID | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    ip: str | None = None
    received_at: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class SessionStart(Event):
    event_type: ClassVar[str] = "session_start"


@dataclass(frozen=True, kw_only=True)
class SessionHeartbeat(Event):
    event_type: ClassVar[str] = "session_heartbeat"


@dataclass(frozen=True, kw_only=True)
class SessionEnd(Event):
    event_type: ClassVar[str] = "session_end"
    end_reason: str = "user_ended"  # user_ended | app_closed


@dataclass(frozen=True, kw_only=True)
class QuestionAttempt(Event):
    """An answer. The tracker derives topic_id and is_correct from the question bank."""

    event_type: ClassVar[str] = "question_attempt"
    question_id: int
    selected_answer: str | None  # A-E, or None when the learner gave no answer
    attempt_number: int = 1
    time_to_answer_ms: int = 0
    confidence_level: int | None = None  # 1-5
    hint_used: bool = False


@dataclass(frozen=True, kw_only=True)
class MaterialInteraction(Event):
    event_type: ClassVar[str] = "material_interaction"
    material_id: int
    interaction_type: str  # open | progress | complete | highlight | note
    progress: float | None = None  # 0-1
    active_seconds: int = 0


@dataclass(frozen=True, kw_only=True)
class ExamResult(Event):
    event_type: ClassVar[str] = "exam_result"
    exam_kind: str  # practice | board
    scaled_score: int
    passed: bool


@dataclass(frozen=True, kw_only=True)
class GenericEvent(Event):
    """Any other catalogued event type (search, page_view, ai_coach_message, ...)."""

    event_type: str  # type: ignore[misc]


EVENT_CLASSES: dict[str, type[Event]] = {
    cls.event_type: cls
    for cls in (
        SessionStart,
        SessionHeartbeat,
        SessionEnd,
        QuestionAttempt,
        MaterialInteraction,
        ExamResult,
    )
}
