{#-
  Scoring of probabilistic predictions (models/marts/predictions): each macro is one metric, so
  the weekly and all-time marts compute them the same way, and tests/test_prediction_ledger.py
  compares every one with scikit-learn on generated data.

  Inputs are a probability p in [0, 1] and a boolean outcome y. Log loss and the calibration fit
  read p clipped to [e, 1 - e] with e = var prediction_probability_clip (1e-6): a prediction of
  exactly 0 or 1 that turns out wrong would otherwise cost an infinite log loss.
-#}

{% macro clipped_probability(p) -%}
    greatest(least({{ p }}, 1 - {{ var('prediction_probability_clip') }}), {{ var('prediction_probability_clip') }})
{%- endmacro %}

{#- The logit of a probability, clipped: ln(p / (1 - p)), within +-13.8 for the default clip. -#}
{% macro clipped_logit(p) -%}
    ln({{ clipped_probability(p) }} / (1 - {{ clipped_probability(p) }}))
{%- endmacro %}

{#- The logit bucket of a clipped logit x (clipped_logit): floor(x / var
    prediction_logit_bucket_width), the integer k of the bucket [k w, (k + 1) w)
    (fct_prediction_buckets). -#}
{% macro logit_bucket(x) -%}
    floor({{ x }} / {{ var('prediction_logit_bucket_width') }})::integer
{%- endmacro %}

{#- The log loss of one prediction: -ln(p) when the outcome happened, -ln(1 - p) otherwise; the
    metric is its mean. -#}
{% macro log_loss_term(p, y) -%}
    (case when {{ y }} then -ln({{ clipped_probability(p) }}) else -ln(1 - {{ clipped_probability(p) }}) end)
{%- endmacro %}

{#- The Brier score of one prediction: (p - y)^2; the metric is its mean. An error below 1e-100
    counts as 1e-100 (its square, 1e-200, is nothing): squaring a smaller one underflows, which
    PostgreSQL raises as an error. -#}
{% macro brier_term(p, y) -%}
    power(greatest(abs({{ p }} - (case when {{ y }} then 1 else 0 end)), 1e-100), 2)
{%- endmacro %}

{#- The calibration bin of a probability, 1 to var prediction_calibration_bins: equal-width bins
    of [0, 1], the last one closed (p = 1 falls in it). -#}
{% macro calibration_bin(p) -%}
    (least(floor({{ p }} * {{ var('prediction_calibration_bins') }})::integer,
        {{ var('prediction_calibration_bins') }} - 1) + 1)
{%- endmacro %}

{#- Window expression: the rank of p among its group's predictions (ascending), tied predictions
    sharing the mean of their ranks, as the Mann-Whitney statistic needs. -#}
{% macro average_rank(p, partition_by) -%}
    (rank() over (partition by {{ partition_by | join(', ') }} order by {{ p }})
        + (count(*) over (partition by {{ partition_by | join(', ') }}, {{ p }}) - 1) / 2.0)
{%- endmacro %}

{#- Aggregate expression: ROC AUC as the Mann-Whitney U of the positives' average ranks divided
    by positives x negatives; null when the group holds one class only. -#}
{% macro auc_from_ranks(average_rank, y) -%}
    ((sum({{ average_rank }}) filter (where {{ y }})
        - count(*) filter (where {{ y }}) * (count(*) filter (where {{ y }}) + 1) / 2.0)
        / nullif(count(*) filter (where {{ y }})::double precision * count(*) filter (where not {{ y }}), 0))
{%- endmacro %}

{#- Aggregate expression over a group's calibration bins (one row per bin with its prediction
    count, mean probability and observed rate): the expected calibration error, the bins'
    |mean probability - observed rate| weighted by their share of the predictions. -#}
{% macro expected_calibration_error(bin_n, bin_mean_probability, bin_observed_rate) -%}
    (sum({{ bin_n }} * abs({{ bin_mean_probability }} - {{ bin_observed_rate }})) / sum({{ bin_n }}))
{%- endmacro %}

{#- An exact, order-independent sum of a double precision expression: each term rounded to a
    whole number of 1e-12 units and summed as bigint, which PostgreSQL adds in a 128-bit
    integer; the total is divided back in numeric. The same bits whatever order the rows arrive
    in, and fifteen times faster than summing the terms cast to numeric (a float-to-numeric cast
    formats each value as text). Decimal inputs such as 0.2 and 0.9 come out as they were. The
    terms here are below 100 in magnitude (probabilities, clipped log losses, logit sums), far
    from the 9.2e6 at which a term would overflow bigint. -#}
{% macro exact_sum(expr) -%}
    {{ exact_decimal_sum(expr) }}::double precision
{%- endmacro %}

{#- The mean of exact_sum's terms, divided in numeric: null for a group without a non-null term. -#}
{% macro exact_avg(expr) -%}
    ({{ _sum_of_units(expr) }} / nullif(count({{ expr }}), 0) / 1e12)::double precision
{%- endmacro %}

{#- The sum, as numeric, of the terms rounded to whole units of 1e-12 (exact_sum, exact_avg). -#}
{% macro _sum_of_units(expr) -%}
    sum((({{ expr }}) * 1e12)::bigint)
{%- endmacro %}

{#-
  Floating-point values are summed exactly (exact_sum, exact_avg): a group gives the same bits
  whatever order a plan reads its rows in, so an incremental run equals a full rebuild exactly
  (a float sum depends on the order of its terms in the last bits).

  A query: per group of `relation` (a CTE with the group columns, a probability
  column `probability` and a boolean `outcome`), the logistic regression of the outcome on
  x = logit(clipped probability), P(y) = 1 / (1 + exp(-(intercept + slope x))), fitted by
  Newton-Raphson steps, unrolled. Each step aggregates the gradient and Hessian of the log
  likelihood over the group and solves the 2 x 2 system.

  Every step over the predictions reads all of them, and a model version scores millions. So the
  fit starts warm: var calibration_warm_start_steps steps from intercept 0, slope 1 (a calibrated
  model's values) over the predictions binned by x (bins var calibration_warm_start_bin_width
  wide, each at its mean x with its count and positives: a few thousand rows), then var
  calibration_newton_steps steps over the predictions themselves. Newton's error squares at each
  step: a start within 1e-3 of the fit is within 1e-6 after one exact step and at the fit (to the
  last bits) after two, where eight steps from intercept 0, slope 1 took five to get there on the
  bench's 300k recall predictions. The bins' sums are numeric (a bin's count times x squared can
  pass what exact_sum's units hold); without a warm-start step the fit is the plain one.

  Columns: the group columns, calibration_intercept, calibration_slope, and
  calibration_converged (the last step, over the predictions, moved both by less than 1e-6). Both
  are null when the group has one class only, or all predictions equal (the fit does not exist).
  The linear predictor is bounded to +-30 (fitted probabilities within 1e-13 of 0 and 1, which
  moves the sums by less than that): on a (nearly) separable group, which then reports
  converged = false, it would otherwise grow until a product underflows, and PostgreSQL raises
  an error on underflow instead of returning 0.
-#}
{% macro calibration_fit(relation, group_columns, weighted=false) -%}
    {%- set warm_steps = var('calibration_warm_start_steps') | int -%}
    {%- set steps = warm_steps + var('calibration_newton_steps') | int -%}
    {%- set keys = group_columns | join(', ') -%}
    {%- set fit = namespace(previous='fit_0') -%}
    with
    fit_points as (
        {%- if weighted %}
        select
            {{ keys }},
            x,
            weight,
            positives
        from {{ relation }}
        {%- else %}
        select
            {{ keys }},
            {{ clipped_logit('probability') }} as x,
            1 as weight,
            case when outcome then 1 else 0 end as positives
        from {{ relation }}
        {%- endif %}
    ),

    fit_bins as (
        select
            {{ keys }},
            {{ '(sum(x::numeric * weight) / sum(weight))::double precision' if weighted else exact_avg('x') }} as x,
            sum(weight) as weight,
            sum(positives) as positives
        from fit_points
        group by {{ keys }}, round(x / {{ var('calibration_warm_start_bin_width') }})
    ),

    fit_0 as (
        select
            {{ keys }},
            0.0::double precision as intercept,
            1.0::double precision as slope,
            null::double precision as step_size,
            sum(positives) > 0 and sum(weight - positives) > 0 as both_classes
        from fit_bins
        group by {{ keys }}
    ),
    {%- for step in range(1, steps + 1) %}
    {{ _newton_step(step, fit.previous, 'fit_bins' if step <= warm_steps else 'fit_points', group_columns,
        step <= warm_steps or weighted) }}
    {%- set fit.previous = 'fit_' ~ step %}
    {%- if step == warm_steps %}

    warm_start as (
        -- a singular system over the bins (all in one bin) says nothing of the predictions'
        select
            {{ keys }},
            coalesce(intercept, 0.0) as intercept,
            coalesce(slope, 1.0) as slope,
            step_size,
            both_classes
        from fit_{{ step }}
    ),
    {%- set fit.previous = 'warm_start' %}
    {%- endif %}
    {%- endfor %}

    fitted as (
        select
            {{ keys }},
            case when both_classes then intercept end as calibration_intercept,
            case when both_classes then slope end as calibration_slope,
            coalesce(both_classes and step_size < 1e-6, false) as calibration_converged
        from {{ fit.previous }}
    )

    select * from fitted
{%- endmacro %}

{#- One unrolled Newton-Raphson step of calibration_fit, as three CTEs ending in fit_<step>: the
    gradient and Hessian summed over `points` (fit_points or fit_bins: x, weight, positives) at
    the estimates of `previous`, and the 2 x 2 system solved. Sums in numeric when
    `numeric_sums` (bins, and weighted points, whose terms can pass what exact_sum holds), else
    exact_sum. -#}
{% macro _newton_step(step, previous, points, group_columns, numeric_sums) -%}
    {%- set keys = group_columns | join(', ') -%}
    {%- set add_up = _numeric_sum if numeric_sums else exact_sum %}

    sums_{{ step }} as (
        -- grouped by the keys alone, so the aggregate hashes a few groups instead of sorting
        -- every prediction by its group's previous estimates
        select
            {% for key in group_columns %}points.{{ key }}, {% endfor %}
            {{ add_up('points.positives - points.weight * fitted.mu') }} as g0,
            {{ add_up('(points.positives - points.weight * fitted.mu) * points.x') }} as g1,
            {{ add_up('points.weight * fitted.mu * (1 - fitted.mu)') }} as h00,
            {{ add_up('points.weight * fitted.mu * (1 - fitted.mu) * points.x') }} as h01,
            {{ add_up('points.weight * fitted.mu * (1 - fitted.mu) * points.x * points.x') }} as h11
        from {{ points }} as points
        inner join {{ previous }} using ({{ keys }})
        cross join lateral (
            select
                1 / (1 + exp(-greatest(least(
                    {{ previous }}.intercept + {{ previous }}.slope * points.x, 30), -30))) as mu
        ) as fitted
        group by {% for key in group_columns %}points.{{ key }}{{ ", " if not loop.last }}{% endfor %}
    ),

    solved_{{ step }} as (
        select
            sums_{{ step }}.*,
            {{ previous }}.intercept,
            {{ previous }}.slope,
            {{ previous }}.both_classes,
            -- a singular system (every prediction equal) has no solution: null, not noise
            case when h00 * h11 - h01 * h01 > 1e-9 * h00 * h11 then h00 * h11 - h01 * h01 end as det
        from sums_{{ step }}
        inner join {{ previous }} using ({{ keys }})
    ),

    fit_{{ step }} as (
        select
            {{ keys }},
            intercept + (h11 * g0 - h01 * g1) / det as intercept,
            slope + (h00 * g1 - h01 * g0) / det as slope,
            abs((h11 * g0 - h01 * g1) / det) + abs((h00 * g1 - h01 * g0) / det) as step_size,
            both_classes
        from solved_{{ step }}
    ),
{%- endmacro %}

{#- exact_sum's total as numeric: the terms rounded to whole units of 1e-12, summed, divided back
    exactly (a decimal with 12 places). Such totals add up exactly, so a sum stored per group
    can be summed again over groups with the same result as summing the terms at once. -#}
{% macro exact_decimal_sum(expr) -%}
    ({{ _sum_of_units(expr) }} / 1e12)
{%- endmacro %}

{#- A sum of double precision terms in numeric: each term becomes a numeric of its 15 significant
    digits (as PostgreSQL casts a double), and numerics add exactly, so the same terms give the
    same sum whatever their order. For the calibration fit's few bins, whose terms can pass what
    exact_sum's units hold. -#}
{% macro _numeric_sum(expr) -%}
    sum(({{ expr }})::numeric)::double precision
{%- endmacro %}

{#-
  A query: every metric of the prediction marts per group of `relation` (a CTE with the group
  columns, `probability` double precision, `outcome` boolean and `predicted_for` date): predictions,
  positives, mean_probability, observed_rate, log_loss, brier_score, auc,
  expected_calibration_error, calibration_intercept, calibration_slope, calibration_converged,
  first_predicted_for, last_predicted_for.
-#}
{% macro prediction_metrics(relation, group_columns) -%}
    {%- set keys = group_columns | join(', ') -%}
    with
    prediction_groups as (
        -- a number per group: the ranking sorts by it and the probability, where sorting by the
        -- group's text columns compared long, equal model versions for every pair of rows
        -- (about 1 s of the 9 s of fct_prediction_metrics at 10,000 learners x 90 days)
        select
            {{ keys }},
            row_number() over (order by {{ keys }}) as group_number
        from (select distinct {{ keys }} from {{ relation }}) as distinct_groups
    ),

    ranked as (
        select
            {% for key in group_columns %}{{ relation }}.{{ key }}, {% endfor %}
            {{ relation }}.probability,
            {{ relation }}.outcome,
            {{ relation }}.predicted_for,
            {{ average_rank(relation ~ '.probability', ['prediction_groups.group_number']) }} as probability_rank
        from {{ relation }}
        inner join prediction_groups using ({{ keys }})
    ),

    scored as (
        select
            {{ keys }},
            count(*) as predictions,
            count(*) filter (where outcome) as positives,
            {{ exact_avg('probability') }} as mean_probability,
            avg(case when outcome then 1.0 else 0.0 end) as observed_rate,
            {{ exact_avg(log_loss_term('probability', 'outcome')) }} as log_loss,
            {{ exact_avg(brier_term('probability', 'outcome')) }} as brier_score,
            {{ auc_from_ranks('probability_rank', 'outcome') }} as auc,
            min(predicted_for) as first_predicted_for,
            max(predicted_for) as last_predicted_for
        from ranked
        group by {{ keys }}
    ),

    binned as (
        -- from the predictions, not from ranked: read once, ranked streams into scored
        select
            {{ keys }},
            {{ calibration_bin('probability') }} as calibration_bin,
            count(*) as bin_predictions,
            {{ exact_avg('probability') }}::numeric as bin_mean_probability,
            avg(case when outcome then 1.0 else 0.0 end) as bin_observed_rate
        from {{ relation }}
        group by {{ keys }}, {{ calibration_bin('probability') }}
    ),

    calibration_error as (
        select
            {{ keys }},
            {{ expected_calibration_error('bin_predictions', 'bin_mean_probability', 'bin_observed_rate') }}
                as expected_calibration_error
        from binned
        group by {{ keys }}
    ),

    calibration as (
        {{ calibration_fit(relation, group_columns) }}
    ),

    metrics as (
        select
            scored.*,
            calibration_error.expected_calibration_error,
            calibration.calibration_intercept,
            calibration.calibration_slope,
            calibration.calibration_converged
        from scored
        inner join calibration_error using ({{ keys }})
        inner join calibration using ({{ keys }})
    )

    select * from metrics
{%- endmacro %}

{#- Aggregate expression: ROC AUC over a group's logit buckets (one row each, ascending), the
    Mann-Whitney statistic with the predictions of a bucket tied: each positive counts the
    negatives of lower buckets and half of its own bucket's, over positives x negatives; null when
    the group holds one class only. -#}
{% macro auc_from_buckets(positives, negatives, negatives_below) -%}
    (sum({{ positives }} * ({{ negatives_below }} + {{ negatives }} / 2.0))
        / nullif(sum({{ positives }})::numeric * sum({{ negatives }}), 0))
{%- endmacro %}

{#-
  A query: the metrics of prediction_metrics per group of `relation`, a CTE of rows of
  fct_prediction_buckets (the group columns, calibration_bin, logit_bucket, predictions,
  positives, first and last predicted_for, and the exact sums sum_probability, sum_log_loss,
  sum_brier_score and sum_logit), read instead of the predictions: a group's work is its buckets,
  a few thousand, however many predictions it holds.
  Counts, mean probability, observed rate, log loss, Brier score and the calibration error add
  the buckets' exact sums and equal prediction_metrics'. AUC ties the predictions of a bucket
  (auc_from_buckets), and the calibration fit runs over the buckets, each at its mean logit and
  weighted by its predictions: both as if every probability were moved within var
  prediction_logit_bucket_width of its logit. The docs (prediction_metrics_definitions) say by
  how much that moved the bench's figures.
-#}
{% macro prediction_metrics_from_buckets(relation, group_columns) -%}
    {%- set keys = group_columns | join(', ') -%}
    with
    logit_buckets as (
        -- a bucket over its weeks and calibration bins
        select
            {{ keys }},
            logit_bucket,
            sum(predictions) as predictions,
            sum(positives) as positives,
            sum(sum_logit) as sum_logit
        from {{ relation }}
        group by {{ keys }}, logit_bucket
    ),

    ranked_buckets as (
        select
            {{ keys }},
            positives,
            predictions - positives as negatives,
            coalesce(sum(predictions - positives) over (
                partition by {{ keys }} order by logit_bucket
                rows between unbounded preceding and 1 preceding
            ), 0) as negatives_below
        from logit_buckets
    ),

    areas as (
        select
            {{ keys }},
            {{ auc_from_buckets('positives', 'negatives', 'negatives_below') }} as auc
        from ranked_buckets
        group by {{ keys }}
    ),

    scored as (
        select
            {{ keys }},
            sum(predictions) as predictions,
            sum(positives) as positives,
            (sum(sum_probability) / sum(predictions))::double precision as mean_probability,
            sum(positives) * 1.0 / sum(predictions) as observed_rate,
            (sum(sum_log_loss) / sum(predictions))::double precision as log_loss,
            (sum(sum_brier_score) / sum(predictions))::double precision as brier_score,
            min(first_predicted_for) as first_predicted_for,
            max(last_predicted_for) as last_predicted_for
        from {{ relation }}
        group by {{ keys }}
    ),

    binned as (
        select
            {{ keys }},
            sum(predictions) as bin_predictions,
            sum(sum_probability) / sum(predictions) as bin_mean_probability,
            sum(positives) * 1.0 / sum(predictions) as bin_observed_rate
        from {{ relation }}
        group by {{ keys }}, calibration_bin
    ),

    calibration_error as (
        select
            {{ keys }},
            {{ expected_calibration_error('bin_predictions', 'bin_mean_probability', 'bin_observed_rate') }}
                as expected_calibration_error
        from binned
        group by {{ keys }}
    ),

    bucket_points as (
        select
            {{ keys }},
            (sum_logit / predictions)::double precision as x,
            predictions as weight,
            positives
        from logit_buckets
    ),

    calibration as (
        {{ calibration_fit('bucket_points', group_columns, weighted=true) }}
    ),

    metrics as (
        select
            scored.*,
            areas.auc,
            calibration_error.expected_calibration_error,
            calibration.calibration_intercept,
            calibration.calibration_slope,
            calibration.calibration_converged
        from scored
        inner join areas using ({{ keys }})
        inner join calibration_error using ({{ keys }})
        inner join calibration using ({{ keys }})
    )

    select * from metrics
{%- endmacro %}

{#- Incremental all-time marts (fct_prediction_metrics, fct_prediction_reliability): the CTEs up to
    touched_versions, the (kind, model version) pairs to recompute: those with ledger rows
    received since the watermark, and those whose stored count differs from their weeks' total in
    fct_prediction_metrics_weekly (an erasure changed it). -#}
{% macro touched_model_versions() -%}
weekly_totals as (
    select
        prediction_kind,
        model_version,
        sum(predictions) as predictions
    from {{ ref('fct_prediction_metrics_weekly') }}
    group by prediction_kind, model_version
),

stored_totals as (
    select
        prediction_kind,
        model_version,
        sum(predictions) as predictions
    from {{ this }}
    group by prediction_kind, model_version
),

touched_versions as (
    select distinct
        prediction_kind,
        model_version
    from {{ ref('prediction_ledger') }}
    {%- if sqlfluff_lint is not defined %}
    where {{ received_since_watermark('received_at') }}
    {%- endif %}
    union
    select
        weekly_totals.prediction_kind,
        weekly_totals.model_version
    from weekly_totals
    left join stored_totals
        on
            weekly_totals.prediction_kind = stored_totals.prediction_kind
            and weekly_totals.model_version = stored_totals.model_version
    where coalesce(stored_totals.predictions, -1) <> weekly_totals.predictions
),
{%- endmacro %}
