-- Due reviews: the learner's topics due for spaced repetition today, most overdue and most
-- exam-relevant first. Parameter: user_id.
with

due as (
    select
        user_id,
        topic_id,
        next_review_date,
        days_until_due,
        retrieval_strength,
        mastery
    from {{ ref('fct_topic_schedule_current') }}
    where
        user_id = {{ bind_param('user_id') }}
        and is_due
),

topics as (
    select
        topic_id,
        topic_name,
        board_exam_weight
    from {{ ref('topic_catalog') }}
),

final as (
    select
        due.topic_id,
        topics.topic_name,
        due.next_review_date,
        due.days_until_due,
        due.retrieval_strength,
        due.mastery,
        topics.board_exam_weight
    from due
    inner join topics on due.topic_id = topics.topic_id
)

select * from final
order by days_until_due asc, board_exam_weight desc, topic_id asc
