-- Grain: one row per learner and leaf topic with a knowledge gap, as of the same date as
-- topic_mastery_current (var mastery_as_of_date, else the learner's local today). A table rebuilt
-- on every run (it depends on the date, so it is never incremental).
--
-- A topic can qualify for several gap types; the row carries one gap_type by this precedence, and
-- the is_* flags say every type it qualifies for:
--   decaying > prerequisite > weak > unstudied
-- (decaying first: the learner knew the topic, time is the cause and a review is the cure;
-- prerequisite before weak: it names the cause of the weakness). unstudied excludes the others.
{%- set top_share = var('gap_unstudied_top_weight_share') | float %}
{%- set exam_near_multiplier = var('gap_exam_near_multiplier') | float %}
{%- set top_share_words = 'top half' if top_share == 0.5 else 'top ' ~ (top_share * 100) | round(1) ~ '%' %}
{%- set score_words = 'knowledge estimate' if var('gap_basis') == 'knowledge_estimate' else 'mastery' %}

with

current_mastery as (
    select
        user_id,
        topic_id,
        as_of_date,
        attempts,
        first_attempt_accuracy,
        accuracy,
        interval_days,
        last_review_date,
        next_review_date,
        days_since_last_review,
        retrieval_strength,
        mastery_at_last_review,
        mastery,
        knowledge_estimate,
        {{ gap_score('knowledge_estimate', 'mastery') }} as gap_score,
        {{ gap_score('knowledge_estimate_at_last_review', 'mastery_at_last_review') }} as gap_score_at_last_review
    from {{ ref('topic_mastery_current') }}
),

ancestors as (
    select
        leaf_topic_id,
        leaf_board_exam_weight,
        ancestor_topic_id
    from {{ ref('int_topic_ancestors_flattened') }}
),

users as (
    select
        user_id,
        timezone,
        exam_date
    from {{ ref('stg_app__users') }}
),

topics as (
    select
        topic_id,
        topic_name,
        is_leaf,
        board_exam_weight
    from {{ ref('stg_app__topics') }}
),

prerequisites as (
    select
        from_topic_id as prerequisite_topic_id,
        to_topic_id as topic_id
    from {{ ref('stg_app__topic_relationships') }}
    where relationship_kind = 'prerequisite'
),

leaf_topics as (
    -- top half by board-exam weight: rank (1 = heaviest, ties share a rank) within the top share
    select
        topic_id,
        topic_name,
        board_exam_weight,
        rank() over (order by board_exam_weight desc)
        <= {{ var('gap_unstudied_top_weight_share') }} * count(*) over () as is_top_weight
    from topics
    where is_leaf
),

users_dated as (
    select
        user_id,
        exam_date,
        {{ mastery_as_of_date('timezone') }} as as_of_date,
        {{ as_of_is_local_today('mastery_as_of_date') }} as is_current
    from users
),

unstudied as (
    select
        users_dated.user_id,
        leaf_topics.topic_id,
        users_dated.as_of_date
    from users_dated
    cross join leaf_topics
    where
        leaf_topics.is_top_weight
        and not exists (
            select 1
            from current_mastery
            where
                current_mastery.user_id = users_dated.user_id
                and current_mastery.topic_id = leaf_topics.topic_id
        )
),

parent_prerequisites as (
    -- prerequisites that are parent topics (none in the seed taxonomy), with their leaf weight
    select
        ancestors.ancestor_topic_id as topic_id,
        sum(ancestors.leaf_board_exam_weight) as leaf_weight
    from ancestors
    where ancestors.ancestor_topic_id in (select prerequisites.prerequisite_topic_id from prerequisites)
    group by ancestors.ancestor_topic_id
),

parent_mastery as (
    -- a parent prerequisite's mastery: weighted over all its leaves, unstudied ones counting 0
    -- (topic_mastery_rollup.mastery_including_unstudied, computed for these parents only)
    select
        current_mastery.user_id,
        parent_prerequisites.topic_id,
        sum(ancestors.leaf_board_exam_weight * current_mastery.gap_score)
        / nullif(max(parent_prerequisites.leaf_weight), 0) as mastery_including_unstudied
    from parent_prerequisites
    inner join ancestors
        on parent_prerequisites.topic_id = ancestors.ancestor_topic_id
    inner join current_mastery
        on ancestors.leaf_topic_id = current_mastery.topic_id
    group by current_mastery.user_id, parent_prerequisites.topic_id
),

prerequisite_mastery as (
    -- every prerequisite of every studied topic, with the learner's mastery of it: a studied leaf's
    -- current mastery; a parent's weighted mastery counting unstudied leaves as 0; 0 if unstudied
    select
        current_mastery.user_id,
        current_mastery.topic_id,
        prerequisites.prerequisite_topic_id,
        coalesce(prerequisite_leaf.gap_score, prerequisite_parent.mastery_including_unstudied, 0)
            as prerequisite_mastery,
        current_mastery.gap_score as topic_gap_score
    from current_mastery
    inner join prerequisites
        on current_mastery.topic_id = prerequisites.topic_id
    left join current_mastery as prerequisite_leaf
        on
            current_mastery.user_id = prerequisite_leaf.user_id
            and prerequisites.prerequisite_topic_id = prerequisite_leaf.topic_id
    left join parent_mastery as prerequisite_parent
        on
            current_mastery.user_id = prerequisite_parent.user_id
            and prerequisites.prerequisite_topic_id = prerequisite_parent.topic_id
),

weakest_prerequisites as (
    select distinct on (user_id, topic_id)
        user_id,
        topic_id,
        prerequisite_topic_id,
        prerequisite_mastery
    from prerequisite_mastery
    order by user_id asc, topic_id asc, prerequisite_mastery asc, prerequisite_topic_id asc
),

prerequisites_below as (
    -- every prerequisite scoring below its topic, weakest first: what the gap recommendations
    -- suggest learning first, whatever the gap's type
    select
        user_id,
        topic_id,
        array_agg(prerequisite_topic_id order by prerequisite_mastery asc, prerequisite_topic_id asc)
            as prerequisite_ids,
        array_agg(prerequisite_mastery order by prerequisite_mastery asc, prerequisite_topic_id asc)
            as prerequisite_scores
    from prerequisite_mastery
    where prerequisite_mastery < topic_gap_score
    group by user_id, topic_id
),

studied_flags as (
    select
        current_mastery.*,
        weakest_prerequisites.prerequisite_topic_id as weakest_prerequisite_topic_id,
        weakest_prerequisites.prerequisite_mastery as weakest_prerequisite_mastery,
        coalesce(prerequisites_below.prerequisite_ids, '{}') as prerequisites_below_ids,
        coalesce(prerequisites_below.prerequisite_scores, '{}') as prerequisites_below_scores,
        current_mastery.attempts >= {{ var('gap_weak_min_attempts') }}
        and {{ gap_severity('current_mastery.gap_score') }} is not null as is_weak,
        current_mastery.gap_score_at_last_review >= {{ gap_decaying_threshold() }}
        and current_mastery.gap_score < {{ gap_decaying_threshold() }} as is_decaying
    from current_mastery
    left join weakest_prerequisites
        on
            current_mastery.user_id = weakest_prerequisites.user_id
            and current_mastery.topic_id = weakest_prerequisites.topic_id
    left join prerequisites_below
        on
            current_mastery.user_id = prerequisites_below.user_id
            and current_mastery.topic_id = prerequisites_below.topic_id
),

studied_gaps as (
    select
        user_id,
        topic_id,
        as_of_date,
        attempts,
        first_attempt_accuracy,
        interval_days,
        last_review_date,
        next_review_date,
        days_since_last_review,
        retrieval_strength,
        mastery_at_last_review,
        mastery,
        knowledge_estimate,
        gap_score,
        gap_score_at_last_review,
        is_weak,
        is_decaying,
        coalesce(is_weak and weakest_prerequisite_mastery < gap_score, false) as is_prerequisite_gap,
        false as is_unstudied,
        case when is_weak and weakest_prerequisite_mastery < gap_score then weakest_prerequisite_topic_id end
            as weaker_prerequisite_topic_id,
        case when is_weak and weakest_prerequisite_mastery < gap_score then weakest_prerequisite_mastery end
            as weaker_prerequisite_mastery,
        prerequisites_below_ids,
        prerequisites_below_scores
    from studied_flags
    where is_weak or is_decaying
),

unstudied_gaps as (
    select
        user_id,
        topic_id,
        as_of_date,
        0 as attempts,
        null::numeric(14, 10) as first_attempt_accuracy,
        null::integer as interval_days,
        null::date as last_review_date,
        null::date as next_review_date,
        null::integer as days_since_last_review,
        0::numeric(14, 10) as retrieval_strength,
        null::numeric(14, 10) as mastery_at_last_review,
        0::numeric(14, 10) as mastery,
        null::numeric(14, 10) as knowledge_estimate,
        0::numeric(14, 10) as gap_score,
        null::numeric(14, 10) as gap_score_at_last_review,
        false as is_weak,
        false as is_decaying,
        false as is_prerequisite_gap,
        true as is_unstudied,
        null::integer as weaker_prerequisite_topic_id,
        null::numeric(14, 10) as weaker_prerequisite_mastery,
        '{}'::integer array as prerequisites_below_ids,  -- a score of 0: nothing scores below it
        '{}'::numeric array as prerequisites_below_scores
    from unstudied
),

all_gaps as (
    select * from studied_gaps
    union all
    select * from unstudied_gaps
),

typed_gaps as (
    select
        all_gaps.*,
        users_dated.is_current,
        users_dated.exam_date - all_gaps.as_of_date as days_until_exam,
        coalesce(
            users_dated.exam_date - all_gaps.as_of_date between 0 and {{ var('gap_exam_near_days') }} - 1,
            false
        ) as is_exam_near,
        leaf_topics.board_exam_weight,
        leaf_topics.is_top_weight,
        prerequisite_topics.topic_name as weaker_prerequisite_topic_name,
        case
            when all_gaps.is_decaying then 'decaying'
            when all_gaps.is_prerequisite_gap then 'prerequisite'
            when all_gaps.is_weak then 'weak'
            when all_gaps.is_unstudied then 'unstudied'
        end as gap_type,
        {{ gap_severity('all_gaps.gap_score') }} as severity
    from all_gaps
    inner join users_dated
        on all_gaps.user_id = users_dated.user_id
    inner join leaf_topics
        on all_gaps.topic_id = leaf_topics.topic_id
    left join topics as prerequisite_topics
        on all_gaps.weaker_prerequisite_topic_id = prerequisite_topics.topic_id
),

described_gaps as (
    select
        typed_gaps.*,
        (1 - typed_gaps.gap_score) * typed_gaps.board_exam_weight
        * case when typed_gaps.is_exam_near then {{ exam_near_multiplier }} else 1 end
            as priority,
        concat_ws(
            ', ',
            typed_gaps.attempts || ' attempts',
            coalesce(round(100 * typed_gaps.first_attempt_accuracy)::integer || '%', 'no')
            || ' first-attempt accuracy',
            'last reviewed ' || typed_gaps.last_review_date
            || ' (' || typed_gaps.days_since_last_review || ' days ago)',
            'retrieval ' || to_char(typed_gaps.retrieval_strength, 'FM0.00')
        ) as study_record,
        case
            when typed_gaps.is_exam_near
                then '; exam in ' || typed_gaps.days_until_exam || ' days (priority x'
                    || {{ exam_near_multiplier }} || ')'
            else ''
        end as exam_note
    from typed_gaps
),

final as (
    select
        user_id::uuid as user_id,
        topic_id::integer as topic_id,
        as_of_date::date as as_of_date,
        is_current::boolean as is_current,
        gap_type::text as gap_type,
        severity::text as severity,
        priority::numeric(14, 10) as priority,
        mastery::numeric(14, 10) as mastery,
        mastery_at_last_review::numeric(14, 10) as mastery_at_last_review,
        knowledge_estimate::numeric(14, 10) as knowledge_estimate,
        '{{ var("gap_basis") }}'::text as gap_basis,
        gap_score::numeric(14, 10) as gap_score,
        retrieval_strength::numeric(14, 10) as retrieval_strength,
        attempts::integer as attempts,
        last_review_date::date as last_review_date,
        next_review_date::date as next_review_date,
        board_exam_weight::numeric(8, 6) as board_exam_weight,
        is_weak::boolean as is_weak,
        is_decaying::boolean as is_decaying,
        is_prerequisite_gap::boolean as is_prerequisite_gap,
        is_unstudied::boolean as is_unstudied,
        weaker_prerequisite_topic_id::integer as weaker_prerequisite_topic_id,
        weaker_prerequisite_mastery::numeric(14, 10) as weaker_prerequisite_mastery,
        prerequisites_below_ids::integer array as prerequisites_below_ids,
        prerequisites_below_scores::numeric(14, 10) array as prerequisites_below_scores,
        days_until_exam::integer as days_until_exam,
        is_exam_near::boolean as is_exam_near,
        (
            case gap_type
                when 'decaying'
                    then 'decaying: {{ score_words }} ' || to_char(gap_score_at_last_review, 'FM0.00')
                        || ' at the last review, ' || to_char(gap_score, 'FM0.00') || ' now after '
                        || days_since_last_review || ' days on a ' || interval_days || '-day interval (due '
                        || next_review_date || '); ' || study_record
                when 'prerequisite'
                    then 'weak with a weaker prerequisite: {{ score_words }} ' || to_char(gap_score, 'FM0.00')
                        || ' while prerequisite "' || weaker_prerequisite_topic_name || '" (topic '
                        || weaker_prerequisite_topic_id || ') is at ' || to_char(weaker_prerequisite_mastery, 'FM0.00')
                        || '; ' || study_record
                when 'weak'
                    then 'weak: {{ score_words }} ' || to_char(gap_score, 'FM0.00') || '; ' || study_record
                else 'unstudied: no attempts yet; board-exam weight '
                    || to_char(board_exam_weight, 'FM0.0000')
                    || ', in the {{ top_share_words }} of leaf topics by weight'
            end || exam_note
        )::text as evidence
    from described_gaps
)

select * from final
