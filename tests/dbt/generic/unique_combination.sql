{#-
  Primary-key test for a composite key: fails with one row per key value that occurs more than
  once, or that has a null in any of its columns.
  Usage (model level):
    data_tests:
      - unique_combination:
          arguments:
            columns: [user_id, local_date]
-#}
{% test unique_combination(model, columns) %}

{%- set key = columns | join(', ') %}
{%- set any_null = columns | join(' is null or ') ~ ' is null' %}

with

keyed as (
    select
        {{ key }},
        count(*) as occurrences
    from {{ model }}
    group by {{ key }}
),

final as (
    select
        {{ key }},
        occurrences
    from keyed
    where occurrences > 1 or {{ any_null }}
)

select * from final

{% endtest %}
