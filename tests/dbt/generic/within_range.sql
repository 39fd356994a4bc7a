{#-
  Range test: fails with every row whose `column_name` lies outside [min_value, max_value]
  (either bound optional; nulls pass, pair with not_null where they must not occur).
  Usage:
    data_tests:
      - within_range:
          arguments:
            min_value: 0
            max_value: 1
-#}
{% test within_range(model, column_name, min_value=none, max_value=none) %}

{%- set bounds = [
    column_name ~ ' < ' ~ min_value if min_value is not none else 'false',
    column_name ~ ' > ' ~ max_value if max_value is not none else 'false',
] %}

select *
from {{ model }}
where {{ bounds | join(' or ') }}

{% endtest %}
