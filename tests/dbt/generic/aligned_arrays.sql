{#-
  Parallel arrays: fails with every row whose `column_name` (an array of keys) is not strictly
  ascending or holds a null, or whose `values` arrays do not have one element per key.
  Usage:
    data_tests:
      - aligned_arrays:
          arguments:
            values: [last_is_correct, last_answered_at]
-#}
{% test aligned_arrays(model, column_name, values) %}

select *
from {{ model }}
where
    array_position({{ column_name }}, null) is not null
    or exists (
        select
        from unnest(array[cardinality({{ values | join('), cardinality(') }})]) as value_arrays (length)
        where value_arrays.length is distinct from cardinality({{ column_name }})
    )
    or exists (
        select
        from unnest({{ column_name }}) with ordinality as earlier (item, ordinal)
        inner join unnest({{ column_name }}) with ordinality as later (item, ordinal)
            on later.ordinal = earlier.ordinal + 1
        where later.item <= earlier.item
    )

{% endtest %}
