-- One select, no CTE: PostgreSQL never flattens a view holding a WITH clause into the query
-- reading it, which would stop joins from reaching this table's indexes (see the overview).
select
    id as question_id,
    topic_id,
    difficulty::numeric(4, 3) as difficulty,
    correct_answer::text as correct_answer
from {{ source('app', 'questions') }}
