with

source as (
    select
        id,
        topic_id,
        difficulty,
        correct_answer
    from {{ source('app', 'questions') }}
),

final as (
    select
        id as question_id,
        topic_id,
        difficulty::numeric(4, 3) as difficulty,
        correct_answer::text as correct_answer
    from source
)

select * from final
