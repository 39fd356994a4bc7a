{#-
  SM-2 at topic level (docs block mastery_vars and the int_topic_reviews_scheduled page), folded inside PostgreSQL.

  create_sm2_functions() runs as an on-run-start hook and (re)creates, in schema intermediate:
    - type intermediate.sm2_state (easiness numeric, repetitions integer, interval_days integer):
      the schedule after a review. easiness is an exact decimal: it only moves in steps of 0.02.
    - function intermediate.sm2_step(state, q): one review, in the published order of operations:
        if q >= 3: I <- 1 when n = 0, 6 when n = 1, else min(cap, ceil(I * EF)) with the EF from
                   before this review; n <- n + 1
        else:      n <- 0, I <- 1
        then EF <- max(floor, EF + 0.1 - (5 - q) * (0.08 + 0.02 * (5 - q)))
      A null state is the start state (EF = var sm2_initial_easiness, n = 0, I = 0).
      cap is var sm2_max_interval_days (default 36500 days, Anki's longest interval). Without it
      I grows by x EF (about x2.5) a review: a month of daily correct answers to one topic would
      pass 2^31 days and fail the whole model, and due dates would pass the year 9999. ceil(I * EF)
      is computed in numeric (no overflow whatever I and EF are) and capped before it becomes an
      integer; the cap applies to the 1 and 6 day first intervals too, should it be set below them.
    - aggregate intermediate.sm2_fold(q integer, seed sm2_state): folds reviews in order, starting
      from `seed` (the stored state before the first folded review; null = start state). Used as a
      running window aggregate it yields the state after every review in one pass:
        intermediate.sm2_fold(q, seed) over (partition by user_id, topic_id order by review_date
                                             rows between unbounded preceding and current row)
  The var values (initial EF, EF floor) are written into the function body, so a changed var takes
  effect on the next run; stored states only change with a --full-refresh.
  Type and functions are pure (immutable, parallel safe): the same reviews always give the same state.
-#}

{% macro create_sm2_functions() -%}
    {%- set max_interval = sm2_max_interval_days() -%}
    create schema if not exists intermediate;
    do $sm2$
    begin
        if to_regtype('intermediate.sm2_state') is null then
            create type intermediate.sm2_state as (
                easiness numeric,
                repetitions integer,
                interval_days integer
            );
            comment on type intermediate.sm2_state is
                'SM-2 schedule of one learner on one topic: easiness factor (exact decimal), repetitions n, interval I in days.';
        end if;
    end
    $sm2$;

    create or replace function intermediate.sm2_step(state intermediate.sm2_state, quality integer)
    returns intermediate.sm2_state
    language plpgsql immutable parallel safe
    as $sm2$
    declare
        easiness numeric := coalesce(state.easiness, {{ var('sm2_initial_easiness') }}::numeric);
        repetitions integer := coalesce(state.repetitions, 0);
        interval_days integer := coalesce(state.interval_days, 0);
    begin
        if quality is null or quality < 0 or quality > 5 then
            raise exception 'SM-2 quality must be an integer from 0 to 5, got %', quality;
        end if;
        if quality >= 3 then
            if repetitions = 0 then
                interval_days := least(1, {{ max_interval }});
            elsif repetitions = 1 then
                interval_days := least(6, {{ max_interval }});
            else
                interval_days := least({{ max_interval }}::numeric, ceil(interval_days::numeric * easiness))::integer;
            end if;
            repetitions := repetitions + 1;
        else
            repetitions := 0;
            interval_days := 1;
        end if;
        easiness := greatest(
            {{ var('sm2_min_easiness') }}::numeric,
            easiness + 0.1 - (5 - quality) * (0.08 + 0.02 * (5 - quality))
        );
        return row(easiness, repetitions, interval_days)::intermediate.sm2_state;
    end
    $sm2$;
    comment on function intermediate.sm2_step(intermediate.sm2_state, integer) is
        'One SM-2 review of quality 0-5 applied to a state (null = start state); the interval is capped at {{ max_interval }} days (var sm2_max_interval_days).';

    create or replace function intermediate.sm2_fold_step(
        accumulated intermediate.sm2_state, quality integer, seed intermediate.sm2_state
    )
    returns intermediate.sm2_state
    language plpgsql immutable parallel safe
    as $sm2$
    begin
        if accumulated is null then
            return intermediate.sm2_step(seed, quality);
        end if;
        return intermediate.sm2_step(accumulated, quality);
    end
    $sm2$;
    comment on function intermediate.sm2_fold_step(intermediate.sm2_state, integer, intermediate.sm2_state) is
        'Transition function of intermediate.sm2_fold: the first row starts from the seed state.';

    create or replace aggregate intermediate.sm2_fold(integer, intermediate.sm2_state) (
        sfunc = intermediate.sm2_fold_step,
        stype = intermediate.sm2_state
    );
    comment on aggregate intermediate.sm2_fold(integer, intermediate.sm2_state) is
        'Folds SM-2 reviews (quality, seed state) in order; as a running window aggregate it gives the state after each review.';
{%- endmacro %}

{#- `dbt run-operation install_sm2_functions`: create the SM-2 functions without a run (tests, ad-hoc use). -#}
{% macro install_sm2_functions() -%}
    {%- do run_query(create_sm2_functions()) -%}
    {{ log('SM-2 type, functions and aggregate installed in schema intermediate', info=true) }}
{%- endmacro %}

{#- var sm2_max_interval_days as an integer, refused at compile time unless it is 1 to 2^31 - 1
    (an interval is an integer number of days). -#}
{% macro sm2_max_interval_days() -%}
    {%- set raw = var('sm2_max_interval_days') -%}
    {%- set days = raw | int(-1) -%}
    {%- if days < 1 or days > 2147483647 or (days | string) != (raw | string | trim) -%}
        {{ exceptions.raise_compiler_error(
            "var sm2_max_interval_days must be a whole number of days from 1 to 2147483647, got '"
            ~ raw ~ "'"
        ) }}
    {%- endif -%}
    {{- days -}}
{%- endmacro %}

{#- The due date of a review: review day + interval, but never after 9999-12-31, the last date
    that clients such as psycopg and Python's datetime can read (an interval of up to 2^31 - 1
    days, if var sm2_max_interval_days allows one, would otherwise reach the year 5.8 million). -#}
{% macro sm2_next_review_date(review_date, interval_days) -%}
    (({{ review_date }}) + least(({{ interval_days }}), date '9999-12-31' - ({{ review_date }})))
{%- endmacro %}
