{#-
  SM-2 at topic level (DESIGN.md section 4, "SM-2 at topic level"), folded inside PostgreSQL.

  create_sm2_functions() runs as an on-run-start hook and (re)creates, in schema intermediate:
    - type intermediate.sm2_state (easiness numeric, repetitions integer, interval_days integer):
      the schedule after a review. easiness is an exact decimal: it only moves in steps of 0.02.
    - function intermediate.sm2_step(state, q): one review, in DESIGN's order of operations:
        if q >= 3: I <- 1 when n = 0, 6 when n = 1, else ceil(I * EF) with the EF from before this
                   review; n <- n + 1
        else:      n <- 0, I <- 1
        then EF <- max(floor, EF + 0.1 - (5 - q) * (0.08 + 0.02 * (5 - q)))
      A null state is the start state (EF = var sm2_initial_easiness, n = 0, I = 0).
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
                interval_days := 1;
            elsif repetitions = 1 then
                interval_days := 6;
            else
                interval_days := ceil(interval_days * easiness)::integer;
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
        'One SM-2 review of quality 0-5 applied to a state (null = start state), exactly as DESIGN.md states it.';

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
