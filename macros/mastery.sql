{#-
  Mastery formulas shared by the mastery models (docs block mastery_vars: "Retrieval strength,
  mastery" and "Knowledge gaps"). Every constant is a dbt var documented in dbt_project.yml.
-#}

{#- Smoothed accuracy: (correct + 1) / (attempts + 2), as an exact decimal. -#}
{% macro smoothed_accuracy(correct, attempts) -%}
    (
        (({{ correct }}) + {{ var('accuracy_smoothing_correct') }})::numeric
        / (({{ attempts }}) + {{ var('accuracy_smoothing_attempts') }})
    )
{%- endmacro %}

{#- Quality (0-5) of one attempt, the rules in order. -#}
{% macro attempt_quality(is_answered, is_correct, hint_used, confidence_level) -%}
    case
        when not {{ is_answered }} then 0
        when {{ is_correct }} and not {{ hint_used }} and {{ confidence_level }} >= 4 then 5
        when {{ is_correct }} and not {{ hint_used }} and coalesce({{ confidence_level }}, 3) = 3 then 4
        when {{ is_correct }} then 3
        when {{ confidence_level }} <= 2 then 2
        when coalesce({{ confidence_level }}, 3) = 3 then 1
        else 0
    end
{%- endmacro %}

{#- Mean of integer qualities rounded half up, in exact integer arithmetic:
    floor(s / c + 1/2) = floor((2s + c) / 2c) for s, c >= 0. -#}
{% macro rounded_mean_quality(quality_sum, quality_count) -%}
    ((2 * ({{ quality_sum }}) + ({{ quality_count }})) / (2 * ({{ quality_count }})))::integer
{%- endmacro %}

{#- retrieval_strength = base ^ (days since last review / I); 0 when never reviewed (null date).
    Days before the last review (an as-of date in the past) count as 0 days. Computed in double
    precision (numeric's power() is some 50 times slower) and returned as numeric; the models round
    it to 10 decimals. A result below 1e-300 is returned as 0: PostgreSQL's power() raises
    "value out of range: underflow" below about 1e-308, which a topic reviewed once (I = 1) reaches
    some 19 years later with base 0.9, and which would fail every row of the model, not just one. -#}
{% macro retrieval_strength(days_since_review, interval_days) -%}
    case
        when ({{ days_since_review }}) is null or ({{ interval_days }}) is null then 0::numeric
        when greatest({{ days_since_review }}, 0)::double precision / ({{ interval_days }})
            * ln({{ var('retrieval_base') }}::double precision) < ln(1e-300::double precision)
            then 0::numeric
        else power(
            {{ var('retrieval_base') }}::double precision,
            greatest({{ days_since_review }}, 0)::double precision / ({{ interval_days }})
        )::numeric
    end
{%- endmacro %}

{#- mastery = w_fa * first-attempt accuracy + w_acc * accuracy + w_ret * retrieval + w_mat * materials;
    when the topic has no materials, w_mat is spread over the other three in proportion. -#}
{% macro mastery_score(first_attempt_accuracy, accuracy, retrieval_strength, materials_completion, has_materials) -%}
    {%- set w_fa = var('mastery_weight_first_attempt_accuracy') -%}
    {%- set w_acc = var('mastery_weight_accuracy') -%}
    {%- set w_ret = var('mastery_weight_retrieval') -%}
    {%- set w_mat = var('mastery_weight_materials') -%}
    case
        when {{ has_materials }}
            then {{ w_fa }}::numeric * ({{ first_attempt_accuracy }})
            + {{ w_acc }}::numeric * ({{ accuracy }})
            + {{ w_ret }}::numeric * ({{ retrieval_strength }})
            + {{ w_mat }}::numeric * ({{ materials_completion }})
        else (
            {{ w_fa }}::numeric * ({{ first_attempt_accuracy }})
            + {{ w_acc }}::numeric * ({{ accuracy }})
            + {{ w_ret }}::numeric * ({{ retrieval_strength }})
        ) / ({{ w_fa }}::numeric + {{ w_acc }}::numeric + {{ w_ret }}::numeric)
    end
{%- endmacro %}

{#- mastery_confidence = attempts / (attempts + k). -#}
{% macro mastery_confidence(attempts) -%}
    (({{ attempts }})::numeric / (({{ attempts }}) + {{ var('mastery_confidence_k') }}))
{%- endmacro %}

{#- The score knowledge gaps grade topics by (var gap_basis): knowledge_estimate (default: it ranks a
    learner's topics by their true knowledge better, measured by `python -m bench.validity`) or
    mastery (the published formula). Any other value grades by the estimate, and the accepted_values
    test of knowledge_gaps.gap_basis fails the build. -#}
{% macro gap_score(estimate, mastery) -%}
    {%- if var('gap_basis') == 'mastery' -%}
        {{ mastery }}
    {%- else -%}
        {{ estimate }}
    {%- endif -%}
{%- endmacro %}

{#- The var holding a gap threshold of the basis in use: gap_<name> for mastery,
    gap_estimate_<name> for knowledge_estimate (its own scale: a share of questions right). -#}
{% macro _gap_var(name) -%}
    {{ var(('gap_estimate_' if var('gap_basis') == 'knowledge_estimate' else 'gap_') ~ name) }}
{%- endmacro %}

{#- Severity by the gap score: critical < critical_below <= high < high_below <= medium <
    medium_below <= low < low_below; null (no gap) above. -#}
{% macro gap_severity(score) -%}
    case
        when ({{ score }}) < {{ _gap_var('severity_critical_below') }} then 'critical'
        when ({{ score }}) < {{ _gap_var('severity_high_below') }} then 'high'
        when ({{ score }}) < {{ _gap_var('severity_medium_below') }} then 'medium'
        when ({{ score }}) < {{ _gap_var('severity_low_below') }} then 'low'
    end
{%- endmacro %}

{% macro gap_decaying_threshold() -%}
    {{ _gap_var('decaying_threshold') }}
{%- endmacro %}

{#- The date mastery is evaluated at: var mastery_as_of_date when set (YYYY-MM-DD), otherwise
    today in the learner's own timezone (their local day, like every review day). -#}
{% macro mastery_as_of_date(timezone_column) -%}
    {%- set pinned = var('mastery_as_of_date', none) -%}
    {%- if pinned is not none and pinned | string | trim not in ('', 'none', 'None', 'null') -%}
        '{{ pinned }}'::date
    {%- else -%}
        (now() at time zone {{ timezone_column }})::date
    {%- endif -%}
{%- endmacro %}

{#- is_current of the as-of marts: true when as_of_date is each learner's own today (the var
    `pinned_var`, mastery_as_of_date or metrics_as_of_date, is unset), false on every row when the
    var fixes the date (a what-if or back-dated evaluation). A constant of the build, so builds
    stay deterministic under a fixed date (the test suite compares incremental and full builds). -#}
{% macro as_of_is_local_today(pinned_var) -%}
    {%- set pinned = var(pinned_var, none) -%}
    {%- if pinned is not none and pinned | string | trim not in ('', 'none', 'None', 'null') -%}
        false
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}
