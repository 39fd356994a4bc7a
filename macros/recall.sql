{#-
  The recall model (docs block recall_model): P(the learner's next first attempt on a fresh
  question of a leaf topic is correct) =
      floor + (1 - floor) * logistic(intercept + sum(coefficient_f * feature_f) + topic offset)
  with the floor, the coefficients and the per-topic offsets stored per model version in
  ml.recall_models / ml.recall_topic_offsets (fitted by `studyin recall`, python_jobs/jobs/recall.py).

  The features are computed here, once, from counts: the learner-topic pair's history before the
  prediction, the learner's first attempts on every topic, on the topic's siblings and in the last
  days before it, and the days since the pair's last review. int_topic_reviews_featured computes them before each review (what the ledger scores
  and the job fits on); topic_mastery_current computes them as of its date (what the app shows).
  python_jobs/jobs/recall.py FEATURES lists the same names in the same order (a test checks it).
-#}

{#- The feature names, comma-separated (split them: `recall_feature_names().split(',')`). -#}
{% macro recall_feature_names() -%}
    learner_logit,learner_log_attempts,recent_logit,parent_logit,pair_logit,pair_all_logit,last_logit,pair_log_attempts,log_reviews,log_elapsed,elapsed_per_review,is_first_review
{%- endmacro %}

{#- The names of the stored coefficients, comma-separated: the intercept, then one per feature. -#}
{% macro recall_coefficient_names() -%}
    intercept,{{ recall_feature_names() }}
{%- endmacro %}

{#- logit of a share strictly inside (0, 1) -#}
{% macro _logit(share) -%}
    ln(({{ share }}) / (1 - ({{ share }})))
{%- endmacro %}

{#- (correct + w * prior) / (attempts + w): a share smoothed toward a prior share -#}
{% macro _shrunk(correct, attempts, prior) -%}
    ((({{ correct }}) + {{ var('recall_prior_weight') }}::double precision * ({{ prior }}))
    / (({{ attempts }}) + {{ var('recall_prior_weight') }}::double precision))
{%- endmacro %}

{#- The feature columns, from count expressions (first attempts and the correct ones):
    learner_*: the learner's on every topic before the prediction; recent_*: the learner's in the
    var recall_recent_days days before it; parent_*: the learner's on the topic's siblings (the
    leaves of its parent topic, itself included) before it; pair_*: the pair's first attempts, and
    pair_all_*: all its attempts, before it; last_*: the pair's on its last review day (0 if none);
    reviews: the pair's review days before it; elapsed_days: days since the last (null if none).
    Each share is smoothed toward the level above it (learner -> parent topic -> pair -> last review
    day; recent -> learner) with var recall_prior_weight pseudo-attempts, so a pair with no history
    takes its parent topic's accuracy, and a learner with no history 1/2. -#}
{% macro recall_features(
    learner_attempts, learner_correct, recent_attempts, recent_correct, parent_attempts, parent_correct,
    pair_attempts, pair_correct, pair_all_attempts, pair_all_correct, last_attempts, last_correct,
    reviews, elapsed_days
) -%}
    {#- in double precision: counts summed by a window are bigint, and bigint + 1.0 is numeric,
        whose ln() is slow (the features of 1.9M reviews took 47 s in numeric, 4 s in floats) -#}
    {%- set learner_share = '((' ~ learner_correct ~ ')::double precision + 1) / ((' ~ learner_attempts ~ ')::double precision + 2)' -%}
    {%- set parent_share = _shrunk(parent_correct, parent_attempts, learner_share) -%}
    {%- set pair_share = _shrunk(pair_correct, pair_attempts, parent_share) -%}
    {%- set log_reviews = 'ln(1 + (' ~ reviews ~ ')::double precision)' -%}
    {%- set log_elapsed = 'ln(1 + coalesce(greatest(' ~ elapsed_days ~ ', 0), 0)::double precision)' -%}
    {{ _logit(learner_share) }} as learner_logit,
    ln(1 + ({{ learner_attempts }})::double precision) as learner_log_attempts,
    {{ _logit(_shrunk(recent_correct, recent_attempts, learner_share)) }} as recent_logit,
    {{ _logit(parent_share) }} as parent_logit,
    {{ _logit(pair_share) }} as pair_logit,
    {{ _logit(_shrunk(pair_all_correct, pair_all_attempts, parent_share)) }} as pair_all_logit,
    {{ _logit(_shrunk(last_correct, last_attempts, pair_share)) }} as last_logit,
    ln(1 + ({{ pair_all_attempts }})::double precision) as pair_log_attempts,
    {{ log_reviews }} as log_reviews,
    {{ log_elapsed }} as log_elapsed,
    {{ log_elapsed }} / (1 + {{ log_reviews }}) as elapsed_per_review,
    (case when ({{ elapsed_days }}) is null then 1.0 else 0.0 end) as is_first_review
{%- endmacro %}

{#- The model version in force on each distinct `date_column` of `relation` (one lookup per date):
    the newest fitted version with trained_until before the date (`strict`: the ledger, so a review
    is never scored by a model that saw it) or up to it (the current view), else the prior model
    (kind 'prior', shipped by the migration). A select of date_column, model_version, guess_floor
    and one double column coefficient_<name> per name of recall_coefficient_names, for a CTE. The
    coefficients are read out of their jsonb here, once per model and date, inside the lateral that
    `limit 1` keeps from being flattened: read in recall_probability, they were parsed again for
    every row scored (24 parses a row of topic_mastery_current, for its two probabilities). -#}
{% macro recall_models_in_force(relation, date_column, strict) -%}
    select
        model_dates.{{ date_column }},
        in_force.model_version,
        in_force.guess_floor,
        {%- for name in recall_coefficient_names().split(',') %}
        in_force.coefficient_{{ name }}{{ ',' if not loop.last }}
        {%- endfor %}
    from (select distinct {{ relation }}.{{ date_column }} from {{ relation }}) as model_dates
    cross join lateral (
        select
            recall_models.model_version,
            recall_models.guess_floor,
            {%- for name in recall_coefficient_names().split(',') %}
            coalesce((recall_models.coefficients ->> '{{ name }}')::double precision, 0)
                as coefficient_{{ name }}{{ ',' if not loop.last }}
            {%- endfor %}
        from {{ ref('stg_ml__recall_models') }} as recall_models
        where
            recall_models.model_kind = 'prior'
            or recall_models.trained_until {{ '<' if strict else '<=' }} model_dates.{{ date_column }}
        order by
            (recall_models.model_kind = 'prior') asc,
            recall_models.trained_until desc,
            recall_models.trained_at desc
        limit 1
    ) as in_force
{%- endmacro %}

{#- P(correct) of a row carrying the feature columns (alias `features`), the model in force
    (alias `model`: guess_floor and the coefficient_* columns of recall_models_in_force) and its
    topic offset (`topic_offset`, 0 when the model has none for the topic). `at_last_review` leaves
    out the terms of the time elapsed since the last review: the prediction as it stood on that
    day. The linear predictor is clipped to +-30 so exp() cannot overflow. -#}
{% macro recall_probability(features='features', model='model', topic_offset='0', at_last_review=false) -%}
    {%- set elapsed_terms = ['log_elapsed', 'elapsed_per_review'] -%}
    {{ model }}.guess_floor + (1 - {{ model }}.guess_floor) / (1 + exp(-least(30, greatest(-30,
        {{ model }}.coefficient_intercept
        + coalesce({{ topic_offset }}, 0)
        {%- for name in recall_feature_names().split(',') if not (at_last_review and name in elapsed_terms) %}
        + {{ model }}.coefficient_{{ name }} * {{ features }}.{{ name }}
        {%- endfor %}
    ))))
{%- endmacro %}

{#- The knowledge estimate: the recall prediction (what a learner like this, on a topic like this,
    after this long, gets right on a fresh question) updated with the pair's own answers, as a
    share: (correct + k x recall) / (attempts + k), k = var knowledge_prior_weight. The recall model
    is fitted to predict single answers across learners, where who the learner is explains most;
    the pair's own record is what tells a learner's topics apart, and this weighs it in
    (bench.validity: it ranks a learner's topics by true knowledge better than either alone). -#}
{% macro knowledge_estimate(correct, attempts, recall) -%}
    (
        (({{ correct }}) + {{ var('knowledge_prior_weight') }} * ({{ recall }}))
        / (({{ attempts }}) + {{ var('knowledge_prior_weight') }})
    )
{%- endmacro %}
