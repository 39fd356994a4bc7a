-- Topic heat-map: mastery now for every leaf topic the learner studied, laid out by system and
-- subject. Parameter: user_id. fct_topic_schedule_current is a view over topic_mastery, whose unique
-- index (user_id, topic_id) makes this a per-learner index range scan; it leaves out the recall
-- model, which would triple the cost of every call (topic_mastery_current adds it).
with

mastery as (
    select
        user_id,
        topic_id,
        mastery,
        retrieval_strength,
        is_due
    from {{ ref('fct_topic_schedule_current') }}
    where user_id = {{ bind_param('user_id') }}
),

topics as (
    select
        topic_id,
        topic_name,
        subject_name,
        system_name
    from {{ ref('topic_catalog') }}
),

final as (
    select
        mastery.topic_id,
        topics.system_name,
        topics.subject_name,
        topics.topic_name,
        mastery.mastery,
        mastery.retrieval_strength,
        mastery.is_due
    from mastery
    inner join topics on mastery.topic_id = topics.topic_id
)

select * from final
order by system_name, subject_name, topic_name
