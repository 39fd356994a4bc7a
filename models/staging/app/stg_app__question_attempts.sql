-- One select, no CTE: PostgreSQL never flattens a view holding a WITH clause into the query
-- reading it, which would stop joins from reaching this table's indexes (see the overview).
select
    event_id,
    user_id,
    session_id,
    question_id,
    topic_id,
    attempt_number,
    attempt_number = 1 as is_first_attempt,
    selected_answer::text as selected_answer,
    selected_answer is not null as is_answered,
    is_correct,
    time_to_answer_ms,
    confidence_level::integer as confidence_level,
    hint_used,
    answered_at,
    received_at
from {{ source('app', 'question_attempts') }}
